"""Reading the new account's password: a prompt typed twice, or standard input."""

from __future__ import annotations

import io

import pytest

from myapp.scripts.create_user import NoPassword, parse_args, read_password


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def prompt_answering(*answers: str):
    asked: list[str] = []
    replies = iter(answers)

    def prompt(text: str) -> str:
        asked.append(text)
        return next(replies)

    prompt.asked = asked
    return prompt


def test_the_prompt_asks_twice_and_returns_the_password():
    prompt = prompt_answering("s3cret pass", "s3cret pass")
    assert read_password(False, Terminal(), prompt) == "s3cret pass"
    assert prompt.asked == ["Password: ", "Password (again): "]


def test_two_different_answers_are_refused():
    with pytest.raises(NoPassword, match="differ"):
        read_password(False, Terminal(), prompt_answering("one", "two"))


def test_without_a_terminal_the_prompt_is_not_tried():
    with pytest.raises(NoPassword, match="--password-stdin"):
        read_password(False, io.StringIO("piped\n"), prompt_answering())


@pytest.mark.parametrize(
    ("piped", "password"),
    [("pw\n", "pw"), ("pw\r\n", "pw"), ("pw", "pw"), (" with spaces \nsecond\n", " with spaces ")],
)
def test_stdin_gives_its_first_line_without_the_line_end(piped, password):
    assert read_password(True, io.StringIO(piped), prompt_answering()) == password


def test_an_empty_stdin_is_refused():
    with pytest.raises(NoPassword, match="empty"):
        read_password(True, io.StringIO(""), prompt_answering())


def test_a_password_argument_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--ini", "x.ini", "alice", "her-password"])
    assert exit_.value.code == 2
    assert "never taken on the command line" in capsys.readouterr().err
