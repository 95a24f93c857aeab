"""The `nedr.*` metadata props of exported ONNX files, and file digests. Needs no torch, so engine
builders and runtimes on a Jetson can read what an export recorded."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

META_PREFIX = "nedr."


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def encode_value(value: Any) -> str:
    """Dicts and lists as JSON (so they read back as such), anything else as its str()."""
    return json.dumps(value) if isinstance(value, (dict, list, tuple)) else str(value)


def read_metadata(model) -> dict[str, Any]:
    """The `nedr.*` props of an ONNX file or `onnx.ModelProto`, JSON values decoded, prefix dropped."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load_model(str(model), load_external_data=False)
    out: dict[str, Any] = {}
    for prop in model.metadata_props:
        if prop.key.startswith(META_PREFIX):
            structured = prop.value[:1] in ("{", "[")  # how encode_value writes dicts and lists
            out[prop.key[len(META_PREFIX):]] = json.loads(prop.value) if structured else prop.value
    return out
