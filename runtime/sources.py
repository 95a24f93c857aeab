"""Frame sources, auto-detected from one string, each an iterable of `Frame`s (RGB uint8).

| string                                   | source                  | semantics                       |
|------------------------------------------|-------------------------|---------------------------------|
| path to a video file (or http(s)://….mp4)| `VideoFileSource`       | every frame, in order           |
| folder of images / one image / a glob    | `ImageFolderSource`     | every image, sorted by name     |
| `0`, `1`, … or `/dev/videoN`             | `CameraSource`          | live: newest frame only         |
| `rtsp://`, `rtmp://`, `http(s)://`, …    | `StreamSource`          | live, reconnects with backoff   |
| text containing `!` (GStreamer), `csi`   | `GStreamerSource`       | live (needs OpenCV + GStreamer) |

Live sources run a grabber thread that keeps only the newest frame (counting the ones nobody took
as `dropped`), so a slow consumer never builds up lag; when the stream breaks, the grabber reopens
it with exponential backoff. File sources lose no frame. Every frame is converted to 8-bit RGB
(grey, BGRA and 16-bit frames included); a size change mid-stream passes through (the pipeline
handles it). Failures to open are `SourceError` with one line.
"""
from __future__ import annotations

import contextlib
import glob
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from .errors import SourceError
from .frames import to_rgb8

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".exr", ".jp2"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".y4m"}
LIVE_SCHEMES = {"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp"}
DEFAULT_FPS = 25.0


def csi_pipeline(sensor_id: int = 0, width: int = 1920, height: int = 1080, fps: int = 30, flip: int = 0) -> str:
    """GStreamer pipeline for a Jetson CSI camera (Argus), ending in a newest-frame-only appsink."""
    return (f"nvarguscamerasrc sensor-id={sensor_id} ! "
            f"video/x-raw(memory:NVMM), width={width}, height={height}, framerate={fps}/1, format=NV12 ! "
            f"nvvidconv flip-method={flip} ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! "
            "appsink drop=1 max-buffers=1")


JETSON_CSI_PIPELINE = csi_pipeline()  # `--source csi` (or `csi:1` for sensor 1)

NO_GSTREAMER = ("this OpenCV ({version}) has no GStreamer support; the PyPI opencv-python wheels are built without "
                "it. On a Jetson use JetPack's OpenCV (sudo apt install python3-opencv, then pip uninstall "
                "opencv-python opencv-python-headless); elsewhere build OpenCV with -D WITH_GSTREAMER=ON, or give "
                "a camera index / URL instead")


@dataclass
class Frame:
    index: int          # position in the source (for live sources: the grab counter)
    image: np.ndarray   # H×W×3 uint8 RGB
    timestamp: float    # time.perf_counter() when captured


@contextlib.contextmanager
def quiet_opencv():
    """Silence OpenCV's own warnings while probing (we report one line ourselves)."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        yield
        return
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(previous)


def opencv_has(feature: str) -> bool:
    """Whether cv2.getBuildInformation() lists `feature` (e.g. "GStreamer") as YES."""
    for line in cv2.getBuildInformation().splitlines():
        name, _, value = line.strip().partition(":")
        if name.strip().lower() == feature.lower():
            return value.strip().upper().startswith("YES")
    return False


def gstreamer_available() -> bool:
    return opencv_has("GStreamer")


def _fps(cap) -> float:
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    return fps if np.isfinite(fps) and 0.5 < fps < 1000 else DEFAULT_FPS


class Source:
    """Base: an iterable of Frames and a context manager (`close()` releases the device/file)."""

    live = False
    kind = "source"

    def __init__(self, name: str) -> None:
        self.name = name
        self.fps: float = DEFAULT_FPS
        self.frame_count: int | None = None
        self.dropped = 0
        self.frames_read = 0

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "kind": self.kind, "live": self.live, "fps": self.fps,
                "frame_count": self.frame_count, "frames_read": self.frames_read, "dropped": self.dropped}


class VideoFileSource(Source):
    """Every frame of a video file, in order. Opening decodes the first frame, so a corrupt file fails
    at once with one line.

    A file damaged in the middle makes the decoder fail for a few frames and then resync: reading
    goes on past failed frames (counted in `bad_frames`, reported in the summary) while the
    container says frames remain, and gives up only after `MAX_BAD_RUN` failures in a row.
    """

    kind = "video"
    MAX_BAD_RUN = 50

    def __init__(self, path: str | Path) -> None:
        super().__init__(str(path))
        self.path = path
        self.bad_frames = 0
        with quiet_opencv():
            self._cap = cv2.VideoCapture(str(path))
            opened = self._cap.isOpened()
            ok, first = self._cap.read() if opened else (False, None)
        if not opened or not ok or first is None:
            self._cap.release()
            raise SourceError(f"{path}: cannot decode it as video (corrupt file or unsupported format)")
        self._first = first
        self.fps = _fps(self._cap)
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 else None

    def _next(self):
        """The next decodable frame, skipping (and counting) failed ones; None at the end."""
        misses = 0
        while True:
            ok, raw = self._cap.read()
            if ok and raw is not None:
                self.bad_frames += misses
                return raw
            misses += 1
            left = None if self.frame_count is None else self.frame_count - self.frames_read - self.bad_frames - misses
            if left is None or left < 0 or misses >= self.MAX_BAD_RUN:
                if left is not None and left > 0:  # gave up early: the rest of the file is unreadable
                    self.bad_frames += misses + left
                elif left is not None and misses > 1:
                    self.bad_frames += misses - 1  # the last miss is the end of the file
                return None

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        raw = self._first
        self._first = None
        while raw is not None:
            yield Frame(index, to_rgb8(raw), time.perf_counter())
            index += 1
            self.frames_read = index
            raw = self._next()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "bad_frames": self.bad_frames}


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image_rgb8(path: Path) -> np.ndarray | None:
    """Any image OpenCV reads (8/16-bit, grey, alpha) as RGB uint8; None if unreadable."""
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    if data is None or data.size == 0:
        return None
    with quiet_opencv():
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        return None
    return to_rgb8(img)


class ImageFolderSource(Source):
    """Every image of a folder (sorted by name), or an explicit list; unreadable images are skipped
    and counted (`skipped`)."""

    kind = "images"

    def __init__(self, folder_or_files: str | Path | list[Path], fps: float = DEFAULT_FPS) -> None:
        if isinstance(folder_or_files, (list, tuple)):
            files = [Path(f) for f in folder_or_files]
            if not files:
                raise SourceError("no image files given")
            name = str(files[0].parent if len(files) > 1 else files[0]) if files else "(no files)"
        else:
            folder = Path(folder_or_files)
            files, name = list_images(folder), str(folder)
            if not files:
                raise SourceError(f"{folder}: no images in this folder (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        super().__init__(name)
        self.files = files
        self.fps = fps
        self.frame_count = len(files)
        self.skipped: list[str] = []
        if read_image_rgb8(files[0]) is None and len(files) == 1:
            raise SourceError(f"{files[0]}: cannot decode it as an image (corrupt file or unsupported format)")

    def __iter__(self) -> Iterator[Frame]:
        for index, path in enumerate(self.files):
            img = read_image_rgb8(path)
            if img is None:
                self.skipped.append(path.name)
                continue
            self.frames_read += 1
            yield Frame(index, img, time.perf_counter())

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "skipped": self.skipped}


class LiveSource(Source):
    """A live feed behind a grabber thread that keeps only the newest frame.

    `opener()` returns an opened capture-like object (`read() -> (ok, frame)`, `release()`,
    optionally `isOpened()`/`get()`). A frame grabbed while the previous one was never taken counts as
    dropped. When `read()` fails the grabber releases the capture and reopens it after 0.5 s, 1 s,
    2 s, … (capped at `backoff_max`), giving up after `max_retries` failed attempts (None: never).
    """

    live = True
    kind = "live"

    def __init__(self, name: str, opener: Callable[[], Any], *, order: str = "bgr", reconnect: bool = True,
                 max_retries: int | None = None, backoff: float = 0.5, backoff_max: float = 8.0,
                 open_error: str | None = None) -> None:
        super().__init__(name)
        self._opener, self.order = opener, order
        self.reconnect, self.max_retries = reconnect, max_retries
        self.backoff, self.backoff_max = backoff, backoff_max
        self.reconnects = 0
        self.grabbed = 0
        self._cap = self._try_open()
        if self._cap is None:
            raise SourceError(open_error or f"{name}: cannot open this live source")
        get = getattr(self._cap, "get", None)
        self.fps = _fps(self._cap) if get else DEFAULT_FPS
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._latest: tuple[int, Any, float] | None = None
        self._taken = -1
        self._ended = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def _try_open(self):
        try:
            with quiet_opencv():
                cap = self._opener()
        except Exception:  # noqa: BLE001 - a failed open is a retry, not a crash
            return None
        opened = getattr(cap, "isOpened", None)
        if cap is None or (opened is not None and not opened()):
            if cap is not None:
                cap.release()
            return None
        return cap

    def start(self) -> "LiveSource":
        if self._thread is None:
            self._thread = threading.Thread(target=self._grab_loop, name=f"grab:{self.name}", daemon=True)
            self._thread.start()
        return self

    def _grab_loop(self) -> None:
        try:
            while not self._stop.is_set():
                ok, raw = self._cap.read() if self._cap is not None else (False, None)
                if ok and raw is not None:
                    with self._cond:
                        if self._latest is not None and self._latest[0] > self._taken:
                            self.dropped += 1
                        self._latest = (self.grabbed, raw, time.perf_counter())
                        self.grabbed += 1
                        self._cond.notify_all()
                    continue
                if not self._reopen():
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._error = exc
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _reopen(self) -> bool:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        if not self.reconnect:
            return False
        delay, attempts = self.backoff, 0
        while not self._stop.is_set():
            if self._stop.wait(delay):
                return False
            self._cap = self._try_open()
            if self._cap is not None:
                self.reconnects += 1
                return True
            attempts += 1
            if self.max_retries is not None and attempts >= self.max_retries:
                self._error = SourceError(f"{self.name}: stream lost and {attempts} reconnection attempts failed")
                return False
            delay = min(delay * 2, self.backoff_max)
        return False

    def latest(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not yet taken (waits for one); None when the source has ended."""
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._latest is None or self._latest[0] <= self._taken:
                if self._ended:
                    if self._error is not None:
                        raise self._error
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(0.1 if remaining is None else min(0.1, remaining))
            seq, raw, stamp = self._latest
            self._taken = seq
        self.frames_read += 1
        return Frame(seq, to_rgb8(raw, self.order), stamp)

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.latest()
            if frame is None:
                return
            yield frame

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "grabbed": self.grabbed, "reconnects": self.reconnects}


class CameraSource(LiveSource):
    kind = "camera"

    def __init__(self, index: int | str, **kwargs) -> None:
        def opener():
            return cv2.VideoCapture(index)
        what = f"camera {index}" if isinstance(index, int) else f"camera {index}"
        super().__init__(what, opener, open_error=f"{what} not found or busy (OpenCV could not open it); list cameras "
                                                  "with `v4l2-ctl --list-devices` (Linux) and check permissions", **kwargs)


class StreamSource(LiveSource):
    kind = "stream"

    def __init__(self, url: str, **kwargs) -> None:
        super().__init__(url, lambda: cv2.VideoCapture(url),
                         open_error=f"{url}: cannot open the stream (unreachable, wrong path or credentials, or a codec "
                                    "this OpenCV lacks)", **kwargs)


class GStreamerSource(LiveSource):
    kind = "gstreamer"

    def __init__(self, pipeline: str, **kwargs) -> None:
        if not gstreamer_available():
            raise SourceError("GStreamer pipeline given, but " + NO_GSTREAMER.format(version=cv2.__version__))
        if "appsink" not in pipeline:
            raise SourceError("a GStreamer source must end in appsink, e.g. '… ! videoconvert ! video/x-raw, "
                              "format=BGR ! appsink drop=1 max-buffers=1'")
        super().__init__(pipeline, lambda: cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER),
                         open_error=f"GStreamer could not start the pipeline {pipeline[:80]!r}… (check each element "
                                    "with gst-launch-1.0)", **kwargs)


class TransformSource(Source):
    """Another source with a function applied to every frame's image (e.g. synthetic haze)."""

    def __init__(self, inner: Source, fn: Callable[[np.ndarray], np.ndarray], name: str | None = None) -> None:
        super().__init__(name or inner.name)
        self.inner, self.fn = inner, fn
        self.live, self.kind = inner.live, inner.kind
        self.fps, self.frame_count = inner.fps, inner.frame_count

    def __iter__(self) -> Iterator[Frame]:
        for frame in self.inner:
            self.frames_read += 1
            yield Frame(frame.index, self.fn(frame.image), frame.timestamp)

    def latest(self, timeout: float | None = None) -> Frame | None:  # live inner sources
        frame = self.inner.latest(timeout)
        return None if frame is None else Frame(frame.index, self.fn(frame.image), frame.timestamp)

    @property
    def dropped(self) -> int:  # type: ignore[override]
        return getattr(self.inner, "dropped", 0)

    @dropped.setter
    def dropped(self, value: int) -> None:
        pass

    def close(self) -> None:
        self.inner.close()

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "source": self.name}


_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_CSI = re.compile(r"^(?:csi|jetson-csi)(?::(\d+))?$", re.IGNORECASE)


def open_source(spec: str | int | Path, **live_options) -> Source:
    """The source a string names (module docstring); SourceError with one line when it cannot open."""
    text = str(spec).strip()
    if not text:
        raise SourceError("empty source: give a video file, an image folder, a camera index, a URL or a GStreamer pipeline")
    csi = _CSI.match(text)
    if csi:
        text = csi_pipeline(int(csi.group(1) or 0))
    if "!" in text:
        return GStreamerSource(text, **live_options)
    if re.fullmatch(r"\d{1,3}", text):
        return CameraSource(int(text), **live_options)
    if re.fullmatch(r"/dev/video\d+", text):
        if not Path(text).exists():
            raise SourceError(f"camera {text} not found (no such device)")
        return CameraSource(text, **live_options)
    scheme = _SCHEME.match(text)
    if scheme:
        name = scheme.group(1).lower()
        if name == "file":
            return open_source(text[len("file://"):], **live_options)
        if name not in LIVE_SCHEMES:
            raise SourceError(f"{text}: unsupported URL scheme {name!r} (use {', '.join(sorted(LIVE_SCHEMES))})")
        path = text.split("?", 1)[0].lower()
        if name in ("http", "https") and Path(path).suffix in VIDEO_SUFFIXES:
            try:
                return VideoFileSource(text)  # a remote video file: every frame, not "newest only"
            except SourceError:
                raise SourceError(f"{text}: cannot open or decode this remote video") from None
        return StreamSource(text, **live_options)
    path = Path(text).expanduser()
    if path.is_dir():
        return ImageFolderSource(path)
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return ImageFolderSource([path])
        return VideoFileSource(path)
    if any(c in text for c in "*?["):
        files = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if files:
            return ImageFolderSource(files)
        raise SourceError(f"{text}: the pattern matches no images")
    raise SourceError(f"{text}: no such file or folder (a source is a video file, an image folder, a camera index "
                      "such as 0, an rtsp:// or http:// URL, or a GStreamer pipeline containing '!')")
