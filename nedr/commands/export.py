"""Export NeDR to ONNX (input `hazy`, output `clean`), verified against PyTorch; optionally FP16."""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from nedr.errors import UserError

HELP = "export a checkpoint to ONNX (verified against PyTorch), FP32 or FP16"


def _hw(text: str) -> tuple[int, int]:
    from nedr.export.profiles import parse_hw

    return parse_hw(text)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="public .pth, state dict, nedr .safetensors or a bundled name (nedr; default: the demo weights)")
    parser.add_argument("-o", "--output", default="nedr.onnx", help="output .onnx (default: nedr.onnx)")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--static", type=_hw, default=None, metavar="HxW",
                        help="fixed 1×3×H×W input (default: dynamic N, H, W; H and W multiples of 32, >= 128)")
    parser.add_argument("--with-transmission", action="store_true", help="second output `transmission` (N×1×H×W)")
    parser.add_argument("--atmosphere", choices=("brightest", "dark_channel", "max"), default=None)
    parser.add_argument("--guided-filter", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--fast", type=_hw, default=None, metavar="HxW",
                        help="fast variant: the network runs at HxW inside the graph and guided local-affine "
                             "upsampling carries the result to any input size")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                        help="fp16: FP16 graph with FP32 I/O and FP32 islands (KAN basis, guided filter, A)")
    parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                        help="ONNX checker + ONNX Runtime vs PyTorch on real frames (default: on)")
    parser.add_argument("--atol", type=float, default=1e-3, help="verification threshold on max abs error")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nedr.export import convert_fp16, export_checkpoint, verify_onnx
    from nedr.model import load_checkpoint
    from nedr.model.checkpoint import resolve_weights

    out = Path(args.output)
    if out.suffix != ".onnx":
        raise UserError(f"{out}: output must end in .onnx")
    checkpoint = resolve_weights(args.checkpoint)
    fp32_path = out if args.precision == "fp32" else out.with_name(out.stem + ".fp32.onnx")
    if args.fast:
        return _export_fast(args, checkpoint, out)
    export_checkpoint(checkpoint, fp32_path, atmosphere=args.atmosphere, guided_filter=args.guided_filter,
                      opset=args.opset, static_size=args.static, with_transmission=args.with_transmission)
    print(f"exported {fp32_path}")
    model = None
    if args.verify or args.precision == "fp16":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # export already reported loading warnings
            model = load_checkpoint(checkpoint, atmosphere=args.atmosphere, guided_filter=args.guided_filter)
    if args.verify:
        report = verify_onnx(fp32_path, model, atol=args.atol)
        print(report.summary())
        if not report.passed:
            fp32_path.unlink(missing_ok=True)
            raise UserError(f"{fp32_path}: verification failed (max abs error {report.max_abs_err:.2e} > "
                            f"{args.atol:g}); file removed")
    if args.precision == "fp16":
        report = convert_fp16(fp32_path, out, model=model)
        print(report.summary())
        print(f"wrote {out} (FP16) and {fp32_path} (FP32 source)")
    return 0


def _export_fast(args: argparse.Namespace, checkpoint, out: Path) -> int:
    """The fast variant: verified structurally (checker, shape inference, TensorRT op table);
    its numerics against PyTorch are covered by the runtime's fast-mode tests."""
    from nedr.export.fast_export import export_fast_onnx
    from nedr.export.metadata import file_sha256
    from nedr.export.verify import check_model_file
    from nedr.model import load_checkpoint

    if args.precision != "fp32" or args.static:
        raise UserError("--fast exports FP32 with dynamic input size; drop --precision/--static")
    model = load_checkpoint(checkpoint, atmosphere=args.atmosphere, guided_filter=args.guided_filter)
    export_fast_onnx(model, out, infer_hw=args.fast, opset=args.opset, with_transmission=args.with_transmission,
                     metadata={"checkpoint": Path(checkpoint).name, "checkpoint_sha256": file_sha256(checkpoint)})
    problems = check_model_file(out) if args.verify else []
    if problems:
        out.unlink(missing_ok=True)
        raise UserError(f"{out}: {problems[0]}; file removed")
    print(f"exported {out} (fast: network at {args.fast[0]}×{args.fast[1]}, guided upsampling to the input size)")
    return 0
