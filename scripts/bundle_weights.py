"""Make bundled weights: float16 safetensors whose config holds the training recipe, the chosen
inference defaults and the quality measured with `nedr eval --json`.

    python scripts/bundle_weights.py WEIGHTS --eval EVAL.json [EVAL.json ...] --atmosphere brightest \
        --guided-filter on [--prior-mix M --defaults-note "why"] [--recipe "one paragraph"] \
        -o model/weights/nedr-demo.safetensors

WEIGHTS is a `nedr train` run's final.safetensors, or bundled weights whose defaults change (their
training record is kept; `--recipe` adds to it).

The eval files are `nedr eval --json` reports of these weights (and of the baselines); every row is
copied into the config under "quality", so `load_checkpoint().config` says what the weights score.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from nedr.model.checkpoint import load_checkpoint, save_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("weights", type=Path, help="weights in nedr's format (a run's final.safetensors, a bundled file)")
    ap.add_argument("--eval", type=Path, nargs="+", default=[], help="nedr eval --json reports")
    ap.add_argument("--atmosphere", required=True)
    ap.add_argument("--guided-filter", choices=("on", "off"), required=True)
    ap.add_argument("--prior-mix", type=float, default=0.0, help="share of the dark channel prior's t (default 0)")
    ap.add_argument("--defaults-note", default=None, help="how the inference defaults were chosen, in words")
    ap.add_argument("--recipe", default=None, help="how the weights were trained, in words")
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args()
    model = load_checkpoint(args.weights, atmosphere=args.atmosphere,
                            guided_filter=args.guided_filter == "on", prior_mix=args.prior_mix)
    quality = []
    for path in args.eval:
        report = json.loads(path.read_text())
        quality += [{"set": Path(r["set"]).name if "/" in r["set"] else r["set"], "method": r["method"],
                     "psnr": round(r["mean"]["psnr"], 3), "ssim": round(r["mean"]["ssim"], 4), "images": r["count"]}
                    for r in report["reports"]]
    training = dict(model.config.get("training", {}))
    if args.recipe:
        training["recipe"] = args.recipe
    config = {"training": training, "quality": {"metrics": "PSNR on uint8 RGB; SSIM skimage "
                                                "structural_similarity(channel_axis=-1, data_range=255)",
                                                "rows": quality}}
    if args.defaults_note:
        config["defaults"] = {"atmosphere": model.atmosphere, "guided_filter": model.guided_filter,
                              "prior_mix": model.prior_mix, "why": args.defaults_note}
    save_checkpoint(model, args.output, config=config, half=True)
    size = args.output.stat().st_size / 2**20
    print(f"wrote {args.output} ({size:.1f} MiB): A={model.atmosphere}, guided filter {args.guided_filter}, "
          f"prior mix {model.prior_mix:g}, {len(quality)} quality rows")


if __name__ == "__main__":
    main()
