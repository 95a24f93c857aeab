"""Dark channel prior dehazing (He, Sun & Tang, CVPR 2009 / TPAMI 2011), the classic baseline.

It is the prior NeDR's atmospheric-light step comes from (docs/model.md §7) and the usual "classic
method" row in dehazing tables, so evaluations can report it next to the network with the same
metrics code. Choices, following the papers where they are explicit:

* dark channel: per-pixel min over RGB, then a 15×15 min filter (`cv2.erode` with a rectangular
  kernel; OpenCV's default erode border ignores out-of-image pixels, i.e. min over valid pixels);
* atmospheric light A: among the 0.1 % brightest dark-channel pixels (at least one), the single
  pixel with the highest intensity (mean of R, G, B) in the input, and A is that pixel's RGB, as
  in He et al. (not a per-channel max or a mean over the candidates);
* transmission t = 1 − ω·dark(I / A), ω = 0.95 (keeps a little haze for depth perception);
* refinement: He's guided filter (TPAMI 2013) instead of the 2009 soft matting, guide = the grey
  image (OpenCV RGB→GRAY weights), radius 60 (121×121 window), eps = 1e-4, box means over valid
  pixels only, as in He's MATLAB `boxfilter(·)./N`. `cv2.ximgproc` is not part of
  opencv-python-headless, so the filter is written out with `cv2.boxFilter` (O(1) per pixel);
* recovery J = (I − A) / max(t, t0) + A with t0 = 0.1, clipped to [0, 1], rounded to uint8.

All arithmetic is float64 on [0, 1] images: the 121×121 box sums and var = E[I²] − E[I]² lose
too much in float32 next to eps = 1e-4.
"""
from __future__ import annotations

import cv2
import numpy as np

PATCH = 15
OMEGA = 0.95
T0 = 0.1
TOP_FRACTION = 0.001
GF_RADIUS = 60
GF_EPS = 1e-4


def _to_float(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise TypeError(f"dehaze_dcp() takes a uint8 H×W×3 RGB array, got "
                        f"{image.dtype if isinstance(image, np.ndarray) else type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"dehaze_dcp() needs an H×W×3 RGB array, got shape {image.shape}")
    return image.astype(np.float64) / 255.0


def dark_channel(image: np.ndarray, patch: int = PATCH) -> np.ndarray:
    """min over colour channels, then a patch×patch min filter (H×W float from H×W×3 float)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    return cv2.erode(np.ascontiguousarray(image.min(axis=2)), kernel)


def atmospheric_light(image: np.ndarray, dark: np.ndarray, top_fraction: float = TOP_FRACTION) -> np.ndarray:
    """A (3,): the highest-intensity input pixel among the top `top_fraction` dark-channel pixels.

    Picking the most haze-opaque region via the dark channel, rather than the brightest pixel,
    keeps white objects (walls, lamps) from being taken for the airlight.
    """
    flat_dark = dark.ravel()
    k = max(1, int(flat_dark.size * top_fraction))
    candidates = np.argpartition(flat_dark, flat_dark.size - k)[-k:]
    pixels = image.reshape(-1, 3)[candidates]
    return pixels[np.argmax(pixels.mean(axis=1))].copy()


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int = GF_RADIUS, eps: float = GF_EPS) -> np.ndarray:
    """He's grey-guide guided filter: edge-aware smoothing of `src` following the edges of `guide`.

    Box means over the valid part of each window (sum ÷ count of in-image pixels), like He's code.
    """
    size = (2 * radius + 1, 2 * radius + 1)

    def box_sum(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, cv2.CV_64F, size, normalize=False, borderType=cv2.BORDER_CONSTANT)

    count = box_sum(np.ones_like(guide))
    mean_i = box_sum(guide) / count
    mean_p = box_sum(src) / count
    cov_ip = box_sum(guide * src) / count - mean_i * mean_p
    var_i = box_sum(guide * guide) / count - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return (box_sum(a) / count) * guide + box_sum(b) / count


def transmission(image: np.ndarray, airlight: np.ndarray, omega: float = OMEGA, patch: int = PATCH) -> np.ndarray:
    """Coarse t = 1 − ω·dark(I / A) (H×W), before refinement."""
    return 1.0 - omega * dark_channel(image / np.maximum(airlight, 1e-6), patch)


def dehaze_dcp(image: np.ndarray, *, patch: int = PATCH, omega: float = OMEGA, t0: float = T0,
               radius: int = GF_RADIUS, eps: float = GF_EPS, refine: bool = True,
               return_aux: bool = False):
    """Dehaze a uint8 H×W×3 RGB image with the dark channel prior; returns uint8 of the same shape.

    Defaults are the ones in the module docstring. `refine=False` skips the guided filter (the
    blocky 15×15 transmission, for comparison); `return_aux=True` returns (J, t, A) with t the
    refined H×W transmission before the t0 floor and A the (3,) airlight in [0, 1].
    """
    hazy = _to_float(image)
    dark = dark_channel(hazy, patch)
    airlight = atmospheric_light(hazy, dark)
    t = transmission(hazy, airlight, omega, patch)
    if refine:
        gray = cv2.cvtColor(hazy.astype(np.float32), cv2.COLOR_RGB2GRAY).astype(np.float64)
        t = guided_filter(gray, t, radius, eps)
    recovered = (hazy - airlight) / np.maximum(t, t0)[..., None] + airlight
    out = np.floor(np.clip(recovered, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return (out, t, airlight) if return_aux else out


__all__ = ["dehaze_dcp", "dark_channel", "atmospheric_light", "transmission", "guided_filter"]
