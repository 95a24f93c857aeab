"""NeDR (PyTorch) → one self-describing ONNX file: input `hazy`, output `clean` (+ `transmission`).

Exporter: TorchScript tracing, `torch.onnx.export(..., dynamo=False)`, then ONNX-level constant
folding with onnxscript. Measured on this model (torch 2.13, onnxscript 0.7, 2 CPU cores):

* TorchScript folds parameter arithmetic at export (`do_constant_folding`): the KAN spline weights
  (spline_weight · spline_scaler), the IDRM conv weight cut out of the LIIF Linear and every
  folded BatchNorm become plain Conv initializers. Its raw graph carries one Shape-free but
  unfoldable pad-list computation per Pad (ConstantOfShape → Concat → Slice(step −1) → Transpose
  → Cast; TorchScript's folder skips Slice with step ≠ 1); onnxscript folds those, with
  ConstantOfShape allowed (its default keeps it to avoid large constants; here they are 4-element
  pad lists). Result: ~480 nodes, Pad nodes with constant pads, no Cast/Identity/ConstantOfShape
  left in the network. About 10 s per export.
* The dynamo exporter (`torch.export` + onnxscript) took ~48 s and kept parameter arithmetic in
  the graph (Unsqueeze/Mul/Reshape on the KAN weights, Slice/Transpose/GatherND on the IDRM
  weight), so Conv weights were computed at run time instead of being initializers.

Shapes: N, H and W are dynamic by default (`batch`, `height`, `width`); H and W must follow the
network contract (multiples of 32, at least 128: docs/model.md). `static_size=(H, W)` gives a fully
static 1×3×H×W graph (what DLA needs). The only shape arithmetic left is the dark-channel K =
min(⌊H·W/1000⌋, 3840) feeding TopK, and the reshapes that flatten the image for it.

`atmosphere` ("dark_channel" | "max" | "brightest"), `guided_filter` and `prior_mix` are read from the model and
baked in.
Tracing runs at 128×160 (or the static size), above the guided filter's 81×81 window, so the
filter is always in the graph when the model has it on.
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
import warnings
from pathlib import Path
from typing import Any, Mapping

import onnx
import torch
from torch import nn

from nedr.contract import (INPUT_NAME, META_CHECKPOINT, META_CHECKPOINT_SHA256, META_INPUT, META_OPTIONS, META_PREFIX,
                           META_VERSION, META_WEIGHTS_SHA256, MIN_SIZE, OUTPUT_CLEAN, OUTPUT_TRANSMISSION, PAD_MULTIPLE,
                           TOP_FRACTION_DIVISOR, TOPK_MAX, meets_contract)
from nedr.errors import first_line
from nedr.fileio import atomic_write, output_problem
from nedr.model.network import NeDR

from .metadata import ExportError, encode_value, file_sha256
from .ops import check_ops

DEFAULT_OPSET = 17
SUPPORTED_OPSETS = range(17, 21)  # the TorchScript exporter's upper bound is 20; TensorRT 10.x parses 9–20+
TRACE_SIZE = (MIN_SIZE, MIN_SIZE + PAD_MULTIPLE)  # non-square, so an H/W mix-up cannot hide


class ExportableNeDR(nn.Module):
    """The exported function: hazy → clean (and t), with the model's A and filter options baked in."""

    def __init__(self, model: NeDR, with_transmission: bool = False):
        super().__init__()
        self.model = model
        self.with_transmission = with_transmission

    def forward(self, hazy: torch.Tensor):
        p = self.model.predict(hazy)
        return (p.clean, p.transmission) if self.with_transmission else p.clean


def output_names(with_transmission: bool) -> list[str]:
    return [OUTPUT_CLEAN, OUTPUT_TRANSMISSION] if with_transmission else [OUTPUT_CLEAN]


def weights_sha256(model: nn.Module) -> str:
    """Digest of the state dict (names, dtypes, shapes, bytes): identifies weights without a file."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        v = value.detach().cpu().contiguous()
        digest.update(f"{key}|{v.dtype}|{tuple(v.shape)}|".encode())
        digest.update(v.numpy().tobytes() if v.dtype != torch.bfloat16 else v.float().numpy().tobytes())
    return digest.hexdigest()


def input_contract() -> dict[str, Any]:
    """What a runtime must feed: recorded in every exported file (`nedr.input`)."""
    return {
        "name": INPUT_NAME, "dtype": "float32", "layout": "NCHW", "channels": "RGB", "range": [0.0, 1.0],
        "normalisation": "none", "pad_multiple": PAD_MULTIPLE, "min_size": MIN_SIZE,
        "padding": "pad right/bottom (reflect where the image is large enough) to the contract, crop the output back",
        "topk_max": TOPK_MAX, "exact_atmosphere_max_pixels": (TOPK_MAX + 1) * TOP_FRACTION_DIVISOR - 1,
    }


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    h, w = (int(s) for s in size)
    if not meets_contract(h, w):
        raise ExportError(f"static_size {h}×{w} breaks the network contract: H and W must be multiples of "
                          f"{PAD_MULTIPLE} and >= {MIN_SIZE}")
    return h, w


def _check_destination(path: Path) -> None:
    """Fail before the (slow) trace when the file cannot be written where asked."""
    problem = output_problem(path)
    if problem:
        raise ExportError(problem)


def save_onnx_atomic(model: onnx.ModelProto, path: str | Path) -> Path:
    """Write one self-contained .onnx (no external-data sidecar) via a temporary name and a rename,
    so an interrupted or failed write never leaves a partial file under the final name."""
    path = Path(path)
    try:
        return atomic_write(path, lambda tmp: onnx.save_model(model, str(tmp), save_as_external_data=False))
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else first_line(exc)
        raise ExportError(f"cannot write {path}: {reason}") from None


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxscript's folder and cleanup passes, letting ConstantOfShape fold (module docstring)."""
    import onnxscript.optimizer as optimizer
    from onnxscript import ir

    graph = ir.serde.deserialize_model(model)
    optimizer.fold_constants(graph, should_fold=lambda node: True if node.op_type == "ConstantOfShape" else None)
    optimizer.optimize(graph)
    return ir.serde.serialize_model(graph)


def _trace(module: nn.Module, example: torch.Tensor, opset: int, dynamic: bool, outputs: list[str]) -> onnx.ModelProto:
    axes = {"batch": 0, "height": 2, "width": 3}
    dynamic_axes = {name: {i: label for label, i in axes.items()} for name in (INPUT_NAME, *outputs)} if dynamic else None
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # Expected and harmless here: shape checks seen as constants while tracing (the graph is
        # checked afterwards), the legacy-exporter notice, and the step −1 Slice folding notice.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r"You are using the legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=r"Constant folding - Only steps=1")
        torch.onnx.export(module, (example,), buffer, dynamo=False, opset_version=opset, do_constant_folding=True,
                          input_names=[INPUT_NAME], output_names=outputs, dynamic_axes=dynamic_axes)
    return onnx.load_model_from_string(buffer.getvalue())


def trace_checked(module: nn.Module, example: torch.Tensor, opset: int, dynamic: bool, outputs: list[str],
                  what: str = "") -> onnx.ModelProto:
    """Trace, fold, and hold the graph to TensorRT's operator table; every failure is one ExportError."""
    try:
        with torch.no_grad():
            graph = fold_constants(_trace(module, example, opset, dynamic, outputs))
    except Exception as exc:  # torch/onnx raise many types; the caller gets one
        first = first_line(exc)
        raise ExportError(f"{what}ONNX export failed: {type(exc).__name__}: {first[:200]}") from exc
    problems = check_ops(graph)
    if problems:
        raise ExportError(f"exported {what}graph is not TensorRT-clean: {problems[0]}"
                          + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))
    return graph


def stamp(graph: onnx.ModelProto, net: NeDR, options: Mapping[str, Any], with_transmission: bool, opset: int,
          contract: Mapping[str, Any], metadata: Mapping[str, Any] | None, doc: str,
          extra_props: Mapping[str, str] | None = None) -> None:
    """Write the metadata props every nedr ONNX carries, so a runtime can check what it was given."""
    from nedr import __version__

    full = {"atmosphere": net.atmosphere, "guided_filter": bool(net.guided_filter), "prior_mix": net.prior_mix,
            "with_transmission": with_transmission, "opset": opset, **options,
            "exporter": f"torch.onnx TorchScript (dynamo=False), torch {torch.__version__}; onnxscript folding",
            "precision": "fp32"}
    extra = dict(metadata or {})
    props = {
        META_PREFIX + META_VERSION: __version__,
        META_PREFIX + META_CHECKPOINT_SHA256: str(extra.pop(META_CHECKPOINT_SHA256, "")),
        META_PREFIX + META_WEIGHTS_SHA256: weights_sha256(net),
        META_PREFIX + META_OPTIONS: json.dumps(full),
        META_PREFIX + META_INPUT: json.dumps(contract),
        **(extra_props or {}),
    }
    for key, value in extra.items():
        props[key if key.startswith(META_PREFIX) else META_PREFIX + key] = encode_value(value)
    onnx.helper.set_model_props(graph, props)
    graph.producer_name, graph.producer_version = "nedr", __version__
    graph.doc_string = doc


def export_onnx(model: NeDR, path: str | Path, *, opset: int = DEFAULT_OPSET,
                static_size: tuple[int, int] | None = None, with_transmission: bool = False,
                metadata: Mapping[str, Any] | None = None) -> Path:
    """Export `model` to `path` and return the path.

    The file holds the graph (checked against TensorRT's parser table, `check_ops`) and metadata
    props: `nedr.version`, `nedr.checkpoint_sha256` (from `metadata`, empty for an in-memory
    model), `nedr.weights_sha256`, `nedr.options` and `nedr.input` (the input contract), plus
    every `metadata` entry (keys prefixed `nedr.` unless they already are). Raises ExportError
    with a one-line message on any failure, leaving no file at `path`.
    """
    path = Path(path)
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(f"opset {opset} not supported; use {SUPPORTED_OPSETS.start}–{SUPPORTED_OPSETS.stop - 1}")
    size = _check_size(static_size) if static_size is not None else TRACE_SIZE
    _check_destination(path)

    net = copy.deepcopy(model).float().cpu().eval()
    outputs = output_names(with_transmission)
    example = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    graph = trace_checked(ExportableNeDR(net, with_transmission), example, opset, static_size is None, outputs)

    options = {"dynamic_axes": static_size is None, "static_size": list(size) if static_size else None}
    stamp(graph, net, options, with_transmission, opset, input_contract(), metadata,
          doc="NeDR dehazer: hazy N×3×H×W RGB [0,1] → clean (same layout); see metadata nedr.input")
    return save_onnx_atomic(graph, path)


def checkpoint_model(checkpoint: str | Path, *, atmosphere: str | None = None, guided_filter: bool | None = None,
                     prior_mix: float | None = None,
                     metadata: Mapping[str, Any] | None = None) -> tuple[NeDR, dict[str, Any]]:
    """The model a checkpoint (public NeDR/D4 `.pth`, bare state dict, or ours) makes, and the
    metadata its export records: file name, sha256, its config, load warnings (e.g. DREM seeded for
    public files). One load serves both the export and its check against PyTorch.
    `atmosphere`/`guided_filter`/`prior_mix` default to the checkpoint's config, else dark channel + filter.
    Loading problems are raised as ExportError like export ones (the loader is told the class, no
    re-wrap), so callers catch one type."""
    from nedr.model.checkpoint import load_checkpoint

    checkpoint = Path(checkpoint)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # kept below, and re-issued for the caller
        model = load_checkpoint(checkpoint, atmosphere=atmosphere, guided_filter=guided_filter, prior_mix=prior_mix,
                                error=ExportError)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    metadata = dict(metadata or {})
    metadata.setdefault(META_CHECKPOINT, checkpoint.name)
    metadata.setdefault(META_CHECKPOINT_SHA256, file_sha256(checkpoint))
    if model.config:
        metadata.setdefault("checkpoint_config", model.config)
    if caught:
        metadata.setdefault("load_warnings", [str(w.message) for w in caught])
    return model, metadata


def export_checkpoint(checkpoint: str | Path, path: str | Path, *, atmosphere: str | None = None,
                      guided_filter: bool | None = None, prior_mix: float | None = None, opset: int = DEFAULT_OPSET,
                      static_size: tuple[int, int] | None = None, with_transmission: bool = False,
                      metadata: Mapping[str, Any] | None = None) -> Path:
    """Load a checkpoint and export it (`checkpoint_model`: what is recorded, which error)."""
    _check_destination(Path(path))  # before the load: a bad destination fails at once
    model, metadata = checkpoint_model(checkpoint, atmosphere=atmosphere, guided_filter=guided_filter,
                                       prior_mix=prior_mix, metadata=metadata)
    return export_onnx(model, path, opset=opset, static_size=static_size, with_transmission=with_transmission,
                       metadata=metadata)
