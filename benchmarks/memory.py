"""Peak memory of one backend, measured in a process of its own.

In the benchmark's own process every backend shares one heap (and ONNX Runtime keeps an arena),
so what one backend frees another reuses and per-backend peaks blur. Here a fresh interpreter
imports only what that backend needs (no torch for ONNX Runtime or TensorRT, as on a deployment
box), loads the model, dehazes one frame per size in ascending order, and reports the process's
peak resident memory after each size (and torch's peak CUDA allocation on a GPU).

    python -m nedr.benchmarks.memory '<json spec>'   # prints one JSON line
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .candidates import Candidate

TIMEOUT_S = 900


def _child(spec: dict) -> dict:
    import numpy as np

    from nedr.runtime.pipeline import FrameProcessor, RunConfig
    from nedr.runtime.sources import Frame

    from .candidates import backend_for
    from .machine import peak_rss_mib, rss_mib

    candidate = Candidate(spec["backend"], spec["precision"], spec.get("variant", ""))
    baseline = rss_mib()
    backend = backend_for(candidate, Path(spec["model"]) if spec.get("model") else None, cuda=spec["cuda"],
                          threads=spec["threads"], checkpoint=spec.get("checkpoint"))
    torch = sys.modules.get("torch") if spec["cuda"] and candidate.backend == "torch" else None
    peaks, gpu_peaks = [], []
    rng = np.random.default_rng(0)
    with backend:
        loaded = rss_mib()
        for h, w, infer in spec["sizes"]:
            config = RunConfig(infer_size=tuple(infer) if infer else None, stabilize=False, warmup=False, progress=False)
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            FrameProcessor(backend, config)(Frame(0, image, 0.0))
            peaks.append(peak_rss_mib())
            gpu_peaks.append(torch.cuda.max_memory_allocated() / 2**20 if torch is not None else None)
    return {"baseline_mib": baseline, "loaded_mib": loaded, "peak_mib": peaks, "gpu_peak_mib": gpu_peaks}


def measure_peaks(candidate: Candidate, model: Path | None, *, cuda: bool, threads: int, checkpoint: str | None,
                  sizes: list[tuple[int, int, tuple[int, int] | None]]) -> dict:
    """Peak memory per size (H, W, fast-mode (W, H) or None) for `candidate`, or {"error": ...}."""
    spec = {"backend": candidate.backend, "precision": candidate.precision, "variant": candidate.variant,
            "model": str(model) if model else None, "checkpoint": checkpoint, "cuda": cuda, "threads": threads,
            "sizes": [[h, w, list(infer) if infer else None] for h, w, infer in sizes]}
    try:
        done = subprocess.run([sys.executable, "-m", __name__, json.dumps(spec)], capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {TIMEOUT_S} s"}
    if done.returncode != 0:
        lines = (done.stderr or "").strip().splitlines()
        return {"error": (lines[-1] if lines else f"exit code {done.returncode}")[:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
