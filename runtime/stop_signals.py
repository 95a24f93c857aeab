"""How a run stops on Ctrl-C, SIGTERM and SIGHUP, shared by the single- and multi-stream pipelines.

The first signal asks for a clean stop (frames already inferred are written, files finalised); the
handlers only record it, and the pipeline acts on it between frames. A second signal while the
output is being finalised exits at once, removing unfinished files rather than leaving them behind.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Any, Callable, Iterable, Iterator

from .sinks import Sink

# SIGTERM and SIGHUP are how service managers and terminals stop a process; Windows has neither.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
ALL_STOP_SIGNALS = (signal.SIGINT, *STOP_SIGNALS)


class StopSignal(KeyboardInterrupt):
    """SIGTERM or SIGHUP: stop like Ctrl-C, but as a requested stop (the CLI exits 0)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.name = signal.Signals(signum).name


@contextlib.contextmanager
def signal_handlers(signums: Iterable[int], handler: Callable[[int, Any], None]) -> Iterator[None]:
    """Install `handler` for `signums` in the main thread (elsewhere Python does not allow it, and a
    pipeline run from another thread leaves stopping to whoever owns the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    try:
        for signum in signums:
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, handler)
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def exit_discarding(sinks: Iterable[Sink], signum: int) -> None:
    """End the process at once for a repeated stop signal, removing every unfinished file first."""
    for sink in sinks:
        with contextlib.suppress(Exception):
            sink.discard()
    print(f"nedr: {signal.Signals(signum).name} again: stopped without finishing the output", file=sys.stderr)
    os._exit(128 + signum)


def forced_exit_on_signal(sinks: Iterable[Sink]) -> contextlib.AbstractContextManager[None]:
    """While the output is finalised, a second signal (Ctrl-C, SIGTERM, SIGHUP) ends the process
    at once, after removing every unfinished file, so an impatient stop never leaves a `.partial`."""
    sinks = list(sinks)
    return signal_handlers(ALL_STOP_SIGNALS, lambda signum, _frame: exit_discarding(sinks, signum))
