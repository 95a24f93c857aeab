"""nedr.export.profiles: HxW parsing, optimisation profiles and the frame-fits messages."""
from __future__ import annotations

import pytest

from nedr.contract import padded_hw
from nedr.errors import UserError
from nedr.export.profiles import (DEFAULT_MAX, DEFAULT_MIN, DEFAULT_OPT, Profile, ProfileError, fits, make_profile,
                                  parse_hw, require_fit, static_profile)


def test_parse_hw_forms():
    assert parse_hw("736x1280") == (736, 1280)
    assert parse_hw(" 256 X 320 ") == (256, 320)
    assert parse_hw("1088×1920") == (1088, 1920)


@pytest.mark.parametrize("text,match", [
    ("720", "not HxW"), ("axb", "not HxW"), ("736x1280x3", "not HxW"), ("720x1280", r"multiples of 32 \(try 736x1280\)"),
    ("300x300", r"multiples of 32 \(try 320x320\)"), ("96x128", ">= 128"),
])
def test_parse_hw_errors(text, match):
    with pytest.raises(ProfileError, match=match):
        parse_hw(text)


def test_default_profile_covers_1080p():
    p = make_profile()
    assert (p.min, p.opt, p.max) == (DEFAULT_MIN, DEFAULT_OPT, DEFAULT_MAX) == ((256, 256), (736, 1280), (1088, 1920))
    assert padded_hw(1080, 1920) == (1088, 1920)
    assert padded_hw(720, 1280) == (736, 1280)
    assert fits(p, 1080, 1920) and fits(p, 720, 1280) and fits(p, 256, 256)
    assert p.shapes() == {"min": (1, 3, 256, 256), "opt": (1, 3, 736, 1280), "max": (1, 3, 1088, 1920)}
    assert not p.is_static


def test_min_greater_than_max_is_a_clear_error():
    with pytest.raises(ProfileError, match=r"profile height: min 1088 > max 512 .*min must be <= max"):
        make_profile("1088x256", "1088x256", "512x1920")


def test_defaults_follow_the_bounds_given():
    assert make_profile(max_hw="512x512") == Profile((256, 256), (512, 512), (512, 512))
    assert make_profile(opt_hw="2176x3840") == Profile((256, 256), (2176, 3840), (2176, 3840))
    assert make_profile(min_hw="1088x1920") == Profile((1088, 1920), (1088, 1920), (1088, 1920))
    assert make_profile(min_hw="128x128", max_hw="256x2048") == Profile((128, 128), (256, 1280), (256, 2048))


def test_opt_outside_range():
    with pytest.raises(ProfileError, match="opt 2048 is outside"):
        make_profile("256x256", "736x2048", "1088x1920")


def test_profile_error_is_a_user_error_and_a_value_error():
    assert issubclass(ProfileError, UserError) and issubclass(ProfileError, ValueError)


def test_fits_message_for_too_large_and_too_small_frames():
    p = make_profile()
    big = fits(p, 2160, 3840)  # 4K: 2160 pads to 2176
    assert not big and "frame 2160x3840 (padded to 2176x3840) does not fit" in big.message
    assert "accepts 256x256 to 1088x1920" in big.message and "rebuild with --max 2176x3840" in big.message
    odd = fits(p, 1081, 1921)  # padded to 1088x1952: wider than max
    assert not odd and "(padded to 1088x1952)" in odd.message and "--max 1088x1952" in odd.message
    small = fits(p, 130, 130)
    assert not small and "(padded to 160x160)" in small.message and "--min 160x160" in small.message
    with pytest.raises(ProfileError, match="does not fit"):
        require_fit(p, 2160, 3840)
    require_fit(p, 1080, 1920)


def test_static_profile_for_dla():
    p = static_profile("512x640")
    assert p.is_static and p.min == p.opt == p.max == (512, 640)
    assert fits(p, 500, 640)  # pads to 512x640
    wrong = fits(p, 720, 1280)
    assert not wrong and "(padded to 736x1280)" in wrong.message and "static 512x640" in wrong.message
    assert "rebuild with --static 736x1280" in wrong.message
    assert Profile.from_dict(p.to_dict()) == p
