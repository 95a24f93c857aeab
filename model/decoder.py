"""Fusion decoder (`scratch`), IDRM (`nrn`) and DREM (`drem`): model.md §3 and §5."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def up2(x: torch.Tensor, align_corners: bool) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=align_corners)


class ResidualConvUnit(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, padding_mode="reflect")
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, padding_mode="reflect")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """MiDaS fusion: (skip + RCU1(lateral)) → RCU2 → ×2 (align_corners=True) → 1×1 conv.

    refinenet4 has a single input, so it is built without RCU1 (the public model registers one
    that never runs; its weights are dropped on load).
    """

    def __init__(self, c: int, cout: int, lateral: bool = True):
        super().__init__()
        if lateral:
            self.resConfUnit1 = ResidualConvUnit(c)
        self.resConfUnit2 = ResidualConvUnit(c)
        self.out_conv = nn.Conv2d(c, cout, 1)

    def forward(self, x: torch.Tensor, lateral: torch.Tensor | None = None) -> torch.Tensor:
        if lateral is not None:
            x = x + self.resConfUnit1(lateral)
        return self.out_conv(up2(self.resConfUnit2(x), align_corners=True))


class Upsample2x(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return up2(x, align_corners=False)


def _reflect_conv3(cin: int, cout: int, bias: bool) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3, bias=bias))


class Scratch(nn.Module):
    def __init__(self, backbone_channels: tuple[int, ...]):
        super().__init__()
        c1, c2, c3, c4 = backbone_channels
        self.layer1_rn = _reflect_conv3(c1, 32, bias=False)
        self.layer2_rn = _reflect_conv3(c2, 64, bias=False)
        self.layer3_rn = _reflect_conv3(c3, 128, bias=False)
        self.layer4_rn = _reflect_conv3(c4, 256, bias=False)
        self.refinenet4 = FusionBlock(256, 128, lateral=False)
        self.refinenet3 = FusionBlock(128, 64)
        self.refinenet2 = FusionBlock(64, 32)
        self.refinenet1 = FusionBlock(32, 32)
        self.output_conv = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(32, 16, 3),
            Upsample2x(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(16, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 1, 1),
        )


class ImplicitMLP(nn.Module):
    """Holds the LIIF MLP in its public Linear layout (`nrn.imnet.layers.{0,2,4,6}`)."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(308, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
            nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 32),
        )


class IDRM(nn.Module):
    """Implicit degradation representation module, evaluated in its exact convolutional form.

    The public LIIF query grid equals the feature grid, so relative coordinates are 0, the cell is
    (2, 2) and the four ensemble members coincide: the MLP's first Linear acts on a 3×3 unfold and
    two constant inputs, i.e. a 3×3 conv with a shifted bias (model.md §5).
    """

    UNFOLD = 32 * 9  # columns 0..287 see the 3×3 neighbourhood; 288..305 see zeros
    CELL_COLUMNS = slice(306, 308)  # a slice, not an index list: no host tensor inside CUDA graphs
    CELL_VALUE = 2.0

    def __init__(self):
        super().__init__()
        self.imnet = ImplicitMLP()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, hidden1, hidden2, last = self.imnet.layers[0::2]
        w1 = first.weight[:, : self.UNFOLD].reshape(-1, 32, 3, 3)
        b1 = first.bias + self.CELL_VALUE * first.weight[:, self.CELL_COLUMNS].sum(dim=1)
        y = F.relu(F.conv2d(x, w1, b1, padding=1))
        y = F.relu(F.conv2d(y, hidden1.weight[:, :, None, None], hidden1.bias))
        y = F.relu(F.conv2d(y, hidden2.weight[:, :, None, None], hidden2.bias))
        return F.conv2d(y, last.weight[:, :, None, None], last.bias)


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, growth, 5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, F.relu(self.conv(x))], dim=1)


class ResidualDenseBlock(nn.Module):
    def __init__(self, c: int = 64, growth: int = 64, num_layers: int = 3):
        super().__init__()
        self.layers = nn.Sequential(*[DenseLayer(c + i * growth, growth) for i in range(num_layers)])
        self.lff = nn.Conv2d(c + num_layers * growth, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.lff(self.layers(x))


class DREM(nn.Module):
    """Dense residual enhancement module, registered and trained (the public code re-creates it
    randomly on every call; see README "Differences from the public NeDR code")."""

    def __init__(self, c: int = 32, mid: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(c, mid, 5, padding=2)
        self.RDB_1 = nn.Sequential(ResidualDenseBlock(mid))
        self.RDB_2 = nn.Sequential(ResidualDenseBlock(mid))
        self.conv_block2 = nn.Sequential(nn.Conv2d(mid, mid, 5, padding=2))
        self.conv2 = nn.Conv2d(mid, c, 5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o1 = self.conv1(x)
        o2 = F.relu(self.RDB_1(o1))
        o3 = F.relu(self.RDB_2(o2))
        return x - self.conv2(F.relu(self.conv_block2(o1 + o2 + o3)))
