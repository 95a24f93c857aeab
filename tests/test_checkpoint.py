"""Parameter counts (docs/model.md §8) and checkpoint I/O: public `.pth`, our safetensors, errors."""
import pickle
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from nedr.model import CheckpointError, NeDR, load_checkpoint, save_checkpoint
from nedr.model.checkpoint import DEAD_KEYS, DREM_SEED
from nedr.model.network import parameter_groups

# A 128×128 input is the smallest the network takes; it keeps every forward here well under 1 s.
X = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))

# Dead entries of the public state dict (docs/model.md §8), with their shapes in the public model.
MCC_SHAPES = {
    "mcc.temperature": (8, 1, 1), "mcc.norm.weight": (32,), "mcc.norm.bias": (32,),
    "mcc.pwconv.weight": (96, 32, 1, 1), "mcc.dwconv.weight": (96, 1, 3, 3),
    "mcc.project_out.weight": (32, 32, 1, 1), "mcc.feedforward.0.weight": (32, 32, 1, 1),
    "mcc.color_space_detector.conv1.weight": (64, 32, 3, 3), "mcc.color_space_detector.conv1.bias": (64,),
    "mcc.color_space_detector.fc.weight": (3, 256), "mcc.color_space_detector.fc.bias": (3,),
    "mcc.channel_adjust.weight": (32, 96, 1, 1),
}


def dead_entries(generator: torch.Generator) -> dict[str, torch.Tensor]:
    shapes = dict(MCC_SHAPES)
    for c in (32, 64, 128, 256):
        for fc in ("fc1", "fc2"):
            shapes[f"cid_{c}.channel_dependent.{fc}.weight"] = (c, c)
            shapes[f"cid_{c}.channel_dependent.{fc}.bias"] = (c,)
    for conv in ("conv1", "conv2"):
        shapes[f"scratch.refinenet4.resConfUnit1.{conv}.weight"] = (256, 256, 3, 3)
        shapes[f"scratch.refinenet4.resConfUnit1.{conv}.bias"] = (256,)
    for rdb in ("RDB_1", "RDB_2"):
        shapes[f"drem.{rdb}.0.conv1.weight"] = (64, 3, 5, 5)
        shapes[f"drem.{rdb}.0.conv1.bias"] = (64,)
    return {k: torch.randn(s, generator=generator) for k, s in shapes.items()}


@pytest.fixture(scope="module")
def source_model() -> NeDR:
    """A model whose every parameter AND buffer is random (a loader that skipped BN running stats
    or spline scalers would not reproduce its outputs)."""
    torch.manual_seed(1234)
    model = NeDR()
    g = torch.Generator().manual_seed(99)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var") or name.endswith("spline_scaler"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif name.endswith("num_batches_tracked"):
                t.fill_(7)
    return model.eval()


@pytest.fixture(scope="module")
def public_layout_state(source_model) -> dict[str, torch.Tensor]:
    """Public-layout state dict built from our own model plus the dead public entries."""
    state = {k: v.clone() for k, v in source_model.state_dict().items()}
    dead = dead_entries(torch.Generator().manual_seed(5))
    assert all(DEAD_KEYS.match(k) for k in dead) and not set(dead) & set(state)
    state.update(dead)
    return state


@pytest.fixture(scope="module")
def source_output(source_model):
    with torch.no_grad():
        return source_model(X, return_aux=True)


def _outputs(model):
    with torch.no_grad():
        return model(X, return_aux=True)


def _assert_same_outputs(a, b):
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def _save_public(state, path: Path) -> Path:
    torch.save({"net_h2c": state, "net_c2h": {}, "net_depth": {}}, path)
    return path


# ---------------------------------------------------------------- parameter counts

def test_parameter_counts():
    model = NeDR()
    groups = parameter_groups(model)
    assert groups["backbone"] == 6_422_016
    assert groups["scratch"] == 3_087_057
    assert groups["kan_cid"] == 1_764_800
    assert groups["idrm"] == 218_912
    assert groups["drem"] == 1_467_040
    assert groups["beta_head"] == 38_529
    affecting_j = sum(v for k, v in groups.items() if k != "beta_head")
    assert affecting_j == 12_959_825
    # the groups cover the whole model, nothing counted twice or left out
    assert sum(groups.values()) == sum(p.numel() for p in model.parameters()) == 12_998_354


# ---------------------------------------------------------------- public checkpoints

def test_public_parity_state_round_trips(public_checkpoint, parity_state, tmp_path):
    model = load_checkpoint(public_checkpoint)
    loaded = model.state_dict()
    for k, v in parity_state.items():
        if DEAD_KEYS.match(k):
            assert k not in loaded
        else:
            assert torch.equal(loaded[k], v), k
    # saving in our format and loading back reproduces the outputs bit for bit
    again = load_checkpoint(save_checkpoint(model, tmp_path / "parity.safetensors"))
    _assert_same_outputs(_outputs(again), _outputs(model))


def test_public_layout_round_trips_without_shared(public_layout_state, source_output, tmp_path):
    path = _save_public(public_layout_state, tmp_path / "weights_reconstruct_x.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # drem.* present: no DREM warning
        model = load_checkpoint(path)
    loaded = model.state_dict()
    for k, v in public_layout_state.items():
        if DEAD_KEYS.match(k):
            assert k not in loaded
        else:
            assert torch.equal(loaded[k], v), k
    _assert_same_outputs(_outputs(model), source_output)


def test_bare_state_dict_loads(public_layout_state, source_output, tmp_path):
    path = tmp_path / "bare.pth"
    torch.save(public_layout_state, path)
    _assert_same_outputs(_outputs(load_checkpoint(path)), source_output)


def test_drem_keys_are_loaded(public_layout_state, source_model, tmp_path):
    path = _save_public(public_layout_state, tmp_path / "with_drem.pth")
    model = load_checkpoint(path)
    for k, v in source_model.drem.state_dict().items():
        assert torch.equal(model.drem.state_dict()[k], v), k


def test_missing_drem_warns_and_seeds_deterministically(public_layout_state, source_model, tmp_path):
    state = {k: v for k, v in public_layout_state.items() if not k.startswith("drem.")}
    path = _save_public(state, tmp_path / "no_drem.pth")
    torch.manual_seed(1)
    with pytest.warns(UserWarning, match=rf"drem.*seed {DREM_SEED}"):
        first = load_checkpoint(path)
    torch.manual_seed(2)  # a different global RNG state must not change the DREM weights
    with pytest.warns(UserWarning, match="drem"):
        second = load_checkpoint(path)
    a, b = first.drem.state_dict(), second.drem.state_dict()
    assert a.keys() == b.keys() and len(a) > 0
    assert all(torch.equal(a[k], b[k]) for k in a)
    # seeded, not copied from anywhere: differs from the source model's DREM
    assert not torch.equal(a["conv1.weight"], source_model.drem.conv1.weight)
    # everything else still came from the file
    assert torch.equal(first.nrn.imnet.layers[0].weight, public_layout_state["nrn.imnet.layers.0.weight"])


def test_partial_drem_is_an_error(public_layout_state, tmp_path):
    state = {k: v for k, v in public_layout_state.items() if k != "drem.conv2.bias"}
    path = _save_public(state, tmp_path / "partial_drem.pth")
    with pytest.raises(CheckpointError, match=r"drem\.conv2\.bias"):
        load_checkpoint(path)


# ---------------------------------------------------------------- our format

def test_safetensors_round_trip_is_bit_exact(source_model, source_output, tmp_path):
    source_model.atmosphere, source_model.guided_filter = "max", False
    try:
        path = save_checkpoint(source_model, tmp_path / "ours.safetensors",
                               config={"training": {"iterations": 123, "dataset": "unit-test"}})
        expected_out = _outputs(source_model)
    finally:
        source_model.atmosphere, source_model.guided_filter = "dark_channel", True
    assert path.is_file() and not list(tmp_path.glob("*.partial"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load_checkpoint(path)
    want, got = source_model.state_dict(), model.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), k
    # config kept: architecture switches restored, user config and provenance present
    assert model.atmosphere == "max" and model.guided_filter is False
    assert model.config["training"] == {"iterations": 123, "dataset": "unit-test"}
    assert model.config["format"] == "nedr" and "nedr_version" in model.config
    _assert_same_outputs(_outputs(model), expected_out)
    # explicit arguments override the stored config
    model2 = load_checkpoint(path, atmosphere="dark_channel", guided_filter=True)
    _assert_same_outputs(_outputs(model2), source_output)


# ---------------------------------------------------------------- errors

def _assert_one_line(exc: pytest.ExceptionInfo, path: Path, *needles: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg and "\x1b" not in msg  # one plain line
    assert str(path) in msg
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_truncated_pth(public_layout_state, tmp_path):
    full = _save_public(public_layout_state, tmp_path / "full.pth")
    assert zipfile.is_zipfile(full)
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(bad)
    _assert_one_line(exc, bad)


def test_truncated_safetensors(source_model, tmp_path):
    full = save_checkpoint(source_model, tmp_path / "full.safetensors")
    for cut in (full.stat().st_size // 2, 20):  # inside the tensor data, inside the header
        bad = tmp_path / f"truncated_{cut}.safetensors"
        bad.write_bytes(full.read_bytes()[:cut])
        with pytest.raises(CheckpointError) as exc:
            load_checkpoint(bad)
        _assert_one_line(exc, bad)


def test_missing_key(public_layout_state, tmp_path):
    state = {k: v for k, v in public_layout_state.items() if k != "scratch.refinenet2.out_conv.weight"}
    path = _save_public(state, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    _assert_one_line(exc, path, "missing", "scratch.refinenet2.out_conv.weight")


def test_wrong_shape(public_layout_state, tmp_path):
    state = dict(public_layout_state)
    state["nrn.imnet.layers.0.weight"] = torch.zeros(256, 306)
    path = _save_public(state, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    _assert_one_line(exc, path, "nrn.imnet.layers.0.weight", "(256, 306)")


def test_wrong_shape_in_safetensors(source_model, tmp_path):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in source_model.state_dict().items()}
    state["cid_64.channel_dependent.fc2.spline_weight"] = torch.zeros(64, 64, 7)
    path = tmp_path / "shape.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    _assert_one_line(exc, path, "cid_64.channel_dependent.fc2.spline_weight")


def test_unexpected_key(public_layout_state, tmp_path):
    state = dict(public_layout_state)
    state["scratch.refinenet1.extra_conv.weight"] = torch.zeros(3)
    path = _save_public(state, tmp_path / "unexpected.pth")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    _assert_one_line(exc, path, "unexpected", "scratch.refinenet1.extra_conv.weight")


def test_nonuniform_grid_is_refused(public_layout_state, tmp_path):
    state = dict(public_layout_state)
    state["cid_32.channel_dependent.fc1.grid"] = state["cid_32.channel_dependent.fc1.grid"] * 1.1
    path = _save_public(state, tmp_path / "grid.pth")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    _assert_one_line(exc, path, "cid_32.channel_dependent.fc1.grid")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    _assert_one_line(exc, path)


class _Payload:
    """Unpickling this with plain pickle would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_arbitrary_pickle_is_refused(public_layout_state, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"net_h2c": {"a": torch.zeros(1)}, "payload": _Payload(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    _assert_one_line(exc, path, "weights-only", "io.open")  # names the refused global
    assert not marker.exists()  # weights_only: the object was never constructed

    plain = tmp_path / "plain.pkl"  # not even a torch zip: a bare pickle stream
    plain.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(plain)
    _assert_one_line(exc, plain, "weights-only")
    assert not marker.exists()


def test_non_state_dict_is_refused(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    _assert_one_line(exc, path)


# ---------------------------------------------------------------- determinism

def test_forward_is_deterministic(source_model):
    x = torch.rand(2, 3, 128, 160, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        a = source_model(x, return_aux=True)
        b = source_model(x, return_aux=True)
    _assert_same_outputs(a, b)


def test_light_architecture_round_trips_through_our_format(tmp_path):
    """nedr-s sizes are saved in the config and rebuilt on load; the public sizes stay the default."""
    from nedr.model.network import ARCHITECTURES, Architecture, parameter_groups
    from nedr.model.training import transfer_matching

    light = NeDR(arch=ARCHITECTURES["nedr-s"]).eval()
    full = NeDR().eval()
    groups, public = parameter_groups(light), parameter_groups(full)
    assert groups["drem"] < public["drem"] / 10 and groups["idrm"] < public["idrm"] / 5
    assert groups["backbone"] == public["backbone"] and groups["kan_cid"] == public["kan_cid"]
    path = save_checkpoint(light, tmp_path / "s.safetensors")
    back = load_checkpoint(path)
    assert back.arch == ARCHITECTURES["nedr-s"] and "drem.RDB_2.0.lff.weight" not in back.state_dict()
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(back(x), light(x))
    copied = transfer_matching(full, light)
    assert copied["copied_parameters"] == sum(public[k] for k in ("backbone", "scratch", "kan_cid", "beta_head"))
    assert Architecture.from_config({"atmosphere": "max"}) == Architecture()  # old configs: public sizes


def test_bad_architecture_in_config_is_one_line(tmp_path):
    from safetensors.torch import load_file, save_file

    path = save_checkpoint(NeDR(), tmp_path / "m.safetensors", half=True)
    state = load_file(str(path))
    save_file(state, str(path), metadata={"format": "nedr", "config": '{"architecture": {"drem_depth": 3}}'})
    with pytest.raises(CheckpointError, match=r"m\.safetensors: bad architecture .*drem_depth"):
        load_checkpoint(path)


def test_bundled_name_resolves_to_the_default_weights(tmp_path, monkeypatch):
    from nedr.model.checkpoint import default_weights_path, resolve_weights

    assert resolve_weights("nedr-s") == default_weights_path() == resolve_weights(None)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nedr").write_bytes(b"x")  # a file of that name wins
    assert resolve_weights("nedr") == Path("nedr")


def test_gmac_per_frame_counts_the_network_and_scales_with_pixels():
    from nedr.model.complexity import gmac_per_frame
    from nedr.model.network import ARCHITECTURES

    full = gmac_per_frame(256, 256)
    assert 29 < full < 31  # ~30 GMAC per 256² frame, 80 % of it in DREM (the measurement)
    assert gmac_per_frame(480, 640) == pytest.approx(full * 480 * 640 / 256**2)
    assert gmac_per_frame(460, 620) == gmac_per_frame(480, 640)  # padded to the contract first
    assert full / gmac_per_frame(256, 256, ARCHITECTURES["nedr-s"]) > 4
    assert gmac_per_frame(256, 256, guided_filter=False) < full
