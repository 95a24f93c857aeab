"""SyntheticHaze's options: channel shuffle (a permutation of the crop's colours, nothing else changed)
and segment depth (t follows the crop's own segments)."""
from __future__ import annotations

import pytest
import skimage.data
import torch

from nedr.model.datasets import SyntheticHaze
from nedr.model.samples import Sample


def _data(**kw) -> SyntheticHaze:
    return SyntheticHaze([Sample("astronaut", skimage.data.astronaut())], crop=64, seed=3, **kw)


def test_channel_shuffle_permutes_the_clean_crop():
    plain, shuffled = _data(), _data(channel_shuffle=1.0)
    for i in range(4):
        a, b = plain[i]["clean"], shuffled[i]["clean"]
        perms = [p for p in ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)) if torch.equal(a[list(p)], b)]
        assert perms, f"item {i}: not a channel permutation of the plain crop"
        assert not torch.equal(a, b)


def test_no_shuffle_keeps_the_item_stream():
    """At 0 no extra random draw is made, so runs recorded before the option reproduce."""
    a, b = _data()[5], _data(channel_shuffle=0.0)[5]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="channel_shuffle"):
        _data(channel_shuffle=1.5)


def test_segment_depth_changes_t_but_not_the_clean_crop():
    plain, segmented = _data(), _data(segment_depth=1.0)
    for i in range(3):
        a, b = plain[i], segmented[i]
        assert torch.equal(a["clean"], b["clean"])
        assert not torch.equal(a["t"], b["t"])


def test_no_segment_depth_keeps_the_item_stream():
    a, b = _data()[7], _data(segment_depth=0.0)[7]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="segment_depth"):
        _data(segment_depth=-0.1)
