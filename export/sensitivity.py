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

from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nedr.metrics import psnr_over_frames

from .graph import producers
from .ort_session import ort_session

GATES = "nedr_gates"
MAX_FLOAT_LAYERS = 24
MAX_SEARCH_EVALS = 60


def quantized_convs(model: onnx.ModelProto) -> list[str]:
    """Names of Conv nodes whose activation input comes from a DequantizeLinear, in graph order."""
    writer = producers(model.graph)
    out = []
    for n in model.graph.node:
        src = writer.get(n.input[0]) if n.op_type == "Conv" else None
        if src is not None and src.op_type == "DequantizeLinear":
            out.append(n.name)
    return out


class GatedModel:
    """A Q/DQ model whose quantized Convs can be switched back to float per run (module docstring)."""

    def __init__(self, qdq: onnx.ModelProto, fp32: onnx.ModelProto, threads: int | None = None):
        model = onnx.ModelProto()
        model.CopyFrom(qdq)
        graph = model.graph
        writer = producers(graph)
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
                src = writer.get(quantized)
                if src is None or src.op_type != "DequantizeLinear":
                    continue  # already float (e.g. the bias for TensorRT)
                if slot == 0:
                    q = writer.get(src.input[0])
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

        self.session = ort_session(model, threads=threads, optimize=False)  # Q/DQ emulated (module docstring)
        self.input_name = next(i.name for i in self.session.get_inputs() if i.name != GATES)
        self.output_name = self.session.get_outputs()[0].name

    def run(self, frames: list[np.ndarray], float_layers=()) -> list[np.ndarray]:
        gates = np.zeros(len(self.layers), dtype=np.float32)
        for name in float_layers:
            gates[self.layers.index(name)] = 1.0
        return [self.session.run([self.output_name], {self.input_name: f, GATES: gates})[0] for f in frames]

    def psnr(self, frames, references, float_layers=()) -> tuple[float, float]:
        return psnr_over_frames(self.run(frames, float_layers), references)


@dataclass
class SearchStep:
    what: str  # a layer or a group of layers
    float_layers: int  # layers in float after this step (when accepted)
    psnr_db: float
    accepted: bool

    def __str__(self) -> str:
        return f"{'kept float' if self.accepted else 'tried'} {self.what}: {self.psnr_db:.2f} dB"


_GROUPS = (("backbone", ("pretrained",)), ("kan_cid", ("cid_",)), ("decoder", ("layer", "refinenet", "scratch")),
           ("idrm", ("nrn",)), ("drem", ("drem",)), ("output_head", ("output_conv",)))


def _path(layer: str) -> tuple[str, ...]:
    """Module path of a Conv node name, under a named top-level group."""
    parts = [p for p in layer.split("/") if p]
    top = next((g for g, prefixes in _GROUPS if parts and parts[0].startswith(prefixes)), "other")
    return (top, *parts)


def _children(prefix: tuple[str, ...], layers: list[str]) -> list[tuple[str, ...]]:
    """Subgroups one level below `prefix` in graph order, descending through single-child levels."""
    paths = [_path(lay) for lay in layers if _path(lay)[:len(prefix)] == prefix]
    while True:
        nxt = list(dict.fromkeys(p[:len(prefix) + 1] for p in paths if len(p) > len(prefix)))
        if len(nxt) == 1 and len(paths) > 1:
            prefix = nxt[0]
            continue
        return nxt


def search_float_layers(gated: GatedModel, frames: list[np.ndarray], references: list[np.ndarray], target_db: float,
                        max_layers: int = MAX_FLOAT_LAYERS, max_evals: int = MAX_SEARCH_EVALS,
                        log: Callable[[str], None] | None = None,
                        start: list[str] | None = None) -> tuple[list[str], float, list[SearchStep]]:
    """Best-first search down the module tree for the convolutions to leave in float.

    Each candidate (a group of layers or one layer) is scored by the PSNR gained when it runs in
    float on top of those already chosen. The best one is expanded into its subgroups, or, when it
    is a single layer, re-scored against the current set (its score may be stale) and kept if it
    still helps. Stops at `target_db`, `max_layers` or `max_evals` inferences over `frames`.
    `start`: layers already in float. Returns (layers in float, PSNR with them, steps).
    """
    layers = gated.layers
    chosen: list[str] = list(start or [])
    steps: list[SearchStep] = []
    evals = 0

    def score(members: list[str]) -> float:
        nonlocal evals
        evals += 1
        return gated.psnr(frames, references, chosen + members)[0]

    def members(prefix: tuple[str, ...]) -> list[str]:
        return [lay for lay in layers if _path(lay)[:len(prefix)] == prefix and lay not in chosen]

    current = score([])
    if log:
        log(f"  start, {len(chosen)} layer(s) in float: {current:.2f} dB")
    frontier: list[tuple[float, tuple[str, ...], int]] = []  # (gain, group, len(chosen) when measured)

    def expand(prefix: tuple[str, ...]) -> None:
        for child in _children(prefix, layers):
            group = members(child)
            if group and evals < max_evals:
                frontier.append((score(group) - current, child, len(chosen)))

    expand(())
    while current < target_db and len(chosen) < max_layers and frontier and evals < max_evals:
        frontier.sort(key=lambda item: -item[0])
        gain, prefix, measured_at = frontier.pop(0)
        group = members(prefix)
        if len(group) > 1:
            expand(prefix)
            continue
        if not group:
            continue
        if measured_at != len(chosen):  # a stale gain: re-score against the current set
            fresh = score(group) - current
            if frontier and fresh < max(g for g, _, _ in frontier):
                frontier.append((fresh, prefix, len(chosen)))
                continue
            gain = fresh
        if gain <= 0:
            steps.append(SearchStep(group[0], len(chosen), current + gain, False))
            continue
        chosen.append(group[0])
        current += gain
        steps.append(SearchStep(group[0], len(chosen), current, True))
        if log:
            log(f"  float {group[0]}: {current:.2f} dB")
    return chosen, current, steps
