"""Export NeDR to ONNX (input `hazy`, output `clean`), verified against PyTorch; optionally FP16.

`--triton REPO` writes a Triton Inference Server model repository instead (nedr.export.triton):
from the checkpoint's export, or from an existing ONNX (`--from-onnx`) or engine (`--from-engine`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from nedr.contract import TRITON_MODEL_NAME
from nedr.errors import UserError

from .common import prior_share

HELP = "export a checkpoint to ONNX (verified against PyTorch), FP32 or FP16, or a Triton model repository"


def _hw(text: str) -> tuple[int, int]:
    from nedr.export.profiles import parse_hw

    return parse_hw(text)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", default=None,
                        help="public .pth, state dict, nedr .safetensors or a bundled name (nedr-s = the default "
                             "weights, the light variant; nedr = the full network)")
    parser.add_argument("-o", "--output", default=None,
                        help="output .onnx (default: nedr.onnx; with --triton: only a temporary file unless given)")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--static", type=_hw, default=None, metavar="HxW",
                        help="fixed 1×3×H×W input (default: dynamic N, H, W; H and W multiples of 32, >= 128)")
    parser.add_argument("--transmission", "--with-transmission", dest="with_transmission",
                        action=argparse.BooleanOptionalAction, default=None,
                        help="second output `transmission` (N×1×H×W), on by default: `nedr run` needs it for "
                             "temporal stabilisation; --no-transmission exports J alone")
    parser.add_argument("--atmosphere", choices=("brightest", "dark_channel", "max"), default=None)
    parser.add_argument("--guided-filter", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--prior-mix", type=prior_share, default=None, metavar="M",
                        help="share of the dark channel prior's t in t (default: the checkpoint's)")
    parser.add_argument("--fast", type=_hw, default=None, metavar="HxW",
                        help="fast variant: the network runs at HxW inside the graph and guided local-affine "
                             "upsampling carries the result to any input size")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                        help="fp16: FP16 graph with FP32 I/O and FP32 islands (KAN basis, guided filter, A)")
    parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                        help="ONNX checker + ONNX Runtime vs PyTorch on real frames (default: on)")
    parser.add_argument("--atol", type=float, default=1e-3, help="verification threshold on max abs error")
    triton = parser.add_argument_group("Triton model repository (REPO/NAME/config.pbtxt + REPO/NAME/1/model.onnx|plan)")
    triton.add_argument("--triton", metavar="REPO", default=None,
                        help="write a Triton Inference Server model repository at REPO (created if missing)")
    triton.add_argument("--triton-name", metavar="NAME", default=TRITON_MODEL_NAME,
                        help=f"model name and folder (default: {TRITON_MODEL_NAME})")
    source = triton.add_mutually_exclusive_group()
    source.add_argument("--from-onnx", metavar="FILE", default=None,
                        help="serve this existing .onnx instead of exporting a checkpoint (platform onnxruntime_onnx)")
    source.add_argument("--from-engine", metavar="FILE", default=None,
                        help="serve this TensorRT engine from `nedr build` as 1/model.plan (platform tensorrt_plan), "
                             "its manifest ENGINE.json copied beside it")
    triton.add_argument("--max-batch", type=int, default=None, metavar="N",
                        help="max_batch_size (default 8; an engine: its profile's batch, 1 for `nedr build`; "
                             "0 disables batching and the dims keep the batch dimension)")
    triton.add_argument("--triton-queue-delay", type=int, default=100, metavar="US",
                        help="dynamic_batching max_queue_delay_microseconds (default: 100)")
    triton.add_argument("--triton-instance", choices=("gpu", "cpu"), default="gpu",
                        help="instance_group kind: KIND_GPU (default) or KIND_CPU, count 1")
    triton.add_argument("--triton-tensorrt", choices=("fp32", "fp16", "int8"), default=None, metavar="PRECISION",
                        help="ONNX only: run it through ONNX Runtime's TensorRT accelerator with this precision_mode "
                             "(fp32, fp16; int8 for Q/DQ models), engine cache on")
    triton.add_argument("--force", action="store_true", help="replace an existing REPO/NAME model folder")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.triton is not None:
        return _run_triton(args)
    if args.from_onnx or args.from_engine:
        raise UserError("--from-onnx/--from-engine name what to put in a Triton repository: add --triton REPO")
    _export(args, Path(args.output or "nedr.onnx"))
    return 0


def _with_transmission(args: argparse.Namespace) -> bool:
    return args.with_transmission is not False


def _export(args: argparse.Namespace, out: Path) -> None:
    from nedr.export.verified_export import export_fast_verified, export_verified

    options = dict(verify=args.verify, atmosphere=args.atmosphere, guided_filter=args.guided_filter,
                   prior_mix=args.prior_mix, opset=args.opset, with_transmission=_with_transmission(args))
    if not args.fast:
        export_verified(args.checkpoint, out, precision=args.precision, atol=args.atol, static_size=args.static,
                        log=print, **options)
        return
    if args.precision != "fp32" or args.static:
        raise UserError("--fast exports FP32 with dynamic input size; drop --precision/--static")
    export_fast_verified(args.checkpoint, out, args.fast, **options)
    print(f"exported {out} (fast: network at {args.fast[0]}×{args.fast[1]}, guided upsampling to the input size)")


def _run_triton(args: argparse.Namespace) -> int:
    """`--triton REPO`: export (or take --from-onnx/--from-engine) and write REPO/NAME atomically."""
    import shlex
    import shutil
    import tempfile

    from nedr.export.triton import (check_destination, require_tritonclient, serve_command, tritonclient_available,
                                    write_repository)

    given = args.from_onnx or args.from_engine
    if given:
        ignored = [flag for flag, on in (("CHECKPOINT", args.checkpoint), ("-o", args.output), ("--fast", args.fast),
                                          ("--static", args.static), ("--precision fp16", args.precision != "fp32"),
                                          ("--atmosphere", args.atmosphere), ("--guided-filter", args.guided_filter is not None),
                                          ("--prior-mix", args.prior_mix is not None),
                                          ("--[no-]transmission", args.with_transmission is not None and args.from_onnx))
                   if on]
        if ignored:
            raise UserError(f"{', '.join(ignored)}: export options do not apply to --from-onnx/--from-engine "
                            "(the file is served as it is); drop them")
    if args.max_batch is not None and args.max_batch < 0:
        raise UserError(f"--max-batch {args.max_batch}: must be >= 0 (0 disables batching)")
    # Fail before the (slow) export when the repository cannot be written or checked.
    check_destination(args.triton, args.triton_name, args.force)
    # config.pbtxt is checked with Triton's own protobuf whenever tritonclient is installed;
    # without it only --no-verify lets the export go on unchecked.
    validate = tritonclient_available()
    if args.verify and not validate:
        require_tritonclient()  # raises the one-line install hint
    if not validate:
        print("note: tritonclient not installed, config.pbtxt not checked against Triton's ModelConfig "
              "(pip install 'tritonclient[grpc]')")
    options = dict(name=args.triton_name, max_batch_size=args.max_batch, queue_delay_us=args.triton_queue_delay,
                   instance=args.triton_instance, tensorrt=args.triton_tensorrt, force=args.force,
                   validate=validate, with_transmission=_with_transmission(args),
                   engine=True if args.from_engine else (False if given else None),
                   provenance="command: " + shlex.join(getattr(args, "argv", None) or ["nedr-export", "..."]))
    tmp = None
    try:
        if given:
            source = Path(given)
        elif args.output:
            source = Path(args.output)
            _export(args, source)
        else:
            tmp = Path(tempfile.mkdtemp(prefix="nedr-triton-"))
            source = tmp / "model.onnx"
            _export(args, source)
        written = write_repository(args.triton, source, **options)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(written.summary())
    for note in written.notes:
        print(f"  note: {note}")
    print(f"serve: {serve_command(args.triton)}")
    print(f"check: curl -sf localhost:8000/v2/models/{args.triton_name}/ready && echo READY")
    return 0
