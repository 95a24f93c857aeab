"""Per-frame math of the runtime: padding, fast-mode guided upsampling, temporal stabilisation."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from nedr.runtime.fast import apply_affine, fit_affine, guided_upsample, infer_size_for
from nedr.contract import MIN_SIZE, PAD_MULTIPLE, padded_size
from nedr.runtime.frames import pad_hwc, parse_wxh, side_by_side
from nedr.runtime.temporal import (AtmosphereSmoother, SceneCutDetector, Stabilizer, atmosphere_from_outputs,
                                   estimate_atmosphere, recover)


def test_contract_constants_mirror_the_model():
    torch = pytest.importorskip("torch")
    from nedr.model.inference import pad_to_contract
    from nedr.model.inference import padded_size as model_padded_size
    from nedr.model.network import MIN_SIZE as M, PAD_MULTIPLE as P

    assert (MIN_SIZE, PAD_MULTIPLE) == (M, P)
    assert all(padded_size(n) == model_padded_size(n) for n in (1, 100, 128, 129, 403, 721, 1080))
    rng = np.random.default_rng(0)
    for h, w in ((403, 721), (100, 300), (130, 129)):
        x = rng.random((h, w, 3), dtype=np.float32)
        ref = pad_to_contract(torch.from_numpy(x).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(pad_hwc(x), ref)


def test_parse_wxh():
    assert parse_wxh("640x360") == (640, 360) and parse_wxh(" 1280 X 720 ") == (1280, 720)
    for bad in ("640", "x360", "0x10", "axb"):
        with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
            parse_wxh(bad)


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


def test_side_by_side():
    a = np.zeros((10, 20, 3), np.uint8)
    assert side_by_side(a, np.zeros((5, 10, 3), np.uint8)).shape == (10, 40, 3)


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


def test_fast_graph_module_shapes():
    """FastNeDR keeps the input size and rejects a network size off the contract."""
    torch = pytest.importorskip("torch")
    from nedr.model.fast import FastNeDR
    from nedr.model.network import NeDR

    with pytest.raises(ValueError, match="breaks the network contract"):
        FastNeDR(NeDR(), (100, 128))

    class Identity(torch.nn.Module):  # stands in for NeDR: J = 2·I − 0.3, t = 0.5
        def predict(self, x):
            from nedr.model.network import Prediction

            return Prediction((2 * x - 0.3).clamp(0, 1), torch.full_like(x[:, :1], 0.5), x[:, :, :1, :1])

    fast = FastNeDR(NeDR(), (128, 160), with_transmission=True)
    fast.model = Identity()
    x = torch.rand(1, 3, 203, 301)
    j, t = fast(x)
    assert j.shape == (1, 3, 203, 301) and t.shape == (1, 1, 203, 301)
