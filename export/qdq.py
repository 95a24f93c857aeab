"""Q/DQ placement per target: where ONNX Runtime's `quantize_static` puts quantization for each
deployment runtime, and the graph fixes it needs afterwards. Two targets:

* `tensorrt` (default): int8 activations and int8 weights, both symmetric (every zero point 0),
  per-channel weights, Q/DQ only on Conv inputs and weights (none added on Conv outputs; a residual
  Add or a Pad reading the same tensor shares its DequantizeLinear), bias kept float (TensorRT takes
  no int32 bias): the explicit-quantization placement TensorRT fuses into int8 convolutions and
  that its strongly typed builds require (no implicit calibrators in TensorRT 11).
* `cpu`: uint8 activations (asymmetric) and int8 per-channel weights, DQ → Conv → Q groups that
  ONNX Runtime fuses into QLinearConv. On x86 CPUs without VNNI (AVX2 only, like the 2-core AMD
  EPYC box this was written on), MLAS multiplies u8×s8 with `vpmaddubsw`, whose int16 pair sums
  saturate: measured here (128x128, 4 held-out frames), full-range int8 weights gave 12–37 dB
  against FP32 with the fused kernels while the same file emulated in float gave 42–47 dB. So by default (`reduce_range=None`)
  weights use 7 bits (±63, no saturation possible) when /proc/cpuinfo shows no VNNI, and the full
  8 bits when it does (avx512_vnni / avx_vnni / amx_int8) or off x86.

FP32 everywhere INT8 breaks the math (docs/model.md §4, §6, §7), i.e. `fp32_islands` (islands.py,
shared with the FP16 converter): the KAN basis (its grouped Conv and the spline polynomial) and the scattering-model tail
(t = clamp, guided filter box sums, atmospheric light, J = (I − A)/t + A): their nodes go to
`nodes_to_exclude`, and so does the stem convolution by default (`stem_convs`). `tensorrt`
quantizes Conv only; `cpu` also the Relu/Clip/Add/Concat/Resize/Pad/MaxPool between convolutions
(`OP_TYPES`).

`quantize.py` runs these steps.
"""
from __future__ import annotations

import platform
import tempfile
from pathlib import Path

import numpy as np
import onnx

from nedr.errors import UserError, first_line

from .graph import producers

TARGETS = ("tensorrt", "cpu")
# TensorRT: Q/DQ on Conv inputs only (it fuses the rest). ONNX Runtime CPU: also the ops between
# convolutions that have uint8 kernels or vanish into the quantization range (Relu/Clip), so
# activations stay uint8 from one QLinearConv to the next instead of round-tripping through float
# (measured at 480x640: 5.75 s -> 5.08 s per frame, FP32 7.03 s).
OP_TYPES = {"tensorrt": ["Conv"], "cpu": ["Conv", "Relu", "Clip", "Add", "Concat", "Resize", "Pad", "MaxPool"]}
CALIBRATED_OP_TYPES = sorted({op for ops in OP_TYPES.values() for op in ops})  # one cache serves both targets


class QuantizeError(UserError):
    """INT8 quantization could not run or produce its file; the message is one line naming the cause.
    (A RuntimeError, via UserError: the CLI reports it as one line.)"""


def cpu_has_vnni() -> bool:
    """x86 VNNI (8-bit dot products that accumulate in int32 without saturating)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return True  # ARM's dot-product kernels do not saturate; nothing to work around
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def quantization_settings(target: str, reduce_range: bool | None = None) -> dict:
    """Keyword arguments of `quantize_static` for a target (module docstring)."""
    from onnxruntime.quantization import QuantFormat, QuantType

    if target == "tensorrt":
        return dict(quant_format=QuantFormat.QDQ, op_types_to_quantize=OP_TYPES[target], per_channel=True,
                    reduce_range=False, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                   "OpTypesToExcludeOutputQuantization": ["Conv"], "QuantizeBias": False,
                                   "DedicatedQDQPair": True})
    if target == "cpu":
        return dict(quant_format=QuantFormat.QDQ, op_types_to_quantize=OP_TYPES[target], per_channel=True,
                    reduce_range=(not cpu_has_vnni()) if reduce_range is None else bool(reduce_range),
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    raise QuantizeError(f"unknown target {target!r}; use one of {', '.join(TARGETS)}")


def quantize_with_ranges(onnx_in: Path, ranges, target: str, nodes_to_exclude: list[str],
                         reduce_range: bool | None = None) -> onnx.ModelProto:
    """`quantize_static` with precomputed ranges (no calibration pass): the ranges go in through
    its `calibration_cache_path` (written to a temporary file in ONNX Runtime's own format)."""
    import inspect
    import logging

    import onnx
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        import onnxruntime

        raise QuantizeError(f"onnxruntime {onnxruntime.__version__} cannot take precomputed ranges "
                            "(quantize_static has no calibration_cache_path); upgrade onnxruntime")
    settings = quantization_settings(target, reduce_range)
    quant_logger = logging.getLogger()  # quantize_static warns "consider pre-processing" (skipped, see above)
    level = quant_logger.level
    with tempfile.TemporaryDirectory(prefix="nedr-quant-") as tmp:
        cache, out = Path(tmp) / "ranges.json", Path(tmp) / "int8.onnx"
        save_tensors_data(ranges, cache)
        quant_logger.setLevel(logging.ERROR)
        try:
            quantize_static(str(onnx_in), str(out), None, nodes_to_exclude=list(nodes_to_exclude),
                            calibrate_method=ranges.calibration_method, calibration_cache_path=str(cache), **settings)
        except Exception as exc:
            first = first_line(exc)
            raise QuantizeError(f"onnxruntime quantization failed: {type(exc).__name__}: {first[:200]}") from exc
        finally:
            quant_logger.setLevel(level)
        model = onnx.load_model(str(out))
    float_inputs_for(model, set(nodes_to_exclude), onnx.load_model(str(onnx_in)))
    return model


def float_inputs_for(model: onnx.ModelProto, names: set[str], float_model: onnx.ModelProto) -> int:
    """Make the nodes `names` read float tensors instead of shared 8-bit ones.

    `nodes_to_exclude` keeps a node itself float, but when a quantized neighbour quantizes a
    tensor it reads (the CPU target quantizes Conv outputs, e.g. the depthwise conv feeding a KAN
    basis, and constants shared with quantized ops, e.g. the 2 in the spline's 2 − |u|), ONNX
    Runtime points every reader at the DequantizeLinear, so the island would compute on 8-bit
    values. Rewires activations to the QuantizeLinear's float input and constants to their FP32
    initializer from `float_model`, then drops Q/DQ nodes left without readers. Returns the
    number of inputs rewired.
    """
    graph = model.graph
    writer = producers(graph)
    have = {t.name for t in graph.initializer}
    originals = {t.name: t for t in float_model.graph.initializer}
    rewired = 0
    for node in graph.node:
        if node.name not in names:
            continue
        for k, name in enumerate(node.input):
            dq = writer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = writer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[k] = q.input[0]
                rewired += 1
            elif dq.input[0] in have and dq.input[0].endswith("_quantized"):
                original = dq.input[0][:-len("_quantized")]
                if original in originals:
                    if original not in have:
                        graph.initializer.append(originals[original])
                        have.add(original)
                    node.input[k] = original
                    rewired += 1
    outputs = {o.name for o in graph.output}
    while True:
        read = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in read for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input}
    for init in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(init)
    return rewired


def qdq_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]


def zero_points(model: onnx.ModelProto) -> np.ndarray:
    """Every zero point of every Q/DQ node, concatenated (int64); absent zero points count as 0."""
    import onnx

    inits = {t.name: t for t in model.graph.initializer}
    values = []
    for n in qdq_nodes(model):
        if len(n.input) < 3 or not n.input[2]:
            values.append(np.zeros(1, dtype=np.int64))
        elif n.input[2] in inits:
            values.append(onnx.numpy_helper.to_array(inits[n.input[2]]).astype(np.int64).ravel())
        else:
            raise QuantizeError(f"Q/DQ node {n.name} has a computed zero point; expected a constant")
    return np.concatenate(values) if values else np.zeros(0, dtype=np.int64)


def stem_convs(model: onnx.ModelProto) -> list[str]:
    """The Conv nodes that read the network input (directly or through Pad): the backbone stem.

    Kept in float by default: on the demo weights it was the most sensitive layer at every size
    tried (alone worth +2.9 dB at 128x128; 31.9 -> ~36 dB at 480x640 together with the next
    depthwise conv), while it is one 3->32 channel 3x3 conv, a fraction of a percent of the
    network's multiply-adds, so INT8 buys nothing there.
    """
    graph_inputs = {i.name for i in model.graph.input}
    writer = producers(model.graph)
    out = []
    for n in model.graph.node:
        if n.op_type != "Conv":
            continue
        src, name = writer.get(n.input[0]), n.input[0]
        while src is not None and src.op_type == "Pad":
            name = src.input[0]
            src = writer.get(name)
        if src is None and name in graph_inputs:
            out.append(n.name)
    return out
