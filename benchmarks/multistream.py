"""Multi-stream batching: total frames/s of N file streams through one backend, batched or not.

    python -m nedr.benchmarks.multistream [--out benchmarks/results/cpu] [--streams 1,2,4] [--frames 6]
                                          [--size 320x136] [--rounds 2] [--backend onnxruntime] [--model FILE]

N file streams (N = 1, 2, 4 by default; each a different stretch of bikes.mp4 with the `nedr run`
haze, resized to --size and written as an mp4, so decoding is part of the cost) go through the
demo weights three ways, on one backend instance warmed up once for the size:

* batched: one `MultiStreamPipeline`, frames of the N streams in shared inference calls;
* sequential: N single-stream `Pipeline` runs one after another (N separate `nedr run`s in a row);
* concurrent: N single-stream pipelines at once, each calling the backend on its own (what N
  `nedr run` processes sharing the box do, minus the process overhead).

Total frames/s = all frames / wall time of the mode. Modes and N are interleaved in every round
(the order rotates), so machine load drifts into all of them alike; each figure is the median
over rounds, and the load average is recorded at the start and the end. Outputs go to a
NullSink: this measures capture, batching, inference and post-processing, not video encoding.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from nedr.runtime.backends import Backend, create_backend
from nedr.runtime.frames import parse_wxh
from nedr.runtime.multistream import MultiStreamPipeline, Stream
from nedr.runtime.pipeline import FrameProcessor, Pipeline, RunConfig
from nedr.runtime.sinks import NullSink, VideoFileSink
from nedr.runtime.sources import VideoFileSource

from .machine import cpu_info, load_average, versions
from .video import hazy_frames

MODES = ("batched", "sequential", "concurrent")


def write_clips(folder: Path, streams: int, frames: int, size: tuple[int, int]) -> list[Path]:
    """`streams` mp4 clips of `frames` hazy bikes.mp4 frames each (consecutive stretches), at `size` (w, h)."""
    _, hazy = hazy_frames("bikes.mp4", seed=7, start=0, stop=streams * frames)
    clips = []
    for i in range(streams):
        sink = VideoFileSink(folder / f"stream{i}.mp4", 25.0)
        for k, frame in enumerate(hazy[i * frames:(i + 1) * frames]):
            sink.write(cv2.resize(frame, size, interpolation=cv2.INTER_AREA), k)
        sink.close()
        clips.append(sink.path)
    return clips


def _timed(run: Callable[[], int]) -> dict[str, Any]:
    start = time.perf_counter()
    frames = run()
    wall = time.perf_counter() - start
    return {"frames": frames, "wall_s": round(wall, 3), "fps": round(frames / wall, 4)}


def run_mode(mode: str, backend: Backend, clips: list[Path], config: RunConfig) -> dict[str, Any]:
    """One mode over `clips`: frames, wall seconds, total frames/s (+ the mean batch when batched)."""
    extra: dict[str, Any] = {}

    def batched() -> int:
        streams = [Stream(str(c), VideoFileSource(c), [NullSink()]) for c in clips]
        summary = MultiStreamPipeline(streams, backend, config).run()
        extra["mean_batch"] = summary["batching"]["mean_batch"]
        return summary["frames"]

    def sequential() -> int:
        return sum(Pipeline(VideoFileSource(c), backend, [NullSink()], config).run()["frames"] for c in clips)

    def concurrent() -> int:
        pipelines = [Pipeline(VideoFileSource(c), backend, [NullSink()], config) for c in clips]
        results: list[dict] = []
        threads = [threading.Thread(target=lambda p=p: results.append(p.run())) for p in pipelines]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(r["frames"] for r in results)

    return {**_timed({"batched": batched, "sequential": sequential, "concurrent": concurrent}[mode]), **extra}


def bench(streams: list[int], frames: int, size: tuple[int, int], rounds: int, backend_name: str,
          model: str | None, threads: int | None, work: Path) -> dict[str, Any]:
    clips = write_clips(work, max(streams), frames, size)
    config = RunConfig(warmup=False, progress=False)
    rows: list[dict[str, Any]] = []
    with create_backend(backend_name, model, threads=threads) as backend:
        w, h = size
        network = FrameProcessor(backend, config).target_hw(h, w)
        backend.warmup(*network, runs=2)
        for r in range(rounds):
            for n in streams:
                order = MODES[r % len(MODES):] + MODES[:r % len(MODES)]
                for mode in order:
                    row = {"round": r, "streams": n, "mode": mode, **run_mode(mode, backend, clips[:n], config)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        described = backend.describe()
    summary = {}
    for n in streams:
        fps = {m: float(np.median([x["fps"] for x in rows if x["streams"] == n and x["mode"] == m])) for m in MODES}
        batches = [x["mean_batch"] for x in rows if x["streams"] == n and x["mode"] == "batched"]
        summary[str(n)] = {**{f"{m}_fps": round(v, 3) for m, v in fps.items()},
                           "batched_vs_sequential": round(fps["batched"] / fps["sequential"], 3),
                           "batched_vs_concurrent": round(fps["batched"] / fps["concurrent"], 3),
                           "mean_batch": round(float(np.median(batches)), 3)}
    return {"frame_size": [h, w], "network_size": list(network), "frames_per_stream": frames, "rounds": rounds,
            "backend": described, "runs": rows, "summary": summary}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/cpu")
    ap.add_argument("--streams", default="1,2,4", help="stream counts N, comma-separated")
    ap.add_argument("--frames", type=int, default=6, help="frames per stream")
    ap.add_argument("--size", default="320x136", metavar="WxH", help="frame size of the clips (bikes.mp4 is 640x272)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--backend", default="onnxruntime", help="torch or onnxruntime (tensorrt with --model ENGINE)")
    ap.add_argument("--model", default=None, help="model file (default: the bundled default weights)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start_load = load_average()
    with tempfile.TemporaryDirectory(prefix="nedr-multistream-") as work:
        result = bench([int(n) for n in args.streams.split(",")], args.frames, parse_wxh(args.size), args.rounds,
                       args.backend, args.model, args.threads, Path(work))
    record = {"machine": {"cpu": cpu_info(), "versions": versions(), "load_avg_at_start": start_load,
                          "load_avg_at_end": load_average()},
              "note": "2 shared CPU cores, other jobs possibly at the same time: absolute figures are "
                      "noisy; modes are interleaved in each round and each figure is the median over rounds",
              "command": "python -m nedr.benchmarks.multistream " + " ".join(sys.argv[1:] if argv is None else argv),
              **result}
    path = out / "multistream.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
