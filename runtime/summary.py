"""What a run reports: stage timings while it runs, then the summary dict (`--stats`) and its lines.

Apart from the pipeline so the figures are built in one place from the run's parts, and the
multi-stream batcher times its calls with the same `StageTimes`.
"""
from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

from .backends import Backend
from .frame_math import FrameProcessor
from .realtime import RealtimeChoice
from .sinks import Sink
from .sources import Source

STAGES = ("read", "prepare", "infer", "finish", "write", "latency")


class StageTimes:
    """Per-stage durations (seconds), thread-safe appends, p50/p95 summaries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: dict[str, list[float]] = {s: [] for s in STAGES}

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.values.setdefault(stage, []).append(seconds)

    def p50_ms(self, stage: str) -> float | None:
        """The running median, cheap enough for a progress bar's every update."""
        v = self.values.get(stage) or []
        return 1000 * float(np.median(v)) if v else None

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        with self._lock:
            for stage, v in self.values.items():
                if v:
                    a = np.asarray(v) * 1000
                    out[stage] = {"p50_ms": round(float(np.percentile(a, 50)), 3),
                                  "p95_ms": round(float(np.percentile(a, 95)), 3),
                                  "mean_ms": round(float(a.mean()), 3), "count": int(a.size)}
        return out


def _realtime_summary(choice: RealtimeChoice | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    return {"target_fps": choice.target_fps, "reachable": choice.reachable, "budget_ms": round(choice.budget_s * 1e3, 2),
            "network_hw": list(choice.network_hw), "latency_ms": round(choice.latency_s * 1e3, 2),
            "measured": [{"hw": list(hw), "ms": round(s * 1e3, 2)} for hw, s in choice.measured]}


def run_summary(*, processor: FrameProcessor, times: StageTimes, source: Source, backend: Backend,
                sinks: Sequence[Sink], frames: int, elapsed: float, interrupted: bool, stopped_by: str | None,
                warmup_s: float) -> dict[str, Any]:
    """The summary of one stream's run (JSON-serialisable; `format_summary` prints it)."""
    config = processor.config
    stages = times.summary()
    infer = stages.get("infer", {})
    # fps over the frames after the first (the clock starts when frame 0 enters the backend)
    fps = (frames - 1) / elapsed if frames > 1 and elapsed > 0 else (1 / elapsed if frames and elapsed else 0.0)
    stab = processor.stabilizer
    fast = config.infer_size or config.scale or processor.realtime
    described = source.describe()
    return {
        "frames": frames,
        "elapsed_s": round(elapsed, 3),
        "fps": round(fps, 3),
        "inference_only_fps": round(1000 / infer["mean_ms"], 3) if infer else None,
        "dropped": int(source.dropped),
        "reconnects": int(described.get("reconnects") or 0),        # live sources (0 for files)
        "disconnected_s": float(described.get("disconnected_s") or 0.0),
        "interrupted": interrupted,
        "stopped_by": stopped_by or "end_of_source",
        "warmup_s": round(warmup_s, 3),
        "frame_size": list(processor.last_size) if processor.last_size else None,
        "network_size": list(processor.network_hw) if processor.network_hw else None,
        "size_changes": processor.size_changes,
        "fast_mode": {"infer_size": list(config.infer_size) if config.infer_size else None,
                      "scale": config.scale, "radius": config.fast_radius,
                      "eps": config.fast_eps} if fast else None,
        "realtime": _realtime_summary(processor.realtime),
        "stabilize": {"enabled": stab.enabled and stab.unavailable is None, "alpha": stab.smoother.alpha,
                      "scene_cuts": stab.detector.cuts, "unavailable": stab.unavailable},
        "stages": stages,
        "backend": backend.describe(),
        "source": described,
        "sinks": [s.describe() for s in sinks],
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A few human lines for the terminal."""
    st = summary.get("stages", {})

    def p(stage: str) -> str:
        s = st.get(stage)
        return f"{s['p50_ms']:.1f}/{s['p95_ms']:.1f}" if s else "-"

    b = summary.get("backend", {})
    where = b.get("device") or ",".join(p.replace("ExecutionProvider", "") for p in b.get("providers", []) or []) or ""
    lines = [
        f"{summary['frames']} frames in {summary['elapsed_s']:.1f} s: {summary['fps']:.2f} fps end to end"
        + (f" (inference alone {summary['inference_only_fps']:.2f} fps)" if summary.get("inference_only_fps") else "")
        + (f", {summary['dropped']} dropped" if summary.get("dropped") else ""),
        f"backend {b.get('backend')} {where}".rstrip() + f"; frame {summary.get('frame_size')} → network "
        f"{summary.get('network_size')}" + (" (fast mode)" if summary.get("fast_mode") else ""),
        f"latency p50/p95 ms: read {p('read')}, prepare {p('prepare')}, infer {p('infer')}, finish {p('finish')}, "
        f"write {p('write')}, end-to-end {p('latency')}",
    ]
    stab = summary.get("stabilize") or {}
    if stab.get("unavailable"):
        lines.append(f"stabilisation off: {stab['unavailable']}")
    elif stab.get("enabled"):
        lines.append(f"stabilisation: A smoothed (EMA α={stab['alpha']}), {stab['scene_cuts']} scene cut(s)")
    src = summary.get("source") or {}
    if src.get("bad_frames"):
        lines.append(f"{src['bad_frames']} undecodable frame(s) in {src['source']} skipped; the frames before and "
                     "after them are in the output")
    if src.get("reconnects") or src.get("disconnected_s") or src.get("stalls"):
        lines.append(f"source reconnected {src.get('reconnects', 0)} time(s), {src.get('disconnected_s', 0):.1f} s "
                     "without frames" + (f", {src['stalls']} stall(s)" if src.get("stalls") else ""))
    for sink in summary.get("sinks") or []:
        paced = sink.get("paced")
        if paced and (paced.get("repeated") or paced.get("dropped")):
            lines.append(f"live recording in real time at {paced['fps']:g} fps: {paced['frames_in']} frame(s) "
                         f"processed, {paced['repeated']} repeated, {paced['dropped']} dropped"
                         + (f", {paced['skipped_s']:.1f} s of outage left out" if paced.get("skipped_s") else ""))
    if summary.get("interrupted"):
        how = "Ctrl-C" if summary.get("stopped_by") == "interrupt" else summary.get("stopped_by", "the stop")
        lines.append(f"interrupted: the output holds every frame finished before {how}")
    return "\n".join(lines)
