"""PSNR: the one formula behind every accuracy number nedr prints (numpy only, no torch).

Each stage calls it with its own peak, which is what differs between the numbers, not the formula:

* images as saved, uint8 with peak 255: `nedr.model.metrics.psnr`, the dehazing literature's
  convention (it checks dtypes and crops borders, then calls `psnr` here);
* network outputs against a reference, J in [0, 1] with peak 1: INT8 vs FP32 (`nedr quantize`,
  its layer search, `nedr bench`);
* the FP16 export check, with peak = the reference's maximum: Polygraphy's convention, so its
  numbers read like those of `nedr.export.verify`, which Polygraphy computes.

The MSE is scikit-image's (float64, jointly over all elements, channels included); a pooled MSE over
several frames turns into dB with the same 10·log10(peak² / MSE), so single-image numbers equal
scikit-image's `peak_signal_noise_ratio` exactly. A zero MSE gives `math.inf`.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def mean_squared_error(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean of the squared difference over all elements, in float64 (uint8 cannot overflow)."""
    from skimage.metrics import mean_squared_error as skimage_mse

    return float(skimage_mse(np.asarray(target), np.asarray(pred)))


def psnr_from_mse(mse: float, peak: float = 1.0) -> float:
    """10·log10(peak² / mse) in dB; `math.inf` when `mse` is 0 (identical inputs)."""
    return math.inf if mse <= 0 else float(10 * np.log10(float(peak) ** 2 / mse))


def psnr(pred: np.ndarray, target: np.ndarray, peak: float = 1.0) -> float:
    """PSNR in dB of `pred` against `target`; `peak` is the data range (1 for J in [0, 1])."""
    return psnr_from_mse(mean_squared_error(pred, target), peak)


def psnr_over_frames(outputs: Sequence[np.ndarray], references: Sequence[np.ndarray],
                     peak: float = 1.0) -> tuple[float, float]:
    """(PSNR of the MSE over all frames' pixels, worst single frame): the first says how close a
    set is overall, the second catches one bad frame that the pooled MSE would hide."""
    errors = [mean_squared_error(o, r) for o, r in zip(outputs, references)]
    return psnr_from_mse(float(np.mean(errors)), peak), min(psnr_from_mse(e, peak) for e in errors)


__all__ = ["mean_squared_error", "psnr_from_mse", "psnr", "psnr_over_frames"]
