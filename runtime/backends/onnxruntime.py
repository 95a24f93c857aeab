"""The `onnxruntime` backend: an .onnx file (or one derived once from a checkpoint) on the best
execution providers this ONNX Runtime build has.

onnxruntime is imported when the backend is activated; nothing here imports torch, except the
one-time export of a checkpoint that has no cached ONNX file yet.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from nedr.contract import META_FAST, META_OPTIONS, META_PREFIX, OUTPUT_CLEAN, OUTPUT_TRANSMISSION
from nedr.errors import first_line
from nedr.export.artifacts import ModelFiles, cache_dir
from nedr.export.metadata import ExportError
from nedr.export.ort_session import ort_session

from . import CHECKPOINT_SUFFIXES, ORT_PROVIDER_ORDER, TABLE, Backend, Output
from ..errors import BackendError


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime with the best providers available: TensorRT EP → CUDA EP → CPU.

    `model`: an .onnx file, or a checkpoint (default: the bundled default weights) exported once to the cache
    with the transmission output; for a checkpoint, `precision` fp16 or int8 derives that file once
    too (int8: `nedr quantize`'s cpu target on the CPU provider, tensorrt target on GPU providers,
    synthetic calibration). `threads`: intra-op threads on the CPU provider. On a GPU provider the
    input and outputs go through IO binding (outputs allocated on the device, one copy back).
    """

    name = "onnxruntime"

    def __init__(self, model=None, threads: int | None = None, providers: list[str] | None = None,
                 device_id: int = 0, checkpoint: str | None = None, precision: str | None = None,
                 spin: bool = True) -> None:
        super().__init__()
        if model and Path(model).suffix.lower() in CHECKPOINT_SUFFIXES:  # a checkpoint: export it once, cached
            model, checkpoint = None, checkpoint or model
        precisions = TABLE[self.name].precisions
        if precision not in (None, *precisions):
            raise BackendError(f"unknown precision {precision!r}; use {', '.join(precisions[:-1])} or {precisions[-1]}")
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
            self.exported_from = str(self.checkpoint or "bundled default weights")
        if not self.model_path.is_file():
            raise BackendError(f"{self.model_path}: no such ONNX file")
        available = ort.get_available_providers()
        chosen = [p for p in self.requested_providers if p in available] or ["CPUExecutionProvider"]
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
            self._session = ort_session(self.model_path, threads=self.threads, providers=chosen,
                                        provider_options=provider_options, spin=self.spin, quiet=True)
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
        self.clean_name = OUTPUT_CLEAN if OUTPUT_CLEAN in outputs else outputs[0]
        self.transmission_name = OUTPUT_TRANSMISSION if OUTPUT_TRANSMISSION in outputs else None
        self.provides_transmission = self.transmission_name is not None
        self.output_names = [self.clean_name] + ([self.transmission_name] if self.transmission_name else [])
        self._gpu = self.providers[0] != "CPUExecutionProvider"
        meta = self._session.get_modelmeta().custom_metadata_map
        try:
            self.options_meta = json.loads(meta.get(META_PREFIX + META_OPTIONS, "{}"))
            fast = meta.get(META_PREFIX + META_FAST)
            self.fast_meta = json.loads(fast) if fast is not None else None
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
