"""`nedr build`'s up-front checks as plain functions (nedr.export.build_plan): no TensorRT, no CLI."""
from __future__ import annotations

import pytest

from nedr.errors import UserError
from nedr.export.build_plan import check_dla_request, dla_shape_problem, plan_build, resolve_profile
from nedr.export.profiles import ProfileError, make_profile, static_profile
from tiny_onnx import conv_model, fp16_model, save


def test_plan_defaults_and_recorded_options(tmp_path):
    model = save(conv_model(), tmp_path / "m.onnx")
    plan = plan_build(model, opt_hw="512x512", workspace_mib=64)
    assert plan.output == model.with_suffix(".engine") and plan.timing_cache is None
    assert plan.profile == make_profile(None, "512x512", None) and plan.precision["precision"] == "fp32"
    assert plan.options.workspace_mib == 64 and plan.options.opt == "512x512" and plan.options.static is None


def test_static_onnx_admits_only_its_size():
    shape = [1, 3, 256, 320]
    assert resolve_profile(shape) == static_profile((256, 320))
    with pytest.raises(ProfileError, match="static input hazy 256x320"):
        resolve_profile(shape, max_hw="512x512")
    with pytest.raises(ProfileError, match="either --static or --min/--opt/--max"):
        resolve_profile(["batch", 3, "height", "width"], static="256x256", min_hw="256x256")


def test_dla_rule():
    assert dla_shape_problem(static_profile("256x256")) is None
    assert "DLA needs static shapes" in dla_shape_problem(make_profile())
    check_dla_request(0, static_profile("256x256"), "fp16", "m.onnx")
    for args, match in (((-1, static_profile("256x256"), "fp16"), "numbered from 0"),
                        ((0, make_profile(), "fp16"), "DLA needs static shapes"),
                        ((0, static_profile("256x256"), "fp32"), "is FP32 and DLA runs only FP16/INT8")):
        with pytest.raises(UserError, match=match):
            check_dla_request(*args, "m.onnx")


def test_plan_with_dla(tmp_path):
    model = save(fp16_model(), tmp_path / "h.onnx")
    plan = plan_build(model, static="256x256", dla_core=0)
    assert plan.options.dla_core == 0 and plan.options.static == "256x256"
    with pytest.raises(UserError, match="would overwrite the ONNX file"):
        plan_build(model, model)
