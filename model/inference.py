"""`dehaze()`: any image size in, same size out, via the network's ×32 / ≥128 contract."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .network import MIN_SIZE, PAD_MULTIPLE, NeDR

MIN_IMAGE_SIZE = 16


def padded_size(size: int) -> int:
    """The next multiple of 32 that is at least 128."""
    return max(MIN_SIZE, -(-size // PAD_MULTIPLE) * PAD_MULTIPLE)


def pad_to_contract(x: torch.Tensor) -> torch.Tensor:
    """Pad right/bottom to the network contract: reflect where the image is large enough, else edge."""
    h, w = x.shape[-2:]
    ph, pw = padded_size(h) - h, padded_size(w) - w
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def _validate(image) -> None:
    if isinstance(image, np.ndarray):
        if image.dtype not in (np.uint8, np.float32):
            raise TypeError(f"dehaze() takes uint8 or float32 HWC RGB arrays, got dtype {image.dtype}")
        shape, hw = image.shape, image.shape[:2]
        if image.ndim != 3 or shape[2] != 3:
            raise ValueError(f"dehaze() needs an H×W×3 RGB array, got shape {shape}")
    elif isinstance(image, torch.Tensor):
        if not image.is_floating_point():
            raise TypeError(f"dehaze() takes float tensors in [0, 1], got {image.dtype}")
        if image.dim() not in (3, 4) or image.shape[-3] != 3:
            raise ValueError(f"dehaze() needs a 3×H×W or N×3×H×W tensor, got shape {tuple(image.shape)}")
        hw = image.shape[-2:]
    else:
        raise TypeError(f"dehaze() takes a numpy array or torch tensor, got {type(image).__name__}")
    if min(hw) < MIN_IMAGE_SIZE:
        raise ValueError(f"image is {hw[0]}×{hw[1]}; dehaze() needs at least {MIN_IMAGE_SIZE}×{MIN_IMAGE_SIZE}")
    finite = np.isfinite(image).all() if isinstance(image, np.ndarray) else bool(torch.isfinite(image).all())
    if not finite:
        raise ValueError("image contains NaN or Inf values")


@torch.no_grad()
def dehaze(model: NeDR, image, return_aux: bool = False):
    """Dehaze one image (uint8/float32 HWC RGB array) or a float tensor (3×H×W or N×3×H×W).

    Returns the same kind of object and size as given; with `return_aux`, also t (H×W or
    N×1×H×W) and A.
    """
    _validate(image)
    param = next(model.parameters())
    if isinstance(image, np.ndarray):
        scale = 255.0 if image.dtype == np.uint8 else 1.0
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / scale
    else:
        x = image if image.dim() == 4 else image[None]
    h, w = x.shape[-2:]
    x = pad_to_contract(x.to(param.device, param.dtype).clamp(0, 1))
    j, t, a = model(x, return_aux=True)
    j, t = j[..., :h, :w].float(), t[..., :h, :w].float()
    if isinstance(image, np.ndarray):
        out = j[0].permute(1, 2, 0).cpu().numpy()
        out = (out * 255.0 + 0.5).astype(np.uint8) if image.dtype == np.uint8 else out
        return (out, t[0, 0].cpu().numpy(), a[0, :, 0, 0].float().cpu().numpy()) if return_aux else out
    if image.dim() == 3:
        j, t, a = j[0], t[0], a[0]
    j = j.to(image.device, image.dtype)
    return (j, t, a) if return_aux else j
