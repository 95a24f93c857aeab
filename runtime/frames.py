"""Frame helpers shared by sources, the pipeline and fast mode (numpy + OpenCV only, no torch).

The network contract (docs/model.md): N×3×H×W float32 RGB in [0, 1] with H and W multiples of 32 and at
least 128. Frames are padded right/bottom (reflect where the frame is large enough, else edge, as
`nedr.model.inference.pad_to_contract` does) and the output is cropped back.
"""
from __future__ import annotations

import cv2
import numpy as np

from nedr.contract import padded_hw, parse_hw


def pad_hwc(image: np.ndarray, target: tuple[int, int] | None = None) -> np.ndarray:
    """Pad an H×W×C array right/bottom to `target` (default: the contract size).

    Reflect (without repeating the edge pixel, like torch's "reflect") where the pad is smaller than
    the image, else edge replication: the same rule as `pad_to_contract`.
    """
    h, w = image.shape[:2]
    th, tw = target or padded_hw(h, w)
    ph, pw = th - h, tw - w
    if ph < 0 or pw < 0:
        raise ValueError(f"cannot pad {h}×{w} to the smaller {th}×{tw}")
    if ph == 0 and pw == 0:
        return image
    border = cv2.BORDER_REFLECT_101 if ph < h and pw < w else cv2.BORDER_REPLICATE
    return cv2.copyMakeBorder(image, 0, ph, 0, pw, border)


def to_batch(image: np.ndarray) -> np.ndarray:
    """H×W×3 float32 → contiguous 1×3×H×W float32."""
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)


def from_batch(batch: np.ndarray, index: int = 0) -> np.ndarray:
    """N×C×H×W → H×W×C (C = 1 gives H×W)."""
    x = batch[index]
    return x[0] if x.shape[0] == 1 else x.transpose(1, 2, 0)


def to_float(rgb8: np.ndarray) -> np.ndarray:
    return rgb8.astype(np.float32) * (1.0 / 255.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float in [0, 1] → uint8 with rounding (as nedr.model.dehaze does)."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_rgb8(frame: np.ndarray, order: str = "bgr") -> np.ndarray:
    """Any OpenCV frame → H×W×3 uint8 RGB: grey, grey+alpha, BGR(A)/RGB(A), 8/16-bit or float.

    `order` is the channel order of a colour frame ("bgr" as OpenCV decodes, or "rgb").
    """
    if frame is None or not isinstance(frame, np.ndarray) or frame.size == 0:
        raise ValueError("empty frame")
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)
    elif frame.dtype in (np.float32, np.float64):
        peak = 1.0 if float(np.nanmax(frame)) <= 1.0 else 255.0
        frame = (np.clip(np.nan_to_num(frame), 0, peak) * (255.0 / peak) + 0.5).astype(np.uint8)
    elif frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[..., 0]
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    if frame.ndim != 3 or frame.shape[2] not in (2, 3, 4):
        raise ValueError(f"unsupported frame shape {frame.shape}")
    channels = frame.shape[2]
    if channels == 2:  # grey + alpha
        return cv2.cvtColor(np.ascontiguousarray(frame[..., 0]), cv2.COLOR_GRAY2RGB)
    if order == "rgb":
        return np.ascontiguousarray(frame[..., :3])
    return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB if channels == 4 else cv2.COLOR_BGR2RGB)


def parse_wxh(text: str) -> tuple[int, int]:
    """Width-first size text → (width, height), for the two options that have always read WxH.

    `nedr run --infer-size` (and the multistream benchmark's --size) predate the HxW order of every
    other size option; they keep reading width first so existing command lines mean the same size.
    The text goes through the one parser, `nedr.contract.parse_hw`, whose (first, second) numbers
    are here (width, height): the swap below is the whole conversion.
    """
    problem = f"expected a size WIDTHxHEIGHT such as 640x360, got {text!r}"
    try:
        height, width = parse_hw(text)[::-1]
    except ValueError:
        raise ValueError(problem) from None
    if min(height, width) < 1:
        raise ValueError(problem)
    return width, height


def side_by_side(left: np.ndarray, right: np.ndarray, labels: tuple[str, str] | None = ("hazy", "dehazed")) -> np.ndarray:
    """Two RGB frames next to each other (the right one resized to the left's height if needed)."""
    if right.shape[:2] != left.shape[:2]:
        right = cv2.resize(right, (left.shape[1], left.shape[0]), interpolation=cv2.INTER_LINEAR)
    out = np.concatenate([left, right], axis=1)
    if labels:
        scale = max(0.4, left.shape[0] / 700)
        for text, x0 in zip(labels, (0, left.shape[1])):
            org = (x0 + int(10 * scale), int(28 * scale))
            cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), max(1, int(4 * scale)), cv2.LINE_AA)
            cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), max(1, int(1.5 * scale)), cv2.LINE_AA)
    return out
