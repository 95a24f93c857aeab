"""Errors of the video runtime that are the user's to fix; each message is one line with the fix.

Pure Python (no torch, no OpenCV): the CLI imports these to report them as one line.
"""
from __future__ import annotations

from nedr.errors import NedrError


class RunError(NedrError, RuntimeError):
    """Base of every expected `nedr run` failure (source, sink or backend)."""


class SourceError(RunError):
    """A frame source that cannot be opened or read: missing/corrupt file, unknown camera, no GStreamer."""


class SinkError(RunError):
    """An output that cannot be written or shown (unwritable path, OpenCV without a GUI, ...)."""


class BackendError(RunError):
    """An inference backend that cannot be used here (unknown name, missing package, no GPU, bad model)."""
