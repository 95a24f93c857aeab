"""`nedr bench`: accuracy against the PyTorch original, dehazing quality, and speed, in one report.

Every backend/precision this machine can run (see `candidates`) is loaded once, in one process,
and then:

* accuracy: each backend's J on real frames against PyTorch FP32's J (max/mean |Δ|, PSNR, SSIM);
* quality: PSNR/SSIM against ground truth on the held-out synthetic set (always) and the
  SOTS-indoor pairs (when given), with the hazy input and the dark channel prior as rows;
* speed: per size, all backends timed round-robin (`timing.interleaved`), so the ratios between
  them come from the same minutes of the same machine. A size whose full-resolution run would
  exceed the time budget (estimated from the previous size) runs in fast mode instead, and says so;
* memory: peak RSS (and CUDA allocation) per backend and size, each in a process of its own.

`run_bench` returns the report dict; `nedr.benchmarks.report` writes it out.
"""
from __future__ import annotations

import datetime as _dt
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from nedr.contract import padded_hw
from nedr.errors import UserError
from nedr.export.profiles import format_hw
from nedr.export.artifacts import Artifact, ModelFiles, cache_dir
from nedr.metrics import psnr, psnr_over_frames
from nedr.runtime.backends import Backend
from nedr.runtime.errors import BackendError
from nedr.runtime.frames import from_batch, pad_hwc, to_batch, to_float
from nedr.runtime.pipeline import FrameProcessor, RunConfig
from nedr.runtime.sources import Frame

from . import candidates as cand
from .frames import fit, real_frames
from .machine import conv_peak_gmac_s, cpu_info, cuda_conv_peak_gmac_s, gpu_info, load_average, versions
from .memory import measure_peaks
from .timing import interleaved

SCHEMA = "nedr.bench/1"
DEFAULT_SIZES = ((256, 256), (480, 640), (720, 1280), (1080, 1920))
DEFAULT_FAST_SIZE = (360, 640)


class BenchError(UserError):
    """A benchmark setting or input that cannot work; one line."""


@dataclass
class BenchConfig:
    out: Path
    backends: list[str] = field(default_factory=lambda: list(cand.BACKENDS))
    precisions: list[str] = field(default_factory=lambda: list(cand.PRECISIONS))
    sizes: list[tuple[int, int]] = field(default_factory=lambda: list(DEFAULT_SIZES))
    fast_size: tuple[int, int] = DEFAULT_FAST_SIZE  # network input (H, W) of fast-mode rows
    full_res: bool = False        # never switch a size to fast mode
    size_budget_s: float = 120.0  # estimated seconds for one size above which it runs in fast mode
    threads: int = 0              # CPU threads for torch and ONNX Runtime (0: all cores)
    checkpoint: str | None = None
    work: Path | None = None      # model files (default: the runtime's ONNX cache, shared with `nedr run`)
    warmup: int = 2
    min_iters: int = 5
    max_iters: int = 200
    min_seconds: float = 2.0      # per backend and size
    accuracy_size: tuple[int, int] = (480, 640)
    accuracy_frames: int = 6
    pairs: Path | None = None     # SOTS-style folder (hazy/ + gt/) for the quality table
    pairs_note: str | None = None  # why there are no pairs, for the report
    quality_limit: int | None = None  # images per quality set (None: all)
    calib_size: tuple[int, int] = (480, 640)
    calib_frames: int = 16
    validation_frames: int = 4
    memory: bool = True
    quick: bool = False
    command: list[str] = field(default_factory=list)

    @classmethod
    def quick_preset(cls, out: Path, **overrides) -> "BenchConfig":
        """Small sizes and few iterations: minutes on 2 CPU cores, every code path still taken."""
        settings = dict(sizes=[(128, 128), (192, 256)], warmup=1, min_iters=2, max_iters=3, min_seconds=0.05,
                        accuracy_size=(192, 256), accuracy_frames=2, quality_limit=2, calib_size=(128, 128),
                        calib_frames=4, validation_frames=2, fast_size=(128, 128), quick=True)
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return cls(out=out, **settings)


@dataclass
class BenchResult:
    report: dict
    frames: list[tuple[str, np.ndarray]]  # the accuracy frames (uint8 RGB)
    outputs: dict[str, list[np.ndarray]]  # per candidate key: J on each of them (float H×W×3)


@dataclass
class Loaded:
    """A candidate with its backend activated."""

    candidate: cand.Candidate
    backend: Backend
    artifact: Artifact | None
    load_s: float

    @property
    def key(self) -> str:
        return self.candidate.key


def _finite(db: float) -> float | None:
    """A PSNR for the JSON report: None where the outputs are bit-identical (infinite PSNR)."""
    return None if math.isinf(db) else db


def compare(ref: np.ndarray, out: np.ndarray) -> dict[str, float | None]:
    """How far `out` is from `ref` (H×W×3 floats in [0, 1])."""
    from skimage.metrics import structural_similarity

    diff = np.abs(ref.astype(np.float64) - out.astype(np.float64))
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "psnr_db": _finite(psnr(out, ref)),
            "ssim": float(structural_similarity(ref, out, channel_axis=-1, data_range=1.0))}


def network_output(backend, image8: np.ndarray) -> np.ndarray:
    """J as H×W×3 float32 for a uint8 frame: padded to the contract, run, cropped back."""
    h, w = image8.shape[:2]
    clean = backend.infer(to_batch(pad_hwc(to_float(image8))))
    return from_batch(clean)[:h, :w]


def _processor(backend, infer_hw: tuple[int, int] | None) -> FrameProcessor:
    """The runtime's per-frame path (fast mode when `infer_hw` is given), without stabilisation."""
    infer = (infer_hw[1], infer_hw[0]) if infer_hw else None
    return FrameProcessor(backend, RunConfig(infer_size=infer, stabilize=False, warmup=False, progress=False))


def fast_hw(size: tuple[int, int], fast_size: tuple[int, int]) -> tuple[int, int]:
    """The network input of a fast-mode run: `size` scaled to at most fast_size's pixel count."""
    h, w = size
    scale = min(1.0, math.sqrt(fast_size[0] * fast_size[1] / (h * w)))
    return max(16, round(h * scale)), max(16, round(w * scale))


# --------------------------------------------------------------------------- stages

class Bench:
    def __init__(self, config: BenchConfig, log: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.say = log or (lambda msg: print(msg, file=sys.stderr))
        self.threads = config.threads or _cores()
        self.env = cand.Environment.probe()
        self.loaded: list[Loaded] = []
        self.not_run: list[dict[str, str]] = []
        self.notes: list[str] = []
        self.outputs: dict[str, list[np.ndarray]] = {}
        self.peaks: dict[str, dict] = {}
        self.arch, self.guided_filter = _network_shape(config.checkpoint)

    # -- set-up
    def _engine_profile(self):
        from nedr.export.profiles import Profile

        run_sizes = [padded_hw(*s) for s in self.config.sizes] + [padded_hw(*fast_hw(s, self.config.fast_size))
                                                                   for s in self.config.sizes]
        run_sizes.append(padded_hw(*self.config.accuracy_size))
        lo = (min(h for h, _ in run_sizes), min(w for _, w in run_sizes))
        hi = (max(h for h, _ in run_sizes), max(w for _, w in run_sizes))
        opt = padded_hw(*self.config.accuracy_size)
        return Profile(lo, (min(max(opt[0], lo[0]), hi[0]), min(max(opt[1], lo[1]), hi[1])), hi)

    def load(self) -> None:
        c = self.config
        chosen, self.not_run = cand.plan(c.backends, c.precisions, self.env)
        files = ModelFiles(c.work or cache_dir() / "onnx", c.checkpoint, calib_size=c.calib_size,
                                calib_frames=c.calib_frames, validation_frames=c.validation_frames, log=self.say)
        profile = self._engine_profile() if any(x.backend == "tensorrt" for x in chosen) else None
        for candidate in tqdm(chosen, desc="prepare", unit="backend", file=sys.stderr):
            try:
                artifact = cand.model_file(candidate, files, self.env, profile)
                backend = cand.backend_for(candidate, artifact.path if artifact else None, cuda=self.env.cuda,
                                           threads=self.threads, checkpoint=c.checkpoint)
                start = time.perf_counter()
                backend.activate()
                load_s = time.perf_counter() - start
            except (UserError, BackendError, ImportError) as exc:
                if candidate.key == cand.REFERENCE_KEY:
                    raise
                reason = f"missing module {exc.name}" if isinstance(exc, ImportError) else str(exc)
                self.not_run.append({"what": candidate.label, "reason": f"failed to prepare: {reason}"})
                continue
            self.loaded.append(Loaded(candidate, backend, artifact, load_s))
            if candidate == cand.Candidate("onnxruntime", "fp16") and not self.env.ort_on_gpu:
                self.notes.append("ONNX Runtime FP16 on the CPU provider: most ops have no FP16 CPU kernel, so "
                                  "ONNX Runtime casts around them and computes in FP32; the row measures the FP16 "
                                  "file (FP16 weights), not FP16 arithmetic")

    def close(self) -> None:
        for item in self.loaded:
            item.backend.deactivate()

    # -- accuracy on real frames
    def accuracy(self) -> dict:
        c = self.config
        frames = [(name, fit(img, c.accuracy_size)) for name, img in real_frames(c.accuracy_frames, self._hazy_dir())]
        self.accuracy_inputs = frames
        rows = []
        for item in tqdm(list(self.loaded), desc="accuracy", unit="backend", file=sys.stderr):  # _drop edits it
            try:
                self.outputs[item.key] = [network_output(item.backend, img) for _, img in frames]
            except BackendError as exc:
                self._drop(item, f"failed on the accuracy frames: {exc}")
        ref = self.outputs[cand.REFERENCE_KEY]
        for item in self.loaded:
            outs = self.outputs[item.key]
            per_frame = [compare(r, o) for r, o in zip(ref, outs)]
            overall, worst = psnr_over_frames(outs, ref)
            rows.append({"key": item.key, "label": item.candidate.label,
                         "max_abs": max(f["max_abs"] for f in per_frame),
                         "mean_abs": float(np.mean([f["mean_abs"] for f in per_frame])),
                         "psnr_db": _finite(overall), "psnr_min_db": _finite(worst),
                         "ssim": float(np.mean([f["ssim"] for f in per_frame]))})
        return {"size": list(c.accuracy_size), "frames": [n for n, _ in frames], "reference": cand.REFERENCE_KEY,
                "rows": rows, "note": "network output J (float, before uint8 rounding) against PyTorch FP32 on the "
                                      "same frames; psnr_db over all frames, None = bit-identical"}

    def _drop(self, item: Loaded, reason: str) -> None:
        if item.key == cand.REFERENCE_KEY:
            raise BenchError(f"the PyTorch FP32 reference {reason}")
        self.not_run.append({"what": item.candidate.label, "reason": reason})
        item.backend.deactivate()
        self.loaded.remove(item)

    # -- speed
    def speed(self) -> list[dict]:
        from nedr.model.complexity import gmac_per_frame  # torch: nedr.benchmarks imports without it

        c = self.config
        frame_source = real_frames(1)[0][1]
        rows: list[dict] = []
        estimate_ms: dict[str, float] | None = None  # per backend, for the previous size
        previous_pixels = None
        for size in c.sizes:
            pixels = size[0] * size[1]
            mode, infer_hw = "full", None
            if estimate_ms and not c.full_res:
                scale = pixels / previous_pixels
                predicted_s = sum(estimate_ms.values()) * scale * (c.warmup + c.min_iters) / 1000
                if predicted_s > c.size_budget_s and fast_hw(size, c.fast_size) != size:
                    mode, infer_hw = "fast", fast_hw(size, c.fast_size)
                    self.say(f"{format_hw(size)}: full resolution would take ~{predicted_s:.0f} s (> {c.size_budget_s:.0f} s "
                             f"budget): running fast mode (network at {format_hw(infer_hw)})")
            image = fit(frame_source, size)
            batch, frame = to_batch(pad_hwc(to_float(image))), Frame(0, image, 0.0)
            gmac = gmac_per_frame(*(infer_hw or size), self.arch, self.guided_filter)  # the network call only
            runners, outputs = {}, {}
            for item in self.loaded:
                if mode == "full":
                    runners[item.key] = (lambda b=item.backend: b.infer(batch))
                else:
                    runners[item.key] = (lambda p=_processor(item.backend, infer_hw): p(frame))
            for key, run in list(runners.items()):
                try:
                    out = run()
                except BackendError as exc:
                    self._drop(next(i for i in self.loaded if i.key == key), f"failed at {format_hw(size)}: {exc}")
                    runners.pop(key)
                    continue
                outputs[key] = (from_batch(out)[:size[0], :size[1]] if mode == "full" else to_float(out))
            bar = tqdm(desc=f"speed {format_hw(size)} ({mode})", unit="round", file=sys.stderr)
            timings = interleaved(runners, warmup=max(0, c.warmup - 1), min_iters=c.min_iters, max_iters=c.max_iters,
                                  min_seconds=c.min_seconds, on_round=lambda n: bar.update(1))
            bar.close()
            ref_ms = timings[cand.REFERENCE_KEY].percentile(50)
            ref_out = outputs[cand.REFERENCE_KEY]
            for key, timing in timings.items():
                row = {"key": key, "size": list(size), "mode": mode,
                       "network_input": list(infer_hw if infer_hw else size), "padded_to": list(padded_hw(*(infer_hw or size))),
                       "timed": "network call (padded float batch in, J out)" if mode == "full" else
                                "frame: uint8 in, downscale, network, guided upsampling, uint8 out",
                       **timing.summary()}
                row["speedup_vs_reference"] = ref_ms / row["p50_ms"]
                row["max_abs_vs_reference"] = float(np.abs(outputs[key] - ref_out).max())
                row["gmac_per_frame"] = gmac
                row["gmac_per_s"] = gmac / (row["p50_ms"] / 1000)
                peak = self.peaks.get(self._device(key))
                row["fraction_of_peak"] = row["gmac_per_s"] / peak["gmac_s"] if peak else None
                rows.append(row)
            estimate_ms = {k: t.percentile(50) for k, t in timings.items()}
            previous_pixels = (infer_hw[0] * infer_hw[1]) if infer_hw else pixels
        return rows

    def _device(self, key: str) -> str:
        """Where a candidate's arithmetic runs, to pick the peak its GMAC/s is read against."""
        item = next(i for i in self.loaded if i.key == key)
        backend = item.candidate.backend
        on_gpu = (backend == "tensorrt" or (backend == "torch" and self.env.cuda)
                  or (backend == "onnxruntime" and self.env.ort_on_gpu))
        return "cuda" if on_gpu else "cpu"

    def measure_peaks(self) -> None:
        """The dense-conv ceilings (`machine.conv_peak_gmac_s`), measured right before the speed rounds."""
        self.say("measuring the machine's dense-convolution peak")
        self.peaks["cpu"] = conv_peak_gmac_s(self.threads)
        if self.env.cuda:
            self.peaks["cuda"] = cuda_conv_peak_gmac_s()

    # -- memory (a process per backend)
    def memory(self, speed_rows: list[dict]) -> dict:
        by_size: dict[tuple[int, int], tuple[int, int] | None] = {}
        def pixels(row: dict) -> tuple[int, int]:
            return row["network_input"][0] * row["network_input"][1], row["size"][0] * row["size"][1]

        for row in sorted(speed_rows, key=pixels):
            by_size[tuple(row["size"])] = tuple(row["network_input"]) if row["mode"] == "fast" else None
        # ascending network size: the process peak after each size is that size's peak
        sizes = [(h, w, (infer[1], infer[0]) if infer else None) for (h, w), infer in by_size.items()]
        result = {}
        for item in tqdm(self.loaded, desc="memory", unit="backend", file=sys.stderr):
            peaks = measure_peaks(item.candidate, item.artifact.path if item.artifact else None, cuda=self.env.cuda,
                                  threads=self.threads, checkpoint=self.config.checkpoint, sizes=sizes)
            result[item.key] = peaks
        for row in speed_rows:
            peaks = result.get(row["key"], {})
            index = list(by_size).index(tuple(row["size"]))
            row["peak_rss_mib"] = peaks["peak_mib"][index] if "peak_mib" in peaks else None
            row["peak_gpu_mib"] = peaks["gpu_peak_mib"][index] if "gpu_peak_mib" in peaks else None
        return result

    # -- quality against ground truth
    def _hazy_dir(self) -> Path | None:
        if self.config.pairs is None:
            return None
        from nedr.model.evaluation import find_pair_dirs

        return find_pair_dirs(self.config.pairs)[0]

    def quality(self) -> dict:
        from nedr.model.evaluation import evaluate, find_pair_dirs, hazy_input, pair_images, synthetic_heldout

        from .dcp import dehaze_dcp

        c = self.config
        limit = c.quality_limit
        sets = {"synthetic": {"what": "held-out synthetic haze (bundled clean photos never used in training)",
                              "pairs": synthetic_heldout()[:limit]}}
        if c.pairs is not None:
            sets["sots"] = {"what": f"paired folder {c.pairs}", "pairs": pair_images(*find_pair_dirs(c.pairs))[:limit]}
        methods: list[tuple[str, str, Callable]] = [("hazy", "hazy input", hazy_input),
                                                   ("dcp", "dark channel prior", dehaze_dcp)]
        for item in self.loaded:
            proc = _processor(item.backend, None)
            methods.append((item.key, f"NeDR, {item.candidate.label}",
                            lambda img, p=proc: p(Frame(0, img, 0.0))))
        out = {}
        for name, data in sets.items():
            rows = []
            for key, label, fn in tqdm(methods, desc=f"quality {name}", unit="method", file=sys.stderr):
                scores = evaluate(fn, data["pairs"], progress=False)
                rows.append({"key": key, "label": label, "psnr": scores["mean"]["psnr"], "ssim": scores["mean"]["ssim"],
                             "per_image": [{"name": r["name"], "psnr": r["psnr"], "ssim": r["ssim"]} for r in scores["rows"]]})
            out[name] = {"what": data["what"], "count": len(data["pairs"]), "rows": rows}
        if c.pairs is None:
            out["sots"] = {"skipped": c.pairs_note or "no paired folder given (--pairs)"}
        out["metrics"] = "mean PSNR (dB) on uint8 RGB and SSIM (scikit-image, channel_axis=-1, data_range=255)"
        return out

    # -- everything
    def run(self) -> BenchResult:
        c = self.config
        started = time.perf_counter()
        created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        load_at_start = load_average()
        try:
            self.load()
            accuracy = self.accuracy()
            self.measure_peaks()
            speed = self.speed()
            memory = self.memory(speed) if c.memory else {}
            if not c.memory:
                self.not_run.append({"what": "peak memory", "reason": "--no-memory"})
            quality = self.quality()
            described = {item.key: item.backend.describe() for item in self.loaded}
        finally:
            self.close()
        report = {
            "schema": SCHEMA,
            "created": created,
            "command": c.command,
            "settings": _settings(c, self.threads),
            "machine": {"cpu": cpu_info(), "gpu": gpu_info(), "threads": self.threads, "conv_peak": self.peaks,
                        "load_avg_at_start": load_at_start, "load_avg_at_end": load_average()},
            "versions": versions(),
            "model": {"checkpoint": c.checkpoint or "bundled default weights", "architecture": self.arch.to_config(),
                      "guided_filter": self.guided_filter},
            "candidates": [{"key": item.key, "label": item.candidate.label, "backend": item.candidate.backend,
                            "precision": item.candidate.precision, "variant": item.candidate.variant,
                            "model_file": str(item.artifact.path) if item.artifact else None,
                            "prepare_s": item.artifact.seconds if item.artifact else 0.0,
                            "prepare_reused": bool(item.artifact and item.artifact.reused),
                            "prepare_info": item.artifact.info if item.artifact else {},
                            "load_s": item.load_s, "describe": described[item.key],
                            "memory": memory.get(item.key)} for item in self.loaded],
            "not_run": self.not_run,
            "notes": self.notes,
            "accuracy": accuracy,
            "speed": speed,
            "quality": quality,
            "seconds": time.perf_counter() - started,
        }
        return BenchResult(report, self.accuracy_inputs, {item.key: self.outputs[item.key] for item in self.loaded})


def _network_shape(checkpoint: str | None):
    """(Architecture, guided filter on?) of the weights the bench runs, for its GMAC counts."""
    from nedr.model.checkpoint import read_state, resolve_weights
    from nedr.model.network import Architecture

    arch = read_state(resolve_weights(checkpoint))[1].get("architecture", {})
    return Architecture.from_config(arch), bool(arch.get("guided_filter", True))


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _settings(c: BenchConfig, threads: int) -> dict:
    d = {k: v for k, v in asdict(c).items() if k not in ("command",)}
    d["threads"] = threads
    return {k: (str(v) if isinstance(v, Path) else [list(x) for x in v] if k == "sizes" else
                list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def run_bench(config: BenchConfig, log: Callable[[str], None] | None = None) -> BenchResult:
    """Run the whole benchmark: the report dict plus the frames and outputs the image grid shows."""
    if not config.sizes:
        raise BenchError("no sizes to benchmark")
    if config.min_iters < 1 or config.threads < 0:
        raise BenchError("--min-iters must be at least 1 and --threads at least 0 (0: all cores)")
    config.max_iters = max(config.max_iters, config.min_iters)
    for h, w in config.sizes:
        if min(h, w) < 16:
            raise BenchError(f"size {h}x{w} is too small (at least 16 pixels a side)")
    return Bench(config, log).run()
