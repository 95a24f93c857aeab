"""Operator hygiene rules and atomic saving, on tiny hand-built graphs (no model export), and the
atmospheric-light step exported alone."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nedr.export import ExportError
from nedr.export.onnx_export import save_onnx_atomic
from nedr.export.ops import FORBIDDEN_OPS, TRT_SUPPORTED_OPS, check_ops, topk_bound


def graph(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "t", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def i64(name, value):
    return numpy_helper.from_array(np.array(value, np.int64), name)


def topk_model(k_nodes, k_inits, k_name="k"):
    nodes = [*k_nodes, helper.make_node("TopK", ["x", k_name], ["v", "i"], axis=1)]
    return graph(nodes, [f32("x", [1, "n"])], [f32("v", [1, "k"]),
                 helper.make_tensor_value_info("i", TensorProto.INT64, [1, "k"])], k_inits)


def test_clean_graph_passes():
    m = graph([helper.make_node("Relu", ["x"], ["y"])], [f32("x", [1, 3])], [f32("y", [1, 3])])
    assert check_ops(m) == []


def test_tables_are_consistent():
    assert "Conv" in TRT_SUPPORTED_OPS and "TopK" in TRT_SUPPORTED_OPS
    assert "NonZero" in FORBIDDEN_OPS and "ScatterND" in FORBIDDEN_OPS
    assert "INT64" not in TRT_SUPPORTED_OPS["Clip"]  # why the model clamps K with Min


def test_forbidden_unsupported_and_custom_ops_are_reported():
    m = graph([helper.make_node("CumSum", ["x", "ax"], ["a"]),
               helper.make_node("Unique", ["a"], ["b"]),
               helper.make_node("Gelu", ["b"], ["y"], domain="com.microsoft")],
              [f32("x", [4])], [f32("y", [4])], [i64("ax", 0)])
    problems = " | ".join(check_ops(m))
    assert "CumSum: 1 node(s)" in problems
    assert "Unique node" in problems and "not supported" in problems
    assert "custom domain 'com.microsoft'" in problems


def test_int64_clip_is_reported():
    m = graph([helper.make_node("Clip", ["x", "", "hi"], ["y"])],
              [helper.make_tensor_value_info("x", TensorProto.INT64, [1])],
              [helper.make_tensor_value_info("y", TensorProto.INT64, [1])], [i64("hi", 3840)])
    assert any("element type INT64" in p for p in check_ops(m))


@pytest.mark.parametrize("k, ok", [(3840, True), (3841, False)])
def test_constant_topk_k_limit(k, ok):
    m = topk_model([], [i64("k", [k])])
    assert topk_bound(m, m.graph.node[-1]) == k
    assert (check_ops(m) == []) is ok


def test_shape_derived_topk_k_needs_a_min_bound():
    shape_k = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "one"], ["n"])]
    unbounded = topk_model([*shape_k, helper.make_node("Reshape", ["n", "shape1"], ["k"])],
                           [i64("one", 1), i64("shape1", [1])])
    assert any("not bounded" in p for p in check_ops(unbounded))
    bounded = topk_model([*shape_k, helper.make_node("Min", ["n", "cap"], ["m"]),
                          helper.make_node("Reshape", ["m", "shape1"], ["k"])],
                         [i64("one", 1), i64("cap", 3840), i64("shape1", [1])])
    assert check_ops(bounded) == []


def test_save_is_atomic(tmp_path, monkeypatch):
    m = graph([helper.make_node("Relu", ["x"], ["y"])], [f32("x", [1])], [f32("y", [1])])
    out = tmp_path / "m.onnx"

    def failing_save(model, f, **kwargs):
        with open(f, "wb") as fh:
            fh.write(model.SerializeToString()[:10])  # a partial write, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx, "save_model", failing_save)
    with pytest.raises(ExportError, match="No space left on device"):
        save_onnx_atomic(m, out)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert save_onnx_atomic(m, out) == out and onnx.load(str(out)).graph.node[0].op_type == "Relu"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_model_clamps_k_to_the_limit_the_checker_enforces():
    from nedr.export.ops import TOPK_MAX
    from nedr.model.physics import TOPK_MAX as MODEL_TOPK_MAX

    assert MODEL_TOPK_MAX == TOPK_MAX == 3840


@pytest.mark.parametrize("mode", ["dark_channel", "brightest"])
def test_atmospheric_light_exports_clean_and_matches_pytorch_at_two_sizes(tmp_path, mode):
    """A's TopK chain (K from the input shape, capped; "brightest": a second TopK of at most 16)
    passes the TensorRT op rules and gives PyTorch's A in ONNX Runtime on hazy-looking frames."""
    import onnxruntime as ort
    import torch

    from nedr.model.physics import atmospheric_light

    class A(torch.nn.Module):
        def forward(self, x):
            return atmospheric_light(x, mode)

    path = tmp_path / "a.onnx"
    torch.onnx.export(A(), torch.rand(1, 3, 128, 160), str(path), input_names=["hazy"], output_names=["a"],
                      dynamic_axes={"hazy": {2: "h", 3: "w"}}, opset_version=17, dynamo=False)
    assert check_ops(onnx.load(str(path))) == []
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    for h, w in ((128, 160), (256, 320)):
        x = (0.55 + 0.4 * rng.random((1, 3, h, w))).astype(np.float32)
        want = atmospheric_light(torch.from_numpy(x), mode).numpy()
        np.testing.assert_allclose(session.run(None, {"hazy": x})[0], want, atol=1e-6)


def test_brightest_light_keeps_ties_and_agrees_in_onnx_runtime_on_quantised_frames(tmp_path):
    """uint8 frames have runs of equal dark-channel values and equal R+G+B at both cuts; which of
    the equal pixels a TopK returns differs between runtimes, so "brightest" keeps every tie: A is
    the mean over a set fixed by values alone (checked with numpy) and ONNX Runtime gives it too."""
    import onnxruntime as ort
    import torch

    from nedr.model.physics import atmospheric_light, dark_channel

    class A(torch.nn.Module):
        def forward(self, x):
            return atmospheric_light(x, "brightest")

    path = tmp_path / "a.onnx"
    torch.onnx.export(A(), torch.rand(1, 3, 128, 160), str(path), input_names=["hazy"], output_names=["a"],
                      dynamic_axes={"hazy": {2: "h", 3: "w"}}, opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(11)
    for seed in range(3):
        x = (rng.integers(150, 175, (1, 3, 192, 256)) / 255).astype(np.float32)  # few levels: many ties
        got = atmospheric_light(torch.from_numpy(x), "brightest")[0, :, 0, 0].numpy()
        dark = dark_channel(torch.from_numpy(x)).numpy().ravel()
        k = 192 * 256 // 1000
        candidates = dark >= np.sort(dark)[-k]
        assert candidates.sum() > k  # the frame does tie at the cut
        flat = x[0].reshape(3, -1)
        brightness = np.where(candidates, flat[0] + flat[1] + flat[2], -1)
        chosen = brightness >= np.sort(brightness)[-16]
        np.testing.assert_allclose(got, flat[:, chosen].mean(axis=1), atol=1e-6)
        np.testing.assert_allclose(session.run(None, {"hazy": x})[0][0, :, 0, 0], got, atol=1e-6)
