"""Rendered rooms: indoor training scenes whose metric depth agrees with the pixels."""
import numpy as np
import pytest
from skimage import data

from nedr.model.datasets import SyntheticHaze
from nedr.model.rooms import render_room, room_samples

SIZE = (96, 128)


@pytest.fixture(scope="module")
def photos():
    return [data.astronaut(), data.chelsea(), data.coffee()]


def test_same_seed_same_room_other_seed_other_room(photos):
    a_img, a_depth = render_room(photos, 5, SIZE)
    b_img, b_depth = render_room(photos, 5, SIZE)
    c_img, c_depth = render_room(photos, 6, SIZE)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_depth, b_depth)
    assert not np.array_equal(a_img, c_img) and not np.array_equal(a_depth, c_depth)


@pytest.mark.parametrize("seed", range(6))
def test_rooms_are_lit_scenes_with_metric_room_depth(photos, seed):
    image, depth = render_room(photos, seed, SIZE)
    assert image.shape == (*SIZE, 3) and image.dtype == np.uint8
    assert depth.shape == SIZE and depth.dtype == np.float32 and np.isfinite(depth).all()
    # inside a box of at most 6.5 × 3.2 × 8 m with furniture from 1 m on: z-depth within reach of its diagonal
    assert 0.3 < depth.min() and depth.max() < 11
    assert depth.max() / depth.min() > 1.5  # a room has near and far parts, not one flat plane
    assert 20 < image.mean() < 235 and image.std() > 8  # exposed, not blank


def test_room_samples_feed_synthetic_haze_with_their_depth(photos):
    samples = room_samples(2, photos, seed=1, size=SIZE)
    assert [s.name for s in samples] == ["room_0000", "room_0001"]
    assert all(s.depth is not None and s.depth.shape == SIZE for s in samples)
    item = SyntheticHaze(samples, crop=64, seed=3)[0]
    assert item["hazy"].shape == item["clean"].shape == (3, 64, 64)
    assert float(item["t"].min()) > 0 and float(item["t"].max()) <= 1
    parallel = room_samples(2, photos, seed=1, size=SIZE, workers=2)
    assert all(np.array_equal(a.image, b.image) and np.array_equal(a.depth, b.depth) for a, b in zip(samples, parallel))
    assert room_samples(0, []) == []
    with pytest.raises(ValueError, match="photos"):
        room_samples(1, [])
