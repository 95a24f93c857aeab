"""`nedr run`: one clear line and a non-zero exit for user mistakes; a full run with a fake backend."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from nedr.runtime import backends

from runtime_helpers import FakeBackend, count_frames, run_cli, write_clip
from tiny_onnx import conv_model, save


def _one_line_error(capsys, argv, match):
    rc = run_cli(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("nedr: error: ") and match in err[0], err
    return err[0]


def test_missing_file(capsys, tmp_path):
    _one_line_error(capsys, ["--source", str(tmp_path / "nope.mp4")], "no such file or folder")


def test_corrupt_file(capsys, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 50)
    _one_line_error(capsys, ["--source", str(bad)], "cannot decode it as video")


def test_unknown_camera(capsys):
    _one_line_error(capsys, ["--source", "63"], "camera 63 not found")


def test_bad_backend_name(capsys, tmp_path):
    clip = write_clip(tmp_path / "c.mp4", frames=2)
    _one_line_error(capsys, ["--source", str(clip), "--backend", "tensorflow"], "unknown backend 'tensorflow'")


def test_bad_options(capsys, tmp_path):
    clip = write_clip(tmp_path / "c.mp4", frames=2)
    _one_line_error(capsys, ["--source", str(clip), "--infer-size", "big"], "WIDTHxHEIGHT")
    _one_line_error(capsys, ["--source", str(clip), "--scale", "3"], "--scale must be in (0, 1]")
    _one_line_error(capsys, ["--source", str(clip), "--model", str(tmp_path / "x.onnx")], "no such model file")
    _one_line_error(capsys, ["--source", str(clip), "-o", str(tmp_path / "out.xyz")], "cannot tell what to write")


def test_display_without_gui(capsys, tmp_path, monkeypatch):
    from nedr.runtime import sinks

    monkeypatch.setattr(sinks, "gui_available", lambda: False)
    clip = write_clip(tmp_path / "c.mp4", frames=2)
    _one_line_error(capsys, ["--source", str(clip), "--display"], "needs OpenCV with a GUI")


def test_tensorrt_without_engine(capsys, tmp_path):
    clip = write_clip(tmp_path / "c.mp4", frames=2)
    _one_line_error(capsys, ["--source", str(clip), "--backend", "tensorrt", "-o", "none"], "needs an engine file")


def test_full_run_with_stats(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(backends.BACKENDS, "fake", FakeBackend)
    clip = write_clip(tmp_path / "c.mp4", frames=6)
    out, stats = tmp_path / "o.mp4", tmp_path / "s" / "stats.json"
    rc = run_cli(["--source", str(clip), "--backend", "fake", "-o", str(out), "--compare", "--stats", str(stats),
                  "--quiet", "--scale", "0.5"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "6 frames" in printed and f"wrote 6 frame(s) to {out}" in printed
    assert count_frames(out) == (6, 320, 128)
    data = json.loads(stats.read_text())
    assert data["frames"] == 6 and data["backend"]["backend"] == "fake" and data["command"]["scale"] == 0.5
    assert {"p50_ms", "p95_ms"} <= set(data["stages"]["infer"])


def test_default_output_name(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(backends.BACKENDS, "fake", FakeBackend)
    monkeypatch.chdir(tmp_path)
    clip = write_clip(tmp_path / "my clip.mp4", frames=3)
    assert run_cli(["--source", str(clip), "--backend", "fake", "--quiet", "--max-frames", "2"]) == 0
    assert count_frames(tmp_path / "nedr-output" / "my_clip_dehazed.mp4")[0] == 2


def test_interrupt_exit_code(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(backends.BACKENDS, "fake", lambda model=None, **kw: FakeBackend(interrupt_at=4))  # warm-up + 2 frames
    clip = write_clip(tmp_path / "c.mp4", frames=6)
    out = tmp_path / "o.mp4"
    assert run_cli(["--source", str(clip), "--backend", "fake", "-o", str(out), "--quiet"]) == 130
    assert "interrupted" in capsys.readouterr().out
    assert count_frames(out)[0] == 2


@pytest.mark.parametrize("flag", ["--infer-size", "--scale"])
def test_fast_flags_are_exclusive(flag, tmp_path):
    with pytest.raises(SystemExit):
        run_cli(["--infer-size", "64x64", "--scale", "0.5"])


@pytest.mark.parametrize("signame, code", [("SIGTERM", 0), ("SIGHUP", 0), ("SIGINT", 130)])
def test_signal_stops_a_real_nedr_run_with_a_finished_video(tmp_path, signame, code):
    """A service manager's SIGTERM (or a closed terminal's SIGHUP) ends `nedr run` like Ctrl-C: the
    video holds the frames done so far, is readable, and no `.partial` file is left; exit code 0
    (a requested stop) for SIGTERM/SIGHUP, 130 for Ctrl-C."""
    model = save(conv_model(), tmp_path / "tiny.onnx")
    total = 600
    clip = write_clip(tmp_path / "long.mp4", frames=total, size=(320, 240))
    out = tmp_path / "out" / "o.mp4"
    out.parent.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nedr.cli", "run", "--source", str(clip), "--model", str(model), "--backend",
         "onnxruntime", "--threads", "1", "-o", str(out), "--quiet", "--no-stabilize"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a background job inherits SIGINT ignored, and Python would keep ignoring it: Ctrl-C as a terminal has it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not any(out.parent.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # frames are being written once the hidden .partial file appears
    time.sleep(0.3)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(getattr(signal, signame))
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr[-2000:]
    assert [p.name for p in out.parent.iterdir()] == ["o.mp4"]  # finalised and renamed, nothing partial
    frames = count_frames(out)[0]
    assert 1 <= frames < total
    assert f"wrote {frames} frame(s)" in stdout
    assert ("Ctrl-C" if signame == "SIGINT" else f"signal {signame}") in stdout


def test_segment_writes_a_series_of_finished_files(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(backends.BACKENDS, "fake", FakeBackend)
    clip = write_clip(tmp_path / "c.mp4", frames=12, fps=5)  # 2.4 s of video
    out = tmp_path / "rec" / "cam.mp4"
    assert run_cli(["--source", str(clip), "--backend", "fake", "-o", str(out), "--segment", "1", "--quiet"]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["cam_0000.mp4", "cam_0001.mp4", "cam_0002.mp4"]
    assert [count_frames(out.parent / f"cam_000{i}.mp4")[0] for i in range(3)] == [5, 5, 2]
    assert "wrote 12 frame(s) to 3 files" in capsys.readouterr().out
    _one_line_error(capsys, ["--source", str(clip), "--backend", "fake", "-o", str(tmp_path / "imgs"),
                             "--segment", "1"], "--segment needs a video output")


def test_output_onto_its_own_source_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(backends.BACKENDS, "fake", FakeBackend)
    clip = write_clip(tmp_path / "c.mp4", frames=3)
    before = clip.read_bytes()
    _one_line_error(capsys, ["--source", str(clip), "--backend", "fake", "-o", str(clip)], "refusing to overwrite the source")
    assert clip.read_bytes() == before


def test_video_damaged_in_the_middle_keeps_frames_after_the_damage(capsys, tmp_path, monkeypatch):
    """A few frames' worth of garbage in the middle of an mp4: the frames after it are still
    dehazed, the bad ones are counted, and the exit code says the input was damaged."""
    monkeypatch.setitem(backends.BACKENDS, "fake", FakeBackend)
    clip = tmp_path / "damaged.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25, (160, 128))
    rng = np.random.default_rng(0)
    for _ in range(100):
        writer.write((rng.random((128, 160, 3)) * 255).astype(np.uint8))
    writer.release()
    data = bytearray(clip.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 20000] = rng.integers(0, 256, 20000, dtype=np.uint8).tobytes()
    clip.write_bytes(bytes(data))
    out, stats = tmp_path / "o.mp4", tmp_path / "s.json"
    err = _one_line_error(capsys, ["--source", str(clip), "--backend", "fake", "-o", str(out), "--quiet",
                                   "--stats", str(stats)], "could not be decoded and were skipped")
    bad = int(err.split(": ")[-1].split()[0])
    written = count_frames(out)[0]
    assert 0 < bad < 30 and written + bad == 100 and written > 60
    assert json.loads(stats.read_text())["source"]["bad_frames"] == bad


def test_model_without_transmission_says_stabilisation_is_off_before_the_run(capsys, tmp_path):
    """An ONNX with only `clean` (`nedr-export --no-transmission`, or someone else's graph) cannot be
    stabilised: said on stderr when the run starts, and not when stabilisation was turned off."""
    model = save(conv_model(), tmp_path / "tiny.onnx")
    clip = write_clip(tmp_path / "c.mp4", frames=3)
    argv = ["--source", str(clip), "--model", str(model), "--backend", "onnxruntime", "--threads", "1",
            "-o", str(tmp_path / "o.mp4"), "--quiet"]
    assert run_cli(argv) == 0
    err = capsys.readouterr().err
    assert f"stabilisation off: {model} has no `transmission` output" in err
    assert run_cli(argv + ["--no-stabilize"]) == 0
    assert "stabilisation off" not in capsys.readouterr().err
