"""One short GPU session for the video runtime: environment, GPU-marked tests, torch CUDA backend timings.

Run from the repo root on a GPU machine (works without installing the package: it builds a
throw-away import shim mapping the stage folders to `nedr.*`):
    python benchmarks/runtime_gpu_check.py --out OUT_DIR [--seconds 120]
Writes OUT_DIR/runtime_gpu_check.json (and pytest's output in the log). Each step is independent:
a missing package (TensorRT, cuda-python, onnxruntime-gpu, OpenCV) skips that step and says why.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shim() -> str:
    """A folder whose `nedr` package is the repo's, with model/export/runtime/benchmarks mapped in."""
    try:
        import nedr.runtime  # noqa: F401  (already installed)
        return ""
    except ImportError:
        pass
    base = Path(tempfile.mkdtemp(prefix="nedr-shim-"))
    pkg = base / "nedr"
    pkg.mkdir()
    for item in (ROOT / "nedr").iterdir():
        (pkg / item.name).symlink_to(item)
    for folder, name in (("model", "model"), ("export", "export"), ("runtime", "runtime"), ("benchmarks", "benchmarks")):
        (pkg / name).symlink_to(ROOT / folder)
    sys.path.insert(0, str(base))
    return str(base)


def step(report: dict, name: str, fn) -> None:
    t0 = time.time()
    try:
        report[name] = fn()
    except Exception as exc:  # noqa: BLE001
        from nedr.errors import first_line  # importable once main() has made the shim

        report[name] = {"error": f"{type(exc).__name__}: {first_line(exc) if str(exc).strip() else ''}",
                        "trace": traceback.format_exc()[-1500:]}
    report[name + "_s"] = round(time.time() - t0, 1)
    print(f"[{name}] {json.dumps(report[name], default=str)[:1500]}", flush=True)


def env() -> dict:
    out = {"python": sys.version.split()[0]}
    for mod in ("numpy", "cv2", "torch", "onnxruntime", "tensorrt", "tqdm", "onnx", "pytest"):
        try:
            m = __import__(mod)
            out[mod] = getattr(m, "__version__", "?")
        except Exception as exc:  # noqa: BLE001
            out[mod] = f"missing ({type(exc).__name__})"
    try:
        from cuda.bindings import runtime as cudart  # noqa: F401
        out["cuda-python"] = "cuda.bindings"
    except Exception:  # noqa: BLE001
        try:
            from cuda import cudart  # noqa: F401
            out["cuda-python"] = "cuda.cudart"
        except Exception as exc:  # noqa: BLE001
            out["cuda-python"] = f"missing ({type(exc).__name__})"
    try:
        import onnxruntime as ort
        out["ort_providers"] = ort.get_available_providers()
    except Exception:  # noqa: BLE001
        pass
    try:
        import torch
        out["cuda"] = torch.cuda.is_available() and torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        pass
    return out


def gpu_tests(shim_dir: str) -> dict:
    env_vars = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (shim_dir, os.environ.get("PYTHONPATH", "")) if p))
    # -P: the checkout's own nedr/ (without the stage folders) must not shadow the shim
    r = subprocess.run([sys.executable, "-P", "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                        "tests/test_runtime_backends.py", "-k", "tensorrt or cuda or torch_backend"],
                       cwd=ROOT, capture_output=True, text=True, timeout=240, env=env_vars)
    print(r.stdout[-3000:], r.stderr[-1500:], flush=True)
    return {"rc": r.returncode, "tail": r.stdout.strip().splitlines()[-6:]}


def torch_cuda(seconds: float) -> dict:
    import numpy as np

    from nedr.runtime.backends import create_backend
    from nedr.runtime.pipeline import FrameProcessor, Pipeline, RunConfig
    from nedr.runtime.sinks import NullSink
    from nedr.runtime.sources import Frame, Source

    import cv2

    rng = np.random.default_rng(0)
    base = cv2.resize((rng.random((17, 40, 3)) * 255).astype(np.uint8), (1280 + 200, 720), interpolation=cv2.INTER_CUBIC)

    class Pan(Source):
        """A 1280×720 pan across a smooth random image (frames made on the fly)."""
        kind = "memory"

        def __init__(self, n):
            super().__init__("pan")
            self.frame_count, self.fps, self.n = n, 30.0, n

        def __iter__(self):
            for i in range(self.n):
                x = (2 * i) % 200
                yield Frame(i, np.ascontiguousarray(base[:, x:x + 1280]), time.perf_counter())

    rows = {}
    for label, kwargs, scale in (("fp16_channels_last_full", {}, None), ("fp32_full", {"half": False, "channels_last": False}, None),
                                 ("fp16_channels_last_scale0.5", {}, 0.5)):
        backend = create_backend("torch", device="cuda", **kwargs)
        with backend:
            proc = FrameProcessor(backend, RunConfig(scale=scale))
            work = proc.prepare(next(iter(Pan(1))))
            backend.warmup(*work.batch.shape[-2:], runs=3)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds / 6 and n < 200:
                backend.infer_full(work.batch)
                n += 1
            infer_fps = n / (time.perf_counter() - t0)
            frames = max(20, min(300, int(infer_fps * seconds / 6)))
            s = Pipeline(Pan(frames), backend, [NullSink()], RunConfig(scale=scale, progress=False)).run()
        rows[label] = {"frame": [720, 1280], "network": s["network_size"], "inference_only_fps": round(infer_fps, 2),
                       "pipeline_fps": s["fps"], "ratio": round(s["fps"] / infer_fps, 3), "frames": s["frames"],
                       "stages_p50_ms": {k: v["p50_ms"] for k, v in s["stages"].items()},
                       "backend": s["backend"]}
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    ap.add_argument("--seconds", type=float, default=90)
    args = ap.parse_args()
    shim_dir = shim()
    report: dict = {}
    step(report, "env", env)
    step(report, "gpu_tests", lambda: gpu_tests(shim_dir))
    step(report, "torch_cuda", lambda: torch_cuda(args.seconds))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "runtime_gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
