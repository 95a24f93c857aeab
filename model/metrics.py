"""Image-quality metrics as the dehazing literature reports them (docs/model.md §10).

Conventions, fixed here so that every number this package prints means the same thing:

* **Inputs** are uint8 H×W×3 RGB arrays (0–255). Dehazing papers quote PSNR/SSIM on the saved
  8-bit outputs, so a float result must be quantised first; `to_uint8` does that with rounding
  (not truncation, which would bias every pixel down by half a grey level, ≈ −0.3 dB at 30 dB).
  The metric functions refuse other dtypes rather than guess whether a float array is in [0, 1]
  or [0, 255].
* **PSNR** is `nedr.metrics.psnr` with peak 255, the same number as scikit-image's
  `peak_signal_noise_ratio` with `data_range=255`, i.e. the MSE is taken jointly over all three
  channels (not the luma-only PSNR some super-resolution code uses).
  Identical images give `math.inf` (the mathematically correct value, no arbitrary cap), so a
  mean over a set that contains a perfect reconstruction is also inf.
* **SSIM** is scikit-image's `structural_similarity` with `channel_axis=-1, data_range=255` and its
  defaults otherwise: 7×7 uniform window, `gaussian_weights=False`, sample covariance, K1 = 0.01,
  K2 = 0.03, computed per RGB channel and averaged. This is *not* the Wang et al. MATLAB setting
  (11×11 Gaussian, σ = 1.5, population covariance), which gives slightly different values, so
  quote "SSIM (scikit-image defaults)" with these numbers.
* **crop** removes `crop` pixels from every side of both images before either metric; `crop=10`
  is the border crop used with SOTS-indoor. (The SOTS-indoor *ground truth* is 640×480 and is
  centre-cropped by 10 px per side to match the 620×460 hazy images; data prepared that way,
  like ../shared/data/sots-indoor-examples, already has matching sizes, and a further `crop=10`
  then also drops a 10 px border of the matched pair.)
"""
from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from nedr.metrics import psnr as _psnr

DATA_RANGE = 255
SOTS_INDOOR_CROP = 10


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Quantise a float image in [0, 1] to uint8 with round-half-up, clipping out-of-range values.

    Round-half-up (`floor(x·255 + 0.5)`) is what `nedr.model.dehaze` uses for uint8 output, so a
    float result converted here scores exactly like the uint8 result of the same model.
    uint8 input is returned unchanged (no copy).
    """
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"to_uint8() takes float images in [0, 1] (or uint8), got dtype {image.dtype}")
    return np.floor(np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def crop_border(image: np.ndarray, crop: int) -> np.ndarray:
    """Drop `crop` pixels from each side (a view, no copy); `crop=0` returns the image as is."""
    if crop < 0:
        raise ValueError(f"crop must be >= 0, got {crop}")
    if crop == 0:
        return image
    h, w = image.shape[:2]
    if h <= 2 * crop or w <= 2 * crop:
        raise ValueError(f"crop={crop} px per side leaves nothing of a {h}×{w} image")
    return image[crop:h - crop, crop:w - crop]


def _check_pair(pred: np.ndarray, target: np.ndarray) -> None:
    for label, img in (("pred", pred), ("target", target)):
        if not isinstance(img, np.ndarray):
            raise TypeError(f"{label} must be a numpy array, got {type(img).__name__}")
        if img.dtype != np.uint8:
            raise TypeError(f"{label} must be uint8 (0–255), got {img.dtype}; convert floats in [0, 1] "
                            "with nedr.model.metrics.to_uint8")
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"{label} must be an H×W×3 RGB array, got shape {img.shape}")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target differ in shape: {pred.shape} vs {target.shape}")


def psnr(pred: np.ndarray, target: np.ndarray, crop: int = 0) -> float:
    """PSNR in dB of uint8 RGB `pred` against `target` (data_range 255, MSE over all channels).

    Returns `math.inf` for identical images. A uniform error of one grey level scores
    20·log10(255) ≈ 48.13 dB.
    """
    _check_pair(pred, target)
    return _psnr(crop_border(pred, crop), crop_border(target, crop), peak=DATA_RANGE)


def ssim(pred: np.ndarray, target: np.ndarray, crop: int = 0) -> float:
    """SSIM of uint8 RGB images: scikit-image defaults, channel_axis=-1, data_range=255.

    See the module docstring for why the settings are spelled out (they differ from MATLAB's).
    Needs at least 7×7 pixels after cropping (the window size).
    """
    _check_pair(pred, target)
    pred, target = crop_border(pred, crop), crop_border(target, crop)
    if min(pred.shape[:2]) < 7:
        raise ValueError(f"SSIM needs at least 7×7 pixels after cropping, got {pred.shape[0]}×{pred.shape[1]}")
    return float(structural_similarity(target, pred, channel_axis=-1, data_range=DATA_RANGE))


__all__ = ["DATA_RANGE", "SOTS_INDOOR_CROP", "to_uint8", "crop_border", "psnr", "ssim"]
