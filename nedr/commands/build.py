"""Build a TensorRT engine from a nedr ONNX file, on the GPU that will run it (writes ENGINE and ENGINE.json).

Precision comes from the ONNX (FP32, FP16 or INT8 Q/DQ: convert the ONNX first); the engine is
compiled strongly typed. Every argument is checked before TensorRT is imported, so mistakes are
reported even where TensorRT is not installed; without TensorRT the command stops with one line
saying what to install (exit code 2).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nedr.contract import INPUT_NAME
from nedr.errors import UserError, first_line

HELP = "build a TensorRT engine from an ONNX file"
MAX_OPT_LEVEL = 5


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL.onnx", help=f"ONNX file exported by nedr-export (input {INPUT_NAME!r})")
    parser.add_argument("-o", "--output", default=None, metavar="ENGINE",
                        help="engine file to write (default: MODEL.engine beside the ONNX); "
                             "the manifest goes to ENGINE.json")
    shapes = parser.add_argument_group("input sizes (H x W, multiples of 32, >= 128; frames are padded to x32)")
    shapes.add_argument("--min", default=None, metavar="HxW", help="smallest padded frame (default 256x256)")
    shapes.add_argument("--opt", default=None, metavar="HxW", help="size to tune for (default 736x1280, i.e. 720p)")
    shapes.add_argument("--max", default=None, metavar="HxW",
                        help="largest padded frame (default 1088x1920, i.e. 1080p)")
    shapes.add_argument("--static", default=None, metavar="HxW",
                        help="one fixed size (min = opt = max); needed for DLA")
    parser.add_argument("--workspace", type=int, default=None, metavar="MiB",
                        help="cap on TensorRT's scratch memory while building and running (default: TensorRT's)")
    parser.add_argument("--timing-cache", default=None, metavar="FILE",
                        help="reuse and update this timing cache (same TensorRT version and GPU only); "
                             "speeds up rebuilds")
    parser.add_argument("--opt-level", type=int, default=None, metavar="N", choices=range(0, MAX_OPT_LEVEL + 1),
                        help="builder optimisation level 0-5 (TensorRT's default 3; higher builds slower, "
                             "may run faster)")
    parser.add_argument("--version-compatible", action="store_true",
                        help="engine also loads on later TensorRT of the same major version (may run slower)")
    parser.add_argument("--dla-core", type=int, default=None, metavar="N",
                        help="run on DLA core N with GPU fallback (Jetson AGX Orin / Orin NX; FP16 or INT8 ONNX, "
                             "--static)")
    parser.set_defaults(handler=run)


def _onnx_input(path: Path) -> tuple[list[str], dict[str, list]]:
    """Graph input names and shapes (dims: int, or the symbolic name for a dynamic axis)."""
    import onnx

    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and others
        raise UserError(f"{path}: not a readable ONNX file ({first_line(exc)[:160]})") from None
    inits = {t.name for t in model.graph.initializer}
    shapes = {}
    for value in model.graph.input:
        if value.name in inits:
            continue
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
    return list(shapes), shapes


def resolve_profile(args: argparse.Namespace, input_shape: list):
    """The optimisation profile the arguments ask for, checked against the ONNX input's shape."""
    from nedr.export.profiles import ProfileError, format_hw, make_profile, static_profile

    ranged = any(getattr(args, k) is not None for k in ("min", "opt", "max"))
    if args.static is not None and ranged:
        raise ProfileError("--static fixes one size; give either --static or --min/--opt/--max, not both")
    spatial = input_shape[2:4] if len(input_shape) == 4 else []
    onnx_static = len(spatial) == 2 and all(isinstance(d, int) and d > 0 for d in spatial)
    if onnx_static:
        size = (int(spatial[0]), int(spatial[1]))
        if ranged or (args.static is not None and static_profile(args.static).opt != size):
            raise ProfileError(f"this ONNX has a static input {INPUT_NAME} {format_hw(size)}: build it with "
                               f"--static {format_hw(size)} (or nothing), or export a dynamic-shape ONNX")
        return static_profile(size)
    if args.static is not None:
        return static_profile(args.static)
    return make_profile(args.min, args.opt, args.max)


def _check_writable(path: Path, what: str) -> None:
    if path.is_dir():
        raise UserError(f"cannot write {what} {path}: it is a directory")
    if not path.parent.is_dir():
        raise UserError(f"cannot write {what} {path}: directory {path.parent} does not exist")


def validate(args: argparse.Namespace) -> dict:
    """Every check that needs no TensorRT; returns what the build needs (profile, paths, options)."""
    from nedr.export.engine_manifest import BuildOptions, onnx_precision
    from nedr.export.profiles import format_hw

    model = Path(args.model)
    if not model.exists():
        raise FileNotFoundError(f"{model}: no such file")
    if not model.is_file():
        raise UserError(f"{model}: not a file (give the .onnx file exported by nedr-export)")
    names, shapes = _onnx_input(model)
    if INPUT_NAME not in shapes:
        raise UserError(f"{model} has no input {INPUT_NAME!r} (inputs: {', '.join(names) or 'none'}); "
                        "build an ONNX exported by nedr-export")
    profile = resolve_profile(args, shapes[INPUT_NAME])
    if args.workspace is not None and args.workspace <= 0:
        raise UserError(f"--workspace {args.workspace}: give a size in MiB > 0")
    precision = onnx_precision(model)
    if args.dla_core is not None:
        if args.dla_core < 0:
            raise UserError(f"--dla-core {args.dla_core}: DLA cores are numbered from 0")
        if not profile.is_static:
            raise UserError(f"DLA needs static shapes: add --static HxW (e.g. --static {format_hw(profile.opt)})")
        if precision["precision"] == "fp32":
            raise UserError(f"{model.name} is FP32 and DLA runs only FP16/INT8 layers (everything would fall back "
                            "to the GPU): build the FP16 or INT8 ONNX instead")
    output = Path(args.output) if args.output else model.with_suffix(".engine")
    if output.resolve() == model.resolve():
        raise UserError(f"-o {output} would overwrite the ONNX file")
    _check_writable(output, "engine")
    cache = Path(args.timing_cache) if args.timing_cache else None
    if cache is not None:
        _check_writable(cache, "timing cache")
    options = BuildOptions(
        onnx=str(args.model), output=str(output),
        **({"static": format_hw(profile.opt)} if profile.is_static else profile.to_dict()),
        workspace_mib=args.workspace, timing_cache=args.timing_cache, opt_level=args.opt_level,
        version_compatible=bool(args.version_compatible), dla_core=args.dla_core)
    return {"model": model, "output": output, "profile": profile, "options": options, "precision": precision,
            "timing_cache": cache}


def run(args: argparse.Namespace) -> int:
    from nedr.export.tensorrt_build import build_engine, load_tensorrt

    plan = validate(args)
    load_tensorrt()  # fails here, in one line, where TensorRT is missing
    manifest = build_engine(
        plan["model"], plan["output"], profile=plan["profile"],
        workspace_bytes=None if args.workspace is None else args.workspace << 20,
        timing_cache=plan["timing_cache"], opt_level=args.opt_level,
        version_compatible=bool(args.version_compatible), dla_core=args.dla_core, options=plan["options"])
    gpu = manifest["gpu"]
    print(f"wrote {plan['output']} ({manifest['engine_bytes'] / 1e6:.1f} MB; TensorRT {manifest['tensorrt_version']} "
          f"on {gpu['name']} (compute {gpu['compute_capability']}); {manifest['precision']}; "
          f"profile {plan['profile'].describe()}; {manifest['build_seconds']} s) and {plan['output']}.json")
    dla = manifest.get("dla")
    if dla and dla["gpu_fallback_layers"]:
        print(f"DLA: {len(dla['gpu_fallback_layers'])} of {dla['dla_layers'] + len(dla['gpu_fallback_layers'])} "
              "layers run on the GPU instead (see `nedr inspect` for the list)", file=sys.stderr)
    return 0
