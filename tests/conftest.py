"""Shared fixtures: the official-parity weight rule and paths to ../shared."""
from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PARITY = SHARED / "fixtures" / "official_parity"
SOTS = SHARED / "data" / "sots-indoor-examples"
PARITY_SHA256 = "c79c66fe16f387a89b435241b6cc38aad2cace64479ea45530904668e60c1b5a"


def parity_weight(key: str, shape: list[int], grids: dict) -> np.ndarray:
    """The fixture README's rule: every entry from its key name (first matching line wins)."""
    rng = np.random.default_rng(zlib.crc32(key.encode("utf-8")))
    shape = tuple(shape)
    if key.endswith(".num_batches_tracked"):
        return np.array(0, dtype=np.int64)
    if key.endswith(".grid"):
        return grids[key]
    if key.endswith((".running_var", ".spline_scaler", ".temperature")):
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if key.endswith(".running_mean"):
        return rng.normal(0, 0.1, shape).astype(np.float32)
    if len(shape) == 1 and key.endswith(".weight"):
        return rng.uniform(0.8, 1.2, shape).astype(np.float32)
    if len(shape) == 1 and key.endswith(".bias"):
        return rng.normal(0, 0.05, shape).astype(np.float32)
    fan_in = int(np.prod(shape[1:]))
    return (rng.normal(0, 1, shape) * (1.0 / np.sqrt(fan_in))).astype(np.float32)


@pytest.fixture(scope="session")
def parity_state() -> dict[str, torch.Tensor]:
    """The deterministic patched-public state dict (605 entries, DREM included), hash-checked."""
    if not PARITY.is_dir():
        pytest.skip(f"official parity fixture not present at {PARITY} (a fresh clone has no ../shared)")
    keys = json.loads((PARITY / "keys.json").read_text())
    grids = dict(np.load(PARITY / "grids.npz"))
    digest = hashlib.sha256()
    state = {}
    for key, shape, _ in keys:
        arr = parity_weight(key, shape, grids)
        digest.update(key.encode() + b"\0" + np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes())
        state[key] = torch.from_numpy(arr.copy())
    if digest.hexdigest() != PARITY_SHA256:
        pytest.skip("this numpy's Generator stream differs from the fixture's (hash mismatch; NEP 19)")
    return state


@pytest.fixture(scope="session")
def parity_io():
    if not PARITY.is_dir():
        pytest.skip(f"official parity fixture not present at {PARITY}")
    return dict(np.load(PARITY / "inputs.npz")), dict(np.load(PARITY / "expected.npz"))


@pytest.fixture(scope="session")
def public_checkpoint(tmp_path_factory, parity_state) -> Path:
    """The parity weights saved the way the public release saves them."""
    path = tmp_path_factory.mktemp("public") / "weights_reconstruct_parity.pth"
    torch.save({"net_h2c": parity_state, "net_c2h": {}, "net_depth": {}}, path)
    return path


@pytest.fixture(scope="session")
def small_model():
    """A randomly initialised model (fixed seed) for shape/behaviour tests that need no fixture."""
    from nedr.model import NeDR

    torch.manual_seed(0)
    return NeDR().eval()


@pytest.fixture(scope="session")
def demo_triton_repo(tmp_path_factory) -> Path:
    """`nedr export --triton REPO --no-verify` of the default weights (transmission on, the default),
    run once per session: the real path, default weights → ONNX → REPO/nedr/{config.pbtxt,1/model.onnx}.
    Read-only for tests: a test that needs another repository writes its own from that model.onnx
    (`--from-onnx`, which copies the file)."""
    from nedr.cli import main

    repo = tmp_path_factory.mktemp("demo_triton") / "models"
    assert main(["export", "--triton", str(repo), "--no-verify"]) == 0
    return repo


@pytest.fixture
def onnx_file(tmp_path):
    """A tiny conv ONNX model (the build, inspect and TensorRT-build tests' input)."""
    from tiny_onnx import conv_model, save

    return save(conv_model(), tmp_path / "tiny.onnx")


@pytest.fixture
def no_tensorrt(monkeypatch):
    """`import tensorrt` fails, as on a machine without it, even where it is installed."""
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)
