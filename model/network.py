"""The NeDR hazy→clean generator (public `HazeRemovalNet`, model.md)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from .backbone import EfficientNetLite3Trunk
from .decoder import DREM, IDRM, Scratch
from .kan import KANCID
from .physics import ATMOSPHERE_MODES, GF_RADIUS, atmospheric_light, guided_filter, recover

T_MIN, T_MAX = 0.05, 0.95
BETA_MIN, BETA_MAX = 0.6, 1.8
PAD_MULTIPLE = 32
MIN_SIZE = 128


@dataclass
class Prediction:
    """Everything one forward produces; training needs t before the filter and β."""

    clean: torch.Tensor  # J, N×3×H×W
    transmission: torch.Tensor  # t after the optional guided filter, N×1×H×W
    atmosphere: torch.Tensor  # A, N×3×1×1
    beta: torch.Tensor | None = None  # N×1×1×1


class NeDR(nn.Module):
    """Predicts t (and β) and inverts the scattering model; J never comes from the decoder directly.

    `atmosphere` ("dark_channel" | "max") and `guided_filter` are plain attributes, switchable
    after loading.
    """

    def __init__(self, atmosphere: str = "dark_channel", guided_filter: bool = True):
        super().__init__()
        self.pretrained = EfficientNetLite3Trunk()
        self.scratch = Scratch(EfficientNetLite3Trunk.channels)
        self.cid_32, self.cid_64, self.cid_128, self.cid_256 = (KANCID(c) for c in (32, 64, 128, 256))
        self.nrn = IDRM()
        self.drem = DREM()
        self.final_conv_beta_1 = nn.Sequential(nn.Conv2d(sum(EfficientNetLite3Trunk.channels), 64, 1))
        self.final_conv_beta_2 = nn.Sequential(nn.Conv2d(64, 1, 1))
        self.atmosphere = atmosphere
        self.guided_filter = guided_filter
        self.config: dict = {}  # provenance read from our checkpoint format

    @property
    def atmosphere(self) -> str:
        return self._atmosphere

    @atmosphere.setter
    def atmosphere(self, mode: str) -> None:
        if mode not in ATMOSPHERE_MODES:
            raise ValueError(f"atmosphere must be one of {ATMOSPHERE_MODES}, got {mode!r}")
        self._atmosphere = mode

    def transmission_logit(self, x: torch.Tensor, with_beta: bool = False):
        """Decoder output z (N×1×H×W) before tanh; with_beta also returns the β logit."""
        feats = self.pretrained(x)
        s = self.scratch
        r1 = self.cid_32(s.layer1_rn(feats[0]))
        r2 = self.cid_64(s.layer2_rn(feats[1]))
        r3 = self.cid_128(s.layer3_rn(feats[2]))
        r4 = self.cid_256(s.layer4_rn(feats[3]))
        p = s.refinenet4(r4)
        p = s.refinenet3(p, r3)
        p = s.refinenet2(p, r2)
        p = s.refinenet1(p, r1)
        z = s.output_conv(self.drem(self.nrn(p)))
        if not with_beta:
            return z
        pooled = torch.cat([f.mean(dim=(2, 3), keepdim=True) for f in feats], dim=1)
        return z, self.final_conv_beta_2(self.final_conv_beta_1(pooled))

    def predict(self, x: torch.Tensor, with_beta: bool = False, guided: bool | None = None) -> Prediction:
        _check_network_input(x)
        out = self.transmission_logit(x, with_beta)
        z, beta_logit = out if with_beta else (out, None)
        t = ((torch.tanh(z) + 1) / 2).clamp(T_MIN, T_MAX)
        guided = self.guided_filter if guided is None else guided
        if guided:
            if min(x.shape[-2:]) > 2 * GF_RADIUS + 1:
                t = guided_filter(x.float(), t.float()).to(t.dtype)
            else:
                warnings.warn(f"guided filter skipped: input {tuple(x.shape[-2:])} is not larger than 81×81",
                              stacklevel=2)
        a = atmospheric_light(x, self.atmosphere)
        beta = None
        if beta_logit is not None:
            beta = BETA_MIN + (BETA_MAX - BETA_MIN) * (torch.tanh(beta_logit) + 1) / 2
        return Prediction(recover(x, t, a), t, a, beta)

    def forward(self, x: torch.Tensor, return_aux: bool = False):
        p = self.predict(x)
        return (p.clean, p.transmission, p.atmosphere) if return_aux else p.clean


def _check_network_input(x: torch.Tensor) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"NeDR expects N×3×H×W, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return
    if h % PAD_MULTIPLE or w % PAD_MULTIPLE or min(h, w) < MIN_SIZE:
        raise ValueError(
            f"NeDR needs H and W to be multiples of {PAD_MULTIPLE} and >= {MIN_SIZE}, got {h}×{w}; "
            "use nedr.model.dehaze() to pad and crop automatically"
        )


def parameter_groups(model: NeDR) -> dict[str, int]:
    """Parameter counts per part, the numbers model.md §8 states."""
    def count(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    return {
        "backbone": count(model.pretrained),
        "scratch": count(model.scratch),
        "kan_cid": sum(count(getattr(model, f"cid_{c}")) for c in (32, 64, 128, 256)),
        "idrm": count(model.nrn),
        "drem": count(model.drem),
        "beta_head": count(model.final_conv_beta_1) + count(model.final_conv_beta_2),
    }
