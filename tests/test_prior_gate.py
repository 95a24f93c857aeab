"""The prior gate: its mix, the dark-channel t it mixes in, its place in the architecture and
checkpoints, and training it alone with the network frozen."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from nedr.model import load_checkpoint
from nedr.model.checkpoint import save_checkpoint
from nedr.model.datasets import SyntheticHaze
from nedr.model.network import ARCHITECTURES, Architecture, NeDR
from nedr.model.physics import PRIOR_OMEGA, atmospheric_light, prior_transmission
from nedr.model.prior_gate import PriorGate
from nedr.model.samples import Sample
from nedr.model.training import TrainConfig, Trainer

GATED = {**ARCHITECTURES["nedr-s"].to_config(), "prior_gate": True}


def gated_model(seed: int = 0) -> NeDR:
    torch.manual_seed(seed)
    return NeDR(atmosphere="brightest", arch=Architecture.from_config(GATED)).eval()


def test_gate_mixes_within_the_two_maps():
    torch.manual_seed(0)
    gate = PriorGate()
    image = torch.rand(2, 3, 64, 96)
    t_net, t_prior = torch.full((2, 1, 64, 96), 0.8), torch.full((2, 1, 64, 96), 0.3)
    w = gate.weight(image, t_net, t_prior)
    assert w.shape == (2, 1, 64, 96) and bool(((w > 0) & (w < 1)).all())
    t = gate(image, t_net, t_prior)
    assert torch.allclose(t, w * 0.8 + (1 - w) * 0.3)
    with torch.no_grad():  # a gate sure of the network passes the network's t through
        gate.body[-1].bias.fill_(30.0)
    assert torch.allclose(gate(image, t_net, t_prior), t_net)


def test_prior_transmission_is_he_et_al():
    """1 − ω·dark(I/A) with the 15×15 min filter: the dark channel prior benchmark's coarse t,
    away from the border (where the two pad differently)."""
    from nedr.benchmarks import dcp

    image = skimage.data.astronaut()[:160, :192].astype(np.float64) / 255
    a = np.array([0.9, 0.85, 0.8])
    ours = prior_transmission(torch.from_numpy(image).permute(2, 0, 1)[None].float(),
                              torch.tensor(a, dtype=torch.float32)[None, :, None, None])[0, 0].numpy()
    theirs = dcp.transmission(image, a, PRIOR_OMEGA)
    assert np.abs(ours - theirs)[8:-8, 8:-8].max() < 1e-5


def test_public_architecture_has_no_gate():
    """Parity: the public network and nedr-s keep their parameter sets; only the gated one grows."""
    plain = NeDR(arch=ARCHITECTURES["nedr-s"])
    gated = gated_model()
    assert plain.prior_gate is None and not any(k.startswith("prior_gate.") for k in plain.state_dict())
    extra = set(gated.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("prior_gate.") for k in extra)
    assert Architecture.from_config({}).prior_gate is False


def test_gated_prediction_and_checkpoint_round_trip(tmp_path):
    model = gated_model()
    x = torch.from_numpy(cv2.resize(skimage.data.astronaut(), (160, 128))).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        p = model.predict(x)
        raw = ((torch.tanh(model.transmission_logit(x)) + 1) / 2).clamp(0.05, 0.95)
    prior = prior_transmission(x, atmospheric_light(x, "brightest"))
    assert not torch.allclose(p.transmission, raw, atol=1e-3)  # the gate did change t
    path = save_checkpoint(model, tmp_path / "gated.safetensors", half=False)
    loaded = load_checkpoint(path)
    assert loaded.arch.prior_gate and loaded.prior_gate is not None
    with torch.no_grad():
        assert torch.allclose(loaded.predict(x).clean, p.clean, atol=1e-5)
    assert prior.shape == raw.shape


def test_train_only_the_gate(tmp_path):
    """train_only="prior_gate": one step moves the gate and nothing else (BatchNorm statistics
    included), through the guided filter when asked."""
    data = SyntheticHaze([Sample("astronaut", skimage.data.astronaut())], crop=128, seed=0)
    cfg = TrainConfig(crop=128, batch=1, workers=0, device="cpu", log_every=1, val_every=0, ckpt_every=0,
                      atmosphere="brightest", architecture=GATED, train_only="prior_gate", loss_guided=True)
    trainer = Trainer(cfg, data, tmp_path)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train_mode()
    trainer.objective.step(next(iter(torch.utils.data.DataLoader(data, batch_size=1))), 1.0)
    after = trainer.model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(k.startswith("prior_gate.") for k in changed)
    saved = load_checkpoint(trainer.export(tmp_path / "gate.safetensors"))
    assert saved.guided_filter and saved.prior_gate is not None  # the default it was trained for
    for bad, match in (({"train_only": "drem"}, "train_only"),
                       ({"architecture": ARCHITECTURES["nedr-s"].to_config()}, "prior gate"),
                       ({"crop": 96}, "at least 128")):
        with pytest.raises(ValueError, match=match):
            TrainConfig(**{**cfg.__dict__, **bad})


@pytest.mark.slow
def test_gated_model_exports_to_a_tensorrt_clean_graph(tmp_path):
    """The gate traces into ONNX (dynamic H×W), matches PyTorch in ONNX Runtime at two sizes, uses
    only TensorRT-supported ops, and falls into the FP32 scattering-model island."""
    import onnx

    from nedr.export import check_ops, export_onnx
    from nedr.export.islands import SCATTERING_MODEL, fp32_islands
    from nedr.export.ops import TRT_SUPPORTED_OPS
    from nedr.export.verify import compare_with_torch, sample_frames

    model = gated_model()
    path = export_onnx(model, tmp_path / "gated.onnx", with_transmission=True)
    for check in compare_with_torch(path, model, sample_frames(((128, 160), (192, 128)))):
        assert check.max_abs_err <= 1e-4, str(check)
    graph = onnx.load(str(path))
    assert check_ops(graph) == [] and {n.op_type for n in graph.graph.node} <= set(TRT_SUPPORTED_OPS)
    gate_nodes = [n.name for n in graph.graph.node if n.name.startswith("/prior_gate/")]
    assert gate_nodes and set(gate_nodes) <= set(fp32_islands(graph, path)[SCATTERING_MODEL])
