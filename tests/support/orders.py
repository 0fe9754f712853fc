"""Test helpers for orders: a trigger that makes chosen orders fail at COMMIT, and counts."""

from __future__ import annotations

import sqlalchemy as sa

# Orders of users whose name starts with "doomed-" pass every statement and fail at
# COMMIT (a deferred constraint trigger), after the session write has run too.
REFUSE_AT_COMMIT = [
    """
    CREATE OR REPLACE FUNCTION test_refuse_doomed_order() RETURNS trigger AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id AND username LIKE 'doomed-%') THEN
            RAISE EXCEPTION 'this test refuses the order at commit'
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END $$ LANGUAGE plpgsql
    """,
    "DROP TRIGGER IF EXISTS test_refuse_doomed_order ON orders",
    """
    CREATE CONSTRAINT TRIGGER test_refuse_doomed_order AFTER INSERT ON orders
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_refuse_doomed_order()
    """,
]


# The session of a user whose name starts with "nosave-" cannot be stored once its cart
# is emptied: the session write of a checkout fails (the order was written before it).
REFUSE_SESSION_WRITE = [
    """
    CREATE OR REPLACE FUNCTION test_refuse_session_write() RETURNS trigger AS $$
    BEGIN
        IF NEW.data->>'username' LIKE 'nosave-%' AND NOT NEW.data::jsonb ? 'cart'
           AND OLD.data::jsonb ? 'cart' THEN
            RAISE EXCEPTION 'this test refuses the session write';
        END IF;
        RETURN NEW;
    END $$ LANGUAGE plpgsql
    """,
    "DROP TRIGGER IF EXISTS test_refuse_session_write ON user_sessions",
    """
    CREATE TRIGGER test_refuse_session_write BEFORE UPDATE ON user_sessions
    FOR EACH ROW EXECUTE FUNCTION test_refuse_session_write()
    """,
]


def refuse_session_write_after_checkout(url: str) -> None:
    _run(url, REFUSE_SESSION_WRITE)


def refuse_doomed_orders_at_commit(url: str) -> None:
    _run(url, REFUSE_AT_COMMIT)


def _run(url: str, statements: list[str]) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def orders_of(url_or_engine: str | sa.Engine, name: str) -> list[tuple[int, int]]:
    """(order id, total cents) of the user called ``name``."""
    engine = sa.create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT o.id, o.total_cents FROM orders o JOIN users u ON u.id = o.user_id"
                    " WHERE u.username = :name ORDER BY o.id"
                ),
                {"name": name},
            ).all()
            return [(row.id, row.total_cents) for row in rows]
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()
