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

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nedr.runtime.backends import (Backend, OnnxRuntimeBackend, Output, TorchBackend, cached_onnx, importable,
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


# --------------------------------------------------------------------------- model files

@dataclass
class Artifact:
    path: Path | None
    seconds: float  # time to make it in this run (0 when reused)
    reused: bool
    info: dict[str, Any] = field(default_factory=dict)


class ModelFiles:
    """The ONNX files and engines the candidates run, made on first use in `folder`."""

    def __init__(self, folder: Path, checkpoint: str | None, *, calib_size: tuple[int, int], calib_frames: int,
                 validation_frames: int, log: Callable[[str], None]) -> None:
        self.folder = Path(folder)
        self.checkpoint = checkpoint
        self.calib_size, self.calib_frames, self.validation_frames = calib_size, calib_frames, validation_frames
        self.log = log
        self._made: dict[str, Artifact] = {}

    def _once(self, key: str, path: Path, make: Callable[[Path], dict[str, Any] | None]) -> Artifact:
        if key in self._made:
            return self._made[key]
        if path.is_file():
            artifact = Artifact(path, 0.0, True)
        else:
            self.log(f"making {path.name}")
            start = time.perf_counter()
            info = make(path) or {}
            artifact = Artifact(path, time.perf_counter() - start, False, info)
        self._made[key] = artifact
        return artifact

    def fp32(self) -> Artifact:
        if "fp32" not in self._made:
            self.folder.mkdir(parents=True, exist_ok=True)
            before = set(self.folder.glob("*.onnx"))
            start = time.perf_counter()
            path = cached_onnx(self.checkpoint, with_transmission=True, folder=self.folder)
            self._made["fp32"] = Artifact(path, time.perf_counter() - start, path in before)
        return self._made["fp32"]

    def fp16(self) -> Artifact:
        from nedr.export.fp16 import convert_fp16

        src = self.fp32().path
        return self._once("fp16", src.with_name(src.stem + ".fp16.onnx"),
                          lambda out: {"fp16_nodes": convert_fp16(src, out).fp16_nodes})

    def int8(self, target: str) -> Artifact:
        from nedr.export.quantize import quantize

        src = self.fp32().path
        h, w = self.calib_size
        name = f"{src.stem}.int8-{target}.{h}x{w}.{self.calib_frames}f.onnx"

        def make(out: Path) -> dict[str, Any]:
            report = quantize(src, out, frames=self.calib_frames, size=self.calib_size, target=target,
                              validation_frames=self.validation_frames, log=self.log)
            return {"target": target, "psnr_vs_fp32_db": report.psnr_db, "int8_convs": report.int8_convs,
                    "float_convs": report.float_convs, "calibration": report.calibration}

        return self._once(f"int8-{target}", self.folder / name, make)

    def engine(self, precision: str, profile) -> Artifact:
        from nedr.export.tensorrt_build import build_engine

        onnx = {"fp32": self.fp32, "fp16": self.fp16, "int8": lambda: self.int8("tensorrt")}[precision]().path
        tag = "_".join(f"{h}x{w}" for h, w in (profile.min, profile.opt, profile.max))
        return self._once(f"engine-{precision}", self.folder / f"{onnx.stem}.{tag}.engine",
                          lambda out: {"manifest": build_engine(onnx, out, profile=profile)})


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
