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

from nedr.export.artifacts import Artifact, ModelFiles
from nedr.runtime.backends import TABLE, Backend, create_backend

BACKENDS = tuple(name for name, row in TABLE.items() if row.precisions)  # the backends with precisions to compare
PRECISIONS = tuple(dict.fromkeys(p for row in TABLE.values() for p in row.precisions))
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
        if TABLE["onnxruntime"].probe() is None:
            import onnxruntime

            providers = list(onnxruntime.get_available_providers())
        return cls(TABLE["torch"].gpu(), providers, TABLE["tensorrt"].probe())

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
            run += [Candidate("onnxruntime", p) for p in TABLE["onnxruntime"].precisions if p in precisions]
            if not env.ort_on_gpu:
                skip("ONNX Runtime on a GPU (CUDA / TensorRT execution providers)",
                     "this onnxruntime build has only " + ", ".join(env.onnxruntime_providers)
                     + " (pip install onnxruntime-gpu on a CUDA machine)")
    if "tensorrt" in backends:
        if env.tensorrt_reason:
            skip("TensorRT " + " / ".join(p.upper() for p in precisions), env.tensorrt_reason)
        else:
            run += [Candidate("tensorrt", p) for p in TABLE["tensorrt"].precisions if p in precisions]
    return run, skipped


def backend_for(candidate: Candidate, model: Path | None, *, cuda: bool, threads: int,
                checkpoint: str | None) -> Backend:
    """The (not yet activated) runtime backend for `candidate` running `model` (None: torch from
    `checkpoint`)."""
    if candidate.backend == "torch":
        return create_backend("torch", checkpoint, device="cuda" if cuda else "cpu", threads=threads,
                              half=candidate.precision == "fp16",
                              channels_last=candidate.variant in ("channels_last", "cuda_graph"),
                              cuda_graph=candidate.variant == "cuda_graph")
    if candidate.backend == "onnxruntime":
        return create_backend("onnxruntime", model, threads=threads)
    return create_backend("tensorrt", model)


def model_file(candidate: Candidate, files: ModelFiles, env: Environment, engine_profile=None) -> Artifact | None:
    """The model file `candidate` runs, made if needed (None for PyTorch, which runs the checkpoint)."""
    if candidate.backend == "torch":
        return None
    if candidate.backend == "onnxruntime":
        if candidate.precision == "int8":
            return files.int8("tensorrt" if env.ort_on_gpu else "cpu")
        return files.fp16() if candidate.precision == "fp16" else files.fp32()
    return files.engine(candidate.precision, engine_profile)
