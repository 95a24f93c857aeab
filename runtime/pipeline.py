"""The streaming pipeline: source → prepare → backend → finish → sinks, with the stages overlapped.

Threads and queues (bounded, so memory stays flat whatever the speeds):

    capture thread   read a frame, convert to float, fast-mode downscale, pad, scene-cut check
         │  queue (file sources: blocking, no frame lost)
    main thread      backend.infer_full(batch)          (the accelerator's thread: CUDA contexts,
         │  queue                                         TensorRT streams and GUI calls stay here)
    writer thread    crop, stabilise A / re-solve J, fast-mode guided upsampling, uint8, sinks

Live sources skip the capture thread: the main thread takes the newest frame from the source's
grabber when it is ready for one, so no frame waits in a queue and latency does not build up
(frames nobody took are counted as dropped). Ctrl-C (KeyboardInterrupt, from the main thread or
raised inside the source/backend), SIGTERM or SIGHUP (how service managers and terminals stop a
process), a viewer pressing q, `max_frames` or an error all end the same way: the capture stops,
frames already inferred are written, sinks are closed (a video file is finalised and renamed), and
the summary says how it ended. A second signal while that happens exits at once (128 + signal
number), removing the unfinished files instead of leaving them behind.

The pipeline owns what it is given: it closes the source and every sink exactly once, however the
run ends (or when used as a context manager, however the `with` block ends, run or not).

Here: the threads and their hand-offs. The per-frame math (`FrameProcessor`, `RunConfig`) is in
`frame_math`, the figures (`StageTimes`, the summary, `format_summary`) in `summary`, and the stop
signals in `stop_signals`; the names callers use with a pipeline (`FrameProcessor`, `RunConfig`,
`format_summary`, ...) are importable from here as well.
"""
from __future__ import annotations

import contextlib
import math
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .backends import Backend
from .frame_math import FrameProcessor, RunConfig, Work
from .sinks import Sink, StopRun, as_sink
from .sources import Source
from .stop_signals import ALL_STOP_SIGNALS, StopSignal, forced_exit_on_signal, signal_handlers
from .summary import StageTimes, format_summary, run_summary

__all__ = ["FrameProcessor", "Pipeline", "RunConfig", "StageTimes", "StopSignal", "Work", "close_all", "format_summary",
           "run_pipeline"]


class _End:
    pass


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = _End()


def close_all(source: Source | None, sinks: Sequence[Sink]) -> list[Exception]:
    """Close every sink (finalising its file), then the source; returns the sinks' close errors
    rather than raising the first, so one failing sink never leaves the others unfinished."""
    errors = []
    for sink in sinks:
        try:
            sink.close()
        except Exception as exc:  # noqa: BLE001 - close every sink, report the first failure
            errors.append(exc)
    if source is not None:
        with contextlib.suppress(Exception):
            source.close()
    return errors


def enter_backend(stack: contextlib.ExitStack, backend: Backend, close: Callable[[], Any]) -> None:
    """Activate `backend` for the stack's lifetime unless the caller already did; if activation
    fails, `close()` the sources and sinks first, as a pipeline owns them from its creation on."""
    if backend.active:
        return
    try:
        stack.enter_context(backend)
    except BaseException:
        close()
        raise


class Pipeline:
    """Wires a source, a backend and sinks; `run()` returns the summary dict (see `summary`).

    `sinks` are `Sink`s (the classes in `sinks`) or any callable `sink(hazy_rgb, dehazed_rgb, index)`
    (wrapped by `as_sink`); those with `main_thread = True` (a window) are called from the main
    thread with the newest finished frame.

    The pipeline owns the source and the sinks from here on: `run()` closes them however it ends, and
    the pipeline as a context manager closes them if the run never happens (a failure while setting
    up), each exactly once. The backend stays the caller's: `run()` activates it only if the caller
    has not, and deactivates only what it activated.
    """

    def __init__(self, source: Source, backend: Backend,
                 sinks: Iterable[Sink | Callable] | Sink | Callable | None = None, config: RunConfig | None = None,
                 on_frame: Callable[[int, np.ndarray], None] | None = None) -> None:
        self.source, self.backend = source, backend
        given = [] if sinks is None else ([sinks] if callable(sinks) else list(sinks))
        self.sinks = [as_sink(s) for s in given]
        self.thread_sinks = [s for s in self.sinks if not s.main_thread]
        self.main_sinks = [s for s in self.sinks if s.main_thread]
        self.config = config or RunConfig()
        self.processor = FrameProcessor(backend, self.config)
        self.times = StageTimes()
        self.on_frame = on_frame
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._q_in: queue.Queue = queue.Queue(maxsize=max(1, self.config.queue_size))
        self._q_out: queue.Queue = queue.Queue(maxsize=max(1, self.config.queue_size))
        self._display: tuple | None = None
        self._display_lock = threading.Lock()
        self.completed = 0
        self.submitted = 0
        self.stopped_by: str | None = None
        self.interrupted = False
        self._closed = False
        self._signals: list[int] = []  # stop signals received, acted on between frames
        self.warmup_s = 0.0
        self._warm: set[tuple[int, int]] = set()
        self._bar = None
        self._postfix_at = -math.inf  # when the progress bar's figures were last computed
        self._t0: float | None = None
        self._t_end: float | None = None
        cpus = os.cpu_count() or 1
        self.finish_threads = max(1, self.config.finish_threads or min(4, cpus // 4))

    # ------------------------------------------------------------------ threads
    def _put(self, q: queue.Queue, item, force: bool = False) -> bool:
        """Blocking put that gives up when the run stops (unless `force`, used for the end marker)."""
        while True:
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                if (self._stop.is_set() and not force) or self._failure is not None:
                    return False

    def _read_and_prepare(self) -> Work | None:
        """The source's next frame, prepared for the backend (timed as the read and prepare stages);
        None at the end of the source."""
        t0 = time.perf_counter()
        frame = self.source.read()
        if frame is None:
            return None
        t1 = time.perf_counter()
        work = self.processor.prepare(frame)
        self.times.add("read", t1 - t0)
        self.times.add("prepare", time.perf_counter() - t1)
        return work

    def _capture_loop(self) -> None:
        try:
            n = 0
            while not self._stop.is_set():
                if self.config.max_frames is not None and n >= self.config.max_frames:
                    self.stopped_by = self.stopped_by or "max_frames"
                    break
                work = self._read_and_prepare()
                if work is None:
                    break
                if not self._put(self._q_in, work):
                    break
                n += 1
            self._put(self._q_in, _END, force=True)
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt from a source included
            self._put(self._q_in, _Failure(exc), force=True)

    def _writer_loop(self) -> None:
        """Finish frames in order: settle A (sequential), render (on `finish_threads` workers when
        more than one, results still taken in frame order), then the sinks."""
        workers = self.finish_threads
        pool = ThreadPoolExecutor(workers, thread_name_prefix="nedr-finish") if workers > 1 else None
        pending: deque = deque()
        try:
            while True:
                item = self._q_out.get()
                if item is _END:
                    break
                work: Work = item
                t0 = time.perf_counter()
                self.processor.settle(work)
                if pool is None:
                    image = self.processor.render(work)
                    self.times.add("finish", time.perf_counter() - t0)
                    self._emit(work, image)
                    continue
                pending.append((work, pool.submit(self._timed_render, work, t0)))
                while pending and (pending[0][1].done() or len(pending) > workers):
                    done, future = pending.popleft()
                    self._emit(done, future.result())
            while pending:
                done, future = pending.popleft()
                self._emit(done, future.result())
        except BaseException as exc:  # noqa: BLE001
            self._failure = exc
            self._stop.set()
            with contextlib.suppress(queue.Empty):  # unblock a main thread waiting to put
                while True:
                    self._q_out.get_nowait()
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _timed_render(self, work: Work, t0: float) -> np.ndarray:
        image = self.processor.render(work)
        self.times.add("finish", time.perf_counter() - t0)
        return image

    def _emit(self, work: Work, image: np.ndarray) -> None:
        t1 = time.perf_counter()
        for sink in self.thread_sinks:
            sink(work.frame.image, image, work.frame.index)
        now = time.perf_counter()
        self.times.add("write", now - t1)
        self.times.add("latency", now - work.frame.timestamp)
        if self.main_sinks:
            with self._display_lock:
                self._display = (work.frame.image, image, work.frame.index)
        if self.on_frame:
            self.on_frame(work.frame.index, image)
        self.completed += 1
        self._t_end = now
        self._tick()

    def _tick(self) -> None:
        bar = self._bar
        if bar is None:
            return
        now = time.perf_counter()
        # The bar redraws at most every `mininterval`; the median over every frame so far grows with
        # the run, so it is taken only when a redraw can show it, and never for a disabled bar.
        if not bar.disable and now - self._postfix_at >= bar.mininterval:
            self._postfix_at = now
            elapsed = max(1e-9, now - (self._t0 or now))
            infer = self.times.p50_ms("infer")
            parts = [f"{self.completed / elapsed:.1f} fps"]
            if infer is not None:
                parts.append(f"infer {infer:.0f} ms")
            if self.source.live:
                parts.append(f"dropped {self.source.dropped}")
            bar.set_postfix_str(", ".join(parts), refresh=False)
        bar.update(1)

    def _show(self) -> None:
        with self._display_lock:
            item, self._display = self._display, None
        if item is not None:
            for sink in self.main_sinks:
                sink(*item)

    # ------------------------------------------------------------------ main loop
    def _next_work(self):
        """The next frame to infer: from the capture queue, or (live) the newest frame right now."""
        if not self.source.live:
            while True:
                try:
                    return self._q_in.get(timeout=0.1)
                except queue.Empty:
                    if self._failure is not None:
                        return _Failure(self._failure)
                    if self.main_sinks:
                        self._show()
        if self.config.max_frames is not None and self.submitted >= self.config.max_frames:
            self.stopped_by = self.stopped_by or "max_frames"
            return _END
        work = self._read_and_prepare()
        return _END if work is None else work

    def _warmup(self, work: Work) -> None:
        hw = tuple(work.batch.shape[-2:])
        if self.config.warmup and hw not in self._warm:
            t0 = time.perf_counter()
            self.backend.warmup(*hw, runs=1)
            self.warmup_s += time.perf_counter() - t0
        self._warm.add(hw)

    def request_stop(self, signum: int) -> None:
        """Stop as for signal `signum`, at the next frame boundary. Safe to call from a signal handler
        (only records it). A backend that can block for long (the triton backend retrying a server
        that is down) is told too, so it gives up waiting."""
        self._signals.append(signum)
        self.backend.request_stop()

    def _check_signals(self) -> None:
        """Raise for a stop signal here, between frames, rather than from the handler wherever the
        main thread happens to be (inside a queue's lock, a stop could leave the writer blocked)."""
        if self._signals:
            signum = self._signals[0]
            raise KeyboardInterrupt if signum == signal.SIGINT else StopSignal(signum)

    def _main_loop(self) -> None:
        while True:
            self._check_signals()
            if self._failure is not None:
                raise self._failure
            item = self._next_work()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            work: Work = item
            self._warmup(work)
            if self._t0 is None:
                self._t0 = time.perf_counter()
            t0 = time.perf_counter()
            try:
                work.output = self.backend.infer_full(work.batch)
            except KeyboardInterrupt:  # a backend that gave up waiting on a stop: report the signal that asked
                self._check_signals()
                raise
            self.times.add("infer", time.perf_counter() - t0)
            self._check_signals()
            self.submitted += 1
            if not self._put(self._q_out, work):
                if self._failure is not None:
                    raise self._failure
                return
            if self.main_sinks:
                self._show()

    def run(self) -> dict[str, Any]:
        """Run to the end of the source (or max_frames / Ctrl-C / q) and return the summary."""
        from tqdm import tqdm

        capture = None
        if not self.source.live:
            capture = threading.Thread(target=self._capture_loop, name="nedr-capture", daemon=True)
        writer = threading.Thread(target=self._writer_loop, name="nedr-writer", daemon=True)
        interrupted = False
        error: BaseException | None = None
        with contextlib.ExitStack() as stack:
            enter_backend(stack, self.backend, self._close)
            total = self.source.frame_count
            if self.config.max_frames is not None:
                total = min(total, self.config.max_frames) if total else self.config.max_frames
            self._bar = tqdm(total=total, unit="frame", desc="nedr run", disable=not self.config.progress,
                             file=sys.stderr, dynamic_ncols=True, leave=True)
            writer.start()
            if capture:
                capture.start()
            try:
                with signal_handlers(ALL_STOP_SIGNALS, lambda signum, _frame: self.request_stop(signum)):
                    self._main_loop()
            except StopSignal as stop:
                interrupted, self.stopped_by = True, f"signal {stop.name}"
            except KeyboardInterrupt:
                interrupted, self.stopped_by = True, "interrupt"
            except StopRun:
                self.stopped_by = "viewer"
            except BaseException as exc:  # noqa: BLE001 - re-raised after the output is finalised
                error = exc
            finally:
                with forced_exit_on_signal(self.sinks):
                    self._shutdown(capture, writer)
        if error is None and self._failure is not None and not isinstance(self._failure, StopRun):
            error = self._failure
        if isinstance(self._failure, StopRun):
            self.stopped_by = "viewer"
        self.interrupted = interrupted
        if error is not None:
            raise error
        return self.summary()

    def _shutdown(self, capture: threading.Thread | None, writer: threading.Thread) -> None:
        self._stop.set()
        if capture is not None:
            with contextlib.suppress(queue.Empty):  # let a capture thread blocked on a full queue see the stop
                while True:
                    self._q_in.get_nowait()
            capture.join(timeout=10)
        self._put(self._q_out, _END, force=True)
        writer.join()
        if self.main_sinks:
            with contextlib.suppress(StopRun):
                self._show()
        if self._t_end is None:
            self._t_end = time.perf_counter()
        errors = self._close()
        if self._bar is not None:
            self._bar.close()
        if errors and self._failure is None:
            self._failure = errors[0]

    # ------------------------------------------------------------------ ownership
    def _close(self) -> list[Exception]:
        """Close the source and the sinks unless done already; returns the sinks' close errors."""
        if self._closed:
            return []
        self._closed = True
        return close_all(self.source, self.sinks)

    def close(self) -> None:
        """Close the source and the sinks (finalising files), once: `run()` has done it when it returns."""
        errors = self._close()
        if errors:
            raise errors[0]

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        errors = self._close()
        if errors and exc is None:  # an error already on its way matters more than a close failure
            raise errors[0]

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict[str, Any]:
        """The run's figures (see `summary.run_summary`); `run()` returns it, and it can be read after a failed run."""
        elapsed = (self._t_end - self._t0) if self._t0 and self._t_end else 0.0
        return run_summary(processor=self.processor, times=self.times, source=self.source, backend=self.backend,
                           sinks=self.sinks, frames=self.completed, elapsed=elapsed, interrupted=self.interrupted,
                           stopped_by=self.stopped_by, warmup_s=self.warmup_s)


def run_pipeline(source: Source, backend: Backend, sinks: Iterable[Sink | Callable] | Sink | Callable | None = None,
                 **config: Any) -> dict[str, Any]:
    """`Pipeline(source, backend, sinks, RunConfig(**config)).run()`."""
    with Pipeline(source, backend, sinks, RunConfig(**config)) as pipeline:
        return pipeline.run()
