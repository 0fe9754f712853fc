"""The request transaction manager whose transaction begins at its first use."""

from __future__ import annotations

import pytest
from transaction.interfaces import AlreadyInTransaction, ITransactionManager, NoTransaction
from zope.interface.verify import verifyObject

from myapp.sessions.database.requesttm import LazyTransactionManager


class Resource:
    """A data manager that records what the transaction asked of it."""

    transaction_manager = None

    def __init__(self) -> None:
        self.calls: list[str] = []

    def abort(self, txn) -> None:
        self.calls.append("abort")

    def tpc_begin(self, txn) -> None:
        self.calls.append("tpc_begin")

    def commit(self, txn) -> None:
        self.calls.append("commit")

    def tpc_vote(self, txn) -> None:
        self.calls.append("tpc_vote")

    def tpc_finish(self, txn) -> None:
        self.calls.append("tpc_finish")

    def tpc_abort(self, txn) -> None:
        self.calls.append("tpc_abort")

    def sortKey(self) -> str:
        return "resource"


class Synch:
    def __init__(self) -> None:
        self.seen: list[object] = []

    def newTransaction(self, txn) -> None:
        self.seen.append(txn)

    def beforeCompletion(self, txn) -> None:
        pass

    def afterCompletion(self, txn) -> None:
        pass


def test_the_manager_provides_the_transaction_packages_interface():
    assert verifyObject(ITransactionManager, LazyTransactionManager())


def test_unused_transaction_never_starts_and_commits_as_nothing():
    manager = LazyTransactionManager()
    pending = manager.begin()
    pending.note("/untouched")
    assert not manager.started() and not manager.isDoomed()
    manager.commit()
    assert not manager.started()
    with pytest.raises(NoTransaction):
        manager.get()  # explicit: after commit there is no transaction
    manager.begin()  # and a new one can begin
    manager.abort()


def test_first_use_starts_it_with_the_notes_and_user_given_before():
    manager = LazyTransactionManager()
    pending = manager.begin()
    pending.note("/cart")
    pending.user = "u1"
    assert pending.user == "u1"
    txn = manager.get()
    assert manager.started() and manager.get() is txn
    assert txn.description == "/cart" and txn.user == "u1"
    pending.note("more")  # later notes go straight to it
    assert txn.description == "/cart\nmore"


def test_joined_resource_commits_through_two_phases():
    manager = LazyTransactionManager()
    manager.begin()
    resource = Resource()
    manager.get().join(resource)
    manager.commit()
    assert resource.calls == ["tpc_begin", "commit", "tpc_vote", "tpc_finish"]


def test_abort_reaches_a_joined_resource_and_is_nothing_while_pending():
    manager = LazyTransactionManager()
    manager.begin()
    manager.abort()
    manager.begin()
    resource = Resource()
    manager.get().join(resource)
    manager.abort()
    assert resource.calls == ["abort"]


def test_doom_starts_the_transaction_and_dooms_it():
    manager = LazyTransactionManager()
    manager.begin()
    manager.doom()
    assert manager.started() and manager.isDoomed()
    manager.abort()


def test_context_manager_hands_over_to_the_real_transaction():
    manager = LazyTransactionManager()
    resource = Resource()
    with manager as txn:
        txn.join(resource)  # any other use of what begin returned starts it
    assert resource.calls[-1] == "tpc_finish"


def test_begin_twice_is_refused_like_an_explicit_manager():
    manager = LazyTransactionManager()
    manager.begin()
    with pytest.raises(AlreadyInTransaction):
        manager.begin()
    manager.get()
    with pytest.raises(AlreadyInTransaction):
        manager.begin()


def test_synchronizers_hear_of_every_transaction():
    manager = LazyTransactionManager()
    manager.begin()
    early = Synch()
    manager.registerSynch(early)  # starts the pending transaction so it is told
    assert early.seen == [manager.get()]
    manager.commit()
    manager.begin()  # with a synchronizer registered, begin is no longer lazy
    assert manager.started() and len(early.seen) == 2
    manager.abort()


def test_commit_callbacks_run_without_starting_an_unused_transaction():
    manager = LazyTransactionManager()
    manager.begin()
    seen: list[object] = []
    manager.on_commit(lambda: seen.append("before"), seen.append)
    assert not manager.started()
    manager.commit()
    assert seen == ["before", True] and not manager.started()


def test_commit_callback_may_start_the_transaction_to_write():
    manager = LazyTransactionManager()
    manager.begin()
    resource, seen = Resource(), []
    manager.on_commit(lambda: manager.get().join(resource), seen.append)
    manager.commit()
    assert resource.calls == ["tpc_begin", "commit", "tpc_vote", "tpc_finish"]
    assert seen == [True]


def test_failed_commit_tells_the_after_callbacks():
    class RefusesToVote(Resource):
        def tpc_vote(self, txn) -> None:
            raise RuntimeError("no")

    manager = LazyTransactionManager()
    manager.begin()
    seen: list[bool] = []
    manager.on_commit(lambda: manager.get().join(RefusesToVote()), seen.append)
    with pytest.raises(RuntimeError, match="no"):
        manager.commit()
    assert seen == [False]


def test_abort_drops_the_commit_callbacks():
    manager = LazyTransactionManager()
    manager.begin()
    seen: list[object] = []
    manager.on_commit(lambda: seen.append("before"), seen.append)
    manager.abort()
    manager.begin()
    manager.commit()
    assert seen == []


def test_before_callback_failing_stops_the_commit():
    manager = LazyTransactionManager()
    manager.begin()
    seen: list[bool] = []

    def before() -> None:
        raise ValueError("too large")

    manager.on_commit(before, seen.append)
    with pytest.raises(ValueError, match="too large"):
        manager.commit()
    assert seen == []


def test_protocol_lookups_on_the_pending_transaction_start_nothing():
    manager = LazyTransactionManager()
    pending = manager.begin()
    assert not hasattr(pending, "__deepcopy__")
    assert not manager.started()
    manager.abort()
