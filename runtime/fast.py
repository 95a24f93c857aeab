"""Fast mode: run the network small, carry its result to full resolution by guided local-affine
upsampling (numpy + OpenCV; the torch/ONNX twin is nedr.model.fast).

Dehazing is locally affine in colour: J = I/t + A(1 − 1/t), i.e. per channel J_c = a·I_c + b_c with
a = 1/t and b_c = A_c(1 − 1/t), both smooth wherever t is. So at the small size fit, in every
window, the affine map from the small hazy input to the small output (a guided-filter least-squares
fit, one slope and offset per channel), average the coefficients over the windows that cover each
pixel, upsample the coefficient maps bilinearly and apply them to the full-resolution input. Edges
come from the full-resolution input, not from the upsampled output, so they stay sharp.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

# Chosen on 1280×720 frames (bigbuckbunny + synthetic haze, the exact inverse as "network"): PSNR of the
# upsampled result against the full-resolution inverse rose as radius and eps fell (scale 0.5: r=4,
# eps=1e-4 37.1 dB; r=2, eps=1e-5 43.9 dB; r=1 45.6 dB); on the real network's outputs (bikes.mp4, scale
# 0.5) r=1..4 with eps <= 1e-5 tied and beat eps=1e-4 and plain bilinear resizing. r=2 keeps some
# averaging against network noise.
DEFAULT_RADIUS = 2     # window radius at the small size (pixels)
DEFAULT_EPS = 1e-5     # regulariser of the slope (image values in [0, 1])


@functools.lru_cache(maxsize=16)
def _inverse_count(h: int, w: int, radius: int, channels: int) -> np.ndarray:
    """1 / (number of in-image pixels in each pixel's window), shaped to multiply an h×w(×c) array."""
    rows = np.minimum(np.arange(h) + radius, h - 1) - np.maximum(np.arange(h) - radius, 0) + 1
    cols = np.minimum(np.arange(w) + radius, w - 1) - np.maximum(np.arange(w) - radius, 0) + 1
    inv = (1.0 / np.outer(rows, cols)).astype(np.float32)
    return np.ascontiguousarray(np.repeat(inv[..., None], channels, axis=2)) if channels > 1 else inv


def _box(x: np.ndarray, radius: int) -> np.ndarray:
    """Window mean over the pixels inside the image (as nedr.model.physics.box_mean: the windows at the
    border are truncated, not padded), so this and the exportable torch twin agree to float error."""
    k = 2 * radius + 1
    total = cv2.boxFilter(x, -1, (k, k), normalize=False, borderType=cv2.BORDER_CONSTANT)
    channels = x.shape[2] if x.ndim == 3 else 1
    return np.multiply(total, _inverse_count(x.shape[0], x.shape[1], radius, channels), out=total)


def fit_affine(small_in: np.ndarray, small_out: np.ndarray, radius: int = DEFAULT_RADIUS,
               eps: float = DEFAULT_EPS) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel, per-channel coefficients (a, b), H×W×3 each, with small_out ≈ a·small_in + b."""
    x = small_in.astype(np.float32, copy=False)
    y = small_out.astype(np.float32, copy=False)
    mean_x, mean_y = _box(x, radius), _box(y, radius)
    cov = _box(x * y, radius) - mean_x * mean_y
    var = _box(x * x, radius) - mean_x * mean_x
    a = cov / (var + eps)
    b = mean_y - a * mean_x
    return _box(a, radius), _box(b, radius)


def apply_affine(full_in: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Upsample (a, b) bilinearly to full_in's size and apply them; result clipped to [0, 1]."""
    h, w = full_in.shape[:2]
    if a.shape[:2] != (h, w):
        a = cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR)
        b = cv2.resize(b, (w, h), interpolation=cv2.INTER_LINEAR)
    out = a * full_in
    out += b
    return np.clip(out, 0.0, 1.0, out=out)


def guided_upsample(full_in: np.ndarray, small_in: np.ndarray, small_out: np.ndarray,
                    radius: int = DEFAULT_RADIUS, eps: float = DEFAULT_EPS) -> np.ndarray:
    """The full-resolution output from the network's small input/output pair (all float in [0, 1])."""
    a, b = fit_affine(small_in, small_out, radius, eps)
    return apply_affine(full_in.astype(np.float32, copy=False), a, b)


def downscale(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-average resize to (width, height) (bilinear when enlarging)."""
    w, h = size
    if (image.shape[1], image.shape[0]) == (w, h):
        return image
    shrinking = w <= image.shape[1] and h <= image.shape[0]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def infer_size_for(frame_hw: tuple[int, int], infer_size: tuple[int, int] | None = None,
                   scale: float | None = None) -> tuple[int, int] | None:
    """The (width, height) the network runs at, or None for full resolution."""
    h, w = frame_hw
    if infer_size:
        size = (int(infer_size[0]), int(infer_size[1]))
    elif scale:
        size = (max(16, round(w * scale)), max(16, round(h * scale)))
    else:
        return None
    return None if size == (w, h) else size


# --------------------------------------------------------------------------- planar (pipeline) versions
# The pipeline keeps frames as channel planes (the backend's N×3×H×W layout): no transposes, and
# OpenCV's multithreaded kernels do the full-resolution work.

def fit_affine_planes(small_in: np.ndarray, small_out, radius: int = DEFAULT_RADIUS,
                      eps: float = DEFAULT_EPS) -> tuple[np.ndarray, np.ndarray]:
    """`fit_affine` from 3×h×w input planes (a view is fine) and three output planes: (a, b) as
    h×w×3 arrays, ready for `apply_affine_u8`."""
    x = cv2.merge([np.ascontiguousarray(p, dtype=np.float32) for p in small_in])
    y = cv2.merge([np.ascontiguousarray(p, dtype=np.float32) for p in small_out])
    return fit_affine(x, y, radius, eps)


def apply_affine_u8(full8: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """out = a·I + b at full resolution, straight from the uint8 H×W×3 frame to uint8 H×W×3.

    Works in 0..255 units (a unchanged, b × 255): two 3-channel resizes, one multiply, one add,
    then OpenCV's rounding/saturating conversion after a clamp at 0; every step is one multithreaded
    OpenCV call on the whole frame.
    """
    h, w = full8.shape[:2]
    a_full = cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR)
    b_full = cv2.resize(b * np.float32(255.0), (w, h), interpolation=cv2.INTER_LINEAR)
    y = cv2.multiply(a_full, full8, dtype=cv2.CV_32F)
    np.add(y, b_full, out=y)
    np.maximum(y, 0.0, out=y)
    return cv2.convertScaleAbs(y)


def planes_to_u8(planes) -> np.ndarray:
    """Float planes in [0, 1] (anything outside is clamped) → H×W×3 uint8, rounded."""
    return cv2.merge([cv2.convertScaleAbs(cv2.max(np.ascontiguousarray(p), 0.0), alpha=255.0) for p in planes])
