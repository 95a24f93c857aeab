"""FP16 ONNX with FP32 inputs/outputs and FP32 islands where half precision breaks the math.

Precision lives in the ONNX (docs/deployment.md): TensorRT builds this file strongly typed, so every
tensor keeps the type written here. What stays FP32 is `fp32_islands` (islands.py), which the INT8
quantizer keeps in float too.

Conversion: ONNX Runtime's mixed-precision recipe from `onnxruntime.transformers`:
`float16.convert_float_to_float16(keep_io_types=True, node_block_list=islands,
op_block_list=DEFAULT_OP_BLOCK_LIST)`, then `OnnxModel.remove_cascaded_cast_nodes` and
`remove_useless_cast_nodes`, which delete the Cast(fp16)→Cast(fp32) pairs the converter puts
between two blocked nodes. (Those are the steps of `OnnxModel.convert_float_to_float16`, run
without the sympy shape inference it repeats inside, which took ~20 s on this graph.)
onnxconverter-common's older copy of the converter only removes such a pair when the first Cast
has a single consumer; on this graph it left 38 FP16 round trips inside the islands (after every
basis Abs, which feeds two Subs). Initializers shared between an island and the FP16 network are
duplicated first, so the islands keep their constants in FP32 (eps = 1e-3, 220/255, …).

Agreement: ONNX Runtime's CPU provider cannot measure this file faithfully. It has no FP16 kernels
for these operators, so its InsertCastTransformer wraps each in Casts to FP32, and its
RemoveDuplicateCastTransformer then deletes every FP32→FP16→FP32 pair, the model's own input Cast
included (onnxruntime/core/optimizer/insert_cast_transformer.cc). A two-Mul probe confirms it:
the output equals the FP32 product with no rounding at all, so ORT CPU only measures the rounding
of the weights. `fp16_agreement` therefore runs the PyTorch model with the same islands and every
other operation storing its result in FP16 (`HalfStorage`: inputs widened to FP32, result rounded
to FP16, as TensorRT's FP16 kernels with FP32 accumulation do). Measured on a seeded model whose
last conv was rescaled so z spans ±0.75 (128×160): emulated 4.35e-3 max |ΔJ|, native PyTorch FP16 4.47e-3
(emulated and native differ by 1.2e-4; native took 42–140 s against 9–11 s), ORT CPU 4.64e-3:
for these weights, rounding the weights is most of the FP16 error.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from nedr.contract import INPUT_NAME, META_OPTIONS, META_PREFIX, META_SOURCE_ONNX_SHA256, OUTPUT_CLEAN
from nedr.metrics import psnr
from nedr.model.kan import KANLinear
from nedr.model.network import NeDR

from .metadata import file_sha256, read_metadata
from .graph import producers
from .islands import fp32_islands
from .onnx_export import ExportError, save_onnx_atomic
from .ort_session import ort_session
from .verify import FrameCheck, check_sizes, model_as_exported, sample_frames

FLOAT_TYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16"}


def _unshare_initializers(model: onnx.ModelProto, blocked: set[str]) -> None:
    """Give island nodes their own copy of initializers they share with FP16 nodes, so the
    converter keeps the island's copy in FP32 instead of rounding it for both."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    users: dict[str, set[bool]] = {}
    for n in graph.node:
        for i in n.input:
            if i in inits:
                users.setdefault(i, set()).add(n.name in blocked)
    shared = {name for name, kinds in users.items() if kinds == {True, False}}
    for name in shared:
        copy_ = graph.initializer.add()
        copy_.CopyFrom(inits[name])
        copy_.name = f"{name}__fp32"
    for n in graph.node:
        if n.name in blocked:
            for k, i in enumerate(n.input):
                if i in shared:
                    n.input[k] = f"{i}__fp32"


def _island_problems(model: onnx.ModelProto, blocked: set[str]) -> list[str]:
    """FP16 tensors flowing into or out of island nodes, FP16 graph I/O, or Cast→Cast chains."""
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {t.name: t.data_type for t in g.initializer}
    types.update({v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.value_info, *g.output)})
    problems = [f"graph I/O {v.name} is {FLOAT_TYPES.get(v.type.tensor_type.elem_type)}"
                for v in (*g.input, *g.output) if v.type.tensor_type.elem_type != onnx.TensorProto.FLOAT]
    writer = producers(g)
    for n in g.node:
        if n.name in blocked:
            half = [t for t in (*n.input, *n.output) if types.get(t) == onnx.TensorProto.FLOAT16]
            if half:
                problems.append(f"island node {n.name} has FP16 tensors {half[:3]}")
        src = writer.get(n.input[0]) if n.op_type == "Cast" else None
        if src is not None and src.op_type == "Cast":
            problems.append(f"Cast chain {src.name} → {n.name}")
    return problems


@dataclass
class FP16Report:
    path: Path
    island_nodes: dict[str, int]  # island → node count kept in FP32
    fp16_nodes: int
    cast_nodes: int
    agreement: list[FrameCheck] = field(default_factory=list)  # emulated FP16 vs FP32, PyTorch
    ort_cpu: list[FrameCheck] = field(default_factory=list)  # ORT CPU on the file vs FP32: weights rounding only

    @property
    def max_abs_err(self) -> float:
        return max((f.max_abs_err for f in self.agreement), default=math.nan)

    def summary(self) -> str:
        islands = ", ".join(f"{k} {v}" for k, v in self.island_nodes.items())
        lines = [f"{self.path}: {self.fp16_nodes} FP16 nodes, FP32 islands ({islands}), {self.cast_nodes} Casts"]
        lines += [f"  FP16 vs FP32 (PyTorch, FP16 storage emulated) {f}" for f in self.agreement]
        lines += [f"  ONNX Runtime CPU on the file vs FP32 (rounds weights only) {f}" for f in self.ort_cpu]
        return "\n".join(lines)


def convert_fp16(onnx_in: str | Path, onnx_out: str | Path, *, model: NeDR | None = None,
                 sizes=((256, 256),)) -> FP16Report:
    """Convert an FP32 NeDR export to FP16 with FP32 I/O and FP32 islands; write it atomically.

    With `model` (the PyTorch model the FP32 file came from), also measure FP16-vs-FP32 agreement
    on hazy photos of `sizes` (`fp16_agreement`), and what ONNX Runtime's CPU provider gives on
    the written file. Raises ExportError when the input is not an FP32 NeDR export or the islands
    do not come out in FP32.
    """
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    onnx_in, onnx_out = Path(onnx_in), Path(onnx_out)
    if not onnx_in.is_file():
        raise ExportError(f"{onnx_in}: no such ONNX file")
    meta = read_metadata(onnx_in)
    options = meta.get(META_OPTIONS, {})
    if options.get("precision", "fp32") != "fp32":
        raise ExportError(f"{onnx_in}: already {options['precision']}; convert the FP32 export")
    fp32 = onnx.load_model(str(onnx_in))
    islands = fp32_islands(fp32, onnx_in)
    blocked = {name for names in islands.values() for name in names}
    _unshare_initializers(fp32, blocked)
    # onnxscript records value_info for initializers too; the converter would retype those to FP16
    # and wrap the FP32 constants of blocked nodes in no-op Casts. It re-infers types anyway.
    del fp32.graph.value_info[:]

    # What OnnxModel.convert_float_to_float16 does, minus the sympy shape inference it reruns inside
    # remove_useless_cast_nodes (~20 s here); the ONNX types the converter records suffice.
    converter = OnnxModel(convert_float_to_float16(fp32, keep_io_types=True, node_block_list=sorted(blocked),
                                                   op_block_list=DEFAULT_OP_BLOCK_LIST))
    converter.disable_shape_inference()
    converter.remove_cascaded_cast_nodes()
    converter.remove_useless_cast_nodes()
    fp16 = converter.model
    del fp16.graph.value_info[:]  # the converter leaves stale types behind; consumers re-infer
    problems = _island_problems(fp16, blocked)
    if problems:
        raise ExportError(f"FP16 conversion left {problems[0]}" + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))

    options.update(precision="fp16", fp32_islands={k: len(v) for k, v in islands.items()})
    props = {p.key: p.value for p in fp16.metadata_props}
    props[META_PREFIX + META_OPTIONS] = json.dumps(options)
    props[META_PREFIX + META_SOURCE_ONNX_SHA256] = file_sha256(onnx_in)
    del fp16.metadata_props[:]
    onnx.helper.set_model_props(fp16, props)
    save_onnx_atomic(fp16, onnx_out)

    casts = sum(n.op_type == "Cast" for n in fp16.graph.node)
    report = FP16Report(onnx_out, {k: len(v) for k, v in islands.items()},
                        sum(n.name not in blocked and n.op_type != "Cast" for n in fp16.graph.node), casts)
    if model is not None:
        twin, _ = model_as_exported(model, onnx_out)
        frames = sample_frames(check_sizes(sizes))
        report.agreement, report.ort_cpu = fp16_agreement(twin, frames, onnx_out)
    return report


# --- measuring FP16 faithfully on a CPU -------------------------------------------------------

_CONVERSIONS = {torch.ops.aten._to_copy.default, torch.ops.aten.to.dtype, torch.ops.aten.to.dtype_layout,
                torch.ops.aten.to.device}


def _is_half(x) -> bool:
    return isinstance(x, torch.Tensor) and x.dtype == torch.float16


class HalfStorage(TorchDispatchMode):
    """Every ATen op with an FP16 input computes in FP32 and rounds its floating results to FP16.

    Ops whose inputs are all FP32 run untouched (the FP32 islands), as do explicit dtype
    conversions and in-place ops (which run on PyTorch's own FP16 kernels).
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if (func in _CONVERSIONS or func._schema.is_mutable
                or not any(_is_half(x) for x in pytree.tree_leaves((args, kwargs)))):
            return func(*args, **kwargs)
        widen = lambda x: x.float() if _is_half(x) else x  # noqa: E731
        out = func(*pytree.tree_map(widen, args), **pytree.tree_map(widen, kwargs))
        return pytree.tree_map(lambda x: x.half() if isinstance(x, torch.Tensor) and x.dtype == torch.float32 else x, out)


def half_twin(model: NeDR) -> NeDR:
    """A copy of `model` in FP16 whose KAN bases and scattering-model tail run in FP32, the same
    islands `convert_fp16` keeps (use under `HalfStorage`)."""
    twin = copy.deepcopy(model).float().cpu().eval()
    kans = [(m, m.basis_scale, m.basis_shift) for m in twin.modules() if isinstance(m, KANLinear)]
    twin.half()
    for m, scale, shift in kans:
        m.basis_scale, m.basis_shift = scale, shift  # the island keeps its constants in FP32
        fp32_bases = m.bases
        m.bases = lambda x, _bases=fp32_bases: _bases(x.float()).half()
    network = twin.transmission_logit

    def logit_to_fp32(x, with_beta=False):
        return pytree.tree_map(lambda z: z.float(), network(x.half(), with_beta))

    twin.transmission_logit = logit_to_fp32  # predict() then runs t, filter, A and J in FP32
    return twin


def _frame_check(size, ref: np.ndarray, out: np.ndarray) -> FrameCheck:
    """Errors of `out` against `ref`, PSNR with Polygraphy's peak (the reference's maximum), as
    `nedr.export.verify` reports the FP32 export."""
    diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    return FrameCheck(tuple(size), float(diff.max()), float(diff.mean()),
                      psnr(out, ref, peak=max(float(ref.max()), 1e-12)))


@torch.no_grad()
def fp16_agreement(model: NeDR, frames: list[np.ndarray], onnx_fp16: str | Path | None = None
                   ) -> tuple[list[FrameCheck], list[FrameCheck]]:
    """J of the FP16 plan against FP32 PyTorch on each frame: (PyTorch with FP16 storage emulated
    and the same FP32 islands, ONNX Runtime CPU on `onnx_fp16` if given, else [])."""
    fp32 = copy.deepcopy(model).float().cpu().eval()
    half = half_twin(fp32)
    session = ort_session(onnx_fp16) if onnx_fp16 is not None else None
    emulated, ort_cpu = [], []
    for frame in frames:
        x = torch.from_numpy(frame)
        ref = fp32(x).numpy()
        with HalfStorage():
            out = half(x)
        if out.dtype != torch.float32:
            raise AssertionError(f"the FP16 plan must return FP32 J, got {out.dtype}")
        emulated.append(_frame_check(frame.shape[-2:], ref, out.numpy()))
        if session is not None:
            clean = session.run([OUTPUT_CLEAN], {INPUT_NAME: frame})[0]
            ort_cpu.append(_frame_check(frame.shape[-2:], ref, clean))
    return emulated, ort_cpu
