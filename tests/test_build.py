"""`nedr build` / `nedr inspect`: profiles, TensorRT lanes, the build shell (against a fake TensorRT),
argument errors and the one-line failure without TensorRT. One test builds a real engine when
TensorRT and a GPU are present (marked `tensorrt`)."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import types

import pytest

from nedr.contract import padded_hw
from nedr.errors import UserError
from nedr.export.engine_manifest import load_manifest
from nedr.export.profiles import (DEFAULT_MAX, DEFAULT_MIN, DEFAULT_OPT, Profile, ProfileError, fits, make_profile,
                                  parse_hw, require_fit, static_profile)
from nedr.export.tensorrt_build import (MISSING_TENSORRT, EngineBuildError, TensorRTUnavailable, build_engine,
                                        engine_layers, lane_for, load_tensorrt, parse_engine_information, trt_lane)

from tiny_onnx import conv_model, fp16_model, qdq_model, save



# ============================================================================ profiles

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


# ============================================================================ lanes

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


# ============================================================================ a fake TensorRT

class FakeTRT(types.ModuleType):
    """Records what the build shell asks of TensorRT; shaped like the 10.x/11.x Python API."""

    def __init__(self, version="10.3.0", dla_cores=0, build_ok=True, parse_ok=True, dla_capable=None,
                 flag_enum=True, engine_json=None):
        super().__init__("tensorrt")
        self.__version__ = version
        self.__file__ = "<fake tensorrt>"
        self.calls: list[tuple] = []
        fake = self
        self.dla_capable = dla_capable or (lambda name: True)

        if flag_enum:
            self.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0)
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
        self.BuilderFlag = types.SimpleNamespace(VERSION_COMPATIBLE="VERSION_COMPATIBLE", GPU_FALLBACK="GPU_FALLBACK")
        self.DeviceType = types.SimpleNamespace(GPU="GPU", DLA="DLA")
        self.ProfilingVerbosity = types.SimpleNamespace(DETAILED="DETAILED")
        self.LayerInformationFormat = types.SimpleNamespace(JSON="JSON")

        class ILogger:
            Severity = types.SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

            def __init__(self):
                pass

        class IProgressMonitor:
            def __init__(self):
                pass

        class Tensor:
            def __init__(self, name, shape):
                self.name, self.shape = name, shape

        class Layer:
            def __init__(self, name):
                self.name = name

        class Network:
            def __init__(self, flags):
                self.flags = flags
                self.inputs = []
                self.layers = []

            @property
            def num_inputs(self):
                return len(self.inputs)

            def get_input(self, i):
                return self.inputs[i]

            @property
            def num_layers(self):
                return len(self.layers)

            def get_layer(self, i):
                return self.layers[i]

        class OnnxParser:
            def __init__(self, network, logger):
                self.network = network
                self.num_errors = 0 if parse_ok else 2

            def parse_from_file(self, path):
                fake.calls.append(("parse_from_file", path))
                if not parse_ok:
                    return False
                import onnx
                model = onnx.load(path)
                for value in model.graph.input:
                    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
                    self.network.inputs.append(Tensor(value.name, tuple(dims)))
                self.network.layers = [Layer(n.name or f"{n.op_type}_{i}") for i, n in enumerate(model.graph.node)]
                return True

            def get_error(self, i):
                return f"In node 3 (Conv): unsupported thing {i}"

        class Profile:
            def set_shape(self, name, mn, opt, mx):
                fake.calls.append(("set_shape", name, tuple(mn), tuple(opt), tuple(mx)))

        class TimingCache:
            def __init__(self, blob):
                self.blob = bytes(blob)

            def serialize(self):
                return b"CACHE:" + self.blob

        class Config:
            def __init__(self):
                self.flags = set()
                self.progress_monitor = None
                self.cache = None

            def set_memory_pool_limit(self, pool, size):
                fake.calls.append(("set_memory_pool_limit", pool, size))

            def add_optimization_profile(self, profile):
                fake.calls.append(("add_optimization_profile",))

            def create_timing_cache(self, blob):
                fake.calls.append(("create_timing_cache", bytes(blob)))
                return TimingCache(blob)

            def set_timing_cache(self, cache, ignore_mismatch):
                self.cache = cache
                return True

            def get_timing_cache(self):
                return self.cache

            def set_flag(self, flag):
                self.flags.add(flag)

            def can_run_on_DLA(self, layer):
                return fake.dla_capable(layer.name)

        class Builder:
            def __init__(self, logger):
                self.logger = logger
                self.num_DLA_cores = dla_cores

            def create_network(self, *args):
                fake.calls.append(("create_network", args))
                return Network(args)

            def create_builder_config(self):
                fake.config = Config()
                return fake.config

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                fake.calls.append(("build_serialized_network",))
                mon = config.progress_monitor
                if mon is not None:
                    mon.phase_start("Building engine", None, 3)
                    for step in range(3):
                        assert mon.step_complete("Building engine", step) is True
                    mon.phase_finish("Building engine")
                if not build_ok:
                    self.logger.log(ILogger.Severity.ERROR, "[myelin] out of workspace\nmore detail")
                    return None
                return bytearray(b"PLAN-" + fake.__version__.encode())

        class Engine:
            def create_engine_inspector(self):
                return types.SimpleNamespace(get_engine_information=lambda fmt: engine_json)

        class Runtime:
            def __init__(self, logger):
                self.engine_host_code_allowed = False
                fake.runtime = self

            def deserialize_cuda_engine(self, blob):
                return Engine()

        self.ILogger, self.IProgressMonitor, self.OnnxParser = ILogger, IProgressMonitor, OnnxParser
        self.Builder, self.Runtime = Builder, Runtime

    def called(self, name):
        return [c for c in self.calls if c[0] == name]


@pytest.fixture
def onnx_file(tmp_path):
    return save(conv_model(), tmp_path / "tiny.onnx")


def _install(monkeypatch, fake):
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    return fake


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


ENGINE_INFO_10 = json.dumps({"Layers": [
    {"Name": "conv1", "LayerType": "CaskConvolution",
     "Outputs": [{"Name": "y", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
     "TacticName": "sm80_xmma"},
    {"Name": "{ForeignNode[a...b]}", "LayerType": "DLA", "Outputs": [{"Name": "z", "Format/Datatype": "Int8 NC/32HW32"}]},
], "Bindings": ["hazy", "clean"]})
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


# ============================================================================ the CLI, without TensorRT

def _parser():
    """`nedr` with the two subcommands (registered here until nedr/commands/__init__.py lists them)."""
    from nedr.commands import build, inspect

    parser = argparse.ArgumentParser(prog="nedr")
    sub = parser.add_subparsers(dest="command", required=True)
    build.configure(sub.add_parser("build", help=build.HELP))
    inspect.configure(sub.add_parser("inspect", help=inspect.HELP))
    return parser


def _nedr(argv, capsys):
    from nedr.cli import _run

    code = _run(_parser(), argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def test_build_without_tensorrt_fails_in_one_line(no_tensorrt, onnx_file, tmp_path, capsys):
    code, out, err = _nedr(["build", str(onnx_file), "-o", str(tmp_path / "x.engine")], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("nedr: error: TensorRT Python bindings not installed: "
                                                   "pip install tensorrt-cu12 (x86) or use JetPack's python3-libnvinfer")
    assert not (tmp_path / "x.engine").exists()


@pytest.mark.skipif(__import__("importlib").util.find_spec("tensorrt") is not None,
                    reason="TensorRT is installed: the subprocess would really build")
def _build_in_subprocess(onnx_file, cwd, prelude: str = "") -> subprocess.CompletedProcess:
    """`nedr build ONNX` in a fresh interpreter, after `prelude` (e.g. blocking imports)."""
    code = prelude + "import sys\nfrom nedr.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, "build", str(onnx_file)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


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


# ============================================================================ nedr inspect

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


# ============================================================================ a real engine, where TensorRT is

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
