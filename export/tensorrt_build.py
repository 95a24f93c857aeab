"""ONNX → TensorRT engine: a thin shell around the TensorRT builder, imported lazily.

Everything TensorRT-specific is in this file and runs only when `tensorrt` imports; the decisions
(profile, precision, manifest, compatibility, the up-front option checks) are plain functions in
`profiles`, `engine_manifest` and `build_plan`. Without TensorRT, `load_tensorrt()` raises
`TensorRTUnavailable` with one line naming what is missing.

Version lanes (docs/deployment.md, "TensorRT facts"):
* "10" (10.x): strong typing is opt-in, so the network is created with
  `1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)`; the FP16/INT8 builder flags exist but
  are deprecated and never set here (precision comes from the ONNX).
* "11" (11.x and later): every network is strongly typed; the flag is deprecated and ignored, so the
  network is created without it. BuilderFlag.FP16/INT8, calibrators and platform_has_fast_fp16
  are gone. DLA: absent in 11.0–11.4.0; 11.4.1 brings it back on Jetson AGX Orin with JetPack 7.2.2+.
* below 10.0: refused (build_engine, max_workspace_size and binding indices are gone in 10.0 and
  nedr does not carry the old API).

Build steps (`build_engine`): parse the ONNX (`OnnxParser.parse_from_file`), create the
optimisation profile for input `hazy`, cap the workspace pool
(`set_memory_pool_limit(MemoryPoolType.WORKSPACE, bytes)`), load/use/save the timing cache
(`create_timing_cache` / `set_timing_cache` / `get_timing_cache().serialize()`), set
`builder_optimization_level`, `BuilderFlag.VERSION_COMPATIBLE`, DLA (`default_device_type`,
`DLA_core`, `BuilderFlag.GPU_FALLBACK`; `can_run_on_DLA` lists the layers that fall back),
report progress through an `IProgressMonitor`, `build_serialized_network`, then write the engine
atomically and the manifest beside it. `ProfilingVerbosity.DETAILED` is set so that
`engine_layers` (IEngineInspector) can list layer types and precisions.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

from nedr.contract import INPUT_NAME
from nedr.errors import UserError, first_line
from nedr.fileio import write_bytes_atomic

from .build_plan import BuildPlan, dla_shape_problem, recorded_options
from .engine_manifest import BuildOptions, format_version, make_manifest, onnx_precision, parse_version, write_manifest
from .metadata import file_sha256
from .profiles import Profile, format_hw

MISSING_TENSORRT = ("TensorRT Python bindings not installed: pip install tensorrt-cu12 (x86) "
                    "or use JetPack's python3-libnvinfer (Jetson)")
MIN_TENSORRT = (10, 0, 0)
DLA_RETURNS_IN = (11, 4, 1)  # DLA on Jetson AGX Orin with JetPack 7.2.2+ (TensorRT 11.4.1 release notes)


class TensorRTUnavailable(UserError):
    """TensorRT cannot be used here (not installed, a stub package, or too old); one line says which."""


class EngineBuildError(UserError):
    """TensorRT refused the ONNX or the build options; the message has TensorRT's first error."""


# --------------------------------------------------------------------------- version lanes

@dataclass(frozen=True)
class Lane:
    """How nedr drives a TensorRT version: which API lane and what differs in it."""

    name: str                   # "10" | "11"
    version: tuple[int, ...]
    strongly_typed_flag: bool   # create_network(1 << STRONGLY_TYPED) on 10.x; implicit on 11.x
    dla_unavailable: str | None  # why --dla-core cannot work with this version, or None


def lane_for(version: str | tuple) -> Lane:
    """The lane of a TensorRT version string ('10.3.0', '10.16.1.11', '11.4.1'); refuses < 10.0."""
    v = parse_version(version)
    if v[:3] < MIN_TENSORRT:
        raise TensorRTUnavailable(f"TensorRT {format_version(v)} is too old: nedr builds with TensorRT 10.0 or later "
                                  "(JetPack 6+, or pip install tensorrt-cu12)")
    if v[0] == 10:
        return Lane("10", v, True, None)
    dla = None
    if v[:3] < DLA_RETURNS_IN:
        dla = (f"TensorRT {format_version(v[:3])} has no DLA support (removed in 11.0, back in 11.4.1 on Jetson AGX "
               "Orin with JetPack 7.2.2+); use TensorRT 10.x (JetPack 6) or 11.4.1+")
    return Lane("11", v, False, dla)


def trt_lane(version: str | tuple) -> str:
    """'10' or '11' for a TensorRT version string; TensorRTUnavailable below 10.0."""
    return lane_for(version).name


# --------------------------------------------------------------------------- importing TensorRT

def load_tensorrt():
    """`import tensorrt`, or TensorRTUnavailable naming what is missing (one line)."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(f"{MISSING_TENSORRT} (import tensorrt: {exc})") from None
    except OSError as exc:  # the bindings import but a shared library (libnvinfer, CUDA) does not load
        raise TensorRTUnavailable(f"TensorRT Python bindings found but a TensorRT/CUDA library failed to load: "
                                  f"{first_line(exc)}") from None
    if not hasattr(trt, "Builder") or not hasattr(trt, "__version__"):
        raise TensorRTUnavailable(f"{MISSING_TENSORRT} (the installed 'tensorrt' module has no bindings: "
                                  f"{getattr(trt, '__file__', '?')})")
    lane_for(trt.__version__)
    return trt


def tensorrt_available() -> bool:
    try:
        load_tensorrt()
    except TensorRTUnavailable:
        return False
    return True


# --------------------------------------------------------------------------- which GPU is this

def gpu_identity(device: int = 0) -> tuple[str, str]:
    """(name, compute capability 'M.m') of a CUDA device, via cuda-python, then torch, then nvidia-smi."""
    try:  # cuda-python >= 12.6 layout, as NVIDIA's TensorRT samples use since 10.14
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            cudart = None
    if cudart is not None:
        err, props = cudart.cudaGetDeviceProperties(device)
        if int(err) == 0:
            name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
            return name.rstrip("\x00").strip(), f"{props.major}.{props.minor}"
    if "torch" in sys.modules or _importable("torch"):
        import torch
        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(device)
            return torch.cuda.get_device_name(device), f"{major}.{minor}"
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", f"--id={device}", "--query-gpu=name,compute_cap",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            name, cc = (p.strip() for p in out.stdout.strip().splitlines()[0].rsplit(",", 1))
            return name, cc
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            pass
    raise EngineBuildError("cannot tell which GPU this is (the engine manifest records it): "
                           "pip install cuda-python, or run where torch sees CUDA or nvidia-smi works")


def board_model() -> str | None:
    """The Jetson module ('NVIDIA Jetson AGX Orin Developer Kit', …) from the device tree; None elsewhere."""
    path = Path("/proc/device-tree/model")
    try:
        text = path.read_bytes().decode(errors="replace").rstrip("\x00").strip()
    except OSError:
        return None
    return text if "jetson" in text.lower() or "tegra" in text.lower() else None


def _importable(name: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(name) is not None


# --------------------------------------------------------------------------- logging and progress

def make_logger(trt, stream=None):
    """A TensorRT logger that prints warnings and errors and keeps the errors for the exception."""
    stream = stream if stream is not None else sys.stderr
    sev = getattr(trt.ILogger, "Severity", trt.ILogger)

    class _Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (sev.INTERNAL_ERROR, sev.ERROR):
                self.errors.append(str(msg))
            if severity in (sev.INTERNAL_ERROR, sev.ERROR, sev.WARNING):
                print(f"[TensorRT] {msg}", file=stream)

    return _Logger()


def make_progress_monitor(trt, stream=None, every_s: float = 5.0):
    """An IProgressMonitor printing top-level phases and, at most every `every_s`, the step counts of
    the phase in progress; None where this TensorRT has no IProgressMonitor. Ctrl-C cancels the build."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None
    stream = stream if stream is not None else sys.stderr

    class _Monitor(base):
        def __init__(self):
            base.__init__(self)
            self._lock = threading.Lock()
            self._phases: dict[str, tuple[str | None, int, float]] = {}
            self._last_print = 0.0
            self.cancelled = False

        def phase_start(self, phase_name, parent_phase, num_steps):
            with self._lock:
                self._phases[phase_name] = (parent_phase, int(num_steps), time.monotonic())
                if parent_phase is None:
                    print(f"  build: {phase_name} ({num_steps} step{'s' if num_steps != 1 else ''})", file=stream)

        def step_complete(self, phase_name, step):
            with self._lock:
                now = time.monotonic()
                if now - self._last_print >= every_s and phase_name in self._phases:
                    self._last_print = now
                    _, total, _ = self._phases[phase_name]
                    print(f"    {phase_name}: {int(step) + 1}/{total}", file=stream)
            return not self.cancelled

        def phase_finish(self, phase_name):
            with self._lock:
                parent, _, started = self._phases.pop(phase_name, (None, 0, time.monotonic()))
                if parent is None:
                    print(f"  build: {phase_name} done in {time.monotonic() - started:.0f} s", file=stream)

    return _Monitor()


# --------------------------------------------------------------------------- the build

def create_network(trt, builder, lane: Lane):
    """A strongly typed network: the flag on 10.x, the default on 11.x."""
    if lane.strongly_typed_flag:
        return builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    return builder.create_network()


def parse_onnx(trt, network, logger, onnx_path: Path):
    """Parse into `network`; returns the parser, which must outlive the network's use (it owns weights)."""
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        first = (errors[0].strip().splitlines() or ["unknown error"])[0] if errors else "unknown error"
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {first}{more}")
    return parser


def _network_input(network, name: str):
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if tensor.name == name:
            return tensor
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    raise EngineBuildError(f"the network has no input {name!r} (inputs: {', '.join(names) or 'none'})")


def add_profile(builder, config, network, profile: Profile, input_name: str = INPUT_NAME) -> dict[str, list[int]]:
    """Add `profile` for the input (batch fixed at 1 when dynamic); returns the NCHW shapes used."""
    tensor = _network_input(network, input_name)
    dims = list(tensor.shape)
    batch = 1 if dims[0] in (-1, None) else int(dims[0])
    shapes = profile.shapes(batch=batch, channels=int(dims[1]) if dims[1] not in (-1, None) else 3)
    if any(d in (-1, None) for d in dims):
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(input_name, shapes["min"], shapes["opt"], shapes["max"])
        config.add_optimization_profile(opt_profile)
    else:
        static = (int(dims[2]), int(dims[3]))
        if not (profile.is_static and profile.opt == static):
            raise EngineBuildError(f"the ONNX input {input_name} is static {format_hw(static)}; build it with "
                                   f"--static {format_hw(static)} or export a dynamic-shape ONNX")
    return {k: list(v) for k, v in shapes.items()}


def _load_timing_cache(config, path: Path | None, stream) -> Any:
    blob = b""
    if path is not None and path.is_file():
        blob = path.read_bytes()
    cache = config.create_timing_cache(blob)
    if not config.set_timing_cache(cache, ignore_mismatch=False) and blob:
        print(f"  timing cache {path} was made by another TensorRT version or GPU: starting a fresh one", file=stream)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    elif blob:
        print(f"  timing cache: reusing {path} ({len(blob) / 1e6:.1f} MB)", file=stream)
    return cache


def configure_dla(trt, builder, config, network, lane: Lane, profile: Profile, dla_core: int) -> dict[str, Any]:
    """Put the network on DLA core `dla_core` with GPU fallback; returns which layers fall back."""
    if lane.dla_unavailable:
        raise EngineBuildError(lane.dla_unavailable)
    problem = dla_shape_problem(profile)
    if problem:
        raise EngineBuildError(problem)
    cores = int(getattr(builder, "num_DLA_cores", 0) or 0)
    if cores == 0:
        raise EngineBuildError("this device has no DLA (desktop GPUs, Jetson Orin Nano and Jetson Thor have none); "
                               "drop --dla-core")
    if not 0 <= dla_core < cores:
        raise EngineBuildError(f"--dla-core {dla_core}: this device has {cores} DLA core(s), numbered 0–{cores - 1}")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = int(dla_core)
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    on_dla, fallback = [], []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        (on_dla if config.can_run_on_DLA(layer) else fallback).append(layer.name)
    return {"core": int(dla_core), "cores_on_device": cores, "dla_layers": len(on_dla),
            "gpu_fallback_layers": fallback}


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, profile: Profile,
                 workspace_bytes: int | None = None, timing_cache: str | Path | None = None,
                 opt_level: int | None = None, version_compatible: bool = False, dla_core: int | None = None,
                 options: BuildOptions | None = None, precision: dict[str, Any] | None = None, stream=None,
                 gpu: tuple[str, str] | Callable[[], tuple[str, str]] | None = None) -> dict[str, Any]:
    """Build `engine_path` from `onnx_path` and write `engine_path.json`; returns the manifest.

    `options` is what the command line asked for (recorded so a mismatch can print the rebuild
    command); by default it is derived from the arguments. `precision` is `onnx_precision(onnx_path)`
    where the caller has it already (default: read here). `gpu` is (name, compute capability) or a
    callable returning it. Raises TensorRTUnavailable / EngineBuildError with one-line messages and
    leaves no partial engine behind.
    """
    stream = stream if stream is not None else sys.stderr
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    trt = load_tensorrt()
    lane = lane_for(trt.__version__)
    gpu = gpu_identity if gpu is None else gpu
    gpu_name, cc = gpu() if callable(gpu) else gpu
    precision = dict(precision) if precision is not None else onnx_precision(onnx_path)  # make_manifest pops
    if options is None:
        options = recorded_options(
            onnx_path, engine_path, profile,
            workspace_mib=None if workspace_bytes is None else -(-int(workspace_bytes) // (1 << 20)),
            timing_cache=timing_cache, opt_level=opt_level, version_compatible=version_compatible, dla_core=dla_core)

    logger = make_logger(trt, stream)
    builder = trt.Builder(logger)
    network = create_network(trt, builder, lane)
    parser = parse_onnx(trt, network, logger, onnx_path)  # must outlive the build (it owns parsed weights)
    config = builder.create_builder_config()
    shapes = add_profile(builder, config, network, profile)
    if workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    cache_path = None if timing_cache is None else Path(timing_cache)
    _load_timing_cache(config, cache_path, stream)
    if opt_level is not None:
        config.builder_optimization_level = int(opt_level)
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if hasattr(trt, "ProfilingVerbosity"):
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    dla = None
    if dla_core is not None:
        dla = configure_dla(trt, builder, config, network, lane, profile, dla_core)
        if dla["gpu_fallback_layers"]:
            print(f"  DLA: {dla['dla_layers']} layer(s) on DLA core {dla_core}, "
                  f"{len(dla['gpu_fallback_layers'])} fall back to the GPU: "
                  + ", ".join(dla["gpu_fallback_layers"][:20])
                  + (" …" if len(dla["gpu_fallback_layers"]) > 20 else ""), file=stream)
    monitor = make_progress_monitor(trt, stream)
    if monitor is not None:
        config.progress_monitor = monitor

    print(f"building {engine_path.name} from {onnx_path.name} with TensorRT {trt.__version__} on {gpu_name} "
          f"({precision['precision']}, profile {profile.describe()}); this can take minutes", file=stream)
    started = time.monotonic()
    try:
        plan = builder.build_serialized_network(network, config)
    except KeyboardInterrupt:
        if monitor is not None:
            monitor.cancelled = True
        raise
    seconds = time.monotonic() - started
    del parser
    if plan is None:
        first = logger.errors[0].splitlines()[0] if logger.errors else "no error message (see the log above)"
        raise EngineBuildError(f"TensorRT could not build {engine_path.name}: {first}")
    write_bytes_atomic(engine_path, plan)
    if cache_path is not None:
        write_bytes_atomic(cache_path, config.get_timing_cache().serialize())

    manifest = make_manifest(
        engine_path=engine_path, tensorrt_version=trt.__version__, gpu_name=gpu_name, compute_capability=cc,
        precision=precision, profile={"input": INPUT_NAME, **profile.to_dict()},
        onnx_path=options.onnx, onnx_sha256=file_sha256(onnx_path), options=options,
        engine_sha256=file_sha256(engine_path), engine_bytes=engine_path.stat().st_size,
        build_seconds=seconds, dla=dla, board=board_model())
    manifest["profile"]["shapes"] = shapes
    write_manifest(manifest, engine_path)
    return manifest


def build_planned(plan: BuildPlan, stream: TextIO | None = None) -> dict[str, Any]:
    """Build what `plan_build` checked; returns the manifest. Kept beside `build_engine` so callers
    that plan first (`nedr build`) need not repeat how a plan maps onto its arguments."""
    options = plan.options
    return build_engine(
        plan.model, plan.output, profile=plan.profile,
        workspace_bytes=None if options.workspace_mib is None else options.workspace_mib << 20,
        timing_cache=plan.timing_cache, opt_level=options.opt_level, version_compatible=options.version_compatible,
        dla_core=options.dla_core, options=options, precision=plan.precision, stream=stream)


# --------------------------------------------------------------------------- looking inside an engine

def running_identity(trt=None) -> tuple[str, str, str, str | None]:
    """(TensorRT version, GPU name, compute capability, Jetson board or None) of this machine."""
    trt = trt or load_tensorrt()
    name, cc = gpu_identity()
    return trt.__version__, name, cc, board_model()


def check_engine_here(engine_path: str | Path,
                      identity: tuple[str, str, str, str | None] | None = None) -> dict[str, Any]:
    """The engine's manifest when it may be loaded on this machine, else EngineMismatchError (one line
    with the `nedr build` command that rebuilds it). For runtimes to call before deserializing, and
    for `nedr inspect`, which passes the `running_identity` it also prints rather than asking twice."""
    from .engine_manifest import require_compatible

    version, name, cc, board = identity or running_identity()
    return require_compatible(engine_path, tensorrt_version=version, gpu_name=name, compute_capability=cc,
                              board=board)


def _precision_of(entry: dict) -> str | None:
    text = str(entry.get("DataType") or entry.get("Format/Datatype") or entry.get("Format") or "")
    upper = text.upper()
    for token, name in (("FP32", "fp32"), ("FLOAT", "fp32"), ("FP16", "fp16"), ("HALF", "fp16"),
                        ("BF16", "bf16"), ("INT8", "int8"), ("FP8", "fp8"), ("INT32", "int32"), ("INT64", "int64"),
                        ("BOOL", "bool")):
        if token in upper:
            return name
    return text or None


def parse_engine_information(text: str) -> list[dict[str, Any]]:
    """Layers from `IEngineInspector.get_engine_information(JSON)`: name, type, output precisions, device.

    Handles the 10.x schema (`Format/Datatype` per tensor) and 11.x (`DataType` split out), and
    engines built without detailed profiling verbosity (layers as bare names)."""
    data = json.loads(text)
    layers = data.get("Layers", []) if isinstance(data, dict) else data
    out = []
    for layer in layers:
        if isinstance(layer, str):
            out.append({"name": layer, "type": None, "precisions": [], "device": None})
            continue
        ltype = layer.get("LayerType")
        outputs = layer.get("Outputs") or []
        precisions = sorted({p for p in (_precision_of(o) for o in outputs if isinstance(o, dict)) if p})
        device = "DLA" if ltype and "DLA" in str(ltype).upper() else "GPU"
        out.append({"name": layer.get("Name"), "type": ltype, "precisions": precisions, "device": device,
                    "tactic": layer.get("TacticName")})
    return out


def engine_layers(engine_path: str | Path, *, version_compatible: bool = False) -> list[dict[str, Any]]:
    """Layer listing of an engine via IEngineInspector (needs TensorRT and the GPU it was built for)."""
    trt = load_tensorrt()
    logger = make_logger(trt)
    runtime = trt.Runtime(logger)
    if version_compatible and hasattr(runtime, "engine_host_code_allowed"):
        runtime.engine_host_code_allowed = True  # a version-compatible plan embeds the lean runtime
    engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
    if engine is None:
        first = logger.errors[0].splitlines()[0] if logger.errors else "deserialization failed"
        raise EngineBuildError(f"TensorRT {trt.__version__} cannot load {Path(engine_path).name}: {first}")
    inspector = engine.create_engine_inspector()
    return parse_engine_information(inspector.get_engine_information(trt.LayerInformationFormat.JSON))


def format_layers(layers: list[dict[str, Any]], limit: int = 60) -> str:
    """Text table of `engine_layers` (first `limit` rows, then counts by device and precision)."""
    from collections import Counter

    lines = [f"layers: {len(layers)}"]
    for row in layers[:limit]:
        lines.append(f"  {row.get('device') or '?':3}  {','.join(row['precisions']) or '-':10}  "
                     f"{row.get('type') or '':24}  {row['name']}")
    if len(layers) > limit:
        lines.append(f"  … {len(layers) - limit} more")
    by_device = Counter(r.get("device") or "?" for r in layers)
    by_precision = Counter(p for r in layers for p in r["precisions"])
    lines.append("by device: " + ", ".join(f"{k} {v}" for k, v in sorted(by_device.items())))
    if by_precision:
        lines.append("output precisions: " + ", ".join(f"{k} {v}" for k, v in sorted(by_precision.items())))
    return "\n".join(lines)
