"""`nedr bench`: the quick run end to end (report schema and computed numbers), plus its parts."""
from __future__ import annotations

import json
import math
import sys

import cv2
import numpy as np
import pytest

from nedr.benchmarks import candidates as cand
from nedr.benchmarks.report import image_grid, write_report
from nedr.benchmarks.suite import BenchResult, compare, fast_hw
from nedr.benchmarks.timing import interleaved
from nedr.cli import main
from nedr.commands.bench import find_pairs
from nedr.model.checkpoint import load_checkpoint
from nedr.model.complexity import gmac_per_frame
from nedr.runtime.backends import importable


# --------------------------------------------------------------------------- the quick run

@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    code = main(["bench", "--quick", "-o", str(out / "report"), "--work", str(out / "models"), "--size-budget", "0"])
    assert code == 0
    return out / "report", json.loads((out / "report" / "report.json").read_text())


@pytest.mark.slow
def test_quick_writes_every_file(quick):
    folder, report = quick
    assert report["schema"] == "nedr.bench/1"
    assert report["files"] == {"markdown": "report.md", "plots": ["latency_vs_resolution.png", "accuracy_vs_speed.png"],
                               "grid": "grid.png"}
    for name in ["report.md", "grid.png", *report["files"]["plots"]]:
        assert (folder / name).stat().st_size > 0
    grid = cv2.imread(str(folder / "grid.png"))
    columns = 2 + len(report["candidates"]) - 1
    assert grid is not None and grid.shape[1] == 320 * columns
    assert not list(folder.glob(".*partial*")), "temporary files left behind"
    markdown = (folder / "report.md").read_text()
    for heading in ("## Not run", "## Speed", "## Accuracy against the PyTorch original",
                    "## Dehazing quality against ground truth", "## Preparation"):
        assert heading in markdown


@pytest.mark.slow
def test_quick_records_machine_and_settings(quick):
    _, report = quick
    assert report["machine"]["threads"] >= 1 and report["machine"]["cpu"]["cores"] >= 1
    assert report["versions"]["onnxruntime"] and report["versions"]["torch"]
    assert report["settings"]["quick"] is True and report["settings"]["sizes"] == [[128, 128], [192, 256]]
    assert report["command"][:3] == ["nedr", "bench", "--quick"]


@pytest.mark.slow
def test_quick_accuracy_is_computed(quick):
    _, report = quick
    rows = {r["key"]: r for r in report["accuracy"]["rows"]}
    assert list(rows)[0] == "torch-fp32" and rows["torch-fp32"]["max_abs"] == 0.0
    fp32, int8 = rows["onnxruntime-fp32"], rows["onnxruntime-int8"]
    fp32_psnr = math.inf if fp32["psnr_db"] is None else fp32["psnr_db"]
    assert fp32_psnr > 60
    assert 20 < int8["psnr_db"] < fp32_psnr and int8["max_abs"] > fp32["max_abs"]
    assert fp32["ssim"] >= int8["ssim"]
    if "onnxruntime-fp16" in rows:
        assert int8["psnr_db"] < rows["onnxruntime-fp16"]["psnr_db"] < fp32_psnr


@pytest.mark.slow
def test_quick_speed_rows_are_measured_side_by_side(quick):
    _, report = quick
    keys = [c["key"] for c in report["candidates"]]
    assert keys[0] == "torch-fp32" and {"onnxruntime-fp32", "onnxruntime-int8"} <= set(keys)
    for size in ([128, 128], [192, 256]):
        rows = [r for r in report["speed"] if r["size"] == size]
        assert [r["key"] for r in rows] == keys  # every backend at every size
        assert len({r["iterations"] for r in rows}) == 1  # round-robin: the same number of calls each
        for r in rows:
            assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] and r["fps"] > 0 and r["iterations"] >= 2
            assert r["speedup_vs_reference"] > 0
            if sys.platform == "linux":
                assert r["peak_rss_mib"] > 0
        assert rows[0]["speedup_vs_reference"] == 1.0
        assert len({r["gmac_per_frame"] for r in rows}) == 1  # one network, one count, whatever runs it
        for r in rows:
            assert r["gmac_per_s"] == pytest.approx(r["gmac_per_frame"] / (r["p50_ms"] / 1000))
            assert 0 < r["fraction_of_peak"] == pytest.approx(r["gmac_per_s"] / report["machine"]["conv_peak"]["cpu"]["gmac_s"])
    small, large = ([r for r in report["speed"] if r["size"] == s][0] for s in ([128, 128], [192, 256]))
    assert small["mode"] == "full" and small["network_input"] == [128, 128]
    # --size-budget 0 sends every size after the first to fast mode, at fewer network pixels
    assert large["mode"] == "fast" and large["network_input"][0] * large["network_input"][1] < 192 * 256
    default_arch = load_checkpoint().arch  # the bundled default weights' sizes (nedr-s)
    assert small["gmac_per_frame"] == pytest.approx(gmac_per_frame(128, 128, default_arch))
    for c in report["candidates"]:
        assert c["load_s"] > 0 and c["memory"]["peak_mib"][-1] >= c["memory"]["loaded_mib"] > 0


@pytest.mark.slow
def test_quick_quality_and_not_run(quick):
    _, report = quick
    quality = report["quality"]
    rows = quality["synthetic"]["rows"]
    assert quality["synthetic"]["count"] == 2
    assert [r["key"] for r in rows][:2] == ["hazy", "dcp"] and len(rows) == 2 + len(report["candidates"])
    assert all(0 < r["psnr"] < 60 and 0 < r["ssim"] <= 1 for r in rows)
    assert rows[0]["psnr"] < rows[2]["psnr"]  # the network beats doing nothing
    assert "sots" in quality
    reasons = " ".join(f"{n['what']}: {n['reason']}" for n in report["not_run"])
    if not importable("tensorrt"):
        assert "TensorRT" in reasons and "not installed" in reasons
    if not any(c["key"].startswith("torch-fp16") for c in report["candidates"]):
        assert "PyTorch FP16" in reasons and "CUDA" in reasons


# --------------------------------------------------------------------------- parts

def test_interleaved_is_round_robin_and_excludes_warmup():
    calls = []
    runners = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    timings = interleaved(runners, warmup=2, min_iters=3, max_iters=3, min_seconds=0)
    assert calls == list("abc") * 5
    assert all(len(t.samples_ms) == 3 for t in timings.values())
    s = timings["a"].summary()
    assert s["iterations"] == 3 and 0 <= s["p50_ms"] <= s["p99_ms"] and s["fps"] > 0


def test_interleaved_adapts_iterations_to_the_time_budget():
    import time

    timings = interleaved({"slow": lambda: time.sleep(0.02), "fast": lambda: None}, warmup=0, min_iters=2,
                          max_iters=1000, min_seconds=0.05)
    n = len(timings["slow"].samples_ms)
    assert n == len(timings["fast"].samples_ms) and 2 <= n < 20  # ~0.1 s of rounds at 20 ms each
    with pytest.raises(ValueError):
        interleaved({"a": lambda: None}, min_iters=5, max_iters=2)


def _env(cuda=False, providers=("CPUExecutionProvider",), trt="TensorRT not installed"):
    return cand.Environment(cuda, list(providers) if providers is not None else None, trt)


def test_plan_lists_what_cannot_run_with_reasons():
    run, skipped = cand.plan(list(cand.BACKENDS), list(cand.PRECISIONS), _env())
    assert [c.key for c in run] == ["torch-fp32", "onnxruntime-fp32", "onnxruntime-fp16", "onnxruntime-int8"]
    what = {s["what"]: s["reason"] for s in skipped}
    assert "needs a CUDA GPU" in what["PyTorch FP16 (channels_last, CUDA graphs)"]
    assert what["TensorRT FP32 / FP16 / INT8"] == "TensorRT not installed"
    assert any("onnxruntime-gpu" in r for r in what.values())


def test_plan_on_a_gpu_machine_and_subsets():
    run, skipped = cand.plan(["torch", "tensorrt"], ["fp32", "fp16"], _env(cuda=True, trt=None))
    assert [c.key for c in run] == ["torch-fp32", "torch-fp16", "torch-fp16-channels_last", "torch-fp16-cuda_graph",
                                    "tensorrt-fp32", "tensorrt-fp16"]
    assert skipped == []
    run, skipped = cand.plan(["onnxruntime"], ["int8"], _env(providers=None))
    assert [c.key for c in run] == ["torch-fp32"]  # the reference always runs
    assert skipped == [{"what": "ONNX Runtime", "reason": "not installed (pip install onnxruntime)"}]
    with pytest.raises(ValueError, match="unknown"):
        cand.plan(["jax"], ["fp32"], _env())


def test_compare_and_fast_size():
    rng = np.random.default_rng(0)
    ref = rng.random((32, 48, 3), dtype=np.float32)
    same = compare(ref, ref.copy())
    assert same["psnr_db"] is None and same["max_abs"] == 0.0 and same["ssim"] == pytest.approx(1.0)
    noisy = compare(ref, np.clip(ref + 0.01, 0, 1))
    assert 35 < noisy["psnr_db"] < 45 and noisy["max_abs"] == pytest.approx(0.01, abs=1e-6)
    assert fast_hw((1080, 1920), (360, 640)) == (360, 640)
    assert fast_hw((256, 256), (360, 640)) == (256, 256)  # never enlarged


def _fake_result(tmp_path) -> BenchResult:
    frame = np.zeros((64, 96, 3), np.uint8)
    ref = np.full((64, 96, 3), 0.5, np.float32)
    report = {"schema": "nedr.bench/1", "created": "now", "command": ["nedr", "bench"], "seconds": 1.0,
              "settings": {"min_iters": 2, "min_seconds": 0.1},
              "machine": {"cpu": {"model": "cpu", "cores": 2}, "gpu": None, "threads": 2},
              "versions": {"python": "3"}, "model": {"checkpoint": "demo"},
              "candidates": [{"key": k, "label": k, "model_file": None, "prepare_s": 0.0, "prepare_reused": False,
                              "load_s": 0.1, "memory": None} for k in ("torch-fp32", "onnxruntime-int8")],
              "not_run": [{"what": "TensorRT", "reason": "not installed"}],
              "accuracy": {"size": [64, 96], "frames": ["f"], "rows": [
                  {"key": "torch-fp32", "label": "torch-fp32", "max_abs": 0.0, "mean_abs": 0.0, "psnr_db": None,
                   "psnr_min_db": None, "ssim": 1.0},
                  {"key": "onnxruntime-int8", "label": "onnxruntime-int8", "max_abs": 0.1, "mean_abs": 0.01,
                   "psnr_db": 40.0, "psnr_min_db": 39.0, "ssim": 0.99}]},
              "speed": [{"key": k, "size": [64, 96], "mode": "full", "network_input": [64, 96], "padded_to": [128, 128],
                         "p50_ms": ms, "p95_ms": ms, "p99_ms": ms, "fps": 1000 / ms, "speedup_vs_reference": 10 / ms,
                         "max_abs_vs_reference": 0.0} for k, ms in (("torch-fp32", 10.0), ("onnxruntime-int8", 5.0))],
              "quality": {"synthetic": {"count": 1, "rows": [{"key": "hazy", "label": "hazy input", "psnr": 9.0,
                                                              "ssim": 0.5}]},
                          "sots": {"skipped": "no folder"}, "metrics": "PSNR"}}
    return BenchResult(report, [("f", frame)], {"torch-fp32": [ref], "onnxruntime-int8": [ref + 1e-3]})


def test_report_files_from_a_result(tmp_path):
    paths = write_report(_fake_result(tmp_path), tmp_path / "r")
    data = json.loads(paths["json"].read_text())
    assert data["files"]["grid"] == "grid.png" and len(paths["plots"]) == 2
    md = paths["markdown"].read_text()
    assert "| 64×96 | onnxruntime-int8 | full, padded 128×128 | 5.0 |" in md
    assert "**TensorRT**: not installed" in md and "SOTS-indoor: not run (no folder)" in md


def test_report_without_matplotlib_keeps_the_numbers(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    paths = write_report(_fake_result(tmp_path), tmp_path / "r")
    data = json.loads(paths["json"].read_text())
    assert paths["plots"] == [] and data["files"]["plots"] == [] and paths["grid"].is_file()
    assert any("matplotlib is not installed" in n for n in data["notes"])
    assert "matplotlib is not installed" in paths["markdown"].read_text()


def test_image_grid_amplifies_each_difference(tmp_path):
    grid = image_grid(_fake_result(tmp_path))
    assert grid.shape == (2 * round(64 * 320 / 96), 3 * 320, 3)
    diff_tile = grid[round(64 * 320 / 96) + 30:, 2 * 320:]
    assert diff_tile.mean() > 20  # 1e-3 lifted by x100 to a visible grey


def test_find_pairs(tmp_path, monkeypatch):
    from nedr.model.imageio import DataError

    monkeypatch.chdir(tmp_path)
    folder, note = find_pairs(None)
    assert folder is None and "--pairs" in note
    with pytest.raises(DataError):
        find_pairs(tmp_path / "missing")
    root = tmp_path / "shared" / "data" / "sots"
    for sub in ("hazy", "gt"):
        (root / sub).mkdir(parents=True)
        cv2.imwrite(str(root / sub / "1.png"), np.zeros((8, 8, 3), np.uint8))
    assert find_pairs(None) == (root, None)


@pytest.mark.parametrize("argv, message", [
    (["--sizes", "8x8"], "too small"),
    (["--sizes", "wide"], "HxW"),
    (["--backends", "jax"], "choose from"),
    (["--precisions", "int4"], "choose from"),
])
def test_bad_options_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["bench", *argv])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_settings_exit_2_before_any_work(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["bench", "-o", str(tmp_path / "file")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["bench", "-o", str(tmp_path / "r"), "--min-iters", "0", "--pairs", str(tmp_path / "none")]) == 2
    assert "not found" in capsys.readouterr().err  # the named pairs folder is checked first
    assert main(["bench", "-o", str(tmp_path / "r"), "--min-iters", "0"]) == 2
    err = capsys.readouterr().err
    assert "--min-iters must be at least 1" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
