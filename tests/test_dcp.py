"""Dark channel prior baseline: building blocks, a synthetic hazy image, and the real SOTS pairs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage.data import astronaut
from skimage.transform import resize

from nedr.benchmarks.dcp import atmospheric_light, dark_channel, dehaze_dcp, guided_filter
from nedr.model.metrics import psnr, to_uint8

SOTS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sots-indoor-examples"


@pytest.fixture(scope="module")
def synthetic():
    """I = J·t + A(1 − t) on a 256² astronaut, t = exp(−β·d) with a left-to-right depth ramp."""
    clean = resize(astronaut(), (256, 256), anti_aliasing=True)  # float64 in [0, 1]
    depth = np.tile(np.linspace(0.2, 1.0, 256), (256, 1))
    t = np.exp(-1.5 * depth)[..., None]
    hazy = clean * t + np.array([0.9, 0.9, 0.92]) * (1 - t)
    return to_uint8(hazy), to_uint8(clean)


def test_dark_channel_is_windowed_min():
    rng = np.random.default_rng(0)
    x = rng.random((20, 25, 3))
    dark = dark_channel(x, patch=5)
    m = x.min(axis=2)
    naive = np.array([[m[max(i - 2, 0):i + 3, max(j - 2, 0):j + 3].min() for j in range(25)] for i in range(20)])
    np.testing.assert_array_equal(dark, naive)


def test_atmospheric_light_takes_brightest_candidate():
    """k = ⌊0.001·100·100⌋ = 10 candidates (top dark channel); A = the brightest input pixel among them."""
    rng = np.random.default_rng(2)
    x = rng.uniform(0.1, 0.3, (100, 100, 3))
    dark = rng.uniform(0.0, 0.5, (100, 100))
    rows, cols = np.arange(10) * 7 + 5, np.arange(10) * 9 + 3
    dark[rows, cols] = np.linspace(0.6, 0.9, 10)   # the ten candidates
    x[rows, cols] = [0.6, 0.6, 0.6]
    x[rows[3], cols[3]] = [0.7, 0.8, 0.9]           # brightest candidate, not the darkest-channel maximum
    x[99, 99] = [1.0, 1.0, 1.0]                     # brighter, but not a candidate (a white object)
    np.testing.assert_allclose(atmospheric_light(x, dark), [0.7, 0.8, 0.9])


def test_guided_filter_matches_naive_and_keeps_constants():
    rng = np.random.default_rng(1)
    guide, src = rng.random((12, 14)), rng.random((12, 14))
    r, eps = 2, 1e-2

    def box(x):
        return np.array([[x[max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1].mean() for j in range(14)]
                         for i in range(12)])

    mi, mp = box(guide), box(src)
    a = (box(guide * src) - mi * mp) / (box(guide * guide) - mi * mi + eps)
    b = mp - a * mi
    np.testing.assert_allclose(guided_filter(guide, src, r, eps), box(a) * guide + box(b), atol=1e-12)
    np.testing.assert_allclose(guided_filter(guide, np.full_like(src, 0.3), 60, 1e-4), 0.3, atol=1e-9)


def test_dcp_improves_synthetic_haze(synthetic):
    hazy, clean = synthetic
    out, t, a = dehaze_dcp(hazy, return_aux=True)
    assert out.dtype == np.uint8 and out.shape == hazy.shape and t.shape == hazy.shape[:2]
    np.testing.assert_allclose(a, [0.9, 0.9, 0.92], atol=0.05)
    assert psnr(out, clean) > psnr(hazy, clean) + 5


def test_dcp_input_checks():
    with pytest.raises(TypeError, match="uint8"):
        dehaze_dcp(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="H×W×3"):
        dehaze_dcp(np.zeros((32, 32), np.uint8))
    assert dehaze_dcp(np.zeros((8, 9, 3), np.uint8)).shape == (8, 9, 3)  # black frame: no division by 0


def test_dcp_beats_hazy_input_on_sots_indoor():
    if not SOTS.is_dir():
        pytest.skip(f"SOTS-indoor example pairs not present at {SOTS} (a fresh clone has no ../shared)")
    from nedr.model.evaluation import evaluate, find_pair_dirs, hazy_input, pair_images

    pairs = pair_images(*find_pair_dirs(SOTS))
    assert len(pairs) == 5
    hazy = evaluate(hazy_input, pairs, progress=False)["mean"]["psnr"]
    dcp = evaluate(dehaze_dcp, pairs, progress=False)["mean"]["psnr"]
    assert hazy == pytest.approx(9.79, abs=0.01)  # the reference figure for these five pairs
    assert dcp > hazy + 5
