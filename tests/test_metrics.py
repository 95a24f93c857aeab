"""PSNR/SSIM helpers: same numbers as scikit-image's own calls, plus hand-checkable cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from nedr.model.metrics import crop_border, psnr, ssim, to_uint8


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    noise = rng.integers(-20, 21, target.shape)
    pred = np.clip(target.astype(int) + noise, 0, 255).astype(np.uint8)
    return pred, target


def test_psnr_equals_skimage(pair):
    pred, target = pair
    assert psnr(pred, target) == pytest.approx(peak_signal_noise_ratio(target, pred, data_range=255), abs=1e-12)


def test_ssim_equals_skimage(pair):
    pred, target = pair
    expected = structural_similarity(target, pred, channel_axis=-1, data_range=255)
    assert ssim(pred, target) == pytest.approx(expected, abs=1e-12)


def test_crop_equals_skimage_on_sliced_images(pair):
    pred, target = pair
    p, t = pred[10:-10, 10:-10], target[10:-10, 10:-10]
    assert psnr(pred, target, crop=10) == pytest.approx(peak_signal_noise_ratio(t, p, data_range=255), abs=1e-12)
    assert ssim(pred, target, crop=10) == pytest.approx(
        structural_similarity(t, p, channel_axis=-1, data_range=255), abs=1e-12)
    assert crop_border(pred, 10).shape == (28, 44, 3)
    assert crop_border(pred, 0) is pred


def test_identical_images_give_inf_psnr_and_unit_ssim(pair):
    _, target = pair
    assert psnr(target, target.copy()) == math.inf
    assert ssim(target, target.copy()) == pytest.approx(1.0)


def test_one_grey_level_offset_is_48_13_db():
    target = np.full((16, 16, 3), 100, np.uint8)
    assert psnr(target + 1, target) == pytest.approx(20 * math.log10(255), abs=1e-9)
    assert round(psnr(target + 1, target), 2) == 48.13


def test_to_uint8_rounds_and_clips():
    x = np.array([[[-0.1, 0.0, 0.5 / 255], [0.499 / 255, 1.0, 1.2], [0.5, 127.5 / 255, 254.6 / 255]]])
    assert to_uint8(x).tolist() == [[[0, 0, 1], [0, 255, 255], [128, 128, 255]]]
    u = np.zeros((2, 2, 3), np.uint8)
    assert to_uint8(u) is u
    with pytest.raises(TypeError):
        to_uint8(np.zeros((2, 2, 3), np.int32))


def test_input_checks(pair):
    pred, target = pair
    with pytest.raises(TypeError, match="to_uint8"):
        psnr(pred.astype(np.float32) / 255, target)
    with pytest.raises(ValueError, match="shape"):
        ssim(pred[:-1], target)
    with pytest.raises(ValueError, match="H×W×3"):
        psnr(pred[..., 0], target[..., 0])
    with pytest.raises(ValueError, match="crop"):
        psnr(pred, target, crop=24)
    with pytest.raises(ValueError, match="7×7"):
        ssim(pred, target, crop=21)


def test_shared_psnr_conventions():
    """nedr.metrics is the one formula: peak 1 for J in [0, 1], pooled MSE over frames plus the worst."""
    from nedr.metrics import psnr as shared_psnr, psnr_over_frames

    ref = np.full((1, 3, 8, 8), 0.5, np.float32)
    assert shared_psnr(ref + np.float32(0.01), ref) == pytest.approx(40.0, abs=1e-4)
    overall, worst = psnr_over_frames([ref + np.float32(0.01), ref], [ref, ref])
    assert overall == pytest.approx(10 * math.log10(2 / 0.01 ** 2), abs=1e-4) and worst == pytest.approx(40.0, abs=1e-4)
    assert shared_psnr(ref, ref) == math.inf
