"""The `paper` preset (D4/NeDR unpaired training, docs/model.md §9): one real step, learning, resume.

A paper step with the real NeDR costs ~160 GFLOP per 64×64 image (NeDR runs on the padded
128×128 frame, twice, forward and backward), i.e. seconds to tens of seconds on 2 shared CPU
cores. So only the single-step test and the state round trip use the real NeDR; the 30-step
learning test and the Trainer resume test put `TinyDehazer` (NeDR's `predict` contract on ~3k
weights) in the h2c seat. Everything the objective owns (c2h, depth net, discriminators,
optimisers, the β stream) is the real thing in every test. Set NEDR_FULL_TESTS=1 to also run
the Trainer resume test with the real NeDR.
"""
from __future__ import annotations

import io
import math
import os

import numpy as np
import pytest
import skimage.data
import torch
from torch import nn

from nedr.model import training
from nedr.model.datasets import SyntheticHaze
from nedr.model.network import BETA_MAX, BETA_MIN, T_MAX, T_MIN, NeDR, Prediction
from nedr.model.paper import PaperObjective
from nedr.model.physics import atmospheric_light, recover
from nedr.model.samples import Sample
from nedr.model.training import TrainConfig, Trainer

CROP = 64
CPU = torch.device("cpu")
LOSS_KEYS = {"loss", "cycle_clean", "cycle_hazy", "beta", "adv_g", "d_clean", "d_hazy", "depth"}


class TinyDehazer(nn.Module):
    """Stand-in h2c with NeDR's constructor and `predict` contract (t → J through A, β head).

    Keeps a BatchNorm so that buffers, not only weights, go through the resume path.
    """

    def __init__(self, atmosphere: str = "dark_channel", guided_filter: bool = False, arch=None):
        super().__init__()
        self.atmosphere, self.guided_filter, self.arch = atmosphere, guided_filter, arch
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.t_head = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 1, 3, padding=1))
        self.beta_head = nn.Conv2d(16, 1, 1)

    def predict(self, x: torch.Tensor, with_beta: bool = False, guided: bool | None = None) -> Prediction:
        assert x.shape[-1] % 32 == 0 and min(x.shape[-2:]) >= 128, "objective must pad to NeDR's contract"
        f = self.features(x)
        t = ((torch.tanh(self.t_head(f)) + 1) / 2).clamp(T_MIN, T_MAX)
        beta = None
        if with_beta:
            logit = self.beta_head(f.mean(dim=(2, 3), keepdim=True))
            beta = BETA_MIN + (BETA_MAX - BETA_MIN) * (torch.tanh(logit) + 1) / 2
        a = atmospheric_light(x, self.atmosphere)
        return Prediction(recover(x, t, a), t, a, beta)


@pytest.fixture(scope="module")
def data() -> SyntheticHaze:
    return SyntheticHaze([Sample("x", skimage.data.astronaut())], crop=CROP, seed=0)


def unpaired_batch(data: SyntheticHaze, n: int) -> dict[str, torch.Tensor]:
    """Hazy and clean crops from different items: nothing pairs them."""
    return {"hazy": torch.stack([data[2 * i]["hazy"] for i in range(n)]),
            "clean": torch.stack([data[2 * i + 1]["clean"] for i in range(n)])}


def paper_config(**kw) -> TrainConfig:
    return TrainConfig(**{"preset": "paper", "lr": 1e-4, "crop": CROP, "batch": 1, "workers": 0, "device": "cpu",
                          "val_every": 0, "ckpt_every": 0, "log_every": 1, **kw})


def flat(obj, prefix: str = "") -> dict:
    """Nested state (dicts, lists, tensors, numbers) → {path: leaf}."""
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in flat(val, f"{prefix}{key}/").items()}
    if isinstance(obj, (list, tuple)):
        return {k: v for i, val in enumerate(obj) for k, v in flat(val, f"{prefix}{i}/").items()}
    return {prefix: obj}


def assert_same_state(a: dict, b: dict) -> None:
    fa, fb = flat(a), flat(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        if isinstance(fa[k], torch.Tensor):
            assert torch.equal(fa[k], fb[k]), k
        else:
            assert fa[k] == fb[k], k


@pytest.fixture(scope="module")
def stepped(data):
    """A real-NeDR paper objective after one step on two 64×64 crops, and that step's losses."""
    torch.manual_seed(0)
    obj = PaperObjective(NeDR(guided_filter=False).train(), paper_config(batch=2), CPU)
    return obj, obj.step(unpaired_batch(data, 2), 1.0)


def test_step_on_64_crops_returns_finite_losses(stepped):
    _, losses = stepped
    assert set(losses) == LOSS_KEYS
    assert all(isinstance(v, float) and math.isfinite(v) for v in losses.values()), losses


def test_state_dict_round_trips_through_weights_only_load(stepped):
    obj, _ = stepped
    buf = io.BytesIO()
    torch.save(obj.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    torch.manual_seed(1)  # different initial weights, so the load must overwrite everything
    fresh = PaperObjective(NeDR(guided_filter=False).train(), paper_config(batch=2), CPU)
    fresh.load_state_dict(state)
    assert_same_state(fresh.state_dict(), obj.state_dict())


@pytest.mark.slow
def test_cycle_losses_fall_on_a_fixed_batch(data):
    torch.manual_seed(0)
    obj = PaperObjective(TinyDehazer(), paper_config(), CPU)
    batch = unpaired_batch(data, 1)
    hist = [obj.step(batch, 1.0) for _ in range(30)]
    for h in hist:
        assert all(math.isfinite(v) for v in h.values()), h
    first = {k: np.mean([h[k] for h in hist[:5]]) for k in ("cycle_clean", "cycle_hazy")}
    last = {k: np.mean([h[k] for h in hist[-5:]]) for k in ("cycle_clean", "cycle_hazy")}
    curve = [round(h["cycle_clean"] + h["cycle_hazy"], 3) for h in hist]
    assert sum(last.values()) < 0.5 * sum(first.values()), curve
    assert last["cycle_clean"] < first["cycle_clean"] and last["cycle_hazy"] < first["cycle_hazy"], curve


class KeepStates(Trainer):
    """Also keeps a copy of every saved state, so one uninterrupted run leaves its step-N state."""

    def save_state(self):
        path = super().save_state()
        (self.out / f"state_{self.step}.pt").write_bytes(path.read_bytes())
        return path


FULL = os.environ.get("NEDR_FULL_TESTS") == "1"


@pytest.mark.parametrize("h2c", ["tiny", pytest.param("nedr", marks=pytest.mark.skipif(
    not FULL, reason="real NeDR: ~160 GFLOP a step; set NEDR_FULL_TESTS=1"))])
@pytest.mark.slow
def test_trainer_resume_equals_uninterrupted_run(tmp_path, monkeypatch, data, h2c):
    """Steps 0–2, saved, resumed by a new Trainer to 4 == the same 4 steps without stopping."""
    if h2c == "tiny":
        monkeypatch.setattr(training, "NeDR", TinyDehazer)
    n, total = 2, 4
    full = KeepStates(paper_config(ckpt_every=n), data, tmp_path / "full")
    full.fit(total)
    resumed = Trainer(paper_config(ckpt_every=n), data, tmp_path / "resumed")
    assert resumed.resume(tmp_path / "full" / f"state_{n}.pt") == n
    resumed.fit(total)
    assert resumed.step == full.step == total
    a, b = dict(full.model.state_dict()), dict(resumed.model.state_dict())
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert_same_state(resumed.objective.state_dict(), full.objective.state_dict())
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history[n:]]
