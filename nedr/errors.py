"""Which exceptions are the user's to fix (reported in one line) rather than bugs."""
from __future__ import annotations


class UserError(RuntimeError):
    """A problem with the command line or the environment, with the fix in its message."""

    @staticmethod
    def describe(exc: BaseException) -> str:
        text = str(exc).strip().splitlines()
        return text[0] if text else type(exc).__name__


def expected_errors() -> tuple[type[BaseException], ...]:
    """Error types the CLI reports as one line (imported lazily: each lives with its stage)."""
    from nedr.model.checkpoint import CheckpointError
    from nedr.model.imageio import DataError
    from nedr.model.samples import SampleError

    return (UserError, CheckpointError, DataError, SampleError, FileNotFoundError, PermissionError)
