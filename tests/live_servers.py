"""Real stream servers on 127.0.0.1 for the live-source tests: FFmpeg (the static binary of the
imageio-ffmpeg wheel) serving MPEG-TS over TCP or MJPEG over HTTP, GStreamer's RTSP server where
some Python can import it, and a TCP server that accepts connections and never sends a byte.

Each server takes a free port, can be stopped and started again on the same port (to test
reconnection), and is stopped by the test that started it.
"""
from __future__ import annotations

import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

STREAM_SIZE, STREAM_FPS = "160x120", 10


def ffmpeg_exe() -> str | None:
    """imageio-ffmpeg's bundled ffmpeg, else one on PATH; None when there is neither."""
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()  # (IMAGEIO_FFMPEG_EXE, when set, is returned unchecked)
        if exe and Path(exe).is_file():
            return exe
    except Exception:  # noqa: BLE001 - not installed, or no binary for this platform
        pass
    return shutil.which("ffmpeg")


def ffmpeg_lists(exe: str, what: str) -> str:
    """`ffmpeg -muxers` / `-encoders` / `-protocols` as text."""
    return subprocess.run([exe, "-hide_banner", f"-{what}"], capture_output=True, text=True, timeout=30).stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_listening(port: int) -> bool | None:
    """Whether something listens on TCP `port`, or already serves a client there (a `listen=1` FFmpeg
    server stops listening once its one client is connected, and connecting to find out would take
    that client's place): Linux /proc/net/tcp; None where that cannot be read."""
    try:
        text = Path("/proc/net/tcp").read_text() + Path("/proc/net/tcp6").read_text()
    except OSError:
        return None
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[1].endswith(f":{port:04X}") and fields[3] in ("0A", "01"):  # LISTEN, ESTABLISHED
            return True
    return False


class ServerProcess:
    """A test server run as a child process: killed on `stop()` and on leaving a `with` block."""

    proc: subprocess.Popen | None = None

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class FfmpegServer(ServerProcess):
    """`ffmpeg -re -f lavfi -i testsrc2 …` serving one client: "mpegts" (tcp://…?listen=1) or "mjpeg"
    (multipart JPEG over HTTP, -listen 1); `url` is what a client opens."""

    def __init__(self, kind: str, log_dir: Path, port: int | None = None, fps: int = STREAM_FPS) -> None:
        self.exe = ffmpeg_exe()
        if self.exe is None:
            raise RuntimeError("no ffmpeg")
        self.kind, self.port, self.fps = kind, port or free_port(), fps
        self.log_dir = Path(log_dir)
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        if kind == "mpegts":
            codec = "mpeg2video"
            self.url = f"tcp://127.0.0.1:{self.port}"
            self.output = ["-c:v", codec, "-q:v", "5", "-g", str(fps), "-f", "mpegts", f"{self.url}?listen=1"]
        elif kind == "mjpeg":
            self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"
            self.output = ["-c:v", "mjpeg", "-q:v", "5", "-f", "mpjpeg", "-listen", "1", self.url]
        else:
            raise ValueError(kind)

    @staticmethod
    def missing(kind: str) -> str | None:
        """Why this kind of server cannot run here (None: it can)."""
        exe = ffmpeg_exe()
        if exe is None:
            return "no ffmpeg: pip install imageio-ffmpeg (the dev extra has it) or put ffmpeg on PATH"
        muxer, encoder = {"mpegts": ("mpegts", "mpeg2video"), "mjpeg": ("mpjpeg", "mjpeg")}[kind]
        try:
            muxers, encoders = ffmpeg_lists(exe, "muxers"), ffmpeg_lists(exe, "encoders")
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{exe} does not run here: {exc}"
        if f" {muxer} " not in muxers or f" {encoder} " not in encoders:
            return f"{exe} lacks the {muxer} muxer or the {encoder} encoder"
        return None

    def start(self, wait: float = 10.0) -> "FfmpegServer":
        self.starts += 1
        log = open(self.log_dir / f"ffmpeg-{self.kind}-{self.port}-{self.starts}.log", "wb")
        cmd = [self.exe, "-hide_banner", "-nostdin", "-loglevel", "warning", "-re", "-f", "lavfi",
               "-i", f"testsrc2=size={STREAM_SIZE}:rate={self.fps}", *self.output]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            listening = is_listening(self.port)
            if listening is None:  # cannot tell: give it a moment
                time.sleep(1.0)
                break
            if listening:
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"ffmpeg exited ({self.proc.returncode}): {self.log_tail()}")
            time.sleep(0.05)
        else:
            raise RuntimeError(f"ffmpeg did not listen on {self.port} within {wait} s: {self.log_tail()}")
        return self

    def log_tail(self) -> str:
        logs = sorted(self.log_dir.glob(f"ffmpeg-{self.kind}-{self.port}-*.log"))
        return logs[-1].read_text(errors="replace")[-800:] if logs else ""


class SilentServer:
    """Accepts TCP connections and never sends anything (a camera that hangs after the handshake)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()

    def __enter__(self) -> "SilentServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


RTSP_SERVER = r'''
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(sys.argv[1])
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch("( videotestsrc is-live=true pattern=ball "
                   "! video/x-raw,format=I420,width=160,height=120,framerate=10/1 "
                   "! jpegenc quality=80 ! rtpjpegpay name=pay0 pt=26 )")
factory.set_shared(True)
server.get_mount_points().add_factory("/test", factory)
if not server.attach(None):
    sys.exit("cannot listen on port " + sys.argv[1])
print("ready", flush=True)
GLib.MainLoop().run()
'''

RTSP_CHECK = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
              "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
              "assert all(Gst.ElementFactory.find(e) for e in ('videotestsrc', 'jpegenc', 'rtpjpegpay'))")


def rtsp_python() -> tuple[str | None, str]:
    """A Python that can run GStreamer's RTSP server (this one, or the system's: PyGObject is an apt
    package, not a wheel), and if none, why not."""
    candidates = [sys.executable] + [p for p in ("/usr/bin/python3", shutil.which("python3")) if p]
    tried = []
    for exe in dict.fromkeys(candidates):
        if not Path(exe).exists() or any(Path(exe).resolve() == Path(t).resolve() for t in tried):
            continue
        tried.append(exe)
        probe = subprocess.run([exe, "-c", RTSP_CHECK], capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:
            return exe, ""
    return None, ("GStreamer's RTSP server is not importable (gi + GstRtspServer 1.0 with videotestsrc, jpegenc, "
                  f"rtpjpegpay) by {', '.join(tried)}; on Debian/Ubuntu: apt install python3-gi "
                  "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good")


class RtspServer(ServerProcess):
    """GStreamer's RTSP server in a child process (so it can be killed and restarted): MJPEG over RTP."""

    def __init__(self, python: str, log_dir: Path, port: int | None = None) -> None:
        self.python, self.port, self.log_dir = python, port or free_port(), Path(log_dir)
        self.url = f"rtsp://127.0.0.1:{self.port}/test"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, wait: float = 15.0) -> "RtspServer":
        self.starts += 1
        script = self.log_dir / "rtsp_server.py"
        script.write_text(RTSP_SERVER)
        log = open(self.log_dir / f"rtsp-{self.port}-{self.starts}.log", "wb")
        self.proc = subprocess.Popen([self.python, str(script), str(self.port)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=log)
        log.close()
        ready, _, _ = select.select([self.proc.stdout], [], [], wait)
        line = self.proc.stdout.readline() if ready else b""  # "ready" once it listens (EOF if it died)
        if b"ready" not in line:
            self.stop()
            raise RuntimeError(f"the RTSP server did not start: {(self.log_dir / f'rtsp-{self.port}-{self.starts}.log').read_text()[-800:]}")
        return self

