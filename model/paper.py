"""The `paper` preset: D4/NeDR unpaired training (docs/model.md §9).

NeDR (hazy→clean, `h2c`) is trained without pairs by cycling through a clean→hazy generator
(`HazeProduceNet`, `c2h`) that re-hazes with the scattering model, a depth estimator that tells
`c2h` how far each pixel is, and two PatchGAN discriminators. Only `h2c` is the product; the
rest exists to make the unpaired losses well posed, so it is kept modest in size.

Choices the spec leaves open (stated here so they are not mistaken for the paper's):

* NeDR's input contract is H, W multiples of 32 and >= 128. Smaller crops (64×64) are padded with
  `pad_to_contract` and J, t are cropped back; A and β̂ then see the padded frame.
* The depth estimator runs on inputs resized to 256 per side, or kept at the input size (rounded
  to a multiple of 32) where that is smaller: upsampling a 64 crop to 256 would cost 16× the
  compute for no new information.
* `c2h` sees [2J−1, 2I−1, t] (I = J·t + A·(1−t)) and adds a tanh-bounded residual to I in
  [−1, 1]; its last conv starts at zero, so it starts as the exact scattering model.
* The adversarial term is the sum over both directions; the depth target −log(t)/β̂ is clamped
  to the estimator's output range [0.2, 5].
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import EfficientNetLite3Trunk
from .decoder import Scratch
from .inference import pad_to_contract
from .network import BETA_MAX, BETA_MIN, NeDR, Prediction
from .training import TrainConfig, set_lr

DEPTH_MIN, DEPTH_MAX = 0.2, 5.0
DEPTH_SIZE = 256
ADV_WEIGHT, CYCLE_WEIGHT, BETA_WEIGHT = 0.2, 1.0, 1.0
D_LR_RATIO = 0.1  # discriminators learn at lr/10
BETA_SEED_OFFSET = 0x5EED  # β stream differs from the data and init streams that share cfg.seed


def _lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.2, inplace=True)


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, padding_mode="reflect", bias=False), nn.BatchNorm2d(c), _lrelu(),
            nn.Conv2d(c, c, 3, padding=1, padding_mode="reflect", bias=False), nn.BatchNorm2d(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    pad = (kernel - stride + 1) // 2 if stride == 2 else kernel // 2
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, pad, bias=False), nn.BatchNorm2d(cout), _lrelu())


class HazeProduceNet(nn.Module):
    """clean→hazy: the scattering model I = J·t + A·(1−t), t = exp(−d·β), A = max of J, plus a
    learned bounded residual (the physics alone cannot produce real haze's colour and noise)."""

    def __init__(self, base: int = 32, blocks: int = 4):
        super().__init__()
        b = base
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(7, b, 7, bias=False), nn.BatchNorm2d(b), _lrelu())
        self.down1 = _conv_bn(b, 2 * b, 4, 2)
        self.down2 = _conv_bn(2 * b, 4 * b, 4, 2)
        self.body = nn.Sequential(*[ResBlock(4 * b) for _ in range(blocks)])
        self.up2 = _conv_bn(4 * b, 2 * b)
        self.fuse2 = _conv_bn(4 * b, 2 * b)
        self.up1 = _conv_bn(2 * b, b)
        self.fuse1 = _conv_bn(2 * b, b)
        self.tail = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(b, 3, 7))
        nn.init.zeros_(self.tail[1].weight)  # start as the pure scattering model
        nn.init.zeros_(self.tail[1].bias)

    def forward(self, clean: torch.Tensor, depth: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """clean N×3×H×W in [0, 1], depth N×1×H×W, beta N×1×1×1 → hazy N×3×H×W in [0, 1]."""
        clean = clean.float()  # the scattering model in FP32 whatever the autocast precision
        t = torch.exp(-depth.float() * beta.float())
        a = clean.amax(dim=(2, 3), keepdim=True)
        x = 2 * (clean * t + a * (1 - t)) - 1
        e0 = self.head(torch.cat([2 * clean - 1, x, t], dim=1))
        e1 = self.down1(e0)
        y = self.body(self.down2(e1))
        y = self.up2(F.interpolate(y, size=e1.shape[-2:], mode="bilinear", align_corners=False))
        y = self.fuse2(torch.cat([y, e1], dim=1))
        y = self.up1(F.interpolate(y, size=e0.shape[-2:], mode="bilinear", align_corners=False))
        y = self.fuse1(torch.cat([y, e0], dim=1))
        out = (x + torch.tanh(self.tail(y))).clamp(-1, 1)
        return (out + 1) / 2


def depth_input_size(h: int, w: int) -> tuple[int, int]:
    """256 per side, or the input side (rounded to the trunk's ×32, at least 64) when smaller."""
    def side(s: int) -> int:
        return DEPTH_SIZE if s >= DEPTH_SIZE else max(64, round(s / 32) * 32)

    return side(h), side(w)


class DepthNet(nn.Module):
    """Depth estimator: NeDR's EfficientNet-Lite3 trunk and fusion decoder, output in [0.2, 5]."""

    def __init__(self):
        super().__init__()
        self.pretrained = EfficientNetLite3Trunk()
        self.scratch = Scratch(EfficientNetLite3Trunk.channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x N×3×H×W in [0, 1] → depth N×1×H×W, computed at `depth_input_size` and resized back."""
        h, w = x.shape[-2:]
        size = depth_input_size(h, w)
        y = x if size == (h, w) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        f1, f2, f3, f4 = self.pretrained(y)
        s = self.scratch
        p = s.refinenet4(s.layer4_rn(f4))
        p = s.refinenet3(p, s.layer3_rn(f3))
        p = s.refinenet2(p, s.layer2_rn(f2))
        p = s.refinenet1(p, s.layer1_rn(f1))
        d = DEPTH_MIN + (DEPTH_MAX - DEPTH_MIN) * torch.sigmoid(s.output_conv(p))
        return d if size == (h, w) else F.interpolate(d, size=(h, w), mode="bilinear", align_corners=False)


def patch_discriminator() -> nn.Sequential:
    """PatchGAN: 5 k4 convs (3→64→128→256 stride 2, →512→1 stride 1), spectral norm, sigmoid."""
    sn = nn.utils.parametrizations.spectral_norm
    chans, strides = (3, 64, 128, 256, 512, 1), (2, 2, 2, 1, 1)
    layers: list[nn.Module] = []
    for i, (cin, cout, s) in enumerate(zip(chans[:-1], chans[1:], strides)):
        layers.append(sn(nn.Conv2d(cin, cout, 4, s, 1)))
        layers.append(_lrelu() if i < len(strides) - 1 else nn.Sigmoid())
    return nn.Sequential(*layers)


def count_parameters(module: nn.Module) -> int:
    """Trainable size of one network (the report states each network's size)."""
    return sum(p.numel() for p in module.parameters())


def _lsgan(pred: torch.Tensor, target: float) -> torch.Tensor:
    return F.mse_loss(pred.float(), torch.full_like(pred.float(), target))


def _discriminator_loss(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """½(LSGAN real→1 + fake→0), real and fake in one batch (no BatchNorm in D, so it is the same)."""
    n = real.shape[0]
    out = disc(2 * torch.cat([real, fake.to(real.dtype)]) - 1)
    return 0.5 * (_lsgan(out[:n], 1.0) + _lsgan(out[n:], 0.0))


class PaperObjective:
    """One D4 step on unpaired batch["hazy"], batch["clean"] (docs/model.md §9).

    Update order per step: generators (h2c + c2h) on the cycle/adversarial/β loss, then the
    discriminators on detached fakes, then the depth net on h2c's implied depth. β draws come
    from a private generator saved in `state_dict`, so a resumed run draws the same β as an
    uninterrupted one and the global torch RNG is never touched by `step`.
    """

    def __init__(self, model: NeDR, cfg: TrainConfig, device: torch.device):
        self.model, self.cfg, self.device = model, cfg, device
        self.amp = cfg.amp and device.type == "cuda"
        self.c2h = HazeProduceNet().to(device).train()
        self.depth = DepthNet().to(device).train()
        self.d_clean = patch_discriminator().to(device).train()
        self.d_hazy = patch_discriminator().to(device).train()
        betas = (0.9, 0.999)
        self.opt_g = torch.optim.Adam([*model.parameters(), *self.c2h.parameters()], lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam([*self.d_clean.parameters(), *self.d_hazy.parameters()],
                                      lr=cfg.lr * D_LR_RATIO, betas=betas)
        self.opt_depth = torch.optim.Adam(self.depth.parameters(), lr=cfg.lr, betas=betas)
        self.beta_rng = torch.Generator().manual_seed(cfg.seed + BETA_SEED_OFFSET)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def h2c(self, x: torch.Tensor) -> Prediction:
        """NeDR on any ×1 size: pad to the contract, crop J and t back (A, β̂ from the padded frame)."""
        h, w = x.shape[-2:]
        p = self.model.predict(pad_to_contract(x), with_beta=True, guided=False)
        return Prediction(p.clean[..., :h, :w], p.transmission[..., :h, :w], p.atmosphere, p.beta)

    @contextmanager
    def _frozen(self, *modules: nn.Module) -> Iterator[None]:
        """Let gradients pass through these modules to their inputs without touching their weights."""
        params = [p for m in modules for p in m.parameters()]
        for p in params:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in params:
                p.requires_grad_(True)

    def step(self, batch: dict[str, torch.Tensor], lr_scale: float) -> dict[str, float]:
        set_lr(self.opt_g, self.cfg.lr, lr_scale)
        set_lr(self.opt_depth, self.cfg.lr, lr_scale)
        set_lr(self.opt_d, self.cfg.lr * D_LR_RATIO, lr_scale)
        hazy, clean = batch["hazy"].to(self.device), batch["clean"].to(self.device)
        beta = BETA_MIN + (BETA_MAX - BETA_MIN) * torch.rand(clean.shape[0], 1, 1, 1, generator=self.beta_rng)
        beta = beta.to(self.device)

        # generators: depth and discriminators pass gradients to their inputs only
        with self._frozen(self.depth, self.d_clean, self.d_hazy), self._autocast():
            p_h = self.h2c(hazy)
            clean_h2c, beta_hat = p_h.clean, p_h.beta
            hazy_h2c2h = self.c2h(clean_h2c, self.depth(clean_h2c), beta_hat)
            hazy_c2h = self.c2h(clean, self.depth(clean), beta)
            p_c = self.h2c(hazy_c2h)
            clean_c2h2c = p_c.clean
            adv = _lsgan(self.d_clean(2 * clean_h2c - 1), 1.0) + _lsgan(self.d_hazy(2 * hazy_c2h - 1), 1.0)
        cycle_clean = F.l1_loss(clean_c2h2c.float(), clean)
        cycle_hazy = F.l1_loss(hazy_h2c2h.float(), hazy)
        loss_beta = F.mse_loss(p_c.beta.float(), beta)
        loss_g = ADV_WEIGHT * adv + CYCLE_WEIGHT * (cycle_clean + cycle_hazy) + BETA_WEIGHT * loss_beta
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()

        # discriminators: LSGAN, ½(real + fake) each, on fakes from before this step's update
        with self._autocast():
            d_clean = _discriminator_loss(self.d_clean, clean, clean_h2c.detach())
            d_hazy = _discriminator_loss(self.d_hazy, hazy, hazy_c2h.detach())
        self.opt_d.zero_grad(set_to_none=True)
        (d_clean + d_hazy).backward()
        self.opt_d.step()

        # depth: L1 to h2c's implied depth −log(t)/β̂ (detached: the depth net must not move h2c)
        target = (-torch.log(p_h.transmission.detach().float()) / beta_hat.detach().float())
        target = target.clamp(DEPTH_MIN, DEPTH_MAX)
        with self._autocast():
            pred_depth = self.depth(clean_h2c.detach())
        loss_depth = F.l1_loss(pred_depth.float(), target)
        self.opt_depth.zero_grad(set_to_none=True)
        loss_depth.backward()
        self.opt_depth.step()

        return {"loss": loss_g.item(), "cycle_clean": cycle_clean.item(), "cycle_hazy": cycle_hazy.item(),
                "beta": loss_beta.item(), "adv_g": adv.item(), "d_clean": d_clean.item(),
                "d_hazy": d_hazy.item(), "depth": loss_depth.item()}

    def state_dict(self) -> dict[str, Any]:
        """Extra networks, all optimisers and the β stream (h2c itself is saved by Trainer)."""
        return {"c2h": self.c2h.state_dict(), "depth": self.depth.state_dict(),
                "d_clean": self.d_clean.state_dict(), "d_hazy": self.d_hazy.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "opt_depth": self.opt_depth.state_dict(), "beta_rng": self.beta_rng.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.c2h.load_state_dict(state["c2h"])
        self.depth.load_state_dict(state["depth"])
        self.d_clean.load_state_dict(state["d_clean"])
        self.d_hazy.load_state_dict(state["d_hazy"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.opt_depth.load_state_dict(state["opt_depth"])
        self.beta_rng.set_state(state["beta_rng"].cpu())
