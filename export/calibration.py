"""Frames for INT8 calibration and validation, tensor ranges from ONNX Runtime's calibrators, and
the range cache that lets a second `nedr quantize` skip the calibration pass.

Calibration frames come from training sources only (`synthetic`: `SyntheticHaze` crops of
`training_samples()`), or from the user's own hazy footage (an image folder or a video file);
validation frames come from the held-out set (`synthetic_heldout()`: images never used in
training), so the PSNR a report prints is not measured on the frames the ranges were fitted to.
Every frame is brought to the deployment size H×W (resize to cover, centre crop), because the
activation ranges of a fully convolutional network with global statistics (β head, atmospheric
light) depend on the frame size.

Ranges: `compute_ranges` runs ONNX Runtime's own calibrator (`create_calibrator`) one frame at a
time, so memory stays one frame's activations (its histogram collectors merge across calls).
The cache (`<out>.calib.json`) holds the ranges with the key they were computed under: ONNX
sha256, calibration-set identity (sha256 of the frames themselves, so an edited folder or a new
seed misses), method, size, frame count and the calibrated op types. Any mismatch recomputes.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nedr.fileio import write_text_atomic

from .qdq import QuantizeError

SYNTHETIC = "synthetic"  # the calibration source made from training photos with synthetic haze
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
CACHE_FORMAT = 1
SYNTHETIC_SEED = 2024  # calibration crops; distinct from training's default seed 0


class CalibrationError(QuantizeError):
    """The calibration source cannot give frames; one line naming the source and the fix. A
    QuantizeError, since calibrating is a step of quantizing: `quantize` lets it through as it is."""


@dataclass
class FrameSet:
    """N float32 frames 1×3×H×W in [0, 1] (RGB) and what they are."""

    frames: list[np.ndarray]
    source: str  # human-readable: "synthetic (seed 2024)", "folder /x (12 of 40 images)", ...
    identity: str  # sha256 of the frames' bytes

    def __len__(self) -> int:
        return len(self.frames)


def fit_frame(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """H×W×3 RGB (uint8 or float in [0, 1]) → 1×3×H×W float32 at `size`: resize so the image
    covers the size (aspect kept), then centre-crop."""
    import cv2  # on first use: `nedr quantize --help` reads this module's defaults

    h, w = size
    ih, iw = rgb.shape[:2]
    scale = max(h / ih, w / iw)
    nh, nw = max(h, round(ih * scale)), max(w, round(iw * scale))
    if (nh, nw) != (ih, iw):
        rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y, x = (nh - h) // 2, (nw - w) // 2
    crop = rgb[y:y + h, x:x + w]
    x32 = crop.astype(np.float32) / 255.0 if crop.dtype == np.uint8 else crop.astype(np.float32)
    return np.ascontiguousarray(np.clip(x32, 0.0, 1.0).transpose(2, 0, 1)[None])


def _digest(frames: list[np.ndarray]) -> str:
    d = hashlib.sha256()
    for f in frames:
        d.update(str(f.shape).encode())
        d.update(np.ascontiguousarray(f).tobytes())
    return d.hexdigest()


def _spread(n_available: int, n: int) -> list[int]:
    """`n` indices spread evenly over `n_available` (all of them when there are fewer)."""
    if n >= n_available:
        return list(range(n_available))
    return sorted({int(round(i)) for i in np.linspace(0, n_available - 1, n)})


def synthetic_frames(size: tuple[int, int], count: int, seed: int = SYNTHETIC_SEED) -> FrameSet:
    """Hazy crops from the training sources (`SyntheticHaze(training_samples())`), cut to `size`."""
    from nedr.model.datasets import SyntheticHaze
    from nedr.model.samples import training_samples

    data = SyntheticHaze(training_samples(), crop=max(size), seed=seed)
    frames = [fit_frame(data[i]["hazy"].permute(1, 2, 0).numpy(), size) for i in range(count)]
    return FrameSet(frames, f"synthetic haze on training sources (seed {seed})", _digest(frames))


def folder_frames(folder: Path, size: tuple[int, int], count: int) -> FrameSet:
    from nedr.model.imageio import list_images, read_image

    files = list_images(folder, role="calibration", error=CalibrationError)
    chosen = [files[i] for i in _spread(len(files), count)]
    frames = [fit_frame(read_image(p, error=CalibrationError), size) for p in chosen]
    return FrameSet(frames, f"image folder {folder} ({len(frames)} of {len(files)} images)", _digest(frames))


def video_frames(path: Path, size: tuple[int, int], count: int) -> FrameSet:
    """`count` frames spread over the clip (the first `count` when the length is unknown)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise CalibrationError(f"cannot open video {path} (unreadable, or no OpenCV decoder for it)")
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        wanted = set(_spread(total, count)) if total > 0 else set(range(count))
        frames, i = [], 0
        while len(frames) < len(wanted) and i <= max(wanted):
            ok = cap.grab()
            if not ok:
                break
            if i in wanted:
                ok, bgr = cap.retrieve()
                if ok and bgr is not None:
                    frames.append(fit_frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size))
            i += 1
    finally:
        cap.release()
    if not frames:
        raise CalibrationError(f"video {path} gave no frames (empty, corrupt or unsupported)")
    return FrameSet(frames, f"video {path} ({len(frames)} frames of {total or 'unknown'})", _digest(frames))


def calibration_frames(source: str | Path, size: tuple[int, int], count: int) -> FrameSet:
    """Frames from `source`: "synthetic", an image folder, a video file or a single image."""
    from nedr.contract import IMAGE_SUFFIXES
    from nedr.model.imageio import read_image

    if count < 1:
        raise CalibrationError(f"need at least 1 calibration frame, got {count}")
    if str(source) == SYNTHETIC:
        return synthetic_frames(size, count)
    path = Path(source)
    if not path.exists():
        raise CalibrationError(f"calibration source not found: {path} (give 'synthetic', an image folder or a video)")
    if path.is_dir():
        return folder_frames(path, size, count)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        frames = [fit_frame(read_image(path, error=CalibrationError), size)]
        return FrameSet(frames, f"image {path}", _digest(frames))
    if path.stat().st_size == 0:
        raise CalibrationError(f"calibration video {path} is empty (0 bytes)")
    return video_frames(path, size, count)


def heldout_frames(size: tuple[int, int], count: int) -> list[np.ndarray]:
    """Validation frames at `size` from the held-out set (images never used in training)."""
    from nedr.model.evaluation import synthetic_heldout

    items = synthetic_heldout()
    return [fit_frame(items[i][1], size) for i in _spread(len(items), count)]


# --- ranges -----------------------------------------------------------------------------------

class FrameReader:
    """A `CalibrationDataReader` over frames for an ONNX input name (rewindable)."""

    def __init__(self, frames: list[np.ndarray], input_name: str):
        self.frames, self.input_name, self.index = frames, input_name, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.index >= len(self.frames):
            return None
        self.index += 1
        return {self.input_name: self.frames[self.index - 1]}

    def __len__(self) -> int:
        return len(self.frames)

    def rewind(self) -> None:
        self.index = 0


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile}[name]


def compute_ranges(onnx_path: str | Path, frames: list[np.ndarray], method: str, op_types: list[str],
                   input_name: str, progress: Callable[[int, int], None] | None = None):
    """ONNX Runtime's calibrator over `frames`, one frame per `collect_data` call; a TensorsData."""
    from onnxruntime.quantization import create_calibrator

    with tempfile.TemporaryDirectory(prefix="nedr-calib-") as tmp:
        calibrator = create_calibrator(Path(onnx_path), op_types, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=_method(method))
        for i, frame in enumerate(frames):
            with contextlib.redirect_stdout(io.StringIO()):  # the histogram collector prints per call
                calibrator.collect_data(FrameReader([frame], input_name))
            if progress:
                progress(i + 1, len(frames))
        with contextlib.redirect_stdout(io.StringIO()):
            ranges = calibrator.compute_data()
        del calibrator
    return ranges


def cache_key(onnx_sha256: str, frames: FrameSet, method: str, size: tuple[int, int], op_types: list[str]) -> dict[str, Any]:
    return {"onnx_sha256": onnx_sha256, "calibration_set": frames.identity, "method": method,
            "size": [int(size[0]), int(size[1])], "frames": len(frames), "op_types": sorted(op_types)}


def load_cached_ranges(path: Path, key: dict[str, Any]):
    """The TensorsData stored at `path` when it was computed under `key`, else None."""
    from onnxruntime.quantization.calibrate import TensorsData

    try:
        payload = json.loads(Path(path).read_text())
        if payload.get("format") != CACHE_FORMAT or payload.get("key") != key:
            return None
        return TensorsData.from_dict(payload["ranges"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing, unreadable or from another version: recalibrate


def save_cached_ranges(path: Path, key: dict[str, Any], ranges, source: str) -> Path:
    """Write the cache atomically (temp file + rename)."""
    from onnxruntime.quantization.calibrate import CalibrationCacheEncoder

    text = json.dumps({"format": CACHE_FORMAT, "key": key, "source": source, "ranges": ranges},
                      cls=CalibrationCacheEncoder)
    return write_text_atomic(path, text)
