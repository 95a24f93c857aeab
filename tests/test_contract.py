"""nedr.contract: the one copy of the tensor names, size contract, size text and file-kind tables."""
from __future__ import annotations

import argparse
import subprocess
import sys

import cv2
import numpy as np
import pytest

from nedr import contract
from nedr.contract import IMAGE_SUFFIXES, VIDEO_SUFFIXES, meets_contract, padded_hw, padded_size, parse_hw


@pytest.mark.parametrize("text, hw", [
    ("736x1280", (736, 1280)), (" 256 X 320 ", (256, 320)), ("1088×1920", (1088, 1920)), ("480,640", (480, 640)),
    ("480x640", (480, 640)), ("0x0", (0, 0)),  # syntax only: each caller decides what range it takes
])
def test_parse_hw_reads_height_first(text, hw):
    assert parse_hw(text) == hw


@pytest.mark.parametrize("text", ["720", "axb", "736x1280x3", "480-640", "", "x360", "-480x640", "4.5x640"])
def test_parse_hw_rejects_what_is_not_hxw(text):
    with pytest.raises(ValueError, match="not HxW"):
        parse_hw(text)


def test_callers_keep_the_errors_the_old_parsers_gave():
    from nedr.export.profiles import ProfileError
    from nedr.export.profiles import parse_hw as profile_hw
    from nedr.export.quantize import QuantizeError, parse_size
    from nedr.runtime.frames import parse_wxh

    with pytest.raises(ProfileError, match="--min 'axb' is not HxW"):
        profile_hw("axb", what="--min")
    with pytest.raises(ProfileError, match=r"multiples of 32 \(try 736x1280\)"):
        profile_hw("720x1280")
    with pytest.raises(QuantizeError, match="write it as HxW"):
        parse_size("480-640")
    for bad in ("640", "x360", "0x10", "axb"):
        with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
            parse_wxh(bad)


def test_infer_size_keeps_reading_width_first():
    """`nedr run --infer-size 640x360` still means 640 wide, 360 high; the option says so on stderr."""
    from nedr.runtime.frames import parse_wxh

    width, height = parse_wxh("640x360")
    assert (height, width) == (360, 640) and parse_wxh(" 1280 X 720 ") == (1280, 720)


def test_infer_size_prints_its_compatibility_note(capsys):
    from nedr.commands import run as run_command

    parser = argparse.ArgumentParser()
    run_command.configure(parser)
    _, infer_size = run_command._check_options(parser.parse_args(["--infer-size", "320x180", "--backend", "onnxruntime"]))
    assert infer_size == (320, 180)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--infer-size reads WxH" in err[0] and "HxW" in err[0].split(";")[1], err


def test_padded_sizes():
    assert [padded_size(s) for s in (1, 16, 127, 128, 129, 1080, 1920)] == [128, 128, 128, 128, 160, 1088, 1920]
    assert padded_hw(1080, 1920) == (1088, 1920) and padded_hw(720, 1280) == (736, 1280)
    assert padded_hw(100, 300) == (128, 320)
    assert meets_contract(*padded_hw(403, 721)) and not meets_contract(720, 1280) and not meets_contract(96, 128)


def test_contract_imports_without_torch_numpy_or_the_rest_of_nedr():
    code = ("import sys, nedr.contract; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy') "
            "or (m.startswith('nedr.') and m != 'nedr.contract')); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_every_module_uses_the_one_table():
    from nedr.commands import inspect
    from nedr.model import imageio
    from nedr.runtime import backends, sinks, sources

    assert imageio.IMAGE_SUFFIXES is sources.IMAGE_SUFFIXES is sinks.IMAGE_SUFFIXES is IMAGE_SUFFIXES
    assert sources.VIDEO_SUFFIXES is VIDEO_SUFFIXES
    assert set(sinks.WRITABLE_VIDEO_SUFFIXES) <= set(VIDEO_SUFFIXES)  # what we write, we can read back
    assert backends.ENGINE_SUFFIXES is inspect.ENGINE_SUFFIXES is contract.ENGINE_SUFFIXES
    assert backends.ONNX_SUFFIXES is contract.ONNX_SUFFIXES and backends.CHECKPOINT_SUFFIXES is contract.CHECKPOINT_SUFFIXES


def test_a_ppm_folder_is_listed_for_calibration_and_evaluation(tmp_path):
    """The runtime always read .ppm folders; the model's folder listing (eval, --calib) now does too."""
    from nedr.model.imageio import list_images, read_image

    image = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    assert cv2.imwrite(str(tmp_path / "a.ppm"), image)
    (tmp_path / "notes.txt").write_text("not an image")
    assert list_images(tmp_path, "hazy") == [tmp_path / "a.ppm"]
    np.testing.assert_array_equal(read_image(tmp_path / "a.ppm"), image[..., ::-1])
