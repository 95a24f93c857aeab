"""Real-time sizing (`nedr run --realtime FPS`), the CPU real-time defaults and bundled weights by name.

Latency is faked (a function of pixels) wherever a choice is checked, so the tests do not depend on
how busy the machine is; timing itself is a benchmark's job (benchmarks/realtime_clip.py).
"""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from nedr.bundled import BUNDLED, is_bundled_name, resolve_weights, weights_folder
from nedr.contract import meets_contract, padded_hw
from nedr.runtime.pipeline import FrameProcessor, RunConfig
from nedr.runtime.realtime import choose_network_size, network_sizes
from nedr.runtime.sources import Frame

from runtime_helpers import FakeBackend, run_cli, write_clip


def per_pixel(seconds_per_megapixel: float, fixed: float = 0.0):
    calls = []

    def measure(h: int, w: int) -> float:
        calls.append((h, w))
        return fixed + seconds_per_megapixel * h * w / 1e6

    return measure, calls


@pytest.mark.parametrize("frame_hw", [(360, 640), (272, 640), (640, 360), (1080, 1920), (100, 100), (128, 129)])
def test_network_sizes_are_contract_sizes_with_the_frames_aspect(frame_hw):
    sizes = network_sizes(frame_hw)
    assert sizes[-1] == padded_hw(*frame_hw)
    assert all(meets_contract(h, w) for h, w in sizes)
    areas = [h * w for h, w in sizes]
    assert areas == sorted(areas) and len(set(sizes)) == len(sizes)
    aspect = frame_hw[1] / frame_hw[0]
    for h, w in sizes[:-1]:
        if min(h, w) > 128:  # the smallest sizes are held up by the 128 minimum on their short side
            assert abs(w / h - aspect) / aspect < 0.15, (h, w)


def test_picks_the_largest_size_within_budget_and_stops_timing_past_it():
    measure, calls = per_pixel(0.1)  # 100 ms per megapixel: 28 ms budget at 25 fps ⇒ ≤ 280,000 px
    choice = choose_network_size(measure, (1080, 1920), fps=25)
    h, w = choice.network_hw
    assert choice.reachable and h * w * 0.1e-6 <= choice.budget_s
    bigger = [s for s in network_sizes((1080, 1920)) if s[0] * s[1] > h * w]
    assert bigger[0][0] * bigger[0][1] * 0.1e-6 > choice.budget_s  # the next size up would not fit
    assert calls[-1] == bigger[0] and len(calls) == network_sizes((1080, 1920)).index(bigger[0]) + 1
    assert choice.infer_size == (w, h)  # fast mode takes (width, height)
    assert "for 25 fps" in choice.describe() and "out of reach" not in choice.describe()


def test_a_fast_machine_runs_the_frame_at_its_own_size():
    measure, _ = per_pixel(1e-6)
    choice = choose_network_size(measure, (360, 640), fps=25)
    assert choice.network_hw == (384, 640) and choice.infer_size is None


def test_out_of_reach_uses_the_smallest_size_and_says_so():
    measure, calls = per_pixel(0.0, fixed=0.5)
    choice = choose_network_size(measure, (360, 640), fps=30)
    assert not choice.reachable and choice.network_hw == network_sizes((360, 640))[0] and len(calls) == 1
    assert "out of reach" in choice.describe()
    with pytest.raises(ValueError, match="positive"):
        choose_network_size(measure, (360, 640), fps=0)


def test_frame_processor_sizes_the_network_on_the_first_frame(monkeypatch):
    measure, calls = per_pixel(0.2)
    monkeypatch.setattr("nedr.runtime.frame_math.backend_latency", lambda backend: measure)
    said = []
    backend = FakeBackend().activate()
    processor = FrameProcessor(backend, RunConfig(realtime_fps=25, realtime_log=said.append))
    frame = Frame(0, np.zeros((360, 640, 3), np.uint8), 0.0)
    work = processor.prepare(frame)
    chosen = processor.realtime.network_hw
    assert work.batch.shape[2:] == chosen and chosen != (384, 640) and len(said) == 1
    timed = len(calls)
    processor.prepare(Frame(1, np.zeros((360, 640, 3), np.uint8), 0.04))
    half = processor.prepare(Frame(2, np.zeros((180, 320, 3), np.uint8), 0.08))  # a new size keeps the fraction
    assert len(calls) == timed  # measured once, on the first frame
    scale = min(chosen[0] / 360, chosen[1] / 640)
    assert half.hw == (round(180 * scale), round(320 * scale))


def test_realtime_run_reports_its_choice(tmp_path, capsys, monkeypatch):
    from nedr.runtime import backends

    monkeypatch.setitem(backends.BACKENDS, "fake", FakeBackend)
    clip = write_clip(tmp_path / "c.mp4", frames=4, size=(320, 192))
    stats = tmp_path / "s.json"
    assert run_cli(["--source", str(clip), "--backend", "fake", "--realtime", "1000", "-o", "none", "--quiet",
                    "--stats", str(stats)]) == 0
    import json

    realtime = json.loads(stats.read_text())["realtime"]
    assert realtime["target_fps"] == 1000 and realtime["measured"] and "network" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--realtime", "0"], "--realtime must be a positive number"),
    (["--backend", "torch", "--precision", "int8"], "--precision picks the file the onnxruntime backend makes"),
])
def test_bad_realtime_options_are_one_line(capsys, argv, message):
    assert run_cli(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_precision_on_an_onnx_file_is_refused(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    assert run_cli(["--model", str(model), "--precision", "int8"]) == 2
    assert "has its precision already" in capsys.readouterr().err


def test_cpu_defaults_apply_only_when_nothing_is_chosen(monkeypatch):
    from nedr.commands import run as run_command

    monkeypatch.setattr("nedr.runtime.backends.ort_gpu_available", lambda: False)

    def args(**kw):
        base = dict(backend="auto", model=None, precision=None, infer_size=None, scale=None, realtime=None)
        return argparse.Namespace(**{**base, **kw})

    plain = args()
    assert run_command._cpu_defaults(plain, "onnxruntime")
    assert plain.precision == "int8"
    assert plain.model == ("nedr-s" if resolve_weights("nedr-s").is_file() else None)
    for chosen in (dict(backend="onnxruntime"), dict(model="m.onnx"), dict(scale=1.0), dict(realtime=10.0),
                   dict(precision="fp32"), dict(infer_size="320x180")):
        untouched = args(**chosen)
        assert not run_command._cpu_defaults(untouched, "onnxruntime") and untouched.precision == chosen.get("precision")
    assert not run_command._cpu_defaults(args(), "torch")  # auto chose torch: a CUDA GPU


def test_bundled_names_resolve_without_torch_and_files_win(tmp_path, monkeypatch):
    assert set(BUNDLED) >= {"nedr", "nedr-s"}
    assert resolve_weights(None) == resolve_weights("nedr-s") == weights_folder() / BUNDLED["nedr-s"]
    assert resolve_weights("nedr") == weights_folder() / BUNDLED["nedr"]
    assert resolve_weights("nedr-s") == weights_folder() / BUNDLED["nedr-s"]
    assert resolve_weights("x.safetensors").name == "x.safetensors" and not is_bundled_name("x.safetensors")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nedr-s").write_bytes(b"x")
    assert not is_bundled_name("nedr-s") and str(resolve_weights("nedr-s")) == "nedr-s"


def test_bundled_name_picks_the_best_backend_like_no_model(monkeypatch):
    from nedr.runtime.backends import resolve_backend_name

    assert resolve_backend_name("auto", "nedr-s") == resolve_backend_name("auto")
    with pytest.raises(Exception, match="cannot tell the backend"):
        resolve_backend_name("auto", "nedr-xl")
