"""Temporal stabilisation of the runtime (nedr.runtime.temporal): atmospheric light, its smoothing,
scene cuts and J re-solved with the smoothed A."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from nedr.runtime.temporal import (AtmosphereSmoother, SceneCutDetector, Stabilizer, atmosphere_from_outputs,
                                   estimate_atmosphere, recover)


def test_estimate_atmosphere_matches_the_model():
    torch = pytest.importorskip("torch")
    from nedr.model.physics import atmospheric_light

    rng = np.random.default_rng(2)
    for h, w in ((128, 160), (160, 224)):
        x = cv2.GaussianBlur(rng.random((h, w, 3), dtype=np.float32), (0, 0), 2)
        ref = atmospheric_light(torch.from_numpy(x).permute(2, 0, 1)[None].contiguous())[0, :, 0, 0].numpy()
        np.testing.assert_allclose(estimate_atmosphere(x), ref, atol=1e-6)
        ref_max = atmospheric_light(torch.from_numpy(x).permute(2, 0, 1)[None].contiguous(), "max")[0, :, 0, 0].numpy()
        np.testing.assert_allclose(estimate_atmosphere(x, "max"), ref_max, atol=1e-6)


def test_atmosphere_solved_from_outputs():
    rng = np.random.default_rng(3)
    hazy = rng.uniform(0.3, 0.9, (64, 64, 3)).astype(np.float32)
    t = rng.uniform(0.3, 0.8, (64, 64)).astype(np.float32)
    a = np.array([0.8, 0.7, 0.75], np.float32)
    clean = recover(hazy, t, a)
    np.testing.assert_allclose(atmosphere_from_outputs(hazy, clean, t), a, atol=1e-5)
    assert atmosphere_from_outputs(hazy, np.ones_like(hazy), t) is None  # everything clipped


def test_smoother_and_reset():
    s = AtmosphereSmoother(alpha=0.5)
    np.testing.assert_allclose(s.update(np.ones(3)), 1)
    np.testing.assert_allclose(s.update(np.zeros(3)), 0.5)
    np.testing.assert_allclose(s.update(np.zeros(3), cut=True), 0)
    assert s.resets == 1


def _shot(seed: int, shift: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = cv2.resize((rng.random((9, 12, 3)) * 255).astype(np.uint8), (160, 120), interpolation=cv2.INTER_CUBIC)
    return np.roll(base, shift, axis=1)


def test_scene_cut_detector():
    det = SceneCutDetector()
    shot_a = [_shot(0, 2 * i) for i in range(10)]
    shot_b = [_shot(1, 2 * i) for i in range(10)]
    flags = [det(f) for f in shot_a + shot_b]
    assert flags.index(True) == 10 and sum(flags) == 1 and det.cuts == 1


def test_stabilizer_smooths_a_and_resolves_j():
    rng = np.random.default_rng(4)
    hazy = rng.uniform(0.3, 0.9, (32, 32, 3)).astype(np.float32)
    t = np.full((32, 32), 0.5, np.float32)
    stab = Stabilizer(alpha=0.25)
    a1, a2 = np.full(3, 0.8, np.float32), np.full(3, 0.6, np.float32)
    stab.apply(hazy, recover(hazy, t, a1), t, a1, cut=False)
    j, a_s = stab.apply(hazy, recover(hazy, t, a2), t, a2, cut=False)
    np.testing.assert_allclose(a_s, 0.75, atol=1e-6)
    np.testing.assert_allclose(j, recover(hazy, t, a_s), atol=1e-6)
    j, a_s = stab.apply(hazy, recover(hazy, t, a2), t, None, cut=True)  # A solved from the outputs, reset
    np.testing.assert_allclose(a_s, 0.6, atol=1e-4)
    off = Stabilizer(enabled=False)
    j_off, a_off = off.apply(hazy, recover(hazy, t, a2), t, a2, cut=False)
    assert a_off is None and np.array_equal(j_off, recover(hazy, t, a2))
