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
it with exponential backoff, logging each attempt as one line on stderr. Every blocking open and
read of a live source is bounded by a timeout (`DEFAULT_TIMEOUT`, `nedr run --timeout`): OpenCV's
own open/read timeouts for FFmpeg captures, plus a watchdog for captures that ignore them (see
`LiveSource`). File sources lose no frame. Every frame is converted to 8-bit RGB
(grey, BGRA and 16-bit frames included); a size change mid-stream passes through (the pipeline
handles it). Failures to open are `SourceError` with one line.
"""
from __future__ import annotations

import contextlib
import functools
import glob
import os
import re
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import cv2
import numpy as np

from nedr.contract import IMAGE_SUFFIXES, VIDEO_SUFFIXES

from .errors import SourceError
from .frames import to_rgb8

LIVE_SCHEMES = {"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp"}
DEFAULT_FPS = 25.0
DEFAULT_TIMEOUT = 10.0  # seconds: a live source's open, each read, and the "no frame" stall notice
DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322, "rtmp": 1935, "rtmps": 443}

# FFmpeg (inside OpenCV) prints its own lines ("[tcp @ 0x…] Connection refused") on every failed
# open, which would bury nedr's one-line messages and flood a journal while a stream reconnects.
# Read when OpenCV first uses FFmpeg; set OPENCV_FFMPEG_LOGLEVEL=16 (or 24, 32) to see them again.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


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


@functools.lru_cache(maxsize=None)
def ffmpeg_timeouts_available() -> bool:
    """Whether this OpenCV has the FFmpeg backend and its open/read timeout properties (4.5.4+)."""
    return opencv_has("FFMPEG") and hasattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC") and hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC")


def open_stream(url: str, timeout: float | None = DEFAULT_TIMEOUT):
    """cv2.VideoCapture for a URL: FFmpeg with its open and read timeouts when it has them."""
    if timeout and ffmpeg_timeouts_available():
        ms = max(1, int(timeout * 1000))
        return cv2.VideoCapture(url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms,
                                                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
    return cv2.VideoCapture(url)


def log_stderr(message: str) -> None:
    """One line on stderr, above the progress bar when there is one."""
    try:
        from tqdm import tqdm
        tqdm.write(message, file=sys.stderr)
    except Exception:  # noqa: BLE001 - logging must never break a run
        print(message, file=sys.stderr, flush=True)


def redact(url: str) -> str:
    """The URL with its password masked, fit for logs and error messages."""
    try:
        parts = urlsplit(url)
        if not parts.password:
            return url
        host = parts.netloc.rpartition("@")[2]
        return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()
    except ValueError:
        return url


def why_unreachable(url: str, elapsed: float, timeout: float | None) -> str:
    """Why opening `url` failed, as far as a TCP probe of its host and port can tell."""
    waited = timeout is not None and elapsed >= 0.8 * timeout
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host, port = parts.hostname, None
    with contextlib.suppress(ValueError):
        port = parts.port or DEFAULT_PORTS.get(scheme)
    if scheme in ("udp", "srt", "rtp") or not host or not port:
        return (f"no video arrived within {timeout:g} s" if waited else
                "unreachable, wrong path or credentials, or a codec this OpenCV lacks")
    where = f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=min(1.0, timeout or 1.0)):
            pass
    except ConnectionRefusedError:
        return f"connection refused: nothing is listening on {where}"
    except socket.gaierror:
        return f"cannot resolve the host name {host!r}"
    except OSError:
        return f"no answer from {where}" + (f" within {timeout:g} s" if waited else "")
    if waited:
        return f"{where} accepts connections but sent no video within {timeout:g} s"
    return (f"{where} answers, but OpenCV cannot open a video stream there (wrong path or credentials, not a video "
            "stream, or a codec this OpenCV lacks)")


def _fps(cap) -> float:
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    return fps if np.isfinite(fps) and 0.5 < fps < 1000 else DEFAULT_FPS


class Source:
    """Base: an iterable of Frames and a context manager (`close()` releases the device/file).

    A subclass implements `__iter__`; `read()` hands out the same frames one call at a time, so a
    consumer takes frames the same way from every source, live or not.
    """

    live = False
    kind = "source"

    def __init__(self, name: str) -> None:
        self.name = name
        self.fps: float = DEFAULT_FPS
        self.frame_count: int | None = None
        self.dropped = 0
        self.frames_read = 0
        self._frames: Iterator[Frame] | None = None  # what read() takes from

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame; None once the source has ended. A file's frames are at hand, so `timeout`
        (how long a live source may wait for one) does not apply here."""
        if self._frames is None:
            self._frames = iter(self)
        return next(self._frames, None)

    def capture_time(self, index: int) -> float | None:
        """When frame `index` was captured (time.perf_counter()), for sinks that keep real time; None
        where the source keeps no such clock (a file's frames are read, not captured)."""
        return None

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
            # An encoder closed before its first frame leaves a well-formed file that OpenCV fails on
            # exactly as on garbage (mp4/mov: no video track at all, so it does not even open; AVI: it
            # opens with a frame count of 0): tell the user which of the two they have.
            empty = opened and self._cap.get(cv2.CAP_PROP_FRAME_COUNT) == 0
            self._cap.release()
            if empty or mp4_video_samples(path) == 0:
                raise SourceError(f"{path}: the video has no frames")
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


def _boxes(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """The ISO-BMFF boxes `data` holds as (type, payload), or None unless they fill it exactly."""
    boxes, at = [], 0
    while at < len(data):
        if len(data) - at < 8:
            return None
        size, kind = struct.unpack_from(">I4s", data, at)
        head = 8
        if size == 1 and len(data) - at >= 16:
            size, head = struct.unpack_from(">Q", data, at + 8)[0], 16
        elif size == 0:  # "to the end of the enclosing box"
            size = len(data) - at
        if size < head or at + size > len(data):
            return None
        boxes.append((kind, data[at + head:at + size]))
        at += size
    return boxes


def mp4_video_samples(path: str | Path, limit: int = 1 << 20) -> int | None:
    """Video frames the index of a small, complete, unfragmented MP4/MOV file lists; None for any other
    file (so 0 means a well-formed file without frames). Only files up to `limit` bytes are read:
    one without frames is a few hundred bytes."""
    try:
        top = _boxes(Path(path).read_bytes()) if os.path.getsize(path) <= limit else None
    except OSError:
        return None
    if not top or top[0][0] != b"ftyp" or any(kind == b"moof" for kind, _ in top):
        return None

    def inside(payloads: list[bytes], kind: bytes) -> list[bytes]:
        return [p for data in payloads for k, p in _boxes(data) or [] if k == kind]

    moov = [p for kind, p in top if kind == b"moov"]
    if not moov:
        return None
    samples = 0
    for trak in inside(moov[:1], b"trak"):
        mdia = inside([trak], b"mdia")
        if any(hdlr[8:12] == b"vide" for hdlr in inside(mdia, b"hdlr")):  # not audio, subtitles, timecode
            stbl = inside(inside(mdia, b"minf"), b"stbl")
            samples += sum(int.from_bytes(p[8:12], "big") for p in inside(stbl, b"stsz") + inside(stbl, b"stz2"))
    return samples


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
    2 s, … (capped at `backoff_max`), giving up after `max_retries` failed attempts in a row (None:
    never; 0: no reconnection), which ends the source with a one-line `SourceError`.

    `timeout` (seconds; None: none) bounds every blocking call, so it must be well above the
    stream's frame interval:
    * an open that has not returned after `timeout` plus a grace period counts as failed (the stuck
      call finishes in its own thread, which releases what it opened);
    * a read that took the whole `timeout` (OpenCV's FFmpeg backend gives up after it) means the
      data stopped: a stall notice, and the capture is reopened (what such a read returns is a stale
      frame the decoder held back);
    * a watchdog logs the stall notice when no frame came for `timeout`, and gives up a capture whose
      read has been blocked for longer than `timeout` plus the grace period (backends that ignore
      timeouts), starting a fresh grabber that reconnects; the old one releases its capture if the
      read ever returns.
    Each loss, reconnection attempt (number, delay), reconnection and stall is one line through `log`
    (default: stderr). `describe()` adds `reconnects`, `stalls` and `disconnected_s`: the time
    without frames from the last frame before each loss to the first frame after it (an outage
    still going on included).
    """

    live = True
    kind = "live"

    def __init__(self, name: str, opener: Callable[[], Any], *, order: str = "bgr", reconnect: bool = True,
                 max_retries: int | None = None, backoff: float = 0.5, backoff_max: float = 8.0,
                 timeout: float | None = DEFAULT_TIMEOUT, open_error: str | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        super().__init__(name)
        self._opener, self.order = opener, order
        self.reconnect, self.max_retries = reconnect, max_retries
        self.backoff, self.backoff_max = backoff, backoff_max
        self.timeout = timeout
        self.log = log or log_stderr
        self.reconnects = 0
        self.stalls = 0
        self.disconnected_s = 0.0
        self.grabbed = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._latest: tuple[int, Any, float] | None = None
        self._taken = -1
        self._stamps: dict[int, float] = {}  # capture time of the frames handed out (capture_time)
        self._ended = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._gen = 0                                   # the current grabber; older ones were given up
        self._reading: tuple[int, float] | None = None  # (grabber, since) while a read() is in progress
        self._lost_at: float | None = None              # last frame before the outage going on, if any
        self._stalled = False
        started = time.perf_counter()
        self._cap = self._try_open()
        if self._cap is None:
            raise SourceError(open_error or self._open_failure(time.perf_counter() - started))
        self._last_frame = time.perf_counter()  # the watchdog counts "no frame" from the open
        get = getattr(self._cap, "get", None)
        self.fps = _fps(self._cap) if get else DEFAULT_FPS

    @property
    def grace(self) -> float:
        """How long past `timeout` a blocked open or read is given before it is abandoned."""
        return max(1.0, 0.5 * (self.timeout or 0.0))

    def _open_failure(self, elapsed: float) -> str:
        """The one-line error when the first open fails (`elapsed`: how long it took)."""
        return f"{self.name}: cannot open this live source"

    def _open_now(self):
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

    def _try_open(self):
        """An opened capture, or None: the opener raised, returned nothing or a closed capture, or
        had not returned after `timeout` plus the grace period (or the source was closed meanwhile)."""
        if self.timeout is None:
            return self._open_now()
        lock, result, given_up = threading.Lock(), [], []

        def work() -> None:
            cap = self._open_now()
            with lock:
                if not given_up:
                    result.append(cap)
                    return
            if cap is not None:  # nobody waits for it any more
                cap.release()

        thread = threading.Thread(target=work, name=f"open:{self.name}", daemon=True)
        thread.start()
        deadline = time.perf_counter() + self.timeout + self.grace
        while True:
            thread.join(0.05)
            with lock:
                if result:
                    return result[0]
                if not thread.is_alive() or self._stop.is_set() or time.perf_counter() > deadline:
                    given_up.append(True)
                    return None

    def start(self) -> "LiveSource":
        with self._cond:
            if self._thread is None:
                cap, self._cap = self._cap, None  # the grabber owns (and releases) it from now on
                self._spawn(cap)
                if self.timeout is not None:
                    threading.Thread(target=self._watch, name=f"watch:{self.name}", daemon=True).start()
        return self

    def _spawn(self, cap) -> None:
        """A new grabber (with `cap`, or reconnecting first when None); older ones stop on their own."""
        self._gen += 1
        self._thread = threading.Thread(target=self._grab_loop, args=(self._gen, cap), name=f"grab:{self.name}",
                                        daemon=True)
        self._thread.start()

    def _grab_loop(self, gen: int, cap) -> None:
        try:
            while not self._stop.is_set() and gen == self._gen:
                if cap is None:
                    cap = self._reconnect(gen)
                    if cap is None:
                        return
                    continue
                started = time.perf_counter()
                self._reading = (gen, started)
                ok, raw = cap.read()
                if gen != self._gen:  # the watchdog gave this capture up while the read hung
                    return
                self._reading = None
                if self.timeout is not None and time.perf_counter() - started >= 0.95 * self.timeout:
                    # the read ran out its timeout: the data stopped. What it may still return is a
                    # stale frame the decoder held back, and the connection is dead: reopen it
                    self._lose(f"no frame for {self.timeout:g} s", stalled=True)
                elif ok and raw is not None:
                    self._publish(raw)
                    continue
                else:
                    self._lose("the stream ended or the connection closed")
                cap.release()
                cap = None
                if not self.reconnect:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            if gen == self._gen:
                self._error = exc
        finally:
            if cap is not None:
                cap.release()
            with self._cond:
                if gen == self._gen:  # the current grabber ended, and so does the source
                    self._ended = True
                    self._cond.notify_all()

    def _publish(self, raw) -> None:
        now = time.perf_counter()
        with self._cond:
            if self._latest is not None and self._latest[0] > self._taken:
                self.dropped += 1
            self._latest = (self.grabbed, raw, now)
            self.grabbed += 1
            self._last_frame = now
            if self._lost_at is not None:
                self.disconnected_s += now - self._lost_at
                self._lost_at = None
            self._stalled = False
            self._cond.notify_all()

    def _lose(self, why: str, stalled: bool = False) -> None:
        """The stream is gone (its read failed): the outage starts at the last frame."""
        if stalled:
            self._note_stall()
        with self._cond:
            if self._lost_at is None:
                self._lost_at = self._last_frame
        self.log(f"nedr: {self.name}: stream lost ({why})" + ("; reconnecting" if self.reconnect else ""))

    def _note_stall(self) -> None:
        with self._cond:
            if self._stalled or self._lost_at is not None:
                return
            self._stalled = True
            self.stalls += 1
        self.log(f"nedr: {self.name}: no frame for {self.timeout:g} s (stalled)")

    def _reconnect(self, gen: int):
        """Reopen with backoff; None when stopped, given up, or out of attempts (then `_error` says so)."""
        delay, attempts = self.backoff, 0
        while not self._stop.is_set() and gen == self._gen:
            if self.max_retries is not None and attempts >= self.max_retries:
                tail = f"timeout {self.timeout:g} s" if self.timeout else "no timeout"
                self._error = SourceError(
                    f"{self.name}: stream lost and reconnection is off (max retries 0, {tail})" if not attempts else
                    f"{self.name}: stream lost and {attempts} reconnection attempt{'s' if attempts > 1 else ''} "
                    f"failed (max retries {self.max_retries}, {tail})")
                return None
            attempts += 1
            of = f"/{self.max_retries}" if self.max_retries is not None else ""
            self.log(f"nedr: {self.name}: reconnect attempt {attempts}{of} in {delay:g} s")
            if self._stop.wait(delay):
                return None
            cap = self._try_open()
            if cap is not None:
                self.reconnects += 1
                gone = time.perf_counter() - (self._lost_at or self._last_frame)
                self.log(f"nedr: {self.name}: reconnected (attempt {attempts}, {gone:.1f} s without frames)")
                return cap
            delay = min(delay * 2, self.backoff_max)
        return None

    def _watch(self) -> None:
        """Stall notices, and a fresh grabber when a read ignores every timeout."""
        period = min(0.25, self.timeout / 4)
        while not self._stop.wait(period):
            with self._cond:
                if self._ended:
                    return
                now = time.perf_counter()
                stalled = self._lost_at is None and now - self._last_frame >= self.timeout
                reading = self._reading
                hung = (reading is not None and reading[0] == self._gen and now - reading[1] > self.timeout + self.grace
                        and not self._stop.is_set())
                if hung:  # give that capture up (its grabber releases it if the read ever returns)
                    self._reading = None
                    if self._lost_at is None:
                        self._lost_at = self._last_frame
                    if self.reconnect:
                        self._spawn(None)
                    else:  # the source ends here
                        self._gen += 1
                        self._ended = True
                        self._cond.notify_all()
            if stalled:
                self._note_stall()
            if hung:
                self.log(f"nedr: {self.name}: stream lost (a read blocked for {now - reading[1]:.0f} s)"
                         + ("; reconnecting" if self.reconnect else ""))

    def read(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not yet taken, waiting for one at most `timeout` seconds (None: until one
        comes); None when the source has ended or the wait ran out. Frames grabbed in between and
        never taken are skipped (counted in `dropped`), so latency never builds up."""
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
            self._stamps[seq] = stamp
            if len(self._stamps) > 512:
                del self._stamps[next(iter(self._stamps))]
        self.frames_read += 1
        return Frame(seq, to_rgb8(raw, self.order), stamp)

    def latest(self, timeout: float | None = None) -> Frame | None:
        """`read()` by the name that says what a live source hands out: the newest frame."""
        return self.read(timeout)

    def capture_time(self, index: int) -> float | None:
        """When frame `index` (one handed out recently) was captured (time.perf_counter())."""
        with self._cond:
            return self._stamps.get(index)

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:  # a read that hangs past this is released by its grabber when it returns
            thread.join(timeout=5)
        with self._cond:
            if self._cap is not None:  # never started
                self._cap.release()
                self._cap = None
            if self._lost_at is not None:  # stopped during an outage: it lasted until now
                self.disconnected_s += time.perf_counter() - self._lost_at
                self._lost_at = None

    def describe(self) -> dict[str, Any]:
        with self._cond:
            gone = self.disconnected_s + (time.perf_counter() - self._lost_at if self._lost_at is not None else 0.0)
        return {**super().describe(), "grabbed": self.grabbed, "reconnects": self.reconnects,
                "disconnected_s": round(gone, 3), "stalls": self.stalls, "timeout_s": self.timeout,
                "max_retries": self.max_retries}


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
        self.url = url
        timeout = kwargs.get("timeout", DEFAULT_TIMEOUT)
        super().__init__(redact(url), lambda: open_stream(url, timeout), **kwargs)  # name: no password

    def _open_failure(self, elapsed: float) -> str:
        limit = f"timeout {self.timeout:g} s" if self.timeout else "no timeout"
        return f"{self.name}: cannot open the stream ({limit}): {why_unreachable(self.url, elapsed, self.timeout)}"


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
            yield self._apply(frame)

    def read(self, timeout: float | None = None) -> Frame | None:
        """The inner source's next frame, transformed (the inner source says what `timeout` means)."""
        frame = self.inner.read(timeout)
        return None if frame is None else self._apply(frame)

    def _apply(self, frame: Frame) -> Frame:
        self.frames_read += 1
        return Frame(frame.index, self.fn(frame.image), frame.timestamp)

    def capture_time(self, index: int) -> float | None:
        return self.inner.capture_time(index)

    @property
    def dropped(self) -> int:  # type: ignore[override]
        return self.inner.dropped

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
