"""`dehaze()`: any H×W ≥ 16 in, same size and kind out; clear errors otherwise (docs/model.md §1)."""
import subprocess
import sys
import cv2
import numpy as np
import pytest
import skimage.data
import torch

from nedr.model import dehaze
from nedr.model.inference import pad_to_contract, padded_size
from nedr.model.metrics import psnr

SIZES = [(100, 150), (37, 91), (16, 16)]


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((h, w, 3), dtype=np.float32)


@pytest.mark.parametrize("h,w", SIZES)
def test_uint8_hwc(small_model, h, w):
    img = (_image(h, w) * 255).astype(np.uint8)
    out = dehaze(small_model, img)
    assert isinstance(out, np.ndarray) and out.shape == (h, w, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("h,w", SIZES)
def test_float32_hwc(small_model, h, w):
    img = _image(h, w)
    out, t, a = dehaze(small_model, img, return_aux=True)
    assert isinstance(out, np.ndarray) and out.shape == (h, w, 3) and out.dtype == np.float32
    assert t.shape == (h, w) and a.shape == (3,)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("h,w", SIZES)
def test_chw_tensor(small_model, h, w):
    x = torch.from_numpy(_image(h, w)).permute(2, 0, 1).contiguous()
    out = dehaze(small_model, x)
    assert isinstance(out, torch.Tensor) and out.shape == (3, h, w) and out.dtype == torch.float32


@pytest.mark.parametrize("h,w", SIZES)
def test_nchw_tensor(small_model, h, w):
    x = torch.stack([torch.from_numpy(_image(h, w, s)).permute(2, 0, 1) for s in (1, 2)])
    out, t, a = dehaze(small_model, x, return_aux=True)
    assert out.shape == (2, 3, h, w) and t.shape == (2, 1, h, w) and a.shape == (2, 3, 1, 1)


def test_dehaze_is_the_network_on_the_padded_image_cropped_back(small_model):
    h, w = 100, 150
    x = torch.from_numpy(_image(h, w)).permute(2, 0, 1)[None].contiguous()
    padded = pad_to_contract(x)
    assert padded.shape[-2:] == (128, 160)
    # right/bottom reflect padding: the original is untouched in the top-left corner
    assert torch.equal(padded[..., :h, :w], x)
    assert torch.equal(padded[..., h, :w], x[..., h - 2, :])
    with torch.no_grad():
        want = small_model(padded)[..., :h, :w]
    assert torch.equal(dehaze(small_model, x), want)
    # the array paths are the same computation (an HWC array reaches the network in channels-last
    # memory layout, which changes float rounding by ~1e-7); uint8 as x·255 rounded
    arr = x[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(dehaze(small_model, arr), want[0].permute(1, 2, 0).numpy(), rtol=0, atol=1e-5)
    img8 = (arr * 255 + 0.5).astype(np.uint8)
    x8 = torch.from_numpy(img8).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        want8 = small_model(pad_to_contract(x8))[0, :, :h, :w].permute(1, 2, 0).numpy()
    out8 = dehaze(small_model, img8)
    assert np.abs(out8.astype(np.int16) - np.round(want8 * 255).astype(np.int16)).max() <= 1


def test_padding_contract():
    assert [padded_size(s) for s in (16, 127, 128, 129, 1080, 1920)] == [128, 128, 128, 160, 1088, 1920]
    x = torch.rand(1, 3, 1080, 1920)
    assert pad_to_contract(x).shape == (1, 3, 1088, 1920)
    tiny = torch.rand(1, 3, 16, 16)  # too small to reflect: edge-replicated
    assert pad_to_contract(tiny).shape == (1, 3, 128, 128)
    assert torch.equal(pad_to_contract(tiny)[..., 127, 127], tiny[..., 15, 15])


@pytest.mark.slow
def test_full_hd(small_model):
    """1080×1920: the network at 432×768 (448×768 padded) and guided upsampling to full size."""
    img = (_image(1080, 1920) * 255).astype(np.uint8)
    out = dehaze(small_model, img)
    assert out.shape == (1080, 1920, 3) and out.dtype == np.uint8


# ---------------------------------------------------------------- refused inputs

@pytest.mark.parametrize("image,exc,match", [
    (np.zeros((15, 40, 3), np.uint8), ValueError, r"15×40.*at least 16×16"),
    (np.zeros((40, 15, 3), np.float32), ValueError, r"40×15.*at least 16×16"),
    (torch.zeros(3, 15, 40), ValueError, r"15×40.*at least 16×16"),
    (np.zeros((32, 32, 4), np.uint8), ValueError, r"H×W×3.*\(32, 32, 4\)"),
    (np.zeros((32, 32), np.uint8), ValueError, r"H×W×3.*\(32, 32\)"),
    (torch.zeros(4, 32, 32), ValueError, r"3×H×W.*\(4, 32, 32\)"),
    (torch.zeros(32, 32), ValueError, r"3×H×W.*\(32, 32\)"),
    (np.full((32, 32, 3), np.nan, np.float32), ValueError, "NaN"),
    (torch.full((1, 3, 32, 32), float("nan")), ValueError, "NaN"),
    (np.zeros((32, 32, 3), np.int16), TypeError, "int16"),
    (np.zeros((32, 32, 3), np.float64), TypeError, "float64"),
    (torch.zeros(3, 32, 32, dtype=torch.uint8), TypeError, "uint8"),
    ([[0.5] * 3] * 32, TypeError, "list"),
])
def test_refused_inputs(small_model, image, exc, match):
    with pytest.raises(exc, match=match):
        dehaze(small_model, image)


def test_single_nan_pixel_is_refused(small_model):
    img = _image(40, 40)
    img[17, 23, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        dehaze(small_model, img)


@pytest.mark.parametrize("shape", [(1, 3, 128, 100), (1, 3, 130, 128), (1, 3, 96, 128)])
def test_network_refuses_off_contract_sizes(small_model, shape):
    with pytest.raises(ValueError, match=r"multiples of 32 and >= 128.*dehaze\(\)"):
        with torch.no_grad():
            small_model(torch.rand(shape))


def test_network_refuses_wrong_channels(small_model):
    with pytest.raises(ValueError, match=r"N×3×H×W.*\(1, 4, 128, 128\)"):
        with torch.no_grad():
            small_model(torch.rand(1, 4, 128, 128))


def test_large_input_runs_the_network_small_and_keeps_colour(small_model):
    """Above `max_side` the network sees the image at a fixed size and J is carried back by guided
    upsampling: a 4× enlarged photo comes out with the colours of the photo itself."""
    from nedr.model.inference import network_size_for

    photo = skimage.data.coffee()[::2, ::2][:192, :288]  # 192×288
    big = cv2.resize(photo, (288 * 4, 192 * 4), interpolation=cv2.INTER_CUBIC)
    assert network_size_for(*big.shape[:2], max_side=288) == (192, 288)
    assert network_size_for(*photo.shape[:2], max_side=288) is None
    small_out = dehaze(small_model, photo, max_side=288)
    big_out, t, _ = dehaze(small_model, big, return_aux=True, max_side=288)
    assert big_out.shape == big.shape and big_out.dtype == np.uint8 and t.shape == big.shape[:2]
    drift = np.abs(big_out.reshape(-1, 3).mean(0).astype(float) - small_out.reshape(-1, 3).mean(0))
    assert drift.max() < 2.0, drift
    assert psnr(cv2.resize(big_out, (288, 192), interpolation=cv2.INTER_AREA), small_out) > 28


def test_first_call_equals_later_calls_in_a_fresh_process():
    """The first `dehaze()` of a process (oneDNN picks and caches its kernels then) gives the same
    bytes as later calls, at 2 threads, with the default weights on a 100×150 photo."""
    code = (
        "import hashlib, numpy as np, skimage.data, torch\n"
        "torch.set_num_threads(2)\n"
        "from nedr.model import load_checkpoint, dehaze\n"
        "m = load_checkpoint('nedr')\n"
        "img = np.ascontiguousarray(skimage.data.coffee()[:200:2, :300:2])\n"
        "print(' '.join(hashlib.sha256(dehaze(m, img).tobytes()).hexdigest() for _ in range(3)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert len(out) == 3 and len(set(out)) == 1, out
