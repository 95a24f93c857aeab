"""Operator hygiene: is an exported graph one that TensorRT's ONNX parser takes as it is?

`TRT_SUPPORTED_OPS` transcribes the "Operator Support Matrix" of onnx/onnx-tensorrt
`docs/operators.md` as published for TensorRT 10.15 ("supports operators in the inclusive range
of opset 9 to opset 24"): every operator marked Y, with its "Supported Types" column. The 10.x
parsers on Jetson (10.3 on JetPack 6) support a subset of the later additions (Attention,
RMSNormalization, RotaryEmbedding, TensorScatter), none of which NeDR uses; every operator the
export produces has been in the table since TensorRT 8.6.

`FORBIDDEN_OPS` is stricter than the parser on purpose: those operators parse, but they only
appear in this network through export accidents (in-place writes become ScatterND, Python loops
become Loop/Scan/If, argsort-like indexing becomes NonZero/CumSum/Range, dropout left in training
mode becomes Random*), and each is slow or shape-fragile in TensorRT. A clean NeDR graph has none.

Needs no torch (onnx only), like the engine builder that runs it on a Jetson.
"""
from __future__ import annotations

from collections import Counter

import onnx
from onnx import numpy_helper

from nedr.contract import TOPK_MAX

_F = ("FP32", "FP16", "BF16")
_FI = _F + ("INT32", "INT64")
_FIB = _FI + ("BOOL",)

# op type -> element types the parser accepts (onnx-tensorrt docs/operators.md, TensorRT 10.15).
TRT_SUPPORTED_OPS: dict[str, tuple[str, ...]] = {
    **{op: _FI for op in (
        "Abs", "Add", "ArgMax", "ArgMin", "DepthToSpace", "Div", "Equal", "Greater", "GreaterOrEqual",
        "IsNaN", "Less", "LessOrEqual", "Max", "Min", "Mod", "Mul", "Neg", "Pad", "Pow", "Relu",
        "Shrink", "Sign", "SpaceToDepth", "Sub", "Sum", "TopK", "ReduceL1", "ReduceL2", "ReduceLogSum",
        "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum",
        "ReduceSumSquare", "Range", "Scatter", "ScatterElements", "ScatterND")},
    **{op: _FIB for op in (
        "Concat", "Expand", "EyeLike", "Flatten", "Gather", "GatherElements", "GatherND", "Identity",
        "If", "Loop", "OneHot", "Reshape", "ReverseSequence", "Shape", "Size", "Slice", "Split",
        "Squeeze", "Tile", "Transpose", "Trilu", "Unsqueeze", "Where")},
    **{op: _F for op in (
        "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "AveragePool", "BatchNormalization", "Ceil",
        "Celu", "Clip", "Conv", "ConvTranspose", "Cos", "Cosh", "CumSum", "Dropout", "Einsum", "Elu",
        "Erf", "Exp", "Floor", "Gemm", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool",
        "GroupNormalization", "GRU", "HardSigmoid", "HardSwish", "Hardmax", "ImageScaler",
        "InstanceNormalization", "IsInf", "LayerNormalization", "LeakyRelu", "Log", "LogSoftmax",
        "LRN", "LSTM", "LpNormalization", "LpPool", "MatMul", "MaxPool", "MeanVarianceNormalization",
        "ParametricSoftplus", "PRelu", "RandomNormal", "RandomNormalLike", "RandomUniform",
        "RandomUniformLike", "Reciprocal", "Resize", "RMSNormalization", "RNN", "RotaryEmbedding",
        "Round", "ScaledTanh", "Scan", "Selu", "Sigmoid", "Sin", "Sinh", "Softmax", "Softplus",
        "Softsign", "Sqrt", "Tan", "Tanh", "ThresholdedRelu", "Upsample")},
    **{op: ("FP32", "FP16") for op in (
        "BlackmanWindow", "DeformConv", "GridSample", "HammingWindow", "HannWindow", "Mish",
        "NonMaxSuppression", "NonZero", "RoiAlign")},
    "And": ("BOOL",), "Not": ("BOOL",), "Or": ("BOOL",), "Xor": ("BOOL",),
    "Attention": _F + ("INT8", "FP8"),
    "Cast": _FI + ("UINT8", "BOOL"), "CastLike": _FI + ("UINT8", "BOOL"),
    "Constant": _FIB + ("FP8", "FP4", "INT4"), "ConstantOfShape": _FIB + ("FP8", "FP4", "INT4"),
    "DequantizeLinear": ("INT8", "FP8", "FP4", "INT4"),
    "Gelu": _FI + ("INT8",), "Mean": _FI + ("FP8",),
    "QuantizeLinear": _F, "STFT": ("FP32",), "TensorScatter": _F + ("INT32",),
}

# Parse, but never belong in this network (module docstring).
FORBIDDEN_OPS = frozenset({
    "ScatterND", "ScatterElements", "Scatter", "CumSum", "NonZero", "Loop", "Scan", "If", "Range", "DFT",
    "RandomUniform", "RandomUniformLike", "RandomNormal", "RandomNormalLike",
})

_ONNX_TYPE_NAMES = {
    onnx.TensorProto.FLOAT: "FP32", onnx.TensorProto.FLOAT16: "FP16", onnx.TensorProto.BFLOAT16: "BF16",
    onnx.TensorProto.INT32: "INT32", onnx.TensorProto.INT64: "INT64", onnx.TensorProto.BOOL: "BOOL",
    onnx.TensorProto.UINT8: "UINT8", onnx.TensorProto.INT8: "INT8", onnx.TensorProto.DOUBLE: "DOUBLE",
}
# Where the op's element type lives when it is not input 0 (Where: input 0 is the bool condition).
_DATA_INPUT = {"Where": 1, "ConstantOfShape": None, "Constant": None}
# Ops that only forward a value unchanged, followed when tracing where TopK's K comes from.
_PASS_THROUGH = {"Reshape", "Cast", "Unsqueeze", "Squeeze", "Identity", "Flatten"}
_RESIZE_TRANSFORMS = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _value_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every named value (after ONNX type inference; unknown values are absent)."""
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # an invalid graph is reported by the checker, not here
        pass
    g = model.graph
    types = {t.name: t.data_type for t in g.initializer}
    for vi in (*g.input, *g.value_info, *g.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    return types


def _constants(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    out = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and _attr(node, "value") is not None:
            out[node.output[0]] = _attr(node, "value")
    return out


def topk_bound(model: onnx.ModelProto, node: onnx.NodeProto) -> int | None:
    """Largest K a TopK node can receive: its constant K, or the constant bound of a Min/Clip that
    the K tensor passes through (following reshapes and casts); None if K is unbounded."""
    producers = {o: n for n in model.graph.node for o in n.output}
    consts = _constants(model)
    name = node.input[1]
    while True:
        if name in consts:
            return int(numpy_helper.to_array(consts[name]).max())
        src = producers.get(name)
        if src is None:
            return None
        if src.op_type in _PASS_THROUGH:
            name = src.input[0]
            continue
        if src.op_type == "Min":
            bounds = [int(numpy_helper.to_array(consts[i]).max()) for i in src.input if i in consts]
            return min(bounds) if bounds else None
        if src.op_type == "Clip" and len(src.input) > 2 and src.input[2] in consts:
            return int(numpy_helper.to_array(consts[src.input[2]]).max())
        return None


def check_ops(model: onnx.ModelProto) -> list[str]:
    """Every reason TensorRT would refuse the graph, or that it is not a clean export; [] when fine.

    Checks: standard-domain operators only; each operator in `TRT_SUPPORTED_OPS` with a supported
    element type; none of `FORBIDDEN_OPS`; TopK sorted and K provably <= 3840 (TensorRT's limit);
    Reduce* axes constant; Resize modes TensorRT implements.
    """
    problems: list[str] = []
    types = _value_types(model)
    consts = _constants(model)
    forbidden: Counter[str] = Counter()
    for node in model.graph.node:
        where = f"{node.op_type} node {node.name or node.output[0]!r}"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{where}: custom domain {node.domain!r} (TensorRT would need a plugin)")
            continue
        if node.op_type in FORBIDDEN_OPS:
            forbidden[node.op_type] += 1
        allowed = TRT_SUPPORTED_OPS.get(node.op_type)
        if allowed is None:
            problems.append(f"{where}: not supported by the TensorRT ONNX parser")
            continue
        idx = _DATA_INPUT.get(node.op_type, 0)
        tensor = (node.input[idx] if idx is not None and len(node.input) > idx else node.output[0])
        dtype = _ONNX_TYPE_NAMES.get(types.get(tensor, 0))
        if dtype is not None and dtype not in allowed:
            problems.append(f"{where}: element type {dtype} not supported by TensorRT (accepts {', '.join(allowed)})")
        if node.op_type == "TopK":
            if _attr(node, "sorted", 1) != 1:
                problems.append(f"{where}: TensorRT needs sorted=1")
            bound = topk_bound(model, node)
            if bound is None:
                problems.append(f"{where}: K is not bounded by a constant (TensorRT allows K <= {TOPK_MAX})")
            elif bound > TOPK_MAX:
                problems.append(f"{where}: K can reach {bound} > {TOPK_MAX} (TensorRT's limit)")
        elif node.op_type.startswith("Reduce") and len(node.input) > 1 and node.input[1] and node.input[1] not in consts:
            problems.append(f"{where}: axes must be a constant for TensorRT")
        elif node.op_type == "Resize":
            mode = _attr(node, "mode", b"nearest").decode()
            transform = _attr(node, "coordinate_transformation_mode", b"half_pixel").decode()
            if mode not in ("nearest", "linear") or transform not in _RESIZE_TRANSFORMS or _attr(node, "antialias", 0):
                problems.append(f"{where}: Resize mode={mode}, coordinate_transformation_mode={transform} "
                                "is not one TensorRT implements")
    problems += [f"{op}: {n} node(s); forbidden in a clean NeDR export" for op, n in sorted(forbidden.items())]
    return problems
