"""Several streams through one backend, their frames batched into shared inference calls.

Like DeepStream's stream muxer, but built from the single-stream pieces: every stream is an
ordinary `Pipeline` (its own capture thread or newest-frame live grabber, its own fast mode,
scene-cut detection and A smoothing, its own sinks and summary) running in a thread of its own.
What they share is a `Batcher`: each stream's pipeline gets a `Lane`, a backend whose
`infer_full` hands the frame to the batcher and waits. The batcher runs in the calling (main)
thread, the one that activated the backend (CUDA contexts, TensorRT streams, the HTTP client's
event loop stay in one thread), and:

* waits until every open lane has a frame waiting, or `max_wait` seconds have passed since the
  oldest waiting frame came or the previous call returned, whichever is later (a live stream
  between camera frames does not hold the others up; the streams a call just answered get the
  chance to join the next one, so streams out of phase fall into step);
* takes the oldest frame's network size (H×W) and every waiting frame of that size, up to the
  backend's `max_batch`, concatenates them into one N×3×H×W call, and hands each lane its slice;
  frames of other sizes go in the next call (batches never mix sizes);
* passes a call's error to the lanes whose frames were in it.

So live sources keep newest-frame semantics per stream (a lane holds at most one frame), files
lose no frame, and one stream failing (an unreadable file, a camera gone for good) ends that
stream's pipeline, finalises its output and leaves the others running. Stop signals are
handled here once and passed to every pipeline; a second one exits at once without partial files.

Like `Pipeline`, a `MultiStreamPipeline` owns the streams it is given: each stream's pipeline closes
its source and sinks however it ends, and the multi-stream pipeline as a context manager closes the
streams that never got one (a failure while setting up), each exactly once.
"""
from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from nedr.errors import first_line

from .backends import Backend, Output
from .errors import BackendError, RunError
from .frame_math import RunConfig
from .pipeline import Pipeline, close_all, enter_backend
from .sinks import Sink, as_sink
from .sources import Source
from .stop_signals import ALL_STOP_SIGNALS, exit_discarding, signal_handlers
from .summary import StageTimes

DEFAULT_MAX_WAIT = 0.005  # s the batcher, once free, may wait for the other streams' frames


@dataclass
class _Request:
    lane: "Lane"
    batch: np.ndarray | None        # None: a warm-up request
    hw: tuple[int, int]
    runs: int = 1
    submitted: float = field(default_factory=time.perf_counter)
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class Lane(Backend):
    """One stream's view of the shared backend: the same contract (sizes, outputs, batch limit),
    with every call going through the batcher. Always active; `close()` when the stream ends."""

    def __init__(self, batcher: "Batcher", index: int) -> None:
        super().__init__()
        real = batcher.backend
        self.name, self.index, self.batcher = real.name, index, batcher
        self.static_hw, self.shape_range = real.static_hw, real.shape_range
        self.provides_transmission, self.accepts_any_size = real.provides_transmission, real.accepts_any_size
        self.max_batch = real.max_batch
        self.active = True
        self.closed = False

    def _activate(self) -> None:  # the batcher's owner activates the real backend
        pass

    def infer_full(self, batch: np.ndarray) -> Output:
        self.check_batch(batch)
        return self.batcher.submit(_Request(self, batch, tuple(batch.shape[-2:])))

    def warmup(self, h: int, w: int, runs: int = 2) -> float:
        return self.batcher.submit(_Request(self, None, (h, w), runs))

    def request_stop(self) -> None:
        self.batcher.backend.request_stop()

    def close(self) -> None:
        self.batcher.leave(self)

    @property
    def on_gpu(self) -> bool:
        return self.batcher.backend.on_gpu

    def describe(self) -> dict[str, Any]:
        return self.batcher.backend.describe()


class Batcher:
    """Gathers the lanes' frames into batched calls of `backend` (see the module docstring).

    `max_batch`: the most frames per call (default: the backend's own limit, else no limit).
    `serve()` runs in the thread that owns the backend until every lane is closed.
    """

    def __init__(self, backend: Backend, max_batch: int | None = None, max_wait: float = DEFAULT_MAX_WAIT) -> None:
        self.backend = backend
        self.max_batch = max_batch or backend.max_batch
        self.max_wait = float(max_wait)
        self._cond = threading.Condition()
        self._pending: list[_Request] = []
        self._open: set[Lane] = set()
        self._lanes = 0
        self._warm: set[tuple[int, int]] = set()
        self._closed = False
        self.sizes: Counter[int] = Counter()  # frames per call → number of calls
        self.times = StageTimes()              # "infer": seconds per batched call
        self.first_call: float | None = None

    def lane(self) -> Lane:
        with self._cond:
            lane = Lane(self, self._lanes)
            self._lanes += 1
            self._open.add(lane)
            return lane

    def leave(self, lane: Lane) -> None:
        with self._cond:
            lane.closed = True
            self._open.discard(lane)
            self._cond.notify_all()

    def submit(self, request: _Request):
        """Queue a request and wait for its answer (called from a stream's thread)."""
        with self._cond:
            if self._closed:
                raise BackendError("the batcher has stopped")
            self._pending.append(request)
            self._cond.notify_all()
        while not request.done.wait(0.1):
            if self._closed:
                raise BackendError("the batcher stopped before answering")
        if request.error is not None:
            raise request.error
        return request.result

    # ------------------------------------------------------------------ the serving loop
    def serve(self) -> None:
        """Answer requests until every lane is closed; then refuse new ones."""
        try:
            while True:
                group = self._next_group()
                if group is None:
                    return
                self._run(group)
        finally:
            with self._cond:
                self._closed = True
                for request in self._pending:
                    request.error = BackendError("the batcher stopped before answering")
                    request.done.set()
                self._pending.clear()

    def _next_group(self) -> list[_Request] | None:
        free = time.perf_counter()
        with self._cond:
            while not self._pending:
                if not self._open:
                    return None
                self._cond.wait(0.1)
            # max_wait counts from when the batcher could call, not from the oldest submission: frames
            # that arrived during the previous call would otherwise go at once, without the streams that
            # call just answered, and two groups of streams would alternate for good (half batches).
            deadline = max(self._pending[0].submitted, free) + self.max_wait
            while len(self._pending) < len(self._open):  # wait for the other streams, briefly
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)
            first = self._pending[0]
            if first.batch is None:  # a warm-up goes alone
                group = [first]
            else:
                key = first.batch.shape[1:]
                group, frames = [], 0
                for request in self._pending:
                    n = 0 if request.batch is None else request.batch.shape[0]
                    if n and request.batch.shape[1:] == key and (self.max_batch is None or frames + n <= self.max_batch
                                                                 or not group):
                        group.append(request)
                        frames += n
            for request in group:
                self._pending.remove(request)
            return group

    def _run(self, group: list[_Request]) -> None:
        try:
            if group[0].batch is None:
                self._warmup(group[0])
                return
            batch = group[0].batch if len(group) == 1 else np.concatenate([r.batch for r in group])
            start = time.perf_counter()
            self.first_call = self.first_call or start
            out = self.backend.infer_full(batch)
            self.times.add("infer", time.perf_counter() - start)
            self.sizes[batch.shape[0]] += 1
            offset = 0
            for request in group:
                n = request.batch.shape[0]
                request.result = _slice(out, offset, n)
                offset += n
        except BaseException as exc:  # noqa: BLE001 - handed to every stream in the call, re-raised there
            for request in group:
                request.error = exc
        finally:
            for request in group:
                request.done.set()

    def _warmup(self, request: _Request) -> None:
        if request.hw in self._warm:
            request.result = 0.0
            return
        start = time.perf_counter()
        self.backend.warmup(*request.hw, runs=request.runs)
        self._warm.add(request.hw)
        request.result = time.perf_counter() - start

    def summary(self) -> dict[str, Any]:
        calls = sum(self.sizes.values())
        frames = sum(n * c for n, c in self.sizes.items())
        return {"calls": calls, "frames": frames, "mean_batch": round(frames / calls, 3) if calls else None,
                "sizes": {str(n): c for n, c in sorted(self.sizes.items())}, "max_batch": self.max_batch,
                "max_wait_ms": round(self.max_wait * 1000, 3), "infer": self.times.summary().get("infer")}


def _slice(out: Output, offset: int, n: int) -> Output:
    """Frames offset … offset+n of a batched Output (views, no copies)."""
    def part(a):
        return None if a is None else a[offset:offset + n]
    return Output(out.clean[offset:offset + n], part(out.transmission), part(out.atmosphere))


@dataclass
class Stream:
    """One input of a multi-stream run: a name (the source as given), its opened source and sinks
    (any callable, as for `Pipeline`); or `error`, when it could not be opened (reported as a failed
    stream, the others still run)."""

    name: str
    source: Source | None = None
    sinks: list[Sink] = field(default_factory=list)
    error: str | None = None
    closed: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.sinks = [as_sink(s) for s in self.sinks]

    def close(self) -> None:
        """Close the sinks and the source, once, for a stream that never ran (its pipeline closes it
        otherwise); close errors are dropped, as the run that would have reported them never began."""
        if not self.closed:
            self.closed = True
            close_all(self.source, self.sinks)


@dataclass
class _State:
    stream: Stream
    pipeline: Pipeline | None = None
    lane: Lane | None = None
    summary: dict[str, Any] | None = None
    error: BaseException | None = None


class MultiStreamPipeline:
    """Runs `streams` through one `backend`, batching their frames (module docstring).

    `config` applies to every stream (fast mode, stabilisation, max_frames per stream); each
    stream's progress bar is off, `on_frame(stream_index, frame_index)` is called per finished
    frame (from the writer threads). `run()` returns the summary: totals, the batcher's figures
    and one entry per stream (its `Pipeline.summary()` plus name, status and error).
    """

    def __init__(self, streams: Sequence[Stream], backend: Backend, config: RunConfig | None = None,
                 max_batch: int | None = None, max_wait: float = DEFAULT_MAX_WAIT,
                 on_frame: Callable[[int, int], None] | None = None) -> None:
        self.streams = list(streams)
        self.backend = backend
        self.config = replace(config or RunConfig(), progress=False)
        self.max_batch, self.max_wait = max_batch, max_wait
        self.on_frame = on_frame
        self.states = [_State(s) for s in self.streams]
        self.batcher: Batcher | None = None
        self._signals: list[int] = []
        self._last_frame: float | None = None

    def run(self) -> dict[str, Any]:
        """Run every stream to its end (or a stop signal) and return the summary. Errors of single
        streams are in the summary; a bug (an error that is not a RunError) is re-raised once
        every output is finalised."""
        with contextlib.ExitStack() as stack:
            enter_backend(stack, self.backend, self.close)
            self.batcher = Batcher(self.backend, self.max_batch, self.max_wait)
            threads = []
            for index, state in enumerate(self.states):
                if state.stream.error is not None or state.stream.source is None:
                    continue
                state.lane = self.batcher.lane()
                state.pipeline = Pipeline(state.stream.source, state.lane, state.stream.sinks, self.config,
                                          on_frame=self._frame_callback(index))
                threads.append(threading.Thread(target=self._run_stream, args=(state,), name=f"nedr-stream-{index}",
                                                daemon=True))
            with signal_handlers(ALL_STOP_SIGNALS, self._on_signal):
                for thread in threads:
                    thread.start()
                self.batcher.serve()
                for thread in threads:
                    thread.join()
        bugs = [s.error for s in self.states if s.error is not None and not isinstance(s.error, RunError)]
        if bugs:
            raise bugs[0]
        return self.summary()

    def _frame_callback(self, index: int):
        def done(frame_index: int, _image) -> None:
            self._last_frame = time.perf_counter()
            if self.on_frame is not None:
                self.on_frame(index, frame_index)
        return done

    def _run_stream(self, state: _State) -> None:
        try:
            state.summary = state.pipeline.run()
        except BaseException as exc:  # noqa: BLE001 - this stream ends; the others go on
            state.error = exc
            if not isinstance(exc, RunError):
                traceback.print_exception(exc)
        finally:
            state.lane.close()

    def _on_signal(self, signum: int, _frame) -> None:
        """First stop signal: every pipeline stops at its next frame and finalises. Another one while
        that happens: exit at once, removing unfinished files."""
        if self._signals:
            exit_discarding([s for st in self.states for s in st.stream.sinks], signum)
        self._signals.append(signum)
        for state in self.states:
            if state.pipeline is not None:
                state.pipeline.request_stop(signum)

    # ------------------------------------------------------------------ ownership
    def close(self) -> None:
        """Close every stream that is still open, once: those that never ran (their pipelines close
        the others as they end). Close errors are dropped: no run is left to report them in."""
        for state in self.states:
            if state.pipeline is None:
                state.stream.close()
            else:
                with contextlib.suppress(Exception):
                    state.pipeline.close()

    def __enter__(self) -> "MultiStreamPipeline":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict[str, Any]:
        streams = []
        for state in self.states:
            entry: dict[str, Any] = {"name": state.stream.name}
            if state.pipeline is not None:
                data = state.summary or state.pipeline.summary()
                entry.update({k: v for k, v in data.items() if k != "backend"})
            error = state.stream.error or (first_line(state.error) if state.error is not None else None)
            entry.update(status="failed" if error else "ok", error=error)
            streams.append(entry)
        frames = sum(s.get("frames", 0) for s in streams)
        first = self.batcher.first_call if self.batcher else None
        elapsed = (self._last_frame - first) if first and self._last_frame else 0.0
        stops = [s.get("stopped_by") for s in streams if s.get("stopped_by")]
        interrupted = any(s.get("interrupted") for s in streams)
        return {
            "streams": streams,
            "frames": frames,
            "elapsed_s": round(elapsed, 3),
            "fps": round(frames / elapsed, 3) if elapsed > 0 else 0.0,
            "streams_ok": sum(s["status"] == "ok" for s in streams),
            "streams_failed": sum(s["status"] == "failed" for s in streams),
            "interrupted": interrupted,
            "stopped_by": next((s for s in stops if s != "end_of_source"), stops[0] if stops else "end_of_source"),
            "batching": self.batcher.summary() if self.batcher else None,
            "backend": self.backend.describe(),
        }


def format_multi_summary(summary: dict[str, Any]) -> str:
    """Human lines: the totals and batching, then one line per stream."""
    b = summary.get("batching") or {}
    backend = summary.get("backend") or {}
    infer = b.get("infer") or {}
    lines = [f"{len(summary['streams'])} streams, {summary['frames']} frames in {summary['elapsed_s']:.1f} s: "
             f"{summary['fps']:.2f} fps in total"
             + (f"; {b['calls']} batched calls, {b['mean_batch']:.2f} frames per call on average"
                f" (calls per batch size {'/'.join(b['sizes'])}: {'/'.join(map(str, b['sizes'].values()))}), "
                f"infer p50 {infer.get('p50_ms', 0):.1f} ms" if b.get("calls") else ""),
             f"backend {backend.get('backend')} {backend.get('device') or ''}".rstrip()]
    for i, s in enumerate(summary["streams"], 1):
        head = f"[{i}] {s['name']}: "
        if s.get("frames") is None:  # never opened
            lines.append(head + f"failed: {s['error']}")
            continue
        lat = (s.get("stages") or {}).get("latency")
        text = (f"{s['frames']} frames, {s['fps']:.2f} fps"
                + (f", latency p50/p95 {lat['p50_ms']:.0f}/{lat['p95_ms']:.0f} ms" if lat else "")
                + (f", {s['dropped']} dropped" if s.get("dropped") else "")
                + (f", {s['reconnects']} reconnect(s)" if s.get("reconnects") else "")
                + (f", {s['source']['bad_frames']} undecodable frame(s) skipped" if (s.get("source") or {}).get("bad_frames") else ""))
        written = [k.get("path") for k in s.get("sinks") or [] if k.get("path") and k.get("frames")]
        if written:
            text += f" → {written[0]}"
        if s["status"] == "failed":
            text += f"; failed: {s['error']}"
        lines.append(head + text)
    if summary.get("interrupted"):
        lines.append(f"interrupted ({summary.get('stopped_by')}): each output holds every frame finished before the stop")
    return "\n".join(lines)
