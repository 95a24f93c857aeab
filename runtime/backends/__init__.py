"""Inference backends: one interface, chosen by name (`torch`, `onnxruntime`, `tensorrt`, `triton`, `auto`).

A backend is a context manager in the Polygraphy style: `__enter__` (= `activate()`) loads the model
and allocates sessions/buffers, `__exit__` (= `deactivate()`) frees them. In between:

* `warmup(h, w)` runs a few frames of that padded size (cuDNN/TensorRT autotuning, CUDA graphs);
* `infer(batch)` takes N×3×H×W float32 RGB in [0, 1], H and W on the network contract (multiples of
  32, >= 128; the pipeline pads), and returns J with the same shape;
* `infer_full(batch)` also returns t (N×1×H×W) and A (N×3) where the backend can give them, which
  temporal stabilisation uses to re-solve J with a smoothed A;
* `describe()` says what runs where (provider, device, precision, model file).

Each backend is one module here (torch, onnxruntime, tensorrt, triton) and one row of `TABLE`: its
model-file suffixes, the options it takes, the precisions it runs and a probe of whether it can run
on this machine. Resolution, `create_backend`, `nedr run --backend` and `nedr bench`'s planner read
the rows; a backend's module is imported only when that backend is made (`BACKENDS[name]`).

Heavy modules are imported inside the backends that need them: importing this package, and running
the onnxruntime or tensorrt backend on an existing model file, never imports torch (a Jetson runtime
has none). Without a model file, the onnxruntime backend exports the bundled default weights once to a
cache folder (that one step needs torch).
"""
from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nedr.bundled import is_bundled_name, resolve_weights
from nedr.contract import CHECKPOINT_SUFFIXES, ENGINE_SUFFIXES, MIN_SIZE, ONNX_SUFFIXES, PAD_MULTIPLE, meets_contract
from nedr.lazy import lazy_attributes

from ..errors import BackendError

ORT_PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


@dataclass
class Output:
    """What one batch produced: J always; t and A where the backend exposes them."""

    clean: np.ndarray                  # N×3×H×W float32
    transmission: np.ndarray | None = None  # N×1×H×W float32
    atmosphere: np.ndarray | None = None    # N×3 float32


class Backend:
    """Base class: context manager, contract checks, warm-up and timing shared by every backend."""

    name = "base"

    def __init__(self) -> None:
        self.active = False
        self.static_hw: tuple[int, int] | None = None  # a static-shape model accepts only this H×W
        self.shape_range: tuple[tuple[int, int], tuple[int, int]] | None = None  # (min, max) H×W, if limited
        self.provides_transmission = False
        self.accepts_any_size = False  # a fast-mode graph resizes inside: no ×32 padding needed
        self.max_batch: int | None = None  # the most frames one call takes (None: no limit); multi-stream batching reads it

    # -- lifetime
    def __enter__(self) -> "Backend":
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def activate(self) -> "Backend":
        if not self.active:
            self._activate()
            self.active = True
        return self

    def deactivate(self) -> None:
        if self.active:
            self.active = False
            self._deactivate()

    # -- inference
    def warmup(self, h: int, w: int, runs: int = 2) -> float:
        """Run `runs` random frames of padded size h×w; returns the last run's seconds."""
        x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
        seconds = 0.0
        for _ in range(max(1, runs)):
            start = time.perf_counter()
            self.infer_full(x)
            seconds = time.perf_counter() - start
        return seconds

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.infer_full(batch).clean

    def infer_full(self, batch: np.ndarray) -> Output:
        if not self.active:
            raise BackendError(f"{self.name} backend used outside its `with` block (call activate() first)")
        self.check_batch(batch)
        return self._infer(batch)

    def check_batch(self, batch: np.ndarray) -> None:
        if not isinstance(batch, np.ndarray) or batch.ndim != 4 or batch.shape[1] != 3 or batch.dtype != np.float32:
            raise BackendError(f"{self.name}: expected an N×3×H×W float32 array, got "
                               f"{getattr(batch, 'shape', type(batch).__name__)} {getattr(batch, 'dtype', '')}")
        h, w = batch.shape[-2:]
        if self.accepts_any_size:
            return
        if not meets_contract(h, w):
            raise BackendError(f"{self.name}: input {h}×{w} breaks the network contract (H, W multiples of "
                               f"{PAD_MULTIPLE}, >= {MIN_SIZE}); pad with nedr.runtime.frames.pad_hwc")
        if self.static_hw and (h, w) != self.static_hw:
            raise BackendError(f"{self.name}: the model has a static input size {self.static_hw[0]}×{self.static_hw[1]} "
                               f"and cannot take {h}×{w}")
        if self.shape_range:
            (lh, lw), (hh, hw) = self.shape_range
            if not (lh <= h <= hh and lw <= w <= hw):
                raise BackendError(f"{self.name}: input {h}×{w} is outside the engine profile {lh}×{lw} … {hh}×{hw}; "
                                   "use --infer-size/--scale, or rebuild with `nedr build --min/--max`")

    def request_stop(self) -> None:
        """A stop signal arrived: a backend that can block for long (retrying a server) gives up
        waiting. Called from a signal handler, so it must only record the request."""

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name}

    @property
    def on_gpu(self) -> bool:
        """Whether inference runs on a GPU (known once active)."""
        return False

    # -- to implement
    def _activate(self) -> None:
        raise NotImplementedError

    def _deactivate(self) -> None:
        pass

    def _infer(self, batch: np.ndarray) -> Output:
        raise NotImplementedError


# --------------------------------------------------------------------------- the table

def importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def ort_gpu_available() -> bool:
    """This ONNX Runtime build has a CUDA or TensorRT provider."""
    if not importable("onnxruntime"):
        return False
    import onnxruntime as ort

    return any(p in ort.get_available_providers() for p in ORT_PROVIDER_ORDER[:2])


def torch_cuda_available() -> bool:
    """Torch sees a CUDA GPU; a CPU-only torch build (no libtorch_cuda) is ruled out without importing it."""
    spec = importlib.util.find_spec("torch") if importable("torch") else None
    if spec is None:
        return False
    if spec.submodule_search_locations:
        lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
        if lib.is_dir() and not any(lib.glob("libtorch_cuda*")) and not any(lib.glob("torch_cuda*")):
            return False
    import torch

    return bool(torch.cuda.is_available())


def _installed(module: str, hint: str) -> Callable[[], str | None]:
    return lambda: None if importable(module) else f"not installed ({hint})"


def _tensorrt_reason() -> str | None:
    from .tensorrt import tensorrt_unavailable_reason  # needs no TensorRT to import, only to answer

    return tensorrt_unavailable_reason()


@dataclass(frozen=True)
class BackendRow:
    """One backend as resolution, create_backend, `nedr run --help` and `nedr bench` see it: plain
    data, so choosing and listing backends imports none of their modules (nor their libraries)."""

    name: str
    cls: str                           # "module:Class" under nedr.runtime.backends, imported on first use
    suffixes: tuple[str, ...]          # model files `auto` hands to this backend
    options: tuple[str, ...]           # what create_backend passes on; any other option is refused
    precisions: tuple[str, ...]        # what it runs, as nedr bench plans it (none: not benchmarked)
    probe: Callable[[], str | None]    # why it cannot run on this machine; None when it can
    gpu: Callable[[], bool] | None = None  # would it run the bundled weights on a GPU here (BUNDLED_ORDER rows)

    def load(self) -> Callable[..., Backend]:
        module, _, name = self.cls.partition(":")
        return getattr(importlib.import_module(f"{__name__}.{module}"), name)


TABLE: dict[str, BackendRow] = {row.name: row for row in (
    BackendRow("torch", "torch:TorchBackend", CHECKPOINT_SUFFIXES,
               ("device", "threads", "half", "channels_last", "atmosphere", "guided_filter", "prior_mix",
                "cuda_graph"),
               ("fp32", "fp16"), _installed("torch", "pip install torch"), gpu=torch_cuda_available),
    BackendRow("onnxruntime", "onnxruntime:OnnxRuntimeBackend", ONNX_SUFFIXES,
               ("threads", "providers", "device_id", "checkpoint", "precision", "spin"),
               ("fp32", "fp16", "int8"), _installed("onnxruntime", "pip install onnxruntime"), gpu=ort_gpu_available),
    BackendRow("tensorrt", "tensorrt:TensorRTBackend", ENGINE_SUFFIXES, ("device_id", "cuda_graph", "check_manifest"),
               ("fp32", "fp16", "int8"), _tensorrt_reason),
    BackendRow("triton", "triton:TritonBackend", (),
               ("url", "triton_model", "model_version", "timeout", "request_timeout", "max_retries"),
               (), _installed("tritonclient", "pip install 'tritonclient[grpc,http]'")),
)}
# With no model file, `auto` takes the first of these that has a GPU here, else the first installed:
# ONNX Runtime's CPU provider runs the network about 2× faster than eager torch.
BUNDLED_ORDER = ("onnxruntime", "torch")


class _Classes(MutableMapping):
    """BACKENDS: name → backend class, each imported from its table row when first asked for. A name
    set here without a row (a test's fake backend) is created like the others and takes no options."""

    def __init__(self) -> None:
        self._classes: dict[str, Callable[..., Backend]] = {}

    def __getitem__(self, name: str) -> Callable[..., Backend]:
        if name not in self._classes:
            if name not in TABLE:
                raise KeyError(name)
            self._classes[name] = TABLE[name].load()
        return self._classes[name]

    def __setitem__(self, name: str, factory: Callable[..., Backend]) -> None:
        self._classes[name] = factory

    def __delitem__(self, name: str) -> None:
        del self._classes[name]

    def __contains__(self, name: object) -> bool:
        return name in TABLE or name in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*TABLE, *self._classes]))

    def __len__(self) -> int:
        return len(dict.fromkeys([*TABLE, *self._classes]))


BACKENDS: MutableMapping[str, Callable[..., Backend]] = _Classes()


def backend_names() -> list[str]:
    return sorted(BACKENDS)


def backend_metavar() -> str:
    """`nedr run --backend`'s choices, as argparse writes them."""
    return "{" + ",".join([*TABLE, "auto"]) + "}"


def resolve_backend_name(name: str | None, model: str | os.PathLike | None = None) -> str:
    """The concrete backend for `name` ("auto" or None picks one from the model file and the machine).

    auto: the row whose suffixes hold the model file's (an engine → tensorrt, an .onnx →
    onnxruntime, a checkpoint → torch); no file → BUNDLED_ORDER's first backend with a GPU here,
    else its first installed one.
    """
    name = (name or "auto").lower()
    if is_bundled_name(model):  # bundled weights: the best backend for them, as with no model at all
        model = None
    if name != "auto":
        if name not in BACKENDS:
            raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(backend_names() + ['auto'])}")
        return name
    if model:
        suffix = Path(model).suffix.lower()
        for row in TABLE.values():
            if suffix in row.suffixes:
                return row.name
        kinds = [f"{', '.join(row.suffixes)} ({row.name})" for row in TABLE.values() if row.suffixes]
        raise BackendError(f"cannot tell the backend from {Path(model).name!r}: expected {', '.join(kinds[:-1])} "
                           f"or {kinds[-1]}; or name it with --backend")
    bundled = [TABLE[n] for n in BUNDLED_ORDER]
    row = next((r for r in bundled if r.gpu()), None) or next((r for r in bundled if r.probe() is None), None)
    if row is None:
        raise BackendError("no inference backend available: pip install onnxruntime (or onnxruntime-gpu), or torch")
    return row.name


def create_backend(name: str | None = "auto", model: str | os.PathLike | None = None, **options) -> Backend:
    """A backend by name, not yet activated; `options` go to its constructor (threads, device, ...).

    An option set to None counts as not given. An option the backend's row does not list is refused,
    not dropped: `cuda_graph` with onnxruntime would otherwise run without the graph and say nothing."""
    concrete = resolve_backend_name(name, model)
    if is_bundled_name(model):
        model = resolve_weights(model)
    cls = BACKENDS[concrete]
    accepted = TABLE[concrete].options if concrete in TABLE else ()
    given = {k: v for k, v in options.items() if v is not None}
    refused = sorted(set(given) - set(accepted))
    if refused:
        raise BackendError(f"the {concrete} backend takes no {', '.join(refused)} option "
                           f"(it takes: {', '.join(accepted) or 'none'})")
    return cls(model=model, **given)


# The two classes callers import from the package by name, loaded on first use: importing the backend
# modules here would run them while this package is half initialised (they import Backend from it).
__getattr__ = lazy_attributes(__name__, {"TorchBackend": "torch", "OnnxRuntimeBackend": "onnxruntime"})
