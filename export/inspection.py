"""What is inside an .onnx file: size of the graph, operators, precisions, Q/DQ, metadata, I/O.

Reads the file once, without running it, so it works on any precision variant (FP32, FP16,
INT8 Q/DQ) and on machines without torch (imports onnx and numpy only).
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from nedr.contract import META_OPTIONS

from .metadata import load_onnx, read_metadata

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def _dtype(elem_type: int) -> str:
    return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name if elem_type else "undefined"


def _io(values) -> list[dict[str, Any]]:
    out = []
    for v in values:
        t = v.type.tensor_type
        shape = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in t.shape.dim]
        out.append({"name": v.name, "dtype": _dtype(t.elem_type), "shape": shape})
    return out


def inspect_onnx(path: str | Path) -> dict[str, Any]:
    """Summary of an ONNX file as plain data (JSON-serialisable)."""
    path = Path(path)
    model = load_onnx(path)
    graph = model.graph
    ops = Counter(n.op_type for n in graph.node)
    init_count: Counter[str] = Counter()
    init_elems: Counter[str] = Counter()
    for t in graph.initializer:
        name = _dtype(t.data_type)
        init_count[name] += 1
        init_elems[name] += int(np.prod(t.dims, dtype=np.int64))
    return {
        "path": str(path),
        "file_bytes": os.path.getsize(path),
        "ir_version": model.ir_version,
        "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "nodes": len(graph.node),
        "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "initializers": {k: {"tensors": init_count[k], "elements": init_elems[k]} for k in sorted(init_count)},
        "parameters": sum(init_elems.values()),
        "qdq_nodes": sum(ops[op] for op in QDQ_OPS),
        "cast_nodes": ops["Cast"],
        "metadata": read_metadata(model),
        "inputs": _io(graph.input),
        "outputs": _io(graph.output),
    }


def format_inspection(info: dict[str, Any]) -> str:
    """Human-readable text of `inspect_onnx`'s result."""
    def shape(s):
        return "×".join(str(d) for d in s)

    meta = dict(info["metadata"])
    options = meta.pop(META_OPTIONS, {})
    lines = [
        f"{info['path']}  ({info['file_bytes'] / 1e6:.1f} MB, IR {info['ir_version']}, "
        f"opset {', '.join(f'{d} {v}' for d, v in info['opsets'].items())}, by {info['producer'] or '?'})",
        "inputs:  " + "; ".join(f"{v['name']} {v['dtype']} {shape(v['shape'])}" for v in info["inputs"]),
        "outputs: " + "; ".join(f"{v['name']} {v['dtype']} {shape(v['shape'])}" for v in info["outputs"]),
        f"nodes: {info['nodes']}  (Q/DQ {info['qdq_nodes']}, Cast {info['cast_nodes']})",
        "ops: " + ", ".join(f"{op} {n}" for op, n in info["ops"].items()),
        f"parameters: {info['parameters']:,}  by dtype: "
        + ", ".join(f"{k} {v['elements']:,} in {v['tensors']} tensors" for k, v in info["initializers"].items()),
    ]
    if options:
        lines.append("options: " + ", ".join(f"{k}={v}" for k, v in options.items()))
    lines += [f"{k}: {v}" for k, v in meta.items()]
    return "\n".join(lines)
