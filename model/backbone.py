"""EfficientNet-Lite3 trunk (TF port), written here so no timm/geffnet download path exists.

Module indices mirror the public checkpoint (`pretrained.layer1.3.0.conv_dw` ...), so state-dict
keys load one to one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3  # TensorFlow's default, kept by the TF-ported weights


def _same_pad(kernel: int) -> tuple[int, int, int, int]:
    """TF "SAME" padding of a stride-2 conv on an even input: (left, right, top, bottom).

    The ×32 input contract makes every stride-2 input even, so the asymmetric pad is a constant
    and the ONNX graph needs no Shape arithmetic to compute it.
    """
    total = kernel - 2
    before = total // 2
    return (before, total - before, before, total - before)


class Conv2dSame(nn.Conv2d):
    """Stride-2 conv with TF SAME padding (a separate zero pad, then an unpadded conv)."""

    def __init__(self, cin: int, cout: int, kernel: int, groups: int = 1, bias: bool = False):
        super().__init__(cin, cout, kernel, stride=2, padding=0, groups=groups, bias=bias)
        self.tf_pad = _same_pad(kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.tf_pad))


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    if stride == 2:
        return Conv2dSame(cin, cout, kernel, groups=groups)
    return nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS)


class DepthwiseSeparable(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv_dw = _conv(cin, cin, 3, groups=cin)
        self.bn1 = _bn(cin)
        self.conv_pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn2 = _bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.bn1(self.conv_dw(x)))
        return self.bn2(self.conv_pw(x))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int = 6):
        super().__init__()
        mid = cin * expansion
        self.conv_pw = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = _bn(mid)
        self.conv_dw = _conv(mid, mid, kernel, stride=stride, groups=mid)
        self.bn2 = _bn(mid)
        self.conv_pwl = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = _bn(cout)
        self.has_skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.bn1(self.conv_pw(x)))
        y = F.relu6(self.bn2(self.conv_dw(y)))
        y = self.bn3(self.conv_pwl(y))
        return x + y if self.has_skip else y


def _stage(cin: int, cout: int, kernel: int, stride: int, repeats: int) -> nn.Sequential:
    blocks = [InvertedResidual(cin, cout, kernel, stride)]
    blocks += [InvertedResidual(cout, cout, kernel, 1) for _ in range(repeats - 1)]
    return nn.Sequential(*blocks)


class EfficientNetLite3Trunk(nn.Module):
    """Features at strides 4/8/16/32 with 32/48/136/384 channels (docs/model.md §2)."""

    channels = (32, 48, 136, 384)

    def __init__(self):
        super().__init__()
        self.layer1 = nn.Sequential(
            Conv2dSame(3, 32, 3),
            _bn(32),
            nn.ReLU6(),
            nn.Sequential(DepthwiseSeparable(32, 24)),
            _stage(24, 32, 3, 2, 3),
        )
        self.layer2 = nn.Sequential(_stage(32, 48, 5, 2, 3))
        self.layer3 = nn.Sequential(_stage(48, 96, 3, 2, 5), _stage(96, 136, 5, 1, 5))
        self.layer4 = nn.Sequential(_stage(136, 232, 5, 2, 6), _stage(232, 384, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        l1 = self.layer1(x)
        l2 = self.layer2(l1)
        l3 = self.layer3(l2)
        l4 = self.layer4(l3)
        return l1, l2, l3, l4
