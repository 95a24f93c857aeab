"""`nedr train`: supervised (paired L1) and paper (D4/NeDR unpaired) presets, resumable exactly.

Batches are a pure function of (seed, step) and the learning rate a function of the step alone,
so a run stopped at step N and resumed reaches the same weights as one that never stopped.
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from nedr.fileio import atomic_write

from .checkpoint import load_checkpoint, save_checkpoint
from .inference import pad_to_contract
from .metrics import psnr, ssim, to_uint8
from .network import Architecture, NeDR
from .physics import recover

PRESETS = ("supervised", "paper")
LOSS_ATMOSPHERES = ("estimate", "true")
TRAIN_ONLY = ("prior_gate",)  # parts that can be trained with the rest of the network frozen


@dataclass
class TrainConfig:
    preset: str = "supervised"
    steps: int = 2000
    batch: int = 4
    crop: int = 256
    lr: float = 2e-4
    lr_milestones: list[int] = field(default_factory=list)  # lr halves at each of these steps
    t_weight: float = 0.1  # L1 on t where the data knows it (synthetic haze)
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    workers: int = 2
    log_every: int = 20
    val_every: int = 500
    ckpt_every: int = 500
    val_count: int = 8
    atmosphere: str = "dark_channel"
    freeze_bn: bool = False  # keep BatchNorm statistics fixed (fine-tuning with small batches)
    # A in the J loss: "estimate" (the inference estimate, on the crop) or "true" (the synthetic
    # haze's own A where the data knows it). A crop's estimate is often far from the scene's A, and
    # the J loss then teaches t to make up for A's error instead of following the haze.
    loss_atmosphere: str = "estimate"
    # the J loss through the guided filter, as at inference: the prior gate's blocky dark-channel t
    # only means something after it (the network's own t is trained without, as published)
    loss_guided: bool = False
    train_only: str | None = None  # one of TRAIN_ONLY: that part learns, the rest is frozen
    # every N steps fold the weights into an equal-weight running mean (stochastic weight
    # averaging), which the export then saves: a short fine-tune swings between steps (on SOTS by
    # up to 0.9 dB 200 steps apart), the mean of its snapshots does not. 0: export the last step.
    average_every: int = 0
    architecture: dict[str, Any] = field(default_factory=dict)  # Architecture fields; empty = public
    data: dict[str, Any] = field(default_factory=lambda: {"kind": "synthetic"})

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}, got {self.preset!r}")
        if self.loss_atmosphere not in LOSS_ATMOSPHERES:
            raise ValueError(f"loss_atmosphere must be one of {LOSS_ATMOSPHERES}, got {self.loss_atmosphere!r}")
        if self.crop % 32 or self.crop < 64:
            raise ValueError(f"crop must be a multiple of 32 and >= 64, got {self.crop}")
        if self.train_only is not None and self.train_only not in TRAIN_ONLY:
            raise ValueError(f"train_only must be one of {TRAIN_ONLY}, got {self.train_only!r}")
        if self.train_only is not None and self.preset != "supervised":
            raise ValueError("train_only works with the supervised preset")
        if self.train_only == "prior_gate" and not self.architecture.get("prior_gate"):
            raise ValueError("train_only prior_gate needs an architecture with the prior gate")
        if self.average_every < 0:
            raise ValueError(f"average_every must be >= 0, got {self.average_every}")
        if self.loss_guided and self.crop < 128:
            raise ValueError(f"the guided-filter loss needs crops of at least 128 (its 81×81 window), got {self.crop}")


class Objective(Protocol):
    """One training scheme: owns its extra networks and optimisers, runs one step on a batch."""

    def step(self, batch: dict[str, torch.Tensor], lr_scale: float) -> dict[str, float]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def set_lr(optimizer: torch.optim.Optimizer, base: float, scale: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = base * scale


class Supervised:
    """Paired L1 on J (plus t when known), through the same A estimate used at inference."""

    def __init__(self, model: NeDR, cfg: TrainConfig, device: torch.device):
        self.model, self.cfg, self.device = model, cfg, device
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=cfg.lr, betas=(0.9, 0.999))
        self.amp = cfg.amp and device.type == "cuda"

    def step(self, batch: dict[str, torch.Tensor], lr_scale: float) -> dict[str, float]:
        set_lr(self.optimizer, self.cfg.lr, lr_scale)
        hazy, clean = batch["hazy"].to(self.device), batch["clean"].to(self.device)
        h, w = hazy.shape[-2:]  # crops below the 128 contract (e.g. 64) are padded, outputs cropped back
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            pred = self.model.predict(pad_to_contract(hazy), guided=self.cfg.loss_guided)
        j = pred.clean[..., :h, :w].float()
        if self.cfg.loss_atmosphere == "true" and "A" in batch:
            a = batch["A"].to(self.device)[..., None, None]
            j = recover(hazy, pred.transmission[..., :h, :w].float(), a)
        loss_j = F.l1_loss(j, clean)
        loss = loss_j
        out = {"l1_J": loss_j.item()}
        if "t" in batch and self.cfg.t_weight > 0:
            loss_t = F.l1_loss(pred.transmission[..., :h, :w].float(), batch["t"].to(self.device))
            loss = loss + self.cfg.t_weight * loss_t
            out["l1_t"] = loss_t.item()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        out["loss"] = loss.item()
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])


class StepSampler(Sampler[int]):
    """Indices for steps [start, stop): batch k of step s is items s·B … s·B + B − 1."""

    def __init__(self, start: int, stop: int, batch: int):
        self.start, self.stop, self.batch = start, stop, batch

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start * self.batch, self.stop * self.batch))

    def __len__(self) -> int:
        return (self.stop - self.start) * self.batch


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_scale(cfg: TrainConfig, step: int) -> float:
    return 0.5 ** sum(step >= m for m in cfg.lr_milestones)


class Trainer:
    """Runs an objective over a dataset with logging, validation and resumable checkpoints."""

    def __init__(self, cfg: TrainConfig, train_data: Dataset, out_dir: str | Path,
                 val_data: Dataset | None = None, objective_factory=None, init: str | Path | None = None):
        self.cfg, self.train_data, self.val_data = cfg, train_data, val_data
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = pick_device(cfg.device)
        torch.manual_seed(cfg.seed)
        # the saved default follows the loss: weights trained through the guided filter want it on
        self.model = NeDR(atmosphere=cfg.atmosphere, guided_filter=cfg.loss_guided,
                          arch=Architecture.from_config(cfg.architecture))
        self.init_transfer: dict[str, int] = {}
        if init is not None:  # fine-tune from a checkpoint (any format load_checkpoint reads)
            source = load_checkpoint(init)
            if source.arch == self.model.arch:
                self.model.load_state_dict(source.state_dict())
            else:  # a lighter variant: take every entry whose name and shape match
                self.init_transfer = transfer_matching(source, self.model)
        if cfg.train_only is not None:
            for name, param in self.model.named_parameters():
                param.requires_grad_(name.startswith(cfg.train_only + "."))
        self.model.to(self.device)
        # parameters only: BatchNorm statistics come from the live model at export (see `export`)
        self.average = AveragedModel(self.model) if cfg.average_every else None
        factory = objective_factory or (Supervised if cfg.preset == "supervised" else _paper_objective)
        self.objective = factory(self.model, cfg, self.device)
        self.step = 0
        self.history: list[dict[str, float]] = []

    def train_mode(self) -> None:
        """Training mode, with BatchNorm left in eval mode under `freeze_bn`: batch statistics of
        a few small crops are noisier than the running statistics the weights were trained with."""
        self.model.train()
        if self.cfg.freeze_bn or self.cfg.train_only is not None:
            for module in self.model.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    @property
    def state_path(self) -> Path:
        return self.out / "train_state.pt"

    def save_state(self) -> Path:
        state = {"net_h2c": self.model.state_dict(), "objective": self.objective.state_dict(),
                 "step": self.step, "config": json.dumps(asdict(self.cfg))}
        if self.average is not None:
            state["average"] = self.average.state_dict()
        return atomic_write(self.state_path, lambda tmp: torch.save(state, tmp))

    def resume(self, path: str | Path | None = None) -> int:
        state = torch.load(path or self.state_path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["net_h2c"])
        self.objective.load_state_dict(state["objective"])
        if self.average is not None and "average" in state:
            self.average.load_state_dict(state["average"])
        self.step = int(state["step"])
        return self.step

    def validate(self) -> dict[str, float]:
        if self.val_data is None:
            return {}
        self.model.eval()
        scores_p, scores_s = [], []
        with torch.no_grad():
            for i in range(min(self.cfg.val_count, len(self.val_data))):
                item = self.val_data[i]
                hazy = item["hazy"][None].to(self.device)
                j = self.model.predict(pad_to_contract(hazy), guided=self.cfg.loss_guided).clean
                j = j[0, :, :hazy.shape[-2], :hazy.shape[-1]]
                j = j.float().cpu()
                a, b = (to_uint8(x.permute(1, 2, 0).numpy()) for x in (j, item["clean"]))
                scores_p.append(psnr(a, b))
                scores_s.append(ssim(a, b))
        self.train_mode()
        return {"val_psnr": float(np.mean(scores_p)), "val_ssim": float(np.mean(scores_s))}

    def _log_row(self, row: dict[str, float]) -> None:
        self.history.append(row)
        path = self.out / "train_log.csv"
        fields = ["step", "seconds", "lr", "loss", "l1_J", "l1_t", "val_psnr", "val_ssim"]
        extra = sorted(k for k in row if k not in fields)
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields + extra, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def fit(self, steps: int | None = None, time_limit: float | None = None) -> dict[str, Any]:
        """Train up to `steps` (default cfg.steps) or until `time_limit` seconds have passed."""
        stop = steps or self.cfg.steps
        loader = DataLoader(self.train_data, batch_size=self.cfg.batch,
                            sampler=StepSampler(self.step, stop, self.cfg.batch),
                            num_workers=self.cfg.workers, pin_memory=self.device.type == "cuda",
                            persistent_workers=False, drop_last=True)
        self.train_mode()
        start = time.time()
        running: dict[str, list[float]] = {}
        bar = tqdm(loader, total=stop - self.step, initial=0, desc=f"train {self.cfg.preset}", unit="step")
        for batch in bar:
            scale = lr_scale(self.cfg, self.step)
            losses = self.objective.step(batch, scale)
            self.step += 1
            if self.average is not None and self.step % self.cfg.average_every == 0:
                self.average.update_parameters(self.model)
            for k, v in losses.items():
                running.setdefault(k, []).append(v)
            if self.step % self.cfg.log_every == 0 or self.step == stop:
                row = {"step": self.step, "seconds": round(time.time() - start, 2), "lr": self.cfg.lr * scale}
                row.update({k: float(np.mean(v)) for k, v in running.items()})
                running = {}
                if self.cfg.val_every and (self.step % self.cfg.val_every == 0 or self.step == stop):
                    row.update(self.validate())
                self._log_row(row)
                bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k in ("loss", "val_psnr")})
            if self.cfg.ckpt_every and self.step % self.cfg.ckpt_every == 0:
                self.save_state()
            if time_limit is not None and time.time() - start > time_limit:
                break
        bar.close()
        self.save_state()
        return {"step": self.step, "seconds": time.time() - start,
                "last": self.history[-1] if self.history else {}}

    def export(self, path: str | Path, provenance: dict[str, Any] | None = None, half: bool = True) -> Path:
        """Save the generator in our safetensors format with the training recipe in its config:
        the weight average when `average_every` has collected any (`averaged` in the config says
        how many snapshots), else the last step's weights."""
        self.model.eval()
        config = {"training": {**asdict(self.cfg), "steps_done": self.step, **(provenance or {})}}
        if self.init_transfer:
            config["training"]["init_transfer"] = self.init_transfer
        model = self.model
        if self.average is not None and int(self.average.n_averaged) > 0:
            model = self.average.module
            # the live statistics (unchanged under freeze_bn; else the latest, not an average)
            for mine, live in zip(model.buffers(), self.model.buffers()):
                mine.copy_(live)
            config["training"]["averaged"] = int(self.average.n_averaged)
        return save_checkpoint(model.cpu(), path, config=config, half=half)


def transfer_matching(source: torch.nn.Module, target: torch.nn.Module) -> dict[str, int]:
    """Copy every layer of `source` that `target` has with the same name and shapes.

    By layer, not by tensor: a resized conv whose bias happens to keep its shape starts fresh as a
    whole rather than with a bias that belonged to other weights.
    """
    theirs, ours = source.state_dict(), target.state_dict()

    def layer(key: str) -> str:
        return key.rsplit(".", 1)[0]

    broken = {layer(k) for k, v in ours.items() if k not in theirs or theirs[k].shape != v.shape}
    same = {k: v for k, v in theirs.items() if k in ours and layer(k) not in broken}
    target.load_state_dict(same, strict=False)
    params = dict(target.named_parameters())
    return {"copied": len(same), "total": len(ours),
            "copied_parameters": sum(v.numel() for k, v in same.items() if k in params),
            "total_parameters": sum(p.numel() for p in params.values())}


def _paper_objective(model: NeDR, cfg: TrainConfig, device: torch.device):
    from .paper import PaperObjective

    return PaperObjective(model, cfg, device)
