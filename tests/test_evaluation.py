"""Pairing of hazy/clean folders (RESIDE names, error messages) and the evaluate() loop."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from nedr.model.evaluation import (DataError, evaluate, find_pair_dirs, hazy_input, match_pairs, model_dehazer,
                                   pair_images, read_image)
from nedr.model.metrics import psnr, ssim


def write(path: Path, image: np.ndarray) -> Path:
    """Save an RGB uint8 image (cv2 writes BGR)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def img(seed: int, h: int = 24, w: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def names(pairs) -> list[tuple[str, str]]:
    return [(h.name, c.name) for h, c in pairs]


def test_reside_names_match_by_stem():
    hazy = [Path(n) for n in ("1400_9.png", "1400_10.png", "0005_0.8_0.04.jpg", "same.png", "photo.jpg",
                              "a_b_3.png")]
    clean = [Path(n) for n in ("1400.png", "0005.jpg", "same.png", "photo.png", "a.png", "a_b.png")]
    assert names(match_pairs(hazy, clean)) == [
        ("1400_9.png", "1400.png"), ("1400_10.png", "1400.png"), ("0005_0.8_0.04.jpg", "0005.jpg"),
        ("same.png", "same.png"), ("photo.jpg", "photo.png"), ("a_b_3.png", "a_b.png")]


def test_unpaired_hazy_files_are_named():
    with pytest.raises(DataError, match=r"2 hazy image\(s\).*1401_9\.png, zz\.png"):
        match_pairs([Path("1400_9.png"), Path("1401_9.png"), Path("zz.png")], [Path("1400.png")])


def test_clean_stem_clash_is_ambiguous():
    with pytest.raises(DataError, match="ambiguous.*1400.png and 1400.jpg"):
        match_pairs([Path("1400_9.png")], [Path("1400.png"), Path("1400.jpg")])


def test_pair_images_reads_folders(tmp_path):
    write(tmp_path / "hazy" / "1400_9.png", img(0))
    write(tmp_path / "hazy" / "1402_8.png", img(1))
    write(tmp_path / "gt" / "1400.png", img(2))
    write(tmp_path / "gt" / "1402.png", img(3))
    (tmp_path / "hazy" / "notes.txt").write_text("not an image")  # ignored by extension
    pairs = pair_images(tmp_path / "hazy", tmp_path / "gt")
    assert names(pairs) == [("1400_9.png", "1400.png"), ("1402_8.png", "1402.png")]
    assert np.array_equal(read_image(pairs[0][1]), img(2))  # RGB order survives the round trip


def test_missing_and_empty_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    write(tmp_path / "gt" / "a.png", img(0))
    with pytest.raises(DataError, match="hazy folder not found: .*nope"):
        pair_images(tmp_path / "nope", tmp_path / "gt")
    with pytest.raises(DataError, match="hazy folder has no images.*empty"):
        pair_images(tmp_path / "empty", tmp_path / "gt")
    with pytest.raises(DataError, match="clean folder has no images.*empty"):
        pair_images(tmp_path / "gt", tmp_path / "empty")


def test_unreadable_image_is_named(tmp_path):
    write(tmp_path / "hazy" / "good_1.png", img(0))
    (tmp_path / "hazy" / "broken_1.png").write_bytes(b"not a png")
    write(tmp_path / "gt" / "good.png", img(1))
    write(tmp_path / "gt" / "broken.png", img(2))
    with pytest.raises(DataError, match=r"cannot decode image.*broken_1\.png"):
        pair_images(tmp_path / "hazy", tmp_path / "gt")
    with pytest.raises(DataError, match=r"cannot read image file.*missing\.png"):
        read_image(tmp_path / "missing.png")


def test_size_mismatch_names_both_files(tmp_path):
    write(tmp_path / "hazy" / "1400_9.png", img(0, 24, 32))
    write(tmp_path / "gt" / "1400.png", img(1, 44, 52))
    with pytest.raises(DataError, match=r"1400_9\.png is 32×24 but .*1400\.png is 52×44.*SOTS"):
        pair_images(tmp_path / "hazy", tmp_path / "gt")
    pairs = pair_images(tmp_path / "hazy", tmp_path / "gt", check=False)  # evaluate() still catches it
    with pytest.raises(DataError, match="size mismatch"):
        evaluate(hazy_input, pairs, progress=False)


@pytest.mark.parametrize("clean_name", ["gt", "clear", "clean", "GT"])
def test_find_pair_dirs(tmp_path, clean_name):
    (tmp_path / "hazy").mkdir()
    (tmp_path / clean_name).mkdir()
    assert find_pair_dirs(tmp_path) == (tmp_path / "hazy", tmp_path / clean_name)


def test_find_pair_dirs_errors(tmp_path):
    with pytest.raises(DataError, match="pairs folder not found"):
        find_pair_dirs(tmp_path / "nope")
    (tmp_path / "gt").mkdir()
    with pytest.raises(DataError, match="no hazy/ subfolder"):
        find_pair_dirs(tmp_path)
    (tmp_path / "hazy").mkdir()
    (tmp_path / "clear").mkdir()
    with pytest.raises(DataError, match="several ground-truth subfolders"):
        find_pair_dirs(tmp_path)
    (tmp_path / "gt").rmdir()
    (tmp_path / "clear").rmdir()
    with pytest.raises(DataError, match="no ground-truth subfolder"):
        find_pair_dirs(tmp_path)


@pytest.fixture
def pairs(tmp_path):
    for i, stem in enumerate(("0001", "0002")):
        clean = img(10 + i)
        hazy = np.clip(clean.astype(int) // 2 + 100, 0, 255).astype(np.uint8)
        write(tmp_path / "hazy" / f"{stem}_0.8_0.04.png", hazy)
        write(tmp_path / "clear" / f"{stem}.png", clean)
    return pair_images(*find_pair_dirs(tmp_path))


def test_evaluate_identity_row(pairs):
    result = evaluate(hazy_input, pairs, progress=False)
    assert result["count"] == 2 and result["crop"] == 0
    assert [row["name"] for row in result["rows"]] == ["0001_0.8_0.04.png", "0002_0.8_0.04.png"]
    for row, (h, c) in zip(result["rows"], pairs):
        assert row["psnr"] == pytest.approx(psnr(read_image(h), read_image(c)))
        assert row["ssim"] == pytest.approx(ssim(read_image(h), read_image(c)))
        assert row["seconds"] >= 0
    assert result["mean"]["psnr"] == pytest.approx(np.mean([r["psnr"] for r in result["rows"]]))
    cropped = evaluate(hazy_input, pairs, crop=5, progress=False)
    h, c = pairs[0]
    assert cropped["rows"][0]["psnr"] == pytest.approx(psnr(read_image(h), read_image(c), crop=5))


def test_evaluate_any_callable(pairs):
    """A perfect 'dehazer' (looks up the clean image) scores inf PSNR and SSIM 1."""
    truth = {read_image(h).tobytes(): read_image(c) for h, c in pairs}
    result = evaluate(lambda x: truth[x.tobytes()], pairs, progress=False)
    assert result["mean"]["psnr"] == math.inf and result["mean"]["ssim"] == pytest.approx(1.0)


def test_evaluate_rejects_bad_output(pairs):
    with pytest.raises(ValueError, match="uint8 array of shape"):
        evaluate(lambda x: x.astype(np.float32) / 255, pairs, progress=False)
    with pytest.raises(ValueError, match="uint8 array of shape"):
        evaluate(lambda x: x[:-1], pairs, progress=False)
    with pytest.raises(DataError, match="no image pairs"):
        evaluate(hazy_input, [], progress=False)


def test_model_dehazer(pairs, small_model):
    result = evaluate(model_dehazer(small_model), pairs[:1], progress=False)
    assert result["count"] == 1 and np.isfinite(result["mean"]["psnr"])


def test_cli_scores_every_set_and_method_in_one_table(pairs, tmp_path, capsys):
    """`nedr eval --pairs DIR --synthetic --baseline dcp hazy`: both conventions of the held-out
    set and the real pairs, one row per (set, method), the JSON holding every per-image score."""
    from nedr.cli import main

    report = tmp_path / "eval.json"
    assert main(["eval", "--pairs", str(tmp_path), "--synthetic", "--baseline", "dcp", "hazy",
                 "--json", str(report)]) == 0
    table = capsys.readouterr().out
    out = json.loads(report.read_text())["reports"]
    assert [(r["set"], r["method"]) for r in out] == [
        (s, m) for s in (str(tmp_path), "held-out synthetic (linear)", "held-out synthetic (srgb)")
        for m in ("dark channel prior", "hazy input")]
    for r in out:
        assert f"| {r['set']} | {r['method']} | {r['mean']['psnr']:.2f} |" in table
    by = {(r["set"], r["method"]): r["mean"]["psnr"] for r in out}
    lin, srgb = "held-out synthetic (linear)", "held-out synthetic (srgb)"
    assert by[(lin, "hazy input")] != by[(srgb, "hazy input")]  # the conventions give different haze
    assert out[2]["count"] == out[4]["count"] > 5
    for r in out[2:]:  # the held-out sets also report their never-trained scenes on their own
        u = r["unseen_scenes"]
        assert 0 < u["count"] < r["count"]
        assert f"| {r['set']}, unseen scenes only | {r['method']} | {u['mean']['psnr']:.2f} |" in table


def test_unseen_scene_mean_keeps_only_scenes_never_trained_on():
    """bikes 200–250 are new frames of a training clip's street; coffee and carphone are new scenes."""
    from nedr.model.evaluation import unseen_scene_mean
    from nedr.model.samples import heldout_samples, is_unseen_scene

    names = [s.name for s in heldout_samples()]
    assert {n.split("_")[0] for n in names if is_unseen_scene(n)} == {"coffee", "carphone"}
    assert all(n.startswith("bikes_") for n in names if not is_unseen_scene(n))
    report = {"rows": [{"name": "coffee", "psnr": 20.0, "ssim": 0.8}, {"name": "bikes_200", "psnr": 30.0, "ssim": 0.9},
                       {"name": "carphone_030", "psnr": 10.0, "ssim": 0.6}]}
    sub = unseen_scene_mean(report)
    assert sub["count"] == 2 and sub["names"] == ["coffee", "carphone_030"]
    assert sub["mean"]["psnr"] == pytest.approx(15.0) and sub["mean"]["ssim"] == pytest.approx(0.7)
    with pytest.raises(DataError, match="unseen scene"):
        unseen_scene_mean({"rows": [{"name": "bikes_210", "psnr": 1.0, "ssim": 0.1}]})
