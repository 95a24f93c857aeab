"""`nedr export --triton`: the Triton model repository (nedr.export.triton) and its CLI.

Configs are parsed with Triton's own ModelConfig protobuf (tritonclient); those tests skip with
the install command when it is absent. Repository tests use the tiny hand-built ONNX
(tests/tiny_onnx.py); one slow test goes through the real export of the demo weights.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).parent))
from tiny_onnx import conv_model, save  # noqa: E402

from nedr.cli import main  # noqa: E402
from nedr.errors import UserError  # noqa: E402
from nedr.export import triton  # noqa: E402
from nedr.export.triton import TensorSpec, TritonError, triton_config, validate_config, write_repository  # noqa: E402

try:
    from tritonclient.grpc import model_config_pb2 as pb2
except ImportError:  # pragma: no cover - depends on the environment
    pb2 = None
needs_tritonclient = pytest.mark.skipif(
    pb2 is None, reason="tritonclient not installed: pip install 'tritonclient[grpc]' to check configs with "
                        "Triton's ModelConfig protobuf")

SIZES = [(128, 128), (160, 224)]


def parse(text: str):
    from google.protobuf import text_format

    return text_format.Parse(text, pb2.ModelConfig())


def two_output_model() -> onnx.ModelProto:
    """conv_model plus a `transmission` output (N×1×H×W), as `--with-transmission` exports."""
    base = conv_model()
    graph = base.graph
    graph.node.append(helper.make_node("ReduceMean", ["clean"], ["transmission"], axes=[1], keepdims=1))
    graph.output.append(helper.make_tensor_value_info("transmission", TensorProto.FLOAT,
                                                      ["batch", 1, "height", "width"]))
    onnx.checker.check_model(base)
    return base


@pytest.fixture
def tiny(tmp_path) -> Path:
    return save(conv_model(), tmp_path / "tiny.onnx")


def leftovers(*folders: Path) -> list[str]:
    return [p.name for f in folders if f.exists() for p in f.iterdir() if "partial" in p.name or ".old-" in p.name]


def run_ort(model_path: Path, batch: int = 2) -> dict[tuple[int, int], dict[str, np.ndarray]]:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    out = {}
    for h, w in SIZES:
        x = np.random.default_rng(0).random((batch, 3, h, w), dtype=np.float32)
        out[(h, w)] = dict(zip(names, session.run(None, {"hazy": x})))
    return out


# --------------------------------------------------------------------------- config text

@needs_tritonclient
def test_config_fields_parse_as_model_config():
    config = validate_config(triton_config())
    assert config == parse(triton_config())
    assert config.name == "nedr" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 8
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [("hazy", pb2.TYPE_FP32, [3, -1, -1])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("clean", [3, -1, -1])]
    assert config.HasField("dynamic_batching") and config.dynamic_batching.max_queue_delay_microseconds == 100
    assert [(g.kind, g.count) for g in config.instance_group] == [(pb2.ModelInstanceGroup.KIND_GPU, 1)]
    assert not config.HasField("optimization")


@needs_tritonclient
def test_tensorrt_accelerator_block():
    text = triton_config(tensorrt="fp16", tensorrt_params=triton.trt_profile_shapes("hazy", 8))
    assert 'gpu_execution_accelerator: [' in text
    accel = validate_config(text).optimization.execution_accelerators
    assert not accel.cpu_execution_accelerator
    (trt,) = accel.gpu_execution_accelerator
    assert trt.name == "tensorrt"
    assert dict(trt.parameters) == {
        "precision_mode": "FP16", "trt_engine_cache_enable": "1",
        "trt_profile_min_shapes": "hazy:1x3x128x128", "trt_profile_opt_shapes": "hazy:1x3x736x1280",
        "trt_profile_max_shapes": "hazy:8x3x1088x1920"}


@needs_tritonclient
def test_no_batching_keeps_batch_dim_and_drops_dynamic_batching():
    config = validate_config(triton_config(max_batch_size=0, instance="cpu", queue_delay_us=500))
    assert config.max_batch_size == 0
    assert list(config.input[0].dims) == [-1, 3, -1, -1] and list(config.output[0].dims) == [-1, 3, -1, -1]
    assert not config.HasField("dynamic_batching")
    assert config.instance_group[0].kind == pb2.ModelInstanceGroup.KIND_CPU


def test_config_argument_errors():
    with pytest.raises(TritonError, match="needs GPU instances"):
        triton_config(instance="cpu", tensorrt="fp16")
    with pytest.raises(TritonError, match="applies to ONNX"):
        triton_config(platform="tensorrt_plan", tensorrt="fp16")
    with pytest.raises(TritonError, match="only on the GPU"):
        triton_config(platform="tensorrt_plan", instance="cpu")
    with pytest.raises(TritonError, match="fixed batch dimension"):
        triton_config(inputs=[TensorSpec("hazy", dims=(1, 3, 128, 128))])
    with pytest.raises(TritonError, match=">= 0"):
        triton_config(max_batch_size=-1)


@needs_tritonclient
def test_validate_config_one_line_errors():
    with pytest.raises(TritonError) as err:
        validate_config(triton_config().replace("max_batch_size", "max_batch"))
    assert "does not parse as Triton's ModelConfig" in str(err.value) and "\n" not in str(err.value)
    bad = triton_config(max_batch_size=0) + "dynamic_batching { max_queue_delay_microseconds: 1 }\n"
    with pytest.raises(TritonError, match="would be rejected by Triton: dynamic_batching needs max_batch_size > 0"):
        validate_config(bad)


def test_missing_tritonclient_says_how_to_install(monkeypatch, tiny, tmp_path):
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)  # makes the import fail
    assert not triton.tritonclient_available()
    with pytest.raises(TritonError, match=r"pip install 'tritonclient\[grpc\]'") as err:
        validate_config(triton_config())
    assert "\n" not in str(err.value)
    with pytest.raises(TritonError, match="pip install"):
        write_repository(tmp_path / "repo", tiny)
    assert not (tmp_path / "repo").exists()
    assert write_repository(tmp_path / "repo", tiny, validate=False).config_path.is_file()


# --------------------------------------------------------------------------- repositories

@needs_tritonclient
def test_onnx_repository_layout_config_and_runs(tiny, tmp_path):
    repo = tmp_path / "repo"
    written = write_repository(repo, tiny)
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*")) == [
        "nedr", "nedr/1", "nedr/1/model.onnx", "nedr/config.pbtxt"]
    assert (repo / "nedr/1/model.onnx").read_bytes() == tiny.read_bytes()
    config = parse((repo / "nedr/config.pbtxt").read_text())
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 8
    assert [t.name for t in config.output] == ["clean"]
    assert written.platform == "onnxruntime_onnx" and written.max_batch_size == 8
    assert leftovers(repo, tmp_path) == []
    for (h, w), outputs in run_ort(repo / "nedr/1/model.onnx").items():
        assert outputs["clean"].shape == (2, 3, h, w) and outputs["clean"].dtype == np.float32


def test_repository_model_runs_in_onnxruntime(tmp_path):
    """Unchecked config (no tritonclient needed): the copied ONNX still runs at two sizes, batch 2."""
    source = save(two_output_model(), tmp_path / "two.onnx")
    written = write_repository(tmp_path / "repo", source, validate=False)
    assert written.model_path == tmp_path / "repo/nedr/1/model.onnx"
    assert 'name: "transmission"' in written.config and "dims: [ 1, -1, -1 ]" in written.config
    for (h, w), outputs in run_ort(written.model_path).items():
        assert outputs["clean"].shape == (2, 3, h, w) and outputs["transmission"].shape == (2, 1, h, w)


@needs_tritonclient
def test_transmission_output_read_from_graph(tmp_path):
    source = save(two_output_model(), tmp_path / "two.onnx")
    write_repository(tmp_path / "repo", source, name="dehaze", max_batch_size=4, tensorrt="fp32")
    config = parse((tmp_path / "repo/dehaze/config.pbtxt").read_text())
    assert config.name == "dehaze" and config.max_batch_size == 4
    assert [(t.name, list(t.dims)) for t in config.output] == [("clean", [3, -1, -1]), ("transmission", [1, -1, -1])]
    params = config.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters
    assert params["precision_mode"] == "FP32" and params["trt_profile_max_shapes"] == "hazy:4x3x1088x1920"
    for (h, w), outputs in run_ort(tmp_path / "repo/dehaze/1/model.onnx").items():
        assert outputs["clean"].shape == (2, 3, h, w) and outputs["transmission"].shape == (2, 1, h, w)


@needs_tritonclient
def test_static_onnx_disables_batching(tmp_path):
    source = save(conv_model(static=(128, 128)), tmp_path / "static.onnx")
    written = write_repository(tmp_path / "repo", source)
    config = parse(written.config)
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [1, 3, 128, 128]
    assert not config.HasField("dynamic_batching") and any("batch dimension is fixed" in n for n in written.notes)
    with pytest.raises(TritonError, match="use --max-batch 0"):
        write_repository(tmp_path / "repo2", source, max_batch_size=4)


def test_int8_accelerator_needs_qdq(tiny, tmp_path):
    with pytest.raises(TritonError, match="no Q/DQ nodes"):
        write_repository(tmp_path / "repo", tiny, tensorrt="int8", validate=False)


@needs_tritonclient
def test_refuses_to_overwrite_unless_force(tiny, tmp_path):
    repo = tmp_path / "repo"
    write_repository(repo, tiny)
    with pytest.raises(TritonError, match="already exists; pass --force"):
        write_repository(repo, tiny, max_batch_size=2)
    assert parse((repo / "nedr/config.pbtxt").read_text()).max_batch_size == 8
    (repo / "nedr/stale.txt").write_text("from the old folder")
    write_repository(repo, tiny, max_batch_size=2, force=True)
    assert parse((repo / "nedr/config.pbtxt").read_text()).max_batch_size == 2
    assert not (repo / "nedr/stale.txt").exists()
    assert leftovers(repo, tmp_path) == []


@needs_tritonclient
def test_interrupted_write_leaves_no_model_folder(tiny, tmp_path, monkeypatch):
    repo = tmp_path / "repo"

    def broken_copy(src, dst, *a, **k):
        Path(dst).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(triton.shutil, "copyfile", broken_copy)
    with pytest.raises(TritonError, match="No space left on device"):
        write_repository(repo, tiny)
    assert not (repo / "nedr").exists() and leftovers(repo, tmp_path) == []
    # an existing folder survives a failed --force replacement
    monkeypatch.undo()
    write_repository(repo, tiny)
    before = (repo / "nedr/config.pbtxt").read_text()
    monkeypatch.setattr(triton.shutil, "copyfile", broken_copy)
    with pytest.raises(TritonError):
        write_repository(repo, tiny, max_batch_size=1, force=True)
    assert (repo / "nedr/config.pbtxt").read_text() == before and leftovers(repo, tmp_path) == []


@needs_tritonclient
def test_invalid_config_writes_nothing(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(triton, "triton_config", lambda **kw: 'name: "nedr" platfrom: "x"\n')
    with pytest.raises(TritonError, match="does not parse"):
        write_repository(tmp_path / "repo", tiny)
    assert not (tmp_path / "repo").exists()


def test_bad_names_and_destinations(tiny, tmp_path):
    for name in ("", "../x", ".hidden", "a/b"):
        with pytest.raises(TritonError, match="model name"):
            write_repository(tmp_path / "repo", tiny, name=name, validate=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(TritonError, match="not a directory"):
        write_repository(tmp_path / "file", tiny, validate=False)
    with pytest.raises(TritonError, match="does not exist"):
        write_repository(tmp_path / "no" / "such" / "repo", tiny, validate=False)


def fake_engine(tmp_path: Path, onnx_path: Path | None, batch: int = 1) -> Path:
    from nedr.export.engine_manifest import BuildOptions, make_manifest, write_manifest
    from nedr.export.metadata import file_sha256

    engine = tmp_path / "nedr.engine"
    engine.write_bytes(b"not really a TensorRT plan")
    manifest = make_manifest(
        engine_path=engine, tensorrt_version="10.3.0", gpu_name="NVIDIA H200", compute_capability="9.0",
        precision={"precision": "fp16"}, profile={"input": "hazy", "min": "256x256", "opt": "736x1280",
                                                  "max": "1088x1920"},
        onnx_path=str(onnx_path or tmp_path / "gone.onnx"),
        onnx_sha256=file_sha256(onnx_path) if onnx_path else "0" * 64,
        options=BuildOptions(onnx=str(onnx_path), output=str(engine)),
        engine_sha256=file_sha256(engine), engine_bytes=engine.stat().st_size)
    manifest["profile"]["shapes"] = {"min": [1, 3, 256, 256], "opt": [1, 3, 736, 1280], "max": [batch, 3, 1088, 1920]}
    write_manifest(manifest, engine)
    return engine


@needs_tritonclient
def test_engine_repository(tmp_path):
    source = save(two_output_model(), tmp_path / "two.onnx")
    engine = fake_engine(tmp_path, source)
    written = write_repository(tmp_path / "repo", engine)
    model = tmp_path / "repo/nedr/1"
    assert sorted(p.name for p in model.iterdir()) == ["model.plan", "model.plan.json"]
    assert (model / "model.plan").read_bytes() == engine.read_bytes()
    assert json.loads((model / "model.plan.json").read_text())["tensorrt_version"] == "10.3.0"
    config = parse((tmp_path / "repo/nedr/config.pbtxt").read_text())
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 1
    assert [t.name for t in config.output] == ["clean", "transmission"]
    assert any("TensorRT is 10.3.0" in n for n in written.notes)
    with pytest.raises(TritonError, match="exceeds the engine's profile"):
        write_repository(tmp_path / "repo2", engine, max_batch_size=8)


@needs_tritonclient
def test_engine_without_its_onnx_uses_the_contract(tmp_path):
    engine = fake_engine(tmp_path, None, batch=4)
    written = write_repository(tmp_path / "repo", engine, with_transmission=True)
    config = parse(written.config)
    assert config.max_batch_size == 4 and [t.name for t in config.output] == ["clean", "transmission"]
    assert any("export contract" in n for n in written.notes)
    engine.write_bytes(b"another plan")
    with pytest.raises(TritonError, match="sha256 differs"):
        write_repository(tmp_path / "repo2", engine)
    os.remove(tmp_path / "nedr.engine.json")
    with pytest.raises(UserError, match="no manifest"):
        write_repository(tmp_path / "repo3", engine)


# --------------------------------------------------------------------------- the CLI

@needs_tritonclient
def test_cli_from_onnx(tiny, tmp_path, capsys):
    repo = tmp_path / "models"
    assert main(["export", "--triton", str(repo), "--from-onnx", str(tiny), "--triton-name", "haze",
                 "--max-batch", "0", "--triton-instance", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "wrote Triton model repository" in out and "tritonserver --model-repository=/models" in out
    config = parse((repo / "haze/config.pbtxt").read_text())
    assert config.max_batch_size == 0 and config.instance_group[0].kind == pb2.ModelInstanceGroup.KIND_CPU
    assert (repo / "haze/1/model.onnx").is_file()
    assert main(["export", "--triton", str(repo), "--from-onnx", str(tiny), "--triton-name", "haze"]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(["export", "--triton", str(repo), "--from-onnx", str(tiny), "--triton-name", "haze", "--force",
                 "--triton-tensorrt", "fp16"]) == 0
    assert parse((repo / "haze/config.pbtxt").read_text()).optimization.execution_accelerators.gpu_execution_accelerator


@needs_tritonclient
def test_cli_from_engine(tmp_path, capsys):
    engine = fake_engine(tmp_path, save(conv_model(), tmp_path / "tiny.onnx"))
    engine = engine.rename(tmp_path / "built.bin")  # --from-engine does not go by the suffix
    (tmp_path / "nedr.engine.json").rename(tmp_path / "built.bin.json")
    manifest = json.loads((tmp_path / "built.bin.json").read_text())
    manifest["engine"] = "built.bin"
    (tmp_path / "built.bin.json").write_text(json.dumps(manifest))
    repo = tmp_path / "models"
    assert main(["export", "--triton", str(repo), "--from-engine", str(engine)]) == 0
    assert "TensorRT is 10.3.0" in capsys.readouterr().out
    assert parse((repo / "nedr/config.pbtxt").read_text()).platform == "tensorrt_plan"
    assert (repo / "nedr/1/model.plan").is_file() and (repo / "nedr/1/model.plan.json").is_file()
    assert main(["export", "--triton", str(repo), "--from-engine", str(engine), "--triton-name", "cpu",
                 "--triton-instance", "cpu"]) == 2
    assert "only on the GPU" in capsys.readouterr().err


def test_cli_without_tritonclient(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)
    repo = tmp_path / "models"
    assert main(["export", "--triton", str(repo), "--from-onnx", str(tiny)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'tritonclient[grpc]'" in err and err.count("\n") == 1
    assert not (repo / "nedr").exists()
    assert main(["export", "--triton", str(repo), "--from-onnx", str(tiny), "--no-verify"]) == 0
    assert "not checked against Triton's ModelConfig" in capsys.readouterr().out
    assert (repo / "nedr/config.pbtxt").is_file()


def test_cli_errors_are_one_line(tiny, tmp_path, capsys):
    cases = [
        (["export", "--from-onnx", str(tiny)], "add --triton REPO"),
        (["export", "--triton", str(tmp_path / "r"), "--from-onnx", str(tiny), "--static", "128x128"],
         "do not apply to --from-onnx"),
        (["export", "--triton", str(tmp_path / "r"), "--from-onnx", str(tiny), "--max-batch", "-1"], ">= 0"),
        (["export", "--triton", str(tmp_path / "r"), "--from-onnx", str(tmp_path / "missing.onnx"), "--no-verify"],
         "no such file"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "r" / "nedr").exists()


@needs_tritonclient
@pytest.mark.slow
def test_cli_exports_demo_weights_to_repository(demo_triton_repo):
    """The real path: demo weights → ONNX (unverified here: test_export covers that) → repository
    (`nedr export --triton REPO --no-verify`, run once per session by conftest.demo_triton_repo)."""
    repo = demo_triton_repo
    config = parse((repo / "nedr/config.pbtxt").read_text())
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 8
    assert [(t.name, list(t.dims)) for t in config.input] == [("hazy", [3, -1, -1])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("clean", [3, -1, -1]), ("transmission", [1, -1, -1])]
    for (h, w), outputs in run_ort(repo / "nedr/1/model.onnx").items():
        assert outputs["clean"].shape == (2, 3, h, w) and outputs["transmission"].shape == (2, 1, h, w)
        assert np.isfinite(outputs["clean"]).all()
