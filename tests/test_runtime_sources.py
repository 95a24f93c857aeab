"""Frame sources: detection from one string, clear one-line failures, live-source semantics."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from nedr.runtime import sources
from nedr.runtime.errors import SourceError
from nedr.runtime.frames import to_rgb8
from nedr.runtime.sources import (JETSON_CSI_PIPELINE, GStreamerSource, ImageFolderSource, LiveSource, VideoFileSource,
                                  csi_pipeline, open_source)

from runtime_helpers import FakeCapture, write_clip


def test_video_file_every_frame_in_order(tmp_path):
    clip = write_clip(tmp_path / "c.mp4", frames=9)
    src = open_source(str(clip))
    assert isinstance(src, VideoFileSource) and not src.live
    assert src.fps == pytest.approx(25) and src.frame_count == 9
    frames = list(src)
    assert [f.index for f in frames] == list(range(9))
    assert all(f.image.shape == (128, 160, 3) and f.image.dtype == np.uint8 for f in frames)
    src.close()


def test_folder_single_image_and_glob(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((32, 48, 3), 10 * i, np.uint8))
    assert isinstance(open_source(str(tmp_path)), ImageFolderSource)
    assert open_source(str(tmp_path / "f1.png")).frame_count == 1
    assert open_source(str(tmp_path / "f*.png")).frame_count == 3


@pytest.mark.parametrize("spec, message", [
    ("/no/such/video.mp4", "no such file or folder"),
    ("ftp://host/x", "unsupported URL scheme"),
    ("", "empty source"),
])
def test_bad_specs_fail_in_one_line(spec, message):
    with pytest.raises(SourceError, match=message) as info:
        open_source(spec)
    assert "\n" not in str(info.value)


def test_corrupt_video_and_image(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    with pytest.raises(SourceError, match="cannot decode it as video"):
        open_source(str(bad))
    img = tmp_path / "broken.png"
    img.write_bytes(b"nope")
    with pytest.raises(SourceError, match="cannot decode it as an image"):
        open_source(str(img))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no images"):
        open_source(str(empty))


def test_unknown_camera_is_one_line():
    with pytest.raises(SourceError, match="camera 97 not found") as info:
        open_source("97")
    assert "\n" not in str(info.value)


def test_gstreamer_without_support_says_how_to_fix(monkeypatch):
    monkeypatch.setattr(sources, "gstreamer_available", lambda: False)
    for spec in ("videotestsrc ! videoconvert ! appsink", "csi", "csi:1"):
        with pytest.raises(SourceError, match="PyPI opencv-python wheels are built without") as info:
            open_source(spec)
        assert "JetPack" in str(info.value) and "WITH_GSTREAMER" in str(info.value)


def test_gstreamer_needs_appsink(monkeypatch):
    monkeypatch.setattr(sources, "gstreamer_available", lambda: True)
    with pytest.raises(SourceError, match="must end in appsink"):
        GStreamerSource("videotestsrc ! fakesink")


def test_csi_preset():
    assert JETSON_CSI_PIPELINE.startswith("nvarguscamerasrc sensor-id=0 ! ")
    assert JETSON_CSI_PIPELINE.endswith("appsink drop=1 max-buffers=1")
    assert "sensor-id=1" in csi_pipeline(1) and "width=1280" in csi_pipeline(width=1280)


def test_url_detection(monkeypatch):
    opened = []

    class Dummy:
        def __init__(self, spec, **kw):
            opened.append((type(self).__name__, spec))

    monkeypatch.setattr(sources, "StreamSource", type("StreamSource", (Dummy,), {}))
    monkeypatch.setattr(sources, "VideoFileSource", type("VideoFileSource", (Dummy,), {}))
    open_source("rtsp://cam.local:8554/live")
    open_source("http://cam.local/mjpg/video.mjpg")
    open_source("https://example.org/clip.mp4?x=1")
    assert opened == [("StreamSource", "rtsp://cam.local:8554/live"), ("StreamSource", "http://cam.local/mjpg/video.mjpg"),
                      ("VideoFileSource", "https://example.org/clip.mp4?x=1")]


def test_live_source_keeps_only_the_newest_and_counts_drops():
    cap = FakeCapture(fps=500)
    src = LiveSource("fake", lambda: cap)
    first = src.latest(timeout=2)
    time.sleep(0.1)  # ~50 frames arrive meanwhile
    second = src.latest(timeout=2)
    src.close()
    assert second.index - first.index > 10
    assert src.dropped >= second.index - first.index - 2
    assert int(second.image[0, 0, 0]) == second.index % 200  # the frame grabbed as number `index`


def test_live_source_reconnects_with_backoff():
    caps = []

    def opener():
        cap = FakeCapture(fps=1000, fail_after=5, start=100 * len(caps))
        caps.append(cap)
        return cap

    src = LiveSource("flaky", opener, backoff=0.01, backoff_max=0.02)
    frames = []
    deadline = time.time() + 5
    while src.reconnects < 2 and time.time() < deadline:
        f = src.latest(timeout=1)
        if f is not None:
            frames.append(f)
    src.close()
    assert src.reconnects >= 2 and len(caps) >= 3
    assert caps[0].released and caps[1].released


def test_live_open_failure_is_one_line():
    with pytest.raises(SourceError, match="cannot open this live source"):
        LiveSource("nothing", lambda: None)

    class Closed(FakeCapture):
        def isOpened(self):
            return False

    with pytest.raises(SourceError, match="rtsp://x: cannot open the stream"):
        LiveSource("rtsp://x", lambda: Closed(), open_error="rtsp://x: cannot open the stream")


@pytest.mark.parametrize("frame, expected_shape", [
    (np.zeros((4, 5), np.uint8), (4, 5, 3)),
    (np.zeros((4, 5, 1), np.uint8), (4, 5, 3)),
    (np.zeros((4, 5, 4), np.uint8), (4, 5, 3)),
    (np.full((4, 5, 3), 65535, np.uint16), (4, 5, 3)),
    (np.ones((4, 5, 3), np.float32), (4, 5, 3)),
])
def test_frames_become_rgb8(frame, expected_shape):
    out = to_rgb8(frame)
    assert out.shape == expected_shape and out.dtype == np.uint8


def test_bgr_and_bgra_order():
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 200  # blue
    assert to_rgb8(bgr)[0, 0].tolist() == [0, 0, 200]
    bgra = np.dstack([bgr, np.full((2, 2), 7, np.uint8)])
    assert to_rgb8(bgra)[0, 0].tolist() == [0, 0, 200]
    assert to_rgb8(np.full((2, 2, 3), 0x1234, np.uint16))[0, 0, 0] == 0x12
