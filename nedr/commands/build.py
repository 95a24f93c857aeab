"""Build a TensorRT engine from a nedr ONNX file, on the GPU that will run it (writes ENGINE and ENGINE.json).

Precision comes from the ONNX (FP32, FP16 or INT8 Q/DQ: convert the ONNX first); the engine is
compiled strongly typed. Every argument is checked before TensorRT is imported, so mistakes are
reported even where TensorRT is not installed; without TensorRT the command stops with one line
saying what to install (exit code 2).
"""
from __future__ import annotations

import argparse
import sys

from nedr.contract import INPUT_NAME

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


def run(args: argparse.Namespace) -> int:
    from nedr.export.build_plan import plan_build
    from nedr.export.tensorrt_build import build_planned

    plan = plan_build(args.model, args.output, static=args.static, min_hw=args.min, opt_hw=args.opt, max_hw=args.max,
                      workspace_mib=args.workspace, timing_cache=args.timing_cache, opt_level=args.opt_level,
                      version_compatible=bool(args.version_compatible), dla_core=args.dla_core)
    manifest = build_planned(plan)
    gpu = manifest["gpu"]
    print(f"wrote {plan.output} ({manifest['engine_bytes'] / 1e6:.1f} MB; TensorRT {manifest['tensorrt_version']} "
          f"on {gpu['name']} (compute {gpu['compute_capability']}); {manifest['precision']}; "
          f"profile {plan.profile.describe()}; {manifest['build_seconds']} s) and {plan.output}.json")
    dla = manifest.get("dla")
    if dla and dla["gpu_fallback_layers"]:
        print(f"DLA: {len(dla['gpu_fallback_layers'])} of {dla['dla_layers'] + len(dla['gpu_fallback_layers'])} "
              "layers run on the GPU instead (see `nedr inspect` for the list)", file=sys.stderr)
    return 0
