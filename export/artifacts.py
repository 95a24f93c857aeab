"""The model files a run needs (FP32 export, FP16, INT8, engines), made once per weights file and reused.

One builder for everyone who needs a derived file: the runtime (`nedr run --model nedr-s --precision
int8` on a machine that has only the checkpoint), and `nedr bench`, which also reports how long each
file took to make. The FP32 export is keyed by the weights' sha256, so new weights never reuse an old
export; the other files are named after the export they come from. Reusing a file needs no torch;
making the FP32 export (and calibrating INT8 on synthetic haze) does.
"""
from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from nedr.bundled import resolve_weights

from .metadata import ExportError, file_sha256

# INT8 made for the runtime: calibrated on synthetic haze at a mid size; the Q/DQ ranges do not
# depend on the size the network later runs at.
RUNTIME_CALIB_SIZE = (256, 256)
RUNTIME_CALIB_FRAMES = 8
RUNTIME_VALIDATION_FRAMES = 2


def cache_dir() -> Path:
    """$NEDR_CACHE_DIR, else $XDG_CACHE_HOME/nedr, else ~/.cache/nedr."""
    if os.environ.get("NEDR_CACHE_DIR"):
        return Path(os.environ["NEDR_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nedr"


def cached_onnx(checkpoint: str | os.PathLike | None = None, *, with_transmission: bool = True,
                folder: str | os.PathLike | None = None) -> Path:
    """The FP32 ONNX export of `checkpoint` (a file or bundled name; default: the bundled default weights),
    made once in `folder` (default: the cache) and reused."""
    weights = resolve_weights(checkpoint)
    if not weights.is_file():
        raise ExportError(f"{weights}: no such weights file")
    folder = Path(folder) if folder else cache_dir() / "onnx"
    path = folder / f"nedr-{file_sha256(weights)[:16]}{'-jt' if with_transmission else ''}.onnx"
    if path.is_file():
        return path
    if importlib.util.find_spec("torch") is None:
        raise ExportError(f"no cached ONNX for {weights.name} and torch is not installed to export one: run "
                          "`nedr-export` where torch is installed and pass the file with --model")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the ONNX cache folder {folder}: {exc.strerror}; set NEDR_CACHE_DIR") from None
    from .onnx_export import export_checkpoint

    try:
        export_checkpoint(weights, path, with_transmission=with_transmission)
    except ExportError as exc:
        raise ExportError(f"exporting {weights.name} to ONNX failed: {exc}") from None
    return path


@dataclass
class Artifact:
    path: Path | None
    seconds: float  # time to make it in this run (0 when reused)
    reused: bool
    info: dict[str, Any] = field(default_factory=dict)


class ModelFiles:
    """The ONNX files and engines of one checkpoint, made on first use in `folder`."""

    def __init__(self, folder: Path, checkpoint: str | os.PathLike | None, *,
                 calib_size: tuple[int, int] = RUNTIME_CALIB_SIZE, calib_frames: int = RUNTIME_CALIB_FRAMES,
                 validation_frames: int = RUNTIME_VALIDATION_FRAMES,
                 log: Callable[[str], None] = lambda _msg: None) -> None:
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
        from .fp16 import convert_fp16

        src = self.fp32().path
        return self._once("fp16", src.with_name(src.stem + ".fp16.onnx"),
                          lambda out: {"fp16_nodes": convert_fp16(src, out).fp16_nodes})

    def int8(self, target: str) -> Artifact:
        from .quantize import quantize

        src = self.fp32().path
        h, w = self.calib_size
        name = f"{src.stem}.int8-{target}.{h}x{w}.{self.calib_frames}f.onnx"

        def make(out: Path) -> dict[str, Any]:
            report = quantize(src, out, frames=self.calib_frames, size=self.calib_size, target=target,
                              validation_frames=self.validation_frames, log=self.log)
            return {"target": target, "psnr_vs_fp32_db": report.psnr_db, "int8_convs": report.int8_convs,
                    "float_convs": report.float_convs, "calibration": report.calibration}

        return self._once(f"int8-{target}", self.folder / name, make)

    def precision(self, precision: str, *, on_gpu: bool = False) -> Artifact:
        """The file for an ONNX Runtime precision: int8 uses the `cpu` target on the CPU provider
        (uint8 activations, its fastest kernels) and the `tensorrt` target on GPU providers."""
        if precision == "fp32":
            return self.fp32()
        if precision == "fp16":
            return self.fp16()
        if precision == "int8":
            return self.int8("tensorrt" if on_gpu else "cpu")
        raise ExportError(f"unknown precision {precision!r}; use fp32, fp16 or int8")

    def engine(self, precision: str, profile) -> Artifact:
        from .tensorrt_build import build_engine

        onnx = {"fp32": self.fp32, "fp16": self.fp16, "int8": lambda: self.int8("tensorrt")}[precision]().path
        tag = "_".join(f"{h}x{w}" for h, w in (profile.min, profile.opt, profile.max))
        return self._once(f"engine-{precision}", self.folder / f"{onnx.stem}.{tag}.engine",
                          lambda out: {"manifest": build_engine(onnx, out, profile=profile)})
