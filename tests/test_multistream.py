"""Multi-stream runs (nedr.runtime.multistream, `nedr run --source A --source B ...`): frames of equal
network size share inference calls, never mixing sizes or exceeding the backend's batch limit;
batching changes no output frame; a stream that fails (unreadable file, camera gone for good)
ends alone; 4 file and 2 real live streams at once through the CLI on the onnxruntime backend.
"""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from nedr.runtime import backends
from nedr.runtime.backends import Output
from nedr.runtime.errors import BackendError
from nedr.runtime.multistream import Batcher, MultiStreamPipeline, Stream, _Request, format_multi_summary
from nedr.runtime.pipeline import Pipeline, RunConfig
from nedr.runtime.sources import LiveSource, open_source

from live_servers import FfmpegServer
from runtime_helpers import FakeBackend, FakeCapture, Recorder, count_frames, run_cli, tiny_onnx, write_clip

QUIET = {"progress": False}


def _serve_requests(backend, batches: list[np.ndarray], max_batch=None, max_wait: float = 1.0) -> list:
    """Submit one batch per lane from its own thread at once; the batcher serves them here."""
    batcher = Batcher(backend.activate(), max_batch=max_batch, max_wait=max_wait)
    lanes = [batcher.lane() for _ in batches]
    results: list = [None] * len(batches)

    def submit(i: int) -> None:
        try:
            results[i] = lanes[i].infer_full(batches[i])
        except BaseException as exc:  # noqa: BLE001 - checked by the test
            results[i] = exc
        finally:
            lanes[i].close()

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    batcher.serve()
    for t in threads:
        t.join()
    return results, batcher


def _frame(value: float, hw=(128, 160)) -> np.ndarray:
    return np.full((1, 3, *hw), value, np.float32)


def test_equal_sizes_share_a_call_and_sizes_never_mix():
    backend = FakeBackend()
    batches = [_frame(0.1), _frame(0.2), _frame(0.3, (160, 128)), _frame(0.4)]
    results, batcher = _serve_requests(backend, batches)
    assert sorted(backend.shapes) == [(1, 3, 160, 128), (3, 3, 128, 160)]
    for batch, out in zip(batches, results):  # each lane got its own frame's answer
        assert out.clean.shape == batch.shape
        np.testing.assert_allclose(out.clean, backend._infer(batch).clean)
    assert batcher.summary()["sizes"] == {"1": 1, "3": 1} and batcher.summary()["mean_batch"] == 2.0


def test_the_backends_batch_limit_is_kept():
    backend = FakeBackend()
    backend.max_batch = 2  # e.g. a TensorRT profile or a Triton max_batch_size
    _serve_requests(backend, [_frame(v / 10) for v in range(5)])
    assert sorted(s[0] for s in backend.shapes) == [1, 2, 2]


def test_streams_out_of_phase_are_brought_together():
    """Lanes 2 and 3 submit while the first call (lanes 0 and 1) runs, longer than max_wait. When it
    returns, the batcher waits for 0 and 1's next frames rather than calling 2 and 3 at once (their
    wait counts from when the batcher is free, not from their submission): without that the two pairs
    would alternate for good, 2 frames per call (the benchmark's mean batch of 2.0 at N = 4)."""
    started = threading.Event()
    backend = FakeBackend(delay=0.2, on_infer=lambda batch: started.set())
    batcher = Batcher(backend.activate(), max_wait=0.1)
    lanes = [batcher.lane() for _ in range(4)]
    errors: list[BaseException] = []

    def stream(i: int) -> None:
        try:
            if i >= 2:
                started.wait(10)
            for k in range(3):
                lanes[i].infer_full(_frame(k / 10))
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)
        finally:
            lanes[i].close()

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    batcher.serve()
    for t in threads:
        t.join()
    summary = batcher.summary()
    assert not errors and summary["frames"] == 12
    assert summary["mean_batch"] >= 2.5 and summary["sizes"].get("4", 0) >= 2, summary  # 2, 4, 4, 2 when on time


def test_an_error_reaches_only_the_streams_in_that_call():
    class Picky(FakeBackend):
        def _infer(self, batch):
            if batch.shape[2] == 160:
                raise BackendError("no 160-row frames")
            return super()._infer(batch)

    results, _ = _serve_requests(Picky(), [_frame(0.1), _frame(0.2, (160, 128)), _frame(0.3)])
    assert isinstance(results[1], BackendError)
    assert isinstance(results[0], Output) and isinstance(results[2], Output)


def test_warmups_run_once_per_size():
    backend = FakeBackend()
    batcher = Batcher(backend.activate(), max_wait=0.0)
    lanes = [batcher.lane() for _ in range(3)]
    got = []

    def warm(lane):
        got.append(lane.warmup(128, 160, runs=1))
        lane.close()

    threads = [threading.Thread(target=warm, args=(lane,)) for lane in lanes]
    for t in threads:
        t.start()
    batcher.serve()
    for t in threads:
        t.join()
    assert backend.calls == 1 and sorted(got)[:2] == [0.0, 0.0]
    with pytest.raises(BackendError, match="stopped"):  # after serve() ends, nothing is accepted
        batcher.submit(_Request(lanes[0], _frame(0.1), (128, 160)))


def test_batched_outputs_equal_separate_runs(tmp_path):
    """Three clips (two of one size, one of another) through one batching run give exactly the frames
    three single-stream runs give, stabilisation (A smoothing, scene cuts) per stream included."""
    clips = [write_clip(tmp_path / f"c{i}.mp4", frames=10 + 2 * i, size=size, seed=i)
             for i, size in enumerate([(160, 128), (160, 128), (224, 160)])]

    def recorder():
        got = []
        return got, lambda hazy, dehazed, index: got.append((index, dehazed.copy()))

    separate = []
    for clip in clips:
        got, sink = recorder()
        Pipeline(open_source(str(clip)), FakeBackend(), [sink], RunConfig(**QUIET)).run()
        separate.append(got)
    together, streams = [], []
    for clip in clips:
        got, sink = recorder()
        together.append(got)
        streams.append(Stream(str(clip), open_source(str(clip)), [sink]))
    backend = FakeBackend()
    summary = MultiStreamPipeline(streams, backend, RunConfig()).run()
    assert [len(g) for g in together] == [10, 12, 14] and summary["frames"] == 36
    for a, b in zip(separate, together):
        assert [i for i, _ in a] == [i for i, _ in b]
        assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(a, b))
    assert max(s[0] for s in backend.shapes) == 2  # the two 160×128 clips went together
    assert summary["streams_ok"] == 3 and summary["batching"]["calls"] < 36
    text = format_multi_summary(summary)
    assert text.startswith("3 streams, 36 frames in ") and f"[3] {clips[2]}: 14 frames" in text


def test_a_camera_gone_for_good_ends_only_its_stream(tmp_path):
    clip = write_clip(tmp_path / "c.mp4", frames=20)
    camera = LiveSource("cam", lambda: FakeCapture(fps=100, fail_after=5), max_retries=0, log=lambda _: None)
    file_sink, cam_sink = Recorder(), Recorder()
    summary = MultiStreamPipeline([Stream(str(clip), open_source(str(clip)), [file_sink]),
                                   Stream("cam", camera, [cam_sink]),
                                   Stream("missing.mp4", error="missing.mp4: no such file or folder")],
                                  FakeBackend(delay=0.01), RunConfig()).run()
    file_s, cam_s, missing = summary["streams"]
    assert file_s["status"] == "ok" and file_s["frames"] == 20 and len(file_sink.items) == 20
    assert cam_s["status"] == "failed" and "reconnection is off" in cam_s["error"] and cam_sink.closed
    assert 1 <= cam_s["frames"] <= 5
    assert missing == {"name": "missing.mp4", "status": "failed", "error": "missing.mp4: no such file or folder"}
    assert summary["streams_failed"] == 2 and "[3] missing.mp4: failed: missing.mp4: no such file" in format_multi_summary(summary)


def test_cli_option_errors(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(backends.BACKENDS, "fake", FakeBackend)
    a, b = (str(write_clip(tmp_path / f"{n}.mp4", frames=2)) for n in "ab")
    two = ["--source", a, "--source", b, "--backend", "fake", "--quiet"]
    for argv, match in [(two + ["-o", str(tmp_path / "x.mp4")], "with several sources -o names a folder"),
                        (two + ["--display"], "--display shows one stream"),
                        (two[:4] + ["--sources", str(tmp_path / "nope.txt")], "--sources"),
                        (["--source", str(tmp_path / "bad1.mp4"), "--source", str(tmp_path / "bad2.mp4"), "--backend", "fake"],
                         "none of the 2 sources could be opened")]:
        assert run_cli(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("nedr: error: ") and match in err[-1], err
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    assert run_cli(two[:4] + ["--sources", str(tmp_path / "empty.txt")]) == 2
    assert "names no source" in capsys.readouterr().err


def test_cli_four_files_two_live_streams_and_a_bad_file(capsys, tmp_path):
    """The CLI on the onnxruntime backend (the tiny ONNX, stabilisation on): 4 files, 2 real live
    streams (FFmpeg's testsrc2 over MPEG-TS/TCP and MJPEG/HTTP) and one unreadable file. The bad one
    is skipped with one line, the six others are written with their own figures, batched, and the
    exit code (2) says one stream failed."""
    for kind in ("mpegts", "mjpeg"):
        why = FfmpegServer.missing(kind)
        if why:
            pytest.skip(why)
    model = tiny_onnx(tmp_path / "tiny.onnx")
    clips = [str(write_clip(tmp_path / f"file{i}.mp4", frames=10, size=(160, 120), seed=i)) for i in range(4)]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    with FfmpegServer("mpegts", tmp_path) as ts, FfmpegServer("mjpeg", tmp_path) as mj:
        ts.start(), mj.start()
        argv = [a for s in (*clips, ts.url, str(bad), mj.url) for a in ("--source", s)]
        stats, out = tmp_path / "stats.json", tmp_path / "out"
        rc = run_cli(argv + ["--backend", "onnxruntime", "--model", str(model), "--threads", "1", "-o", str(out),
                             "--max-frames", "10", "--quiet", "--stats", str(stats), "--timeout", "5"])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert rc == 2 and err[-1] == f"nedr: error: 1 of 7 streams failed (first: {bad}: cannot decode it as video " \
                                  "(corrupt file or unsupported format))", err
    assert f"nedr run: skipped: {bad}: cannot decode it as video" in captured.err
    data = json.loads(stats.read_text())
    by_name = {s["name"]: s for s in data["streams"]}
    assert [s["status"] for s in data["streams"]] == ["ok"] * 5 + ["failed", "ok"]
    for name in (*clips, ts.url, mj.url):
        s = by_name[name]
        assert s["frames"] == 10 and s["fps"] > 0 and s["stages"]["latency"]["p95_ms"] > 0 and "dropped" in s, s
        assert s["stabilize"]["enabled"], s
    assert by_name[ts.url]["source"]["live"] and not by_name[clips[0]]["source"]["live"]
    assert data["frames"] == 60 and data["batching"]["mean_batch"] > 1 and max(map(int, data["batching"]["sizes"])) >= 3
    assert sorted(p.name for p in out.iterdir()) == [f"file{i}_dehazed.mp4" for i in range(4)] + [
        "stream_2_dehazed.mp4", "stream_dehazed.mp4"]
    assert all(count_frames(out / f"file{i}_dehazed.mp4") == (10, 160, 120) for i in range(4))
    assert "7 streams, 60 frames" in captured.out and f"[6] {bad}: failed: " in captured.out
