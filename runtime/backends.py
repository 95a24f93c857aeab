"""Inference backends: one interface, chosen by name (`torch`, `onnxruntime`, `tensorrt`, `triton`, `auto`).

A backend is a context manager in the Polygraphy style: `__enter__` (= `activate()`) loads the model
and allocates sessions/buffers, `__exit__` (= `deactivate()`) frees them. In between:

* `warmup(h, w)` runs a few frames of that padded size (cuDNN/TensorRT autotuning, CUDA graphs);
* `infer(batch)` takes N×3×H×W float32 RGB in [0, 1], H and W on the network contract (multiples of
  32, >= 128; the pipeline pads), and returns J with the same shape;
* `infer_full(batch)` also returns t (N×1×H×W) and A (N×3) where the backend can give them, which
  temporal stabilisation uses to re-solve J with a smoothed A;
* `describe()` says what runs where (provider, device, precision, model file).

Heavy modules are imported inside the backends that need them: importing this module, and running
the onnxruntime or tensorrt backend on an existing model file, never imports torch (a Jetson runtime
has none). Without a model file, the onnxruntime backend exports the bundled demo weights once to a
cache folder (that one step needs torch).
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nedr.bundled import is_bundled_name, resolve_weights
from nedr.errors import first_line
from nedr.export.artifacts import ModelFiles, cache_dir
from nedr.export.metadata import ExportError

from .errors import BackendError
from .frames import MIN_SIZE, PAD_MULTIPLE, meets_contract

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
ONNX_SUFFIXES = (".onnx",)
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt")
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


# --------------------------------------------------------------------------- registry

BACKENDS: dict[str, Callable[..., Backend]] = {}


def register(name: str):
    def wrap(cls):
        cls.name = name
        BACKENDS[name] = cls
        return cls
    return wrap


def backend_names() -> list[str]:
    return sorted(BACKENDS)


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


def resolve_backend_name(name: str | None, model: str | os.PathLike | None = None) -> str:
    """The concrete backend for `name` ("auto" or None picks one from the model file and the machine).

    auto: an engine file → tensorrt; an .onnx → onnxruntime; a checkpoint → torch; no file → the
    onnxruntime backend when it has a GPU provider, else torch on CUDA, else onnxruntime on the CPU
    (about 2× faster than eager torch there), else torch.
    """
    name = (name or "auto").lower()
    if is_bundled_name(model):  # bundled weights: the best backend for them, as with no model at all
        model = None
    if name != "auto":
        if name not in BACKENDS:
            raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(backend_names() + ['auto'])}")
        return name
    suffix = Path(model).suffix.lower() if model else ""
    if suffix in ENGINE_SUFFIXES:
        return "tensorrt"
    if suffix in ONNX_SUFFIXES:
        return "onnxruntime"
    if suffix in CHECKPOINT_SUFFIXES:
        return "torch"
    if model:
        raise BackendError(f"cannot tell the backend from {Path(model).name!r}: expected {', '.join(ENGINE_SUFFIXES)} "
                           f"(tensorrt), .onnx (onnxruntime) or {', '.join(CHECKPOINT_SUFFIXES)} (torch); "
                           "or name it with --backend")
    if ort_gpu_available():
        return "onnxruntime"
    if torch_cuda_available():
        return "torch"
    if importable("onnxruntime"):
        return "onnxruntime"
    if importable("torch"):
        return "torch"
    raise BackendError("no inference backend available: pip install onnxruntime (or onnxruntime-gpu), or torch")


def create_backend(name: str | None = "auto", model: str | os.PathLike | None = None, **options) -> Backend:
    """A backend by name, not yet activated; `options` go to its constructor (threads, device, ...).

    An option set to None counts as not given. An option the backend does not take is refused, not
    dropped: `cuda_graph` with onnxruntime would otherwise run without the graph and say nothing."""
    concrete = resolve_backend_name(name, model)
    if is_bundled_name(model):
        model = resolve_weights(model)
    cls = BACKENDS[concrete]
    accepted = getattr(cls, "OPTIONS", ())
    given = {k: v for k, v in options.items() if v is not None}
    refused = sorted(set(given) - set(accepted))
    if refused:
        raise BackendError(f"the {concrete} backend takes no {', '.join(refused)} option "
                           f"(it takes: {', '.join(accepted) or 'none'})")
    return cls(model=model, **given)


# --------------------------------------------------------------------------- torch

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


@register("torch")
class TorchBackend(Backend):
    """PyTorch eager: CPU or CUDA; FP16 weights and channels_last memory on CUDA by default.

    `model`: checkpoint file (default demo weights) or an `nedr.model.NeDR` instance. Returns J, t
    and A (so stabilisation re-solves J exactly as the network would with a smoothed A).
    """

    OPTIONS = ("device", "threads", "half", "channels_last", "atmosphere", "guided_filter")

    def __init__(self, model=None, device: str = "auto", threads: int | None = None, half: bool | None = None,
                 channels_last: bool | None = None, atmosphere: str | None = None,
                 guided_filter: bool | None = None) -> None:
        super().__init__()
        self.model_source = model
        self.device_name = device
        self.threads = threads
        self.half, self.channels_last = half, channels_last
        self.atmosphere, self.guided_filter = atmosphere, guided_filter
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
            net = load_checkpoint(self.model_source, atmosphere=self.atmosphere, guided_filter=self.guided_filter)
        cuda = self.device.type == "cuda"
        self.half = cuda if self.half is None else bool(self.half)
        self.channels_last = cuda if self.channels_last is None else bool(self.channels_last)
        net = net.to(self.device).eval()
        if self.half:
            net = net.half()
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self._net = net
        self._dtype = torch.float16 if self.half else torch.float32

    def _deactivate(self) -> None:
        torch = self._torch
        self._net = None
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
            p = self._net.predict(x)
            j = p.clean.float().contiguous().cpu().numpy()
            t = p.transmission.float().contiguous().cpu().numpy()
            a = p.atmosphere.float().reshape(p.atmosphere.shape[0], 3).cpu().numpy()
        return Output(j, t, a)

    @property
    def on_gpu(self) -> bool:
        return self.active and self.device.type == "cuda"

    def describe(self) -> dict[str, Any]:
        info = {"backend": self.name, "model": str(self.model_source or "bundled demo weights")}
        if self.active or hasattr(self, "device"):
            torch = self._torch
            info.update(device=str(self.device), precision="fp16" if self.half else "fp32",
                        channels_last=self.channels_last, torch=torch.__version__,
                        threads=torch.get_num_threads() if self.device.type == "cpu" else None)
            if self.device.type == "cuda":
                info["gpu"] = torch.cuda.get_device_name(self.device)
        return info


# --------------------------------------------------------------------------- onnxruntime

@register("onnxruntime")
class OnnxRuntimeBackend(Backend):
    """ONNX Runtime with the best providers available: TensorRT EP → CUDA EP → CPU.

    `model`: an .onnx file, or a checkpoint (default: the demo weights) exported once to the cache
    with the transmission output; for a checkpoint, `precision` fp16 or int8 derives that file once
    too (int8: `nedr quantize`'s cpu target on the CPU provider, tensorrt target on GPU providers,
    synthetic calibration). `threads`: intra-op threads on the CPU provider. On a GPU provider the
    input and outputs go through IO binding (outputs allocated on the device, one copy back).
    """

    OPTIONS = ("threads", "providers", "device_id", "checkpoint", "precision", "spin")

    def __init__(self, model=None, threads: int | None = None, providers: list[str] | None = None,
                 device_id: int = 0, checkpoint: str | None = None, precision: str | None = None,
                 spin: bool = True) -> None:
        super().__init__()
        if model and Path(model).suffix.lower() in CHECKPOINT_SUFFIXES:  # a checkpoint: export it once, cached
            model, checkpoint = None, checkpoint or model
        if precision not in (None, "fp32", "fp16", "int8"):
            raise BackendError(f"unknown precision {precision!r}; use fp32, fp16 or int8")
        if model and precision:
            raise BackendError(f"{Path(model).name} has its precision already; --precision derives a file from a "
                               "checkpoint (make one with nedr-export --precision fp16 or nedr quantize)")
        self.model_path = Path(model) if model else None
        self.checkpoint = checkpoint
        self.precision = precision or "fp32"
        # spin=False: idle intra-op threads sleep instead of spinning for the next call, leaving the
        # cores to the pipeline's decode, upsampling and encode threads between frames.
        self.spin = bool(spin)
        self.threads = threads
        self.requested_providers = list(providers) if providers else list(ORT_PROVIDER_ORDER)
        self.device_id = int(device_id)

    def _activate(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError("the onnxruntime backend needs ONNX Runtime: pip install onnxruntime "
                               "(or onnxruntime-gpu for CUDA/TensorRT providers)") from None
        self._ort = ort
        if self.model_path is None:
            available = ort.get_available_providers()
            on_gpu = any(p in available and p != "CPUExecutionProvider" for p in self.requested_providers)
            files = ModelFiles(cache_dir() / "onnx", self.checkpoint,
                               log=lambda msg: print(f"nedr: {msg} (once; cached)", file=sys.stderr))
            try:
                artifact = files.precision(self.precision, on_gpu=on_gpu)
            except ExportError as exc:
                raise BackendError(str(exc)) from None
            self.model_path = artifact.path
            self.exported_from = str(self.checkpoint or "bundled demo weights")
        if not self.model_path.is_file():
            raise BackendError(f"{self.model_path}: no such ONNX file")
        available = ort.get_available_providers()
        chosen = [p for p in self.requested_providers if p in available] or ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if self.threads:
            options.intra_op_num_threads = int(self.threads)
            options.inter_op_num_threads = 1
        if not self.spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        provider_options = []
        for p in chosen:
            if p == "TensorrtExecutionProvider":
                trt_cache = cache_dir() / "ort-tensorrt"
                trt_cache.mkdir(parents=True, exist_ok=True)
                provider_options.append({"device_id": self.device_id, "trt_engine_cache_enable": True,
                                         "trt_engine_cache_path": str(trt_cache), "trt_timing_cache_enable": True})
            elif p == "CUDAExecutionProvider":
                provider_options.append({"device_id": self.device_id})
            else:
                provider_options.append({})
        try:
            self._session = ort.InferenceSession(str(self.model_path), options, providers=chosen,
                                                 provider_options=provider_options)
        except Exception as exc:  # InvalidProtobuf, Fail, NoSuchFile, EP init errors
            first = first_line(exc)
            if "INVALID_PROTOBUF" in first:  # the words `nedr inspect` uses for the same file
                first = f"not a readable ONNX file ({first[:160]})"
            raise BackendError(f"ONNX Runtime cannot load {self.model_path}: {first[:240]}") from None
        self.providers = self._session.get_providers()
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise BackendError(f"{self.model_path.name}: expected one input (hazy), found {len(inputs)}")
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        if len(shape) == 4 and all(isinstance(d, int) for d in shape[2:]):
            self.static_hw = (int(shape[2]), int(shape[3]))
        self.max_batch = int(shape[0]) if shape and isinstance(shape[0], int) else None
        outputs = [o.name for o in self._session.get_outputs()]
        self.clean_name = "clean" if "clean" in outputs else outputs[0]
        self.transmission_name = "transmission" if "transmission" in outputs else None
        self.provides_transmission = self.transmission_name is not None
        self.output_names = [self.clean_name] + ([self.transmission_name] if self.transmission_name else [])
        self._gpu = self.providers[0] != "CPUExecutionProvider"
        meta = self._session.get_modelmeta().custom_metadata_map
        try:
            self.options_meta = json.loads(meta.get("nedr.options", "{}"))
            self.fast_meta = json.loads(meta["nedr.fast"]) if "nedr.fast" in meta else None
        except ValueError:
            self.options_meta, self.fast_meta = {}, None
        self.accepts_any_size = self.fast_meta is not None
        if self.accepts_any_size:
            self.static_hw = None

    def _deactivate(self) -> None:
        self._session = None

    @property
    def on_gpu(self) -> bool:
        return bool(getattr(self, "_gpu", False))

    def _infer(self, batch: np.ndarray) -> Output:
        try:
            if self._gpu:
                binding = self._session.io_binding()
                binding.bind_cpu_input(self.input_name, batch)
                for name in self.output_names:
                    binding.bind_output(name, "cuda", self.device_id)
                self._session.run_with_iobinding(binding)
                outs = binding.copy_outputs_to_cpu()
            else:
                outs = self._session.run(self.output_names, {self.input_name: batch})
        except Exception as exc:
            first = first_line(exc)
            raise BackendError(f"ONNX Runtime failed on a {batch.shape[2]}×{batch.shape[3]} frame: {first[:240]}") from None
        clean = np.asarray(outs[0], dtype=np.float32)
        t = np.asarray(outs[1], dtype=np.float32) if len(outs) > 1 else None
        return Output(clean, t, None)

    def describe(self) -> dict[str, Any]:
        info = {"backend": self.name, "model": str(self.model_path) if self.model_path else None}
        if hasattr(self, "exported_from"):
            info["exported_from"] = self.exported_from
        if hasattr(self, "providers"):
            info.update(providers=self.providers, onnxruntime=self._ort.__version__, io_binding=self._gpu,
                        threads=self.threads, spin=self.spin, outputs=self.output_names, static_hw=self.static_hw,
                        atmosphere=self.options_meta.get("atmosphere"), precision=self.options_meta.get("precision"),
                        fast_graph=self.fast_meta)
        return info


# The native TensorRT and Triton client backends live in their own modules (their heavy imports are lazy).
from . import tensorrt_backend as _tensorrt_backend  # noqa: E402,F401  (registers "tensorrt")
from . import triton_backend as _triton_backend  # noqa: E402,F401  (registers "triton")
