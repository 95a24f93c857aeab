"""Large photos through `dehaze()`: colour drift against the same scene at 512², and peak memory.

    python -m nedr.benchmarks.large_photo [--checkpoint PATH] [-o benchmarks/results/cpu/large_photo.json]
                                          [--images DIR]

The scene is the bundled hazy sample (skimage coffee + synthetic haze) resized to 512², then
enlarged; every size is dehazed with the defaults (`dehaze()` switches to the small network plus
guided upsampling above its `LARGE_SIDE`) and, where affordable, at full size. 768² is the scale
the network sees for every larger input, so its row separates what the network's scale changes
(512² vs 768²) from what the upsampling adds (768² vs larger). Each result is compared with the
512² one after area-downscaling to 512²: the drift of the mean colour, the worst 32×32 block's mean
colour difference and where that block is (blotches show here while the global mean can still
agree), and the PSNR; `--images DIR` writes the hazy scene and each result at 512² to look at. A
6000×4000 photo is dehazed in a fresh process whose peak RSS is read from the kernel, which is what
the ≤ 4 GB target is about.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from .machine import cpu_info, load_average, versions

SIZES = (512, 768, 1024, 2048, 4096)


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """The hazy scene and its haze-free original, both at 512²."""
    from nedr.model.metrics import to_uint8
    from nedr.model.samples import demo_hazy

    sample = demo_hazy()
    return tuple(cv2.resize(to_uint8(x), (512, 512), interpolation=cv2.INTER_AREA) for x in (sample.hazy, sample.clean))


def _block_means(image: np.ndarray, block: int = 32) -> np.ndarray:
    h, w = image.shape[:2]
    return image.reshape(h // block, block, w // block, block, 3).mean(axis=(1, 3))


def _compare(small: np.ndarray, ref: np.ndarray, against: int) -> dict:
    """The worst 32×32 block's mean-colour difference (and its (y, x) corner) and the PSNR of two 512² results."""
    from nedr.model.metrics import psnr

    diff = np.abs(_block_means(small) - _block_means(ref)).max(axis=2)
    y, x = np.unravel_index(int(diff.argmax()), diff.shape)
    return {f"worst_block_drift_vs_{against}": round(float(diff.max()), 2),
            f"worst_block_at_vs_{against}": [int(y) * 32, int(x) * 32], f"psnr_vs_{against}": round(psnr(small, ref), 2)}


def _peak_rss_of_big_photo(checkpoint: str | None, shape=(4000, 6000)) -> dict:
    code = (
        "import resource, time, numpy as np, cv2\n"
        "from nedr.model import load_checkpoint, dehaze\n"
        f"m = load_checkpoint({checkpoint!r})\n"
        "rng = np.random.default_rng(0)\n"
        f"img = cv2.resize((rng.random((40, 60, 3)) * 255).astype(np.uint8), ({shape[1]}, {shape[0]}))\n"
        "t = time.perf_counter(); out = dehaze(m, img); s = time.perf_counter() - t\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, s, out.shape)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    kib, seconds, *_ = proc.stdout.split()
    return {"shape": list(shape), "peak_rss_gib": round(int(kib) / 2**20, 2), "seconds": round(float(seconds), 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("-o", "--output", default="benchmarks/results/cpu/large_photo.json")
    ap.add_argument("--images", default=None, help="folder for the results at 512² (PNG), to look at")
    args = ap.parse_args()
    import torch
    from nedr.model import load_checkpoint, dehaze
    from nedr.model.inference import LARGE_SIDE, NETWORK_SIDE
    from nedr.model.metrics import psnr

    model = load_checkpoint(args.checkpoint)
    scene, clean = _scene()
    images = Path(args.images) if args.images else None
    if images:
        images.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(images / "hazy_512.png"), scene[..., ::-1])
    dehaze(model, scene[:128, :128])  # warm-up: the first call's one-off costs are not the 512² row's
    ref = ref_image = at_network = None
    rows = []
    for side in SIZES:
        image = scene if side == 512 else cv2.resize(scene, (side, side), interpolation=cv2.INTER_CUBIC)
        for full_res in ((False, True) if LARGE_SIDE < side <= 1024 else (False,)):
            start = time.perf_counter()
            out = dehaze(model, image, max_side=None if full_res else LARGE_SIDE)
            seconds = time.perf_counter() - start
            mean = out.reshape(-1, 3).mean(0)
            small = out if side == 512 else cv2.resize(out, (512, 512), interpolation=cv2.INTER_AREA)
            ref, ref_image = (mean, small) if ref is None else (ref, ref_image)
            at_network = small if side == NETWORK_SIDE else at_network
            if images:
                name = f"{side}_{'full' if full_res or side <= LARGE_SIDE else 'default'}.png"
                cv2.imwrite(str(images / name), small[..., ::-1])
            rows.append({"size": side, "mode": "full size" if full_res or side <= LARGE_SIDE else
                         f"network at {NETWORK_SIDE} + guided upsampling", "seconds": round(seconds, 2),
                         "mean_rgb": [round(float(v), 2) for v in mean],
                         "drift_vs_512": round(float(np.abs(mean - ref).max()), 2),
                         **(_compare(small, ref_image, 512) if side != 512 else {}),
                         # the network saw 768² for every default row above it: what the upsampling changes
                         **(_compare(small, at_network, NETWORK_SIDE) if at_network is not None and side > NETWORK_SIDE
                            else {}),
                         "psnr_vs_clean": round(psnr(small, clean), 2)})
            print(rows[-1], flush=True)
    big = _peak_rss_of_big_photo(args.checkpoint)
    print(big)
    report = {"checkpoint": args.checkpoint or "bundled default weights", "large_side": LARGE_SIDE,
              "network_side": NETWORK_SIDE, "rows": rows, "big_photo": big,
              "machine": {"cpu": cpu_info(), "load_avg": load_average(), "torch_threads": torch.get_num_threads(),
                          "niceness": os.nice(0)}, "versions": versions(),
              "own_peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
