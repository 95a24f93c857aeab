"""Frame sinks: callables `sink(hazy_rgb, dehazed_rgb, index)` with `close()`, used as context managers.

* `VideoFileSink`: an .mp4 (mp4v) / .avi (MJPG) / .mkv file at the source's fps, written under a
  temporary name and renamed on `close()`, which the pipeline always reaches (Ctrl-C included),
  so the final name only ever holds a finished, readable file. OpenCV writers need one frame size:
  frames of another size (a source that changed resolution) are resized to the first one.
* `SegmentedVideoSink`: the same, as a series of files of a fixed duration (`--segment`).
* `ImageFolderSink`: one PNG (or JPEG) per frame, named by frame index.
* `DisplaySink`: an OpenCV window (`--display`); needs an OpenCV build with a GUI. Pressing q or
  Esc stops the run (raises `StopRun`). The pipeline calls it from the main thread.
* `NullSink`: discards frames (timing runs).
* `FunctionSink`: any callable `fn(hazy, dehazed, index)` as a sink (`as_sink` wraps what is not a Sink).

`compare=True` writes hazy | dehazed side by side instead of the dehazed frame alone.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from nedr.contract import IMAGE_SUFFIXES
from nedr.fileio import partial_name

from .errors import SinkError
from .frames import side_by_side
from .sources import opencv_has

FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}
WRITABLE_VIDEO_SUFFIXES = tuple(FOURCC)  # what a sink can write; nedr.contract.VIDEO_SUFFIXES is what a source reads
NO_GUI = ("--display needs OpenCV with a GUI backend, and this OpenCV ({version}) has none (opencv-python-headless, "
          "the default here, is GUI-less): pip uninstall opencv-python-headless && pip install opencv-python, or use "
          "the system OpenCV; or write a file with -o instead")


class StopRun(Exception):
    """A sink asked the pipeline to stop (the viewer pressed q/Esc); not an error."""


def compose(hazy: np.ndarray, dehazed: np.ndarray, compare: bool) -> np.ndarray:
    return side_by_side(hazy, dehazed) if compare else dehazed


class Sink:
    """Base: what the pipeline calls every sink by (call, `close`, `discard`, `describe`), so it needs
    no probing; a plain function becomes one through `as_sink`."""

    main_thread = False  # True: the pipeline calls it from the main thread (GUI toolkits need that)
    kind = "sink"

    def __init__(self, compare: bool = False) -> None:
        self.compare = compare
        self.frames = 0

    def __call__(self, hazy: np.ndarray, dehazed: np.ndarray, index: int) -> None:
        self.write(compose(hazy, dehazed, self.compare), index)
        self.frames += 1

    def write(self, rgb: np.ndarray, index: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def discard(self) -> None:
        """Drop whatever is unfinished instead of finishing it (a forced stop); a sink that leaves no
        file behind has nothing to drop."""

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        return {"sink": self.kind, "frames": self.frames, "compare": self.compare}


class NullSink(Sink):
    kind = "none"

    def write(self, rgb, index) -> None:
        pass


class FunctionSink(Sink):
    """Any callable `fn(hazy, dehazed, index)` as a sink (a test recorder, a caller's own output).
    It runs on the writer thread; a callable object with a `close()` (one that holds a file) is
    closed with the run, as a Sink would be."""

    def __init__(self, fn: Callable[[np.ndarray, np.ndarray, int], None]) -> None:
        super().__init__()
        self.fn = fn
        self.name = getattr(fn, "__name__", type(fn).__name__)

    def __call__(self, hazy: np.ndarray, dehazed: np.ndarray, index: int) -> None:
        self.fn(hazy, dehazed, index)

    def close(self) -> None:
        close = getattr(self.fn, "close", None)  # the one place a foreign sink is asked what it has
        if close is not None:
            close()

    def describe(self) -> dict[str, Any]:
        return {"sink": self.name}


def as_sink(sink: Sink | Callable[[np.ndarray, np.ndarray, int], None]) -> Sink:
    """`sink` itself when it is a Sink, else the callable wrapped as one."""
    return sink if isinstance(sink, Sink) else FunctionSink(sink)


def _check_parent(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SinkError(f"cannot create the output folder {parent}: {exc.strerror}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SinkError(f"cannot write {path}: no write permission in {parent}")


class VideoFileSink(Sink):
    kind = "video"

    def __init__(self, path: str | Path, fps: float, compare: bool = False) -> None:
        super().__init__(compare)
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in FOURCC:
            raise SinkError(f"{self.path}: unsupported video type {suffix!r}; use {', '.join(WRITABLE_VIDEO_SUFFIXES)}")
        if self.path.is_dir():
            raise SinkError(f"{self.path} is a folder; give a file name such as {self.path / 'out.mp4'}")
        _check_parent(self.path)
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.fourcc = FOURCC[suffix]
        # same suffix, so OpenCV picks the same container; hidden and marked partial until close()
        self.tmp = partial_name(self.path, hidden=True)
        self._writer = None
        self.size: tuple[int, int] | None = None
        self.resized = 0
        self.closed = False

    def write(self, rgb: np.ndarray, index: int) -> None:
        h, w = rgb.shape[:2]
        if self._writer is None:
            if w % 2 or h % 2:  # most codecs want even sizes: pad by one pixel
                rgb = cv2.copyMakeBorder(rgb, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
                h, w = rgb.shape[:2]
            self.size = (w, h)
            self._writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
            if not self._writer.isOpened():
                self._writer = None
                raise SinkError(f"OpenCV cannot write {self.path.suffix} video ({self.fourcc}) to {self.path}")
        if (w, h) != self.size:
            if (w + w % 2, h + h % 2) == self.size:
                rgb = cv2.copyMakeBorder(rgb, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
            else:
                rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA)
                self.resized += 1
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._writer is None:
            return
        self._writer.release()  # writes the container index (moov atom): the file is readable after this
        self._writer = None
        try:
            os.replace(self.tmp, self.path)
        except OSError as exc:
            raise SinkError(f"cannot move the finished video to {self.path}: {exc.strerror}") from None

    def discard(self) -> None:
        """Drop the unfinished file (a forced stop): nothing half-written is left under any name."""
        self.closed = True
        self.tmp.unlink(missing_ok=True)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "path": str(self.path), "fps": self.fps, "fourcc": self.fourcc,
                "size": self.size, "resized_frames": self.resized}


class SegmentedVideoSink(Sink):
    """A long recording as a series of finished files: `out_0000.mp4`, `out_0001.mp4`, ... each
    `seconds` of video, each finalised (renamed from its hidden .partial name) as the next begins,
    so a service that runs for weeks never holds its whole recording in one unfinished file."""

    kind = "video_segments"

    def __init__(self, path: str | Path, fps: float, seconds: float, compare: bool = False) -> None:
        super().__init__(compare)
        if not seconds > 0:
            raise SinkError(f"--segment must be a positive number of seconds, got {seconds}")
        self.path = Path(path)
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.per_file = max(1, round(seconds * self.fps))
        self.done: list[VideoFileSink] = []
        self.current = self._open(0)  # checks the suffix and the folder before any frame arrives

    def _open(self, number: int) -> VideoFileSink:
        name = self.path.with_name(f"{self.path.stem}_{number:04d}{self.path.suffix}")
        return VideoFileSink(name, self.fps)

    def write(self, rgb: np.ndarray, index: int) -> None:
        if self.current.frames >= self.per_file:
            self.current.close()
            self.done.append(self.current)
            self.current = self._open(len(self.done))
        self.current.write(rgb, index)
        self.current.frames += 1

    def close(self) -> None:
        if self.current.frames:
            self.current.close()
            self.done.append(self.current)
            self.current.frames = 0

    def discard(self) -> None:
        self.current.discard()

    def describe(self) -> dict[str, Any]:
        files = [str(s.path) for s in self.done]
        return {**super().describe(), "path": files[-1] if files else str(self.path), "files": files,
                "fps": self.fps, "frames_per_file": self.per_file}


class ImageFolderSink(Sink):
    kind = "images"

    def __init__(self, folder: str | Path, compare: bool = False, suffix: str = ".png", stem: str = "frame") -> None:
        super().__init__(compare)
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise SinkError(f"{self.folder} exists and is not a folder")
        if suffix not in IMAGE_SUFFIXES:
            raise SinkError(f"unsupported image type {suffix!r}")
        _check_parent(self.folder / "x")
        self.suffix, self.stem = suffix, stem

    def write(self, rgb: np.ndarray, index: int) -> None:
        path = self.folder / f"{self.stem}_{index:06d}{self.suffix}"
        if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise SinkError(f"cannot write {path}")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "path": str(self.folder)}


def gui_available() -> bool:
    for line in cv2.getBuildInformation().splitlines():
        name, _, value = line.strip().partition(":")
        if name.strip() == "GUI":
            return value.strip().upper() not in ("NONE", "NO", "")
    return opencv_has("GTK+") or opencv_has("QT") or opencv_has("Win32 UI") or opencv_has("Cocoa")


class DisplaySink(Sink):
    kind = "display"
    main_thread = True

    def __init__(self, compare: bool = False, window: str = "nedr", max_width: int = 1920) -> None:
        super().__init__(compare)
        if not gui_available():
            raise SinkError(NO_GUI.format(version=cv2.__version__))
        self.window, self.max_width = window, max_width
        self._opened = False

    def write(self, rgb: np.ndarray, index: int) -> None:
        if not self._opened:
            cv2.namedWindow(self.window, cv2.WINDOW_NORMAL)
            self._opened = True
        if rgb.shape[1] > self.max_width:
            scale = self.max_width / rgb.shape[1]
            rgb = cv2.resize(rgb, (self.max_width, round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        cv2.imshow(self.window, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            raise StopRun("window closed by the viewer")

    def close(self) -> None:
        if self._opened:
            cv2.destroyWindow(self.window)
            self._opened = False


def open_sink(output: str | Path | None, *, fps: float, compare: bool = False, segment: float | None = None) -> Sink:
    """The sink an output name asks for: a video suffix → video file (a series of `segment`-second
    files when given); a folder (existing, or a name without suffix) → one image per frame; None or
    "none" → nothing."""
    if output is None or str(output).lower() in ("", "none", "null", "-"):
        return NullSink(compare)
    path = Path(output).expanduser()
    suffix = path.suffix.lower()
    if segment is not None and suffix not in FOURCC:
        raise SinkError(f"--segment needs a video output ({', '.join(WRITABLE_VIDEO_SUFFIXES)}), got {path}")
    if suffix in FOURCC:
        return SegmentedVideoSink(path, fps, segment, compare) if segment is not None else VideoFileSink(path, fps, compare)
    if path.is_dir() or not suffix:
        return ImageFolderSink(path, compare)
    raise SinkError(f"{path}: cannot tell what to write from {suffix!r}; use a video name "
                    f"({', '.join(WRITABLE_VIDEO_SUFFIXES)}) or a folder for images")


class RealTimeSink(Sink):
    """A live source's video file in real time. The file has a fixed frame rate (the stream's), but
    a live source delivers what the pipeline keeps up with (12 of 25 fps, say), so writing each frame
    once would make a 10-minute capture a 5-minute video. Instead each frame is held until the next
    one arrives and written once per frame slot it covers, by their capture times (the newest of
    several frames within one slot is kept, the others dropped). An outage longer than `MAX_FILL_S`
    is left out (the video jumps) rather than filled with a frozen frame for its whole length."""

    MAX_FILL_S = 10.0

    def __init__(self, sink: Sink, capture_time: Callable[[int], float | None] | None) -> None:
        super().__init__()  # the inner sink composes the frames (compare or not)
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
        self.inner.discard()

    def describe(self) -> dict:
        paced = {"fps": self.fps, "frames_in": self.frames_in, "repeated": self.repeated, "dropped": self.dropped,
                 "skipped_s": round(self.skipped_s, 3)}
        return {**self.inner.describe(), "paced": paced}
