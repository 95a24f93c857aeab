"""Which quantized convolutions cost the most accuracy? One ONNX Runtime session answers for all.

`GatedModel` rewrites a Q/DQ model so that every quantized Conv reads, instead of its
dequantized activation x_q and weight w_q (and int32 bias, CPU target), the blend
x_q + g·(x − x_q) and w_q + g·(w − w_q) with the original FP32 tensors x, w, where g is one entry
of an extra graph input `nedr_gates` (one per Conv). g = 1 leaves that Conv in float, g = 0 keeps
it INT8. So "leave layer L in float" is one inference with a one-hot gate vector instead of a new
quantization (≈ 9 s of Python per `quantize_static` call on this model) plus a new session.

The session runs with graph optimisations off, i.e. DequantizeLinear → FP32 Conv: the INT8
arithmetic emulated exactly in float (what TensorRT computes; the same numbers as ONNX Runtime's
fused CPU kernels when those do not saturate, see quantize.py). Output Q/DQ of a Conv (CPU target)
are the next layer's input quantization and stay, as they would under `nodes_to_exclude`.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

GATES = "nedr_gates"


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in graph.node for o in n.output}


def quantized_convs(model: onnx.ModelProto) -> list[str]:
    """Names of Conv nodes whose activation input comes from a DequantizeLinear, in graph order."""
    producers = _producers(model.graph)
    out = []
    for n in model.graph.node:
        src = producers.get(n.input[0]) if n.op_type == "Conv" else None
        if src is not None and src.op_type == "DequantizeLinear":
            out.append(n.name)
    return out


def psnr_db(outputs: list[np.ndarray], references: list[np.ndarray]) -> tuple[float, float]:
    """(PSNR over all frames' pixels, worst single frame), peak 1 (J in [0, 1])."""
    errs = [float(np.mean((o.astype(np.float64) - r.astype(np.float64)) ** 2)) for o, r in zip(outputs, references)]

    def db(mse: float) -> float:
        return float("inf") if mse <= 0 else 10.0 * np.log10(1.0 / mse)

    return db(float(np.mean(errs))), min(db(e) for e in errs)


class GatedModel:
    """A Q/DQ model whose quantized Convs can be switched back to float per run (module docstring)."""

    def __init__(self, qdq: onnx.ModelProto, fp32: onnx.ModelProto, threads: int | None = None, level=None):
        import onnxruntime as ort

        model = onnx.ModelProto()
        model.CopyFrom(qdq)
        graph = model.graph
        producers = _producers(graph)
        float_nodes = {n.name: n for n in fp32.graph.node}
        float_inits = {t.name: t for t in fp32.graph.initializer}
        have = {t.name for t in graph.initializer}
        self.layers = quantized_convs(model)
        graph.input.append(helper.make_tensor_value_info(GATES, TensorProto.FLOAT, [len(self.layers)]))
        new_nodes: dict[str, list[onnx.NodeProto]] = {}
        for k, name in enumerate(self.layers):
            conv = next(n for n in graph.node if n.name == name)
            original = float_nodes[name]
            prefix = f"nedr_gate_{k}"
            index = numpy_helper.from_array(np.array([k], dtype=np.int64), f"{prefix}_index")
            graph.initializer.append(index)
            nodes = [helper.make_node("Gather", [GATES, index.name], [f"{prefix}_g"], name=f"{prefix}_gather")]
            for slot in range(len(conv.input)):
                quantized = conv.input[slot]
                src = producers.get(quantized)
                if src is None or src.op_type != "DequantizeLinear":
                    continue  # already float (e.g. the bias for TensorRT)
                if slot == 0:
                    q = producers.get(src.input[0])
                    exact = q.input[0] if q is not None and q.op_type == "QuantizeLinear" else None
                else:
                    exact = original.input[slot]
                    if exact not in have:
                        graph.initializer.append(float_inits[exact])
                        have.add(exact)
                if exact is None:
                    continue
                base = f"{prefix}_{slot}"
                nodes += [helper.make_node("Sub", [exact, quantized], [f"{base}_d"], name=f"{base}_sub"),
                          helper.make_node("Mul", [f"{base}_d", f"{prefix}_g"], [f"{base}_gd"], name=f"{base}_mul"),
                          helper.make_node("Add", [quantized, f"{base}_gd"], [f"{base}_mix"], name=f"{base}_add")]
                conv.input[slot] = f"{base}_mix"
            new_nodes[name] = nodes
        ordered = []
        for n in graph.node:  # keep the graph topologically sorted: gates right before their Conv
            ordered += new_nodes.get(n.name, [])
            ordered.append(n)
        del graph.node[:]
        graph.node.extend(ordered)
        del graph.value_info[:]

        options = ort.SessionOptions()
        options.graph_optimization_level = level if level is not None else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.input_name = next(i.name for i in self.session.get_inputs() if i.name != GATES)
        self.output_name = self.session.get_outputs()[0].name

    def run(self, frames: list[np.ndarray], float_layers=()) -> list[np.ndarray]:
        gates = np.zeros(len(self.layers), dtype=np.float32)
        for name in float_layers:
            gates[self.layers.index(name)] = 1.0
        return [self.session.run([self.output_name], {self.input_name: f, GATES: gates})[0] for f in frames]

    def psnr(self, frames, references, float_layers=()) -> tuple[float, float]:
        return psnr_db(self.run(frames, float_layers), references)
