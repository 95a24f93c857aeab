"""Score dehazing against ground truth: PSNR (uint8 RGB) and SSIM (scikit-image), per image and mean.

One call can score several sets (real pairs, the held-out synthetic set in either haze
convention) and several methods (the network, the dark channel prior, the hazy input), so the
comparison table a user needs to trust the model comes from one command.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from nedr.errors import UserError

from .common import add_device_option, add_model_options, load_model

HELP = "PSNR/SSIM on paired hazy/ground-truth folders and the held-out synthetic set"
METHODS = ("model", "dcp", "hazy")
CONVENTIONS = ("linear", "srgb")
SYNTHETIC_SET = "held-out synthetic"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", help="folder with hazy/ and gt/ (or clear/, clean/) subfolders")
    parser.add_argument("--hazy", help="hazy folder (with --clean, instead of --pairs)")
    parser.add_argument("--clean", help="ground-truth folder")
    parser.add_argument("--synthetic", nargs="?", const="both", choices=(*CONVENTIONS, "both"), default=None,
                        help="also score the held-out synthetic set (clean images never used in training), haze "
                             "blended in linear RGB, on sRGB values (as RESIDE/SOTS), or both (default); its "
                             "scenes never trained on (coffee, carphone) are also reported on their own")
    parser.add_argument("--baseline", nargs="+", choices=METHODS, default=["model"], metavar="METHOD",
                        help="what to score, one or more of: model (default), dcp (dark channel prior), hazy (input)")
    parser.add_argument("--crop", type=int, default=0, help="border pixels to drop per side before scoring")
    parser.add_argument("--json", help="write the full report here")
    add_model_options(parser)
    add_device_option(parser)
    parser.set_defaults(handler=run)


def _sets(args: argparse.Namespace) -> dict[str, list]:
    from nedr.model.evaluation import find_pair_dirs, pair_images, synthetic_heldout

    sets: dict[str, list] = {}
    if args.pairs:
        sets[str(args.pairs)] = pair_images(*find_pair_dirs(args.pairs))
    elif args.hazy or args.clean:
        if not (args.hazy and args.clean):
            raise UserError("--hazy and --clean go together")
        sets[str(args.hazy)] = pair_images(args.hazy, args.clean)
    if args.synthetic:
        for convention in CONVENTIONS if args.synthetic == "both" else (args.synthetic,):
            sets[f"{SYNTHETIC_SET} ({convention})"] = synthetic_heldout(convention)
    if not sets:
        raise UserError("give --pairs DIR, --hazy DIR and --clean DIR, and/or --synthetic")
    return sets


def _methods(args: argparse.Namespace) -> dict[str, object]:
    from nedr.benchmarks.dcp import dehaze_dcp
    from nedr.model.evaluation import hazy_input, model_dehazer

    methods: dict[str, object] = {}
    for name in dict.fromkeys(args.baseline):
        if name == "dcp":
            methods["dark channel prior"] = dehaze_dcp
        elif name == "hazy":
            methods["hazy input"] = hazy_input
        else:
            model = load_model(args)
            settings = [f"A={model.atmosphere}", f"guided filter {'on' if model.guided_filter else 'off'}"]
            settings += [f"prior mix {model.prior_mix:g}"] if model.prior_mix else []
            label = f"NeDR ({args.checkpoint or 'default weights'}; {', '.join(settings)})"
            methods[label] = model_dehazer(model)
    return methods


def run(args: argparse.Namespace) -> int:
    from nedr.model.evaluation import evaluate, unseen_scene_mean

    sets, methods = _sets(args), _methods(args)
    single = len(sets) * len(methods) == 1
    reports = []
    for set_name, pairs in sets.items():
        for label, fn in methods.items():
            report = evaluate(fn, pairs, crop=args.crop)
            report.update(set=set_name, method=label)
            if set_name.startswith(SYNTHETIC_SET):
                report["unseen_scenes"] = unseen_scene_mean(report)
            reports.append(report)
            if single:
                for row in report["rows"]:
                    print(f"{row['name']:<24} PSNR {row['psnr']:6.2f} dB  SSIM {row['ssim']:.4f}")
    print("\n| set | method | PSNR (dB) | SSIM | images |\n|---|---|---:|---:|---:|")
    for r in reports:
        print(f"| {r['set']} | {r['method']} | {r['mean']['psnr']:.2f} | {r['mean']['ssim']:.4f} | {r['count']} |")
    for r in (r for r in reports if "unseen_scenes" in r):
        u = r["unseen_scenes"]
        print(f"| {r['set']}, unseen scenes only | {r['method']} | {u['mean']['psnr']:.2f} | {u['mean']['ssim']:.4f} "
              f"| {u['count']} |")
    print(f"(PSNR on uint8 RGB; SSIM skimage structural_similarity(channel_axis=-1, data_range=255); crop {args.crop})")
    if args.json:
        out = {"metrics": "PSNR on uint8 RGB; SSIM skimage structural_similarity(channel_axis=-1, data_range=255)",
               "crop": args.crop, "reports": reports}
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return 0
