"""Haze synthesis with the scattering model I = J·t + A·(1 − t), in either of two conventions.

* ``linear``: the physical one: scattering composited in linear RGB, stored back as sRGB.
* ``srgb``: the blend applied to sRGB code values, as RESIDE (ITS/OTS/SOTS) and most dehazing
  benchmarks were made. The network inverts the model on the values it sees, so a model trained
  only on linear haze meets a systematically different haze on those benchmarks.

Density is drawn as a target mean transmission (light haze ≈ 0.8, dense ≈ 0.25) and β solved
for it, so every density is covered whatever the depth range; β is homogeneous or modulated by
smooth noise (non-homogeneous haze). A lies in [0.7, 1.0] (near-white included), grey or slightly
tinted, and is always reported in sRGB values (what the network's `recover` uses). Depth is real
where it exists (the Middlebury pair), else drawn from outdoor (ground plane, ramp) or indoor
(room box with furniture planes) priors, optionally broken along the image's own segments
(`segment_depth`). Deterministic per seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CONVENTIONS = ("linear", "srgb")
A_RANGE = (0.7, 1.0)  # sRGB value of the atmospheric light
A_TINT = 0.03
GREY_A_FRACTION = 0.3  # RESIDE draws one grey A; keep that case common
T_MEAN_RANGE = (0.25, 0.8)  # mean transmission: dense … light haze
BETA_MODULATION = 0.45  # largest relative swing of β across the image (non-homogeneous haze)
HOMOGENEOUS_FRACTION = 0.35
DEPTH_PRIORS = ("ground", "ramp", "field", "room")


@dataclass
class HazySample:
    hazy: np.ndarray  # H×W×3 float32 sRGB in [0, 1]
    clean: np.ndarray  # H×W×3 float32 sRGB in [0, 1]
    t: np.ndarray  # H×W float32 in (0, 1]
    A: np.ndarray  # 3 float32, sRGB values
    beta: np.ndarray  # H×W float32 (spatially varying β, per unit of relative depth)
    convention: str = "linear"


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


def room_depth(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Depth of a box room seen from inside: floor, ceiling and side walls vanish towards a point,
    a back wall closes it, and a few fronto-parallel furniture planes stand on the floor."""
    h, w = shape
    aspect = w / h
    u = np.linspace(-aspect, aspect, w, dtype=np.float32)[None, :]
    v = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    cx, cy = rng.uniform(-0.35, 0.35) * aspect, rng.uniform(-0.3, 0.3)
    focal = rng.uniform(0.8, 1.6)
    half_w, half_h = rng.uniform(0.6, 1.6), rng.uniform(0.5, 1.0)
    back = rng.uniform(2.5, 7.0)
    with np.errstate(divide="ignore"):
        du, dv = u - cx, v - cy
        walls = np.where(np.abs(du) > 1e-6, focal * half_w / np.abs(du), np.inf)
        floor_ceiling = np.where(np.abs(dv) > 1e-6, focal * half_h / np.abs(dv), np.inf)
    z = np.minimum(np.minimum(walls, floor_ceiling), back).astype(np.float32)
    for _ in range(int(rng.integers(0, 4))):  # furniture: a rectangle standing on the floor
        fw, fh = rng.uniform(0.15, 0.5) * w, rng.uniform(0.15, 0.5) * h
        x0 = int(rng.uniform(0, w - fw))
        y1 = int(rng.uniform(0.6, 1.0) * h)
        y0 = max(0, int(y1 - fh))
        region = z[y0:y1, x0:x0 + int(fw)]
        if region.size:
            region[...] = np.minimum(region, rng.uniform(0.3, 0.9) * float(np.median(region)))
    return z


def _unit_range(d: np.ndarray) -> np.ndarray:
    """Shift and scale to [0, 1] (a flat map stays 0)."""
    d = d - d.min()
    return (d / max(float(d.max()), 1e-6)).astype(np.float32)


def depth_prior(shape: tuple[int, int], rng: np.random.Generator, kind: str | None = None) -> np.ndarray:
    """Relative depth in [0, 1] (1 = far) from a scene prior (`DEPTH_PRIORS`), plus smooth variation."""
    h, w = shape
    kind = kind or DEPTH_PRIORS[int(rng.integers(len(DEPTH_PRIORS)))]
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    if kind == "ground":  # ground plane below a horizon: depth ∝ 1 / distance below it
        horizon = rng.uniform(0.2, 0.6)
        below = np.clip((y - horizon) / (1 - horizon), 0.02, 1.0)
        base = np.broadcast_to(np.clip(0.08 / below, 0, 1), (h, w))
    elif kind == "ramp":  # vertical ramp with a lateral tilt
        tilt = rng.uniform(-0.4, 0.4)
        base = np.clip((1 - y) + tilt * (x - 0.5), 0, None)
    elif kind == "room":
        base = room_depth(shape, rng)
        base = base / float(base.max())
    elif kind == "field":
        base = np.zeros((h, w), np.float32)
    else:
        raise ValueError(f"depth prior must be one of {DEPTH_PRIORS}, got {kind!r}")
    mix = 1.0 if kind == "field" else rng.uniform(0.05, 0.2) if kind == "room" else rng.uniform(0.15, 0.5)
    return _unit_range((1 - mix) * base + mix * smooth_field(shape, rng))


SEGMENT_MIX = (0.4, 0.9)  # share of the per-segment depth in a segmented depth map
SEGMENT_SCALE = (50.0, 400.0)  # Felzenszwalb scale: larger gives fewer, larger segments


def segment_depth(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Relative depth in [0, 1] that jumps where the image's own segments meet.

    Why: real depth is piecewise smooth with its edges on object outlines (a chair in front of
    the floor), while a scene prior draws depth that ignores the content. A network trained only
    on the latter learns to keep t smooth across every image edge and cannot follow the depth
    edges of a real scene: on the SOTS-indoor pairs its t is nearly flat and misses the chairs
    in front of the floor that the dark channel prior finds. Each Felzenszwalb segment of the
    image gets its own random depth, mixed with a scene prior for the smooth part, so t edges
    can only sit on image edges but image edges are not always t edges.
    """
    from skimage.segmentation import felzenszwalb

    h, w = image.shape[:2]
    labels = felzenszwalb(image, scale=rng.uniform(*SEGMENT_SCALE), sigma=0.8, min_size=max(16, h * w // 400))
    per_segment = rng.random(int(labels.max()) + 1).astype(np.float32)
    mix = rng.uniform(*SEGMENT_MIX)
    return _unit_range((1 - mix) * depth_prior((h, w), rng) + mix * per_segment[labels])


def normalise_depth(depth: np.ndarray) -> np.ndarray:
    """Metric depth → [0, 1] by robust percentiles, so β keeps its usual meaning."""
    lo, hi = np.percentile(depth, [1, 99])
    return np.clip((depth - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def solve_beta(d: np.ndarray, shape: np.ndarray, t_mean: float, iters: int = 30) -> float:
    """β₀ with mean(exp(−β₀·shape·d)) = t_mean (bisection: the mean falls monotonically in β₀)."""
    sd = (shape * d)[::4, ::4].astype(np.float64)  # a subsample is exact enough for a mean
    lo, hi = 0.0, 1.0
    while np.exp(-hi * sd).mean() > t_mean:
        hi *= 2
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.exp(-mid * sd).mean() > t_mean else (lo, mid)
    return (lo + hi) / 2


def draw_atmosphere(rng: np.random.Generator) -> np.ndarray:
    level = rng.uniform(*A_RANGE)
    tint = 0.0 if rng.random() < GREY_A_FRACTION else rng.uniform(-A_TINT, A_TINT, 3)
    return np.clip(level + tint * np.ones(3), 0.0, 1.0).astype(np.float32)


def synthesize(clean: np.ndarray, seed: int | np.random.Generator, depth: np.ndarray | None = None,
               convention: str | None = None, t_mean: float | None = None, prior: str | None = None) -> HazySample:
    """Add haze to a clean sRGB image (uint8 or float in [0, 1]).

    `depth` in any unit, else a prior (`prior`, one of `DEPTH_PRIORS`; None: drawn); `convention`
    one of `CONVENTIONS` (None: drawn per image); `t_mean` the mean transmission (None: drawn from
    `T_MEAN_RANGE`).
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    convention = convention or CONVENTIONS[int(rng.integers(len(CONVENTIONS)))]
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    j = clean.astype(np.float32) / 255.0 if clean.dtype == np.uint8 else clean.astype(np.float32)
    h, w = j.shape[:2]
    rel = normalise_depth(depth) if depth is not None else depth_prior((h, w), rng, prior)
    d = rng.uniform(0.05, 0.3) + (1 - rng.uniform(0.05, 0.3)) * rel
    swing = 0.0 if rng.random() < HOMOGENEOUS_FRACTION else rng.uniform(0.0, BETA_MODULATION)
    shape = (1 + swing * (2 * smooth_field((h, w), rng) - 1)).astype(np.float32)
    target = rng.uniform(*T_MEAN_RANGE) if t_mean is None else t_mean
    beta = (solve_beta(d, shape, target) * shape).astype(np.float32)
    t = np.exp(-beta * d).astype(np.float32)
    a = draw_atmosphere(rng)
    return HazySample(composite(j, t, a, convention), j, t, a, beta, convention)


def composite(clean: np.ndarray, t: np.ndarray, a: np.ndarray, convention: str) -> np.ndarray:
    """I = J·t + A·(1 − t) for float sRGB J in [0, 1], H×W t and sRGB A, in `convention`."""
    tt = t[..., None] if t.ndim == 2 else t
    if convention == "linear":
        return linear_to_srgb(srgb_to_linear(clean) * tt + srgb_to_linear(np.asarray(a, np.float32)) * (1 - tt))
    return np.clip(clean * tt + a * (1 - tt), 0.0, 1.0).astype(np.float32)


def invert(hazy: np.ndarray, t: np.ndarray, a: np.ndarray, convention: str = "linear") -> np.ndarray:
    """Recover J from the true t and A (`a` in sRGB values), running the synthesis backwards."""
    tt = t[..., None]
    if convention == "srgb":
        return np.clip((hazy - a) / tt + a, 0.0, 1.0).astype(np.float32)
    a_lin = srgb_to_linear(np.asarray(a, np.float32))
    return linear_to_srgb((srgb_to_linear(hazy) - a_lin) / tt + a_lin)
