"""Frame plumbing of the runtime (nedr.runtime.frames): padding to the network contract, WxH text,
side-by-side views."""
from __future__ import annotations

import numpy as np
import pytest

from nedr.contract import MIN_SIZE, PAD_MULTIPLE, padded_size
from nedr.runtime.frames import pad_hwc, parse_wxh, side_by_side


def test_contract_constants_mirror_the_model():
    torch = pytest.importorskip("torch")
    from nedr.model.inference import pad_to_contract
    from nedr.model.inference import padded_size as model_padded_size
    from nedr.model.network import MIN_SIZE as M, PAD_MULTIPLE as P

    assert (MIN_SIZE, PAD_MULTIPLE) == (M, P)
    assert all(padded_size(n) == model_padded_size(n) for n in (1, 100, 128, 129, 403, 721, 1080))
    rng = np.random.default_rng(0)
    for h, w in ((403, 721), (100, 300), (130, 129)):
        x = rng.random((h, w, 3), dtype=np.float32)
        ref = pad_to_contract(torch.from_numpy(x).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(pad_hwc(x), ref)


def test_parse_wxh():
    assert parse_wxh("640x360") == (640, 360) and parse_wxh(" 1280 X 720 ") == (1280, 720)
    for bad in ("640", "x360", "0x10", "axb"):
        with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
            parse_wxh(bad)


def test_side_by_side():
    a = np.zeros((10, 20, 3), np.uint8)
    assert side_by_side(a, np.zeros((5, 10, 3), np.uint8)).shape == (10, 40, 3)
