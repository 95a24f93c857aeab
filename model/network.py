"""The NeDR hazy→clean generator (public `HazeRemovalNet`, docs/model.md)."""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import torch
from torch import nn

from nedr.contract import MIN_SIZE, PAD_MULTIPLE, T_MAX, T_MIN, meets_contract

from .backbone import EfficientNetLite3Trunk
from .decoder import DREM, IDRM, PUBLIC_FEATURES, Scratch
from .kan import KANCID
from .physics import ATMOSPHERE_MODES, GF_RADIUS, atmospheric_light, guided_filter, prior_transmission, recover
from .prior_gate import PriorGate

BETA_MIN, BETA_MAX = 0.6, 1.8


@dataclass(frozen=True)
class Architecture:
    """The sizes a lighter NeDR may change; the defaults are the public network (docs/model.md), which
    public checkpoints and the parity fixture need. Saved in our checkpoint's config."""

    decoder_features: tuple[int, int, int, int] = PUBLIC_FEATURES  # fusion levels, finest first
    idrm_hidden: int = 256
    drem_width: int = 64
    drem_kernel: int = 5
    drem_blocks: int = 2  # residual dense blocks
    rdb_layers: int = 3  # dense layers per block
    prior_gate: bool = False  # mix t with the dark-channel prior's (nedr.model.prior_gate); not public

    def __post_init__(self):
        object.__setattr__(self, "decoder_features", tuple(int(f) for f in self.decoder_features))
        if len(self.decoder_features) != 4 or min(self.decoder_features) < 2 or self.decoder_features[0] % 2:
            raise ValueError(f"decoder_features must be 4 channel counts (the first even), got {self.decoder_features}")
        if self.drem_kernel % 2 == 0 or self.drem_kernel < 1:
            raise ValueError(f"drem_kernel must be odd, got {self.drem_kernel}")
        for name in ("idrm_hidden", "drem_width", "drem_blocks", "rdb_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> "Architecture":
        """From a checkpoint's `architecture` block (unknown keys are refused, missing ones public)."""
        config = dict(config or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known - {"atmosphere", "guided_filter", "prior_mix"})
        if unknown:
            raise ValueError(f"unknown architecture options {unknown}")
        return cls(**{k: v for k, v in config.items() if k in known})

    def to_config(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


PUBLIC = Architecture()
# nedr-s: DREM at half width with 3×3 kernels and one dense block, a narrow IDRM; backbone, fusion
# decoder and KAN-CID keep the public sizes, so they start from the full model's weights.
ARCHITECTURES = {"nedr": PUBLIC, "nedr-s": Architecture(drem_width=32, drem_kernel=3, drem_blocks=1, idrm_hidden=64)}


@dataclass
class Prediction:
    """Everything one forward produces; training needs t before the filter and β."""

    clean: torch.Tensor  # J, N×3×H×W
    transmission: torch.Tensor  # t after the optional guided filter, N×1×H×W
    atmosphere: torch.Tensor  # A, N×3×1×1
    beta: torch.Tensor | None = None  # N×1×1×1


class NeDR(nn.Module):
    """Predicts t (and β) and inverts the scattering model; J never comes from the decoder directly.

    `atmosphere` ("dark_channel" | "max" | "brightest"), `guided_filter` and `prior_mix` are plain
    attributes, switchable after loading; `arch` fixes the layer sizes (default: the public network).

    `prior_mix` m blends He et al.'s dark-channel t into the network's before the guided filter,
    t = (1 − m)·t_network + m·t_prior (docs/model.md §7b): the two err in different places (the
    network leaves haze on dark objects indoors, the prior over-dehazes bright surfaces), so a fixed
    share of the prior trades a little on outdoor scenes for more indoors. 0 is the public network.
    """

    def __init__(self, atmosphere: str = "dark_channel", guided_filter: bool = True, arch: Architecture = PUBLIC,
                 prior_mix: float = 0.0):
        super().__init__()
        self.arch = arch
        f = arch.decoder_features
        self.pretrained = EfficientNetLite3Trunk()
        self.scratch = Scratch(EfficientNetLite3Trunk.channels, f)
        # attribute names keep the public checkpoint keys (cid_32 … cid_256) whatever the widths
        self.cid_32, self.cid_64, self.cid_128, self.cid_256 = (KANCID(c) for c in f)
        self.nrn = IDRM(f[0], arch.idrm_hidden)
        self.drem = DREM(f[0], arch.drem_width, arch.drem_kernel, arch.drem_blocks, arch.rdb_layers)
        self.final_conv_beta_1 = nn.Sequential(nn.Conv2d(sum(EfficientNetLite3Trunk.channels), 64, 1))
        self.final_conv_beta_2 = nn.Sequential(nn.Conv2d(64, 1, 1))
        self.prior_gate = PriorGate() if arch.prior_gate else None
        self.atmosphere = atmosphere
        self.guided_filter = guided_filter
        self.prior_mix = prior_mix
        self.config: dict = {}  # provenance read from our checkpoint format

    @property
    def atmosphere(self) -> str:
        return self._atmosphere

    @atmosphere.setter
    def atmosphere(self, mode: str) -> None:
        if mode not in ATMOSPHERE_MODES:
            raise ValueError(f"atmosphere must be one of {ATMOSPHERE_MODES}, got {mode!r}")
        self._atmosphere = mode

    @property
    def prior_mix(self) -> float:
        return self._prior_mix

    @prior_mix.setter
    def prior_mix(self, share: float) -> None:
        share = float(share)
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"prior_mix is the prior's share of t, in [0, 1], got {share}")
        if share and self.prior_gate is not None:
            raise ValueError("prior_mix and the prior gate both mix in the prior's t: use one")
        self._prior_mix = share

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
        a = atmospheric_light(x, self.atmosphere)
        if self.prior_gate is not None:
            t = self.prior_gate(x, t, prior_transmission(x, a).to(t.dtype))
        elif self.prior_mix:
            mixed = (1 - self.prior_mix) * t + self.prior_mix * prior_transmission(x, a).to(t.dtype)
            t = mixed.clamp(T_MIN, T_MAX)
        guided = self.guided_filter if guided is None else guided
        if guided:
            if min(x.shape[-2:]) > 2 * GF_RADIUS + 1:
                t = guided_filter(x.float(), t.float()).to(t.dtype)
            else:
                warnings.warn(f"guided filter skipped: input {tuple(x.shape[-2:])} is not larger than 81×81",
                              stacklevel=2)
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
    if not meets_contract(h, w):
        raise ValueError(
            f"NeDR needs H and W to be multiples of {PAD_MULTIPLE} and >= {MIN_SIZE}, got {h}×{w}; "
            "use nedr.model.dehaze() to pad and crop automatically"
        )


def parameter_groups(model: NeDR) -> dict[str, int]:
    """Parameter counts per part, the numbers docs/model.md §8 states."""
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
