"""Quantize an FP32 NeDR ONNX to INT8 (explicit Q/DQ) for TensorRT or ONNX Runtime on a CPU.

Calibrates activation ranges on frames at the deployment size (synthetic haze on the training
sources, or your own image folder or video), keeps the KAN basis, guided filter, atmospheric light
and image formation in FP32, and reports INT8-vs-FP32 PSNR on held-out frames. The ranges are
cached beside the output (OUT.calib.json) and reused while nothing they depend on changed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nedr.errors import UserError

HELP = "INT8 Q/DQ ONNX from an FP32 export (TensorRT or CPU target)"


def _size(text: str) -> tuple[int, int]:
    from nedr.export.quantize import QuantizeError, parse_size

    try:
        return parse_size(text)
    except QuantizeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def configure(parser: argparse.ArgumentParser) -> None:
    from nedr.export.quantize import DEFAULT_FRAMES, DEFAULT_METHOD, DEFAULT_SIZE, DEFAULT_VALIDATION_FRAMES

    parser.add_argument("model", metavar="MODEL.onnx", help="FP32 ONNX from `nedr-export`")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="INT8 ONNX to write")
    parser.add_argument("--calib", default="synthetic", metavar="SOURCE",
                        help="calibration frames: 'synthetic' (haze on the training sources), an image folder "
                             "or a video file (default: synthetic)")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                        help=f"calibration frames (default: {DEFAULT_FRAMES})")
    parser.add_argument("--method", choices=("entropy", "minmax", "percentile"), default=DEFAULT_METHOD,
                        help=f"activation range estimate (default: {DEFAULT_METHOD})")
    parser.add_argument("--size", type=_size, default=DEFAULT_SIZE, metavar="HxW",
                        help="deployment frame size, multiples of 32, >= 128 "
                             f"(default: {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})")
    parser.add_argument("--target", choices=("tensorrt", "cpu"), default="tensorrt",
                        help="tensorrt: symmetric int8 activations and weights (zero points 0); cpu: uint8 "
                             "activations + int8 weights for ONNX Runtime (default: tensorrt)")
    parser.add_argument("--target-psnr", type=float, default=None, metavar="DB",
                        help="leave the most sensitive convolutions in float until INT8 vs FP32 reaches DB")
    parser.add_argument("--validation-frames", type=int, default=DEFAULT_VALIDATION_FRAMES,
                        help=f"held-out frames for the PSNR report (default: {DEFAULT_VALIDATION_FRAMES})")
    parser.add_argument("--int8-stem", action="store_true",
                        help="quantize the first convolution too (default: kept float; it is cheap and the most "
                             "sensitive layer)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write OUT.calib.json")
    parser.add_argument("--backend", choices=("onnxruntime", "modelopt"), default="onnxruntime",
                        help="quantizer: onnxruntime (default) or NVIDIA ModelOpt when installed (tensorrt only)")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nedr.export.quantize import quantize

    if args.frames < 1:
        raise UserError(f"--frames must be at least 1, got {args.frames}")
    if args.validation_frames < 1:
        raise UserError(f"--validation-frames must be at least 1, got {args.validation_frames}")
    if args.json:
        from nedr.fileio import output_problem

        problem = output_problem(args.json)  # calibration takes minutes; fail before it
        if problem:
            raise UserError(f"--json: {problem}")
    report = quantize(args.model, args.output, calib=args.calib, frames=args.frames, method=args.method,
                      size=args.size, target=args.target, target_psnr=args.target_psnr,
                      validation_frames=args.validation_frames, float_stem=not args.int8_stem,
                      cache=not args.no_cache, backend=args.backend, log=lambda msg: print(msg, file=sys.stderr))
    print(report.summary())
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=1, default=str))
    return 0
