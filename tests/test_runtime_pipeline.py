"""The streaming pipeline with a fake backend: no frame lost on files, newest-frame semantics on live
sources, clean stops (Ctrl-C from any stage) with a readable output, odd and changing sizes, fast mode."""
from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from nedr.runtime.errors import SinkError, SourceError
from nedr.runtime.pipeline import FrameProcessor, Pipeline, RunConfig, format_summary
from nedr.runtime.sinks import ImageFolderSink, NullSink, VideoFileSink, open_sink
from nedr.runtime.sources import Frame, ImageFolderSource, LiveSource, VideoFileSource, open_source

from runtime_helpers import FakeBackend, FakeCapture, Recorder, count_frames, write_clip

QUIET = dict(progress=False)


@pytest.fixture
def clip(tmp_path) -> Path:
    return write_clip(tmp_path / "clip.mp4", frames=15)


def test_file_run_keeps_every_frame(clip, tmp_path):
    out = tmp_path / "out.mp4"
    source = open_source(str(clip))
    sink = open_sink(out, fps=source.fps)
    rec = Recorder()
    summary = Pipeline(source, FakeBackend(delay=0.01), [sink, rec], RunConfig(queue_size=2, **QUIET)).run()
    assert summary["frames"] == 15 and summary["dropped"] == 0 and not summary["interrupted"]
    assert [i for i, _ in rec.items] == list(range(15))  # in order, none skipped
    assert count_frames(out) == (15, 160, 128)
    assert cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FPS) == pytest.approx(25, abs=0.1)
    assert not list(tmp_path.glob(".*partial*")) and rec.closed
    for stage in ("read", "prepare", "infer", "finish", "write", "latency"):
        assert summary["stages"][stage]["count"] == 15
        assert summary["stages"][stage]["p95_ms"] >= summary["stages"][stage]["p50_ms"] >= 0
    assert summary["fps"] > 0 and summary["inference_only_fps"] > 0
    assert "fps end to end" in format_summary(summary)


def test_slow_consumer_on_file_source_still_loses_nothing(clip):
    """A slow sink (back-pressure through the bounded queues) must not drop file frames."""
    seen = []

    def slow_sink(hazy, dehazed, index):
        time.sleep(0.01)
        seen.append(index)

    summary = Pipeline(open_source(str(clip)), FakeBackend(), [slow_sink], RunConfig(queue_size=1, **QUIET)).run()
    assert seen == list(range(15)) and summary["frames"] == 15


def test_live_source_drops_instead_of_lagging():
    """Camera at 200 fps, network at ~25 fps: every inferred frame is (nearly) the newest one."""
    cap = FakeCapture(fps=200)
    source = LiveSource("fake camera", lambda: cap)
    lags = []

    def on_infer(batch):
        value = int(round(float(batch[0, 0, 0, 0]) * 255))
        newest = (source.grabbed - 1) % 200
        lags.append((newest - value) % 200)

    summary = Pipeline(source, FakeBackend(delay=0.04, on_infer=on_infer), [NullSink()],
                       RunConfig(max_frames=8, warmup=False, **QUIET)).run()
    assert summary["frames"] == 8 and summary["stopped_by"] == "max_frames"
    assert summary["dropped"] >= 8, summary["dropped"]  # ~7 frames arrive per inference
    assert max(lags) <= 3, lags  # no queue between camera and network: lag stays ~0, never grows
    assert summary["stages"]["latency"]["p95_ms"] < 200
    assert cap.released


class InterruptingSource(VideoFileSource):
    """A file source whose reading is interrupted (as by Ctrl-C) after `after` frames."""

    def __init__(self, path, after):
        super().__init__(path)
        self.after = after

    def __iter__(self):
        for frame in super().__iter__():
            if frame.index >= self.after:
                raise KeyboardInterrupt
            yield frame


@pytest.mark.parametrize("where", ["source", "backend"])
def test_interrupt_leaves_a_readable_video(clip, tmp_path, where):
    out = tmp_path / "out.mp4"
    if where == "source":
        source, backend = InterruptingSource(clip, after=6), FakeBackend()
    else:
        source, backend = VideoFileSource(clip), FakeBackend(interrupt_at=7)
    summary = Pipeline(source, backend, [VideoFileSink(out, fps=25)], RunConfig(warmup=False, **QUIET)).run()
    assert summary["interrupted"] and summary["stopped_by"] == "interrupt"
    assert summary["frames"] == 6
    assert count_frames(out) == (6, 160, 128)  # finalised: readable, holds every finished frame
    assert not list(tmp_path.glob(".*partial*"))


def test_sigint_in_a_real_process_finalises_the_video(clip, tmp_path):
    """A real SIGINT to a running process: exit code 130 path, the video complete up to that point."""
    out = tmp_path / "sig.mp4"
    script = textwrap.dedent(f"""
        import signal, sys
        # a shell's background job inherits SIGINT ignored, and Python then leaves it ignored: restore Ctrl-C
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from runtime_helpers import FakeBackend
        from nedr.runtime.pipeline import Pipeline, RunConfig
        from nedr.runtime.sinks import VideoFileSink
        from nedr.runtime.sources import open_source
        src = open_source({str(clip)!r})
        started = []
        def on_infer(batch):  # the main thread's first inference: 14 more frames of 0.3 s to go
            if not started:
                started.append(1); print("started", flush=True)
        s = Pipeline(src, FakeBackend(delay=0.3, on_infer=on_infer), [VideoFileSink({str(out)!r}, 25)],
                     RunConfig(progress=False, warmup=False)).run()
        print("frames", s["frames"], "interrupted", s["interrupted"], flush=True)
        sys.exit(130 if s["interrupted"] else 0)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.4)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    frames = int(stdout.split()[1])
    assert 1 <= frames < 15
    assert count_frames(out)[0] == frames


def test_sink_error_stops_the_run(clip):
    def broken(hazy, dehazed, index):
        if index == 3:
            raise SinkError("disk full")

    with pytest.raises(SinkError, match="disk full"):
        Pipeline(open_source(str(clip)), FakeBackend(), [broken], RunConfig(**QUIET)).run()


def test_odd_frame_size_round_trips(tmp_path):
    """721×403 frames pad to 736×416 for the network and come back at 721×403."""
    clip = write_clip(tmp_path / "odd.mp4", frames=3, size=(722, 404))  # mp4v needs even sizes
    frames = [cv2.resize(f.image, (721, 403)) for f in VideoFileSource(clip)]
    backend = FakeBackend()
    with backend:
        proc = FrameProcessor(backend, RunConfig(stabilize=False))
        outs = [proc(Frame(i, f, time.perf_counter())) for i, f in enumerate(frames)]
    assert backend.shapes[0] == (1, 3, 416, 736)
    assert all(o.shape == (403, 721, 3) and o.dtype == np.uint8 for o in outs)
    expected = np.clip((frames[0] / 255.0 - 0.85) / 0.6 + 0.85, 0, 1)
    assert np.abs(outs[0] / 255.0 - expected).max() <= 1 / 255 + 1e-6  # the crop is the frame, not the padding


def test_size_change_and_odd_formats_mid_stream(tmp_path):
    """An image folder with mixed sizes, grey, 16-bit and BGRA frames: each comes back at its own size."""
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(1)
    cv2.imwrite(str(folder / "a.png"), (rng.random((128, 160, 3)) * 255).astype(np.uint8))
    cv2.imwrite(str(folder / "b.png"), (rng.random((200, 300)) * 255).astype(np.uint8))          # grey
    cv2.imwrite(str(folder / "c.png"), (rng.random((130, 170, 3)) * 65535).astype(np.uint16))    # 16-bit
    cv2.imwrite(str(folder / "d.png"), (rng.random((128, 160, 4)) * 255).astype(np.uint8))       # BGRA
    (folder / "e.png").write_bytes(b"not a png")                                                 # corrupt: skipped
    out = tmp_path / "out"
    video = tmp_path / "out.mp4"
    source = ImageFolderSource(folder)
    summary = Pipeline(source, FakeBackend(), [ImageFolderSink(out), VideoFileSink(video, 5)], RunConfig(**QUIET)).run()
    assert summary["frames"] == 4 and summary["size_changes"] == 3
    sizes = [cv2.imread(str(p)).shape for p in sorted(out.iterdir())]
    assert sizes == [(128, 160, 3), (200, 300, 3), (130, 170, 3), (128, 160, 3)]
    assert count_frames(video) == (4, 160, 128)  # a video keeps its first size
    assert source.describe()["skipped"] == ["e.png"]


def test_fast_mode_output_is_full_size(clip):
    rec = Recorder()
    backend = FakeBackend()
    summary = Pipeline(open_source(str(clip)), backend, [rec], RunConfig(scale=0.5, max_frames=3, **QUIET)).run()
    assert summary["frames"] == 3 and summary["fast_mode"]["scale"] == 0.5
    assert all(shape == (128, 160, 3) for _, shape in rec.items)
    assert backend.shapes[-1] == (1, 3, 128, 128)  # 80×64 padded up to the 128 minimum


class _CountingSource(VideoFileSource):
    closes = 0

    def close(self) -> None:
        self.closes += 1
        super().close()


class _CountingSink(NullSink):
    closes = 0

    def close(self) -> None:
        self.closes += 1


@pytest.mark.parametrize("ends", ["run", "error before the run", "interrupt before the run"])
def test_the_pipeline_closes_what_it_was_given_exactly_once(clip, ends):
    source, sink = _CountingSource(clip), _CountingSink()
    with pytest.raises((RuntimeError, KeyboardInterrupt)) if ends != "run" else contextlib.nullcontext():
        with Pipeline(source, FakeBackend(), [sink], RunConfig(max_frames=2, **QUIET)) as pipeline:
            if ends == "run":
                assert pipeline.run()["frames"] == 2
            else:
                raise RuntimeError("setting up failed") if ends.startswith("error") else KeyboardInterrupt
    assert source.closes == 1 and sink.closes == 1


def test_every_source_reads_one_frame_at_a_time(clip):
    source = VideoFileSource(clip)
    frames = [source.read(timeout=0.0) for _ in range(16)]  # a file ignores the timeout: every frame is at hand
    assert [f.index for f in frames[:15]] == list(range(15)) and frames[15] is None


def test_compare_writes_side_by_side(clip, tmp_path):
    out = tmp_path / "cmp.mp4"
    Pipeline(open_source(str(clip)), FakeBackend(), [VideoFileSink(out, 25, compare=True)],
             RunConfig(max_frames=4, **QUIET)).run()
    assert count_frames(out) == (4, 320, 128)


def test_live_source_error_surfaces_after_retries():
    source = LiveSource("flaky", lambda: FakeCapture(fail_after=3), max_retries=2, backoff=0.01)
    opened = []
    source._opener = lambda: opened.append(1) or None  # every reconnection fails from now on
    with pytest.raises(SourceError, match="reconnection attempts failed"):
        Pipeline(source, FakeBackend(), [NullSink()], RunConfig(warmup=False, **QUIET)).run()
    assert len(opened) == 2


def test_stabilisation_needs_transmission(clip):
    summary = Pipeline(open_source(str(clip)), FakeBackend(with_t=False), [NullSink()],
                       RunConfig(max_frames=2, **QUIET)).run()
    assert summary["stabilize"]["enabled"] is False and "transmission" in summary["stabilize"]["unavailable"]


def test_summary_is_json_serialisable(clip):
    summary = Pipeline(open_source(str(clip)), FakeBackend(), [NullSink()], RunConfig(max_frames=2, **QUIET)).run()
    json.dumps(summary)


def test_parallel_finish_keeps_order_and_output(clip):
    """Rendering on several threads gives the same frames, in the same order, as one thread."""
    results = {}
    for threads in (1, 3):
        got = []
        Pipeline(open_source(str(clip)), FakeBackend(), [lambda h, d, i: got.append((i, d.copy()))],
                 RunConfig(scale=0.5, finish_threads=threads, **QUIET)).run()
        results[threads] = got
    assert [i for i, _ in results[3]] == list(range(15))
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(results[1], results[3]))


def test_second_signal_during_finalising_exits_at_once_without_partial_files(tmp_path, monkeypatch):
    """While the output is being finalised, another SIGTERM/SIGINT exits with 128 + signal number
    and removes the unfinished video rather than leaving a hidden .partial behind."""
    from nedr.runtime import stop_signals

    sink = VideoFileSink(tmp_path / "o.mp4", 25)
    sink.write(np.zeros((64, 64, 3), np.uint8), 0)
    assert sink.tmp.is_file()
    exits = []
    monkeypatch.setattr(stop_signals.os, "_exit", exits.append)
    with stop_signals.forced_exit_on_signal([sink]):
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
    assert exits == [128 + signal.SIGTERM] and not sink.tmp.exists() and not sink.path.exists()
    sink.close()  # a close after the discard is a no-op
    assert not sink.path.exists()
