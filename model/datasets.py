"""Training datasets: on-the-fly synthetic haze, paired folders, unpaired folders.

Every item is a pure function of (seed, index), so a run resumed at step N draws exactly the
batches an uninterrupted run would have drawn.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .imageio import DataError, list_images, read_image
from .samples import Sample
from .synthesis import segment_depth, synthesize

def to_tensor(img: np.ndarray) -> torch.Tensor:
    """H×W×C (uint8 or float in [0, 1]) → C×H×W float32."""
    x = torch.from_numpy(np.ascontiguousarray(img))
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    return x.permute(2, 0, 1) if x.dim() == 3 else x[None]


def random_crop(rng: np.random.Generator, size: int, *arrays: np.ndarray, scale: tuple[float, float] = (1.0, 1.0)):
    """The same random rescale, crop and horizontal flip applied to aligned arrays."""
    h, w = arrays[0].shape[:2]
    s = rng.uniform(*scale)
    s = max(s, size / min(h, w))  # never crop outside the image
    if abs(s - 1.0) > 1e-3:
        nh, nw = max(size, round(h * s)), max(size, round(w * s))
        arrays = tuple(cv2.resize(a, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
                       for a in arrays)
        h, w = nh, nw
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    flip = rng.random() < 0.5
    out = []
    for a in arrays:
        a = a[y:y + size, x:x + size]
        out.append(np.ascontiguousarray(a[:, ::-1] if flip else a))
    return out


SHUFFLES = ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))  # RGB permutations but the identity


class SyntheticHaze(Dataset):
    """Hazy/clean/t crops synthesised on the fly from clean samples; item i is fixed by (seed, i).

    `scale` is the range of the random rescale before cropping: below 1 a crop holds more of the
    scene, so small training crops still see whole-room context. `channel_shuffle`: the fraction
    of crops whose RGB channels are permuted (another permutation than the identity): scenes a
    trained network remembers then look new to it, which is what the prior gate must learn on
    (it would otherwise learn to trust the network everywhere). `segment_depth`: the fraction of
    crops without a true depth whose depth follows their own segments (`synthesis.segment_depth`).
    """

    def __init__(self, samples: list[Sample], crop: int = 256, length: int = 10**9, seed: int = 0,
                 scale: tuple[float, float] = (0.4, 1.0), convention: str | None = None,
                 channel_shuffle: float = 0.0, segment_depth: float = 0.0):
        if not samples:
            raise DataError("synthetic dataset: no clean samples")
        for name, fraction in (("channel_shuffle", channel_shuffle), ("segment_depth", segment_depth)):
            if not 0.0 <= fraction <= 1.0:
                raise ValueError(f"{name} is a fraction in [0, 1], got {fraction}")
        self.samples, self.crop, self.length, self.seed, self.scale = samples, crop, length, seed, scale
        self.convention = convention  # None: both conventions, drawn per item
        self.channel_shuffle, self.segment_depth = channel_shuffle, segment_depth

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        sample = self.samples[int(rng.integers(len(self.samples)))]
        if sample.depth is not None:
            image, depth = random_crop(rng, self.crop, sample.image, sample.depth, scale=self.scale)
        else:
            (image,), depth = random_crop(rng, self.crop, sample.image, scale=self.scale), None
        if self.channel_shuffle and rng.random() < self.channel_shuffle:  # no draw at 0: old streams kept
            image = np.ascontiguousarray(image[..., list(SHUFFLES[int(rng.integers(len(SHUFFLES)))])])
        if depth is None and self.segment_depth and rng.random() < self.segment_depth:  # no draw at 0, as above
            depth = segment_depth(image, rng)
        h = synthesize(image, rng, depth, self.convention)
        return {"hazy": to_tensor(h.hazy), "clean": to_tensor(h.clean), "t": to_tensor(h.t),
                "A": torch.from_numpy(np.asarray(h.A, dtype=np.float32))}


class FolderImages(Dataset):
    """Random crops of every image in a folder (one side of unpaired training)."""

    def __init__(self, folder: str | Path, crop: int = 256, seed: int = 0, length: int | None = None):
        self.files = list_images(folder)
        self.crop, self.seed = crop, seed
        self.length = length or len(self.files)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, index])
        path = self.files[index % len(self.files)]
        (img,) = random_crop(rng, self.crop, read_image(path), scale=(0.5, 1.0))
        return to_tensor(img)


class PairedFolders(Dataset):
    """Aligned hazy/clean crops from pairs of files (see `nedr.model.evaluation.pair_images`)."""

    def __init__(self, pairs: list[tuple[Path, Path]], crop: int = 256, seed: int = 0, length: int | None = None):
        if not pairs:
            raise DataError("paired dataset: no pairs")
        self.pairs, self.crop, self.seed = pairs, crop, seed
        self.length = length or len(pairs)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        hazy_path, clean_path = self.pairs[index % len(self.pairs)]
        hazy, clean = read_image(hazy_path), read_image(clean_path)
        if hazy.shape != clean.shape:
            raise DataError(f"{hazy_path}: size {hazy.shape[:2]} differs from {clean_path} {clean.shape[:2]}")
        hazy, clean = random_crop(rng, self.crop, hazy, clean, scale=(0.5, 1.0))
        return {"hazy": to_tensor(hazy), "clean": to_tensor(clean)}


class UnpairedFolders(Dataset):
    """Zips independent hazy and clean crops into {"hazy", "clean"} items for the paper preset."""

    def __init__(self, hazy, clean):
        self.hazy, self.clean = hazy, clean

    def __len__(self) -> int:
        return len(self.hazy)

    def __getitem__(self, index: int):
        return {"hazy": self.hazy[index], "clean": self.clean[index]}
