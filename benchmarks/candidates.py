"""What `nedr bench` can compare on this machine, and the model files each comparison needs.

A candidate is one (backend, precision, variant) the runtime can run: PyTorch eager FP32 (the
reference, always), PyTorch FP16 / channels_last / CUDA graphs on a GPU, ONNX Runtime FP32 / FP16 /
INT8 on whatever providers the installed build has, and TensorRT FP32 / FP16 / INT8 engines when
TensorRT and a GPU are present. Whatever cannot run here is listed with the reason, so a report
never silently omits a row.

Model files are made once per weights file in a work folder (the FP32 export is keyed by the
weights' sha256, the others are derived from it) and reused by later runs; how long each took to
make is part of the report.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nedr.export.artifacts import Artifact, ModelFiles
from nedr.runtime.backends import (Backend, OnnxRuntimeBackend, Output, TorchBackend, importable,
                                   torch_cuda_available)
from nedr.runtime.tensorrt_backend import TensorRTBackend, tensorrt_unavailable_reason

BACKENDS = ("torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
REFERENCE_KEY = "torch-fp32"


@dataclass(frozen=True)
class Candidate:
    backend: str
    precision: str
    variant: str = ""  # "channels_last" or "cuda_graph" (PyTorch on CUDA)

    @property
    def key(self) -> str:
        return "-".join(p for p in (self.backend, self.precision, self.variant) if p)

    @property
    def label(self) -> str:
        names = {"torch": "PyTorch", "onnxruntime": "ONNX Runtime", "tensorrt": "TensorRT"}
        extra = {"channels_last": " channels_last", "cuda_graph": " CUDA graph"}.get(self.variant, "")
        return f"{names[self.backend]} {self.precision.upper()}{extra}"


@dataclass
class Environment:
    """What this machine offers, probed once."""

    cuda: bool
    onnxruntime_providers: list[str] | None  # None: onnxruntime not installed
    tensorrt_reason: str | None  # None: TensorRT can run here

    @classmethod
    def probe(cls) -> "Environment":
        providers = None
        if importable("onnxruntime"):
            import onnxruntime

            providers = list(onnxruntime.get_available_providers())
        return cls(torch_cuda_available(), providers, tensorrt_unavailable_reason())

    @property
    def ort_on_gpu(self) -> bool:
        return bool(self.onnxruntime_providers) and any(
            p in self.onnxruntime_providers for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider"))


def plan(backends: list[str], precisions: list[str], env: Environment) -> tuple[list[Candidate], list[dict[str, str]]]:
    """The candidates to run (reference first) and what is left out, each with its reason."""
    unknown = sorted(set(backends) - set(BACKENDS)) + sorted(set(precisions) - set(PRECISIONS))
    if unknown:
        raise ValueError(f"unknown backend/precision {', '.join(unknown)}; backends: {', '.join(BACKENDS)}; "
                         f"precisions: {', '.join(PRECISIONS)}")
    run: list[Candidate] = [Candidate("torch", "fp32")]  # the reference every other row is measured against
    skipped: list[dict[str, str]] = []

    def skip(what: str, why: str) -> None:
        skipped.append({"what": what, "reason": why})

    if "torch" in backends:
        if "fp16" in precisions:
            if env.cuda:
                run += [Candidate("torch", "fp16"), Candidate("torch", "fp16", "channels_last"),
                        Candidate("torch", "fp16", "cuda_graph")]
            else:
                skip("PyTorch FP16 (channels_last, CUDA graphs)", "needs a CUDA GPU; torch sees none here")
        if "int8" in precisions:
            skip("PyTorch INT8", "not a deployment path: INT8 runs as a Q/DQ ONNX model in ONNX Runtime or TensorRT")
    if "onnxruntime" in backends:
        if env.onnxruntime_providers is None:
            skip("ONNX Runtime", "not installed (pip install onnxruntime)")
        else:
            run += [Candidate("onnxruntime", p) for p in PRECISIONS if p in precisions]
            if not env.ort_on_gpu:
                skip("ONNX Runtime on a GPU (CUDA / TensorRT execution providers)",
                     "this onnxruntime build has only " + ", ".join(env.onnxruntime_providers)
                     + " (pip install onnxruntime-gpu on a CUDA machine)")
    if "tensorrt" in backends:
        if env.tensorrt_reason:
            skip("TensorRT " + " / ".join(p.upper() for p in precisions), env.tensorrt_reason)
        else:
            run += [Candidate("tensorrt", p) for p in PRECISIONS if p in precisions]
    return run, skipped



# --------------------------------------------------------------------------- runnable backends

class TorchCudaGraphBackend(TorchBackend):
    """PyTorch FP16 channels_last, replayed from a CUDA graph captured once per input shape:
    the whole network becomes one launch, which is what removes the CPU overhead at small sizes."""

    def _activate(self) -> None:
        super()._activate()
        self._graphs: dict[tuple[int, ...], tuple[Any, Any, Any]] = {}

    def _deactivate(self) -> None:
        self._graphs = {}
        super()._deactivate()

    def _capture(self, shape: tuple[int, ...]):
        torch = self._torch
        # random, not zeros: a flat frame makes the guided filter's min-max normalisation 0/0
        static_in = torch.rand(shape, device=self.device).to(self._dtype).contiguous(memory_format=torch.channels_last)
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

    def _infer(self, batch: np.ndarray) -> Output:
        torch = self._torch
        with torch.inference_mode():
            if batch.shape not in self._graphs:
                self._graphs[batch.shape] = self._capture(batch.shape)
            static_in, out, graph = self._graphs[batch.shape]
            static_in.copy_(torch.from_numpy(batch))
            graph.replay()
            j = out.clean.float().cpu().numpy()
            t = out.transmission.float().cpu().numpy()
            a = out.atmosphere.float().reshape(out.atmosphere.shape[0], 3).cpu().numpy()
        return Output(j, t, a)


def backend_for(candidate: Candidate, model: Path | None, *, cuda: bool, threads: int,
                checkpoint: str | None) -> Backend:
    """The (not yet activated) runtime backend for `candidate` running `model` (None: torch from
    `checkpoint`)."""
    if candidate.backend == "torch":
        cls = TorchCudaGraphBackend if candidate.variant == "cuda_graph" else TorchBackend
        return cls(model=checkpoint, device="cuda" if cuda else "cpu", threads=threads,
                   half=candidate.precision == "fp16",
                   channels_last=candidate.variant in ("channels_last", "cuda_graph"))
    if candidate.backend == "onnxruntime":
        return OnnxRuntimeBackend(model=model, threads=threads)
    return TensorRTBackend(model=model)


def model_file(candidate: Candidate, files: ModelFiles, env: Environment, engine_profile=None) -> Artifact | None:
    """The model file `candidate` runs, made if needed (None for PyTorch, which runs the checkpoint)."""
    if candidate.backend == "torch":
        return None
    if candidate.backend == "onnxruntime":
        if candidate.precision == "int8":
            return files.int8("tensorrt" if env.ort_on_gpu else "cpu")
        return files.fp16() if candidate.precision == "fp16" else files.fp32()
    return files.engine(candidate.precision, engine_profile)
