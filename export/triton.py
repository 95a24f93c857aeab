"""A Triton Inference Server model repository for an exported nedr model (pure Python, no torch).

Layout written by `write_repository` (what `nedr export --triton REPO` produces)::

    REPO/<name>/config.pbtxt
    REPO/<name>/1/model.onnx          platform "onnxruntime_onnx"
    REPO/<name>/1/model.plan          platform "tensorrt_plan" (an engine from `nedr build`)
    REPO/<name>/1/model.plan.json     the engine's manifest, beside it

`config.pbtxt` is a text-format `inference.ModelConfig` (Triton's model_config.proto). Its
inputs and outputs are read from the ONNX graph (names, element types, dims; `transmission`
appears only when the graph has it), so the config always names what the model really has. With
batching (`max_batch_size` > 0) the dims leave out the batch dimension, which must then be dynamic
in the graph; with `max_batch_size: 0` they are the full NCHW dims.

Before anything is written the text is parsed with Triton's own protobuf
(`tritonclient.grpc.model_config_pb2.ModelConfig`, imported lazily) and checked against the rules
Triton applies when it loads a config, so a config Triton would reject is a one-line error here.
The model folder is assembled under a temporary name next to its final place and renamed into
REPO in one step: an interrupted export leaves no half model folder for Triton to pick up.

Field names follow model_config.proto (ModelConfig, ModelInput, ModelOutput,
ModelDynamicBatching, ModelInstanceGroup, ModelOptimizationPolicy.ExecutionAccelerators) and
the ONNX Runtime backend's TensorRT accelerator parameters (`precision_mode`,
`trt_engine_cache_enable`, `trt_profile_{min,opt,max}_shapes`).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from nedr.contract import (ENGINE_SUFFIXES, INPUT_NAME, META_CHECKPOINT, META_CHECKPOINT_SHA256, META_OPTIONS,
                           OUTPUT_CLEAN, OUTPUT_TRANSMISSION, TRITON_MODEL_NAME)
from nedr.errors import UserError, first_line

from .metadata import file_sha256

PLATFORM_ONNX = "onnxruntime_onnx"
PLATFORM_PLAN = "tensorrt_plan"
MODEL_FILES = {PLATFORM_ONNX: "model.onnx", PLATFORM_PLAN: "model.plan"}
VERSION = "1"
CONFIG_NAME = "config.pbtxt"
DEFAULT_NAME = TRITON_MODEL_NAME  # the runtime's triton backend asks for the same name
DEFAULT_MAX_BATCH = 8
DEFAULT_QUEUE_DELAY_US = 100
INSTANCE_KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}
TRT_PRECISIONS = ("fp32", "fp16", "int8")
INSTALL_HINT = "pip install 'tritonclient[grpc]'"
# ONNX Runtime's TensorRT provider builds one engine per profile: cover the whole network contract
# (>= 128 per side) up to 1080p padded, fastest at 720p padded (the `nedr build` defaults otherwise).
TRT_PROFILE_MIN = (128, 128)
TRT_PROFILE_OPT = (736, 1280)
TRT_PROFILE_MAX = (1088, 1920)

# onnx.TensorProto element types → Triton DataType names (model_config.proto)
_ONNX_TO_TRITON = {1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 4: "TYPE_UINT16", 5: "TYPE_INT16",
                   6: "TYPE_INT32", 7: "TYPE_INT64", 9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64",
                   12: "TYPE_UINT32", 13: "TYPE_UINT64", 16: "TYPE_BF16"}
_NAME_OK = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class TritonError(UserError):
    """The repository cannot be written as asked; the message is one line with the fix."""


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: name, Triton data type, full dims (-1 = dynamic), batch included."""

    name: str
    data_type: str = "TYPE_FP32"
    dims: tuple[int, ...] = (-1, 3, -1, -1)


@dataclass
class Repository:
    """What `write_repository` wrote."""

    model_dir: Path
    config_path: Path
    model_path: Path
    platform: str
    max_batch_size: int
    config: str
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        files = ", ".join(str(p.relative_to(self.model_dir.parent)) for p in (self.config_path, self.model_path))
        return (f"wrote Triton model repository {self.model_dir.parent}: {files} "
                f"({self.platform}, max_batch_size {self.max_batch_size})")


# --------------------------------------------------------------------------- the config text

def _quote(text: str) -> str:
    """A protobuf text-format string literal."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dims(dims: Iterable[int]) -> str:
    return "[ " + ", ".join(str(int(d)) for d in dims) + " ]"


def _tensor_block(specs: Sequence[TensorSpec], batching: bool, what: str) -> list[str]:
    lines = [f"{what} ["]
    for i, spec in enumerate(specs):
        dims = tuple(spec.dims)
        if batching:
            if not dims or dims[0] != -1:
                raise TritonError(f"{what} {spec.name!r} has a fixed batch dimension ({_dims(dims)}); "
                                  "batching needs a dynamic one: use max_batch_size 0 (--max-batch 0)")
            dims = dims[1:]
        lines += ["  {", f"    name: {_quote(spec.name)}", f"    data_type: {spec.data_type}",
                  f"    dims: {_dims(dims)}", "  }" + ("," if i < len(specs) - 1 else "")]
    return lines + ["]"]


def trt_profile_shapes(input_name: str, max_batch: int) -> dict[str, str]:
    """`trt_profile_{min,opt,max}_shapes` values for the ONNX Runtime TensorRT provider."""
    def shape(batch: int, hw: tuple[int, int]) -> str:
        return f"{input_name}:{batch}x3x{hw[0]}x{hw[1]}"
    return {"trt_profile_min_shapes": shape(1, TRT_PROFILE_MIN), "trt_profile_opt_shapes": shape(1, TRT_PROFILE_OPT),
            "trt_profile_max_shapes": shape(max(1, max_batch), TRT_PROFILE_MAX)}


def triton_config(*, name: str = DEFAULT_NAME, platform: str = PLATFORM_ONNX,
                  inputs: Sequence[TensorSpec] = (TensorSpec(INPUT_NAME),),
                  outputs: Sequence[TensorSpec] = (TensorSpec(OUTPUT_CLEAN),),
                  max_batch_size: int = DEFAULT_MAX_BATCH, queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
                  instance: str = "gpu", instance_count: int = 1, tensorrt: str | None = None,
                  tensorrt_params: dict[str, str] | None = None, comment: str | None = None) -> str:
    """The `config.pbtxt` text (not yet validated: see `validate_config`).

    `inputs`/`outputs` carry full dims (batch first). `max_batch_size` 0 disables batching: no
    `dynamic_batching` block and the dims keep the batch dimension. `instance` "gpu" or "cpu".
    `tensorrt` ("fp32" | "fp16" | "int8", ONNX on GPU only) adds ONNX Runtime's TensorRT execution
    accelerator with that `precision_mode`, its engine cache on, and `tensorrt_params` added to
    (or overriding) its parameters.
    """
    if platform not in MODEL_FILES:
        raise TritonError(f"unknown platform {platform!r}; use {' or '.join(MODEL_FILES)}")
    if instance not in INSTANCE_KINDS:
        raise TritonError(f"instance kind {instance!r}: use {' or '.join(INSTANCE_KINDS)}")
    if int(max_batch_size) < 0:
        raise TritonError(f"max_batch_size {max_batch_size} must be >= 0 (0 disables batching)")
    if int(queue_delay_us) < 0:
        raise TritonError(f"max_queue_delay_microseconds {queue_delay_us} must be >= 0")
    if platform == PLATFORM_PLAN and instance != "gpu":
        raise TritonError("a TensorRT engine runs only on the GPU: use --triton-instance gpu")
    if tensorrt is not None:
        if tensorrt not in TRT_PRECISIONS:
            raise TritonError(f"TensorRT precision {tensorrt!r}: use one of {', '.join(TRT_PRECISIONS)}")
        if platform != PLATFORM_ONNX:
            raise TritonError("the TensorRT accelerator applies to ONNX models; an engine is TensorRT already")
        if instance != "gpu":
            raise TritonError("the TensorRT accelerator needs GPU instances: drop --triton-instance cpu")
    batching = int(max_batch_size) > 0
    lines = [f"# {line}" for line in (comment or "").splitlines()]
    lines += [f"name: {_quote(name)}", f"platform: {_quote(platform)}", f"max_batch_size: {int(max_batch_size)}"]
    lines += _tensor_block(inputs, batching, "input")
    lines += _tensor_block(outputs, batching, "output")
    if batching:
        lines += ["dynamic_batching {", f"  max_queue_delay_microseconds: {int(queue_delay_us)}", "}"]
    lines += ["instance_group [", "  {", f"    kind: {INSTANCE_KINDS[instance]}", f"    count: {int(instance_count)}",
              "  }", "]"]
    if tensorrt is not None:
        params = {"precision_mode": tensorrt.upper(), "trt_engine_cache_enable": "1", **(tensorrt_params or {})}
        lines += ["optimization {", "  execution_accelerators {", "    gpu_execution_accelerator: [", "      {",
                  '        name: "tensorrt"']
        lines += [f"        parameters {{ key: {_quote(k)} value: {_quote(v)} }}" for k, v in params.items()]
        lines += ["      }", "    ]", "  }", "}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- validation

def _model_config_pb2():
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise TritonError(f"checking a Triton config needs Triton's ModelConfig protobuf from tritonclient "
                          f"({type(exc).__name__}: {exc}); install it: {INSTALL_HINT}") from None
    return model_config_pb2


def tritonclient_available() -> bool:
    try:
        _model_config_pb2()
    except TritonError:
        return False
    return True


def require_tritonclient() -> None:
    """TritonError (one line, with the pip command) when tritonclient's protobuf is not importable."""
    _model_config_pb2()


def validate_config(text: str):
    """Parse `text` as Triton's `inference.ModelConfig` and apply the checks Triton makes when it
    loads a model; returns the parsed message. A parse error is a bug in the text: TritonError."""
    from google.protobuf import text_format

    pb2 = _model_config_pb2()
    config = pb2.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        first = first_line(exc)
        raise TritonError(f"config.pbtxt does not parse as Triton's ModelConfig: {first}") from None
    problems = _config_problems(config, pb2)
    if problems:
        raise TritonError(f"config.pbtxt for {config.name!r} would be rejected by Triton: {problems[0]}"
                          + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))
    return config


def _config_problems(config, pb2) -> list[str]:
    problems = []
    if not config.name or not _NAME_OK.match(config.name):
        problems.append(f"model name {config.name!r} must be non-empty, without '/', '..' or leading '.'")
    if config.platform not in MODEL_FILES:
        problems.append(f"platform {config.platform!r} is not {' or '.join(MODEL_FILES)}")
    if config.max_batch_size < 0:
        problems.append("max_batch_size must be >= 0")
    if not config.input or not config.output:
        problems.append("a model needs at least one input and one output")
    seen: set[str] = set()
    for tensor in (*config.input, *config.output):
        if not tensor.name or tensor.name in seen:
            problems.append(f"tensor name {tensor.name!r} is empty or repeated")
        seen.add(tensor.name)
        if tensor.data_type == pb2.TYPE_INVALID:
            problems.append(f"tensor {tensor.name!r} has no data_type")
        if not tensor.dims or any(d == 0 or d < -1 for d in tensor.dims):
            problems.append(f"tensor {tensor.name!r} dims {list(tensor.dims)}: each must be -1 or positive")
    if config.HasField("dynamic_batching") and config.max_batch_size == 0:
        problems.append("dynamic_batching needs max_batch_size > 0")
    if not config.instance_group:
        problems.append("no instance_group")
    for group in config.instance_group:
        if group.kind not in (pb2.ModelInstanceGroup.KIND_GPU, pb2.ModelInstanceGroup.KIND_CPU):
            problems.append(f"instance_group kind {pb2.ModelInstanceGroup.Kind.Name(group.kind)} is not KIND_GPU/KIND_CPU")
        if group.count < 1:
            problems.append("instance_group count must be >= 1")
    accel = config.optimization.execution_accelerators
    if accel.gpu_execution_accelerator and any(g.kind == pb2.ModelInstanceGroup.KIND_CPU for g in config.instance_group):
        problems.append("gpu_execution_accelerator with KIND_CPU instances")
    for acc in accel.gpu_execution_accelerator:
        if acc.name == "tensorrt" and acc.parameters.get("precision_mode", "FP32") not in ("FP32", "FP16", "INT8"):
            problems.append(f"precision_mode {acc.parameters['precision_mode']!r} is not FP32, FP16 or INT8")
    return problems


# --------------------------------------------------------------------------- reading the model

def onnx_io(model: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of an ONNX graph (path or ModelProto) as TensorSpecs, in graph order.
    Symbolic or unknown dims become -1; initializers listed as graph inputs are left out."""
    import onnx

    from .metadata import load_onnx

    if not isinstance(model, onnx.ModelProto):
        model = load_onnx(model)
    inits = {t.name for t in model.graph.initializer}

    def spec(value) -> TensorSpec:
        if not value.type.HasField("tensor_type"):
            raise TritonError(f"graph tensor {value.name!r} is not a tensor; Triton's ONNX backend needs tensors")
        tensor = value.type.tensor_type
        dtype = _ONNX_TO_TRITON.get(tensor.elem_type)
        if dtype is None:
            raise TritonError(f"graph tensor {value.name!r} has element type "
                              f"{onnx.TensorProto.DataType.Name(tensor.elem_type)}, which Triton does not serve")
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tensor.shape.dim)
        return TensorSpec(value.name, dtype, dims)

    inputs = [spec(v) for v in model.graph.input if v.name not in inits]
    outputs = [spec(v) for v in model.graph.output]
    if not inputs or not outputs:
        raise TritonError("the ONNX graph has no inputs or no outputs")
    if len(inputs) == 1:  # an output whose shape the graph does not record gets the input's rank
        outputs = [o if o.dims else TensorSpec(o.name, o.data_type, (-1,) * len(inputs[0].dims)) for o in outputs]
    return inputs, outputs


def _describe_onnx(model) -> str | None:
    """One comment line from the `nedr.*` metadata an export recorded (None for other ONNX files)."""
    from .metadata import read_metadata

    meta = read_metadata(model)
    if not meta:
        return None
    options = meta.get(META_OPTIONS) if isinstance(meta.get(META_OPTIONS), dict) else {}
    parts = [f"checkpoint {meta[META_CHECKPOINT]}" if meta.get(META_CHECKPOINT) else None,
             f"checkpoint sha256 {str(meta[META_CHECKPOINT_SHA256])[:16]}" if meta.get(META_CHECKPOINT_SHA256) else None,
             f"precision {options['precision']}" if options.get("precision") else None,
             f"atmosphere {options['atmosphere']}" if options.get("atmosphere") else None,
             f"guided filter {'on' if options.get('guided_filter') else 'off'}" if "guided_filter" in options else None]
    return "nedr ONNX: " + ", ".join(p for p in parts if p) if any(parts) else None


def _uses_external_data(model) -> bool:
    import onnx

    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def default_io(with_transmission: bool, static_hw: tuple[int, int] | None = None) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """nedr's export contract when no graph can be read: hazy → clean (+ transmission)."""
    h, w = static_hw if static_hw else (-1, -1)
    batch = 1 if static_hw else -1
    outputs = [TensorSpec(OUTPUT_CLEAN, dims=(batch, 3, h, w))]
    if with_transmission:
        outputs.append(TensorSpec(OUTPUT_TRANSMISSION, dims=(batch, 1, h, w)))
    return [TensorSpec(INPUT_NAME, dims=(batch, 3, h, w))], outputs


def _find_engine_onnx(engine: Path, manifest: dict) -> tuple[Path | None, str]:
    """The ONNX an engine was built from, when it is still where the manifest says (and unchanged)."""
    recorded = (manifest.get("onnx") or {}).get("path")
    digest = (manifest.get("onnx") or {}).get("sha256")
    if not recorded:
        return None, "the manifest names no ONNX"
    candidates = [Path(recorded), engine.parent / recorded, engine.parent / Path(recorded).name]
    for path in candidates:
        if path.is_file():
            if digest and file_sha256(path) != digest:
                return None, f"{path} is not the ONNX this engine was built from (sha256 differs)"
            return path, ""
    return None, f"its ONNX {recorded} was not found"


# --------------------------------------------------------------------------- writing

def check_destination(repo: str | Path, name: str = DEFAULT_NAME, force: bool = False) -> Path:
    """The model folder `repo/name`, or TritonError before any slow work when it cannot be written."""
    repo = Path(repo)
    if not _NAME_OK.match(name) or ".." in name:
        raise TritonError(f"model name {name!r}: use letters, digits, '_', '-' or '.', not starting with '.'")
    if repo.exists() and not repo.is_dir():
        raise TritonError(f"{repo} exists and is not a directory; give a model repository folder")
    parent = repo if repo.exists() else repo.parent
    if not parent.exists():
        raise TritonError(f"cannot create {repo}: {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise TritonError(f"cannot write in {parent}: no write permission")
    target = repo / name
    if target.exists() and not force:
        raise TritonError(f"{target} already exists; pass --force to replace it (or choose --triton-name)")
    return target


def _stage_dir(repo: Path, name: str) -> Path:
    """A temporary folder on the same filesystem as `repo`, outside it when possible (so a Triton
    polling the repository never sees the model half-written), else a hidden folder inside it."""
    parent = repo.parent
    try:
        if os.access(parent, os.W_OK | os.X_OK) and os.stat(parent).st_dev == os.stat(repo).st_dev:
            return Path(tempfile.mkdtemp(prefix=f".{repo.name}.{name}.partial-", dir=parent))
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=repo))


def _commit(stage: Path, target: Path, force: bool) -> None:
    """Rename `stage` to `target`; with `force` an existing `target` is moved aside first and
    removed only once the new folder is in place (restored if the rename fails)."""
    old = None
    if target.exists():
        if not force:
            raise TritonError(f"{target} already exists; pass --force to replace it")
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=stage.parent))
        old.rmdir()
        os.rename(target, old)
    try:
        os.rename(stage, target)
    except OSError as exc:
        if old is not None:
            os.rename(old, target)
        raise TritonError(f"cannot move the new model folder into place at {target}: {exc.strerror or exc}") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_repository(repo: str | Path, source: str | Path, *, name: str = DEFAULT_NAME,
                     max_batch_size: int | None = None, queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
                     instance: str = "gpu", tensorrt: str | None = None, force: bool = False,
                     validate: bool = True, with_transmission: bool = False,
                     engine: bool | None = None, provenance: str | None = None) -> Repository:
    """Write `repo/name/` for `source` (an .onnx file, or a TensorRT engine with its manifest).

    ONNX: platform onnxruntime_onnx, I/O read from the graph, `max_batch_size` default 8 (0 when
    the graph's batch dimension is fixed). Engine (`engine` True, or None and the suffix is
    .engine/.plan/.trt): platform tensorrt_plan, the manifest copied as `1/model.plan.json`, I/O
    read from the ONNX the manifest names when it is still there (otherwise nedr's contract, with
    `transmission` when `with_transmission`), `max_batch_size` default and limit the engine
    profile's batch (1 for `nedr build` engines). The config is validated with Triton's protobuf
    unless `validate` is False; the folder appears in one rename. `provenance` is added to the
    config's header comment.
    """
    from .metadata import load_onnx

    repo, source = Path(repo), Path(source)
    target = check_destination(repo, name, force)
    if validate:
        require_tritonclient()
    if not source.is_file():
        raise TritonError(f"{source}: no such file")
    notes: list[str] = []
    graph = None
    is_engine = source.suffix.lower() in ENGINE_SUFFIXES if engine is None else bool(engine)
    platform = PLATFORM_PLAN if is_engine else PLATFORM_ONNX
    batch_cap = None
    manifest_file = None
    if is_engine:
        from .engine_manifest import load_manifest, manifest_path

        manifest = load_manifest(source)
        manifest_file = manifest_path(source)
        if manifest.get("engine_sha256") and file_sha256(source) != manifest["engine_sha256"]:
            raise TritonError(f"{source.name} is not the engine its manifest describes (sha256 differs); "
                              f"rebuild it: {manifest.get('rebuild', 'nedr build MODEL.onnx')}")
        shapes = (manifest.get("profile") or {}).get("shapes") or {}
        batch_cap = int(shapes.get("max", [1])[0])
        onnx_path, why = _find_engine_onnx(source, manifest)
        if onnx_path is not None:
            graph = load_onnx(onnx_path)
            inputs, outputs = onnx_io(graph)
        else:
            prof = manifest.get("profile") or {}
            static = prof.get("min") == prof.get("opt") == prof.get("max") and (max_batch_size == 0)
            hw = tuple(int(v) for v in str(prof["opt"]).lower().split("x")) if static else None
            inputs, outputs = default_io(with_transmission, hw)
            notes.append(f"I/O taken from nedr's export contract ({why}): hazy → "
                         + ", ".join(o.name for o in outputs) + "; keep the ONNX beside the engine to read it")
        gpu = manifest.get("gpu") or {}
        notes.append(f"the engine loads only in a Triton whose TensorRT is {manifest.get('tensorrt_version')}"
                     + (" or a later compatible release (start tritonserver with "
                        "--backend-config=tensorrt,version-compatible=true)" if manifest.get("version_compatible") else "")
                     + f", on a {gpu.get('name')} (compute {gpu.get('compute_capability')})")
    else:
        graph = load_onnx(source)
        if _uses_external_data(graph):
            raise TritonError(f"{source} keeps weights in external data files; export one self-contained .onnx")
        inputs, outputs = onnx_io(graph)
        if tensorrt == "int8":
            from .engine_manifest import onnx_precision

            if onnx_precision(graph)["qdq_nodes"] == 0:
                raise TritonError(f"{source.name} has no Q/DQ nodes: TensorRT INT8 would need a calibration table; "
                                  "quantize it first (nedr quantize --target tensorrt) or use fp16/fp32")
    fixed_batch = any(spec.dims[:1] != (-1,) for spec in inputs)
    if max_batch_size is None:
        max_batch_size = 0 if fixed_batch else DEFAULT_MAX_BATCH
        if batch_cap is not None:
            max_batch_size = min(max_batch_size, batch_cap)
        if fixed_batch:
            notes.append("the model's batch dimension is fixed: batching disabled (max_batch_size 0)")
    elif max_batch_size > 0 and fixed_batch:
        raise TritonError(f"the model's input batch dimension is fixed ({list(inputs[0].dims)}): "
                          "it cannot batch; use --max-batch 0")
    elif batch_cap is not None and max_batch_size > batch_cap:
        raise TritonError(f"--max-batch {max_batch_size} exceeds the engine's profile (batch up to {batch_cap}); "
                          f"use --max-batch {batch_cap} or serve the ONNX")
    params = None
    if tensorrt is not None and len(inputs) == 1 and inputs[0].dims[2:] == (-1, -1):
        params = trt_profile_shapes(inputs[0].name, max_batch_size)
    from nedr import __version__

    comment = "\n".join(filter(None, [
        f"written by nedr {__version__} from {source.name} (sha256 {file_sha256(source)[:16]})",
        provenance, _describe_onnx(graph) if graph is not None else None]))
    text = triton_config(name=name, platform=platform, inputs=inputs, outputs=outputs,
                         max_batch_size=max_batch_size, queue_delay_us=queue_delay_us, instance=instance,
                         tensorrt=tensorrt, tensorrt_params=params, comment=comment)
    if validate:
        validate_config(text)

    repo.mkdir(exist_ok=True)
    stage = _stage_dir(repo, name)
    try:
        version_dir = stage / VERSION
        version_dir.mkdir()
        (stage / CONFIG_NAME).write_text(text)
        model_file = version_dir / MODEL_FILES[platform]
        shutil.copyfile(source, model_file)
        if manifest_file is not None:
            shutil.copyfile(manifest_file, version_dir / (model_file.name + ".json"))
        os.chmod(stage, 0o755)  # mkdtemp makes it 0700; the server in a container may run as another user
        _commit(stage, target, force)
    except OSError as exc:
        raise TritonError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return Repository(model_dir=target, config_path=target / CONFIG_NAME, model_path=target / VERSION / model_file.name,
                      platform=platform, max_batch_size=max_batch_size, config=text, notes=notes)


def serve_command(repo: str | Path, tag: str = "<yy.mm>") -> str:
    """The docker command that serves `repo` with NVIDIA's Triton container (HTTP 8000, gRPC 8001, metrics 8002)."""
    return (f"docker run --gpus all --rm -p8000:8000 -p8001:8001 -p8002:8002 -v {Path(repo).resolve()}:/models "
            f"nvcr.io/nvidia/tritonserver:{tag}-py3 tritonserver --model-repository=/models")
