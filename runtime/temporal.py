"""Temporal stabilisation: smooth the atmospheric light A over time, reset on scene cuts.

NeDR picks A per frame from the brightest dark-channel pixels, so A jumps whenever a bright object
enters or leaves the frame and the whole output brightens/darkens (flicker). The network is
J = (I − A)/t + A given t and A, so with t from the backend and a smoothed A, J is re-solved exactly
as the network would have with that A:

* A per frame comes from the backend (torch returns it), else it is solved from the backend's own
  outputs: I − J·t = A·(1 − t) holds per pixel wherever J was not clipped, so the per-channel median
  of (I − J·t)/(1 − t) recovers the graph's A whatever atmosphere mode it baked in; a numpy port of
  the dark-channel estimate is the fallback.
* `AtmosphereSmoother`: exponential moving average, reset to the frame's own A on a scene cut.
* `SceneCutDetector`: mean absolute difference of z-normalised 64×36 grey thumbnails (so haze,
  which lowers contrast, does not hide cuts), relative to its recent median.

Pure numpy + OpenCV.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from nedr.contract import A_MAX, DARK_PATCH, T_MIN, TOP_FRACTION_DIVISOR, TOPK_MAX


def dark_channel(image: np.ndarray, patch: int = DARK_PATCH) -> np.ndarray:
    """Channel min then a patch×patch min filter, border padded with 1 (as nedr.model.physics)."""
    kernel = np.ones((patch, patch), np.uint8)
    return cv2.erode(np.ascontiguousarray(image.min(axis=2)), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=1.0)


def estimate_atmosphere(image: np.ndarray, mode: str = "dark_channel") -> np.ndarray:
    """A (3,) of an H×W×3 float image, the numpy twin of nedr.model.physics.atmospheric_light."""
    flat = image.reshape(-1, 3)
    if mode == "max":
        return flat.max(axis=0).astype(np.float32)
    h, w = image.shape[:2]
    k = min(max(1, h * w // TOP_FRACTION_DIVISOR), TOPK_MAX)
    dc = dark_channel(image).ravel()
    idx = np.argpartition(-dc, k - 1)[:k]
    return np.minimum(flat[idx].max(axis=0), A_MAX).astype(np.float32)


def atmosphere_from_outputs(hazy: np.ndarray, clean: np.ndarray, t: np.ndarray, min_pixels: int = 64) -> np.ndarray | None:
    """The A a graph used, solved from its input and outputs (H×W×3, H×W×3, H×W); None if too few
    unclipped pixels with t well below 1."""
    tt = t.reshape(t.shape[0], t.shape[1])
    ok = (tt < 0.9) & np.all((clean > 1e-3) & (clean < 1 - 1e-3), axis=2)
    if int(ok.sum()) < min_pixels:
        return None
    i, j, tv = hazy[ok], clean[ok], tt[ok][:, None]
    return np.median((i - j * tv) / (1.0 - tv), axis=0).astype(np.float32)


def recover(hazy: np.ndarray, t: np.ndarray, a: np.ndarray) -> np.ndarray:
    """J = (I − A)/t + A, clipped to [0, 1] (nedr.model.physics.recover); H×W×3, H×W, (3,)."""
    tt = np.maximum(t.reshape(t.shape[0], t.shape[1], 1), T_MIN)
    return np.clip((hazy - a) / tt + a, 0.0, 1.0).astype(np.float32)


class SceneCutDetector:
    """True when a frame starts a new shot.

    Score: mean |z(thumb_t) − z(thumb_{t−1})| of z-normalised grey thumbnails. A cut needs both an
    absolute score >= `threshold` and a jump >= `ratio` × the median of the last `window` scores,
    so fast motion (high scores for many frames) does not count. On bikes.mp4 (cuts at 30, 76, 137,
    187, 242) cut scores were 0.48–1.21 clean or hazed, the highest non-cut 0.57 clean / 0.37 hazed
    with a ratio below 3.5, cut ratios 4.2–22.
    """

    def __init__(self, threshold: float = 0.4, ratio: float = 3.5, window: int = 15, size: tuple[int, int] = (64, 36)):
        self.threshold, self.ratio, self.size = threshold, ratio, size
        self.history: deque[float] = deque(maxlen=window)
        self.previous: np.ndarray | None = None
        self.cuts = 0
        self.last_score = 0.0

    def reset(self) -> None:
        self.previous = None
        self.history.clear()

    def thumbnail(self, rgb: np.ndarray) -> np.ndarray:
        img = rgb if rgb.dtype == np.uint8 else (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        thumb = cv2.resize(grey, self.size, interpolation=cv2.INTER_AREA).astype(np.float32)
        return (thumb - thumb.mean()) / (thumb.std() + 1.0)

    def __call__(self, rgb: np.ndarray) -> bool:
        thumb = self.thumbnail(rgb)
        if self.previous is None or self.previous.shape != thumb.shape:
            self.previous = thumb
            return False
        score = float(np.abs(thumb - self.previous).mean())
        self.previous = thumb
        self.last_score = score
        baseline = max(float(np.median(self.history)) if self.history else 0.0, 0.05)
        cut = score >= self.threshold and (not self.history or score >= self.ratio * baseline)
        if cut:
            self.cuts += 1
            self.history.clear()
        else:
            self.history.append(score)
        return cut


@dataclass
class AtmosphereSmoother:
    """EMA of A: A_s ← (1 − α)·A_s + α·A_frame; `reset()` (scene cut) jumps to the frame's A."""

    alpha: float = 0.1
    value: np.ndarray | None = None
    resets: int = 0
    history: list = field(default_factory=list)

    def reset(self) -> None:
        self.value = None

    def update(self, a: np.ndarray, cut: bool = False) -> np.ndarray:
        a = np.asarray(a, np.float32).reshape(3)
        if cut or self.value is None:
            self.resets += int(cut)
            self.value = a.copy()
        else:
            self.value = ((1.0 - self.alpha) * self.value + self.alpha * a).astype(np.float32)
        return self.value


class Stabilizer:
    """Per-frame glue: detect cuts on the input, smooth A, re-solve J with the smoothed A."""

    def __init__(self, enabled: bool = True, alpha: float = 0.1, detector: SceneCutDetector | None = None,
                 atmosphere_mode: str = "dark_channel") -> None:
        self.enabled = enabled
        self.detector = detector or SceneCutDetector()
        self.smoother = AtmosphereSmoother(alpha)
        self.atmosphere_mode = atmosphere_mode
        self.unavailable: str | None = None  # why stabilisation could not run, once known

    def frame_atmosphere(self, hazy: np.ndarray, clean: np.ndarray, t: np.ndarray | None,
                         a: np.ndarray | None) -> np.ndarray:
        if a is not None:
            return np.asarray(a, np.float32).reshape(3)
        solved = atmosphere_from_outputs(hazy, clean, t) if t is not None else None
        return solved if solved is not None else estimate_atmosphere(hazy, self.atmosphere_mode)

    def smoothed(self, hazy: np.ndarray, clean: np.ndarray, t: np.ndarray | None, a: np.ndarray | None,
                 cut: bool) -> np.ndarray | None:
        """The smoothed A for this frame from 3×H×W hazy/clean planes and H×W t (the pipeline's
        layout), or None when stabilisation is off or impossible (no t)."""
        if not self.enabled:
            return None
        if t is None:
            self.unavailable = "the model has no transmission output (export it with the transmission output)"
            return None
        if a is None:
            a = atmosphere_from_planes(hazy, clean, t)
        if a is None:
            a = estimate_atmosphere(np.ascontiguousarray(np.moveaxis(hazy, 0, -1)), self.atmosphere_mode)
        return self.smoother.update(a, cut)

    def apply(self, hazy: np.ndarray, clean: np.ndarray, t: np.ndarray | None, a: np.ndarray | None,
              cut: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """(J to use, smoothed A or None). `hazy`/`clean`/`t` are the network-size crops."""
        if not self.enabled:
            return clean, None
        if t is None:
            self.unavailable = "the model has no transmission output (export it with the transmission output)"
            return clean, None
        a_frame = self.frame_atmosphere(hazy, clean, t, a)
        a_smooth = self.smoother.update(a_frame, cut)
        return recover(hazy, t, a_smooth), a_smooth


# --------------------------------------------------------------------------- planar (pipeline) versions

def recover_planes(hazy: np.ndarray, t: np.ndarray, a: np.ndarray) -> list[np.ndarray]:
    """`recover` on 3×H×W input (a view is fine) and H×W t: three unclipped float32 planes."""
    inv_t = 1.0 / np.maximum(t, np.float32(T_MIN))
    planes = []
    for c in range(3):
        j = np.subtract(hazy[c], np.float32(a[c]), dtype=np.float32)
        j *= inv_t
        j += np.float32(a[c])
        planes.append(j)
    return planes


def atmosphere_from_planes(hazy: np.ndarray, clean: np.ndarray, t: np.ndarray, step: int = 4,
                           min_pixels: int = 64) -> np.ndarray | None:
    """`atmosphere_from_outputs` on 3×H×W arrays, on every `step`-th pixel in each direction (the
    median needs thousands of pixels, not millions)."""
    i = hazy[:, ::step, ::step].reshape(3, -1)
    j = clean[:, ::step, ::step].reshape(3, -1)
    tt = t[::step, ::step].reshape(-1)
    ok = (tt < 0.9) & np.all((j > 1e-3) & (j < 1 - 1e-3), axis=0)
    if int(ok.sum()) < min_pixels:
        return None
    tv = tt[ok]
    return np.median((i[:, ok] - j[:, ok] * tv) / (1.0 - tv), axis=1).astype(np.float32)
