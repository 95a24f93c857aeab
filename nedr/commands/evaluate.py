"""Score dehazing against ground truth: PSNR (uint8 RGB) and SSIM (scikit-image), per image and mean."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from nedr.errors import UserError

from .common import add_device_option, add_model_options, load_model

HELP = "PSNR/SSIM on paired hazy/ground-truth folders"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", help="folder with hazy/ and gt/ (or clear/, clean/) subfolders")
    parser.add_argument("--hazy", help="hazy folder (with --clean, instead of --pairs)")
    parser.add_argument("--clean", help="ground-truth folder")
    parser.add_argument("--synthetic", action="store_true",
                        help="score the held-out synthetic set (bundled clean images never used in training)")
    parser.add_argument("--baseline", choices=("model", "dcp", "hazy"), default="model",
                        help="what to score: the network (default), the dark channel prior, or the hazy input")
    parser.add_argument("--crop", type=int, default=0, help="border pixels to drop per side before scoring")
    parser.add_argument("--json", help="write the full report here")
    add_model_options(parser)
    add_device_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nedr.benchmarks.dcp import dehaze_dcp
    from nedr.model.evaluation import (evaluate, find_pair_dirs, hazy_input, model_dehazer, pair_images,
                                       synthetic_heldout)

    if args.synthetic:
        pairs = synthetic_heldout()
    elif args.pairs:
        pairs = pair_images(*find_pair_dirs(args.pairs))
    elif args.hazy and args.clean:
        pairs = pair_images(args.hazy, args.clean)
    else:
        raise UserError("give --pairs DIR, --hazy DIR and --clean DIR, or --synthetic")
    if args.baseline == "dcp":
        fn, label = dehaze_dcp, "dark channel prior"
    elif args.baseline == "hazy":
        fn, label = hazy_input, "hazy input"
    else:
        model = load_model(args)
        fn = model_dehazer(model)
        label = f"NeDR ({args.checkpoint or 'demo weights'}; A={model.atmosphere}, guided filter {'on' if model.guided_filter else 'off'})"
    report = evaluate(fn, pairs, crop=args.crop)
    report["method"] = label
    report["metrics"] = "PSNR on uint8 RGB; SSIM skimage structural_similarity(channel_axis=-1, data_range=255)"
    for row in report["rows"]:
        print(f"{row['name']:<24} PSNR {row['psnr']:6.2f} dB  SSIM {row['ssim']:.4f}")
    mean = report["mean"]
    print(f"{label}: mean PSNR {mean['psnr']:.2f} dB, SSIM {mean['ssim']:.4f} over {report['count']} pairs (crop {args.crop})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return 0
