"""The supervised preset: exact resume, the training log, and a `nedr train` CLI smoke run.

All on 64×64 crops (padded to NeDR's 128 contract inside the step) with batch 1, because one
supervised step of the real NeDR is ~70 GFLOP even there.
"""
from __future__ import annotations

import csv
import math
import subprocess
import sys

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from nedr.model import load_checkpoint
from nedr.model.datasets import SyntheticHaze
from nedr.model.imageio import DataError
from nedr.model.samples import Sample, folder_samples, save_bank
from nedr.model.training import TrainConfig, Trainer

CROP = 64
LOG_COLUMNS = ["step", "seconds", "lr", "loss", "l1_J", "l1_t", "val_psnr", "val_ssim"]


def astronaut() -> list[Sample]:
    return [Sample("astronaut", skimage.data.astronaut())]


def config(**kw) -> TrainConfig:
    return TrainConfig(**{"preset": "supervised", "crop": CROP, "batch": 1, "workers": 0, "device": "cpu",
                          "log_every": 1, "val_every": 0, "ckpt_every": 0, "val_count": 1, **kw})


class KeepStates(Trainer):
    """Also keeps a copy of every saved state, so one uninterrupted run leaves its step-N state."""

    def save_state(self):
        path = super().save_state()
        (self.out / f"state_{self.step}.pt").write_bytes(path.read_bytes())
        return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted 2-step run (state kept at step 1, validated at the end) and a run that a
    new Trainer resumed from that step-1 state. The lr halves at step 1, so the resumed segment
    must also get the schedule right."""
    root = tmp_path_factory.mktemp("supervised")
    train = SyntheticHaze(astronaut(), crop=CROP, seed=0)
    val = SyntheticHaze(astronaut(), crop=128, seed=1, scale=(1.0, 1.0))
    n, total = 1, 2
    cfg = config(ckpt_every=n, val_every=total, lr_milestones=[1])
    full = KeepStates(cfg, train, root / "full", val)
    full.fit(total)
    resumed = Trainer(cfg, train, root / "resumed", val)
    assert resumed.resume(root / "full" / f"state_{n}.pt") == n
    resumed.fit(total)
    return full, resumed


@pytest.mark.slow
def test_resume_equals_uninterrupted_run(runs):
    full, resumed = runs
    assert full.step == resumed.step == 2
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:  # parameters and BatchNorm buffers
        assert torch.equal(a[k], b[k]), k
    opt_a, opt_b = full.objective.optimizer.state_dict()["state"], resumed.objective.optimizer.state_dict()["state"]
    for i in opt_a:
        for k in opt_a[i]:
            assert torch.equal(torch.as_tensor(opt_a[i][k]), torch.as_tensor(opt_b[i][k])), (i, k)
    assert resumed.history[-1]["loss"] == full.history[-1]["loss"]
    assert resumed.history[-1]["lr"] == full.history[-1]["lr"] == full.cfg.lr / 2


@pytest.mark.slow
def test_training_log_csv(runs):
    full, _ = runs
    with (full.out / "train_log.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0].keys()) == LOG_COLUMNS
    assert [int(r["step"]) for r in rows] == [1, 2]
    for r in rows:
        assert all(math.isfinite(float(r[k])) for k in ("seconds", "lr", "loss", "l1_J", "l1_t")), r
    assert rows[0]["val_psnr"] == ""  # validation ran at the last step only
    assert math.isfinite(float(rows[-1]["val_psnr"])) and 0 < float(rows[-1]["val_ssim"]) <= 1


@pytest.mark.slow
def test_weight_average_is_the_mean_of_the_snapshots_and_resumes(tmp_path):
    from nedr.model.network import ARCHITECTURES

    cfg = config(architecture=ARCHITECTURES["nedr-s"].to_config(), average_every=1, ckpt_every=1, freeze_bn=True)
    train = SyntheticHaze(astronaut(), crop=CROP, seed=0)
    full = KeepStates(cfg, train, tmp_path / "full")
    full.fit(3)
    snapshots = [torch.load(full.out / f"state_{i}.pt", weights_only=True)["net_h2c"] for i in (1, 2, 3)]
    averaged = load_checkpoint(full.export(tmp_path / "full.safetensors", half=False))
    assert averaged.config["training"]["averaged"] == 3
    saved = averaged.state_dict()
    moved = 0
    for name, _ in full.model.named_parameters():
        assert torch.allclose(saved[name], sum(s[name] for s in snapshots) / 3, atol=1e-6), name
        moved += not torch.equal(saved[name], snapshots[-1][name])
    assert moved > 0  # the export is not the last step's weights
    for name, buffer in full.model.state_dict().items():  # BatchNorm statistics: the live ones
        if "running" in name:
            assert torch.equal(saved[name], buffer), name
    resumed = Trainer(cfg, train, tmp_path / "resumed")
    resumed.resume(full.out / "state_2.pt")
    resumed.fit(3)
    again = load_checkpoint(resumed.export(tmp_path / "resumed.safetensors", half=False)).state_dict()
    assert all(torch.equal(saved[k], again[k]) for k in saved)
    with pytest.raises(ValueError, match="average_every"):
        config(average_every=-1)


def test_frozen_batchnorm_keeps_running_statistics(tmp_path):
    cfg = config(freeze_bn=True)
    trainer = Trainer(cfg, SyntheticHaze(astronaut(), crop=CROP, seed=0), tmp_path)
    bn = trainer.model.pretrained.layer1[1]
    before = bn.running_mean.clone()
    trainer.train_mode()
    assert trainer.model.training and not bn.training
    trainer.objective.step(next(iter(torch.utils.data.DataLoader(trainer.train_data, batch_size=1))), 1.0)
    assert torch.equal(bn.running_mean, before)


def test_true_atmosphere_loss_inverts_with_the_synthetic_a(tmp_path):
    """loss_atmosphere="true": the J loss inverts the scattering model with the A the haze was made
    with (the item's "A"), not the crop's estimate, so t alone carries the error."""
    from nedr.model.inference import pad_to_contract
    from nedr.model.physics import recover

    trainer = Trainer(config(loss_atmosphere="true"), SyntheticHaze(astronaut(), crop=CROP, seed=0), tmp_path)
    batch = next(iter(torch.utils.data.DataLoader(trainer.train_data, batch_size=1)))
    assert batch["A"].shape == (1, 3) and bool(((batch["A"] >= 0.7) & (batch["A"] <= 1.0)).all())
    trainer.train_mode()
    with torch.no_grad():
        pred = trainer.model.predict(pad_to_contract(batch["hazy"]), guided=False)
        t = pred.transmission[..., :CROP, :CROP]
        true_a = torch.nn.functional.l1_loss(recover(batch["hazy"], t, batch["A"][..., None, None]), batch["clean"])
        estimate = torch.nn.functional.l1_loss(pred.clean[..., :CROP, :CROP], batch["clean"])
    assert abs(float(true_a) - float(estimate)) > 1e-4  # the two losses do differ on this crop
    assert trainer.objective.step(batch, 1.0)["l1_J"] == pytest.approx(float(true_a), rel=1e-4)
    with pytest.raises(ValueError, match="loss_atmosphere"):
        config(loss_atmosphere="oracle")


def test_folder_samples_reads_nested_images_and_shrinks_large_ones(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert cv2.imwrite(str(tmp_path / "a" / "small.png"), np.full((300, 400, 3), 90, np.uint8))
    assert cv2.imwrite(str(tmp_path / "a" / "b" / "large.jpg"), np.full((2000, 3000, 3), 200, np.uint8))
    (tmp_path / "a" / "manifest.csv").write_text("file\n")
    samples = folder_samples([tmp_path / "a"], max_side=1024)
    assert [s.name for s in samples] == ["a/b/large", "a/small"]
    assert samples[0].image.shape == (683, 1024, 3) and samples[1].image.shape == (300, 400, 3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        folder_samples([tmp_path / "empty"])
    with pytest.raises(DataError, match="not found"):
        folder_samples([tmp_path / "nope"])


@pytest.mark.slow
def test_cli_train_smoke(tmp_path):
    bank = save_bank(astronaut(), tmp_path / "bank.npz")
    photos = tmp_path / "photos"
    photos.mkdir()
    assert cv2.imwrite(str(photos / "room.png"), skimage.data.chelsea()[..., ::-1])
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "nedr.cli", "train", "--steps", "2", "--batch", "1", "--crop", str(CROP),
           "--workers", "0", "--val-every", "0", "--ckpt-every", "0", "--bank", str(bank), "-o", str(out),
           "--sources", str(photos), "--freeze-bn", "--convention", "srgb", "--atmosphere", "brightest"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "train_log.csv").is_file() and (out / "train_state.pt").is_file()
    model = load_checkpoint(out / "final.safetensors")
    training = model.config["training"]
    assert training["steps_done"] == 2 and training["freeze_bn"] is True
    assert training["data"]["sources"] == [str(photos)] and training["data"]["convention"] == "srgb"
    assert model.atmosphere == "brightest" == training["atmosphere"]  # the training A is the weights' default
