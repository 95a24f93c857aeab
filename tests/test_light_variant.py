"""`nedr-s`, the light variant: addressable by name, ≥ 4× fewer MACs, and through the same export,
FP16, INT8 (both targets) and op-hygiene checks as the full network (issue 12).

One export at 128×128 serves the file; calibration uses 2 synthetic frames.
"""
from __future__ import annotations

import onnx
import pytest

from nedr.export import check_ops, convert_fp16, export_onnx, verify_onnx
from nedr.export.quantize import quantize
from nedr.model import load_checkpoint
from nedr.model.complexity import gmac_per_frame
from nedr.model.network import ARCHITECTURES

SIZE = (128, 128)


@pytest.fixture(scope="module")
def light():
    return load_checkpoint("nedr-s")


@pytest.fixture(scope="module")
def light_onnx(light, tmp_path_factory):
    return export_onnx(light, tmp_path_factory.mktemp("light") / "nedr-s.onnx", with_transmission=True)


def test_bundled_name_loads_the_light_architecture(light):
    assert light.arch == ARCHITECTURES["nedr-s"] != ARCHITECTURES["nedr"]
    assert load_checkpoint("nedr").arch == ARCHITECTURES["nedr"]
    full, small = (gmac_per_frame(480, 640, ARCHITECTURES[name]) for name in ("nedr", "nedr-s"))
    assert full / small >= 4.0, (full, small)


@pytest.mark.slow
def test_export_is_clean_and_matches_pytorch(light, light_onnx):
    assert check_ops(onnx.load(str(light_onnx))) == []
    report = verify_onnx(light_onnx, light, sizes=(SIZE, (160, 224)))
    assert report.passed, report.summary()


@pytest.mark.slow
def test_fp16_conversion_keeps_agreement(light, light_onnx, tmp_path):
    report = convert_fp16(light_onnx, tmp_path / "nedr-s.fp16.onnx", model=light, sizes=(SIZE,))
    assert check_ops(onnx.load(str(tmp_path / "nedr-s.fp16.onnx"))) == []
    assert report.agreement and all(c.max_abs_err <= 2e-2 for c in report.agreement), report.summary()


@pytest.mark.slow
@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_int8_for_both_targets(light_onnx, tmp_path, target):
    out = tmp_path / f"nedr-s.{target}.int8.onnx"
    report = quantize(light_onnx, out, calib="synthetic", frames=2, method="minmax", size=SIZE, target=target,
                      validation_frames=2, cache=False)
    assert report.int8_convs > 20 and report.psnr_db > 25, report.summary()
    assert check_ops(onnx.load(str(out))) == [] if target == "tensorrt" else out.is_file()
