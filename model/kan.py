"""KAN-CID block: depthwise 7×7 then a per-pixel KANLinear → GELU → KANLinear (docs/model.md §4).

KANLinear is evaluated in closed form on its fixed uniform knots: the eight cubic B-spline bases
come from one grouped 1×1 conv (x − centre_j, scaled) and ReLU powers, so the exported graph is
Conv/Relu/Pow/Mul only, with no data-dependent indexing or reshapes of activations.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GRID_SIZE = 5
SPLINE_ORDER = 3
NUM_BASES = GRID_SIZE + SPLINE_ORDER  # 8
KNOT_STEP = 2.0 / GRID_SIZE  # 0.4 on the range [-1, 1]


def uniform_knots() -> torch.Tensor:
    """The 12 knots −2.2 … 2.2 that the public KANLinear registers as its `grid` buffer."""
    k = torch.arange(-SPLINE_ORDER, GRID_SIZE + SPLINE_ORDER + 1, dtype=torch.float32)
    return k * KNOT_STEP - 1.0


def cubic_bspline(r: torch.Tensor) -> torch.Tensor:
    """Uniform cubic B-spline of the distance r = |u| from the centre of its support (in knot steps).

    (2 − r)₊³/6 − 4(1 − r)₊³/6 equals (4 − 6r² + 3r³)/6 for r < 1 and (2 − r)³/6 for 1 ≤ r < 2.
    """
    return (F.relu(2.0 - r) ** 3 - 4.0 * F.relu(1.0 - r) ** 3) / 6.0


class KANLinear(nn.Module):
    """Efficient-KAN linear layer applied per pixel on an N×C×H×W map."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.cin, self.cout = cin, cout
        self.base_weight = nn.Parameter(torch.empty(cout, cin))
        self.spline_weight = nn.Parameter(torch.empty(cout, cin, NUM_BASES))
        self.spline_scaler = nn.Parameter(torch.empty(cout, cin))
        self.register_buffer("grid", uniform_knots().expand(cin, -1).contiguous())
        # Basis centres t_j + 2·step; a grouped 1×1 conv maps channel i to 8 channels i·8 + j
        # holding (x_i − centre_j)/step, which is the layout spline_weight flattens to.
        centres = uniform_knots()[:NUM_BASES] + 2 * KNOT_STEP
        self.register_buffer(
            "basis_scale", torch.full((cin * NUM_BASES, 1, 1, 1), 1.0 / KNOT_STEP), persistent=False
        )
        self.register_buffer(
            "basis_shift", (-centres / KNOT_STEP).repeat(cin), persistent=False
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.base_weight, a=5**0.5)
        nn.init.normal_(self.spline_weight, std=0.1 / self.cin**0.5)
        nn.init.ones_(self.spline_scaler)

    def bases(self, x: torch.Tensor) -> torch.Tensor:
        """B-spline bases of every input channel: N×(8·C)×H×W, channel index i·8 + j."""
        u = F.conv2d(x, self.basis_scale.to(x.dtype), self.basis_shift.to(x.dtype), groups=self.cin)
        return cubic_bspline(u.abs())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.conv2d(F.silu(x), self.base_weight[:, :, None, None])
        spline_w = (self.spline_weight * self.spline_scaler[..., None]).reshape(self.cout, -1, 1, 1)
        return base + F.conv2d(self.bases(x), spline_w)


class ChannelIndependent(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.dconv = nn.Conv2d(c, c, 7, padding=3, groups=c, padding_mode="reflect")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dconv(x)


class ChannelDependent(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.fc1 = KANLinear(c, c)
        self.fc2 = KANLinear(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class KANCID(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.channel_independent = ChannelIndependent(c)
        self.channel_dependent = ChannelDependent(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_dependent(self.channel_independent(x))
