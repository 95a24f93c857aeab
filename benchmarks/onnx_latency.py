"""ONNX Runtime (CPU) against PyTorch eager (CPU) on the same frames and thread count.

Both run in one process, interleaved call by call (torch, ORT, torch, ORT, ...), so machine noise
from other work on a shared box lands on both alike. Threads: torch.set_num_threads(n) and ORT
intra_op_num_threads=n (inter_op 1, sequential execution).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nedr.export.onnx_export import INPUT_NAME, ExportableNeDR
from nedr.export.verify import DEFAULT_SIZES, check_sizes, model_as_exported, sample_frames
from nedr.model.network import NeDR


@dataclass
class LatencyRow:
    size: tuple[int, int]
    threads: int
    torch_ms: float  # median
    ort_ms: float  # median
    runs: int
    max_abs_err: float

    @property
    def speedup(self) -> float:
        return self.torch_ms / self.ort_ms

    def __str__(self) -> str:
        return (f"{self.size[0]}×{self.size[1]}, {self.threads} threads: torch {self.torch_ms:.0f} ms, "
                f"ONNX Runtime {self.ort_ms:.0f} ms (×{self.speedup:.2f}), median of {self.runs}, "
                f"max |Δ| {self.max_abs_err:.1e}")


@torch.no_grad()
def cpu_latency(model: NeDR, onnx_path: str | Path, sizes=DEFAULT_SIZES, threads: int = 2,
                runs: int = 5, warmup: int = 1) -> list[LatencyRow]:
    """Median latency per frame (hazy photo per size, batch 1) of PyTorch eager and ONNX Runtime on
    the CPU, interleaved; `model` is set to the options baked into the file first."""
    import onnxruntime as ort

    twin, with_t = model_as_exported(model, onnx_path)
    module = ExportableNeDR(twin, with_t).eval()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    first = session.get_outputs()[0].name
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    try:
        for frame in sample_frames(check_sizes(sizes)):
            x = torch.from_numpy(frame)

            def run_torch():
                out = module(x)
                return (out[0] if isinstance(out, tuple) else out).numpy()

            def run_ort():
                return session.run([first], {INPUT_NAME: frame})[0]

            for _ in range(warmup):
                run_torch(), run_ort()
            times: dict = {run_torch: [], run_ort: []}
            last: dict = {}
            for _ in range(runs):
                for fn, bucket in times.items():
                    start = time.perf_counter()
                    last[fn] = fn()
                    bucket.append(time.perf_counter() - start)
            rows.append(LatencyRow(tuple(frame.shape[-2:]), threads, 1000 * float(np.median(times[run_torch])),
                                   1000 * float(np.median(times[run_ort])), runs,
                                   float(np.abs(last[run_torch] - last[run_ort]).max())))
    finally:
        torch.set_num_threads(previous_threads)
    return rows
