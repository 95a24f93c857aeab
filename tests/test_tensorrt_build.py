"""nedr.export.tensorrt_build: TensorRT lanes, the build shell against a fake TensorRT, engine
information parsing. One test builds a real engine when TensorRT and a GPU are present (marked `tensorrt`)."""
from __future__ import annotations

import json
import sys
import types

import pytest

from nedr.export.engine_manifest import load_manifest
from nedr.export.profiles import make_profile, static_profile
from nedr.export.tensorrt_build import (MISSING_TENSORRT, EngineBuildError, TensorRTUnavailable, build_engine,
                                        engine_layers, lane_for, load_tensorrt, parse_engine_information, trt_lane)

from build_helpers import ENGINE_INFO_10, FakeTRT, _install
from tiny_onnx import conv_model, fp16_model, save


@pytest.mark.parametrize("version,lane", [("10.0.1", "10"), ("10.3.0", "10"), ("10.16.1.11", "10"),
                                          ("11.0.0", "11"), ("11.4.1", "11")])
def test_trt_lane(version, lane):
    assert trt_lane(version) == lane


@pytest.mark.parametrize("version", ["8.6.1", "9.3.0", "7.1.3"])
def test_old_tensorrt_refused(version):
    with pytest.raises(TensorRTUnavailable, match="too old: nedr builds with TensorRT 10.0 or later"):
        trt_lane(version)


def test_lane_differences():
    assert lane_for("10.3.0").strongly_typed_flag and lane_for("10.3.0").dla_unavailable is None
    eleven = lane_for("11.2.0")
    assert not eleven.strongly_typed_flag and "11.4.1" in eleven.dla_unavailable
    assert lane_for("11.4.1").dla_unavailable is None


GPU = ("NVIDIA H100 80GB HBM3", "9.0")


def test_build_engine_10x_calls(monkeypatch, onnx_file, tmp_path, capsys):
    fake = _install(monkeypatch, FakeTRT("10.3.0"))
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"old")
    engine = tmp_path / "tiny.engine"
    manifest = build_engine(onnx_file, engine, profile=make_profile(), workspace_bytes=512 << 20,
                            timing_cache=cache, opt_level=4, version_compatible=True, gpu=GPU)
    assert fake.called("create_network") == [("create_network", (1,))]  # 1 << STRONGLY_TYPED (0) on 10.x
    assert fake.called("set_memory_pool_limit") == [("set_memory_pool_limit", "WORKSPACE", 512 << 20)]
    assert fake.called("set_shape") == [("set_shape", "hazy", (1, 3, 256, 256), (1, 3, 736, 1280), (1, 3, 1088, 1920))]
    assert fake.called("add_optimization_profile")
    assert fake.called("create_timing_cache") == [("create_timing_cache", b"old")]
    assert cache.read_bytes() == b"CACHE:old"  # saved back
    assert fake.config.builder_optimization_level == 4
    assert fake.config.flags == {"VERSION_COMPATIBLE"}
    assert fake.config.profiling_verbosity == "DETAILED"
    assert fake.config.progress_monitor is not None
    assert engine.read_bytes() == b"PLAN-10.3.0"
    assert not list(tmp_path.glob("*.partial"))
    on_disk = load_manifest(engine)
    assert on_disk == json.loads(json.dumps(manifest))
    assert on_disk["tensorrt_version"] == "10.3.0" and on_disk["version_compatible"] is True
    assert on_disk["gpu"] == {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    assert on_disk["precision"] == "fp32"
    assert on_disk["profile"]["shapes"]["max"] == [1, 3, 1088, 1920]
    assert on_disk["build_options"]["workspace_mib"] == 512
    assert on_disk["rebuild"].startswith(f"nedr build {onnx_file} -o {engine} --min 256x256")
    err = capsys.readouterr().err
    assert "build: Building engine (3 steps)" in err and "build: Building engine done" in err


def test_build_engine_11x_has_no_strongly_typed_flag(monkeypatch, onnx_file, tmp_path):
    fake = _install(monkeypatch, FakeTRT("11.4.1", flag_enum=False))  # flag absent from 11.x bindings is fine
    fp16 = save(fp16_model(), tmp_path / "m16.onnx")
    build_engine(fp16, tmp_path / "m16.engine", profile=make_profile("256x256", "512x512", "1024x1024"), gpu=GPU)
    assert fake.called("create_network") == [("create_network", ())]
    assert fake.called("set_memory_pool_limit") == []  # no --workspace: TensorRT's default
    assert fake.called("create_timing_cache") == [("create_timing_cache", b"")]  # in-memory cache only
    assert not hasattr(fake.config, "builder_optimization_level")
    assert fake.config.flags == set()
    assert load_manifest(tmp_path / "m16.engine")["precision"] == "fp16"


def test_build_engine_static_onnx_needs_matching_static_profile(monkeypatch, tmp_path):
    fake = _install(monkeypatch, FakeTRT("10.16.1"))
    onnx_path = save(conv_model(static=(256, 320)), tmp_path / "s.onnx")
    with pytest.raises(EngineBuildError, match="static 256x320; build it with --static 256x320"):
        build_engine(onnx_path, tmp_path / "s.engine", profile=make_profile(), gpu=GPU)
    build_engine(onnx_path, tmp_path / "s.engine", profile=static_profile("256x320"), gpu=GPU)
    assert fake.called("set_shape") == []  # nothing dynamic to profile


def test_build_engine_dla(monkeypatch, tmp_path, capsys):
    onnx_path = save(fp16_model(static=(256, 256)), tmp_path / "d.onnx")
    fake = _install(monkeypatch, FakeTRT("10.3.0", dla_cores=2, dla_capable=lambda name: not name.startswith("Cast")))
    manifest = build_engine(onnx_path, tmp_path / "d.engine", profile=static_profile("256x256"), dla_core=1, gpu=GPU)
    assert fake.config.default_device_type == "DLA" and fake.config.DLA_core == 1
    assert "GPU_FALLBACK" in fake.config.flags
    assert manifest["dla"] == {"core": 1, "cores_on_device": 2, "dla_layers": 1,
                               "gpu_fallback_layers": ["Cast_0", "Cast_2"]}
    assert "fall back to the GPU: Cast_0, Cast_2" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs,version,cores,match", [
    ({"profile": make_profile(), "dla_core": 0}, "10.3.0", 2, "DLA needs static shapes: add --static HxW"),
    ({"profile": static_profile("256x256"), "dla_core": 0}, "10.3.0", 0, "this device has no DLA"),
    ({"profile": static_profile("256x256"), "dla_core": 2}, "10.3.0", 2, "has 2 DLA core"),
    ({"profile": static_profile("256x256"), "dla_core": 0}, "11.2.0", 2, "no DLA support .*11.4.1"),
])
def test_build_engine_dla_errors(monkeypatch, tmp_path, kwargs, version, cores, match):
    onnx_path = save(fp16_model(), tmp_path / "d.onnx")
    _install(monkeypatch, FakeTRT(version, dla_cores=cores))
    with pytest.raises(EngineBuildError, match=match):
        build_engine(onnx_path, tmp_path / "d.engine", gpu=GPU, **kwargs)
    assert not (tmp_path / "d.engine").exists()


def test_build_engine_reports_parser_and_builder_errors(monkeypatch, onnx_file, tmp_path):
    _install(monkeypatch, FakeTRT(parse_ok=False))
    with pytest.raises(EngineBuildError, match=r"parser rejected tiny.onnx: In node 3 \(Conv\): unsupported thing 0 "
                                               r"\(\+1 more\)"):
        build_engine(onnx_file, tmp_path / "t.engine", profile=make_profile(), gpu=GPU)
    _install(monkeypatch, FakeTRT(build_ok=False))
    with pytest.raises(EngineBuildError, match=r"could not build t.engine: \[myelin\] out of workspace$"):
        build_engine(onnx_file, tmp_path / "t.engine", profile=make_profile(), gpu=GPU)
    assert not (tmp_path / "t.engine").exists() and not (tmp_path / "t.engine.json").exists()


def test_load_tensorrt_missing_stub_and_old(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    with pytest.raises(TensorRTUnavailable) as err:
        load_tensorrt()
    assert str(err.value).startswith(MISSING_TENSORRT) and "\n" not in str(err.value)
    stub = types.ModuleType("tensorrt")
    stub.__version__ = "10.3.0"
    monkeypatch.setitem(sys.modules, "tensorrt", stub)
    with pytest.raises(TensorRTUnavailable, match="has no bindings"):
        load_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTRT("8.6.1"))
    with pytest.raises(TensorRTUnavailable, match="8.6.1 is too old"):
        load_tensorrt()


ENGINE_INFO_11 = json.dumps({"Layers": [
    {"Name": "conv1", "LayerType": "CaskConvolution", "Outputs": [{"Name": "y", "Format": "kLINEAR", "DataType": "Float"}]},
], "I/O Tensors": [{"Name": "hazy", "IOMode": "Input", "DataType": "Float"}]})


def test_parse_engine_information_both_schemas():
    ten = parse_engine_information(ENGINE_INFO_10)
    assert [(r["name"], r["device"], r["precisions"]) for r in ten] == [
        ("conv1", "GPU", ["fp16"]), ("{ForeignNode[a...b]}", "DLA", ["int8"])]
    assert parse_engine_information(ENGINE_INFO_11)[0]["precisions"] == ["fp32"]
    names_only = parse_engine_information(json.dumps({"Layers": ["a", "b"]}))
    assert [r["name"] for r in names_only] == ["a", "b"]


def test_engine_layers_through_the_inspector(monkeypatch, tmp_path):
    fake = _install(monkeypatch, FakeTRT(engine_json=ENGINE_INFO_10))
    engine = tmp_path / "e.engine"
    engine.write_bytes(b"PLAN")
    layers = engine_layers(engine, version_compatible=True)
    assert len(layers) == 2 and fake.runtime.engine_host_code_allowed is True


@pytest.mark.tensorrt
def test_real_tensorrt_build(tmp_path):
    try:
        trt = load_tensorrt()
    except TensorRTUnavailable as exc:
        pytest.skip(f"TensorRT not usable here: {exc}")
    from nedr.export.tensorrt_build import gpu_identity
    try:
        gpu = gpu_identity()
    except EngineBuildError as exc:
        pytest.skip(f"no GPU visible: {exc}")
    onnx_path = save(conv_model(), tmp_path / "tiny.onnx")
    engine = tmp_path / "tiny.engine"
    cache = tmp_path / "tiny.cache"
    manifest = build_engine(onnx_path, engine, profile=make_profile("128x128", "256x256", "256x256"),
                            workspace_bytes=256 << 20, timing_cache=cache, opt_level=0, gpu=gpu)
    assert engine.stat().st_size > 0 and cache.stat().st_size > 0
    assert manifest["tensorrt_version"] == trt.__version__ and manifest["precision"] == "fp32"
    assert load_manifest(engine)["gpu"]["name"] == gpu[0]
    layers = engine_layers(engine)
    assert layers and all(r["device"] == "GPU" for r in layers)
