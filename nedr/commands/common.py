"""Options several subcommands share, defined once."""
from __future__ import annotations

import argparse


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", "-c", default=None,
                        help="weights: public .pth, state dict, nedr .safetensors, or a bundled name (nedr-s = the default "
                             "weights, the light variant; nedr = the full network)")
    parser.add_argument("--atmosphere", choices=("brightest", "dark_channel", "max"), default=None,
                        help="atmospheric light estimate (default: the checkpoint's setting: brightest for nedr-s, "
                             "dark_channel for nedr, with which brightest scores +2.9 dB on SOTS-indoor; "
                             "README 'Bundled weights')")
    parser.add_argument("--guided-filter", action=argparse.BooleanOptionalAction, default=None,
                        help="refine t with the guided filter (default: the checkpoint's setting)")
    parser.add_argument("--prior-mix", type=prior_share, default=None, metavar="M",
                        help="share of the dark channel prior's t in t, 0..1 (default: the checkpoint's: 0.4 for "
                             "nedr-s, 0 for nedr). Per scene: with nedr-s, 0 scores 0.4-0.7 dB more on outdoor "
                             "synthetic haze and 1.0 dB less on SOTS-indoor (README 'Bundled weights')")


def prior_share(text: str) -> float:
    """argparse type of --prior-mix: a fraction, refused at parse time with the flag's name."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside [0, 1]")
    return value


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")


def load_model(args: argparse.Namespace):
    """The model the model options describe, on the requested device."""
    from nedr.model import load_checkpoint
    from nedr.model.training import pick_device

    model = load_checkpoint(args.checkpoint, atmosphere=args.atmosphere, guided_filter=args.guided_filter,
                            prior_mix=args.prior_mix)
    return model.to(pick_device(args.device))
