"""Native TensorRT backend: a serialized engine, cuda-python buffers, one dedicated stream.

The inference call reads like the hardware timeline (TensorRT samples' common_runtime.py):
set the input shape → bind tensor addresses by name → copy in (pinned host → device, async) →
execute_async_v3 (or replay a CUDA graph captured for this input shape) → copy out (async) →
synchronise the stream. Buffers grow to the largest shape seen; graphs are recaptured after a
reallocation.

Nothing here imports TensorRT or cuda-python at module import time. Before deserializing, the
engine's manifest (`ENGINE.json`, written by `nedr build`) is checked against this machine's
TensorRT version and GPU: `verify_engine_manifest()` calls `nedr.export.tensorrt_build.check_engine_here`,
which refuses a mismatched engine with the command that rebuilds it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nedr.contract import OUTPUT_CLEAN, OUTPUT_TRANSMISSION

from ..errors import BackendError
from . import ENGINE_SUFFIXES, Backend, Output


def load_tensorrt():
    """`import tensorrt` through the export stage's loader (version lane checks), as BackendError."""
    from nedr.errors import UserError
    from nedr.export.tensorrt_build import load_tensorrt as _load

    try:
        return _load()
    except UserError as exc:
        raise BackendError(str(exc)) from None


def verify_engine_manifest(engine_path: str | Path) -> dict[str, Any] | None:
    """The manifest hook: the engine's manifest when it may run here, else BackendError (one line
    with the rebuild command). Returns None only when the export stage lacks manifest support."""
    from nedr.errors import UserError

    try:
        from nedr.export.tensorrt_build import check_engine_here
    except ImportError:  # an install without the manifest module: nothing to check against
        return None
    try:
        return check_engine_here(engine_path)
    except UserError as exc:
        raise BackendError(str(exc)) from None


def tensorrt_unavailable_reason() -> str | None:
    """Why the tensorrt backend cannot run here (None when TensorRT, cuda-python and a GPU are present)."""
    try:
        load_tensorrt()
        from ..cuda_buffers import device_count, load_cudart

        load_cudart()
        if device_count() < 1:
            return "no CUDA GPU visible to the CUDA runtime"
    except BackendError as exc:
        return str(exc)
    return None


class TensorRTBackend(Backend):
    """A TensorRT engine (`nedr build` output) on one GPU.

    `model`: the engine file (its manifest `ENGINE.json` beside it). `cuda_graph`: capture the
    enqueue once per input shape and replay it (saves CPU launch overhead on small frames).
    `check_manifest=False` skips the manifest check (an engine from another tool).
    """

    name = "tensorrt"

    def __init__(self, model=None, device_id: int = 0, cuda_graph: bool = False, check_manifest: bool = True) -> None:
        super().__init__()
        self.engine_path = Path(model) if model else None
        self.device_id = int(device_id)
        self.cuda_graph = bool(cuda_graph)
        self.check_manifest = bool(check_manifest)
        self.manifest: dict[str, Any] | None = None

    # -- lifetime
    def _activate(self) -> None:
        if self.engine_path is None:
            raise BackendError("the tensorrt backend needs an engine file: build one on this GPU with "
                               "`nedr build MODEL.onnx -o nedr.engine` and pass --model nedr.engine")
        if not self.engine_path.is_file():
            raise BackendError(f"{self.engine_path}: no such engine file")
        if self.engine_path.suffix.lower() not in ENGINE_SUFFIXES:
            raise BackendError(f"{self.engine_path.name}: not a TensorRT engine (expected {', '.join(ENGINE_SUFFIXES)})")
        trt = load_tensorrt()
        from ..cuda_buffers import Stream, device_count, load_cudart, set_device

        load_cudart()
        count = device_count()
        if count < 1:
            raise BackendError("the tensorrt backend needs a CUDA GPU, and the CUDA runtime sees none")
        if self.device_id >= count:
            raise BackendError(f"GPU {self.device_id} asked for; this machine has {count}")
        set_device(self.device_id)
        if self.check_manifest:
            self.manifest = verify_engine_manifest(self.engine_path)
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self._engine is None:
            raise BackendError(f"TensorRT {trt.__version__} could not deserialize {self.engine_path.name} (built by another "
                               "TensorRT version or GPU?); rebuild it here with `nedr build`")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1:
            raise BackendError(f"{self.engine_path.name}: expected one input tensor (hazy), found {inputs}")
        self.input_name = inputs[0]
        self.clean_name = OUTPUT_CLEAN if OUTPUT_CLEAN in outputs else outputs[0]
        self.transmission_name = OUTPUT_TRANSMISSION if OUTPUT_TRANSMISSION in outputs else None
        self.output_names = [self.clean_name] + ([self.transmission_name] if self.transmission_name else [])
        self.provides_transmission = self.transmission_name is not None
        self._dtypes = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in names}
        shape = tuple(self._engine.get_tensor_shape(self.input_name))
        if all(d > 0 for d in shape[2:]):
            self.static_hw = (int(shape[2]), int(shape[3]))
        else:
            lo, _, hi = self._engine.get_tensor_profile_shape(self.input_name, 0)
            self.shape_range = ((int(lo[2]), int(lo[3])), (int(hi[2]), int(hi[3])))
        # the most frames one call takes (multi-stream batching): a fixed batch, else the profile's maximum
        self.max_batch = int(shape[0]) if shape[0] > 0 else int(self._engine.get_tensor_profile_shape(self.input_name, 0)[2][0])
        self._stream = Stream()
        self._device: dict[str, Any] = {}
        self._host: dict[str, Any] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._input_shape: tuple[int, ...] | None = None
        self._graphs: dict[tuple[int, ...], Any] = {}

    def _deactivate(self) -> None:
        try:
            self._stream.synchronize()
        finally:
            for graph in self._graphs.values():
                graph.close()
            self._graphs.clear()
            for buf in (*self._device.values(), *self._host.values()):
                buf.free()
            self._device.clear()
            self._host.clear()
            self._stream.close()
            self._context = self._engine = self._runtime = None

    @property
    def on_gpu(self) -> bool:
        return True

    # -- buffers
    def _prepare(self, shape: tuple[int, ...]) -> None:
        """Set the input shape, size buffers for it (growing only) and bind every tensor address."""
        from ..cuda_buffers import DeviceBuffer, PinnedBuffer

        if shape == self._input_shape:
            return
        if not self._context.set_input_shape(self.input_name, shape):
            raise BackendError(f"TensorRT rejected input shape {shape} for {self.engine_path.name}")
        self._shapes = {self.input_name: shape}
        for name in self.output_names:
            self._shapes[name] = tuple(int(d) for d in self._context.get_tensor_shape(name))
        for name in (*self._engine_extra_outputs(), *self.output_names, self.input_name):
            if name not in self._shapes:
                self._shapes[name] = tuple(int(d) for d in self._context.get_tensor_shape(name))
        reallocated = False
        for name, tshape in self._shapes.items():
            nbytes = int(np.prod(tshape)) * self._dtypes[name].itemsize
            if name not in self._device or self._device[name].nbytes < nbytes:
                for store in (self._device, self._host):
                    if name in store:
                        store[name].free()
                self._device[name], self._host[name] = DeviceBuffer(nbytes), PinnedBuffer(nbytes)
                reallocated = True
            self._context.set_tensor_address(name, self._device[name].ptr)
        if reallocated:
            for graph in self._graphs.values():
                graph.close()
            self._graphs.clear()
        self._input_shape = shape

    def _engine_extra_outputs(self) -> list[str]:
        """Outputs other than clean/transmission still need an address; they are computed and ignored."""
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        return [n for n in names if n != self.input_name and n not in self.output_names]

    def _enqueue(self) -> None:
        if not self._context.execute_async_v3(self._stream.ptr):
            raise BackendError("TensorRT execute_async_v3 failed (see the TensorRT log above)")

    # -- inference
    def _infer(self, batch: np.ndarray) -> Output:
        from ..cuda_buffers import CudaGraph

        shape = tuple(int(d) for d in batch.shape)
        self._prepare(shape)
        host_in = self._host[self.input_name].view(shape, self._dtypes[self.input_name])
        np.copyto(host_in, batch, casting="same_kind")
        nbytes_in = host_in.nbytes
        self._device[self.input_name].copy_from_host_async(self._host[self.input_name], self._stream, nbytes_in)
        if self.cuda_graph:
            graph = self._graphs.get(shape)
            if graph is None:
                self._enqueue()  # first run of a shape: TensorRT's own shape-dependent setup, outside the graph
                self._stream.synchronize()
                graph = self._graphs[shape] = CudaGraph(self._stream, self._enqueue)
            graph.launch(self._stream)
        else:
            self._enqueue()
        views = {}
        for name in self.output_names:
            view = self._host[name].view(self._shapes[name], self._dtypes[name])
            self._device[name].copy_to_host_async(self._host[name], self._stream, view.nbytes)
            views[name] = view
        self._stream.synchronize()
        clean = np.array(views[self.clean_name], dtype=np.float32)
        t = np.array(views[self.transmission_name], dtype=np.float32) if self.transmission_name else None
        return Output(clean, t, None)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"backend": self.name, "model": str(self.engine_path) if self.engine_path else None,
                                "cuda_graph": self.cuda_graph}
        if hasattr(self, "_trt"):
            info.update(tensorrt=self._trt.__version__, device_id=self.device_id, outputs=self.output_names,
                        static_hw=self.static_hw, profile=self.shape_range)
            if self.manifest:
                info.update(precision=self.manifest.get("precision"), gpu=self.manifest.get("gpu", {}).get("name"))
        return info
