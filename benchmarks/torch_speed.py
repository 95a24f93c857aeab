"""PyTorch latency/accuracy rows (CPU or CUDA: FP32, FP16, channels_last, CUDA graphs).

Every variant is timed against the same FP32 reference output, and variants of one size are
interleaved round-robin so machine noise hits them alike.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from nedr.model.network import NeDR

VARIANTS = ("fp32", "fp16", "fp16_channels_last", "fp16_cuda_graph")


@dataclass
class Row:
    variant: str
    size: tuple[int, int]
    p50_ms: float
    p95_ms: float
    p99_ms: float
    fps: float
    max_abs_err: float
    psnr_db: float
    iterations: int


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _psnr(ref: torch.Tensor, out: torch.Tensor) -> float:
    mse = float(((ref.float() - out.float()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def make_runner(model: NeDR, variant: str, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """A zero-argument callable producing J for `x` in the given variant."""
    m = copy.deepcopy(model).eval()
    if variant == "fp32":
        return lambda: m(x)
    m = m.half()
    if "channels_last" in variant or "graph" in variant:
        m = m.to(memory_format=torch.channels_last)
    xh = x.half().contiguous(memory_format=torch.channels_last) if "channels_last" in variant or "graph" in variant else x.half()
    if "graph" not in variant:
        return lambda: m(xh)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            m(xh)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = m(xh)

    def run() -> torch.Tensor:
        graph.replay()
        return static_out

    return run


@torch.no_grad()
def bench_sizes(model: NeDR, frames: dict[tuple[int, int], torch.Tensor], variants=VARIANTS,
                device: torch.device | str = "cuda", min_seconds: float = 1.0,
                max_iters: int = 200) -> list[Row]:
    """Time each variant on each frame (1×3×H×W in [0, 1], H, W on the ×32 contract)."""
    device = torch.device(device)
    model = model.to(device).eval()
    rows = []
    for size, frame in frames.items():
        x = frame.to(device)
        ref = model(x).float()
        runners = {}
        for v in variants:
            if v != "fp32" and device.type != "cuda":
                continue
            runners[v] = make_runner(model, v, x)
        times = {v: [] for v in runners}
        outs = {v: r() for v, r in runners.items()}  # warm-up + accuracy
        for _ in range(3):
            for r in runners.values():
                r()
        _sync(device)
        start = time.perf_counter()
        while time.perf_counter() - start < min_seconds * len(runners) and len(next(iter(times.values()))) < max_iters:
            for v, r in runners.items():
                t0 = time.perf_counter()
                r()
                _sync(device)
                times[v].append(time.perf_counter() - t0)
        for v, ts in times.items():
            ms = np.array(ts) * 1000
            err = (outs[v].float() - ref).abs()
            rows.append(Row(v, size, float(np.percentile(ms, 50)), float(np.percentile(ms, 95)),
                            float(np.percentile(ms, 99)), float(1000 / ms.mean()), float(err.max()),
                            _psnr(ref, outs[v]), len(ts)))
        del runners, outs
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows
