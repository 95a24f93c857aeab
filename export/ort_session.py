"""The one way nedr opens an ONNX Runtime session, for the export checks, the runtime backend and
the benchmarks alike.

Why one: the settings that decide what a measurement or a comparison means (threads, graph
optimisation, spinning) are then spelled once, and a session made by `nedr quantize` to judge a
model runs it as the runtime and `nedr bench` do. Torch-free, and onnxruntime is imported on call,
so the export stage and a torch-free runtime both import this module.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import onnx
    import onnxruntime


def ort_session(model: str | os.PathLike | bytes | onnx.ModelProto, *, threads: int | None = None,
                providers: Sequence[str] = ("CPUExecutionProvider",),
                provider_options: Sequence[dict[str, Any]] | None = None, optimize: bool = True,
                spin: bool = True, quiet: bool = False,
                profile_prefix: str | None = None) -> onnxruntime.InferenceSession:
    """An InferenceSession on `model` (a file, serialized bytes or an in-memory ModelProto).

    `threads`: intra-op threads (None or 0: ONNX Runtime's default, all cores); inter-op stays at
    one, as nothing here runs graph branches in parallel. `optimize=False` disables graph
    optimisation, so Q/DQ pairs stay unfused and quantization is emulated in float exactly as the
    graph says. `spin=False` lets idle intra-op threads sleep instead of spinning for the next call,
    leaving the cores to other threads between calls. `quiet`: errors only in ONNX Runtime's log.
    `profile_prefix`: turn on its profiler, writing PREFIX_*.json (read with `end_profiling()`).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if quiet:
        options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix:
        options.enable_profiling, options.profile_file_prefix = True, str(profile_prefix)
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=list(providers), provider_options=provider_options)
