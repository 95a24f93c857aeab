"""The `nedr.*` metadata props of exported ONNX files, and file digests. Needs no torch, so engine
builders and runtimes on a Jetson can read what an export recorded."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from nedr.contract import META_PREFIX
from nedr.errors import NedrError, UserError, first_line


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def encode_value(value: Any) -> str:
    """Dicts and lists as JSON (so they read back as such), anything else as its str()."""
    return json.dumps(value) if isinstance(value, (dict, list, tuple)) else str(value)


def load_onnx(path: str | Path, external_data: bool = False, *, error: type[NedrError] = UserError):
    """An ONNX file as a ModelProto, or a one-line `error` (default UserError) naming the file.

    protobuf parses an empty file as an empty model and a truncated one with a multi-line
    DecodeError; both are turned into a message that says what is wrong with which file. `error`
    lets the caller's stage name the failure (quantize passes QuantizeError), so none re-wraps it.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such ONNX file")
    try:
        model = onnx.load_model(str(path), load_external_data=external_data)
    except Exception as exc:  # noqa: BLE001 - DecodeError, truncated external data, ...
        raise error(f"{path}: not a readable ONNX file ({type(exc).__name__}: "
                    f"{first_line(exc)[:120]})") from None
    if not model.graph.node:
        raise error(f"{path}: an ONNX model without a graph (empty or not an ONNX file, {path.stat().st_size} bytes)")
    return model


def read_metadata(model) -> dict[str, Any]:
    """The `nedr.*` props of an ONNX file or `onnx.ModelProto`, JSON values decoded, prefix dropped."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = load_onnx(model)
    out: dict[str, Any] = {}
    for prop in model.metadata_props:
        if prop.key.startswith(META_PREFIX):
            structured = prop.value[:1] in ("{", "[")  # how encode_value writes dicts and lists
            out[prop.key[len(META_PREFIX):]] = json.loads(prop.value) if structured else prop.value
    return out


class ExportError(UserError):
    """Export could not produce the .onnx file; the message is one line naming the cause.
    (A RuntimeError, via UserError: the CLI reports it as one line.)"""
