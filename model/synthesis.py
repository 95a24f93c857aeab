"""Haze synthesis with the scattering model, applied in linear RGB (model.md §1, toolkit.md).

I = J·t + A·(1 − t), t = exp(−β·d), β spatially modulated by smooth noise (non-homogeneous haze),
A per image in [0.7, 1.0] with a slight tint. Depth is real where it exists (the Middlebury pair),
else drawn from priors: ground plane, vertical ramp, smooth random field. Deterministic per seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BETA_RANGE = (0.6, 1.8)
A_RANGE = (0.7, 1.0)
A_TINT = 0.04
BETA_MODULATION = 0.45  # largest relative swing of β across the image


@dataclass
class HazySample:
    hazy: np.ndarray  # H×W×3 float32 sRGB in [0, 1]
    clean: np.ndarray  # H×W×3 float32 sRGB in [0, 1]
    t: np.ndarray  # H×W float32 in (0, 1]
    A: np.ndarray  # 3 float32, linear RGB
    beta: np.ndarray  # H×W float32 (spatially varying β)


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055).astype(np.float32)


def smooth_field(shape: tuple[int, int], rng: np.random.Generator, cells: int | None = None) -> np.ndarray:
    """Smooth noise in [0, 1]: a coarse random grid upsampled bicubically."""
    h, w = shape
    cells = cells or int(rng.integers(2, 7))
    coarse = rng.random((cells + 1, cells + 1)).astype(np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    lo, hi = field.min(), field.max()
    return (field - lo) / max(hi - lo, 1e-6)


def depth_prior(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Relative depth in [0, 1] (1 = far) from one of three scene priors, plus smooth variation."""
    h, w = shape
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    kind = rng.integers(3)
    if kind == 0:  # ground plane below a horizon: depth ∝ 1 / distance below it
        horizon = rng.uniform(0.2, 0.6)
        below = np.clip((y - horizon) / (1 - horizon), 0.02, 1.0)
        base = np.broadcast_to(np.clip(0.08 / below, 0, 1), (h, w))
    elif kind == 1:  # vertical ramp with a lateral tilt
        tilt = rng.uniform(-0.4, 0.4)
        base = np.clip((1 - y) + tilt * (x - 0.5), 0, None)
    else:
        base = np.zeros((h, w), np.float32)
    mix = rng.uniform(0.15, 0.5) if kind < 2 else 1.0
    d = (1 - mix) * base + mix * smooth_field(shape, rng)
    d = d - d.min()
    return (d / max(float(d.max()), 1e-6)).astype(np.float32)


def normalise_depth(depth: np.ndarray) -> np.ndarray:
    """Metric depth → [0, 1] by robust percentiles, so β keeps its usual meaning."""
    lo, hi = np.percentile(depth, [1, 99])
    return np.clip((depth - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def synthesize(clean: np.ndarray, seed: int | np.random.Generator, depth: np.ndarray | None = None) -> HazySample:
    """Add haze to a clean sRGB image (uint8 or float in [0, 1]); `depth` in any unit, else a prior."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    j = clean.astype(np.float32) / 255.0 if clean.dtype == np.uint8 else clean.astype(np.float32)
    h, w = j.shape[:2]
    rel = normalise_depth(depth) if depth is not None else depth_prior((h, w), rng)
    near, far = rng.uniform(0.05, 0.3), rng.uniform(0.5, 1.4)
    d = near + (far - near) * rel
    beta0 = rng.uniform(*BETA_RANGE)
    swing = rng.uniform(0.0, BETA_MODULATION)
    beta = (beta0 * (1 + swing * (2 * smooth_field((h, w), rng) - 1))).astype(np.float32)
    t = np.exp(-beta * d).astype(np.float32)
    a = np.clip(rng.uniform(*A_RANGE) + rng.uniform(-A_TINT, A_TINT, 3), 0.0, 1.0).astype(np.float32)
    lin = srgb_to_linear(j) * t[..., None] + a * (1 - t[..., None])
    return HazySample(linear_to_srgb(lin), j, t, a, beta)


def invert(hazy: np.ndarray, t: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Recover J from the true t and A (the synthesis run backwards, in linear RGB)."""
    lin = (srgb_to_linear(hazy) - a) / t[..., None] + a
    return linear_to_srgb(lin)
