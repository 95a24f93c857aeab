"""A checkpoint to the ONNX file `nedr-export` hands out: export, check, and for FP16 convert.

Why one function and not the command's own sequence: whoever wants a deployable file (the CLI, the
Triton repository it writes, a script) needs the same order and the same rule that a file failing
its check is removed, never left for someone to deploy. The cache in `artifacts` is different on
purpose: it makes files for the runtime and benchmarks unverified, keyed by the weights' digest.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from nedr.bundled import resolve_weights
from nedr.contract import META_CHECKPOINT, META_CHECKPOINT_SHA256
from nedr.model import load_checkpoint

from .fast_export import export_fast_onnx
from .fp16 import convert_fp16
from .metadata import ExportError, file_sha256
from .onnx_export import DEFAULT_OPSET, checkpoint_model, export_onnx
from .verify import check_model_file, verify_onnx

PRECISIONS = ("fp32", "fp16")


def _onnx_output(out: str | os.PathLike) -> Path:
    out = Path(out)
    if out.suffix != ".onnx":
        raise ExportError(f"{out}: output must end in .onnx")
    return out


def _fp32_source_path(out: Path, precision: str) -> Path:
    """Where the FP32 file goes: `out` itself, or OUT.fp32.onnx beside an FP16 `out` (kept, since
    INT8 quantisation and any later FP16 conversion start from the FP32 file)."""
    return out if precision == "fp32" else out.with_name(out.stem + ".fp32.onnx")


def export_verified(checkpoint: str | os.PathLike | None, out: str | os.PathLike, *, precision: str = "fp32",
                    verify: bool = True, atol: float = 1e-3, atmosphere: str | None = None,
                    guided_filter: bool | None = None, prior_mix: float | None = None, opset: int = DEFAULT_OPSET,
                    static_size: tuple[int, int] | None = None, with_transmission: bool = True,
                    log: Callable[[str], None] = lambda _msg: None) -> Path:
    """Export `checkpoint` (a file or bundled name; default: the bundled default weights) to `out`; returns `out`.

    `verify` compares ONNX Runtime with PyTorch (`verify_onnx`); a file over `atol` is removed and
    ExportError raised. `precision="fp16"` converts the FP32 export and measures the agreement.
    `log` gets each step's result as it is known (the export, the reports), one message at a time."""
    out = _onnx_output(out)
    if precision not in PRECISIONS:
        raise ExportError(f"precision {precision!r}: the export gives {' or '.join(PRECISIONS)} "
                          "(INT8: quantize the FP32 export)")
    checkpoint = resolve_weights(checkpoint)
    fp32_path = _fp32_source_path(out, precision)
    model, metadata = checkpoint_model(checkpoint, atmosphere=atmosphere, guided_filter=guided_filter,
                                       prior_mix=prior_mix)
    export_onnx(model, fp32_path, opset=opset, static_size=static_size, with_transmission=with_transmission,
                metadata=metadata)
    log(f"exported {fp32_path}")
    if verify:
        report = verify_onnx(fp32_path, model, atol=atol)
        log(report.summary())
        if not report.passed:
            fp32_path.unlink(missing_ok=True)
            raise ExportError(f"{fp32_path}: verification failed (max abs error {report.max_abs_err:.2e} > "
                              f"{atol:g}); file removed")
    if precision == "fp16":
        report = convert_fp16(fp32_path, out, model=model)
        log(report.summary())
        log(f"wrote {out} (FP16) and {fp32_path} (FP32 source)")
    return out


def export_fast_verified(checkpoint: str | os.PathLike | None, out: str | os.PathLike, infer_hw: tuple[int, int], *,
                         verify: bool = True, atmosphere: str | None = None, guided_filter: bool | None = None,
                         prior_mix: float | None = None, opset: int = DEFAULT_OPSET,
                         with_transmission: bool = True) -> Path:
    """The fast variant of `checkpoint` (network at `infer_hw` inside the graph) at `out`; returns `out`.

    Verified structurally (checker, shape inference, TensorRT op table), a failing file removed:
    its numerics against PyTorch are covered by the runtime's fast-mode tests."""
    out = _onnx_output(out)
    checkpoint = resolve_weights(checkpoint)
    model = load_checkpoint(checkpoint, atmosphere=atmosphere, guided_filter=guided_filter, prior_mix=prior_mix,
                            error=ExportError)
    export_fast_onnx(model, out, infer_hw=infer_hw, opset=opset, with_transmission=with_transmission,
                     metadata={META_CHECKPOINT: checkpoint.name, META_CHECKPOINT_SHA256: file_sha256(checkpoint)})
    problems = check_model_file(out) if verify else []
    if problems:
        out.unlink(missing_ok=True)
        raise ExportError(f"{out}: {problems[0]}; file removed")
    return out
