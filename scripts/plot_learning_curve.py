"""Plot a `nedr train` log (train_log.csv): training loss and held-out validation PSNR/SSIM by step.

    python scripts/plot_learning_curve.py RUN/train_log.csv -o learning_curve.png
"""
from __future__ import annotations

import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("-o", "--output", default="learning_curve.png")
    ap.add_argument("--title", default="nedr train")
    args = ap.parse_args()
    with open(args.log, newline="") as f:
        rows = list(csv.DictReader(f))
    steps = [int(r["step"]) for r in rows]
    loss = [float(r["loss"]) for r in rows]
    val = [(int(r["step"]), float(r["val_psnr"]), float(r["val_ssim"])) for r in rows if r.get("val_psnr")]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(steps, loss, lw=0.8, color="tab:blue", label="train loss (L1 J + 0.1·L1 t)")
    ax.set_xlabel("step")
    ax.set_ylabel("train loss", color="tab:blue")
    if val:
        twin = ax.twinx()
        twin.plot([v[0] for v in val], [v[1] for v in val], "o-", color="tab:red", label="held-out PSNR")
        twin.set_ylabel("held-out synthetic PSNR (dB)", color="tab:red")
        for s, p, q in val[-1:]:
            twin.annotate(f"{p:.2f} dB / SSIM {q:.3f}", (s, p), textcoords="offset points", xytext=(-90, 8))
    ax.set_title(args.title)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)


if __name__ == "__main__":
    main()
