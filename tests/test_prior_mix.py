"""The prior mix: a fixed share of the dark channel prior's t in the network's, as a setting of the
model, its checkpoints, the CLI and the ONNX export."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from nedr.model import load_checkpoint
from nedr.model.checkpoint import save_checkpoint
from nedr.model.network import ARCHITECTURES, Architecture, NeDR
from nedr.model.physics import atmospheric_light, prior_transmission


def hazy_frame(seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return (torch.rand(1, 3, 128, 160) * 0.6 + 0.3).clamp(0, 1)


def test_mix_blends_the_prior_before_the_filter():
    """t = (1 − m)·t_network + m·t_prior with the same A, clamped to the network's range; m = 0 is the
    network alone, so the public path is untouched."""
    model = load_checkpoint("nedr-s", prior_mix=0.0)
    x = hazy_frame()
    with torch.no_grad():
        alone = model.predict(x, guided=False)
        model.prior_mix = 0.4
        mixed = model.predict(x, guided=False)
    prior = prior_transmission(x, atmospheric_light(x, model.atmosphere))
    assert torch.allclose(mixed.atmosphere, alone.atmosphere)
    assert torch.allclose(mixed.transmission, (0.6 * alone.transmission + 0.4 * prior).clamp(0.05, 0.95), atol=1e-6)
    assert (mixed.transmission - alone.transmission).abs().max() > 0.01  # the prior really moved t
    assert torch.allclose(mixed.clean, ((x - mixed.atmosphere) / mixed.transmission + mixed.atmosphere).clamp(0, 1),
                          atol=1e-6)


def test_mix_is_validated_and_exclusive_with_the_prior_gate():
    model = NeDR(arch=ARCHITECTURES["nedr-s"])
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="prior_mix"):
            model.prior_mix = bad
    gated = NeDR(arch=Architecture.from_config({**ARCHITECTURES["nedr-s"].to_config(), "prior_gate": True}))
    with pytest.raises(ValueError, match="prior gate"):
        gated.prior_mix = 0.3
    assert NeDR().prior_mix == 0.0  # the public network mixes nothing


def test_mix_is_a_saved_default_that_callers_override(tmp_path):
    from nedr.model.checkpoint import CheckpointError

    model = NeDR(atmosphere="brightest", arch=ARCHITECTURES["nedr-s"], prior_mix=0.25)
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    assert load_checkpoint(path).prior_mix == 0.25
    assert load_checkpoint(path, prior_mix=0.0).prior_mix == 0.0
    with pytest.raises(CheckpointError, match=r"m\.safetensors: .*prior_mix"):
        load_checkpoint(path, prior_mix=2.0)


def test_cli_refuses_a_share_outside_zero_one(tmp_path):
    image = tmp_path / "in.png"
    result = subprocess.run([sys.executable, "-m", "nedr.cli", "dehaze", str(image), "--prior-mix", "1.5"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "--prior-mix: 1.5 is outside [0, 1]" in result.stderr


@pytest.mark.slow
def test_export_bakes_the_mix_in(tmp_path):
    """The exported graph computes the mix (ONNX Runtime matches PyTorch), records it in its options,
    and the verifier's PyTorch twin reads it back from the file."""
    from nedr.export import export_onnx
    from nedr.contract import META_OPTIONS
    from nedr.export.metadata import read_metadata
    from nedr.export.verify import compare_with_torch, model_as_exported, sample_frames

    model = load_checkpoint("nedr-s", prior_mix=0.4)
    path = export_onnx(model, tmp_path / "mixed.onnx", with_transmission=True)
    assert read_metadata(path)[META_OPTIONS]["prior_mix"] == 0.4
    twin, _ = model_as_exported(load_checkpoint("nedr-s", prior_mix=0.0), path)
    assert twin.prior_mix == 0.4
    for check in compare_with_torch(path, model, sample_frames(((128, 160),))):
        assert check.max_abs_err <= 1e-4, str(check)
