"""What a benchmark ran on: CPU/GPU model, threads, library versions, load, and process memory.

Numbers from these shared machines only mean something next to this record, so every report
carries it. Memory is read from /proc (Linux): resetting the peak-RSS mark ("5" into
/proc/self/clear_refs) lets one process measure each backend's working set in turn.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
from pathlib import Path

INT8_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "fma")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
PACKAGES = ("torch", "onnxruntime", "onnxruntime-gpu", "onnx", "numpy", "opencv-python-headless", "opencv-python",
            "tensorrt", "cuda-python", "polygraphy", "scikit-image")


def cpu_info() -> dict:
    """CPU model, core count, and the SIMD flags that decide INT8 speed (VNNI or not)."""
    info = {"machine": platform.machine(), "cores": os.cpu_count(), "model": platform.processor() or "unknown"}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    lines = text.splitlines()
    info["model"] = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), info["model"])
    flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
    info["int8_flags"] = sorted(f for f in flags if f in INT8_FLAGS)
    info["vnni"] = any(f in flags for f in VNNI_FLAGS)
    return info


def gpu_info() -> dict | None:
    """The CUDA GPU (name, capability; memory via torch) and Jetson board, or None without one.
    Asks torch first, then cuda-python / nvidia-smi (a Jetson or TensorRT box may have no torch);
    never initialises CUDA when torch is a CPU build."""
    from nedr.errors import UserError
    from nedr.export.tensorrt_build import board_model, gpu_identity
    from nedr.runtime.backends import torch_cuda_available

    if torch_cuda_available():
        import torch

        props = torch.cuda.get_device_properties(0)
        info = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                "memory_gib": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda,
                "count": torch.cuda.device_count()}
    else:
        try:
            name, capability = gpu_identity()
        except UserError:
            return None
        info = {"name": name, "capability": capability}
    board = board_model()
    return {**info, "board": board} if board else info


def versions() -> dict:
    """Installed versions of the libraries a result depends on (absent ones left out)."""
    from nedr import __version__

    found = {"python": platform.python_version(), "nedr": __version__}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    if "tensorrt" not in found and importlib.util.find_spec("tensorrt") is not None:  # JetPack's apt build
        import tensorrt

        found["tensorrt"] = tensorrt.__version__
    return found


def load_average() -> list[float] | None:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_mib() -> float | None:
    """Resident set size of this process now (None off Linux)."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib / 1024


def reset_peak_rss() -> bool:
    """Start a new peak-RSS window (Linux >= 4.0); False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mib() -> float | None:
    """Peak resident set size since the last `reset_peak_rss` (or process start)."""
    kib = _status_kib("VmHWM")
    return None if kib is None else kib / 1024


PEAK_CONV = {"channels": 64, "kernel": 5, "hw": (128, 128)}  # DREM's dominant layer, at its 128² level


def conv_peak_gmac_s(threads: int, seconds: float = 1.5) -> dict:
    """The machine's dense-convolution rate: the best of repeated ONNX Runtime (CPU) calls of one
    5×5 64→64 conv, DREM's dominant layer, at the same thread count as the benchmark.

    It is the ceiling a backend's achieved GMAC/s is read against: a backend near it can only get
    faster by doing fewer operations (a lighter network, INT8 where the CPU has VNNI, fast mode).
    """
    import time

    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from nedr.export.ort_session import ort_session

    c, k, (h, w) = PEAK_CONV["channels"], PEAK_CONV["kernel"], PEAK_CONV["hw"]
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((c, c, k, k)).astype(np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[k // 2] * 4)
    graph = helper.make_graph([node], "peak_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, h, w])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    session = ort_session(model, threads=threads)
    x = rng.standard_normal((1, c, h, w)).astype(np.float32)
    gmac = c * c * k * k * h * w / 1e9
    session.run(None, {"x": x})  # warm-up: kernel selection, packing
    best, calls, start = float("inf"), 0, time.perf_counter()
    while calls < 5 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        session.run(None, {"x": x})
        best = min(best, time.perf_counter() - t0)
        calls += 1
    return {"gmac_s": gmac / best, "what": f"ONNX Runtime CPU conv {k}×{k} {c}→{c} at {h}×{w}, best of {calls} calls",
            "threads": threads}


def cuda_conv_peak_gmac_s(seconds: float = 1.0) -> dict:
    """The same layer in PyTorch on the GPU, FP16 channels_last (tensor cores), batch 8 so the GPU
    is full: the ceiling for the GPU rows."""
    import time

    import torch

    c, k, (h, w) = PEAK_CONV["channels"], PEAK_CONV["kernel"], PEAK_CONV["hw"]
    conv = torch.nn.Conv2d(c, c, k, padding=k // 2, bias=False).cuda().half().to(memory_format=torch.channels_last)
    x = torch.randn(8, c, h, w, device="cuda", dtype=torch.half).to(memory_format=torch.channels_last)
    torch.backends.cudnn.benchmark = True
    with torch.no_grad():
        for _ in range(3):
            conv(x)
        torch.cuda.synchronize()
        calls, start = 0, time.perf_counter()
        while calls < 20 or time.perf_counter() - start < seconds:
            conv(x)
            calls += 1
        torch.cuda.synchronize()
    per_call = (time.perf_counter() - start) / calls
    return {"gmac_s": 8 * c * c * k * k * h * w / 1e9 / per_call,
            "what": f"PyTorch CUDA FP16 channels_last conv {k}×{k} {c}→{c}, 8×{h}×{w}, mean of {calls} calls"}
