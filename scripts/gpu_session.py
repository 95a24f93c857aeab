"""One lent-GPU session: train the demo weights on synthetic haze (then time them with `nedr bench`).

Run from the repo root on the GPU machine (see docs/training.md):
    python scripts/gpu_session.py --bank .devcarry/bank.npz --heldout .devcarry/heldout.npz \
        --out $OUT --train-seconds 420
Weights come back as two float16 safetensors shards (the device returns files of at most 16 MiB);
`nedr.model.checkpoint.merge_shards` joins them.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch

from nedr.model.checkpoint import save_shards
from nedr.model.datasets import SyntheticHaze
from nedr.model.samples import load_bank
from nedr.model.training import TrainConfig, Trainer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bank", required=True)
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--train-seconds", type=float, default=420)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--workers", type=int, default=12)
    args = ap.parse_args()
    out = Path(args.out)
    torch.backends.cudnn.benchmark = True
    train_set, val_set = load_bank(args.bank), load_bank(args.heldout)
    cfg = TrainConfig(steps=10**6, batch=args.batch, crop=args.crop, lr=3e-4, workers=args.workers,
                      log_every=50, val_every=500, ckpt_every=0, val_count=10)
    trainer = Trainer(cfg, SyntheticHaze(train_set, args.crop, seed=1), out / "run",
                      SyntheticHaze(val_set, args.crop, seed=777, scale=(1.0, 1.0)))
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
    provenance = {"data": "synthetic haze on bundled photos + clip frames (nedr.model.samples.training_samples)",
                  "machine": f"1x {gpu}, torch {torch.__version__}", "train_seconds": round(time.time() - t0, 1),
                  "final_val": result["last"]}
    trainer.model.guided_filter = True  # the deployment default; training ran without it
    save_shards(trainer.model, out, "nedr-demo", config={"training": {**asdict(cfg), "steps_done": trainer.step, **provenance}})
    (out / "train_summary.json").write_text(json.dumps({"steps": trainer.step, **provenance}, indent=1))


if __name__ == "__main__":
    main()
