"""The prior gate: a small learned mix of the network's transmission and the dark-channel prior's.

Why: the network's t and He et al.'s dark-channel t fail in different places. On the SOTS-indoor
pairs the network under-dehazes (its t too high), on new outdoor scenes the prior over-dehazes
bright surfaces; picking, in each region, the better of the two (known from the ground truth)
would gain 2–5 dB on every evaluation set, while one global blend gains at most 0.3–0.5 dB. The
gate looks at the hazy image and both maps at a quarter of the resolution (the prior's t is
blocky at its 15-pixel patch anyway) with dilated 3×3 convolutions (a ~120-pixel receptive field:
enough to tell a white wall from haze), and outputs a smooth weight w per pixel:

    t = w · t_network + (1 − w) · t_prior,        then the guided filter as before.

It is part of the architecture (`Architecture.prior_gate`), trained with the network frozen
(`nedr train --prior-gate --train-only prior_gate`), and costs ~0.1 GMAC at 480×640.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nedr.contract import T_MAX, T_MIN

GATE_STRIDE = 4  # the gate runs at 1/4 resolution (a divisor of the network's ×32 contract)
GATE_WIDTH = 24
GATE_DILATIONS = (1, 2, 4, 8)


class PriorGate(nn.Module):
    """Per-pixel weight of the network's t against the prior's t (module docstring)."""

    def __init__(self, width: int = GATE_WIDTH, dilations: tuple[int, ...] = GATE_DILATIONS):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 5  # RGB, t_network, t_prior
        for d in dilations:
            layers += [nn.Conv2d(channels, width, 3, padding=d, dilation=d), nn.ReLU(inplace=True)]
            channels = width
        layers.append(nn.Conv2d(width, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def weight(self, image: torch.Tensor, t_network: torch.Tensor, t_prior: torch.Tensor) -> torch.Tensor:
        """w in (0, 1), N×1×H×W (H, W multiples of `GATE_STRIDE`)."""
        small = F.avg_pool2d(torch.cat([image, t_network, t_prior], dim=1), GATE_STRIDE)
        z = F.interpolate(self.body(small), scale_factor=GATE_STRIDE, mode="bilinear", align_corners=False)
        return torch.sigmoid(z)

    def forward(self, image: torch.Tensor, t_network: torch.Tensor, t_prior: torch.Tensor) -> torch.Tensor:
        """The mixed t, in the network's range."""
        w = self.weight(image, t_network, t_prior)
        return (w * t_network + (1 - w) * t_prior).clamp(T_MIN, T_MAX)
