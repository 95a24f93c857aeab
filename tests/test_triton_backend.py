"""The triton backend (nedr.runtime.backends.triton) against a real Triton server on 127.0.0.1.

The server is the tritonserver binary of the nvidia-pytriton wheel (tests/triton_server.py; the
tests that need it skip, saying how to install it, when it is absent), serving the repository
`nedr export --triton` writes for the tiny ONNX with nedr's I/O (hazy → clean + transmission,
tests/runtime_helpers.tiny_onnx) through Triton's Python backend. Over HTTP and gRPC: outputs
equal the onnxruntime backend's on the same frames, one-line errors for an unreachable server,
a missing model and mismatched shapes or types, a server killed and restarted mid-run that the
run survives, and 4 file plus 2 live streams batched through it at once. One slow test serves
our own model instead: the default weights through `nedr export --triton`, whose outputs over both
protocols equal the onnxruntime backend's on the same file (issue 13's must-hold, ≤ 1e-4). Pure
pieces (URL parsing, the I/O contract check, which errors are retried) are tested without a server.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from nedr.runtime.backends import OnnxRuntimeBackend
from nedr.runtime.errors import BackendError
from nedr.runtime.frames import pad_hwc, to_batch, to_float
from nedr.runtime.sources import open_source
from nedr.runtime.backends.triton import TritonBackend, check_model_io, parse_url, transient_reason

from live_servers import FfmpegServer, free_port
from runtime_helpers import count_frames, run_cli, tiny_onnx, write_clip
from tiny_onnx import conv_model, save
from triton_server import TritonServer, find_pytriton, python_backend_repository, serve_with_python_backend

PROTOCOLS = ["grpc", "http"]


def _one_line_error(capsys, argv: list[str], match: str) -> str:
    rc = run_cli(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("nedr: error: ") and match in err[0], err
    return err[0]


# ---------------------------------------------------------------- without a server
def test_urls():
    assert str(parse_url("grpc://triton.local")) == "grpc://triton.local:8001"
    assert str(parse_url("http://10.0.0.5")) == "http://10.0.0.5:8000"
    url = parse_url("https://h:9000/")
    assert (url.protocol, url.ssl, url.address) == ("http", True, "h:9000")
    assert parse_url("grpcs://[::1]:7001").address == "[::1]:7001"
    for bad in ("h:8001", "ftp://h", "grpc://", "http://h/v2/models", "grpc://h:port"):
        with pytest.raises(BackendError, match="--url"):
            parse_url(bad)


def _meta(inputs=(("hazy", "FP32", [-1, 3, -1, -1]),), outputs=(("clean", "FP32", [-1, 3, -1, -1]),)):
    def tensors(specs):
        return [{"name": n, "datatype": d, "shape": s} for n, d, s in specs]
    return {"inputs": tensors(inputs), "outputs": tensors(outputs)}


def test_model_io_contract():
    io = check_model_io("m", _meta(outputs=(("clean", "FP32", [-1, 3, -1, -1]), ("transmission", "FP32", [-1, 1, -1, -1]))), 8)
    assert (io.input_name, io.clean_name, io.transmission_name, io.static_hw, io.max_batch) == (
        "hazy", "clean", "transmission", None, 8)
    io = check_model_io("m", _meta(inputs=(("x", "FP32", [1, 3, 256, 320]),), outputs=(("y", "FP32", [1, 3, 256, 320]),)), 0)
    assert (io.clean_name, io.transmission_name, io.static_hw, io.max_batch) == ("y", None, (256, 320), 1)
    assert check_model_io("m", _meta(), 0).max_batch is None  # no Triton batching, dynamic N: any size
    for meta, match in [(_meta(inputs=(("hazy", "FP16", [-1, 3, -1, -1]),)), "takes hazy as FP16; nedr sends FP32"),
                        (_meta(inputs=(("hazy", "FP32", [-1, 1, -1, -1]),)), r"shape \[-1, 1, -1, -1\]"),
                        (_meta(inputs=(("a", "FP32", [-1, 3, -1, -1]), ("b", "FP32", [-1, 3, -1, -1]))), "has 2 inputs"),
                        (_meta(outputs=(("clean", "FP32", [-1, 1, -1, -1]),)), "expects FP32 N×3×H×W"),
                        (_meta(outputs=()), "no outputs")]:
        with pytest.raises(BackendError, match=match):
            check_model_io("m", meta, 8)


def test_which_errors_are_retried():
    from tritonclient.utils import InferenceServerException

    assert transient_reason(ConnectionRefusedError()) == "connection refused"
    assert transient_reason(ConnectionResetError("reset by peer"))
    assert transient_reason(InferenceServerException(
        "[StatusCode.UNAVAILABLE] failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:8001: "
        "Failed to connect to remote host: Connection refused", status="StatusCode.UNAVAILABLE")) == "connection refused"
    assert transient_reason(InferenceServerException("Socket closed", status="StatusCode.UNAVAILABLE"))
    assert transient_reason(InferenceServerException("Request for unknown model: 'nedr' is not found", status="404"))
    assert transient_reason(InferenceServerException("unexpected shape for input 'hazy'", status="StatusCode.INVALID_ARGUMENT")) is None
    assert transient_reason(InferenceServerException("batch-size must be <= 8", status="400")) is None
    assert transient_reason(ValueError("a bug")) is None


def test_cli_option_errors(capsys, tmp_path):
    clip = write_clip(tmp_path / "c.mp4", frames=2)
    model = tiny_onnx(tmp_path / "m.onnx")
    _one_line_error(capsys, ["--source", str(clip), "--backend", "triton"], "--backend triton needs the server: --url")
    _one_line_error(capsys, ["--source", str(clip), "--backend", "onnxruntime", "--url", "grpc://h:8001"],
                    "--url is the Triton server's address, for --backend triton")
    _one_line_error(capsys, ["--source", str(clip), "--backend", "triton", "--url", "grpc://h:8001", "--model", str(model)],
                    "the triton backend runs the server's model")
    _one_line_error(capsys, ["--source", str(clip), "--url", "triton:8001"], "expected grpc://HOST:8001")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_nobody_serving_fails_in_one_line(capsys, tmp_path, protocol):
    clip = write_clip(tmp_path / "c.mp4", frames=2)
    port = free_port()
    line = _one_line_error(capsys, ["--source", str(clip), "--url", f"{protocol}://127.0.0.1:{port}", "-o", "none"],
                           f"cannot reach the Triton server at {protocol}://127.0.0.1:{port}")
    assert f"connection refused: nothing is listening on 127.0.0.1:{port}" in line


# ---------------------------------------------------------------- a real server
@pytest.fixture(scope="module")
def pytriton():
    found, why = find_pytriton()
    if found is None:
        pytest.skip(why)
    return found


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {"tiny": tiny_onnx(folder / "tiny.onnx"), "clean_only": save(conv_model(), folder / "clean_only.onnx")}


def _repository(repo: Path, files: dict[str, Path]) -> Path:
    """nedr (clean + transmission, batching up to 8), nedr_clean (no transmission), and models whose
    configs break nedr's contract: FP16 input, one input channel, a static 128×128 input."""
    python_backend_repository(repo, files["tiny"], "nedr")
    python_backend_repository(repo, files["clean_only"], "nedr_clean")
    python_backend_repository(repo, files["tiny"], "nedr_fp16", edit=lambda t: t.replace("TYPE_FP32", "TYPE_FP16", 1))
    python_backend_repository(repo, files["tiny"], "nedr_grey",
                              edit=lambda t: t.replace("dims: [ 3, -1, -1 ]", "dims: [ 1, -1, -1 ]", 1))
    python_backend_repository(repo, files["tiny"], "nedr_static",
                              edit=lambda t: t.replace("[ 3, -1, -1 ]", "[ 3, 128, 128 ]").replace("[ 1, -1, -1 ]", "[ 1, 128, 128 ]"))
    return repo


@pytest.fixture(scope="module")
def server(pytriton, model_files, tmp_path_factory):
    work = tmp_path_factory.mktemp("triton")
    srv = TritonServer(pytriton, _repository(work / "repo", model_files), work)
    try:
        yield srv.start()
    finally:
        srv.stop()


def _url(server: TritonServer, protocol: str) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


def _frames(clip: Path, count: int) -> list[np.ndarray]:
    """`count` real decoded frames as 1×3×H×W float32 batches, padded to the network contract."""
    source = open_source(str(clip))
    out = []
    for frame in source:
        out.append(to_batch(to_float(pad_hwc(frame.image))))
        if len(out) == count:
            break
    source.close()
    return out


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_outputs_equal_the_onnxruntime_backend(server, model_files, tmp_path, protocol):
    frames = _frames(write_clip(tmp_path / "c.mp4", frames=4, size=(200, 150)), 4)
    with TritonBackend(url=_url(server, protocol)) as remote, OnnxRuntimeBackend(model_files["tiny"], threads=1) as local:
        assert remote.provides_transmission and remote.max_batch == 8 and remote.static_hw is None
        info = remote.describe()
        assert info["server_version"] and info["platform"] == "python" and info["instance_kinds"] == ["KIND_CPU"]
        for batch in (frames[0], np.concatenate(frames)):  # one frame, and four in one request
            got, want = remote.infer_full(batch), local.infer_full(batch)
            assert got.clean.shape == batch.shape and got.transmission.shape == (batch.shape[0], 1, *batch.shape[2:])
            assert np.abs(got.clean - want.clean).max() <= 1e-4
            assert np.abs(got.transmission - want.transmission).max() <= 1e-4


@pytest.fixture(scope="module")
def demo_model_server(pytriton, demo_triton_repo, tmp_path_factory):
    """tritonserver serving the demo weights as `nedr export --triton REPO` writes them (CPU
    instances; the ONNX export unverified here, test_export covers that) → (server, the model.onnx).
    The export is the session's (conftest.demo_triton_repo); this repository gets a copy of it."""
    from nedr.cli import main

    work = tmp_path_factory.mktemp("triton_demo")
    repo = work / "repo"
    exported = demo_triton_repo / "nedr" / "1" / "model.onnx"
    assert main(["export", "--triton", str(repo), "--from-onnx", str(exported), "--triton-instance", "cpu",
                 "--no-verify"]) == 0
    model_dir = serve_with_python_backend(repo / "nedr")
    srv = TritonServer(pytriton, repo, work)
    try:
        yield srv.start(wait=120.0), model_dir / "1" / "model.onnx"
    finally:
        srv.stop()


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_demo_model_outputs_equal_the_onnxruntime_backend(demo_model_server, tmp_path, protocol):
    """Our model, not a stand-in: the served export of the demo weights answers real frames (one, a
    batch of two, and a second size) as ONNX Runtime does with the same file here, within 1e-4."""
    server, onnx_path = demo_model_server
    frames = _frames(write_clip(tmp_path / "a.mp4", frames=3, size=(160, 128), seed=1), 3)
    other = _frames(write_clip(tmp_path / "b.mp4", frames=1, size=(128, 160), seed=2), 1)
    with TritonBackend(url=_url(server, protocol)) as remote, OnnxRuntimeBackend(onnx_path, threads=1) as local:
        assert remote.provides_transmission and remote.max_batch == 8 and remote.static_hw is None
        assert remote.describe()["instance_kinds"] == ["KIND_CPU"]
        for batch in (frames[0], np.concatenate(frames[1:]), other[0]):
            got, want = remote.infer_full(batch), local.infer_full(batch)
            assert got.clean.shape == batch.shape and got.transmission.shape == (batch.shape[0], 1, *batch.shape[2:])
            assert np.abs(got.clean - want.clean).max() <= 1e-4
            assert np.abs(got.transmission - want.transmission).max() <= 1e-4
            assert np.abs(got.clean - batch).max() > 1e-3  # a real dehazer, not an identity


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_model_errors_are_one_line(capsys, server, tmp_path, protocol):
    url = _url(server, protocol)
    clip = write_clip(tmp_path / "c.mp4", frames=3, size=(224, 160))
    base = ["--source", str(clip), "--url", url, "-o", "none", "--quiet"]
    _one_line_error(capsys, base + ["--triton-model", "nope"],
                    f"the Triton server at {url} has no model 'nope' (it serves: nedr, nedr_clean, nedr_fp16, nedr_grey, "
                    "nedr_static); write one with `nedr export --triton REPO --triton-name nope`")
    _one_line_error(capsys, base + ["--triton-model", "nedr_fp16"], "Triton model 'nedr_fp16' takes hazy as FP16; nedr sends FP32")
    _one_line_error(capsys, base + ["--triton-model", "nedr_grey"], "Triton model 'nedr_grey' takes hazy of shape [-1, 1, -1, -1]")
    _one_line_error(capsys, base + ["--triton-model", "nedr_static"],
                    "frames of 224x160 do not fit the model's static input 128x128; run it small with --infer-size 128x128")
    # what the server itself rejects is one line too (the client-side size check bypassed)
    with TritonBackend(url=url, triton_model="nedr_static") as remote:
        remote.static_hw = None
        with pytest.raises(BackendError, match=r"rejected a 1×3×160×224 batch for model 'nedr_static': .*unexpected shape"):
            remote.infer_full(np.zeros((1, 3, 160, 224), np.float32))


@pytest.mark.slow
def test_model_without_transmission_runs_unstabilised(capsys, server, tmp_path):
    clip = write_clip(tmp_path / "c.mp4", frames=3)
    assert run_cli(["--source", str(clip), "--url", server.grpc_url, "--triton-model", "nedr_clean", "-o",
                    str(tmp_path / "o.mp4"), "--quiet"]) == 0
    assert "stabilisation off: the model has no `transmission` output" in capsys.readouterr().err
    assert count_frames(tmp_path / "o.mp4")[0] == 3


class _Killer(threading.Thread):
    """Kills the server once `after` inference requests went through and starts it again `down` s later."""

    def __init__(self, srv: TritonServer, after: int, down: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.srv, self.after, self.down = srv, after, down
        self.requests = 0
        self.go = threading.Event()
        self.error: BaseException | None = None

    def counted(self, request):
        def wrapped(backend, batch):
            out = request(backend, batch)
            self.requests += 1
            if self.requests == self.after:
                self.go.set()
                time.sleep(0.3)  # let the kill land before the next request
            return out
        return wrapped

    def run(self) -> None:
        try:
            if self.go.wait(120):
                self.srv.stop()
                time.sleep(self.down)
                self.srv.start()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_run_survives_a_server_restart(capsys, monkeypatch, pytriton, model_files, tmp_path, protocol):
    """tritonserver is killed (SIGKILL) after 10 frames and started again 0.5 s later: the run logs
    each retry, carries on, loses no frame, and its frames equal an onnxruntime run's."""
    python_backend_repository(tmp_path / "repo", model_files["tiny"])  # one model: a quick restart
    srv = TritonServer(pytriton, tmp_path / "repo", tmp_path).start()
    killer = _Killer(srv, after=11, down=0.5)  # the warm-up request + 10 frames
    monkeypatch.setattr(TritonBackend, "_request", killer.counted(TritonBackend._request))
    clip = write_clip(tmp_path / "c.mp4", frames=30, size=(160, 128))
    stats = tmp_path / "stats.json"
    killer.start()
    try:
        rc = run_cli(["--source", str(clip), "--url", _url(srv, protocol), "-o", str(tmp_path / "remote"), "--quiet",
                      "--stats", str(stats)])
        killer.join(timeout=60)
    finally:
        srv.stop()
    err = capsys.readouterr().err
    assert killer.error is None and rc == 0, (killer.error, err, srv.log_tail())
    retries = [line for line in err.splitlines() if "; retry " in line]
    assert retries and retries[0].startswith(f"nedr: triton {_url(srv, protocol)}: "), err
    assert retries[-1].endswith("connection refused; retry " + f"{len(retries)} in {min(8.0, 0.5 * 2 ** (len(retries) - 1)):g} s"), err
    assert any(line.startswith(f"nedr: triton {_url(srv, protocol)}: back after ") for line in err.splitlines()), err
    assert srv.starts == 2
    data = json.loads(stats.read_text())
    assert data["frames"] == 30 and data["backend"]["retries"] == len(retries) and data["backend"]["down_s"] >= 0.5
    assert run_cli(["--source", str(clip), "--backend", "onnxruntime", "--model", str(model_files["tiny"]), "--threads", "1",
                    "-o", str(tmp_path / "local"), "--quiet"]) == 0
    remote, local = sorted((tmp_path / "remote").iterdir()), sorted((tmp_path / "local").iterdir())
    assert [p.name for p in remote] == [p.name for p in local] and len(remote) == 30
    for a, b in zip(remote, local):
        assert np.array_equal(cv2.imread(str(a)), cv2.imread(str(b))), a.name


@pytest.mark.slow
def test_four_files_and_two_live_streams_through_triton(capsys, server, tmp_path):
    """4 file sources and 2 synthetic live streams (FFmpeg's testsrc2 over MPEG-TS/TCP and MJPEG/HTTP)
    at once through one gRPC client: every stream has its output and its own figures, and frames
    of equal size went to the server together."""
    for kind in ("mpegts", "mjpeg"):
        why = FfmpegServer.missing(kind)
        if why:
            pytest.skip(why)
    clips = [str(write_clip(tmp_path / f"file{i}.mp4", frames=12, size=(160, 120), seed=i)) for i in range(4)]
    with FfmpegServer("mpegts", tmp_path) as ts, FfmpegServer("mjpeg", tmp_path) as mj:
        ts.start(), mj.start()
        listed = tmp_path / "sources.txt"
        listed.write_text("# two cameras\n" + f"{ts.url}\n\n{mj.url}\n")
        argv = [arg for c in clips for arg in ("--source", c)] + ["--sources", str(listed)]
        stats = tmp_path / "stats.json"
        rc = run_cli(argv + ["--url", server.grpc_url, "-o", str(tmp_path / "out"), "--max-frames", "12", "--quiet",
                             "--stats", str(stats), "--timeout", "5"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    data = json.loads(stats.read_text())
    assert [s["name"] for s in data["streams"]] == clips + [ts.url, mj.url]
    assert all(s["status"] == "ok" and s["frames"] == 12 for s in data["streams"]), data["streams"]
    assert all({"fps", "dropped", "stages"} <= set(s) and s["stages"]["latency"]["p50_ms"] > 0 for s in data["streams"])
    assert data["frames"] == 72 and data["batching"]["mean_batch"] > 1.5 and data["backend"]["backend"] == "triton"
    outputs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert outputs == [f"file{i}_dehazed.mp4" for i in range(4)] + ["stream_2_dehazed.mp4", "stream_dehazed.mp4"]
    assert all(count_frames(tmp_path / "out" / f"file{i}_dehazed.mp4")[0] == 12 for i in range(4))
    assert all(count_frames(tmp_path / "out" / name)[0] >= 1 for name in outputs[4:])  # live: paced by capture time
    assert "6 streams, 72 frames" in captured.out and f"[5] {ts.url}: 12 frames" in captured.out
