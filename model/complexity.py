"""Multiply-accumulates per frame: how much work a network size and variant asks of the hardware.

Counted by PyTorch's FlopCounterMode during one real forward at the smallest contract size
(128×128, a fraction of a second on a CPU; the meta device would avoid the arithmetic but its
Python decompositions take longer), then scaled by pixels: every layer is a convolution (or a
per-pixel op) on a grid that is a fixed fraction of the padded input, so the count is exactly
proportional to H·W for inputs on the ×32 contract. Guided-filter window sums are included; the
handful of per-image reductions (min/max, top-k for A) are not MACs and are left out.
"""
from __future__ import annotations

from functools import lru_cache

REFERENCE_HW = (128, 128)


@lru_cache(maxsize=None)
def _reference_gmac(arch, guided_filter: bool) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .network import NeDR

    model = NeDR(arch=arch, guided_filter=guided_filter).eval()  # sizes matter, weight values do not
    x = torch.rand(1, 3, *REFERENCE_HW, generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 2e9  # a MAC is two FLOPs in the counter's convention


def gmac_per_frame(height: int, width: int, arch=None, guided_filter: bool = True) -> float:
    """GMAC of one network call at H×W (padded to the contract first, as `dehaze()` does)."""
    from nedr.contract import padded_size

    from .network import PUBLIC

    h, w = padded_size(height), padded_size(width)
    return _reference_gmac(arch or PUBLIC, guided_filter) * (h * w) / (REFERENCE_HW[0] * REFERENCE_HW[1])
