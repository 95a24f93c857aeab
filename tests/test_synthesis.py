"""Haze synthesis (scattering model in linear RGB) and the synthetic dataset."""
import numpy as np
import pytest
from skimage import data

from nedr.model.datasets import SyntheticHaze
from nedr.model.samples import Sample, motorcycle_depth
from nedr.model.synthesis import (A_RANGE, BETA_MODULATION, BETA_RANGE, invert, linear_to_srgb, srgb_to_linear,
                                  synthesize)


@pytest.fixture(scope="module")
def photo():
    return data.astronaut()[::4, ::4]  # 128×128 uint8


def test_inverting_with_true_t_and_a_returns_j(photo):
    h = synthesize(photo, seed=3)
    assert h.hazy.shape == h.clean.shape == photo.shape and h.t.shape == photo.shape[:2]
    # Where the true t is not tiny the inversion is well conditioned; float32 round trip only.
    np.testing.assert_allclose(invert(h.hazy, h.t, h.A), h.clean, atol=2e-3)
    assert np.abs(h.hazy - h.clean).mean() > 0.05  # and the haze was really there


def test_ranges(photo):
    for seed in range(20):
        h = synthesize(photo, seed)
        assert h.t.min() > 0 and h.t.max() <= 1
        assert A_RANGE[0] - 0.05 <= h.A.min() and h.A.max() <= 1.0
        assert BETA_RANGE[0] * (1 - BETA_MODULATION) - 1e-6 <= h.beta.min()
        assert h.beta.max() <= BETA_RANGE[1] * (1 + BETA_MODULATION) + 1e-6
        assert 0 <= h.hazy.min() and h.hazy.max() <= 1


def test_deterministic_per_seed(photo):
    a, b, c = synthesize(photo, 5), synthesize(photo, 5), synthesize(photo, 6)
    assert np.array_equal(a.hazy, b.hazy) and np.array_equal(a.t, b.t)
    assert not np.array_equal(a.hazy, c.hazy)


def test_haze_is_applied_in_linear_rgb(photo):
    """Composite by hand in linear light: the sRGB result must match, the naive sRGB blend must not."""
    h = synthesize(photo, 11)
    t = h.t[..., None]
    expected = linear_to_srgb(srgb_to_linear(h.clean) * t + h.A * (1 - t))
    np.testing.assert_allclose(h.hazy, expected, atol=1e-6)
    naive = h.clean * t + linear_to_srgb(h.A) * (1 - t)
    assert np.abs(naive - h.hazy).max() > 0.01


def test_real_depth_orders_transmission():
    """With the Middlebury depth, far pixels get less transmission than near ones (β varies only smoothly)."""
    left, depth = motorcycle_depth()
    assert np.isfinite(depth).all() and depth.min() > 0
    h = synthesize(left[::4, ::4], 0, depth[::4, ::4])
    d = depth[::4, ::4]
    near, far = d < np.percentile(d, 20), d > np.percentile(d, 80)
    assert h.t[near].mean() > h.t[far].mean()


def test_synthetic_dataset_items_are_fixed_by_seed_and_index(photo):
    ds = SyntheticHaze([Sample("astronaut", data.astronaut())], crop=64, seed=1)
    a, b = ds[3], ds[3]
    assert a["hazy"].shape == (3, 64, 64) and a["t"].shape == (1, 64, 64)
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    assert not np.array_equal(ds[4]["hazy"].numpy(), a["hazy"].numpy())
