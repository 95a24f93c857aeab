"""Fast mode in torch, exportable to ONNX (`nedr.export.fast_export`): the network runs at a fixed
small size inside the graph and guided local-affine upsampling carries J back to the input size.

Dehazing is locally affine in colour (J = I/t + A(1 − 1/t)): at the small size, fit per window the
per-channel affine map small hazy → small J (guided-filter least squares), average the coefficients
over the windows covering each pixel, upsample them bilinearly and apply them to the full-size
input. Only depthwise all-ones Convs (the valid-count box mean of `physics.box_mean`), Resize and
elementwise ops, so the graph exports cleanly and TensorRT takes it. The numpy twin used by the streaming
pipeline is `nedr.runtime.fast` (same box mean, same bilinear convention; it downscales with area
averaging where this graph uses bilinear resizing).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nedr.contract import MIN_SIZE, PAD_MULTIPLE, meets_contract

from .network import NeDR
from .physics import box_mean, window_count

DEFAULT_RADIUS = 2
DEFAULT_EPS = 1e-5


def fit_affine(small_in: torch.Tensor, small_out: torch.Tensor, radius: int = DEFAULT_RADIUS,
               eps: float = DEFAULT_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel, per-channel (a, b) with small_out ≈ a·small_in + b (N×3×h×w each)."""
    n = window_count(small_in, radius)
    mean_x, mean_y = box_mean(small_in, radius, n), box_mean(small_out, radius, n)
    cov = box_mean(small_in * small_out, radius, n) - mean_x * mean_y
    var = box_mean(small_in * small_in, radius, n) - mean_x * mean_x
    a = cov / (var + eps)
    b = mean_y - a * mean_x
    return box_mean(a, radius, n), box_mean(b, radius, n)


def guided_upsample(full: torch.Tensor, small_in: torch.Tensor, small_out: torch.Tensor,
                    radius: int = DEFAULT_RADIUS, eps: float = DEFAULT_EPS) -> torch.Tensor:
    a, b = fit_affine(small_in.float(), small_out.float(), radius, eps)
    size = full.shape[-2:]
    a = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
    b = F.interpolate(b, size=size, mode="bilinear", align_corners=False)
    return (a * full + b).clamp(0.0, 1.0)


class FastNeDR(nn.Module):
    """hazy (N×3×H×W, any H, W) → J at H×W, with the network run at `infer_hw` = (h, w).

    `infer_hw` must meet the network contract (multiples of 32, >= 128); the frame is resized to it
    (aspect ratio not kept: pick an `infer_hw` with the camera's aspect). With `with_transmission`,
    t is returned too, bilinearly upsampled (what runtime stabilisation needs).
    """

    def __init__(self, model: NeDR, infer_hw: tuple[int, int], radius: int = DEFAULT_RADIUS, eps: float = DEFAULT_EPS,
                 with_transmission: bool = False) -> None:
        super().__init__()
        h, w = (int(v) for v in infer_hw)
        if not meets_contract(h, w):
            raise ValueError(f"fast-mode size {h}×{w} breaks the network contract (multiples of {PAD_MULTIPLE}, "
                             f">= {MIN_SIZE})")
        self.model, self.infer_hw = model, (h, w)
        self.radius, self.eps, self.with_transmission = radius, eps, with_transmission

    def forward(self, hazy: torch.Tensor):
        small = F.interpolate(hazy, size=self.infer_hw, mode="bilinear", align_corners=False)
        p = self.model.predict(small)
        clean = guided_upsample(hazy, small, p.clean, self.radius, self.eps)
        if not self.with_transmission:
            return clean
        t = F.interpolate(p.transmission, size=hazy.shape[-2:], mode="bilinear", align_corners=False)
        return clean, t
