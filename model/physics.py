"""Scattering-model pieces outside the network: guided filter and atmospheric light (docs/model.md §6–7).

All of it runs in FP32 whatever the network precision: box sums of an 81×81 window and the
atmospheric light are where half precision breaks the math.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from nedr.contract import A_MAX, DARK_PATCH, TOP_FRACTION_DIVISOR, TOPK_MAX

GF_RADIUS = 40
GF_EPS = 1e-3
GUIDE_MIN_RANGE = 1e-6  # below this, the image is flat and the filter returns the window mean of t
ATMOSPHERE_MODES = ("dark_channel", "max", "brightest")
PRIOR_OMEGA = 0.95  # He et al.: the prior's t keeps a trace of haze (aerial perspective)
A_FLOOR = 1e-3  # I / A on a black A
BRIGHTEST_COUNT = 16  # "brightest" averages this many of the brightest candidates (see atmospheric_light)


def _ones_like_axis(x: torch.Tensor, axis: int) -> torch.Tensor:
    """1×1×H×1 (axis 2) or 1×1×1×W (axis 3) ones, from a slice of x: no Shape/ConstantOfShape in
    an exported graph."""
    line = x[:1, :1, :, :1] if axis == 2 else x[:1, :1, :1, :]
    return line * 0 + 1


def window_count(x: torch.Tensor, radius: int) -> torch.Tensor:
    """1×1×H×W: how many pixels of each (2r+1)² window lie inside x's H×W (rows × columns)."""
    k = 2 * radius + 1
    ones = torch.ones(1, 1, 1, k, dtype=x.dtype, device=x.device)
    per_col = F.conv2d(_ones_like_axis(x, 3), ones, padding=(0, radius))
    per_row = F.conv2d(_ones_like_axis(x, 2), ones.transpose(2, 3), padding=(radius, 0))
    return per_row * per_col


def box_mean(x: torch.Tensor, radius: int, count: torch.Tensor | None = None) -> torch.Tensor:
    """Window mean over valid pixels only; separable, so O(r) per pixel instead of O(r²).

    Window sums are depthwise convolutions with all-ones 1×k and k×1 kernels (zero padding adds
    nothing), divided by the valid-pixel count, which factorises into row × column counts. Convs
    rather than AveragePool(count_include_pad=0): ONNX Runtime's CPU pooling kernel is ~10× slower
    than its depthwise conv at k = 81 (it was 37–50 % of an INT8 frame), PyTorch's CPU avg_pool2d
    ~2×; TensorRT takes both. `count`: `window_count(x, radius)`, when several means share it.
    """
    k = 2 * radius + 1
    channels = int(x.shape[1])
    row = torch.ones(channels, 1, 1, k, dtype=x.dtype, device=x.device)
    col = torch.ones(channels, 1, k, 1, dtype=x.dtype, device=x.device)
    total = F.conv2d(F.conv2d(x, row, padding=(0, radius), groups=channels), col, padding=(radius, 0), groups=channels)
    return total / (window_count(x, radius) if count is None else count)


def guided_filter(image: torch.Tensor, t: torch.Tensor, radius: int = GF_RADIUS,
                  eps: float = GF_EPS) -> torch.Tensor:
    """Refine t with one grey-guide filter per colour channel of the min–max normalised image."""
    lo = image.amin(dim=(1, 2, 3), keepdim=True)
    hi = image.amax(dim=(1, 2, 3), keepdim=True)
    guide = (image - lo) / (hi - lo).clamp(min=GUIDE_MIN_RANGE)  # a flat frame: guide 0, not 0/0
    n = window_count(t, radius)
    mean_i = box_mean(guide, radius, n)
    mean_t = box_mean(t, radius, n)
    cov = box_mean(guide * t, radius, n) - mean_i * mean_t
    var = box_mean(guide * guide, radius, n) - mean_i * mean_i
    a = cov / (var + eps)
    b = mean_t - a * mean_i
    return (box_mean(a, radius, n) * guide + box_mean(b, radius, n)).mean(dim=1, keepdim=True)


def dark_channel(image: torch.Tensor, patch: int = DARK_PATCH) -> torch.Tensor:
    """Channel min followed by a patch×patch min filter (border padded with 1, as published)."""
    pad = patch // 2
    neg = -image.amin(dim=1, keepdim=True)
    neg = F.pad(neg, (pad, pad, pad, pad), value=-1.0)
    neg = F.max_pool2d(neg, (1, patch), stride=1)
    return -F.max_pool2d(neg, (patch, 1), stride=1)


def top_count(height: int, width: int) -> int:
    """How many dark-channel pixels pick A: ⌊0.001·H·W⌋, as the public code computes it.

    Integer arithmetic (equal to the public int(H·W·0.001) for every H·W below 8·10⁷, checked
    exhaustively) so that an ONNX trace keeps K a function of the input shape instead of a constant.
    """
    return height * width // TOP_FRACTION_DIVISOR


def atmospheric_light(image: torch.Tensor, mode: str = "dark_channel") -> torch.Tensor:
    """Per-channel A (N×3×1×1).

    * "dark_channel" (public code, outdoor sets): per-channel max over the ⌊0.001·H·W⌋ pixels
      with the brightest dark channel, clipped at 220/255.
    * "max" (public code, SOTS-indoor): per-channel max over the image.
    * "brightest" (after He et al.): the mean RGB of the `BRIGHTEST_COUNT` brightest pixels (R+G+B)
      among those dark-channel pixels, unclipped: real airlight is often 0.88–0.95, and a clipped A
      leaves dense haze bright grey. He takes the single brightest pixel; on a near-tie that pick
      flips between ONNX Runtime and PyTorch and moves A for the whole frame (53 dB between the
      two), while a mean of 16 moves by a sixteenth of the swapped pixels' difference, and scores
      the same on SOTS and the held-out sets (within 0.03 dB). Both cuts are thresholds that keep
      every tie (pixels whose dark channel equals the k-th largest, whose brightness equals the
      16th): which of several equal pixels a TopK returns is the implementation's choice, and a
      bikes.mp4 frame with 49 candidates and a run of equal dark-channel values at the cut moved A
      by 0.003 between ONNX Runtime and PyTorch that way. A set defined by values alone is the same
      in both.
    """
    if mode == "max":
        return image.amax(dim=(2, 3), keepdim=True)
    if mode not in ATMOSPHERE_MODES:
        raise ValueError(f"atmosphere must be one of {ATMOSPHERE_MODES}, got {mode!r}")
    h, w = image.shape[-2:]
    k = top_count(h, w)
    if isinstance(k, torch.Tensor):  # ONNX trace: K follows the input shape, within TensorRT's limit
        k = torch.minimum(k, torch.tensor(TOPK_MAX))  # Min, not Clip: TensorRT's Clip is float-only
    elif k < 1:
        raise ValueError(f"dark-channel A needs H·W >= 1000, got {h}×{w}")
    dark = dark_channel(image).flatten(1)  # N×HW
    if mode == "brightest":
        cut = dark.topk(k, dim=1).values[:, -1:]  # N×1: the k-th largest dark channel
        flat = image.flatten(2)  # N×3×HW
        # R + G + B as two Adds in a fixed order: the same float sums in every runtime, so ties stay ties
        brightness = flat[:, 0] + flat[:, 1] + flat[:, 2]
        brightness = torch.where(dark >= cut, brightness, torch.full_like(brightness, -1.0))  # candidates only
        m = torch.minimum(k, torch.tensor(BRIGHTEST_COUNT)) if isinstance(k, torch.Tensor) else min(k, BRIGHTEST_COUNT)
        chosen = (brightness >= brightness.topk(m, dim=1).values[:, -1:]).to(image.dtype)  # N×HW, ties kept
        return ((flat * chosen[:, None]).sum(dim=2) / chosen.sum(dim=1, keepdim=True))[..., None, None]
    idx = dark.topk(k, dim=1).indices  # N×k
    # expand to the literal 3 RGB channels: a traced `c` would put Shape arithmetic in the ONNX graph
    picked = image.flatten(2).gather(2, idx[:, None, :].expand(-1, 3, -1))  # N×3×k
    return picked.amax(dim=2).clamp(max=A_MAX)[..., None, None]


def prior_transmission(image: torch.Tensor, a: torch.Tensor, omega: float = PRIOR_OMEGA) -> torch.Tensor:
    """He et al.'s dark-channel t = 1 − ω·dark(I / A), blocky (no refinement): the prior gate mixes
    it with the network's t before the guided filter refines both together."""
    return 1.0 - omega * dark_channel(image / a.clamp(min=A_FLOOR))


def recover(image: torch.Tensor, t: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Invert I = J·t + A·(1 − t)."""
    return ((image - a) / t + a).clamp(0.0, 1.0)
