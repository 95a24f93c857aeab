"""Is an exported .onnx the model it came from? Checker, shape inference, op hygiene, and
ONNX Runtime against PyTorch on real photographs with synthetic haze.

The comparison goes through Polygraphy's Comparator (the tool TensorRT users already know), with
a small CPU PyTorch runner next to its ONNX Runtime runner: Polygraphy's own `PytRunner` moves
inputs to CUDA and iterates a single output tensor along its batch axis, so it cannot serve here.
"""
from __future__ import annotations

import copy
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from polygraphy.backend.base import BaseRunner
from polygraphy.common import TensorMetadata

from nedr.contract import INPUT_NAME, META_OPTIONS, MIN_SIZE, PAD_MULTIPLE, meets_contract
from nedr.errors import first_line
from nedr.model.network import NeDR

from .metadata import read_metadata
from .onnx_export import ExportableNeDR, ExportError
from .ops import check_ops

DEFAULT_SIZES = ((256, 256), (480, 640))
PHOTOS = ("astronaut", "coffee")


def sample_frames(sizes=DEFAULT_SIZES, seed: int = 0) -> list[np.ndarray]:
    """One 1×3×H×W float32 hazy frame per size: scikit-image photos (astronaut, coffee, in turn)
    resized to the size and hazed with the scattering model (`nedr.model.synthesis`)."""
    import cv2
    from skimage import data

    from nedr.model.synthesis import synthesize

    frames = []
    for i, (h, w) in enumerate(sizes):
        photo = getattr(data, PHOTOS[i % len(PHOTOS)])()
        clean = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
        hazy = synthesize(clean, seed + i).hazy
        frames.append(np.ascontiguousarray(hazy.transpose(2, 0, 1)[None], dtype=np.float32))
    return frames


def check_sizes(sizes) -> list[tuple[int, int]]:
    out = [(int(h), int(w)) for h, w in sizes]
    bad = [f"{h}×{w}" for h, w in out if not meets_contract(h, w)]
    if bad:
        raise ValueError(f"sizes {', '.join(bad)} break the network contract (multiples of {PAD_MULTIPLE}, >= {MIN_SIZE})")
    return out


def model_as_exported(model: NeDR, onnx_path: str | Path) -> tuple[NeDR, bool]:
    """A copy of `model` set to the options baked into the file (atmosphere, guided filter, prior mix), and
    whether the file outputs t too, so PyTorch computes exactly what the graph computes."""
    options = read_metadata(onnx_path).get(META_OPTIONS, {})
    twin = copy.deepcopy(model).float().cpu().eval()
    twin.atmosphere = options.get("atmosphere", twin.atmosphere)
    twin.guided_filter = options.get("guided_filter", twin.guided_filter)
    twin.prior_mix = options.get("prior_mix", 0.0)  # files from before the option never mixed
    return twin, bool(options.get("with_transmission", False))


class TorchCpuRunner(BaseRunner):
    """Polygraphy runner for NeDR in PyTorch on the CPU, outputs named as in the ONNX file."""

    def __init__(self, module: torch.nn.Module, names: list[str]):
        super().__init__(prefix="torch-cpu-runner")
        self.module, self.names = module, names

    def activate_impl(self):
        self.module.eval()

    def get_input_metadata_impl(self):
        return TensorMetadata().add(INPUT_NAME, dtype=np.float32, shape=(-1, 3, -1, -1))

    def infer_impl(self, feed_dict):
        start = time.perf_counter()
        with torch.no_grad():
            out = self.module(torch.from_numpy(np.asarray(feed_dict[INPUT_NAME])))
        self.inference_time = time.perf_counter() - start
        out = out if isinstance(out, tuple) else (out,)
        return OrderedDict((n, t.numpy()) for n, t in zip(self.names, out))

    def deactivate_impl(self):
        pass


@dataclass
class FrameCheck:
    """One frame's outputs against the FP32 PyTorch reference (worst output when there are two)."""

    size: tuple[int, int]
    max_abs_err: float
    mean_abs_err: float
    psnr_db: float  # Polygraphy's PSNR: peak = max of the PyTorch (reference) output, ≈ 1 for J

    def __str__(self) -> str:
        psnr = "inf" if math.isinf(self.psnr_db) else f"{self.psnr_db:.1f}"
        return f"{self.size[0]}×{self.size[1]}: max |Δ| {self.max_abs_err:.2e}, mean {self.mean_abs_err:.2e}, PSNR {psnr} dB"


@dataclass
class VerifyReport:
    path: Path
    atol: float
    problems: list[str] = field(default_factory=list)  # checker, shape inference, op hygiene
    frames: list[FrameCheck] = field(default_factory=list)

    @property
    def max_abs_err(self) -> float:
        return max((f.max_abs_err for f in self.frames), default=math.nan)

    @property
    def passed(self) -> bool:
        return not self.problems and bool(self.frames) and self.max_abs_err <= self.atol

    def summary(self) -> str:
        lines = [f"{self.path}: {'PASS' if self.passed else 'FAIL'} (max |Δ| {self.max_abs_err:.2e}, atol {self.atol:g})"]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  {f}" for f in self.frames]
        return "\n".join(lines)


def check_model_file(path: str | Path) -> list[str]:
    """ONNX checker (full_check: includes strict shape inference) and TensorRT op hygiene."""
    path = Path(path)
    problems = []
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # ValidationError, InferenceError, protobuf decode errors
        problems.append(f"onnx checker: {first_line(exc)[:300]}")
        return problems
    model = onnx.load_model(str(path))
    try:
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:
        problems.append(f"shape inference: {first_line(exc)[:300]}")
    return problems + check_ops(model)


def compare_with_torch(path: str | Path, model: NeDR, frames: list[np.ndarray]) -> list[FrameCheck]:
    """Run both on each frame through Polygraphy's Comparator; one FrameCheck per frame."""
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.comparator import Comparator, PsnrCompareFunc, SimpleCompareFunc
    from polygraphy.logger import G_LOGGER

    twin, with_t = model_as_exported(model, path)
    names = [o.name for o in onnx.load_model(str(path), load_external_data=False).graph.output]
    if len(names) != (2 if with_t else 1):
        raise ExportError(f"{path}: outputs {names} do not match its metadata (with_transmission={with_t})")
    runners = [TorchCpuRunner(ExportableNeDR(twin, with_t), names),  # first: the reference
               OnnxrtRunner(SessionFromOnnx(str(path), providers=["cpu"]))]
    severity = G_LOGGER.module_severity
    G_LOGGER.module_severity = G_LOGGER.ERROR
    try:
        results = Comparator.run(runners, data_loader=[{INPUT_NAME: f} for f in frames])
        # Thresholds are applied by the caller (atol); here the comparators only measure.
        errors, psnrs = Comparator.compare_accuracy(results, compare_func=[
            SimpleCompareFunc(check_error_stat="max", atol=math.inf, rtol=math.inf),
            PsnrCompareFunc(psnr_threshold=0.0)])
    finally:
        G_LOGGER.module_severity = severity
    per_frame_err = next(iter(errors.values()))
    per_frame_psnr = next(iter(psnrs.values()))
    checks = []
    for frame, err, psnr in zip(frames, per_frame_err, per_frame_psnr):
        checks.append(FrameCheck(tuple(frame.shape[-2:]),
                                 max(r.max_absdiff for r in err.values()),
                                 max(r.mean_absdiff for r in err.values()),
                                 min(r.psnr for r in psnr.values())))
    return checks


def verify_onnx(path: str | Path, model: NeDR, sizes=None, atol: float = 1e-3, *,
                raise_on_failure: bool = False) -> VerifyReport:
    """Check the file (checker, shape inference, op hygiene), then compare ONNX Runtime (CPU) with
    PyTorch on one hazy photo per size: by default 256×256 and 480×640, or the fixed size of a
    static export. `report.passed` is False when a check fails or the max absolute error exceeds
    `atol`; `raise_on_failure` turns that into an ExportError."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such ONNX file")
    static = read_metadata(path).get(META_OPTIONS, {}).get("static_size")
    if sizes is None:
        sizes = [tuple(static)] if static else DEFAULT_SIZES
    sizes = check_sizes(sizes)
    if static and any(list(s) != list(static) for s in sizes):
        raise ExportError(f"{path} is a static {static[0]}×{static[1]} export; verify it at that size")
    report = VerifyReport(path, atol, check_model_file(path))
    if not any(p.startswith("onnx checker") for p in report.problems):
        report.frames = compare_with_torch(path, model, sample_frames(sizes))
    if raise_on_failure and not report.passed:
        raise ExportError(report.summary().splitlines()[0] + (f": {report.problems[0]}" if report.problems else ""))
    return report
