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

`FrameProcessor` holds the per-frame math and can be used without threads.
"""
from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import cv2
import numpy as np

from .backends import Backend, Output
from .errors import BackendError
from .fast import (DEFAULT_EPS, DEFAULT_RADIUS, apply_affine_u8, downscale, fit_affine_planes, infer_size_for,
                   planes_to_u8)
from .frames import pad_hwc, padded_hw
from .realtime import RealtimeChoice, backend_latency, choose_network_size
from .sinks import StopRun
from .sources import Frame, Source
from .temporal import Stabilizer, recover_planes

STAGES = ("read", "prepare", "infer", "finish", "write", "latency")


@dataclass
class RunConfig:
    infer_size: tuple[int, int] | None = None  # (width, height) the network runs at (fast mode)
    scale: float | None = None                 # or a factor of the frame size (fast mode)
    realtime_fps: float | None = None          # or: the largest network size that keeps this rate (measured)
    realtime_log: Callable[[str], None] | None = None  # told the size realtime_fps picked
    stabilize: bool = True
    alpha: float = 0.1                         # EMA weight of the newest A
    max_frames: int | None = None
    queue_size: int = 4
    warmup: bool = True
    progress: bool = True
    fast_radius: int = DEFAULT_RADIUS
    fast_eps: float = DEFAULT_EPS
    fast_method: str = "guided"                # "guided" (local affine) or "bilinear" (plain resize, for comparison)
    atmosphere_mode: str = "dark_channel"      # numpy A fallback when the backend gives neither A nor t
    finish_threads: int | None = None          # frames rendered at once after inference (None: by CPU count)


@dataclass
class Work:
    frame: Frame
    full8: np.ndarray | None      # fast mode: the full-resolution uint8 frame the coefficients apply to
    hw: tuple[int, int]           # the network's input size before padding
    batch: np.ndarray             # 1×3×Hp×Wp float32, padded
    cut: bool
    output: Output | None = None
    atmosphere: np.ndarray | None = None  # the smoothed A, once settled

    @property
    def small(self) -> np.ndarray:
        """The network's unpadded input, 3×h×w (a view of the batch)."""
        h, w = self.hw
        return self.batch[0, :, :h, :w]


class FrameProcessor:
    """The per-frame math, on channel planes (the backend's layout, so no transposes):

    * `prepare(frame)` → Work: fast-mode downscale (uint8, area), pad, float batch, scene-cut check;
    * `settle(work)`: the smoothed A for this frame (stateful: call in frame order);
    * `render(work)` → uint8 RGB at the frame's own size: J re-solved with the smoothed A, then
      fast-mode guided upsampling. Stateless, so several frames can render at once.

    `prepare` and `settle` each keep state (scene cuts, smoothed A) and must be called in frame order.
    """

    def __init__(self, backend: Backend, config: RunConfig | None = None) -> None:
        self.backend = backend
        self.config = config or RunConfig()
        self.stabilizer = Stabilizer(self.config.stabilize, self.config.alpha,
                                     atmosphere_mode=self.config.atmosphere_mode)
        self.last_size: tuple[int, int] | None = None
        self.size_changes = 0
        self.network_hw: tuple[int, int] | None = None
        self.realtime: RealtimeChoice | None = None

    def fast_size(self, h: int, w: int) -> tuple[int, int] | None:
        """The (width, height) the network runs at for an h×w frame, or None for full size.

        With `realtime_fps` the size is measured on the first frame (nothing else uses the backend
        yet) and kept as a fraction of the frame for later sizes, so no call is timed mid-stream."""
        if not self.config.realtime_fps:
            return infer_size_for((h, w), self.config.infer_size, self.config.scale)
        if self.realtime is None:
            self.realtime = choose_network_size(backend_latency(self.backend), (h, w), self.config.realtime_fps)
            if self.config.realtime_log:
                self.config.realtime_log(self.realtime.describe())
        if (h, w) == self.realtime.frame_hw:
            return self.realtime.infer_size
        (fh, fw), (nh, nw) = self.realtime.frame_hw, self.realtime.network_hw
        return infer_size_for((h, w), scale=min(1.0, nh / fh, nw / fw))

    def target_hw(self, h: int, w: int) -> tuple[int, int]:
        if self.backend.accepts_any_size:
            return h, w
        target = padded_hw(h, w)
        static = self.backend.static_hw
        if static:
            if target[0] > static[0] or target[1] > static[1]:
                raise BackendError(f"frames of {w}x{h} do not fit the model's static input {static[1]}x{static[0]}; "
                                   f"run it small with --infer-size {static[1]}x{static[0]}, or use a dynamic-shape model")
            target = static
        return target

    def prepare(self, frame: Frame) -> Work:
        img = frame.image
        h, w = img.shape[:2]
        resized = self.last_size is not None and (h, w) != self.last_size
        self.size_changes += int(resized)
        self.last_size = (h, w)
        size = self.fast_size(h, w)
        small = downscale(img, size) if size else img
        sh, sw = small.shape[:2]
        target = self.target_hw(sh, sw)
        self.network_hw = target
        padded = pad_hwc(small, target)
        batch = np.empty((1, 3, *target), np.float32)
        for c, plane in enumerate(cv2.split(padded)):
            np.multiply(plane, np.float32(1.0 / 255.0), out=batch[0, c])
        cut = self.stabilizer.detector(img) or resized
        return Work(frame, img if size else None, (sh, sw), batch, cut)

    def _t(self, work: Work) -> np.ndarray | None:
        t = work.output.transmission
        h, w = work.hw
        return None if t is None else t[0, 0, :h, :w]

    def settle(self, work: Work) -> None:
        out = work.output
        h, w = work.hw
        a = out.atmosphere[0] if out.atmosphere is not None else None
        work.atmosphere = self.stabilizer.smoothed(work.small, out.clean[0, :, :h, :w], self._t(work), a, work.cut)

    def render(self, work: Work) -> np.ndarray:
        h, w = work.hw
        if work.atmosphere is not None:
            planes = recover_planes(work.small, self._t(work), work.atmosphere)
            for p in planes:
                np.clip(p, 0.0, 1.0, out=p)
        else:
            planes = list(work.output.clean[0, :, :h, :w])
        if work.full8 is None:
            return planes_to_u8(planes)
        fh, fw = work.full8.shape[:2]
        if self.config.fast_method == "bilinear":
            return cv2.resize(planes_to_u8(planes), (fw, fh), interpolation=cv2.INTER_LINEAR)
        a, b = fit_affine_planes(work.small, planes, self.config.fast_radius, self.config.fast_eps)
        return apply_affine_u8(work.full8, a, b)

    def finish(self, work: Work) -> np.ndarray:
        self.settle(work)
        return self.render(work)

    def __call__(self, frame: Frame) -> np.ndarray:
        """One frame, synchronously (no threads)."""
        work = self.prepare(frame)
        work.output = self.backend.infer_full(work.batch)
        return self.finish(work)


class StageTimes:
    """Per-stage durations (seconds), thread-safe appends, p50/p95 summaries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: dict[str, list[float]] = {s: [] for s in STAGES}

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.values.setdefault(stage, []).append(seconds)

    def p50_ms(self, stage: str) -> float | None:
        v = self.values.get(stage) or []
        return 1000 * float(np.median(v)) if v else None

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        with self._lock:
            for stage, v in self.values.items():
                if v:
                    a = np.asarray(v) * 1000
                    out[stage] = {"p50_ms": round(float(np.percentile(a, 50)), 3),
                                  "p95_ms": round(float(np.percentile(a, 95)), 3),
                                  "mean_ms": round(float(a.mean()), 3), "count": int(a.size)}
        return out


class _End:
    pass


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = _End()


def _describe(sink) -> dict[str, Any]:
    return sink.describe() if hasattr(sink, "describe") else {"sink": getattr(sink, "__name__", type(sink).__name__)}


class Pipeline:
    """Wires a source, a backend and sinks; `run()` returns the summary dict (see `summary`).

    `sinks` are callables `sink(hazy_rgb, dehazed_rgb, index)` (the classes in `sinks`, or any
    function); those with `main_thread = True` (a window) are called from the main thread with the
    newest finished frame. `close()` is called on every sink that has one, however the run ends.
    """

    def __init__(self, source: Source, backend: Backend, sinks: Iterable[Callable] | Callable | None = None,
                 config: RunConfig | None = None, on_frame: Callable[[int, np.ndarray], None] | None = None) -> None:
        self.source, self.backend = source, backend
        sinks = [] if sinks is None else ([sinks] if callable(sinks) else list(sinks))
        self.sinks = sinks
        self.thread_sinks = [s for s in sinks if not getattr(s, "main_thread", False)]
        self.main_sinks = [s for s in sinks if getattr(s, "main_thread", False)]
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
        self._signals: list[int] = []  # stop signals received, acted on between frames
        self.warmup_s = 0.0
        self._warm: set[tuple[int, int]] = set()
        self._bar = None
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

    def _capture_loop(self) -> None:
        try:
            it = iter(self.source)
            n = 0
            while not self._stop.is_set():
                if self.config.max_frames is not None and n >= self.config.max_frames:
                    self.stopped_by = self.stopped_by or "max_frames"
                    break
                t0 = time.perf_counter()
                frame = next(it, None)
                if frame is None:
                    break
                t1 = time.perf_counter()
                work = self.processor.prepare(frame)
                self.times.add("read", t1 - t0)
                self.times.add("prepare", time.perf_counter() - t1)
                if not self._put(self._q_in, work):
                    break
                n += 1
            self._put(self._q_in, _END, force=True)
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt from a source included
            self._put(self._q_in, _Failure(exc), force=True)

    def _writer_loop(self) -> None:
        """Finish frames in order: settle A (sequential), render (on `finish_threads` workers when
        more than one, results still taken in frame order), then the sinks."""
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

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
        elapsed = max(1e-9, time.perf_counter() - (self._t0 or time.perf_counter()))
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
        t0 = time.perf_counter()
        frame = self.source.latest() if hasattr(self.source, "latest") else next(self._live_iter, None)
        if frame is None:
            return _END
        t1 = time.perf_counter()
        work = self.processor.prepare(frame)
        self.times.add("read", t1 - t0)
        self.times.add("prepare", time.perf_counter() - t1)
        return work

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
        stop = getattr(self.backend, "request_stop", None)
        if stop is not None:
            stop()

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

        self._live_iter = iter(self.source) if self.source.live and not hasattr(self.source, "latest") else None
        capture = None
        if not self.source.live:
            capture = threading.Thread(target=self._capture_loop, name="nedr-capture", daemon=True)
        writer = threading.Thread(target=self._writer_loop, name="nedr-writer", daemon=True)
        interrupted = False
        error: BaseException | None = None
        with contextlib.ExitStack() as stack:
            if not self.backend.active:
                try:
                    stack.enter_context(self.backend)
                except BaseException:
                    self._close_all()
                    raise
            total = self.source.frame_count
            if self.config.max_frames is not None:
                total = min(total, self.config.max_frames) if total else self.config.max_frames
            self._bar = tqdm(total=total, unit="frame", desc="nedr run", disable=not self.config.progress,
                             file=sys.stderr, dynamic_ncols=True, leave=True)
            writer.start()
            if capture:
                capture.start()
            try:
                with _handlers((signal.SIGINT, *STOP_SIGNALS), lambda signum, _frame: self.request_stop(signum)):
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
                with _forced_exit_on_signal(self.sinks):
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
        errors = self._close_all()
        if self._bar is not None:
            self._bar.close()
        if errors and self._failure is None:
            self._failure = errors[0]

    def _close_all(self) -> list[BaseException]:
        """Close every sink (finalising files) and the source; returns the close errors."""
        errors = []
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close:
                try:
                    close()
                except Exception as exc:  # noqa: BLE001 - close every sink, report the first failure
                    errors.append(exc)
        with contextlib.suppress(Exception):
            self.source.close()
        return errors

    # ------------------------------------------------------------------ summary
    def _realtime_summary(self) -> dict[str, Any] | None:
        choice = self.processor.realtime
        if choice is None:
            return None
        return {"target_fps": choice.target_fps, "reachable": choice.reachable, "budget_ms": round(choice.budget_s * 1e3, 2),
                "network_hw": list(choice.network_hw), "latency_ms": round(choice.latency_s * 1e3, 2),
                "measured": [{"hw": list(hw), "ms": round(s * 1e3, 2)} for hw, s in choice.measured]}

    def summary(self) -> dict[str, Any]:
        stages = self.times.summary()
        elapsed = (self._t_end - self._t0) if self._t0 and self._t_end else 0.0
        infer = stages.get("infer", {})
        frames = self.completed
        # fps over the frames after the first (the clock starts when frame 0 enters the backend)
        fps = (frames - 1) / elapsed if frames > 1 and elapsed > 0 else (1 / elapsed if frames and elapsed else 0.0)
        stab = self.processor.stabilizer
        fast = self.config.infer_size or self.config.scale or self.processor.realtime
        source = self.source.describe()
        return {
            "frames": frames,
            "elapsed_s": round(elapsed, 3),
            "fps": round(fps, 3),
            "inference_only_fps": round(1000 / infer["mean_ms"], 3) if infer else None,
            "dropped": int(self.source.dropped),
            "reconnects": int(source.get("reconnects") or 0),        # live sources (0 for files)
            "disconnected_s": float(source.get("disconnected_s") or 0.0),
            "interrupted": bool(getattr(self, "interrupted", False)),
            "stopped_by": self.stopped_by or "end_of_source",
            "warmup_s": round(self.warmup_s, 3),
            "frame_size": list(self.processor.last_size) if self.processor.last_size else None,
            "network_size": list(self.processor.network_hw) if self.processor.network_hw else None,
            "size_changes": self.processor.size_changes,
            "fast_mode": {"infer_size": list(self.config.infer_size) if self.config.infer_size else None,
                          "scale": self.config.scale, "radius": self.config.fast_radius,
                          "eps": self.config.fast_eps} if fast else None,
            "realtime": self._realtime_summary(),
            "stabilize": {"enabled": stab.enabled and stab.unavailable is None, "alpha": stab.smoother.alpha,
                          "scene_cuts": stab.detector.cuts, "unavailable": stab.unavailable},
            "stages": stages,
            "backend": self.backend.describe(),
            "source": source,
            "sinks": [_describe(s) for s in self.sinks],
        }


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class StopSignal(KeyboardInterrupt):
    """SIGTERM or SIGHUP: stop like Ctrl-C, but as a requested stop (the CLI exits 0)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.name = signal.Signals(signum).name


@contextlib.contextmanager
def _handlers(signums, handler):
    """Install `handler` for `signums` in the main thread (elsewhere Python does not allow it)."""
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


def exit_discarding(sinks, signum: int) -> None:
    """End the process at once for a repeated stop signal, removing every unfinished file first."""
    for sink in sinks:
        discard = getattr(sink, "discard", None)
        if discard:
            with contextlib.suppress(Exception):
                discard()
    print(f"nedr: {signal.Signals(signum).name} again: stopped without finishing the output", file=sys.stderr)
    os._exit(128 + signum)


def _forced_exit_on_signal(sinks):
    """While the output is finalised, a second signal (Ctrl-C, SIGTERM, SIGHUP) ends the process
    at once, after removing every unfinished file, so an impatient stop never leaves a `.partial`."""
    return _handlers((signal.SIGINT, *STOP_SIGNALS), lambda signum, _frame: exit_discarding(sinks, signum))


def run_pipeline(source: Source, backend: Backend, sinks=None, **config) -> dict[str, Any]:
    """`Pipeline(source, backend, sinks, RunConfig(**config)).run()`."""
    return Pipeline(source, backend, sinks, RunConfig(**config)).run()


def format_summary(summary: dict[str, Any]) -> str:
    """A few human lines for the terminal."""
    st = summary.get("stages", {})

    def p(stage: str) -> str:
        s = st.get(stage)
        return f"{s['p50_ms']:.1f}/{s['p95_ms']:.1f}" if s else "-"

    b = summary.get("backend", {})
    where = b.get("device") or ",".join(p.replace("ExecutionProvider", "") for p in b.get("providers", []) or []) or ""
    lines = [
        f"{summary['frames']} frames in {summary['elapsed_s']:.1f} s: {summary['fps']:.2f} fps end to end"
        + (f" (inference alone {summary['inference_only_fps']:.2f} fps)" if summary.get("inference_only_fps") else "")
        + (f", {summary['dropped']} dropped" if summary.get("dropped") else ""),
        f"backend {b.get('backend')} {where}".rstrip() + f"; frame {summary.get('frame_size')} → network "
        f"{summary.get('network_size')}" + (" (fast mode)" if summary.get("fast_mode") else ""),
        f"latency p50/p95 ms: read {p('read')}, prepare {p('prepare')}, infer {p('infer')}, finish {p('finish')}, "
        f"write {p('write')}, end-to-end {p('latency')}",
    ]
    stab = summary.get("stabilize") or {}
    if stab.get("unavailable"):
        lines.append(f"stabilisation off: {stab['unavailable']}")
    elif stab.get("enabled"):
        lines.append(f"stabilisation: A smoothed (EMA α={stab['alpha']}), {stab['scene_cuts']} scene cut(s)")
    src = summary.get("source") or {}
    if src.get("bad_frames"):
        lines.append(f"{src['bad_frames']} undecodable frame(s) in {src['source']} skipped; the frames before and "
                     "after them are in the output")
    if src.get("reconnects") or src.get("disconnected_s") or src.get("stalls"):
        lines.append(f"source reconnected {src.get('reconnects', 0)} time(s), {src.get('disconnected_s', 0):.1f} s "
                     "without frames" + (f", {src['stalls']} stall(s)" if src.get("stalls") else ""))
    for sink in summary.get("sinks") or []:
        paced = sink.get("paced")
        if paced and (paced.get("repeated") or paced.get("dropped")):
            lines.append(f"live recording in real time at {paced['fps']:g} fps: {paced['frames_in']} frame(s) "
                         f"processed, {paced['repeated']} repeated, {paced['dropped']} dropped"
                         + (f", {paced['skipped_s']:.1f} s of outage left out" if paced.get("skipped_s") else ""))
    if summary.get("interrupted"):
        how = "Ctrl-C" if summary.get("stopped_by") == "interrupt" else summary.get("stopped_by", "the stop")
        lines.append(f"interrupted: the output holds every frame finished before {how}")
    return "\n".join(lines)
