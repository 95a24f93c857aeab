"""`dehaze()`: any image size in, same size out, via the network's ×32 / ≥128 contract.

Large inputs (long side above `LARGE_SIDE`) run the network at a long side of `NETWORK_SIDE` and
carry J back to full size by guided local-affine upsampling (`nedr.model.fast`): the network was
trained on scenes a few hundred pixels across, and at 2048² and beyond its output drifts in colour
and blotches; a 6000×4000 photo at full size also needs ~20 GB. The transmission is smooth, so
little is lost, and memory stays at a few full-size float copies of the image. The two sides are
equal, so every input above them is seen by the network at one scale and the result does not
depend on the input's size: the SOTS-indoor pairs enlarged 2× (1240×920) scored 14.48 dB this way
against 14.00 dB with the network at full size (14.68 dB at their own size).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from nedr.contract import padded_size

from .network import NeDR

MIN_IMAGE_SIZE = 16
LARGE_SIDE = 768  # long side above which the network runs smaller
NETWORK_SIDE = LARGE_SIDE  # long side of the network input for those (module docstring: why equal)


def network_size_for(height: int, width: int, max_side: int | None = LARGE_SIDE) -> tuple[int, int] | None:
    """(h, w) the network runs at for an H×W input, or None for full size (`max_side=None`: always)."""
    if max_side is None or max(height, width) <= max_side:
        return None
    scale = min(NETWORK_SIDE, max_side) / max(height, width)
    return max(MIN_IMAGE_SIZE, round(height * scale)), max(MIN_IMAGE_SIZE, round(width * scale))


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


def _network(model: NeDR, x: torch.Tensor):
    h, w = x.shape[-2:]
    j, t, a = model(pad_to_contract(x), return_aux=True)
    return j[..., :h, :w].float(), t[..., :h, :w].float(), a


@torch.no_grad()
def dehaze(model: NeDR, image, return_aux: bool = False, max_side: int | None = LARGE_SIDE):
    """Dehaze one image (uint8/float32 HWC RGB array) or a float tensor (3×H×W or N×3×H×W).

    Returns the same kind of object and size as given; with `return_aux`, also t (H×W or
    N×1×H×W) and A. Inputs with a long side above `max_side` run the network at
    `network_size_for` and are upsampled guided by the input (module docstring); `max_side=None`
    runs the network at full size whatever it costs.
    """
    _validate(image)
    param = next(model.parameters())
    if isinstance(image, np.ndarray):
        scale = 255.0 if image.dtype == np.uint8 else 1.0
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / scale
    else:
        x = image if image.dim() == 4 else image[None]
    h, w = x.shape[-2:]
    x = x.to(param.device, param.dtype).clamp(0, 1)
    small_hw = network_size_for(h, w, max_side)
    if small_hw is None:
        j, t, a = _network(model, x)
    else:
        from .fast import guided_upsample

        small = F.interpolate(x, size=small_hw, mode="bilinear", align_corners=False, antialias=True)
        j_small, t_small, a = _network(model, small)
        j = guided_upsample(x.float(), small.float(), j_small)
        t = F.interpolate(t_small, size=(h, w), mode="bilinear", align_corners=False)
    if isinstance(image, np.ndarray):
        out = j[0].permute(1, 2, 0).cpu().numpy()
        out = (out * 255.0 + 0.5).astype(np.uint8) if image.dtype == np.uint8 else out
        return (out, t[0, 0].cpu().numpy(), a[0, :, 0, 0].float().cpu().numpy()) if return_aux else out
    if image.dim() == 3:
        j, t, a = j[0], t[0], a[0]
    j = j.to(image.device, image.dtype)
    return (j, t, a) if return_aux else j
