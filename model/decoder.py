"""Fusion decoder (`scratch`), IDRM (`nrn`) and DREM (`drem`): docs/model.md §3 and §5."""
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


PUBLIC_FEATURES = (32, 64, 128, 256)


class Scratch(nn.Module):
    """`features`: channels of the four fusion levels, finest first (public: 32, 64, 128, 256)."""

    def __init__(self, backbone_channels: tuple[int, ...], features: tuple[int, ...] = PUBLIC_FEATURES):
        super().__init__()
        c1, c2, c3, c4 = backbone_channels
        f1, f2, f3, f4 = features
        self.layer1_rn = _reflect_conv3(c1, f1, bias=False)
        self.layer2_rn = _reflect_conv3(c2, f2, bias=False)
        self.layer3_rn = _reflect_conv3(c3, f3, bias=False)
        self.layer4_rn = _reflect_conv3(c4, f4, bias=False)
        self.refinenet4 = FusionBlock(f4, f3, lateral=False)
        self.refinenet3 = FusionBlock(f3, f2)
        self.refinenet2 = FusionBlock(f2, f1)
        self.refinenet1 = FusionBlock(f1, f1)
        self.output_conv = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(f1, f1 // 2, 3),
            Upsample2x(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(f1 // 2, f1, 3),
            nn.ReLU(),
            nn.Conv2d(f1, 1, 1),
        )


class ImplicitMLP(nn.Module):
    """Holds the LIIF MLP in its public Linear layout (`nrn.imnet.layers.{0,2,4,6}`): inputs are
    the 3×3 unfold (9c), 18 coordinate-encoding columns and the 2 cell columns (308 for c = 32)."""

    def __init__(self, c: int = 32, hidden: int = 256):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(9 * c + IDRM.EXTRA_COLUMNS, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, c),
        )


class IDRM(nn.Module):
    """Implicit degradation representation module, evaluated in its exact convolutional form.

    The public LIIF query grid equals the feature grid, so relative coordinates are 0, the cell is
    (2, 2) and the four ensemble members coincide: the MLP's first Linear acts on a 3×3 unfold and
    two constant inputs, i.e. a 3×3 conv with a shifted bias (docs/model.md §5).
    """

    EXTRA_COLUMNS = 20  # after the 9c unfold columns: 18 that see zeros, then the 2 cell columns
    CELL_VALUE = 2.0

    def __init__(self, c: int = 32, hidden: int = 256):
        super().__init__()
        self.c = c
        self.imnet = ImplicitMLP(c, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, hidden1, hidden2, last = self.imnet.layers[0::2]
        unfold = 9 * self.c
        w1 = first.weight[:, :unfold].reshape(-1, self.c, 3, 3)
        # a slice, not an index list: no host tensor inside CUDA graphs
        cell = first.weight[:, unfold + self.EXTRA_COLUMNS - 2: unfold + self.EXTRA_COLUMNS]
        b1 = first.bias + self.CELL_VALUE * cell.sum(dim=1)
        y = F.relu(F.conv2d(x, w1, b1, padding=1))
        y = F.relu(F.conv2d(y, hidden1.weight[:, :, None, None], hidden1.bias))
        y = F.relu(F.conv2d(y, hidden2.weight[:, :, None, None], hidden2.bias))
        return F.conv2d(y, last.weight[:, :, None, None], last.bias)


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int, kernel: int = 5):
        super().__init__()
        self.conv = nn.Conv2d(cin, growth, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, F.relu(self.conv(x))], dim=1)


class ResidualDenseBlock(nn.Module):
    def __init__(self, c: int = 64, growth: int = 64, num_layers: int = 3, kernel: int = 5):
        super().__init__()
        self.layers = nn.Sequential(*[DenseLayer(c + i * growth, growth, kernel) for i in range(num_layers)])
        self.lff = nn.Conv2d(c + num_layers * growth, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.lff(self.layers(x))


class DREM(nn.Module):
    """Dense residual enhancement module, registered and trained (the public code re-creates it
    randomly on every call; see README "Differences from the public NeDR code").

    Public shape: width 64, 5×5 kernels, two RDBs (`RDB_1`, `RDB_2`) of three dense layers; the
    sum feeding `conv_block2` runs over conv1's output and every RDB's.
    """

    def __init__(self, c: int = 32, mid: int = 64, kernel: int = 5, blocks: int = 2, layers: int = 3):
        super().__init__()
        pad = kernel // 2
        self.blocks = blocks
        self.conv1 = nn.Conv2d(c, mid, kernel, padding=pad)
        for i in range(1, blocks + 1):
            self.add_module(f"RDB_{i}", nn.Sequential(ResidualDenseBlock(mid, mid, layers, kernel)))
        self.conv_block2 = nn.Sequential(nn.Conv2d(mid, mid, kernel, padding=pad))
        self.conv2 = nn.Conv2d(mid, c, kernel, padding=pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x)
        total = h
        for i in range(1, self.blocks + 1):
            h = F.relu(getattr(self, f"RDB_{i}")(h))
            total = total + h
        return x - self.conv2(F.relu(self.conv_block2(total)))
