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
