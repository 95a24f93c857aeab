"""CUDA memory, streams and graphs through cuda-python (`cuda.bindings.runtime`), as NVIDIA's own
TensorRT samples use since 10.14. Tiny classes with explicit size and lifetime; every copy is an
explicit async call on an explicit stream, and nothing hides a synchronisation.

Imported lazily by the tensorrt backend; `load_cudart()` raises a one-line BackendError when
cuda-python is missing. cuda-python calls return `(error, *results)`; `check()` turns a non-zero
error into CudaError naming the call.
"""
from __future__ import annotations

import ctypes
from typing import Any, Callable

import numpy as np

from .errors import BackendError

MISSING_CUDA_PYTHON = ("the tensorrt backend needs cuda-python for CUDA memory and streams: "
                       "pip install cuda-python (JetPack: pip install cuda-python matching the CUDA version)")


class CudaError(BackendError):
    """A CUDA runtime call failed; the message names the call and the CUDA error."""


_CUDART = None


def load_cudart():
    """`cuda.bindings.runtime` (cuda-python >= 12.6), else the older `cuda.cudart`; BackendError if absent."""
    global _CUDART
    if _CUDART is None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            try:
                from cuda import cudart  # cuda-python < 12.6
            except ImportError as exc:
                raise BackendError(f"{MISSING_CUDA_PYTHON} ({exc})") from None
        _CUDART = cudart
    return _CUDART


def check(result: Any, what: str) -> Any:
    """Unpack a cuda-python `(err, *values)` tuple; raise CudaError unless err is cudaSuccess."""
    if not isinstance(result, tuple):
        result = (result,)
    err, values = result[0], result[1:]
    if int(err) != 0:
        cudart = load_cudart()
        name = cudart.cudaGetErrorName(err)
        name = name[1] if isinstance(name, tuple) else name
        name = name.decode() if isinstance(name, bytes) else str(name)
        raise CudaError(f"CUDA {what} failed: {name} ({int(err)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def device_count() -> int:
    cudart = load_cudart()
    result = cudart.cudaGetDeviceCount()
    return 0 if int(result[0]) != 0 else int(result[1])


def set_device(index: int) -> None:
    check(load_cudart().cudaSetDevice(int(index)), f"cudaSetDevice({index})")


class Stream:
    """A non-blocking CUDA stream (never the legacy default stream, which TensorRT warns about)."""

    def __init__(self) -> None:
        cudart = load_cudart()
        flags = getattr(cudart, "cudaStreamNonBlocking", 1)
        self.handle = check(cudart.cudaStreamCreateWithFlags(flags), "cudaStreamCreateWithFlags")

    @property
    def ptr(self) -> int:
        return int(self.handle)

    def synchronize(self) -> None:
        check(load_cudart().cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")

    def close(self) -> None:
        if self.handle is not None:
            check(load_cudart().cudaStreamDestroy(self.handle), "cudaStreamDestroy")
            self.handle = None

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _FreedOnExit:
    """`with` frees the CUDA memory on the way out, error or not: a leaked cudaMalloc outlives the
    backend and fills the device over a long run."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.free()


class DeviceBuffer(_FreedOnExit):
    """`nbytes` of device memory (cudaMalloc); `ptr` is the address TensorRT binds."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = int(nbytes)
        self.ptr = int(check(load_cudart().cudaMalloc(max(1, self.nbytes)), f"cudaMalloc({self.nbytes})"))

    def copy_from_host_async(self, host: "PinnedBuffer", stream: Stream, nbytes: int | None = None) -> None:
        cudart = load_cudart()
        n = self._size(nbytes, host)
        check(cudart.cudaMemcpyAsync(self.ptr, host.ptr, n, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                     stream.handle), "cudaMemcpyAsync H2D")

    def copy_to_host_async(self, host: "PinnedBuffer", stream: Stream, nbytes: int | None = None) -> None:
        cudart = load_cudart()
        n = self._size(nbytes, host)
        check(cudart.cudaMemcpyAsync(host.ptr, self.ptr, n, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                     stream.handle), "cudaMemcpyAsync D2H")

    def _size(self, nbytes: int | None, host: "PinnedBuffer") -> int:
        n = min(self.nbytes, host.nbytes) if nbytes is None else int(nbytes)
        if n > self.nbytes or n > host.nbytes:
            raise ValueError(f"copy of {n} bytes exceeds a buffer (device {self.nbytes}, host {host.nbytes})")
        return n

    def free(self) -> None:
        if self.ptr:
            check(load_cudart().cudaFree(self.ptr), "cudaFree")
            self.ptr = 0


class PinnedBuffer(_FreedOnExit):
    """`nbytes` of page-locked host memory (cudaMallocHost), seen from numpy through `view()`.

    Async copies need pinned memory to actually overlap with compute; a view must not outlive
    `free()`.
    """

    def __init__(self, nbytes: int) -> None:
        self.nbytes = int(nbytes)
        self.ptr = int(check(load_cudart().cudaMallocHost(max(1, self.nbytes)), f"cudaMallocHost({self.nbytes})"))
        self._bytes = np.ctypeslib.as_array((ctypes.c_uint8 * max(1, self.nbytes)).from_address(self.ptr))

    def view(self, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
        dtype = np.dtype(dtype)
        n = int(np.prod(shape)) * dtype.itemsize
        if n > self.nbytes:
            raise ValueError(f"a {shape} {dtype} view needs {n} bytes; the buffer has {self.nbytes}")
        return self._bytes[:n].view(dtype).reshape(shape)

    def free(self) -> None:
        if self.ptr:
            self._bytes = None
            check(load_cudart().cudaFreeHost(self.ptr), "cudaFreeHost")
            self.ptr = 0


class CudaGraph:
    """Work enqueued on a stream by `fn`, captured once and replayed with one launch.

    Capture mode is thread-local so other threads' CUDA calls (e.g. a decoder) do not invalidate it.
    The captured work keeps its buffer addresses: recapture after reallocating buffers.
    """

    def __init__(self, stream: Stream, fn: Callable[[], Any]) -> None:
        cudart = load_cudart()
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        check(cudart.cudaStreamBeginCapture(stream.handle, mode), "cudaStreamBeginCapture")
        try:
            fn()
        finally:
            graph = check(cudart.cudaStreamEndCapture(stream.handle), "cudaStreamEndCapture")
        self._graph = graph
        self._exec = check(cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")

    def launch(self, stream: Stream) -> None:
        check(load_cudart().cudaGraphLaunch(self._exec, stream.handle), "cudaGraphLaunch")

    def close(self) -> None:
        cudart = load_cudart()
        if self._exec is not None:
            check(cudart.cudaGraphExecDestroy(self._exec), "cudaGraphExecDestroy")
            self._exec = None
        if self._graph is not None:
            check(cudart.cudaGraphDestroy(self._graph), "cudaGraphDestroy")
            self._graph = None
