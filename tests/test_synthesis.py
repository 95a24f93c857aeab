"""Haze synthesis (scattering model in linear RGB or on sRGB values) and the synthetic dataset."""
import numpy as np
import pytest
from skimage import data

from nedr.model.datasets import SyntheticHaze
from nedr.model.samples import Sample, motorcycle_depth
from nedr.model.synthesis import (A_RANGE, CONVENTIONS, T_MEAN_RANGE, depth_prior, invert, linear_to_srgb,
                                  segment_depth, srgb_to_linear, synthesize)


@pytest.fixture(scope="module")
def photo():
    return data.astronaut()[::4, ::4]  # 128×128 uint8


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_inverting_with_true_t_and_a_returns_j(photo, convention):
    h = synthesize(photo, seed=3, convention=convention, t_mean=0.6)
    assert h.convention == convention
    assert h.hazy.shape == h.clean.shape == photo.shape and h.t.shape == photo.shape[:2]
    # Where the true t is not tiny the inversion is well conditioned; float32 round trip only.
    ok = h.t > 0.2
    np.testing.assert_allclose(invert(h.hazy, h.t, h.A, convention)[ok], h.clean[ok], atol=3e-3)
    assert np.abs(h.hazy - h.clean).mean() > 0.05  # and the haze was really there


def test_ranges_cover_light_to_dense_haze_and_both_conventions(photo):
    means, conventions = [], set()
    for seed in range(40):
        h = synthesize(photo, seed)
        conventions.add(h.convention)
        assert h.t.min() > 0 and h.t.max() <= 1
        assert A_RANGE[0] - 0.05 <= h.A.min() and h.A.max() <= 1.0
        assert 0 <= h.hazy.min() and h.hazy.max() <= 1
        means.append(h.t.mean())
    assert conventions == set(CONVENTIONS)
    assert T_MEAN_RANGE[0] - 0.03 <= min(means) < 0.35 and 0.7 < max(means) <= T_MEAN_RANGE[1] + 0.03


@pytest.mark.parametrize("target", [0.25, 0.5, 0.8])
def test_density_is_the_requested_mean_transmission(photo, target):
    assert abs(synthesize(photo, 4, t_mean=target).t.mean() - target) < 0.01


def test_srgb_convention_blends_code_values(photo):
    """RESIDE's convention: the blend on sRGB values, A as an sRGB value."""
    h = synthesize(photo, 11, convention="srgb")
    t = h.t[..., None]
    np.testing.assert_allclose(h.hazy, h.clean * t + h.A * (1 - t), atol=1e-6)


def test_conventions_share_depth_density_and_light(photo):
    a = synthesize(photo, np.random.default_rng(9), convention="linear")
    b = synthesize(photo, np.random.default_rng(9), convention="srgb")
    assert np.array_equal(a.t, b.t) and np.array_equal(a.A, b.A)
    assert np.abs(a.hazy - b.hazy).max() > 0.02


def test_room_prior_is_deepest_towards_the_vanishing_region():
    for seed in range(5):
        d = depth_prior((120, 160), np.random.default_rng(seed), "room")
        assert d.min() == 0 and abs(d.max() - 1) < 1e-6
        border = np.concatenate([d[:4].ravel(), d[-4:].ravel(), d[:, :4].ravel(), d[:, -4:].ravel()])
        assert d[40:80, 50:110].max() > border.mean() + 0.3


def test_segment_depth_jumps_only_on_image_edges():
    """Four flat colour quadrants: depth is smooth inside each, and its steps lie on the quadrant
    borders (where the segments meet; the segmentation's smoothing blurs a border over a few pixels)."""
    image = np.zeros((96, 96, 3), np.uint8)
    image[:48, 48:] = (200, 40, 40)
    image[48:, :48] = (40, 200, 40)
    image[48:, 48:] = (230, 230, 230)
    for seed in range(4):
        d = segment_depth(image, np.random.default_rng(seed))
        assert d.shape == (96, 96) and d.dtype == np.float32 and d.min() == 0 and abs(d.max() - 1) < 1e-6
        assert np.array_equal(d, segment_depth(image, np.random.default_rng(seed)))
        steps_x, steps_y = np.abs(np.diff(d, axis=1)), np.abs(np.diff(d, axis=0))
        near = np.abs(np.arange(95) - 47) <= 3
        inside = max(steps_x[:, ~near].max(), steps_y[~near, :].max())
        border = max(steps_x[:, near].max(), steps_y[near, :].max())
        assert border > 5 * inside


def test_deterministic_per_seed(photo):
    a, b, c = synthesize(photo, 5), synthesize(photo, 5), synthesize(photo, 6)
    assert np.array_equal(a.hazy, b.hazy) and np.array_equal(a.t, b.t)
    assert not np.array_equal(a.hazy, c.hazy)


def test_haze_is_applied_in_linear_rgb(photo):
    """Composite by hand in linear light: the sRGB result must match, the naive sRGB blend must not."""
    h = synthesize(photo, 11, convention="linear")
    t = h.t[..., None]
    expected = linear_to_srgb(srgb_to_linear(h.clean) * t + srgb_to_linear(h.A) * (1 - t))
    np.testing.assert_allclose(h.hazy, expected, atol=1e-6)
    naive = h.clean * t + h.A * (1 - t)
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
