"""Reading images from disk, with errors that name the file (one place for every reader)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from nedr.contract import IMAGE_SUFFIXES
from nedr.errors import NedrError


class DataError(NedrError, ValueError):
    """A problem with the evaluation data (not with the code): the message names what to fix."""


def list_images(folder: str | Path, role: str = "image", *, error: type[NedrError] = DataError) -> list[Path]:
    """Image files (by extension, case-insensitive, hidden files skipped) in `folder`, sorted.

    Raises `error` (default DataError) if the folder is missing, not a folder, or holds no images;
    `role` ("hazy", "clean") only makes the message say which folder is meant. `error` lets the
    caller's stage name the failure (calibration passes CalibrationError), so none re-wraps it.
    """
    folder = Path(folder)
    if not folder.exists():
        raise error(f"{role} folder not found: {folder}")
    if not folder.is_dir():
        raise error(f"{role} folder is not a directory: {folder}")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise error(f"{role} folder has no images ({'/'.join(IMAGE_SUFFIXES)}): {folder}")
    return files


def read_image(path: str | Path, *, error: type[NedrError] = DataError) -> np.ndarray:
    """Read an image as uint8 H×W×3 RGB with OpenCV; `error` (default DataError) naming the file if it can't.

    Decodes with `cv2.imdecode` on the file's bytes rather than `cv2.imread`: same decoders, but it
    also works with non-ASCII paths on Windows and fails quietly (imread prints a warning and
    returns None). Grey images are expanded to RGB, alpha is dropped and 16-bit images are scaled
    to 8 bit (IMREAD_COLOR), so every metric sees the same layout. `error` lets the caller's stage
    name the failure (calibration passes CalibrationError), so none re-wraps it.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise error(f"cannot read image file {path}: {exc.strerror or exc}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise error(f"cannot decode image (corrupt or unsupported format): {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
