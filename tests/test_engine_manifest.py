"""Engine manifest: precision read from the ONNX, round trip, mismatch detection, the version rule."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from nedr.errors import UserError
from nedr.export.engine_manifest import (BuildOptions, EngineMismatchError, ManifestError, check_manifest,
                                         detect_precision, format_manifest, load_manifest, make_manifest,
                                         manifest_path, normalise_compute_capability, onnx_precision,
                                         parse_version, rebuild_command, require_compatible, runtime_accepts,
                                         write_manifest)
from nedr.export.metadata import file_sha256

from tiny_onnx import conv_model, fp16_model, qdq_model, save


# ----------------------------------------------------------------------------- precision from the graph

def test_precision_fp32_conv_graph():
    info = onnx_precision(conv_model())
    assert info["precision"] == "fp32"
    assert info["qdq_nodes"] == 0 and info["fp16_casts"] == 0 and info["fp16_initializers"] == 0


def test_precision_fp16_graph(tmp_path):
    path = save(fp16_model(), tmp_path / "m16.onnx")  # from a file too
    info = onnx_precision(path)
    assert info["precision"] == "fp16"
    assert info["fp16_casts"] == 1 and info["fp16_initializers"] == 2


def test_precision_fp16_from_constant_node_only():
    model = conv_model()
    const = onnx.helper.make_node("Constant", [], ["half"], value=onnx.helper.make_tensor(
        "half", onnx.TensorProto.FLOAT16, [1], [1.0]))
    model.graph.node.insert(0, const)
    assert detect_precision(model) == "fp16"


def test_precision_int8_qdq_graph():
    info = onnx_precision(qdq_model())
    assert info["precision"] == "int8-qdq"
    assert info["qdq_nodes"] == 4 and info["quant_types"] == ["int8"]


def test_precision_uint8_qdq_is_still_int8_qdq_and_says_uint8():
    info = onnx_precision(qdq_model(zero_point_type=onnx.TensorProto.UINT8))
    assert info["precision"] == "int8-qdq"
    assert info["quant_types"] == ["int8", "uint8"]  # uint8 activations (ORT target), int8 weights


def test_precision_reports_metadata_claim():
    model = fp16_model()
    onnx.helper.set_model_props(model, {"nedr.options": json.dumps({"precision": "fp16"})})
    assert onnx_precision(model)["metadata_precision"] == "fp16"


# ----------------------------------------------------------------------------- versions

@pytest.mark.parametrize("text,expected", [
    ("10.3.0", (10, 3, 0)), ("10.16.1.11", (10, 16, 1, 11)), ("11.4", (11, 4, 0)), ("10.13.0.post12", (10, 13, 0)),
])
def test_parse_version(text, expected):
    assert parse_version(text) == expected


@pytest.mark.parametrize("cc", [(8, 7), "8.7", "sm_87", "87", 8.7])
def test_compute_capability_forms(cc):
    assert normalise_compute_capability(cc) == "8.7"


@pytest.mark.parametrize("built,running,vc,ok", [
    ("10.3.0", "10.3.0", False, True),
    ("10.3.0.30", "10.3.0.26", False, True),   # build number differs: same release
    ("10.3.0", "10.3.1", False, False),        # patch differs: refused without version compatibility
    ("10.3.0", "10.13.0", False, False),
    ("10.3.0", "10.13.0", True, True),         # version-compatible: later 10.x
    ("10.13.0", "10.3.0", True, False),        # never an older runtime
    ("10.16.0", "11.4.1", True, True),         # 10 → 11 is the documented cross-major pair
    ("10.16.0", "11.4.1", False, False),
    ("11.4.1", "12.0.0", True, False),
    ("11.1.0", "11.4.1", True, True),
])
def test_version_rule(built, running, vc, ok):
    assert runtime_accepts(built, running, vc)[0] is ok


# ----------------------------------------------------------------------------- manifest round trip and checks

def _options(**kw) -> BuildOptions:
    base = dict(onnx="nedr fp16.onnx", output="out/nedr.engine", min="256x256", opt="736x1280", max="1088x1920")
    base.update(kw)
    return BuildOptions(**base)


def _manifest(engine: Path, *, trt="10.3.0", gpu="Orin", cc="8.7", vc=False, **opt_kw) -> dict:
    return make_manifest(engine_path=engine, tensorrt_version=trt, gpu_name=gpu, compute_capability=cc,
                         precision={"precision": "fp16", "qdq_nodes": 0, "fp16_casts": 3},
                         profile={"input": "hazy", "min": "256x256", "opt": "736x1280", "max": "1088x1920"},
                         onnx_path="nedr fp16.onnx", onnx_sha256="ab" * 32,
                         options=_options(version_compatible=vc, **opt_kw),
                         engine_sha256=file_sha256(engine) if engine.exists() else None,
                         engine_bytes=engine.stat().st_size if engine.exists() else None, build_seconds=12.34)


def test_manifest_round_trip(tmp_path):
    engine = tmp_path / "nedr.engine"
    engine.write_bytes(b"plan")
    m = _manifest(engine, workspace_mib=2048, timing_cache="cache.bin", opt_level=4)
    path = write_manifest(m, engine)
    assert path == manifest_path(engine) == tmp_path / "nedr.engine.json"
    assert not list(tmp_path.glob("*.partial"))
    loaded = load_manifest(engine)
    assert loaded == json.loads(json.dumps(m))
    assert load_manifest(path) == loaded  # the .json path itself works too
    for key in ("tensorrt_version", "gpu", "precision", "profile", "onnx", "build_options", "nedr_version",
                "built_at", "engine_sha256"):
        assert key in loaded
    assert loaded["gpu"] == {"name": "Orin", "compute_capability": "8.7"}
    assert loaded["build_seconds"] == 12.3
    text = format_manifest(loaded)
    assert "tensorrt: 10.3.0" in text and "rebuild: nedr build" in text
    assert "fp16" in text and "Orin" in text and "min 256x256, opt 736x1280, max 1088x1920" in text


def test_check_manifest_matches_same_machine(tmp_path):
    m = _manifest(tmp_path / "e.engine")
    assert check_manifest(m, "10.3.0", "Orin", (8, 7)) == []
    assert check_manifest(m, "10.3.0.30", " orin ", "8.7") == []  # build number and spelling of the name


def test_check_manifest_detects_each_mismatch(tmp_path):
    m = _manifest(tmp_path / "e.engine")
    fields = {p.field for p in check_manifest(m, "10.13.0", "NVIDIA Thor", "11.0")}
    assert fields == {"tensorrt_version", "gpu", "compute_capability"}
    only_trt = check_manifest(m, "10.3.1", "Orin", "8.7")
    assert [p.field for p in only_trt] == ["tensorrt_version"]
    assert "exact TensorRT version" in str(only_trt[0])
    only_cc = check_manifest(m, "10.3.0", "Orin", "8.6")
    assert [p.field for p in only_cc] == ["compute_capability"]
    only_gpu = check_manifest(m, "10.3.0", "NVIDIA A100", "8.7")
    assert [p.field for p in only_gpu] == ["gpu"]


def test_check_manifest_compares_jetson_boards_when_known(tmp_path):
    m = make_manifest(engine_path=tmp_path / "e.engine", tensorrt_version="10.3.0", gpu_name="Orin",
                      compute_capability="8.7", precision={"precision": "fp16"},
                      profile={"min": "256x256", "opt": "256x256", "max": "256x256"}, onnx_path="m.onnx",
                      onnx_sha256="0", options=_options(), board="NVIDIA Jetson AGX Orin Developer Kit")
    assert m["gpu"]["board"] == "NVIDIA Jetson AGX Orin Developer Kit"
    assert "board NVIDIA Jetson AGX Orin" in format_manifest(m)
    assert check_manifest(m, "10.3.0", "Orin", "8.7") == []  # caller without a board: not compared
    assert check_manifest(m, "10.3.0", "Orin", "8.7", board="NVIDIA Jetson AGX Orin Developer Kit") == []
    nano = check_manifest(m, "10.3.0", "Orin", "8.7", board="NVIDIA Jetson Orin Nano Developer Kit")
    assert [p.field for p in nano] == ["board"]


def test_check_manifest_version_compatible_engine(tmp_path):
    m = _manifest(tmp_path / "e.engine", vc=True)
    assert check_manifest(m, "10.13.0", "Orin", "8.7") == []
    assert check_manifest(m, "11.4.1", "Orin", "8.7") == []
    assert [p.field for p in check_manifest(m, "10.2.0", "Orin", "8.7")] == ["tensorrt_version"]


def test_rebuild_command_reconstructs_every_option(tmp_path):
    m = _manifest(tmp_path / "e.engine", workspace_mib=1024, timing_cache="t cache.bin", opt_level=5, vc=True)
    cmd = rebuild_command(m)
    assert cmd == ("nedr build 'nedr fp16.onnx' -o out/nedr.engine --min 256x256 --opt 736x1280 --max 1088x1920 "
                   "--workspace 1024 --timing-cache 't cache.bin' --opt-level 5 --version-compatible")
    static = BuildOptions(onnx="m.onnx", output="m.engine", static="512x512", dla_core=1).command()
    assert static == "nedr build m.onnx -o m.engine --static 512x512 --dla-core 1"


def test_require_compatible_refuses_with_rebuild_command(tmp_path):
    engine = tmp_path / "nedr.engine"
    engine.write_bytes(b"plan")
    write_manifest(_manifest(engine, opt_level=3), engine)
    assert require_compatible(engine, tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="8.7")
    with pytest.raises(EngineMismatchError) as err:
        require_compatible(engine, tensorrt_version="10.16.1", gpu_name="Orin", compute_capability="8.7")
    msg = str(err.value)
    assert "\n" not in msg and isinstance(err.value, UserError)
    assert "10.3.0" in msg and "10.16.1" in msg and "rebuild" in msg
    assert msg.endswith("nedr build 'nedr fp16.onnx' -o out/nedr.engine --min 256x256 --opt 736x1280 "
                        "--max 1088x1920 --opt-level 3")


def test_require_compatible_notices_a_replaced_engine_file(tmp_path):
    engine = tmp_path / "nedr.engine"
    engine.write_bytes(b"plan")
    write_manifest(_manifest(engine), engine)
    engine.write_bytes(b"another plan")
    with pytest.raises(EngineMismatchError, match="not the one this manifest describes"):
        require_compatible(engine, tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="8.7")


def test_missing_or_broken_manifest(tmp_path):
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(ManifestError, match="no manifest x.engine.json .*nedr build MODEL.onnx -o"):
        load_manifest(engine)
    manifest_path(engine).write_text("{not json")
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifest(engine)
    manifest_path(engine).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ManifestError, match="not a nedr engine manifest"):
        load_manifest(engine)


def test_make_manifest_rejects_unknown_precision(tmp_path):
    with pytest.raises(ValueError):
        make_manifest(engine_path=tmp_path / "e", tensorrt_version="10.3", gpu_name="g", compute_capability="8.7",
                      precision={"precision": "int4"}, profile={"min": "a", "opt": "b", "max": "c"},
                      onnx_path="m.onnx", onnx_sha256="0", options=_options())


def test_build_modules_import_without_torch_or_tensorrt():
    """The runtime on a Jetson has no torch, and CI has no TensorRT: the manifest, the profiles, the
    TensorRT shell and both commands must import without either (and without onnx until needed)."""
    code = ("import sys\n"
            "import nedr.export.profiles, nedr.export.engine_manifest, nedr.export.tensorrt_build\n"
            "import nedr.commands.build, nedr.commands.inspect\n"
            "bad = [m for m in ('torch', 'tensorrt', 'onnx') if m in sys.modules]\n"
            "assert not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
