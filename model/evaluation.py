"""Paired-folder evaluation: match hazy images to their ground truth, dehaze, score PSNR/SSIM.

Why this is more than a zip of two sorted listings: RESIDE names its hazy images after the clear
image plus the haze parameters (`1400_9.png` for SOTS-indoor, `0005_0.8_0.04.jpg` for ITS/OTS),
several hazy images share one clear image, and the clear image's extension may differ. A silent
mis-pairing would produce plausible-looking but meaningless scores, so every problem (missing or
empty folder, unreadable image, size mismatch, hazy image with no partner) stops the run with a
one-line `DataError` that names the folder or file, before any time is spent dehazing.

Metrics follow `nedr.model.metrics` (PSNR/SSIM on uint8 RGB, scikit-image settings stated there).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from .imageio import DataError, list_images, read_image
from .inference import dehaze
from .metrics import psnr, ssim

HAZY_DIR_NAMES = ("hazy",)
CLEAN_DIR_NAMES = ("gt", "clear", "clean")

Dehazer = Callable[[np.ndarray], np.ndarray]
Pair = tuple[Path, Path]


def _short_list(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _candidate_stems(stem: str) -> list[str]:
    """`0005_0.8_0.04` → [`0005_0.8_0.04`, `0005_0.8`, `0005`]: longest (most specific) first."""
    parts = stem.split("_")
    return ["_".join(parts[:i]) for i in range(len(parts), 0, -1)]


def match_pairs(hazy_files: Iterable[Path], clean_files: Iterable[Path]) -> list[Pair]:
    """Pair file lists by stem; no file reading.

    A hazy stem matches the clean image with the same stem, else the longest `_`-separated
    prefix that names a clean image (RESIDE: `1400_9` → `1400`, `0005_0.8_0.04` → `0005`).
    Extensions are ignored, so `a.jpg` pairs with `a.png`. Raises DataError for clean images that
    share a stem (`1400.png` and `1400.jpg`: ambiguous) and for hazy images without a partner.
    """
    clean_by_stem: dict[str, Path] = {}
    for path in clean_files:
        if path.stem in clean_by_stem:
            raise DataError(f"two clean images share the stem {path.stem!r}, pairing is ambiguous: "
                            f"{clean_by_stem[path.stem].name} and {path.name} in {path.parent}")
        clean_by_stem[path.stem] = path
    pairs, unpaired = [], []
    for hazy in hazy_files:
        clean = next((clean_by_stem[s] for s in _candidate_stems(hazy.stem) if s in clean_by_stem), None)
        if clean is None:
            unpaired.append(hazy)
        else:
            pairs.append((hazy, clean))
    if unpaired:
        folder = unpaired[0].parent
        raise DataError(f"{len(unpaired)} hazy image(s) in {folder} have no clean partner (by name): "
                        f"{_short_list([p.name for p in unpaired])}")
    return pairs


def _check_sizes(pair: Pair, hazy_shape: tuple[int, ...], clean_shape: tuple[int, ...]) -> None:
    if hazy_shape[:2] == clean_shape[:2]:
        return
    (hh, hw), (ch, cw) = hazy_shape[:2], clean_shape[:2]
    hint = (" (clean is 20 px larger per axis: raw SOTS ground truth, centre-crop it by 10 px per side)"
            if (ch - hh, cw - hw) == (20, 20) else "")
    raise DataError(f"size mismatch: {pair[0]} is {hw}×{hh} but {pair[1]} is {cw}×{ch}{hint}")


def check_pair(hazy: np.ndarray, clean: np.ndarray, pair: Pair) -> None:
    """DataError naming both files when a pair's images differ in size (width×height in the message)."""
    _check_sizes(pair, hazy.shape, clean.shape)


def pair_images(hazy_dir: str | Path, clean_dir: str | Path, check: bool = True) -> list[Pair]:
    """List (hazy_path, clean_path) pairs of two folders, matched by name (see `match_pairs`).

    With `check` (default) every image is also decoded once to catch unreadable files and size
    mismatches up front, so a long evaluation cannot fail on its 400th image; it costs a few ms
    per image. Pairs are sorted by hazy file name.
    """
    pairs = match_pairs(list_images(hazy_dir, "hazy"), list_images(clean_dir, "clean"))
    if check:
        clean_shapes: dict[Path, tuple[int, ...]] = {}
        for hazy, clean in pairs:
            if clean not in clean_shapes:  # RESIDE ITS: ten hazy images per clear image
                clean_shapes[clean] = read_image(clean).shape
            _check_sizes((hazy, clean), read_image(hazy).shape, clean_shapes[clean])
    return pairs


def find_pair_dirs(root: str | Path) -> tuple[Path, Path]:
    """(hazy_dir, clean_dir) of a `--pairs DIR` layout: `DIR/hazy/` plus one of `gt/`, `clear/`, `clean/`.

    Folder names match case-insensitively (`GT/` is common). More than one clean candidate is an
    error rather than a silent pick.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"pairs folder not found: {root}")
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    hazy = [subdirs[n] for n in HAZY_DIR_NAMES if n in subdirs]
    clean = [subdirs[n] for n in CLEAN_DIR_NAMES if n in subdirs]
    if not hazy:
        raise DataError(f"pairs folder {root} has no hazy/ subfolder")
    if not clean:
        raise DataError(f"pairs folder {root} has no ground-truth subfolder (one of {'/, '.join(CLEAN_DIR_NAMES)}/)")
    if len(clean) > 1:
        raise DataError(f"pairs folder {root} has several ground-truth subfolders, keep one: "
                        f"{', '.join(p.name for p in clean)}")
    return hazy[0], clean[0]


def _means(rows: list[dict], keys: Sequence[str]) -> dict[str, float]:
    """Per-key mean over report rows (NaN for no rows)."""
    return {key: math.fsum(row[key] for row in rows) / len(rows) if rows else math.nan for key in keys}


def load_pairs(pairs: Sequence[Pair]) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, hazy, clean) for each pair of files, read lazily and size-checked."""
    for hazy_path, clean_path in pairs:
        hazy, clean = read_image(hazy_path), read_image(clean_path)
        check_pair(hazy, clean, (hazy_path, clean_path))
        yield Path(hazy_path).name, hazy, clean


def synthetic_heldout(convention: str = "linear", seed: int = 777) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The held-out synthetic set: haze in `convention` ("linear" or "srgb", see
    `nedr.model.synthesis`) added to clean images never used in training. Each image keeps its
    depth, density and A across conventions, so the two sets differ only in how haze is blended."""
    from .metrics import to_uint8
    from .samples import heldout_samples
    from .synthesis import synthesize

    items = []
    for i, sample in enumerate(heldout_samples()):
        h = synthesize(sample.image, np.random.default_rng([seed, i]), sample.depth, convention)
        items.append((sample.name, to_uint8(h.hazy), to_uint8(h.clean)))
    return items


def evaluate(dehaze_fn: Dehazer, pairs: Sequence[Pair] | Sequence[tuple[str, np.ndarray, np.ndarray]],
             crop: int = 0, progress: bool = True) -> dict:
    """Dehaze every hazy image with `dehaze_fn` and score it against its clean image.

    `pairs` holds (hazy_path, clean_path) file pairs, or already loaded (name, hazy, clean)
    triples (e.g. `synthetic_heldout()`). `dehaze_fn` takes a uint8 H×W×3 RGB array and must
    return a uint8 array of the same shape; any callable works (`model_dehazer(model)`,
    `nedr.benchmarks.dcp.dehaze_dcp`, or `hazy_input` for the "no dehazing" reference row).
    `seconds` times `dehaze_fn` alone (no reading or scoring).

    Returns {"rows": [{"name", "psnr", "ssim", "seconds"}, ...], "mean": {"psnr", "ssim",
    "seconds"}, "count": n, "crop": crop}; rows keep the order of `pairs`.
    """
    if not pairs:
        raise DataError("no image pairs to evaluate")
    items = pairs if len(pairs[0]) == 3 else load_pairs(pairs)
    rows = []
    for name, hazy, clean in tqdm(items, total=len(pairs), desc="evaluate", unit="img", disable=not progress):
        start = time.perf_counter()
        out = dehaze_fn(hazy)
        seconds = time.perf_counter() - start
        if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.shape != hazy.shape:
            got = (f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__)
            raise ValueError(f"dehaze_fn must return a uint8 array of shape {hazy.shape} for {name}, got {got}")
        rows.append({"name": name, "psnr": psnr(out, clean, crop), "ssim": ssim(out, clean, crop), "seconds": seconds})
    mean = _means(rows, ("psnr", "ssim", "seconds"))
    return {"rows": rows, "mean": mean, "count": len(rows), "crop": crop}


def unseen_scene_mean(report: dict) -> dict:
    """PSNR/SSIM means of a held-out synthetic report over the scenes never trained on
    (`samples.UNSEEN_SCENES`): the figure that says how the network meets a new scene, apart from
    new frames of a training clip. {"mean": {"psnr", "ssim"}, "count": n, "names": [...]}."""
    from .samples import is_unseen_scene

    rows = [row for row in report["rows"] if is_unseen_scene(row["name"])]
    if not rows:
        raise DataError("no held-out rows of an unseen scene in this report")
    return {"mean": _means(rows, ("psnr", "ssim")),
            "count": len(rows), "names": [row["name"] for row in rows]}


def hazy_input(image: np.ndarray) -> np.ndarray:
    """The identity "dehazer": scores the hazy input itself, the usual lower reference row."""
    return image


def model_dehazer(model) -> Dehazer:
    """Wrap a NeDR model as a `dehaze_fn` for `evaluate` (uint8 in, uint8 out, same size).

    Puts the model in eval mode: BatchNorm with batch statistics would make scores depend on the
    batch, which is never what an evaluation wants.
    """
    model.eval()

    def run(image: np.ndarray) -> np.ndarray:
        return dehaze(model, image)

    return run


__all__ = ["DataError", "list_images", "read_image", "match_pairs", "pair_images",
           "find_pair_dirs", "check_pair", "load_pairs", "synthetic_heldout", "evaluate", "unseen_scene_mean",
           "hazy_input", "model_dehazer"]
