"""Which exceptions are the user's to fix (reported in one line) rather than bugs."""
from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty): what a one-line
    error keeps of a library's multi-line message."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class NedrError(Exception):
    """Base of every error that is the user's to fix (bad input, environment, options): the CLI
    reports these as one line with a non-zero exit, anything else is a bug and keeps its traceback.
    Stage errors also derive from the builtin they refine (ValueError, RuntimeError), so library
    callers that catch those keep working."""

    describe = staticmethod(first_line)


class UserError(NedrError, RuntimeError):
    """A problem with the command line or the environment, with the fix in its message."""


def expected_errors() -> tuple[type[BaseException], ...]:
    """Error types the CLI reports as one line."""
    return (NedrError, FileNotFoundError, PermissionError)
