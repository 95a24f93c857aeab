"""Bad input through the CLI: one line on stderr, exit code 2, nothing partial or overwritten.

The README's "Bad input" table lists these cases; each row names the test that asserts it, most
of them here.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from nedr.cli import main
from nedr.runtime import backends

from runtime_helpers import FakeBackend, write_clip


def one_line_error(capsys, argv: list[str], match: str) -> str:
    rc = main(argv)
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.startswith("nedr")]
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("nedr: error: ") and match in err[0], err
    return err[0]


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    assert cv2.imwrite(str(path), (rng.random((48, 64, 3)) * 255).astype(np.uint8))
    return path


def test_tiny_image(capsys, tmp_path):
    path = tmp_path / "tiny.png"
    cv2.imwrite(str(path), np.zeros((10, 10, 3), np.uint8))
    one_line_error(capsys, ["dehaze", str(path), "-o", str(tmp_path / "o.png")], "tiny.png: image is 10×10")


def test_output_equal_to_input_is_refused(capsys, photo):
    before = photo.read_bytes()
    one_line_error(capsys, ["dehaze", str(photo), "-o", str(photo)], "refusing to overwrite the input")
    assert photo.read_bytes() == before


def test_output_under_a_file(capsys, tmp_path, photo):
    (tmp_path / "afile").write_text("x")
    one_line_error(capsys, ["dehaze", str(photo), "-o", str(tmp_path / "afile" / "o.png")], "a part of that path is a file")


@pytest.mark.parametrize("content", [b"", b"just some text\n"])
def test_text_or_empty_file_named_png(capsys, tmp_path, content):
    path = tmp_path / "fake.png"
    path.write_bytes(content)
    one_line_error(capsys, ["dehaze", str(path)], "cannot decode image")


@pytest.mark.parametrize("content, match", [(b"", "an ONNX model without a graph"),
                                            (b"\x08\x07\x12\xff\xff\xff", "not a readable ONNX"),
                                            (b"just some text\n", "not a readable ONNX")])
@pytest.mark.parametrize("command", ["inspect", "quantize"])
def test_empty_truncated_or_text_onnx(capsys, tmp_path, content, match, command):
    path = tmp_path / "m.onnx"
    path.write_bytes(content)
    argv = [command, str(path)] + (["-o", str(tmp_path / "q.onnx")] if command == "quantize" else [])
    one_line_error(capsys, argv, f"{path}: {match}")
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_run_with_a_text_file_as_model(capsys, tmp_path):
    """The model is loaded before any output is opened: nothing is written next to the clip."""
    clip = write_clip(tmp_path / "c.mp4", frames=2)
    model = tmp_path / "x.onnx"
    model.write_text("just some text\n")
    out = tmp_path / "o.mp4"
    line = one_line_error(capsys, ["run", "--source", str(clip), "--model", str(model), "--backend", "onnxruntime",
                                   "--threads", "1", "-o", str(out), "--quiet"], "cannot load")
    assert str(model) in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4", "x.onnx"]


def _zero_frame_video(path):
    """What an encoder leaves when it is closed before its first frame: a well-formed container
    (mp4: ftyp, empty mdat and a moov without tracks; AVI: headers and an empty index)."""
    fourcc = "mp4v" if path.suffix == ".mp4" else "MJPG"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25, (64, 48))
    assert writer.isOpened()
    writer.release()
    assert path.stat().st_size > 0
    return path


@pytest.mark.parametrize("name, match", [("zero.mp4", "the video has no frames"), ("zero.avi", "the video has no frames"),
                                         ("text.mp4", "cannot decode it as video (corrupt file or unsupported format)")])
def test_run_on_a_video_without_frames_or_a_text_file(capsys, tmp_path, monkeypatch, name, match):
    """A zero-frame video is told apart from a corrupt one (OpenCV fails on both alike); either way
    the run stops before anything is written."""
    monkeypatch.setitem(backends.BACKENDS, "fake", FakeBackend)
    source = tmp_path / name
    if name.startswith("zero"):
        _zero_frame_video(source)
    else:
        source.write_text("just some text\n")
    out = tmp_path / "out.mp4"
    one_line_error(capsys, ["run", "--source", str(source), "--backend", "fake", "-o", str(out), "--quiet"],
                   f"{source}: {match}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("content", [b"", b"just some text\n"])
def test_empty_or_text_checkpoint(capsys, tmp_path, photo, suffix, content):
    checkpoint = tmp_path / f"weights{suffix}"
    checkpoint.write_bytes(content)
    kind = "PyTorch checkpoint" if suffix == ".pth" else "safetensors file"
    one_line_error(capsys, ["dehaze", str(photo), "--checkpoint", str(checkpoint), "-o", str(tmp_path / "o.png")],
                   f"{checkpoint}: not a readable {kind}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["photo.png", checkpoint.name])


def test_folder_with_bad_files_skips_counts_and_exits_nonzero(capsys, tmp_path, photo):
    """Good images are written; unreadable or tiny ones are named, counted, and the exit code says so."""
    folder = tmp_path / "in"
    folder.mkdir()
    photo.rename(folder / "good.png")
    (folder / "broken.png").write_text("not an image")
    cv2.imwrite(str(folder / "tiny.png"), np.zeros((8, 8, 3), np.uint8))
    out = tmp_path / "out"
    assert main(["dehaze", str(folder), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "skipped" in err and "broken.png" in err and "tiny.png" in err
    assert "2 of 3 image(s) could not be read" in err
    assert sorted(p.name for p in out.iterdir()) == ["good_dehazed.png"]  # and nothing partial


@pytest.mark.parametrize("kind", ["alpha", "16bit", "grey", "flat"])
def test_odd_but_valid_images_dehaze(tmp_path, kind):
    """Alpha is dropped, 16-bit scaled to 8, grey expanded to RGB; a flat image gives finite output."""
    path, out = tmp_path / f"{kind}.png", tmp_path / f"{kind}_out.png"
    image = {"alpha": np.full((40, 56, 4), 180, np.uint8), "16bit": np.full((40, 56, 3), 40000, np.uint16),
             "grey": np.tile(np.arange(56, dtype=np.uint8)[None] * 4, (40, 1)),
             "flat": np.full((40, 56, 3), 120, np.uint8)}[kind]
    assert cv2.imwrite(str(path), image)
    assert main(["dehaze", str(path), "-o", str(out)]) == 0
    result = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert result.shape == (40, 56, 3) and result.dtype == np.uint8
    if kind == "flat":  # was 0/0 in the guided filter's min-max normalisation: NaN cast to uint8
        assert result.std() < 1.0
