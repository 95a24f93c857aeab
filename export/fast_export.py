"""Fast-mode ONNX (`nedr-export --fast WxH`): the network at a fixed small size inside the graph,
guided local-affine upsampling back to the input size (nedr.model.fast.FastNeDR).

The input `hazy` takes any N×3×H×W (H, W dynamic, no ×32 padding needed: the graph resizes to the
fixed network size itself); `clean` comes out at H×W, plus `transmission` (bilinearly upsampled)
when asked. The extra ops over the plain export are Resize (bilinear, half-pixel; shape-driven
for the way back up) and the box-mean Convs, all in TensorRT's parser table. Metadata: the plain export's
`nedr.*` props plus `nedr.fast` = {"infer_hw", "radius", "eps"}; `nedr.input` says any size.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Mapping

import torch

from nedr.contract import META_FAST, META_PREFIX
from nedr.model.fast import DEFAULT_EPS, DEFAULT_RADIUS, FastNeDR
from nedr.model.network import NeDR

from .onnx_export import (DEFAULT_OPSET, SUPPORTED_OPSETS, ExportError, _check_destination, _check_size,
                          input_contract, output_names, save_onnx_atomic, stamp, trace_checked)


def export_fast_onnx(model: NeDR, path: str | Path, infer_hw: tuple[int, int], *, opset: int = DEFAULT_OPSET,
                     radius: int = DEFAULT_RADIUS, eps: float = DEFAULT_EPS, with_transmission: bool = False,
                     metadata: Mapping[str, Any] | None = None) -> Path:
    """Export FastNeDR(model, infer_hw=(h, w)) with dynamic N, H, W; ExportError (one line) on failure."""
    path = Path(path)
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(f"opset {opset} not supported; use {SUPPORTED_OPSETS.start}–{SUPPORTED_OPSETS.stop - 1}")
    h, w = _check_size(infer_hw)
    _check_destination(path)
    net = copy.deepcopy(model).float().cpu().eval()
    module = FastNeDR(net, (h, w), radius, eps, with_transmission).eval()
    outputs = output_names(with_transmission)
    # trace at a size that is neither the network size nor on the ×32 grid, so both resizes stay shape-driven
    example = torch.rand(1, 3, 2 * h + 6, 2 * w + 10, generator=torch.Generator().manual_seed(0))
    graph = trace_checked(module, example, opset, True, outputs, what="fast-mode ")
    contract = input_contract()
    contract.update(pad_multiple=1, min_size=16, padding="none: any H×W, resized to the network size inside the graph")
    stamp(graph, net, {"dynamic_axes": True, "static_size": None}, with_transmission, opset, contract, metadata,
          doc=(f"NeDR fast mode: hazy N×3×H×W RGB [0,1] (any H, W) → clean at H×W; network at {h}×{w}, "
               "guided local-affine upsampling"),
          extra_props={META_PREFIX + META_FAST: json.dumps({"infer_hw": [h, w], "radius": radius, "eps": eps})})
    return save_onnx_atomic(graph, path)


__all__ = ["export_fast_onnx"]
