"""The manifest written beside every TensorRT engine, and the rule for when an engine may be loaded.

A serialized engine is specific to the TensorRT version and the GPU it was built on, and nothing
inside the file is readable without TensorRT. So `nedr build` writes `ENGINE.json` beside
`ENGINE` (`nedr.engine` → `nedr.engine.json`) recording what the engine is (the ONNX it came from
and its sha256, the precision that ONNX carries, the optimisation profile) and what it is tied to
(TensorRT version, GPU name, compute capability), plus the build options, so that a mismatch can be
refused with the exact `nedr build` command that rebuilds it. Pure Python: `onnx` is imported only by
`onnx_precision`, TensorRT and torch never (the runtime on a Jetson reads manifests without torch).

Portability rule (TensorRT "Engine Compatibility" / "Version Compatibility" docs, 10.x and 11.x):
* by default an engine runs only on the TensorRT version that built it. Runtimes refuse a plan
  from another patch release ("expecting library version 8.0.0 got 8.0.1"), so major.minor.patch
  must match;
* an engine built with `BuilderFlag.VERSION_COMPATIBLE` also runs on later TensorRT releases of the
  same major version, and a TensorRT 10 version-compatible engine on a TensorRT 11 runtime (the only
  cross-major pair the 11.4.1 support matrix lists, apart from 8 → 10, which nedr does not build);
  never on an older runtime;
* without hardware compatibility mode (nedr does not use it), an engine is not portable across
  GPU architectures; nedr also refuses another GPU model of the same architecture, since TensorRT
  picked its kernels by timing them on this one.

Precision lives in the ONNX (docs/deployment.md), so the manifest reads it from the graph: Q/DQ nodes →
"int8-qdq"; float16 initializers, constants, casts or tensors → "fp16"; otherwise "fp32".
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from nedr.contract import INPUT_NAME, META_OPTIONS, META_PREFIX
from nedr.errors import UserError
from nedr.fileio import write_text_atomic

from .metadata import file_sha256, load_onnx

MANIFEST_FORMAT = "nedr-engine-manifest/1"
MANIFEST_SUFFIX = ".json"
PRECISIONS = ("fp32", "fp16", "int8-qdq")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
REQUIRED_KEYS = ("format", "tensorrt_version", "gpu", "precision", "profile", "onnx", "build_options")


class ManifestError(UserError):
    """An engine's manifest is missing or unreadable; the message says how to rebuild."""


class EngineMismatchError(ManifestError):
    """The engine was built for another TensorRT version or GPU; the message has the rebuild command."""


# --------------------------------------------------------------------------- versions

def parse_version(text: str | tuple | list) -> tuple[int, ...]:
    """'10.3.0.30' → (10, 3, 0, 30); '10.16' → (10, 16, 0); trailing labels ('.post1', 'rc1') ignored."""
    if isinstance(text, (tuple, list)):
        parts = tuple(int(p) for p in text)
    else:
        m = re.match(r"^\s*v?(\d+(?:\.\d+)*)", str(text))
        if not m:
            raise ValueError(f"not a version number: {text!r}")
        parts = tuple(int(p) for p in m.group(1).split("."))
    return parts + (0,) * (3 - len(parts)) if len(parts) < 3 else parts


def format_version(version: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in version)


def runtime_accepts(built: str, running: str, version_compatible: bool) -> tuple[bool, str]:
    """Whether a TensorRT `running` runtime loads an engine built by TensorRT `built` (module docstring)."""
    b, r = parse_version(built)[:3], parse_version(running)[:3]
    if not version_compatible:
        if b == r:
            return True, ""
        return False, (f"built with TensorRT {format_version(b)}, running {format_version(r)}: engines load only on "
                       "the exact TensorRT version (major.minor.patch) that built them")
    if r < b:
        return False, (f"version-compatible engine built with TensorRT {format_version(b)} cannot run on the older "
                       f"TensorRT {format_version(r)}")
    if r[0] == b[0] or (b[0] == 10 and r[0] == 11):
        return True, ""
    return False, (f"version-compatible engine built with TensorRT {format_version(b)} cannot run on TensorRT "
                   f"{format_version(r)}: only later releases of the same major version (and 10 → 11) are supported")


def normalise_compute_capability(cc: str | tuple | list | float) -> str:
    """(8, 7) / '8.7' / 'sm_87' / 8.7 → '8.7'."""
    if isinstance(cc, (tuple, list)):
        return f"{int(cc[0])}.{int(cc[1])}"
    text = str(cc).strip().lower()
    m = re.fullmatch(r"(?:sm_?)?(\d+)(\d)", text) if "." not in text else None
    if m:
        return f"{int(m.group(1))}.{int(m.group(2))}"
    m = re.fullmatch(r"(\d+)\.(\d+)", text)
    if not m:
        raise ValueError(f"not a compute capability: {cc!r}")
    return f"{int(m.group(1))}.{int(m.group(2))}"


# --------------------------------------------------------------------------- precision of an ONNX

def onnx_precision(model: Any) -> dict[str, Any]:
    """What precision an ONNX graph carries, read from the graph itself.

    `model` is a path or an `onnx.ModelProto`. Returns {"precision": "fp32" | "fp16" | "int8-qdq",
    "qdq_nodes", "quant_types" (element types of the Q/DQ integers: "int8" for TensorRT, "uint8"
    for ONNX Runtime on x86), "fp16_initializers", "fp16_casts", "fp16_tensors",
    "metadata_precision" (what nedr's own metadata claims, or None)}. Q/DQ wins over float16 (an
    int8 graph may keep fp16 parts; `fp16_*` still count them).
    """
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = load_onnx(model)
    half = onnx.TensorProto.FLOAT16
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    qdq = [n for n in graph.node if n.op_type in QDQ_OPS]
    quant_types: set[str] = set()
    for node in qdq:
        zp = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if zp is None:
            quant_types.add("uint8")  # ONNX default when the zero point is omitted
        elif zp in inits:
            quant_types.add(onnx.helper.tensor_dtype_to_np_dtype(inits[zp].data_type).name)
        else:
            quant_types.add("unknown")
    fp16_inits = sum(1 for t in graph.initializer if t.data_type == half)
    fp16_consts = 0
    fp16_casts = 0
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == half:
                fp16_casts += 1
            elif node.op_type == "Constant" and attr.name == "value" and attr.t.data_type == half:
                fp16_consts += 1
    fp16_tensors = sum(1 for v in (*graph.input, *graph.output, *graph.value_info)
                       if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type == half)
    if qdq:
        precision = "int8-qdq"
    elif fp16_inits or fp16_consts or fp16_casts or fp16_tensors:
        precision = "fp16"
    else:
        precision = "fp32"
    claimed = None
    for prop in model.metadata_props:
        if prop.key == META_PREFIX + META_OPTIONS:
            try:
                claimed = json.loads(prop.value).get("precision")
            except (ValueError, AttributeError):
                claimed = None
    return {"precision": precision, "qdq_nodes": len(qdq), "quant_types": sorted(quant_types),
            "fp16_initializers": fp16_inits + fp16_consts, "fp16_casts": fp16_casts, "fp16_tensors": fp16_tensors,
            "metadata_precision": claimed}


def detect_precision(model: Any) -> str:
    """'fp32', 'fp16' or 'int8-qdq' (see `onnx_precision`)."""
    return onnx_precision(model)["precision"]


# --------------------------------------------------------------------------- build options → command line

@dataclass(frozen=True)
class BuildOptions:
    """What `nedr build` was asked for, enough to repeat the build on another machine."""

    onnx: str
    output: str
    min: str | None = None
    opt: str | None = None
    max: str | None = None
    static: str | None = None
    workspace_mib: int | None = None
    timing_cache: str | None = None
    opt_level: int | None = None
    version_compatible: bool = False
    dla_core: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BuildOptions":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def argv(self) -> list[str]:
        out = ["nedr", "build", self.onnx, "-o", self.output]
        if self.static:
            out += ["--static", self.static]
        else:
            for flag in ("min", "opt", "max"):
                if getattr(self, flag):
                    out += [f"--{flag}", getattr(self, flag)]
        if self.workspace_mib is not None:
            out += ["--workspace", str(self.workspace_mib)]
        if self.timing_cache:
            out += ["--timing-cache", self.timing_cache]
        if self.opt_level is not None:
            out += ["--opt-level", str(self.opt_level)]
        if self.version_compatible:
            out.append("--version-compatible")
        if self.dla_core is not None:
            out += ["--dla-core", str(self.dla_core)]
        return out

    def command(self) -> str:
        return shlex.join(self.argv())


def rebuild_command(manifest: Mapping[str, Any]) -> str:
    """The `nedr build` command line that rebuilds this engine (from the manifest's build options)."""
    return BuildOptions.from_dict(manifest["build_options"]).command()


# --------------------------------------------------------------------------- the manifest itself

def manifest_path(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + MANIFEST_SUFFIX)


def make_manifest(*, engine_path: str | Path, tensorrt_version: str, gpu_name: str,
                  compute_capability: str | tuple, precision: Mapping[str, Any], profile: Mapping[str, Any],
                  onnx_path: str | Path, onnx_sha256: str, options: BuildOptions,
                  engine_sha256: str | None = None, engine_bytes: int | None = None,
                  build_seconds: float | None = None, dla: Mapping[str, Any] | None = None,
                  built_at: str | None = None, nedr_version: str | None = None,
                  board: str | None = None) -> dict[str, Any]:
    """The manifest as plain JSON-ready data (see module docstring for what each part is for).
    `board` is the Jetson module (`/proc/device-tree/model`), where there is one: Orin modules of
    different sizes share compute capability 8.7 and can report the same GPU name, so the board is
    what tells an AGX Orin engine from an Orin Nano one."""
    if nedr_version is None:
        from nedr import __version__ as nedr_version
    precision = dict(precision)
    if precision.get("precision") not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision.get('precision')!r}")
    return {
        "format": MANIFEST_FORMAT,
        "engine": Path(engine_path).name,
        "engine_sha256": engine_sha256,
        "engine_bytes": engine_bytes,
        "tensorrt_version": str(tensorrt_version),
        "gpu": {"name": str(gpu_name).strip(), "compute_capability": normalise_compute_capability(compute_capability),
                **({"board": str(board).strip()} if board else {})},
        "precision": precision.pop("precision"),
        "precision_detail": precision,
        "profile": {"input": profile.get("input", INPUT_NAME), **{k: profile[k] for k in ("min", "opt", "max")}},
        "onnx": {"path": str(onnx_path), "sha256": onnx_sha256},
        "build_options": options.to_dict(),
        "version_compatible": bool(options.version_compatible),
        "dla": dict(dla) if dla else None,
        "nedr_version": nedr_version,
        "built_at": built_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": None if build_seconds is None else round(float(build_seconds), 1),
        "rebuild": options.command(),
    }


def write_manifest(manifest: Mapping[str, Any], engine_path: str | Path) -> Path:
    """Write `ENGINE.json` atomically (temporary name, then rename)."""
    return write_text_atomic(manifest_path(engine_path), json.dumps(manifest, indent=2, sort_keys=False) + "\n")


def validate_manifest(manifest: Any, where: str = "manifest") -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{where} is not a nedr engine manifest (expected format {MANIFEST_FORMAT!r})")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ManifestError(f"{where} lacks {', '.join(missing)}; rebuild the engine with `nedr build`")
    return manifest


def load_manifest(engine_path: str | Path) -> dict[str, Any]:
    """The manifest beside `engine_path` (or the manifest file itself); ManifestError if absent or bad."""
    engine_path = Path(engine_path)
    path = engine_path if engine_path.suffix == MANIFEST_SUFFIX else manifest_path(engine_path)
    if not path.is_file():
        raise ManifestError(f"no manifest {path.name} beside {engine_path.name}: nedr cannot tell which TensorRT "
                            f"and GPU it was built for; rebuild it with `nedr build MODEL.onnx -o {engine_path}`")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}; rebuild the engine with `nedr build`") from None
    return validate_manifest(data, str(path))


@dataclass(frozen=True)
class Mismatch:
    """One way the running machine differs from the one the engine was built for."""

    field: str
    built: str
    running: str
    reason: str = ""

    def __str__(self) -> str:
        return self.reason or f"{self.field}: built for {self.built}, this machine has {self.running}"


def check_manifest(manifest: Mapping[str, Any], running_trt_version: str, gpu_name: str,
                   compute_capability: str | tuple, board: str | None = None) -> list[Mismatch]:
    """Every reason this engine must not be loaded here; [] when TensorRT version and GPU match.
    `board` (Jetson module name) is compared only when both the manifest and the caller have one."""
    problems: list[Mismatch] = []
    built_trt = str(manifest["tensorrt_version"])
    ok, why = runtime_accepts(built_trt, running_trt_version, bool(manifest.get("version_compatible")))
    if not ok:
        problems.append(Mismatch("tensorrt_version", built_trt, str(running_trt_version), why))
    gpu = manifest["gpu"]
    built_cc = normalise_compute_capability(gpu["compute_capability"])
    running_cc = normalise_compute_capability(compute_capability)
    if built_cc != running_cc:
        problems.append(Mismatch("compute_capability", built_cc, running_cc,
                                 f"built for compute capability {built_cc}, this GPU is {running_cc}"))
    built_name, running_name = str(gpu["name"]).strip(), str(gpu_name).strip()
    if " ".join(built_name.lower().split()) != " ".join(running_name.lower().split()):
        problems.append(Mismatch("gpu", built_name, running_name,
                                 f"built on {built_name}, this GPU is {running_name}"))
    built_board = str(gpu.get("board") or "").strip()
    if built_board and board and built_board.lower() != str(board).strip().lower():
        problems.append(Mismatch("board", built_board, str(board).strip(),
                                 f"built on a {built_board}, this board is a {str(board).strip()}"))
    return problems


def mismatch_message(engine_path: str | Path, manifest: Mapping[str, Any], problems: list[Mismatch]) -> str:
    """One line: what differs, why it matters, and the command that rebuilds the engine here."""
    gpu = manifest["gpu"]
    return (f"{Path(engine_path).name} was built with TensorRT {manifest['tensorrt_version']} on {gpu['name']} "
            f"(compute {gpu['compute_capability']}) and cannot be loaded here: "
            + "; ".join(str(p) for p in problems)
            + f". Engines are not portable across TensorRT versions or GPUs; rebuild it on this machine: "
            f"{rebuild_command(manifest)}")


def require_compatible(engine_path: str | Path, *, tensorrt_version: str, gpu_name: str,
                       compute_capability: str | tuple, board: str | None = None,
                       check_engine_hash: bool = True) -> dict[str, Any]:
    """Load the manifest beside `engine_path` and return it, or refuse (EngineMismatchError) when the
    engine was built for another TensorRT version or GPU, or the file is not the engine it describes."""
    manifest = load_manifest(engine_path)
    problems = check_manifest(manifest, tensorrt_version, gpu_name, compute_capability, board)
    if check_engine_hash and manifest.get("engine_sha256") and Path(engine_path).is_file():
        actual = file_sha256(engine_path)
        if actual != manifest["engine_sha256"]:
            problems.append(Mismatch("engine_sha256", manifest["engine_sha256"][:12], actual[:12],
                                     "the engine file is not the one this manifest describes (sha256 differs)"))
    if problems:
        raise EngineMismatchError(mismatch_message(engine_path, manifest, problems))
    return manifest


def format_manifest(manifest: Mapping[str, Any]) -> str:
    """Human-readable text of a manifest (for `nedr inspect ENGINE`)."""
    gpu, prof, detail = manifest["gpu"], manifest["profile"], manifest.get("precision_detail") or {}
    extra = []
    if detail.get("qdq_nodes"):
        extra.append(f"Q/DQ {detail['qdq_nodes']} ({', '.join(detail.get('quant_types') or [])})")
    if detail.get("fp16_casts") or detail.get("fp16_initializers"):
        extra.append(f"fp16 initializers {detail.get('fp16_initializers', 0)}, casts {detail.get('fp16_casts', 0)}")
    static = prof["min"] == prof["opt"] == prof["max"]
    lines = [
        f"engine: {manifest.get('engine')}  ({(manifest.get('engine_bytes') or 0) / 1e6:.1f} MB, "
        f"built {manifest.get('built_at')}, {manifest.get('build_seconds')} s, nedr {manifest.get('nedr_version')})",
        f"tensorrt: {manifest['tensorrt_version']}"
        + ("  (version-compatible: later releases of the same major, and 10 → 11, can load it)"
           if manifest.get("version_compatible") else "  (loads only on this exact version)"),
        f"gpu: {gpu['name']}  (compute capability {gpu['compute_capability']})"
        + (f", board {gpu['board']}" if gpu.get("board") else ""),
        f"precision: {manifest['precision']}" + (f"  ({'; '.join(extra)})" if extra else ""),
        f"profile: {prof.get('input', INPUT_NAME)} " + (f"static {prof['opt']}" if static else
                                                     f"min {prof['min']}, opt {prof['opt']}, max {prof['max']}"),
        f"onnx: {manifest['onnx']['path']}  sha256 {manifest['onnx']['sha256']}",
    ]
    dla = manifest.get("dla")
    if dla:
        fallback = dla.get("gpu_fallback_layers") or []
        lines.append(f"dla: core {dla.get('core')}, {dla.get('dla_layers', '?')} layer(s) on DLA, "
                     f"{len(fallback)} fell back to the GPU" + (f" ({', '.join(fallback[:8])}"
                                                               + (", …" if len(fallback) > 8 else "") + ")"
                                                               if fallback else ""))
    lines.append(f"rebuild: {rebuild_command(manifest)}")
    return "\n".join(lines)
