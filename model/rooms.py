"""Procedural rooms: indoor training scenes whose depth agrees with what they show.

The installable photo sets hold few rooms (6 of 95, docs/training-data.md) while SOTS and most
indoor benchmarks are rooms; a network trained mostly outdoors reads a washed-out room as a pale,
clean one and leaves haze in it. Laying a room-box depth over an outdoor photo teaches a geometry
the pixels contradict, so here the pixels are made from the geometry: a box room seen from
inside (floor, ceiling, side and back walls), painted or textured with crops of the clean photos,
pictures on the walls, furniture blocks standing on the floor, lit by a ceiling lamp with
distance falloff and shaded in linear light. Depth is metric z-depth (NYU-like: 1–8 m), so
`synthesize` spreads haze over it as over a real depth map. Deterministic per seed.
"""
from __future__ import annotations

import multiprocessing
from functools import partial

import cv2
import numpy as np

from .samples import Sample
from .synthesis import linear_to_srgb, smooth_field, srgb_to_linear

TEXELS_PER_M = 96  # surface textures are drawn in metres, at this resolution
SUPERSAMPLE = 2  # rendered at 2× and area-downsampled: edges and far texture without aliasing

# surface ids and their normals (camera frame before the view rotation: x right, y down, z forward)
FLOOR, CEILING, LEFT, RIGHT, BACK = range(5)
NORMALS = np.array([[0, -1, 0], [0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, -1]], np.float32)


def _crop(rng: np.random.Generator, photos: list[np.ndarray], h: int, w: int) -> np.ndarray:
    """A random h×w crop of a random photo (rescaled when smaller), float sRGB in [0, 1]."""
    img = photos[int(rng.integers(len(photos)))]
    ih, iw = img.shape[:2]
    scale = max(h / ih, w / iw, rng.uniform(0.3, 1.0))
    img = cv2.resize(img, (max(w, round(iw * scale)), max(h, round(ih * scale))), interpolation=cv2.INTER_AREA)
    y, x = int(rng.integers(0, img.shape[0] - h + 1)), int(rng.integers(0, img.shape[1] - w + 1))
    out = img[y:y + h, x:x + w].astype(np.float32) / 255.0
    return out[:, ::-1] if rng.random() < 0.5 else out


def _paint(rng: np.random.Generator, h: int, w: int, light: bool) -> np.ndarray:
    """A painted surface: one colour (mostly pale for walls, anything for furniture) with a
    faint smooth unevenness and grain, as paint under real light never is perfectly flat."""
    if light:
        base = rng.uniform(0.6, 0.95) + rng.uniform(-0.08, 0.08, 3) * rng.uniform(0, 1)
    else:
        base = rng.uniform(0.08, 0.8, 3) * rng.uniform(0.5, 1.0)
    field = smooth_field((h, w), rng)[..., None]
    grain = rng.normal(0, 0.012, (h, w, 1)).astype(np.float32)
    return np.clip(base * (0.94 + 0.12 * field) + grain, 0, 1).astype(np.float32)


def _surface(rng: np.random.Generator, photos: list[np.ndarray], size_m: tuple[float, float],
             light: bool, pictures: int = 0) -> np.ndarray:
    """Texture of one surface (rows × cols = size_m × TEXELS_PER_M): paint or a photo crop,
    with `pictures` framed photo crops hung on it."""
    h, w = (max(8, int(s * TEXELS_PER_M)) for s in size_m)
    if rng.random() < (0.65 if light else 0.35):
        tex = _paint(rng, h, w, light)
    else:
        tex = _crop(rng, photos, min(h, 512), min(w, 512))
        tex = cv2.resize(tex, (w, h), interpolation=cv2.INTER_LINEAR)
        if light:  # photo-textured walls and floors are mostly plaster, carpet, wood: muted
            tex = np.clip(0.5 * tex + 0.5 * tex.mean(), 0, 1)
    for _ in range(pictures):
        ph, pw = int(h * rng.uniform(0.15, 0.4)), int(w * rng.uniform(0.1, 0.3))
        if ph < 8 or pw < 8:
            continue
        y, x = int(rng.integers(0, max(1, int(h * 0.6) - ph))), int(rng.integers(0, w - pw + 1))
        frame = max(2, ph // 20)
        tex[y:y + ph, x:x + pw] = rng.uniform(0.05, 0.6)
        tex[y + frame:y + ph - frame, x + frame:x + pw - frame] = _crop(rng, photos, ph - 2 * frame, pw - 2 * frame)
    return tex


def _sample(tex: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Texture values at surface coordinates (a, b) in metres (rows, cols), mirrored beyond it."""
    return cv2.remap(tex, (b * TEXELS_PER_M).astype(np.float32), (a * TEXELS_PER_M).astype(np.float32),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def _rotation(yaw: float, pitch: float) -> np.ndarray:
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], np.float32)
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]], np.float32)
    return r_yaw @ r_pitch


def render_room(photos: list[np.ndarray], seed: int | np.random.Generator,
                size: tuple[int, int] = (360, 480)) -> tuple[np.ndarray, np.ndarray]:
    """One room: (H×W×3 uint8 sRGB image, H×W float32 z-depth in metres)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    h, w = size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE
    fov = np.deg2rad(rng.uniform(50, 70))
    f = w / (2 * np.tan(fov / 2))
    u = (np.arange(w, dtype=np.float32) + 0.5 - w / 2) / f
    v = (np.arange(h, dtype=np.float32) + 0.5 - h / 2) / f
    rays = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((1, 1), np.float32)), -1)
    # rays in the room frame; a point at ray parameter s lies at z-depth s in the camera frame
    d = rays @ _rotation(rng.uniform(-0.35, 0.35), rng.uniform(-0.25, 0.1)).T

    width, height, length = rng.uniform(3.0, 6.5), rng.uniform(2.4, 3.2), rng.uniform(3.0, 8.0)
    cam_h = rng.uniform(1.0, 1.7)
    left = width * rng.uniform(0.3, 0.7)
    right, ceiling = width - left, height - cam_h
    with np.errstate(divide="ignore", invalid="ignore"):
        hits = np.stack([np.where(d[..., 1] > 0, cam_h / d[..., 1], np.inf),
                         np.where(d[..., 1] < 0, -ceiling / d[..., 1], np.inf),
                         np.where(d[..., 0] < 0, -left / d[..., 0], np.inf),
                         np.where(d[..., 0] > 0, right / d[..., 0], np.inf),
                         np.where(d[..., 2] > 0, length / d[..., 2], np.inf)], -1)
    surface = np.argmin(hits, -1)
    s = np.take_along_axis(hits, surface[..., None], -1)[..., 0]
    p = d * s[..., None]  # hit points; x right, y down (floor at +cam_h), z forward
    x, y, z = p[..., 0] + left, p[..., 1] + ceiling, p[..., 2]  # metres from the room's corner
    textures = {FLOOR: (_surface(rng, photos, (length, width), light=False), z, x),
                CEILING: (_surface(rng, photos, (length, width), light=True), z, x),
                LEFT: (_surface(rng, photos, (height, length), light=True, pictures=int(rng.integers(0, 2))), y, z),
                RIGHT: (_surface(rng, photos, (height, length), light=True, pictures=int(rng.integers(0, 2))), y, z),
                BACK: (_surface(rng, photos, (height, width), light=True, pictures=int(rng.integers(0, 3))), y, x)}
    albedo = np.zeros((h, w, 3), np.float32)
    for sid, (tex, a, b) in textures.items():
        mask = surface == sid
        if mask.any():
            albedo[mask] = _sample(tex, a, b)[mask]
    normal = NORMALS[surface]

    # furniture: boxes standing on the floor (slab intersection, nearest face wins)
    for _ in range(int(rng.integers(1, 6))):
        bw, bd, bh = rng.uniform(0.4, 2.0), rng.uniform(0.3, 1.0), rng.uniform(0.4, 2.0)
        x0 = rng.uniform(0, max(0.01, width - bw))
        z0 = rng.uniform(1.0, max(1.1, length - bd))
        lo = np.array([x0 - left, cam_h - bh, z0], np.float32)
        hi = np.array([x0 - left + bw, cam_h, z0 + bd], np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (lo - 0.0) / d, (hi - 0.0) / d
        near = np.nan_to_num(np.minimum(t1, t2), nan=-np.inf)
        far = np.nan_to_num(np.maximum(t1, t2), nan=np.inf)
        enter, leave = near.max(-1), far.min(-1)
        hit = (enter <= leave) & (enter > 0) & (enter < s)
        if not hit.any():
            continue
        axis = near.argmax(-1)
        q = d * enter[..., None]
        tex = _surface(rng, photos, (bh, max(bw, bd)), light=False)
        # face coordinates: side faces (x) use (y, z), top (y) uses (z, x), front/back (z) use (y, x)
        qa = np.where(axis == 1, q[..., 2] - z0, q[..., 1] - (cam_h - bh))
        qb = np.where(axis == 0, q[..., 2] - z0, q[..., 0] - (x0 - left))
        albedo[hit] = _sample(tex, qa, qb)[hit]
        sign = np.take_along_axis(np.sign(d), axis[..., None], -1)[..., 0]
        n = np.zeros((h, w, 3), np.float32)
        np.put_along_axis(n, axis[..., None], -sign[..., None], -1)
        normal = np.where(hit[..., None], n, normal)
        s = np.where(hit, enter, s)
        p = np.where(hit[..., None], q, p)

    # light: a ceiling lamp (diffuse, inverse-square-ish falloff) plus ambient, in linear RGB
    lamp = np.array([rng.uniform(-left, right) * 0.6, -ceiling + 0.15, rng.uniform(1.0, length * 0.8)], np.float32)
    to_lamp = lamp - p
    dist2 = (to_lamp ** 2).sum(-1)
    lambert = np.clip((normal * to_lamp).sum(-1) / np.sqrt(dist2 + 1e-6), 0, None)
    colour = 1 + rng.uniform(-0.06, 0.06, 3) * np.array([1, 0.3, -1], np.float32)  # warm … cool light
    radiance = srgb_to_linear(albedo) * (rng.uniform(0.15, 0.4) + lambert / (1 + dist2 / rng.uniform(4, 12)))[..., None]
    radiance = radiance * colour.astype(np.float32)
    radiance /= max(float(np.percentile(radiance, 99)), 1e-6) / rng.uniform(0.8, 1.0)  # auto exposure
    image = linear_to_srgb(radiance)
    small = (size[1], size[0])
    image = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
    depth = cv2.resize(s.astype(np.float32), small, interpolation=cv2.INTER_AREA)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), depth


_PHOTOS: list[np.ndarray] = []  # a rendering worker's photos, set once when it starts


def _start_worker(photos: list[np.ndarray]) -> None:
    _PHOTOS[:] = photos


def _render_one(seed: int, size: tuple[int, int], index: int) -> tuple[np.ndarray, np.ndarray]:
    return render_room(_PHOTOS, np.random.default_rng([seed, index]), size)


def room_samples(count: int, photos: list[np.ndarray], seed: int = 0, size: tuple[int, int] = (360, 480),
                 workers: int = 1) -> list[Sample]:
    """`count` rendered rooms (with their depth) as training samples, textured from `photos`.

    Room i is a function of (seed, i) alone, so `workers` > 1 (forked processes, which inherit the
    photos instead of receiving a copy per room) renders the same rooms, only sooner."""
    if count and not photos:
        raise ValueError("rendered rooms need photos to cut textures from")
    if workers > 1 and count > 1 and "fork" in multiprocessing.get_all_start_methods():
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, count), multiprocessing.get_context("fork"),
                                 initializer=_start_worker, initargs=(photos,)) as pool:
            rendered = list(pool.map(partial(_render_one, seed, size), range(count)))
    else:
        rendered = [render_room(photos, np.random.default_rng([seed, i]), size) for i in range(count)]
    return [Sample(f"room_{i:04d}", image, depth) for i, (image, depth) in enumerate(rendered)]
