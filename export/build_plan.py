"""What an engine build will do, decided before TensorRT is imported (`nedr build`, scripts, tests).

Why apart from `tensorrt_build`: every mistake in the options (sizes, DLA, paths) must be reported
on machines without TensorRT, and in one line before a build that takes minutes. Needs no torch or
TensorRT; onnx only while reading the input's shape.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nedr.contract import INPUT_NAME
from nedr.errors import UserError, first_line

from .engine_manifest import BuildOptions, onnx_precision
from .profiles import Profile, ProfileError, format_hw, make_profile, static_profile

if TYPE_CHECKING:
    import onnx


@dataclass(frozen=True)
class BuildPlan:
    """A checked build: the files, the profile, the ONNX's precision and the options as recorded."""

    model: Path
    output: Path
    profile: Profile
    precision: dict[str, Any]
    options: BuildOptions
    timing_cache: Path | None


def _read_onnx(path: Path) -> onnx.ModelProto:
    """The graph without the weights' external data (quick for any model size), read once for the
    input's shape and the precision."""
    import onnx

    try:
        return onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and others
        raise UserError(f"{path}: not a readable ONNX file ({first_line(exc)[:160]})") from None


def onnx_input_shapes(model: onnx.ModelProto) -> dict[str, list]:
    """Graph input shapes by name, in graph order (dims: int, or the symbolic name for a dynamic axis)."""
    inits = {t.name for t in model.graph.initializer}
    shapes = {}
    for value in model.graph.input:
        if value.name in inits:
            continue
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
    return shapes


def resolve_profile(input_shape: list, *, static: str | None = None, min_hw: str | None = None,
                    opt_hw: str | None = None, max_hw: str | None = None) -> Profile:
    """The optimisation profile the sizes ask for, checked against the ONNX input's shape: a static
    ONNX admits only its own size, so asking for another is refused here rather than by TensorRT."""
    ranged = any(v is not None for v in (min_hw, opt_hw, max_hw))
    if static is not None and ranged:
        raise ProfileError("--static fixes one size; give either --static or --min/--opt/--max, not both")
    spatial = input_shape[2:4] if len(input_shape) == 4 else []
    onnx_static = len(spatial) == 2 and all(isinstance(d, int) and d > 0 for d in spatial)
    if onnx_static:
        size = (int(spatial[0]), int(spatial[1]))
        if ranged or (static is not None and static_profile(static).opt != size):
            raise ProfileError(f"this ONNX has a static input {INPUT_NAME} {format_hw(size)}: build it with "
                               f"--static {format_hw(size)} (or nothing), or export a dynamic-shape ONNX")
        return static_profile(size)
    if static is not None:
        return static_profile(static)
    return make_profile(min_hw, opt_hw, max_hw)


def dla_shape_problem(profile: Profile) -> str | None:
    """Why `profile` cannot run on DLA (which takes fixed shapes only), or None; shared by the
    up-front check and the TensorRT build, so both say the same thing."""
    if profile.is_static:
        return None
    return f"DLA needs static shapes: add --static HxW (e.g. --static {format_hw(profile.opt)})"


def check_dla_request(dla_core: int, profile: Profile, precision: str, model_name: str) -> None:
    """Refuse a DLA build that could not put a layer on DLA: DLA runs FP16/INT8 at fixed shapes only.
    (Whether this device has that core is TensorRT's to say, in `configure_dla`.)"""
    if dla_core < 0:
        raise UserError(f"--dla-core {dla_core}: DLA cores are numbered from 0")
    problem = dla_shape_problem(profile)
    if problem:
        raise UserError(problem)
    if precision == "fp32":
        raise UserError(f"{model_name} is FP32 and DLA runs only FP16/INT8 layers (everything would fall back "
                        "to the GPU): build the FP16 or INT8 ONNX instead")


def _check_writable(path: Path, what: str) -> None:
    if path.is_dir():
        raise UserError(f"cannot write {what} {path}: it is a directory")
    if not path.parent.is_dir():
        raise UserError(f"cannot write {what} {path}: directory {path.parent} does not exist")


def plan_build(model: str | Path, output: str | Path | None = None, *, static: str | None = None,
               min_hw: str | None = None, opt_hw: str | None = None, max_hw: str | None = None,
               workspace_mib: int | None = None, timing_cache: str | Path | None = None,
               opt_level: int | None = None, version_compatible: bool = False,
               dla_core: int | None = None) -> BuildPlan:
    """Every check that needs no TensorRT, in the order a user fixes them (the file, its input, the
    sizes, the options, where the outputs go); the first problem raises one line."""
    given, model = str(model), Path(model)
    if not model.exists():
        raise FileNotFoundError(f"{model}: no such file")
    if not model.is_file():
        raise UserError(f"{model}: not a file (give the .onnx file exported by nedr-export)")
    graph = _read_onnx(model)
    shapes = onnx_input_shapes(graph)
    if INPUT_NAME not in shapes:
        raise UserError(f"{model} has no input {INPUT_NAME!r} (inputs: {', '.join(shapes) or 'none'}); "
                        "build an ONNX exported by nedr-export")
    profile = resolve_profile(shapes[INPUT_NAME], static=static, min_hw=min_hw, opt_hw=opt_hw, max_hw=max_hw)
    if workspace_mib is not None and workspace_mib <= 0:
        raise UserError(f"--workspace {workspace_mib}: give a size in MiB > 0")
    precision = onnx_precision(graph)
    if dla_core is not None:
        check_dla_request(dla_core, profile, precision["precision"], model.name)
    output = Path(output) if output else model.with_suffix(".engine")
    if output.resolve() == model.resolve():
        raise UserError(f"-o {output} would overwrite the ONNX file")
    _check_writable(output, "engine")
    cache = Path(timing_cache) if timing_cache else None
    if cache is not None:
        _check_writable(cache, "timing cache")
    options = recorded_options(given, output, profile, workspace_mib=workspace_mib,
                               timing_cache=None if cache is None else timing_cache, opt_level=opt_level,
                               version_compatible=version_compatible, dla_core=dla_core)
    return BuildPlan(model, output, profile, precision, options, cache)


def recorded_options(onnx: str | Path, output: str | Path, profile: Profile, *, workspace_mib: int | None = None,
                     timing_cache: str | Path | None = None, opt_level: int | None = None,
                     version_compatible: bool = False, dla_core: int | None = None) -> BuildOptions:
    """The options a manifest records for a build (a static profile as --static), one mapping for
    `plan_build` and a `build_engine` called without a plan."""
    return BuildOptions(
        onnx=str(onnx), output=str(output),
        **({"static": format_hw(profile.opt)} if profile.is_static else profile.to_dict()),
        workspace_mib=workspace_mib, timing_cache=None if timing_cache is None else str(timing_cache),
        opt_level=opt_level, version_compatible=bool(version_compatible), dla_core=dla_core)
