"""Where half precision and INT8 break NeDR's math: the nodes FP16 and INT8 keep in FP32.

Found from the graph's structure rather than from exporter-specific node names. The islands
(docs/model.md §4, §6, §7):

* `kan_basis`: in every KANLinear, the grouped 1×1 Conv that computes u = (x − c_j)/0.4 and the
  Abs/Sub/Relu/Pow/Mul/Div nodes of the cubic B-spline, up to (not including) the spline Conv.
  The bases are differences of cubes of values up to 2; in half precision they lose ~3e-3.
* `scattering_model`: everything that is not an ancestor of the decoder output z (the input of the
  graph's single Tanh): t = clamp((tanh z + 1)/2), the guided filter (81×81 box sums of products
  of the image and t, then var/cov differences, which cancel catastrophically in FP16), the
  atmospheric light (dark channel, TopK, gather, per-channel max) and J = (I − A)/t + A.
"""
from __future__ import annotations

from pathlib import Path

import onnx

from nedr.errors import NedrError

from .graph import consumers as graph_consumers
from .graph import producers as graph_producers
from .metadata import ExportError

KAN_BASIS = "kan_basis"
SCATTERING_MODEL = "scattering_model"


def fp32_islands(model: onnx.ModelProto, source: str | Path = "model", *,
                 error: type[NedrError] = ExportError) -> dict[str, list[str]]:
    """Node names to keep in FP32, per island (module docstring). A graph without NeDR's structure
    raises `error` naming `source` (the file): the FP16 converter keeps ExportError, the INT8
    quantizer passes QuantizeError, so neither re-wraps the other's."""
    graph = model.graph
    names = [n.name for n in graph.node]
    if not all(names) or len(set(names)) != len(names):
        raise error(f"{source}: every node needs a unique name to be kept in FP32; re-export with nedr.export")
    producers, consumers = graph_producers(graph), graph_consumers(graph)

    kan: list[str] = []
    for node in graph.node:
        src = producers.get(node.input[0]) if node.op_type == "Abs" else None
        group = next((a.i for a in src.attribute if a.name == "group"), 1) if src is not None else 1
        if src is None or src.op_type != "Conv" or group == 1:
            continue
        chain, frontier = [src.name], [node]
        while frontier:
            n = frontier.pop()
            if n.name in chain:
                continue
            chain.append(n.name)
            frontier += [c for o in n.output for c in consumers.get(o, []) if c.op_type != "Conv"]
        kan += chain

    tanh = [n for n in graph.node if n.op_type == "Tanh"]
    if len(tanh) != 1:
        raise error(f"{source}: expected one Tanh (t from the decoder output), found {len(tanh)}: not a NeDR graph")
    network, stack = set(), [tanh[0].input[0]]
    while stack:
        src = producers.get(stack.pop())
        if src is not None and src.name not in network:
            network.add(src.name)
            stack += list(src.input)
    tail = [n.name for n in graph.node if n.name not in network]
    if not kan:
        raise error(f"{source}: no KAN basis (grouped Conv → Abs) found: not a NeDR graph")
    return {KAN_BASIS: kan, SCATTERING_MODEL: tail}
