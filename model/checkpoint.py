"""Checkpoint I/O: public NeDR/D4 `.pth` files and our safetensors + JSON-config format.

Nothing here unpickles arbitrary objects: `.pth` goes through `torch.load(weights_only=True)`,
our own format is safetensors with the config in its header metadata (one file, cannot drift
apart from its weights).
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch

from nedr.bundled import resolve_weights
from nedr.errors import NedrError
from nedr.fileio import atomic_write

from .network import Architecture, NeDR

FORMAT_NAME = "nedr"
DREM_SEED = 20251113

# Entries of public checkpoints that never influence J or t (docs/model.md §8).
DEAD_KEYS = re.compile(
    r"^(mcc\."
    r"|cid_\d+\.channel_dependent\.fc[12]\.(weight|bias)$"
    r"|scratch\.refinenet4\.resConfUnit1\."
    r"|drem\.RDB_[12]\.0\.conv1\.)"
)
MAX_LISTED = 6


class CheckpointError(NedrError, ValueError):
    """A checkpoint that cannot become this model; the message names the file and the keys."""


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED])
    return shown + (f" … (+{len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else "")


def default_weights_path() -> Path:
    """The default weights shipped inside the package (`nedr.bundled.DEFAULT`; trained as their config says)."""
    return resolve_weights(None)


def read_state(path: str | Path, *, error: type[NedrError] = CheckpointError
               ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint file into (state dict, config); config is empty for public files.

    Failures raise `error` (default CheckpointError): the caller's stage names the failure, no re-wrap.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        return _read_safetensors(path, error=error)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle with disallowed globals, not a torch file
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # torch's message carries terminal escapes
        if "WeightsUnpickler error:" in text:  # its first line ("can still be loaded ...") hides why
            reason = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
            raise error(f"{path}: refused by the weights-only unpickler, which allows only "
                        f"tensors and plain containers ({reason.split(' was not')[0][:160]})") from None
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        first = lines[0] if lines else type(exc).__name__
        if first.isdigit():  # the legacy unpickler's bad magic number: text or other non-torch bytes
            first = "neither a torch zip archive nor a pickle"
        raise error(f"{path}: not a readable PyTorch checkpoint ({first[:160]})") from None
    if isinstance(obj, Mapping) and "net_h2c" in obj:
        obj = obj["net_h2c"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise error(f"{path}: expected a state dict or a dict with 'net_h2c'")
    return dict(obj), {}


def _read_safetensors(path: Path, *, error: type[NedrError] = CheckpointError
                      ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise error(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        config = json.loads(meta.get("config", "{}"))
    except json.JSONDecodeError as exc:
        raise error(f"{path}: corrupt config metadata ({exc})") from None
    return state, config


def apply_state(model: NeDR, state: Mapping[str, torch.Tensor], source: str = "checkpoint", *,
                error: type[NedrError] = CheckpointError) -> list[str]:
    """Copy every live entry strictly (names and shapes); returns missing DREM keys, if any.

    Dead public entries are dropped; anything else unknown, missing or mis-shaped is an error,
    because silently ignoring it would give a model that runs and dehazes wrongly. It is raised as
    `error` (default CheckpointError): the caller's stage names the failure, no re-wrap.
    """
    expected = model.state_dict()
    live = {k: v for k, v in state.items() if not DEAD_KEYS.match(k)}
    unexpected = sorted(set(live) - set(expected))
    missing = sorted(k for k in set(expected) - set(live) if not k.endswith("num_batches_tracked"))
    missing_drem = [k for k in missing if k.startswith("drem.")]
    missing_other = [k for k in missing if not k.startswith("drem.")]
    if unexpected:
        raise error(f"{source}: unexpected keys {_listing(unexpected)}")
    if missing_other:
        raise error(f"{source}: missing keys {_listing(missing_other)}")
    shape_errors = [f"{k} {tuple(v.shape)} != {tuple(expected[k].shape)}"
                    for k, v in live.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if shape_errors:
        raise error(f"{source}: shape mismatch {_listing(shape_errors)}")
    for key, grid in live.items():
        if key.endswith(".grid") and not torch.allclose(grid.float(), expected[key], atol=1e-5):
            raise error(f"{source}: {key} is not the uniform KAN grid (grid updates are not supported)")
    converted = {k: v.to(expected[k].dtype) for k, v in live.items()}
    model.load_state_dict(converted, strict=False)
    return missing_drem


def seed_drem(model: NeDR, seed: int = DREM_SEED) -> None:
    """Initialise DREM reproducibly (public checkpoints cannot contain it)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.drem.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.reset_parameters()


def load_checkpoint(path: str | Path | None = None, *, atmosphere: str | None = None,
                    guided_filter: bool | None = None, prior_mix: float | None = None,
                    error: type[NedrError] = CheckpointError) -> NeDR:
    """Build a NeDR in eval mode on the CPU from a public `.pth`, a bare state dict, or our format.

    `path=None` loads the bundled default weights (`nedr-s`), a bundled name ("nedr") those weights.
    `atmosphere` / `guided_filter` / `prior_mix` default to the checkpoint's config, else to the public
    outdoor setting (dark channel, filter on, no prior); the layer sizes come from the config's `architecture`
    (public sizes when absent). A checkpoint that cannot become this model raises `error` (default
    CheckpointError; the exporter passes ExportError): the caller's stage names the failure, no re-wrap.
    """
    path = resolve_weights(path)
    state, config = read_state(path, error=error)
    arch = config.get("architecture", {})
    try:
        model = NeDR(
            atmosphere=atmosphere or arch.get("atmosphere", "dark_channel"),
            guided_filter=arch.get("guided_filter", True) if guided_filter is None else guided_filter,
            arch=Architecture.from_config(arch),
            prior_mix=arch.get("prior_mix", 0.0) if prior_mix is None else prior_mix,
        )
    except (TypeError, ValueError) as exc:
        raise error(f"{path}: bad architecture in its config or options ({exc})") from None
    missing_drem = apply_state(model, state, source=str(path), error=error)
    if missing_drem:
        if len(missing_drem) != len([k for k in model.state_dict() if k.startswith("drem.")]):
            raise error(f"{path}: partial DREM weights, missing {_listing(missing_drem)}")
        seed_drem(model)
        warnings.warn(f"{path}: no drem.* weights (public checkpoint); DREM initialised from seed {DREM_SEED}",
                      stacklevel=2)
    model.config = config
    return model.eval()


def _portable_state(model: NeDR, half: bool) -> dict[str, torch.Tensor]:
    """CPU state dict; float tensors in float16 when `half` (KAN grids stay exact)."""
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        state[k] = (v.half() if half and v.is_floating_point() and not k.endswith(".grid") else v).contiguous()
    return state


def _metadata(model: NeDR, config: Mapping[str, Any] | None) -> dict[str, str]:
    from nedr import __version__

    full = {"format": FORMAT_NAME, "nedr_version": __version__,
            "architecture": {"atmosphere": model.atmosphere, "guided_filter": model.guided_filter,
                             "prior_mix": model.prior_mix,
                             **model.arch.to_config()}}
    full.update(config or {})
    return {"format": FORMAT_NAME, "config": json.dumps(full)}


def save_checkpoint(model: NeDR, path: str | Path, *, config: Mapping[str, Any] | None = None,
                    half: bool = False) -> Path:
    """Write our format: safetensors weights (float16 when `half`) with a JSON config in the header.

    Written to a temporary name and renamed, so an interrupted save never leaves a corrupt file.
    """
    from safetensors.torch import save_file

    state, metadata = _portable_state(model, half), _metadata(model, config)
    return atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=metadata))


def save_shards(model: NeDR, folder: str | Path, stem: str, *, config: Mapping[str, Any] | None = None,
                parts: int = 2) -> list[Path]:
    """Float16 weights split by key into `parts` files (for transports that cap file size)."""
    from safetensors.torch import save_file

    state, meta = _portable_state(model, half=True), _metadata(model, config)
    total = sum(v.numel() * v.element_size() for v in state.values())
    shards: list[dict[str, torch.Tensor]] = [{} for _ in range(parts)]
    done = 0
    for k, v in state.items():  # fill shards in key order, balanced by bytes
        shards[min(parts - 1, done * parts // total)][k] = v
        done += v.numel() * v.element_size()
    paths = []
    for i, shard in enumerate(shards):
        path = Path(folder) / f"{stem}.part{i}.safetensors"
        save_file(shard, str(path), metadata=meta)
        paths.append(path)
    return paths


def merge_shards(paths: list[str | Path], out: str | Path) -> Path:
    """Join `save_shards` output into one safetensors file with the first shard's config."""
    from safetensors.torch import save_file

    state, meta = {}, None
    for p in paths:
        part, cfg = _read_safetensors(Path(p))
        state.update(part)
        meta = meta or {"format": FORMAT_NAME, "config": json.dumps(cfg)}
    save_file(state, str(out), metadata=meta)
    return Path(out)
