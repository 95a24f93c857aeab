"""Tiny hand-built ONNX graphs with nedr's input name (`hazy`), for build/manifest tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _io(name: str, elem: int, static: tuple[int, int] | None):
    dims = [1, 3, *static] if static else ["batch", 3, "height", "width"]
    return helper.make_tensor_value_info(name, elem, dims)


def _model(nodes, inits, static, in_type=TensorProto.FLOAT, out_type=TensorProto.FLOAT, name="tiny", input_name="hazy"):
    graph = helper.make_graph(nodes, name, [_io(input_name, in_type, static)], [_io("clean", out_type, static)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _weights(dtype=np.float32):
    rng = np.random.default_rng(0)
    return (numpy_helper.from_array((rng.standard_normal((3, 3, 3, 3)) * 0.1).astype(dtype), "w"),
            numpy_helper.from_array(np.zeros(3, dtype), "b"))


def conv_model(static: tuple[int, int] | None = None, input_name: str = "hazy") -> onnx.ModelProto:
    """FP32: hazy → Conv 3×3 → Sigmoid → clean."""
    w, b = _weights()
    nodes = [helper.make_node("Conv", [input_name, "w", "b"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["y"], ["clean"])]
    return _model(nodes, [w, b], static, input_name=input_name)


def fp16_model(static: tuple[int, int] | None = None) -> onnx.ModelProto:
    """FP16 inside, FP32 I/O: Cast → Conv (fp16 weights) → Cast back, as the FP16 converter leaves it."""
    w, b = _weights(np.float16)
    nodes = [helper.make_node("Cast", ["hazy"], ["x16"], to=TensorProto.FLOAT16),
             helper.make_node("Conv", ["x16", "w", "b"], ["y16"], pads=[1, 1, 1, 1]),
             helper.make_node("Cast", ["y16"], ["clean"], to=TensorProto.FLOAT)]
    return _model(nodes, [w, b], static)


def qdq_model(static: tuple[int, int] | None = None, zero_point_type: int = TensorProto.INT8) -> onnx.ModelProto:
    """Explicit quantization: Q/DQ on the activation and the weight, then Conv in FP32 arithmetic."""
    w, b = _weights()
    np_zp = np.int8 if zero_point_type == TensorProto.INT8 else np.uint8
    inits = [w, b,
             numpy_helper.from_array(np.array(1 / 127, np.float32), "sx"),
             numpy_helper.from_array(np.array(0, np_zp), "zx"),
             numpy_helper.from_array(np.array(0.01, np.float32), "sw"),
             numpy_helper.from_array(np.array(0, np.int8), "zw")]
    nodes = [helper.make_node("QuantizeLinear", ["hazy", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
             helper.make_node("QuantizeLinear", ["w", "sw", "zw"], ["wq"]),
             helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wd"]),
             helper.make_node("Conv", ["xd", "wd", "b"], ["clean"], pads=[1, 1, 1, 1])]
    return _model(nodes, inits, static)


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save_model(model, str(path))
    return path
