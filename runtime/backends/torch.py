"""The `torch` backend: PyTorch eager on the CPU or a CUDA GPU, optionally replayed from CUDA graphs.

torch is imported when the backend is activated, never at import time.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from . import ENGINE_SUFFIXES, ONNX_SUFFIXES, Backend, Output
from ..errors import BackendError


def _torch_device(torch, name: str | None):
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise BackendError(f"unknown torch device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendError(f"device {name!r} asked for, but this torch ({torch.__version__}) sees no CUDA GPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise BackendError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type != "cpu":
        raise BackendError(f"unsupported torch device {name!r}; use auto, cpu, cuda or cuda:N")
    return device


class TorchBackend(Backend):
    """PyTorch eager: CPU or CUDA; FP16 weights and channels_last memory on CUDA by default.

    `model`: checkpoint file (default: the bundled default weights) or an `nedr.model.NeDR` instance. Returns J, t
    and A (so stabilisation re-solves J exactly as the network would with a smoothed A).
    `cuda_graph`: capture the whole network once per input shape and replay it as one launch, which
    removes the CPU launch overhead that dominates small frames on a GPU.
    """

    name = "torch"

    def __init__(self, model=None, device: str = "auto", threads: int | None = None, half: bool | None = None,
                 channels_last: bool | None = None, atmosphere: str | None = None,
                 guided_filter: bool | None = None, prior_mix: float | None = None, cuda_graph: bool = False) -> None:
        super().__init__()
        self.model_source = model
        self.device_name = device
        self.threads = threads
        self.half, self.channels_last = half, channels_last
        self.atmosphere, self.guided_filter, self.prior_mix = atmosphere, guided_filter, prior_mix
        self.cuda_graph = bool(cuda_graph)
        self.provides_transmission = True

    def _activate(self) -> None:
        if isinstance(self.model_source, (str, os.PathLike)) and Path(self.model_source).suffix.lower() in (
                *ONNX_SUFFIXES, *ENGINE_SUFFIXES):
            raise BackendError(f"the torch backend takes a checkpoint (.pth/.safetensors), not {Path(self.model_source).name}; "
                               "use --backend onnxruntime for .onnx, tensorrt for an engine")
        try:
            import torch
        except ImportError:
            raise BackendError("the torch backend needs PyTorch (pip install torch); or use --backend onnxruntime "
                               "with an exported .onnx") from None
        from nedr.model import NeDR, load_checkpoint

        self._torch = torch
        self.device = _torch_device(torch, self.device_name)
        if self.threads:
            self._previous_threads = torch.get_num_threads()
            torch.set_num_threads(int(self.threads))
        if isinstance(self.model_source, NeDR):
            import copy

            net = copy.deepcopy(self.model_source)  # moving/halving must not change the caller's model
        else:
            net = load_checkpoint(self.model_source, atmosphere=self.atmosphere, guided_filter=self.guided_filter,
                                  prior_mix=self.prior_mix)
        cuda = self.device.type == "cuda"
        if self.cuda_graph and not cuda:
            raise BackendError(f"cuda_graph needs a CUDA device; this torch backend runs on {self.device}")
        self.half = cuda if self.half is None else bool(self.half)
        self.channels_last = cuda if self.channels_last is None else bool(self.channels_last)
        net = net.to(self.device).eval()
        if self.half:
            net = net.half()
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self._net = net
        self._dtype = torch.float16 if self.half else torch.float32
        self._graphs: dict[tuple[int, ...], tuple[Any, Any, Any]] = {}  # input shape → (static in, static out, graph)

    def _deactivate(self) -> None:
        torch = self._torch
        self._net = None
        self._graphs = {}
        if getattr(self, "_previous_threads", None):
            torch.set_num_threads(self._previous_threads)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _infer(self, batch: np.ndarray) -> Output:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(batch)
            if self.device.type == "cuda":  # staged through a reused pinned buffer: an async copy, no re-pinning
                pinned = getattr(self, "_pinned", None)
                if pinned is None or pinned.shape != x.shape:
                    pinned = self._pinned = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
                pinned.copy_(x)
                x = pinned.to(self.device, non_blocking=True)
            x = x.to(self._dtype)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            p = self._replay(x) if self.cuda_graph else self._net.predict(x)
            j = p.clean.float().contiguous().cpu().numpy()
            t = p.transmission.float().contiguous().cpu().numpy()
            a = p.atmosphere.float().reshape(p.atmosphere.shape[0], 3).cpu().numpy()
        return Output(j, t, a)

    def _replay(self, x):
        """The network's prediction for `x` from the graph captured for its shape (captured on first
        sight); the prediction is the graph's static output, overwritten by the next replay."""
        shape = tuple(x.shape)
        if shape not in self._graphs:
            self._graphs[shape] = self._capture(shape)
        static_in, static_out, graph = self._graphs[shape]
        static_in.copy_(x)
        graph.replay()
        return static_out

    def _capture(self, shape: tuple[int, ...]) -> tuple[Any, Any, Any]:
        torch = self._torch
        # random, not zeros: a flat frame makes the guided filter's min-max normalisation 0/0
        static_in = torch.rand(shape, device=self.device).to(self._dtype)
        if self.channels_last:
            static_in = static_in.contiguous(memory_format=torch.channels_last)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):  # cuDNN picks its kernels before capture, not during it
                self._net.predict(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self._net.predict(static_in)
        return static_in, static_out, graph

    @property
    def on_gpu(self) -> bool:
        return self.active and self.device.type == "cuda"

    def describe(self) -> dict[str, Any]:
        info = {"backend": self.name, "model": str(self.model_source or "bundled default weights")}
        if self.active or hasattr(self, "device"):
            torch = self._torch
            info.update(device=str(self.device), precision="fp16" if self.half else "fp32",
                        channels_last=self.channels_last, cuda_graph=self.cuda_graph, torch=torch.__version__,
                        threads=torch.get_num_threads() if self.device.type == "cpu" else None)
            if self.device.type == "cuda":
                info["gpu"] = torch.cuda.get_device_name(self.device)
        return info
