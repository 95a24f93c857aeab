"""Make bundled weights: float16 safetensors whose config holds the training recipe, the chosen
inference defaults and the quality measured with `nedr eval --json`.

    python scripts/bundle_weights.py WEIGHTS --eval EVAL.json [EVAL.json ...] --atmosphere brightest \
        --guided-filter on [--recipe "one paragraph"] -o model/weights/nedr-demo.safetensors

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
    ap.add_argument("--recipe", default=None, help="how the weights were trained, in words")
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args()
    model = load_checkpoint(args.weights, atmosphere=args.atmosphere,
                            guided_filter=args.guided_filter == "on")
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
    save_checkpoint(model, args.output, config=config, half=True)
    size = args.output.stat().st_size / 2**20
    print(f"wrote {args.output} ({size:.1f} MiB): A={model.atmosphere}, guided filter {args.guided_filter}, "
          f"{len(quality)} quality rows")


if __name__ == "__main__":
    main()
