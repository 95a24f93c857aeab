"""The per-frame math of a run, without threads: what `Pipeline` does to each frame, in its stages.

Kept apart from the threading so it can be used (and tested, and benchmarked) one frame at a time,
and so the single-stream and multi-stream pipelines share one copy of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from nedr.contract import padded_hw

from .backends import Backend, Output
from .errors import BackendError
from .fast import (DEFAULT_EPS, DEFAULT_RADIUS, apply_affine_u8, downscale, fit_affine_planes, infer_size_for,
                   planes_to_u8)
from .frames import pad_hwc
from .realtime import RealtimeChoice, backend_latency, choose_network_size
from .sources import Frame
from .temporal import Stabilizer, recover_planes


@dataclass
class RunConfig:
    """How a run treats its frames (most fields) and paces its threads (queue_size, warmup, progress,
    max_frames, finish_threads): one object, so a caller steers a whole run with one argument."""

    infer_size: tuple[int, int] | None = None  # (width, height) the network runs at (fast mode)
    scale: float | None = None                 # or a factor of the frame size (fast mode)
    realtime_fps: float | None = None          # or: the largest network size that keeps this rate (measured)
    realtime_log: Callable[[str], None] | None = None  # told the size realtime_fps picked
    stabilize: bool = True
    alpha: float = 0.1                         # EMA weight of the newest A
    max_frames: int | None = None
    queue_size: int = 4
    warmup: bool = True
    progress: bool = True
    fast_radius: int = DEFAULT_RADIUS
    fast_eps: float = DEFAULT_EPS
    fast_method: str = "guided"                # "guided" (local affine) or "bilinear" (plain resize, for comparison)
    atmosphere_mode: str = "dark_channel"      # numpy A fallback when the backend gives neither A nor t
    finish_threads: int | None = None          # frames rendered at once after inference (None: by CPU count)


@dataclass
class Work:
    """One frame on its way through the stages; each stage adds what the next one needs."""

    frame: Frame
    full8: np.ndarray | None      # fast mode: the full-resolution uint8 frame the coefficients apply to
    hw: tuple[int, int]           # the network's input size before padding
    batch: np.ndarray             # 1×3×Hp×Wp float32, padded
    cut: bool
    output: Output | None = None
    atmosphere: np.ndarray | None = None  # the smoothed A, once settled

    @property
    def small(self) -> np.ndarray:
        """The network's unpadded input, 3×h×w (a view of the batch)."""
        h, w = self.hw
        return self.batch[0, :, :h, :w]


class FrameProcessor:
    """The per-frame math, on channel planes (the backend's layout, so no transposes):

    * `prepare(frame)` → Work: fast-mode downscale (uint8, area), pad, float batch, scene-cut check;
    * `settle(work)`: the smoothed A for this frame (stateful: call in frame order);
    * `render(work)` → uint8 RGB at the frame's own size: J re-solved with the smoothed A, then
      fast-mode guided upsampling. Stateless, so several frames can render at once.

    `prepare` and `settle` each keep state (scene cuts, smoothed A) and must be called in frame order.
    """

    def __init__(self, backend: Backend, config: RunConfig | None = None) -> None:
        self.backend = backend
        self.config = config or RunConfig()
        self.stabilizer = Stabilizer(self.config.stabilize, self.config.alpha,
                                     atmosphere_mode=self.config.atmosphere_mode)
        self.last_size: tuple[int, int] | None = None
        self.size_changes = 0
        self.network_hw: tuple[int, int] | None = None
        self.realtime: RealtimeChoice | None = None

    def fast_size(self, h: int, w: int) -> tuple[int, int] | None:
        """The (width, height) the network runs at for an h×w frame, or None for full size.

        With `realtime_fps` the size is measured on the first frame (nothing else uses the backend
        yet) and kept as a fraction of the frame for later sizes, so no call is timed mid-stream."""
        if not self.config.realtime_fps:
            return infer_size_for((h, w), self.config.infer_size, self.config.scale)
        if self.realtime is None:
            self.realtime = choose_network_size(backend_latency(self.backend), (h, w), self.config.realtime_fps)
            if self.config.realtime_log:
                self.config.realtime_log(self.realtime.describe())
        if (h, w) == self.realtime.frame_hw:
            return self.realtime.infer_size
        (fh, fw), (nh, nw) = self.realtime.frame_hw, self.realtime.network_hw
        return infer_size_for((h, w), scale=min(1.0, nh / fh, nw / fw))

    def target_hw(self, h: int, w: int) -> tuple[int, int]:
        """The padded size an h×w network input goes in at; a static-shape model that cannot take it
        fails here, with the option that fixes it, rather than inside the backend."""
        if self.backend.accepts_any_size:
            return h, w
        target = padded_hw(h, w)
        static = self.backend.static_hw
        if static:
            if target[0] > static[0] or target[1] > static[1]:
                raise BackendError(f"frames of {w}x{h} do not fit the model's static input {static[1]}x{static[0]}; "
                                   f"run it small with --infer-size {static[1]}x{static[0]}, or use a dynamic-shape model")
            target = static
        return target

    def prepare(self, frame: Frame) -> Work:
        """The frame as the backend takes it; runs before inference so it can overlap the previous call."""
        img = frame.image
        h, w = img.shape[:2]
        resized = self.last_size is not None and (h, w) != self.last_size
        self.size_changes += int(resized)
        self.last_size = (h, w)
        size = self.fast_size(h, w)
        small = downscale(img, size) if size else img
        sh, sw = small.shape[:2]
        target = self.target_hw(sh, sw)
        self.network_hw = target
        padded = pad_hwc(small, target)
        batch = np.empty((1, 3, *target), np.float32)
        for c, plane in enumerate(cv2.split(padded)):
            np.multiply(plane, np.float32(1.0 / 255.0), out=batch[0, c])
        cut = self.stabilizer.detector(img) or resized
        return Work(frame, img if size else None, (sh, sw), batch, cut)

    def _t(self, work: Work) -> np.ndarray | None:
        t = work.output.transmission
        h, w = work.hw
        return None if t is None else t[0, 0, :h, :w]

    def settle(self, work: Work) -> None:
        """Smooth A over frames (split from `render` because it is the one sequential step after inference)."""
        out = work.output
        h, w = work.hw
        a = out.atmosphere[0] if out.atmosphere is not None else None
        work.atmosphere = self.stabilizer.smoothed(work.small, out.clean[0, :, :h, :w], self._t(work), a, work.cut)

    def render(self, work: Work) -> np.ndarray:
        """The finished uint8 RGB frame at its own size; no shared state, so frames render in parallel."""
        h, w = work.hw
        if work.atmosphere is not None:
            planes = recover_planes(work.small, self._t(work), work.atmosphere)
            for p in planes:
                np.clip(p, 0.0, 1.0, out=p)
        else:
            planes = list(work.output.clean[0, :, :h, :w])
        if work.full8 is None:
            return planes_to_u8(planes)
        fh, fw = work.full8.shape[:2]
        if self.config.fast_method == "bilinear":
            return cv2.resize(planes_to_u8(planes), (fw, fh), interpolation=cv2.INTER_LINEAR)
        a, b = fit_affine_planes(work.small, planes, self.config.fast_radius, self.config.fast_eps)
        return apply_affine_u8(work.full8, a, b)

    def finish(self, work: Work) -> np.ndarray:
        """`settle` then `render`, for callers that finish frames one at a time in order."""
        self.settle(work)
        return self.render(work)

    def __call__(self, frame: Frame) -> np.ndarray:
        """One frame, synchronously (no threads)."""
        work = self.prepare(frame)
        work.output = self.backend.infer_full(work.batch)
        return self.finish(work)
