"""FP32 NeDR ONNX → INT8 Q/DQ ONNX, calibrated on frames at the deployment size (docs/deployment.md:
"Precision: it lives in the ONNX"): frames and ranges (calibration.py), Q/DQ placement (qdq.py),
validation against FP32, the optional float-layer search (sensitivity.py), metadata and report.
Two targets, named on the command line, `tensorrt` (default) and `cpu`: qdq.py says where each puts
Q/DQ and which nodes stay FP32.

PSNR against FP32 is measured on held-out frames at the deployment size with the runtime the file
targets: ONNX Runtime's CPU kernels for `cpu`; for `tensorrt`, the Q/DQ graph run with graph
optimisations off (DequantizeLinear → FP32 Conv), which is the int8 arithmetic TensorRT performs
(int8 products accumulate exactly in int32) without ONNX Runtime's saturating AVX2 kernels.

`quant_pre_process` is skipped on purpose. Its symbolic shape inference fails on this graph
("Incomplete symbolic shape inference"): with dynamic H and W it cannot prove that a ×2 upsample
of floor(h/2) equals the skip connection's size. Its other two steps add nothing here: ONNX
Runtime's basic optimiser left the exported graph unchanged (468 → 468 nodes, same op counts:
the exporter already folds BatchNorm and constants), and `quantize_static` runs ONNX shape
inference itself. Fixing the shapes to one size would make it pass but would also freeze the file
to that size.

Calibration ranges are cached beside the output (calibration.py); `--target-psnr` leaves the
most harmful quantized convolutions in float (sensitivity.py) until the target is met.
"""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from nedr.contract import (INPUT_NAME, META_OPTIONS, META_PREFIX, META_SOURCE_ONNX_SHA256, MIN_SIZE, PAD_MULTIPLE,
                           meets_contract, parse_hw)
from nedr.errors import first_line
from nedr.fileio import output_problem
from nedr.metrics import psnr_over_frames

from .calibration import SYNTHETIC
from .metadata import file_sha256, load_onnx, read_metadata
from .ort_session import ort_session
from .qdq import (CALIBRATED_OP_TYPES, OP_TYPES, TARGETS, QuantizeError, qdq_nodes, quantization_settings,
                  quantize_with_ranges, stem_convs, zero_points)
from .sensitivity import MAX_FLOAT_LAYERS, MAX_SEARCH_EVALS, SearchStep, search_float_layers

if TYPE_CHECKING:  # onnx is imported where it is used; annotations only name it
    import onnx

# onnxruntime, OpenCV and torch (through the exporter and the datasets) load on first use, so
# building the CLI's parser, which reads the defaults below, stays cheap.

METHODS = ("entropy", "minmax", "percentile")
DEFAULT_SIZE = (480, 640)
DEFAULT_FRAMES = 16
DEFAULT_METHOD = "minmax"
DEFAULT_VALIDATION_FRAMES = 4


def parse_size(text: str) -> tuple[int, int]:
    """`nedr.contract.parse_hw` with a QuantizeError, the error `nedr quantize --size` and `nedr bench` report."""
    try:
        return parse_hw(text)
    except ValueError:
        raise QuantizeError(f"size {text!r}: write it as HxW, e.g. 480x640") from None


def default_search_size(size: tuple[int, int], longest: int = 256) -> tuple[int, int]:
    """`size` scaled down so its longer side is at most `longest`, on the network contract."""
    scale = min(1.0, longest / max(size))
    return tuple(max(MIN_SIZE, int(round(s * scale / PAD_MULTIPLE)) * PAD_MULTIPLE) for s in size)


def _check_size(size) -> tuple[int, int]:
    h, w = (int(s) for s in size)
    if not meets_contract(h, w):
        raise QuantizeError(f"size {h}x{w} breaks the network contract: H and W must be multiples of "
                            f"{PAD_MULTIPLE} and >= {MIN_SIZE}")
    return h, w


@dataclass
class QuantizeReport:
    path: Path
    target: str
    method: str
    size: tuple[int, int]
    calibration: str  # where the frames came from
    frames: int
    calibrated: bool  # False when the range cache was reused
    cache_path: Path | None
    activation_type: str
    weight_type: str
    reduce_range: bool
    qdq_nodes: int
    int8_convs: int
    float_convs: int  # Conv nodes left in FP32 (islands + search)
    island_nodes: dict[str, int]
    float_layers: list[str]  # kept float by the --target-psnr search
    stem_layers: list[str]  # the input convolution(s), kept float unless float_stem=False
    psnr_db: float  # INT8 vs FP32 on the held-out frames, all pixels
    psnr_min_db: float  # worst frame
    validation_frames: int
    measured_with: str
    target_psnr: float | None = None
    psnr_before_search_db: float | None = None
    search: list[SearchStep] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    zero_points: str = ""  # "all 0" (tensorrt), or the activation zero-point range

    def summary(self) -> str:
        size = f"{self.size[0]}x{self.size[1]}"
        lines = [f"{self.path}: INT8 for {self.target} ({self.activation_type} activations, {self.weight_type} "
                 f"weights{' 7-bit' if self.reduce_range else ''}, per channel), {self.method} ranges from "
                 f"{self.frames} frames at {size}: {self.calibration}"
                 + ("" if self.calibrated else f" [cached: {self.cache_path}]"),
                 f"  Q/DQ nodes {self.qdq_nodes}; INT8 convs {self.int8_convs}, float convs {self.float_convs}; "
                 f"zero points {self.zero_points}; FP32 islands "
                 + ", ".join(f"{k} {v} nodes" for k, v in self.island_nodes.items())
                 + (f"; stem in float ({', '.join(self.stem_layers)})" if self.stem_layers else ""),
                 f"  INT8 vs FP32 on {self.validation_frames} held-out frames at {size}: PSNR {self.psnr_db:.2f} dB "
                 f"(worst frame {self.psnr_min_db:.2f} dB; {self.measured_with})"]
        if self.target_psnr is not None:
            if self.psnr_before_search_db is not None:
                lines.append(f"  --target-psnr {self.target_psnr:g}: {self.psnr_before_search_db:.2f} dB with every conv "
                             f"INT8 -> {self.psnr_db:.2f} dB with {len(self.float_layers)} layer(s) left in float"
                             + ("" if self.psnr_db >= self.target_psnr else " (target NOT reached within the search cap)"))
            lines += [f"    float: {name}" for name in self.float_layers]
        lines.append("  time: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()))
        return "\n".join(lines)

    def as_dict(self) -> dict:
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items() if k != "search"}
        d["search"] = [s.__dict__ for s in self.search]
        return d


# --- building blocks --------------------------------------------------------------------------

def _load_fp32(onnx_in: Path) -> onnx.ModelProto:
    import onnx

    model = load_onnx(onnx_in, external_data=True, error=QuantizeError)
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if [i.name for i in inputs] != [INPUT_NAME]:
        raise QuantizeError(f"{onnx_in}: expected one input named {INPUT_NAME!r} (a NeDR export), found "
                            f"{[i.name for i in inputs] or 'none'}")
    precision = read_metadata(model).get(META_OPTIONS, {}).get("precision", "fp32")
    if precision != "fp32":
        raise QuantizeError(f"{onnx_in}: already {precision}; quantize the FP32 export")
    elem = inputs[0].type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        raise QuantizeError(f"{onnx_in}: input {INPUT_NAME!r} is not float32")
    return model


def _static_size(model: onnx.ModelProto) -> tuple[int, int] | None:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) == 4 and all(d.HasField("dim_value") for d in dims[2:]):
        return dims[2].dim_value, dims[3].dim_value
    return None


def _check_destination(onnx_in: Path, onnx_out: Path) -> None:
    if onnx_out.resolve() == onnx_in.resolve():
        raise QuantizeError(f"output {onnx_out} is the input; give another file name")
    problem = output_problem(onnx_out)
    if problem:
        raise QuantizeError(problem)


def run_frames(session, frames: list[np.ndarray]) -> list[np.ndarray]:
    name, out = session.get_inputs()[0].name, session.get_outputs()[0].name
    return [session.run([out], {name: f})[0] for f in frames]


def _measured_with(target: str) -> str:
    if target == "cpu":
        return "ONNX Runtime CPU kernels"
    return "int8 math emulated in FP32 (DequantizeLinear -> FP32 Conv), as TensorRT computes it"


def _metadata(model: onnx.ModelProto, source: Path, info: dict) -> None:
    import onnx

    props = {p.key: p.value for p in model.metadata_props}
    options = read_metadata(model).get(META_OPTIONS, {})
    options.update(precision="int8-qdq", int8=info)
    props[META_PREFIX + META_OPTIONS] = json.dumps(options)
    props[META_PREFIX + META_SOURCE_ONNX_SHA256] = file_sha256(source)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)


# --- the command ------------------------------------------------------------------------------

def _save(int8: onnx.ModelProto, onnx_in: Path, info: dict, onnx_out: Path) -> None:
    """Record how the file was quantized in its metadata and write it atomically."""
    from .onnx_export import save_onnx_atomic  # imports torch: only when writing

    _metadata(int8, onnx_in, info)
    save_onnx_atomic(int8, onnx_out)  # its ExportError already names the file


def quantize(onnx_in: str | Path, onnx_out: str | Path, *, calib: str | Path = SYNTHETIC, frames: int = DEFAULT_FRAMES,
             method: str = DEFAULT_METHOD, size: tuple[int, int] = DEFAULT_SIZE, target: str = "tensorrt",
             target_psnr: float | None = None, validation_frames: int = DEFAULT_VALIDATION_FRAMES,
             search_frames: int = 2, search_size: tuple[int, int] | None = None,
             max_float_layers: int = MAX_FLOAT_LAYERS, max_search_evals: int = MAX_SEARCH_EVALS,
             float_stem: bool = True, cache: bool = True, reduce_range: bool | None = None,
             backend: str = "onnxruntime",
             log: Callable[[str], None] | None = None) -> QuantizeReport:
    """Quantize the FP32 NeDR export `onnx_in` to INT8 Q/DQ for `target`, writing `onnx_out` atomically.

    calib: "synthetic" (hazy crops of the training sources), an image folder or a video file;
    `frames` of it at `size` (H, W) calibrate the ranges with `method` ("entropy" | "minmax" |
    "percentile"). The ranges are cached in `<onnx_out>.calib.json` and reused while the ONNX,
    the frames, method, size and count are unchanged (`cache=False`: neither read nor written).
    target_psnr: leave the convolutions that cost the most PSNR in float until INT8 vs FP32 on
    the held-out frames reaches it (the search scores layers on the `search_frames` worst of them
    at `search_size`, default `default_search_size(size)`, with at most `max_float_layers` layers and
    `max_search_evals` inferences per round, and checks the result at `size`). float_stem: keep
    the first convolution (on the raw RGB input) in float, see `stem_convs`. reduce_range: 7-bit
    weights for `cpu` (None: only when the CPU lacks VNNI). backend "modelopt": NVIDIA ModelOpt's ONNX
    quantizer (tensorrt target; needs `nvidia-modelopt`). Raises QuantizeError (one line); a file that
    cannot be written raises ExportError as `save_onnx_atomic` does, both NedrErrors naming the file.
    """
    from .calibration import (cache_key, calibration_frames, compute_ranges, heldout_frames,
                              load_cached_ranges, save_cached_ranges)
    from .sensitivity import GatedModel

    onnx_in, onnx_out = Path(onnx_in), Path(onnx_out)
    say = log or (lambda _msg: None)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    if target not in TARGETS:
        raise QuantizeError(f"unknown target {target!r}; use one of {', '.join(TARGETS)}")
    if method not in METHODS:
        raise QuantizeError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")
    if frames < 1 or validation_frames < 1:
        raise QuantizeError("--frames and validation frames must be at least 1")
    if backend not in ("onnxruntime", "modelopt"):
        raise QuantizeError(f"unknown backend {backend!r}; use onnxruntime or modelopt")
    if backend == "modelopt":
        _check_modelopt(target, method, target_psnr)
    size = _check_size(size)
    search_size = _check_size(search_size) if search_size is not None else None
    fp32 = _load_fp32(onnx_in)
    static = _static_size(fp32)
    if static is not None and static != size:
        raise QuantizeError(f"{onnx_in} has a static {static[0]}x{static[1]} input; pass size {static[0]}x{static[1]}")
    _check_destination(onnx_in, onnx_out)
    from .islands import fp32_islands

    islands = fp32_islands(fp32, onnx_in, error=QuantizeError)
    excluded = [name for names in islands.values() for name in names]
    stem = stem_convs(fp32) if float_stem else []
    excluded += stem

    calib_set = calibration_frames(calib, size, frames)
    seconds["frames"] = time.perf_counter() - start

    if backend == "modelopt":
        return _quantize_modelopt(onnx_in, onnx_out, fp32, calib_set, method, size, target, target_psnr,
                                  validation_frames, islands, excluded, seconds, start, say)

    t = time.perf_counter()
    cache_path = onnx_out.with_name(onnx_out.name + ".calib.json") if cache else None
    key = cache_key(file_sha256(onnx_in), calib_set, method, size, CALIBRATED_OP_TYPES)
    ranges = load_cached_ranges(cache_path, key) if cache_path is not None else None
    calibrated = ranges is None
    if calibrated:
        say(f"calibrating ({method}) on {len(calib_set)} frames at {size[0]}x{size[1]}: {calib_set.source}")
        try:
            ranges = compute_ranges(onnx_in, calib_set.frames, method, CALIBRATED_OP_TYPES, INPUT_NAME)
        except Exception as exc:
            first = first_line(exc)
            raise QuantizeError(f"calibration failed: {type(exc).__name__}: {first[:200]}") from exc
        if cache_path is not None:
            try:
                save_cached_ranges(cache_path, key, ranges, calib_set.source)
            except OSError as exc:
                raise QuantizeError(f"cannot write calibration cache {cache_path}: {exc.strerror or exc}") from None
    else:
        say(f"calibration ranges reused from {cache_path}")
    seconds["calibrate" if calibrated else "cache"] = time.perf_counter() - t

    t = time.perf_counter()
    int8 = quantize_with_ranges(onnx_in, ranges, target, excluded, reduce_range)
    seconds["quantize"] = time.perf_counter() - t

    t = time.perf_counter()
    emulate = target == "tensorrt"
    validation = heldout_frames(size, validation_frames)
    fp32_session = ort_session(onnx_in)  # the references here and for the search's probe frames
    references = run_frames(fp32_session, validation)
    outputs = run_frames(ort_session(int8, optimize=not emulate), validation)
    psnr, worst = psnr_over_frames(outputs, references)
    seconds["validate"] = time.perf_counter() - t

    float_layers: list[str] = []
    steps: list[SearchStep] = []
    before = None
    if target_psnr is not None and psnr < target_psnr:
        t = time.perf_counter()
        before = psnr
        say(f"INT8 vs FP32 {psnr:.2f} dB < target {target_psnr:g} dB: searching for layers to keep in float")
        gated = GatedModel(int8, fp32)
        small = search_size or default_search_size(size)
        # Score layers on the validation images that came out worst, at a reduced size (cheap);
        # measure the result at full size; if it falls short, raise the reduced-size goal by the
        # gap and go on (twice).
        worst_first = np.argsort([psnr_over_frames([o], [r])[0] for o, r in zip(outputs, references)])
        pick = sorted(int(i) for i in worst_first[:max(1, min(search_frames, len(validation)))])
        probe = [f for i, f in enumerate(heldout_frames(small, validation_frames)) if i in pick]
        probe_refs = run_frames(fp32_session, probe)
        goal = target_psnr
        say(f"  scoring layers on the {len(probe)} worst held-out frame(s), at {small[0]}x{small[1]}")
        for _ in range(3):
            float_layers, probe_psnr, more = search_float_layers(gated, probe, probe_refs, goal, max_float_layers,
                                                                 max_search_evals, say, start=float_layers)
            steps += more
            if float_layers:
                int8 = quantize_with_ranges(onnx_in, ranges, target, excluded + float_layers, reduce_range)
                psnr, worst = psnr_over_frames(run_frames(ort_session(int8, optimize=not emulate), validation), references)
                say(f"  {len(float_layers)} layer(s) in float: {psnr:.2f} dB at {size[0]}x{size[1]} "
                    f"({probe_psnr:.2f} dB at {small[0]}x{small[1]})")
            if psnr >= target_psnr or len(float_layers) >= max_float_layers:
                break
            goal = max(goal, probe_psnr) + (target_psnr - psnr) + 0.05
            say(f"  short of {target_psnr:g} dB at full size: aiming for {goal:.2f} dB at {small[0]}x{small[1]}")
        del gated
        seconds["search"] = time.perf_counter() - t
    elif target_psnr is not None:
        before = psnr

    zps = zero_points(int8)
    if target == "tensorrt" and zps.size and np.any(zps != 0):
        raise QuantizeError(f"internal: {int(np.count_nonzero(zps))} non-zero zero points in a TensorRT (symmetric) file")
    settings = quantization_settings(target, reduce_range)
    info = {"target": target, "method": method, "size": list(size), "frames": len(calib_set),
            "calibration": calib_set.source, "calibration_sha256": calib_set.identity,
            "activations": settings["activation_type"].name, "weights": settings["weight_type"].name,
            "per_channel": True, "reduce_range": settings["reduce_range"], "op_types": OP_TYPES[target],
            "fp32_islands": {k: len(v) for k, v in islands.items()}, "float_stem": stem, "float_layers": float_layers,
            "psnr_vs_fp32_db": round(psnr, 3), "validation": f"{validation_frames} held-out frames at {size[0]}x{size[1]}"}
    _save(int8, onnx_in, info, onnx_out)
    seconds["total"] = time.perf_counter() - start

    return _report(
        int8, islands, seconds, path=onnx_out, target=target, method=method, size=size, calibration=calib_set.source,
        frames=len(calib_set), calibrated=calibrated, cache_path=cache_path, activation_type=info["activations"],
        weight_type=info["weights"], reduce_range=info["reduce_range"], float_layers=float_layers, stem_layers=stem,
        psnr_db=psnr, psnr_min_db=worst, validation_frames=len(validation), target_psnr=target_psnr,
        psnr_before_search_db=before, search=steps)


def _report(int8: onnx.ModelProto, islands: dict[str, list[str]], seconds: dict[str, float], **fields) -> QuantizeReport:
    """The report of either quantizer: what it chose (`fields`) plus what the written graph holds."""
    from .sensitivity import quantized_convs

    zps = zero_points(int8)
    n_int8 = len(quantized_convs(int8))
    return QuantizeReport(
        **fields, qdq_nodes=len(qdq_nodes(int8)), int8_convs=n_int8,
        float_convs=sum(n.op_type == "Conv" for n in int8.graph.node) - n_int8,
        island_nodes={k: len(v) for k, v in islands.items()}, measured_with=_measured_with(fields["target"]),
        seconds=seconds, zero_points="all 0" if not zps.size or not np.any(zps) else f"{int(zps.min())}..{int(zps.max())}")


def _check_modelopt(target: str, method: str, target_psnr: float | None) -> None:
    import importlib.util

    try:
        found = importlib.util.find_spec("modelopt.onnx.quantization") is not None
    except ImportError:  # "modelopt" itself missing
        found = False
    if not found:
        raise QuantizeError("NVIDIA ModelOpt is not installed (pip install 'nvidia-modelopt[onnx]'); "
                            "the default onnxruntime backend needs nothing extra")
    if target != "tensorrt":
        raise QuantizeError("the modelopt backend places Q/DQ for TensorRT; use --target tensorrt")
    if method == "percentile":
        raise QuantizeError("modelopt calibrates with entropy or max; use --method entropy or minmax")
    if target_psnr is not None:
        raise QuantizeError("--target-psnr runs on the onnxruntime backend; drop --backend modelopt")


def _quantize_modelopt(onnx_in, onnx_out, fp32, calib_set, method, size, target, target_psnr,
                       validation_frames, islands, excluded, seconds, start, say) -> QuantizeReport:
    """NVIDIA ModelOpt's ONNX PTQ (TensorRT placement rules), optional: only when it is installed."""
    import onnx
    from modelopt.onnx.quantization import quantize as modelopt_quantize

    from .calibration import heldout_frames

    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nedr-modelopt-") as tmp:
        out = Path(tmp) / "int8.onnx"
        try:
            modelopt_quantize(str(onnx_in), quantize_mode="int8",
                              calibration_data={INPUT_NAME: np.concatenate(calib_set.frames)}, calibration_method="entropy" if method == "entropy" else "max", calibration_eps=["cpu"],
                              nodes_to_exclude=excluded, high_precision_dtype="fp32", use_zero_point=False,
                              output_path=str(out))
        except Exception as exc:
            first = first_line(exc)
            raise QuantizeError(f"modelopt quantization failed: {type(exc).__name__}: {first[:200]}") from exc
        int8 = onnx.load_model(str(out))
    seconds["quantize"] = time.perf_counter() - t
    validation = heldout_frames(size, validation_frames)
    references = run_frames(ort_session(onnx_in), validation)
    psnr, worst = psnr_over_frames(run_frames(ort_session(int8, optimize=False), validation), references)
    info = {"target": target, "backend": "modelopt", "method": method, "size": list(size), "frames": len(calib_set),
            "calibration": calib_set.source, "psnr_vs_fp32_db": round(psnr, 3)}
    _save(int8, onnx_in, info, onnx_out)
    seconds["total"] = time.perf_counter() - start
    return _report(
        int8, islands, seconds, path=onnx_out, target=target, method=method, size=size, calibration=calib_set.source,
        frames=len(calib_set), calibrated=True, cache_path=None, activation_type="QInt8", weight_type="QInt8",
        reduce_range=False, float_layers=[], stem_layers=[n for n in stem_convs(fp32) if n in excluded], psnr_db=psnr,
        psnr_min_db=worst, validation_frames=len(validation))
