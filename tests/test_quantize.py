"""`nedr quantize`: INT8 Q/DQ placement and zero points per target, accuracy against FP32 on
held-out frames, the calibration cache, the --target-psnr search, and one-line errors.

One export of the default weights (realistic activation ranges) and one calibration at 128×128 from
4 synthetic frames serve the whole file; every later quantization reuses the cached ranges.
"""
from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from nedr.export import calibration
from nedr.export.qdq import zero_points
from nedr.export.quantize import QuantizeError, parse_size, quantize
from nedr.export.sensitivity import SearchStep, _children, search_float_layers

SIZE = (128, 128)
FRAMES = 4
DEFAULT_MIN_PSNR = 30.0  # measured 52.5 dB here (128x128, 2 frames); 37.5 dB at 480x640 (4 frames)
# With every conv INT8 (stem too) these 2 frames give 42.1 dB at 128x128, already above the 38 dB
# goal at this size; so the search is asked for more, and must find what to keep in float.
TARGET_PSNR = 45.0


@pytest.fixture(scope="session")
def fp32_onnx(tmp_path_factory):
    from nedr.export import export_onnx
    from nedr.model import load_checkpoint

    return export_onnx(load_checkpoint(), tmp_path_factory.mktemp("quant") / "nedr.onnx")


@pytest.fixture(scope="session")
def trt_int8(fp32_onnx):
    """Default target (tensorrt) at the test size; calibrates once and writes the range cache."""
    out = fp32_onnx.with_name("nedr.int8.onnx")
    report = quantize(fp32_onnx, out, calib="synthetic", frames=FRAMES, method="minmax", size=SIZE,
                      validation_frames=2)
    return out, report


def _reuse_cache(src_out, dst_out):
    """The cache is keyed by content, not by file name: give another output the same ranges."""
    shutil.copy(f"{src_out}.calib.json", f"{dst_out}.calib.json")


def _inits(model):
    return {t.name: t for t in model.graph.initializer}


@pytest.mark.slow
def test_tensorrt_zero_points_are_all_zero_and_qdq_sit_on_convs(trt_int8):
    out, report = trt_int8
    model = onnx.load(str(out))
    inits = _inits(model)
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert report.calibrated and report.qdq_nodes == len(qdq) > 100
    zps = zero_points(model)
    assert zps.size >= len(qdq) and not zps.any()  # per-channel weights: one zero point per channel
    for n in qdq:  # every zero point is an int8 constant 0 (symmetric activations and weights)
        assert inits[n.input[2]].data_type == TensorProto.INT8, n.name
    consumers = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for n in qdq:  # Q/DQ exist for conv inputs (a residual Add or Pad sharing the tensor reads the same DQ)
        if n.op_type == "DequantizeLinear":
            assert "Conv" in {c.op_type for c in consumers[n.output[0]]}, n.name
    producers = {o: n for n in model.graph.node for o in n.output}
    for n in model.graph.node:  # the bias stays float (TensorRT takes no int32 bias)
        if n.op_type == "Conv" and n.input[0] in producers and producers[n.input[0]].op_type == "DequantizeLinear":
            if len(n.input) > 2:
                assert n.input[2] in inits and inits[n.input[2]].data_type == TensorProto.FLOAT
    # the stem (first conv, on raw RGB) stays float by default
    stem = {n.name: n for n in model.graph.node}[report.stem_layers[0]]
    assert report.stem_layers and stem.input[0] == "hazy" and stem.input[1] in inits
    assert inits[stem.input[1]].data_type == TensorProto.FLOAT
    # the FP32 islands stay float: the KAN basis grouped convs have no Q/DQ, the tail has none
    assert report.island_nodes["kan_basis"] > 0 and report.float_convs >= 8
    box_sums = [n for n in model.graph.node if n.op_type == "Conv" and n.input[1] in inits
                and numpy_helper.to_array(inits[n.input[1]]).shape[-2:] in ((1, 81), (81, 1))]
    assert len(box_sums) == 14  # the guided filter's window sums, FP32 in and out
    assert all(producers.get(n.input[0]) is None or producers[n.input[0]].op_type != "DequantizeLinear"
               and n.input[1] in inits and inits[n.input[1]].data_type == TensorProto.FLOAT for n in box_sums)
    meta = {p.key: p.value for p in model.metadata_props}
    assert '"precision": "int8-qdq"' in meta["nedr.options"] and '"target": "tensorrt"' in meta["nedr.options"]


@pytest.mark.slow
def test_int8_runs_in_onnxruntime_cpu_and_is_close_to_fp32(fp32_onnx, trt_int8):
    out, report = trt_int8
    frames = calibration.heldout_frames(SIZE, 2)
    fp32 = ort.InferenceSession(str(fp32_onnx), providers=["CPUExecutionProvider"])
    int8 = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])  # ORT's fused int8 kernels
    for f in frames:
        a, b = fp32.run(None, {"hazy": f})[0], int8.run(None, {"hazy": f})[0]
        assert b.shape == f.shape and b.dtype == np.float32 and np.isfinite(b).all()
        assert 10 * np.log10(1 / np.mean((a - b) ** 2)) > 20  # AVX2 kernels saturate a little (quantize.py)
    print(f"\n{report.summary()}")
    assert report.psnr_db >= DEFAULT_MIN_PSNR, report.summary()


@pytest.mark.slow
def test_cache_reuse_skips_calibration_and_target_psnr_search(fp32_onnx, trt_int8, monkeypatch, capsys):
    """With the stem quantized too (42 dB at this size), the search must find what to keep in float
    for 45 dB; the ranges come from the cache, so the calibrator must not run."""
    def no_calibration(*args, **kwargs):
        raise AssertionError("the calibrator ran although the cache matches")

    monkeypatch.setattr(calibration, "compute_ranges", no_calibration)
    out = fp32_onnx.with_name("nedr.int8.search.onnx")
    _reuse_cache(trt_int8[0], out)
    report = quantize(fp32_onnx, out, calib="synthetic", frames=FRAMES, method="minmax", size=SIZE,
                      float_stem=False, target_psnr=TARGET_PSNR, validation_frames=2, search_frames=2)
    with capsys.disabled():
        print(f"\n{report.summary()}")
    assert not report.calibrated and not report.stem_layers
    assert report.psnr_db >= TARGET_PSNR, report.summary()
    assert report.psnr_before_search_db is not None and report.psnr_before_search_db < TARGET_PSNR
    assert report.float_layers and report.float_convs == trt_int8[1].float_convs - 1 + len(report.float_layers)
    assert "/pretrained/layer1/layer1.0/Conv" in report.float_layers  # the stem, found by measurement
    props = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    assert json.loads(props["nedr.options"])["int8"]["float_layers"] == report.float_layers


@pytest.mark.slow
def test_cache_misses_when_the_key_changes(trt_int8):
    out, _ = trt_int8
    payload = json.loads(open(f"{out}.calib.json").read())
    key = payload["key"]
    assert calibration.load_cached_ranges(f"{out}.calib.json", key) is not None
    for field, value in (("method", "entropy"), ("frames", FRAMES + 1), ("calibration_set", "0" * 64),
                         ("onnx_sha256", "0" * 64), ("size", [256, 256])):
        assert calibration.load_cached_ranges(f"{out}.calib.json", {**key, field: value}) is None


# --- errors -------------------------------------------------------------------------------------

def test_onnx_without_hazy_input_is_a_clear_error(tmp_path):
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["out"])], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 128, 128])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 128, 128])])
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(QuantizeError, match="expected one input named 'hazy'") as info:
        quantize(path, tmp_path / "out.onnx", size=SIZE, frames=1)
    assert "\n" not in str(info.value) and isinstance(info.value, RuntimeError)
    assert not (tmp_path / "out.onnx").exists()


def test_missing_or_garbage_onnx(tmp_path):
    with pytest.raises(QuantizeError, match="no such ONNX file"):
        quantize(tmp_path / "absent.onnx", tmp_path / "out.onnx", size=SIZE)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(QuantizeError, match="not a readable ONNX"):
        quantize(bad, tmp_path / "out.onnx", size=SIZE)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["empty_folder", "garbage_video", "empty_video", "missing"])
def test_empty_or_unreadable_calibration_source(fp32_onnx, tmp_path, kind):
    if kind == "empty_folder":
        source = tmp_path / "frames"
        source.mkdir()
        (source / "notes.txt").write_text("no images here")
        match = "no images"
    elif kind == "garbage_video":
        source = tmp_path / "clip.mp4"
        source.write_bytes(b"\x00\x01garbage" * 100)
        match = "video"
    elif kind == "empty_video":
        source = tmp_path / "clip.mp4"
        source.write_bytes(b"")
        match = "empty"
    else:
        source, match = tmp_path / "nowhere", "not found"
    out = tmp_path / "out.onnx"
    with pytest.raises(QuantizeError, match=match) as info:
        quantize(fp32_onnx, out, calib=str(source), size=SIZE, frames=2)
    assert "\n" not in str(info.value)
    assert not out.exists() and not (tmp_path / "out.onnx.calib.json").exists()


@pytest.mark.slow
def test_bad_options(fp32_onnx, tmp_path):
    out = tmp_path / "o.onnx"
    with pytest.raises(QuantizeError, match="multiples of 32"):
        quantize(fp32_onnx, out, size=(100, 128))
    with pytest.raises(QuantizeError, match="target"):
        quantize(fp32_onnx, out, size=SIZE, target="gpu")
    with pytest.raises(QuantizeError, match="method"):
        quantize(fp32_onnx, out, size=SIZE, method="kl")
    with pytest.raises(QuantizeError, match="is the input"):
        quantize(fp32_onnx, fp32_onnx, size=SIZE)
    if importlib.util.find_spec("modelopt") is None:  # optional; never required
        with pytest.raises(QuantizeError, match="ModelOpt is not installed"):
            quantize(fp32_onnx, out, size=SIZE, frames=1, backend="modelopt")
    assert parse_size("480x640") == (480, 640)
    with pytest.raises(QuantizeError, match="HxW"):
        parse_size("480-640")


def test_folder_and_video_calibration_sources(tmp_path):
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (90, 160, 3), dtype=np.uint8) for _ in range(5)]
    for i, img in enumerate(images):
        cv2.imwrite(str(folder / f"{i}.png"), img)
    a = calibration.calibration_frames(folder, SIZE, 3)
    assert len(a) == 3 and a.frames[0].shape == (1, 3, *SIZE) and a.frames[0].dtype == np.float32
    assert 0.0 <= a.frames[0].min() and a.frames[0].max() <= 1.0
    assert calibration.calibration_frames(folder, SIZE, 3).identity == a.identity
    assert calibration.calibration_frames(folder, SIZE, 2).identity != a.identity
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 90))
    for img in images * 2:
        writer.write(img)
    writer.release()
    v = calibration.calibration_frames(video, SIZE, 4)
    assert len(v) == 4 and v.frames[0].shape == (1, 3, *SIZE)


# --- the search on a stand-in model ---------------------------------------------------------------

class _FakeGated:
    """Additive per-layer PSNR gains: the search should pick the biggest ones first."""

    def __init__(self, gains: dict[str, float], base: float):
        self.layers, self.gains, self.base, self.calls = list(gains), gains, base, 0

    def psnr(self, frames, references, float_layers=()):
        self.calls += 1
        return self.base + sum(self.gains[lay] for lay in set(float_layers)), 0.0


def test_search_picks_the_most_sensitive_layers_within_the_cap():
    gains = {"/pretrained/layer1/layer1.0/Conv": 2.0, "/pretrained/layer1/layer1.3/conv_pw/Conv": 0.3,
             "/pretrained/layer2/layer2.0/conv_pw/Conv": 0.1, "/drem/conv1/Conv": 0.05,
             "/drem/conv_block2/conv_block2.0/Conv": 1.0, "/output_conv/output_conv.6/Conv": 0.5,
             "/nrn/Conv": 0.0, "/cid_32/channel_dependent/fc1/Conv": 0.01}
    fake = _FakeGated(gains, 35.0)
    chosen, psnr, steps = search_float_layers(fake, [None], [None], 38.0)
    assert chosen[:2] == ["/pretrained/layer1/layer1.0/Conv", "/drem/conv_block2/conv_block2.0/Conv"]
    assert psnr >= 38.0 and len(chosen) == 2 and all(isinstance(s, SearchStep) for s in steps)
    assert fake.calls < 20
    chosen, psnr, _ = search_float_layers(_FakeGated(gains, 30.0), [None], [None], 38.0, max_layers=3)
    assert len(chosen) == 3 and psnr < 38.0  # the cap wins over an unreachable target
    assert [c[0] for c in _children((), list(gains))] == ["backbone", "drem", "output_head", "idrm", "kan_cid"]


@pytest.mark.slow
def test_cli_cpu_target_uses_uint8_activations(fp32_onnx, trt_int8, tmp_path, capsys, monkeypatch):
    import argparse

    from nedr.commands import quantize as command

    parser = argparse.ArgumentParser(prog="nedr quantize")
    command.configure(parser)
    out = tmp_path / "cpu.int8.onnx"
    _reuse_cache(trt_int8[0], out)  # the ranges serve both targets
    monkeypatch.setattr(calibration, "compute_ranges", lambda *a, **k: pytest.fail("recalibrated"))
    args = parser.parse_args([str(fp32_onnx), "-o", str(out), "--frames", str(FRAMES), "--method", "minmax",
                              "--size", "128x128", "--target", "cpu", "--validation-frames", "2",
                              "--json", str(tmp_path / "r.json")])
    assert args.handler is command.run and args.size == SIZE
    assert command.run(args) == 0
    text = capsys.readouterr().out
    with capsys.disabled():
        print(f"\n{text}")
    assert "INT8 vs FP32" in text and "Q/DQ nodes" in text and "QUInt8 activations" in text
    report = json.loads((tmp_path / "r.json").read_text())
    assert not report["calibrated"] and report["target"] == "cpu"
    model = onnx.load(str(out))
    inits = _inits(model)
    assert {inits[n.input[2]].data_type for n in model.graph.node if n.op_type == "QuantizeLinear"} == {TensorProto.UINT8}
    weights = {inits[n.input[0]].data_type for n in model.graph.node
               if n.op_type == "DequantizeLinear" and n.input[0] in inits and len(inits[n.input[0]].dims) == 4}
    assert weights == {TensorProto.INT8}
    from nedr.export.islands import fp32_islands

    islands = {n for names in fp32_islands(onnx.load(str(fp32_onnx))).values() for n in names}
    producers = {o: n for n in model.graph.node for o in n.output}
    assert not [n.name for n in model.graph.node if n.name in islands  # islands read float, not 8-bit
                and any(i in producers and producers[i].op_type == "DequantizeLinear" for i in n.input)]
    assert report["psnr_db"] >= DEFAULT_MIN_PSNR, text  # measured with ONNX Runtime's own CPU kernels
    with pytest.raises(SystemExit):
        parser.parse_args([str(fp32_onnx), "-o", str(out), "--size", "big"])
