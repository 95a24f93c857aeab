"""Which exceptions are the user's to fix (reported in one line) rather than bugs."""
from __future__ import annotations

import sys


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty): what a one-line
    error keeps of a library's multi-line message."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class UserError(RuntimeError):
    """A problem with the command line or the environment, with the fix in its message."""

    describe = staticmethod(first_line)


# Stage errors that are the user's to fix, by module. Looked up in sys.modules rather than
# imported: an error can only come from a module already loaded, and importing nedr.model here
# would pull torch into torch-free installs (a Jetson runtime) just to print a message.
_STAGE_ERRORS = {
    "nedr.model.checkpoint": "CheckpointError",
    "nedr.model.imageio": "DataError",
    "nedr.model.samples": "SampleError",
    "nedr.runtime.errors": "RunError",
}


def expected_errors() -> tuple[type[BaseException], ...]:
    """Error types the CLI reports as one line."""
    found = [getattr(sys.modules[m], name) for m, name in _STAGE_ERRORS.items() if m in sys.modules]
    return (UserError, FileNotFoundError, PermissionError, *found)
