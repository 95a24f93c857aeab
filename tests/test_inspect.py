"""`nedr inspect`: ONNX precision, engine manifests with and without (a fake) TensorRT, errors."""
from __future__ import annotations

import sys


from nedr.export.profiles import make_profile
from nedr.export.tensorrt_build import build_engine

from build_helpers import ENGINE_INFO_10, FakeTRT, _install, _nedr
from tiny_onnx import conv_model, fp16_model, qdq_model, save


def test_inspect_onnx_reports_precision(tmp_path, capsys):
    for model, expected in ((conv_model(), "precision: fp32"), (fp16_model(), "precision: fp16"),
                            (qdq_model(), "precision: int8-qdq  (Q/DQ 4; quantised as int8")):
        path = save(model, tmp_path / "m.onnx")
        code, out, err = _nedr(["inspect", str(path)], capsys)
        assert code == 0, err
        assert expected in out and "inputs:  hazy float32 batch×3×height×width" in out


def test_inspect_engine_without_tensorrt(no_tensorrt, monkeypatch, onnx_file, tmp_path, capsys):
    fake = FakeTRT("10.3.0")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    build_engine(onnx_file, tmp_path / "t.engine", profile=make_profile(), gpu=("Orin", "8.7"))
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    code, out, err = _nedr(["inspect", str(tmp_path / "t.engine")], capsys)
    assert code == 0, err
    assert "tensorrt: 10.3.0" in out and "gpu: Orin  (compute capability 8.7)" in out
    assert "precision: fp32" in out and "rebuild: nedr build" in out
    assert "layer listing and compatibility check need TensorRT (TensorRT Python bindings not installed" in out


def test_inspect_engine_with_fake_tensorrt(monkeypatch, onnx_file, tmp_path, capsys):
    fake = _install(monkeypatch, FakeTRT("10.3.0", engine_json=ENGINE_INFO_10))
    monkeypatch.setattr("nedr.export.tensorrt_build.gpu_identity", lambda device=0: ("Orin", "8.7"))
    build_engine(onnx_file, tmp_path / "t.engine", profile=make_profile(), gpu=("Orin", "8.7"))
    code, out, _ = _nedr(["inspect", str(tmp_path / "t.engine")], capsys)
    assert code == 0 and "here: compatible" in out and "layers: 2" in out and "by device: DLA 1, GPU 1" in out
    fake.__version__ = "10.4.0"
    code, out, _ = _nedr(["inspect", str(tmp_path / "t.engine")], capsys)
    assert code == 0 and "here: cannot load" in out and "rebuild it on this machine: nedr build" in out


def test_inspect_errors(tmp_path, capsys):
    code, _, err = _nedr(["inspect", str(tmp_path / "nope.onnx")], capsys)
    assert code == 2 and "no such file" in err
    (tmp_path / "x.engine").write_bytes(b"plan")
    code, _, err = _nedr(["inspect", str(tmp_path / "x.engine")], capsys)
    assert code == 2 and "no manifest x.engine.json" in err and err.count("\n") == 1
    (tmp_path / "notes.txt").write_text("hi")
    code, _, err = _nedr(["inspect", str(tmp_path / "notes.txt")], capsys)
    assert code == 2 and "give a .onnx file or a TensorRT engine" in err
