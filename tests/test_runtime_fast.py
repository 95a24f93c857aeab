"""Fast mode of the runtime (nedr.runtime.fast): network size for a frame, guided upsampling of the
small output to full resolution."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from nedr.runtime.fast import apply_affine, fit_affine, guided_upsample, infer_size_for


def test_infer_size_for():
    assert infer_size_for((720, 1280)) is None
    assert infer_size_for((720, 1280), scale=0.5) == (640, 360)
    assert infer_size_for((720, 1280), infer_size=(512, 288)) == (512, 288)
    assert infer_size_for((720, 1280), scale=1.0) is None


def test_guided_upsampling_carries_an_affine_map_exactly():
    """Where the output is an affine function of the input per channel, fast mode is exact."""
    rng = np.random.default_rng(0)
    full = cv2.GaussianBlur(rng.random((240, 320, 3), dtype=np.float32), (0, 0), 3)
    gain, offset = np.array([1.6, 1.4, 1.2], np.float32), np.array([-0.3, -0.2, -0.1], np.float32)
    small = cv2.resize(full, (80, 60), interpolation=cv2.INTER_AREA)
    out = guided_upsample(full, small, small * gain + offset, eps=1e-8)
    np.testing.assert_allclose(out, np.clip(full * gain + offset, 0, 1), atol=2e-3)


def test_guided_upsampling_follows_the_physics():
    """J = (I − A)/t + A with a smooth t: the upsampled result is close to the full-resolution truth
    and much closer than resizing the small output."""
    rng = np.random.default_rng(1)
    h, w = 240, 320
    scene = cv2.GaussianBlur(rng.random((h, w, 3), dtype=np.float32), (0, 0), 1.2)
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    t = 0.4 + 0.5 * yy * np.ones((1, w, 1), np.float32)
    a = np.array([0.8, 0.82, 0.85], np.float32)
    hazy = scene * t + a * (1 - t)
    truth = np.clip((hazy - a) / t + a, 0, 1)
    small_in = cv2.resize(hazy, (80, 60), interpolation=cv2.INTER_AREA)
    small_t = cv2.resize(t[..., 0], (80, 60), interpolation=cv2.INTER_AREA)[..., None]
    small_out = np.clip((small_in - a) / small_t + a, 0, 1)
    fast = guided_upsample(hazy, small_in, small_out)
    naive = cv2.resize(small_out, (w, h), interpolation=cv2.INTER_LINEAR)
    err_fast, err_naive = np.abs(fast - truth).mean(), np.abs(naive - truth).mean()
    assert err_fast < 0.01 and err_fast < err_naive / 3, (err_fast, err_naive)


def test_fit_affine_shapes():
    x = np.random.default_rng(0).random((20, 30, 3), dtype=np.float32)
    a, b = fit_affine(x, 2 * x)
    assert a.shape == b.shape == (20, 30, 3)
    assert apply_affine(np.zeros((40, 60, 3), np.float32), a, b).shape == (40, 60, 3)


def test_numpy_and_torch_fast_mode_agree():
    """runtime.fast (numpy, the pipeline's) and model.fast (torch, exportable) compute the same thing."""
    torch = pytest.importorskip("torch")
    from nedr.model.fast import guided_upsample as torch_upsample

    rng = np.random.default_rng(5)
    full = cv2.GaussianBlur(rng.random((150, 210, 3), dtype=np.float32), (0, 0), 2)
    small_in = cv2.resize(full, (70, 50), interpolation=cv2.INTER_AREA)
    small_out = np.clip(small_in * 1.5 - 0.2 + 0.05 * rng.random(small_in.shape, dtype=np.float32), 0, 1)

    def nchw(x):
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]

    ref = torch_upsample(nchw(full), nchw(small_in), nchw(small_out))[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(guided_upsample(full, small_in, small_out), ref, atol=2e-5)
