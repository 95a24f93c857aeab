"""ONNX Runtime on the CPU: INT8 (`nedr quantize --target cpu`) against FP32, and what it costs in PSNR.

    python -m nedr.benchmarks.int8_cpu [--onnx nedr.onnx] [--size 480x640] [--runs 5] [--threads 2]
                                        [--out benchmarks/results/cpu/int8_vs_fp32.json]

Both sessions run in one process with the same thread settings (intra_op_num_threads = threads,
inter_op 1, sequential), interleaved call by call (FP32, INT8, FP32, INT8, ...), so noise from
other work on a shared machine lands on both alike. PSNR: INT8 against FP32 on held-out frames at
the same size (the quantizer's own report), plus the timed frame. The goal set for this step:
INT8 >= 2x faster at >= 38 dB.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from nedr.contract import INPUT_NAME
from nedr.export.ort_session import ort_session
from nedr.fileio import write_text_atomic

from .machine import cpu_info, load_average, versions
from .timing import interleaved

GOAL_SPEEDUP = 2.0
GOAL_PSNR_DB = 38.0
DEFAULT_OUT = Path("benchmarks/results/cpu/int8_vs_fp32.json")


def interleaved_latency(paths: dict[str, Path], frame: np.ndarray, threads: int, runs: int, warmup: int = 1) -> dict:
    """Median/min/max ms per session, timed round-robin on the same frame."""
    sessions = {k: ort_session(p, threads=threads) for k, p in paths.items()}
    outputs = {k: s.run(None, {INPUT_NAME: frame})[0] for k, s in sessions.items()}  # the first warm-up round
    timings = interleaved({k: (lambda s=s: s.run(None, {INPUT_NAME: frame})) for k, s in sessions.items()},
                          warmup=max(0, warmup - 1), min_iters=runs, max_iters=runs, min_seconds=0)
    return {"ms": {k: {"median": t.percentile(50), "min": min(t.samples_ms), "max": max(t.samples_ms),
                       "runs": t.samples_ms} for k, t in timings.items()}, "outputs": outputs}


def op_profile(path: Path, frame: np.ndarray, threads: int) -> dict[str, float]:
    """Kernel ms per op type for one run (ONNX Runtime's profiler, after one warm-up run)."""
    import collections
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        session = ort_session(path, threads=threads, profile_prefix=str(Path(tmp) / "prof"))
        session.run(None, {INPUT_NAME: frame})
        session.run(None, {INPUT_NAME: frame})
        events = json.loads(Path(session.end_profiling()).read_text())
    kernels = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    kernels = kernels[len(kernels) // 2:]  # the second run
    per_op: dict[str, float] = collections.Counter()
    for e in kernels:
        per_op[e["args"]["op_name"]] += e["dur"] / 1000
    return {k: round(v, 1) for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])}


def main(argv=None) -> int:
    from nedr.export.calibration import heldout_frames
    from nedr.export.quantize import DEFAULT_FRAMES, DEFAULT_METHOD, parse_size, quantize
    from nedr.metrics import psnr

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", help="FP32 export (default: export the bundled default weights)")
    parser.add_argument("--work", default="nedr-output/int8-bench", help="folder for the exported/quantized files")
    parser.add_argument("--size", type=parse_size, default=(480, 640))
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="calibration frames")
    parser.add_argument("--method", default=DEFAULT_METHOD)
    parser.add_argument("--target-psnr", type=float, default=None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    load_at_start = load_average()
    if args.onnx:
        fp32 = Path(args.onnx)
    else:
        from nedr.export import export_onnx
        from nedr.model import load_checkpoint

        fp32 = work / "nedr.onnx"
        if not fp32.is_file():
            export_onnx(load_checkpoint(), fp32)
    int8 = work / f"nedr.int8.cpu.{args.size[0]}x{args.size[1]}.onnx"
    report = quantize(fp32, int8, frames=args.frames, method=args.method, size=args.size, target="cpu",
                      target_psnr=args.target_psnr, log=print)
    print(report.summary())

    frame = heldout_frames(args.size, 1)[0]
    timing = interleaved_latency({"fp32": fp32, "int8": int8}, frame, args.threads, args.runs)
    fp32_ms, int8_ms = timing["ms"]["fp32"]["median"], timing["ms"]["int8"]["median"]
    frame_psnr = psnr(timing["outputs"]["int8"], timing["outputs"]["fp32"])
    speedup = fp32_ms / int8_ms
    profiles = {k: op_profile(p, frame, args.threads) for k, p in (("fp32", fp32), ("int8", int8))}
    result = {
        "what": "ONNX Runtime CPU: INT8 Q/DQ (nedr quantize --target cpu) vs FP32, same process, same threads, interleaved",
        "machine": {"cpu": cpu_info(), "threads": args.threads, "inter_op_threads": 1,
                    "load_avg_at_start": load_at_start},
        "versions": versions(),
        "size": list(args.size),
        "fp32_ms": timing["ms"]["fp32"], "int8_ms": timing["ms"]["int8"],
        "speedup": speedup,
        "psnr_db_heldout": report.psnr_db, "psnr_db_heldout_worst": report.psnr_min_db,
        "psnr_db_timed_frame": frame_psnr,
        "goal": {"speedup": GOAL_SPEEDUP, "psnr_db": GOAL_PSNR_DB,
                 "met": bool(speedup >= GOAL_SPEEDUP and report.psnr_db >= GOAL_PSNR_DB)},
        "kernel_ms_by_op_type": profiles,
        "averagepool_share": {k: round(prof.get("AveragePool", 0.0) / max(sum(prof.values()), 1e-9), 3)
                              for k, prof in profiles.items()},  # the guided filter's box sums, FP32 in both
        "conv_speedup": round(profiles["fp32"].get("Conv", 0.0)
                              / max(profiles["int8"].get("QLinearConv", 0.0) + profiles["int8"].get("Conv", 0.0), 1e-9), 2),
        "quantize": report.as_dict(),
        "note": "2 shared CPU cores with other jobs running: absolute times are noisy, the ratio is measured "
                "back to back",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(result, indent=1, default=str))
    print(f"{args.size[0]}x{args.size[1]}, {args.threads} threads: FP32 {fp32_ms:.0f} ms, INT8 {int8_ms:.0f} ms "
          f"(x{speedup:.2f}), PSNR {report.psnr_db:.2f} dB held-out (goal x{GOAL_SPEEDUP:g} at {GOAL_PSNR_DB:g} dB: "
          f"{'met' if result['goal']['met'] else 'NOT met'}); wrote {args.out}")
    for k, prof in profiles.items():
        print(f"  {k} kernel ms by op type: " + ", ".join(f"{op} {ms:.0f}" for op, ms in list(prof.items())[:5]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
