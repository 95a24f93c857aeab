"""Show what is inside an ONNX file or a TensorRT engine (operators, precision, profile, build target).

FILE.onnx: graph size, operators, precisions, Q/DQ count, metadata, I/O (no torch or GPU needed).
FILE.engine: its manifest (TensorRT version, GPU, precision, profile, source ONNX, rebuild command),
whether it can run on this machine, and, where TensorRT is installed, its layers and their precisions.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from nedr.contract import ENGINE_SUFFIXES, ONNX_SUFFIXES
from nedr.errors import UserError

HELP = "show what is inside an .onnx file or a TensorRT engine"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help=".onnx file, TensorRT engine (.engine/.plan/.trt) or ENGINE.json")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.add_argument("--layers", type=int, default=60, metavar="N", help="engine layers to list (default 60)")
    parser.set_defaults(handler=run)


def inspect_onnx_file(path: Path, as_json: bool) -> str:
    from nedr.export.engine_manifest import onnx_precision
    from nedr.export.inspection import format_inspection, inspect_onnx

    info = inspect_onnx(path)
    info["precision"] = onnx_precision(path)
    if as_json:
        return json.dumps(info, indent=2, default=str)
    p = info["precision"]
    detail = [f"Q/DQ {p['qdq_nodes']}"] if p["qdq_nodes"] else []
    if p["quant_types"]:
        detail.append("quantised as " + "/".join(p["quant_types"]))
    if p["fp16_initializers"] or p["fp16_casts"]:
        detail.append(f"fp16 initializers {p['fp16_initializers']}, casts to fp16 {p['fp16_casts']}")
    if p["metadata_precision"] and p["metadata_precision"] != p["precision"].split("-")[0]:
        detail.append(f"metadata says {p['metadata_precision']}")
    return format_inspection(info) + f"\nprecision: {p['precision']}" + (f"  ({'; '.join(detail)})" if detail else "")


def inspect_engine_file(path: Path, as_json: bool, layer_limit: int) -> str:
    from nedr.export.engine_manifest import format_manifest, load_manifest

    engine = path if path.suffix != ".json" else path.with_suffix("")
    manifest = load_manifest(path)
    report: dict = {"manifest": manifest}
    lines = [format_manifest(manifest)]
    _check_here(engine, manifest, layer_limit, report, lines)
    return json.dumps(report, indent=2, default=str) if as_json else "\n".join(lines)


def _check_here(engine: Path, manifest: dict, layer_limit: int, report: dict, lines: list[str]) -> None:
    """Fill `report["here"]` (and the layers, when the engine loads here) and the lines that say it."""
    from nedr.export.engine_manifest import EngineMismatchError
    from nedr.export.tensorrt_build import (TensorRTUnavailable, check_engine_here, engine_layers, format_layers,
                                            load_tensorrt, running_identity)

    try:
        trt = load_tensorrt()
    except TensorRTUnavailable as exc:
        report["here"] = f"not checked: {exc}"
        lines.append(f"here: layer listing and compatibility check need TensorRT ({UserError.describe(exc)})")
        return
    try:
        identity = running_identity(trt)
    except UserError as exc:
        report["here"] = f"not checked: {exc}"
        lines.append(f"here: TensorRT {trt.__version__}, GPU unknown ({UserError.describe(exc)})")
        return
    version, name, cc, _board = identity
    try:
        check_engine_here(engine, identity)
    except EngineMismatchError as exc:
        report["here"] = str(exc)
        lines.append(f"here: cannot load ({report['here']})")
    else:
        if not engine.is_file():
            report["here"] = f"{engine} not found"
            lines.append(f"here: compatible (TensorRT {version}, {name}), but {engine} is missing")
        else:
            layers = engine_layers(engine, version_compatible=bool(manifest.get("version_compatible")))
            report["here"] = "compatible"
            report["layers"] = layers
            lines.append(f"here: compatible (TensorRT {version} on {name}, compute {cc})")
            lines.append(format_layers(layers, limit=layer_limit))


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        print(inspect_onnx_file(path, args.json))
    elif suffix in ENGINE_SUFFIXES or path.name.endswith(tuple(s + ".json" for s in ENGINE_SUFFIXES)):
        print(inspect_engine_file(path, args.json, args.layers))
    else:
        raise UserError(f"{path}: cannot tell what this is; give a .onnx file or a TensorRT engine "
                        f"({', '.join(ENGINE_SUFFIXES)}) with its manifest")
    return 0
