"""The weights that ship inside the package, addressable by name wherever a checkpoint is accepted.

Torch-free on purpose: the runtime (a Jetson with only ONNX Runtime or TensorRT) and the CLI must
turn `--model nedr-s` into a file without importing `nedr.model`, which imports torch.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

# name -> file under nedr/model/weights/. "nedr-s" is the light variant (docs/model.md, Architecture
# "nedr-s") and the default everywhere: it scores better than the full network's weights on every
# evaluation set (README "Bundled weights") and runs 3.6x faster. "nedr" is the full public network.
BUNDLED = {"nedr": "nedr-demo.safetensors", "nedr-s": "nedr-s.safetensors"}
DEFAULT = "nedr-s"


def weights_folder() -> Path:
    """nedr/model/weights, found without importing nedr.model."""
    spec = importlib.util.find_spec("nedr.model")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the nedr.model package is missing (broken install?)")
    return Path(next(iter(spec.submodule_search_locations))) / "weights"


def is_bundled_name(spec: str | os.PathLike | None) -> bool:
    """A bundled name that no file of the same spelling shadows (an existing file always wins)."""
    return spec is not None and str(spec) in BUNDLED and not Path(spec).is_file()


def resolve_weights(spec: str | os.PathLike | None) -> Path:
    """A checkpoint path as given, a bundled name's file, or (None) the default weights."""
    if spec is None:
        return weights_folder() / BUNDLED[DEFAULT]
    if is_bundled_name(spec):
        return weights_folder() / BUNDLED[str(spec)]
    return Path(spec)
