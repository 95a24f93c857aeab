"""`nedr build`: argument and file errors, the one-line failure without TensorRT (in process and in
a fresh interpreter), and the CLI wired to the build shell against a fake TensorRT."""
from __future__ import annotations

import subprocess
import sys

import pytest

from nedr.export.engine_manifest import load_manifest

from build_helpers import FakeTRT, _install, _nedr
from tiny_onnx import conv_model, save


def test_build_without_tensorrt_fails_in_one_line(no_tensorrt, onnx_file, tmp_path, capsys):
    code, out, err = _nedr(["build", str(onnx_file), "-o", str(tmp_path / "x.engine")], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("nedr: error: TensorRT Python bindings not installed: "
                                                   "pip install tensorrt-cu12 (x86) or use JetPack's python3-libnvinfer")
    assert not (tmp_path / "x.engine").exists()


def _build_in_subprocess(onnx_file, cwd, prelude: str = "") -> subprocess.CompletedProcess:
    """`nedr build ONNX` in a fresh interpreter, after `prelude` (e.g. blocking imports)."""
    code = prelude + "import sys\nfrom nedr.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, "build", str(onnx_file)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


@pytest.mark.skipif(__import__("importlib").util.find_spec("tensorrt") is not None,
                    reason="TensorRT is installed: the subprocess would really build")
def test_build_without_tensorrt_subprocess(onnx_file, tmp_path):
    out = _build_in_subprocess(onnx_file, tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "TensorRT Python bindings not installed" in out.stderr


def test_build_without_torch_or_tensorrt_subprocess(onnx_file, tmp_path):
    out = _build_in_subprocess(onnx_file, tmp_path, "import sys\nsys.modules['torch'] = None; sys.modules['tensorrt'] = None\n")
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr[-500:]
    assert "TensorRT Python bindings not installed" in out.stderr


@pytest.mark.parametrize("extra,match", [
    (["--min", "300x300"], r"--min 300x300: height and width must be multiples of 32 \(try 320x320\)"),
    (["--min", "1088x1920", "--max", "512x512"], "min 1088 > max 512"),
    (["--opt", "720"], "--opt '720' is not HxW"),
    (["--static", "512x512", "--min", "256x256"], "either --static or --min/--opt/--max"),
    (["--dla-core", "0"], "DLA needs static shapes: add --static HxW"),
    (["--dla-core", "0", "--static", "256x256"], "is FP32 and DLA runs only FP16/INT8"),
    (["--workspace", "0"], "--workspace 0: give a size in MiB > 0"),
])
def test_argument_errors_reported_without_tensorrt(no_tensorrt, onnx_file, capsys, extra, match):
    code, out, err = _nedr(["build", str(onnx_file), *extra], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert __import__("re").search(match, err), err
    assert "TensorRT" not in err


def test_file_errors_reported_without_tensorrt(no_tensorrt, tmp_path, capsys):
    code, _, err = _nedr(["build", str(tmp_path / "missing.onnx")], capsys)
    assert code == 2 and "missing.onnx: no such file" in err
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a protobuf at all\xff" * 10)
    code, _, err = _nedr(["build", str(junk)], capsys)
    assert code == 2 and "not a readable ONNX file" in err and err.count("\n") == 1
    other = save(conv_model(input_name="image"), tmp_path / "other.onnx")
    code, _, err = _nedr(["build", str(other)], capsys)
    assert code == 2 and "has no input 'hazy' (inputs: image)" in err
    code, _, err = _nedr(["build", str(other), "-o", str(tmp_path / "nodir" / "x.engine")], capsys)
    assert code == 2  # the first problem wins: the input name
    static = save(conv_model(static=(256, 320)), tmp_path / "static.onnx")
    code, _, err = _nedr(["build", str(static), "--max", "512x512"], capsys)
    assert code == 2 and "static input hazy 256x320: build it with --static 256x320" in err
    good = save(conv_model(), tmp_path / "good.onnx")
    code, _, err = _nedr(["build", str(good), "-o", str(tmp_path / "nodir" / "x.engine")], capsys)
    assert code == 2 and "directory" in err and "does not exist" in err


def test_opt_level_range_checked_by_argparse(onnx_file, capsys):
    with pytest.raises(SystemExit) as exc:
        _nedr(["build", str(onnx_file), "--opt-level", "9"], capsys)
    assert exc.value.code == 2


def test_cli_build_with_fake_tensorrt(monkeypatch, onnx_file, tmp_path, capsys):
    """The CLI wires arguments to build_engine: default output name, MiB → bytes, the rebuild command."""
    fake = _install(monkeypatch, FakeTRT("10.16.1"))
    monkeypatch.setattr("nedr.export.tensorrt_build.gpu_identity", lambda device=0: ("Orin", "8.7"))
    code, out, err = _nedr(["build", str(onnx_file), "--opt", "512x512", "--workspace", "64", "--opt-level", "2"],
                           capsys)
    assert code == 0, err
    engine = onnx_file.with_suffix(".engine")
    assert f"wrote {engine}" in out and "TensorRT 10.16.1 on Orin (compute 8.7)" in out
    assert fake.called("set_memory_pool_limit") == [("set_memory_pool_limit", "WORKSPACE", 64 << 20)]
    m = load_manifest(engine)
    assert m["rebuild"] == (f"nedr build {onnx_file} -o {engine} --min 256x256 --opt 512x512 --max 1088x1920 "
                            "--workspace 64 --opt-level 2")
