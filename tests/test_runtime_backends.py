"""Inference backends: registry and auto choice, onnxruntime on a pre-exported file without torch,
the torch backend on an odd-sized frame, and the TensorRT backend (skipped without TensorRT/GPU)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from nedr.export.artifacts import cache_dir, cached_onnx
from nedr.runtime.backends import (BACKENDS, Backend, OnnxRuntimeBackend, backend_names,
                                   create_backend, resolve_backend_name)
from nedr.runtime.errors import BackendError
from nedr.runtime.backends.tensorrt import TensorRTBackend, tensorrt_unavailable_reason

from runtime_helpers import FAKE_A, FAKE_T, tiny_onnx

TRT_REASON = tensorrt_unavailable_reason()


def test_registry_and_names():
    assert backend_names() == ["onnxruntime", "tensorrt", "torch", "triton"]
    assert all(issubclass(BACKENDS[n], Backend) for n in backend_names())
    with pytest.raises(BackendError, match=r"unknown backend 'tensorflow'; choose one of onnxruntime, tensorrt, torch, triton, auto"):
        resolve_backend_name("tensorflow")


@pytest.mark.parametrize("model, expected", [
    ("x.engine", "tensorrt"), ("x.plan", "tensorrt"), ("x.onnx", "onnxruntime"),
    ("x.pth", "torch"), ("x.safetensors", "torch"),
])
def test_auto_from_model_suffix(model, expected):
    assert resolve_backend_name("auto", model) == expected


def test_auto_without_model_prefers_onnxruntime_on_cpu():
    assert resolve_backend_name("auto") in ("onnxruntime", "torch")
    with pytest.raises(BackendError, match="cannot tell the backend"):
        resolve_backend_name("auto", "weights.bin")


def test_onnxruntime_backend_on_a_file(tmp_path):
    path = tiny_onnx(tmp_path / "tiny.onnx")
    x = np.random.default_rng(0).random((1, 3, 128, 160), dtype=np.float32)
    with create_backend("onnxruntime", path, threads=1) as backend:
        assert isinstance(backend, OnnxRuntimeBackend) and backend.provides_transmission
        out = backend.infer_full(x)
        assert np.allclose(out.clean, np.clip((x - FAKE_A) / FAKE_T + FAKE_A, 0, 1), atol=1e-6)
        assert out.transmission.shape == (1, 1, 128, 160) and np.allclose(out.transmission, FAKE_T)
        info = backend.describe()
        assert info["providers"] == ["CPUExecutionProvider"] and info["outputs"] == ["clean", "transmission"]
        with pytest.raises(BackendError, match="breaks the network contract"):
            backend.infer(np.zeros((1, 3, 100, 160), np.float32))
    with pytest.raises(BackendError, match="outside its `with` block"):
        backend.infer(x)


def test_onnxruntime_bad_files(tmp_path):
    with pytest.raises(BackendError, match="no such ONNX file"):
        create_backend("onnxruntime", tmp_path / "missing.onnx").activate()
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08garbage")
    with pytest.raises(BackendError, match="ONNX Runtime cannot load") as info:
        create_backend("onnxruntime", junk).activate()
    assert "\n" not in str(info.value)


def test_cached_onnx_reuses_the_export(tmp_path, monkeypatch):
    """The cache key is the weights' sha256; an existing file is reused without exporting."""
    monkeypatch.setenv("NEDR_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"some weights")
    import hashlib

    expected = tmp_path / "onnx" / f"nedr-{hashlib.sha256(b'some weights').hexdigest()[:16]}-jt.onnx"
    expected.parent.mkdir()
    tiny_onnx(expected)
    assert cached_onnx(weights) == expected


def test_runtime_works_without_torch(tmp_path):
    """`import torch` blocked: nedr.runtime imports, and a whole onnxruntime run works on a pre-exported file."""
    model = tiny_onnx(tmp_path / "tiny.onnx")
    sys.path.insert(0, str(Path(__file__).parent))
    from runtime_helpers import write_clip

    clip = write_clip(tmp_path / "c.mp4", frames=4)
    out = tmp_path / "o.mp4"
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        import nedr.runtime, nedr.runtime.backends, nedr.runtime.pipeline, nedr.runtime.sources
        import nedr.runtime.sinks, nedr.runtime.fast, nedr.runtime.temporal, nedr.runtime.backends.tensorrt
        from nedr.runtime.backends import create_backend, resolve_backend_name
        from nedr.runtime.pipeline import run_pipeline
        from nedr.runtime.sinks import open_sink
        from nedr.runtime.sources import open_source
        assert resolve_backend_name("auto", {str(model)!r}) == "onnxruntime"
        src = open_source({str(clip)!r})
        with create_backend("auto", {str(model)!r}) as b:
            s = run_pipeline(src, b, [open_sink({str(out)!r}, fps=src.fps)], progress=False, scale=0.8)
        from nedr.commands import run as cmd  # the CLI module imports without torch too
        print("frames", s["frames"])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["frames", "4"]


def test_torch_backend_on_an_odd_frame():
    """The real network (default weights, CPU) on one odd-sized frame: 203×141 is padded to 224×160 and
    comes back at 203×141 (721×403 goes through the same code with the fake backend in
    test_runtime_pipeline; the real network there costs ~40 s on 2 shared cores)."""
    pytest.importorskip("torch")
    from nedr.runtime.pipeline import FrameProcessor, RunConfig
    from nedr.runtime.sources import Frame

    rng = np.random.default_rng(3)
    frame = (rng.random((141, 203, 3)) * 255).astype(np.uint8)
    calls = []
    with create_backend("torch", device="cpu", threads=2) as backend:
        assert backend.describe()["precision"] == "fp32"
        infer = backend.infer_full
        backend.infer_full = lambda batch: calls.append(batch.shape) or infer(batch)
        out = FrameProcessor(backend, RunConfig())(Frame(0, frame, time.perf_counter()))
    assert calls == [(1, 3, 160, 224)]
    assert out.shape == (141, 203, 3) and out.dtype == np.uint8
    assert 0 < out.mean() < 255


def test_torch_backend_bad_device():
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(BackendError, match="sees no CUDA GPU"):
        create_backend("torch", device="cuda").activate()


# --------------------------------------------------------------------------- TensorRT

def test_tensorrt_without_engine_or_tensorrt_is_one_line(tmp_path):
    with pytest.raises(BackendError, match="needs an engine file") as info:
        TensorRTBackend().activate()
    assert "nedr build" in str(info.value)
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"\0" * 16)
    if TRT_REASON is None:
        pytest.skip("TensorRT and a GPU are present here")
    with pytest.raises(BackendError) as info:
        create_backend("tensorrt", engine).activate()
    assert "\n" not in str(info.value) and str(info.value) == TRT_REASON


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.skipif(TRT_REASON is not None, reason=f"TensorRT backend unavailable: {TRT_REASON}")
def test_tensorrt_engine_round_trip(tmp_path):
    """Build a tiny engine from a hand-made ONNX and check outputs, shapes and CUDA-graph replay."""
    from nedr.export.tensorrt_build import load_tensorrt

    trt = load_tensorrt()
    onnx_path = tiny_onnx(tmp_path / "tiny.onnx")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0 if int(trt.__version__.split(".")[0]) >= 11 else 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(onnx_path))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("hazy", (1, 3, 128, 128), (1, 3, 128, 160), (1, 3, 256, 256))
    config.add_optimization_profile(profile)
    engine = tmp_path / "tiny.engine"
    engine.write_bytes(bytes(builder.build_serialized_network(network, config)))
    for graph in (False, True):
        with create_backend("tensorrt", engine, cuda_graph=graph, check_manifest=False) as backend:
            for h, w in ((128, 160), (256, 224), (128, 160)):
                x = np.random.default_rng(h + w).random((1, 3, h, w), dtype=np.float32)
                out = backend.infer_full(x)
                assert np.allclose(out.clean, np.clip((x - FAKE_A) / FAKE_T + FAKE_A, 0, 1), atol=1e-5)
                assert out.transmission.shape == (1, 1, h, w)
            with pytest.raises(BackendError, match="outside the engine profile"):
                backend.infer(np.zeros((1, 3, 288, 256), np.float32))


def cuda_runtime():
    """nedr.runtime.cuda_buffers with cudart loaded, or a skip naming what is missing."""
    from nedr.runtime import cuda_buffers as cb

    try:
        cb.load_cudart()
        if cb.device_count() < 1:
            pytest.skip("no CUDA GPU visible")
    except BackendError as exc:
        pytest.skip(str(exc))
    return cb


@pytest.mark.gpu
def test_cuda_buffers_round_trip():
    """DeviceBuffer / PinnedBuffer / Stream: host → device → host through async copies."""
    cb = cuda_runtime()
    data = np.arange(1000, dtype=np.float32)
    with cb.Stream() as stream, cb.PinnedBuffer(data.nbytes) as src, cb.PinnedBuffer(data.nbytes) as dst, \
            cb.DeviceBuffer(data.nbytes) as dev:
        src.view(data.shape)[:] = data
        dev.copy_from_host_async(src, stream)
        dev.copy_to_host_async(dst, stream)
        stream.synchronize()
        assert np.array_equal(dst.view(data.shape), data)
        with pytest.raises(ValueError):
            src.view((2000,))


@pytest.mark.gpu
def test_cuda_graph_replays_captured_copies():
    """CudaGraph: a pinned→device→pinned copy chain captured once, replayed on new host data."""
    cb = cuda_runtime()
    n = 4096
    with cb.Stream() as stream, cb.PinnedBuffer(4 * n) as src, cb.PinnedBuffer(4 * n) as dst, \
            cb.DeviceBuffer(4 * n) as dev:
        src.view((n,))[:] = 1.0
        graph = cb.CudaGraph(stream, lambda: (dev.copy_from_host_async(src, stream), dev.copy_to_host_async(dst, stream)))
        try:
            for value in (2.0, 3.0):
                src.view((n,))[:] = value
                graph.launch(stream)
                stream.synchronize()
                assert np.all(dst.view((n,)) == value)
        finally:
            graph.close()


def test_model_file_kinds_are_checked(tmp_path):
    onnx_file = tiny_onnx(tmp_path / "m.onnx")
    with pytest.raises(BackendError, match="takes a checkpoint"):
        create_backend("torch", onnx_file).activate()
    ort = create_backend("onnxruntime", tmp_path / "weights.safetensors")
    assert ort.model_path is None and str(ort.checkpoint).endswith("weights.safetensors")  # exported on activate


def test_an_option_the_backend_does_not_take_is_refused(tmp_path):
    """--cuda-graph with onnxruntime used to be dropped silently; None still means 'not given'."""
    model = tiny_onnx(tmp_path / "tiny.onnx")
    with pytest.raises(BackendError, match=r"the onnxruntime backend takes no cuda_graph option \(it takes: threads"):
        create_backend("onnxruntime", model, cuda_graph=True)
    assert isinstance(create_backend("onnxruntime", model, cuda_graph=None, threads=1), OnnxRuntimeBackend)


def test_onnxruntime_without_spinning_gives_the_same_output(tmp_path):
    """spin=False (what nedr run uses) only lets idle threads sleep: same numbers, said in describe()."""
    model = tiny_onnx(tmp_path / "tiny.onnx")
    x = np.random.default_rng(1).random((1, 3, 128, 160), dtype=np.float32)
    with create_backend("onnxruntime", model, threads=2) as spinning, \
            create_backend("onnxruntime", model, threads=2, spin=False) as sleeping:
        assert np.array_equal(spinning.infer(x), sleeping.infer(x))
        assert spinning.describe()["spin"] is True and sleeping.describe()["spin"] is False
