"""Fakes for the runtime tests: a physics-only backend, a fake live camera, tiny clips and ONNX files."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np

from nedr.runtime.backends import Backend, Output

FAKE_T, FAKE_A = 0.6, 0.85


class FakeBackend(Backend):
    """J = (I − A)/t + A with constant t and A: cheap, deterministic, and shaped like a real backend.

    `delay` simulates a slow network; `interrupt_at` raises KeyboardInterrupt on that call (1-based);
    `seen` records (value encoded in pixel (0,0), time) per call.
    """

    name = "fake"

    def __init__(self, model=None, delay: float = 0.0, interrupt_at: int | None = None, with_t: bool = True,
                 on_infer=None, **_) -> None:
        super().__init__()
        self.delay, self.interrupt_at, self.with_t, self.on_infer = delay, interrupt_at, with_t, on_infer
        self.calls = 0
        self.shapes: list[tuple[int, ...]] = []

    def _activate(self) -> None:
        self.provides_transmission = self.with_t

    def _infer(self, batch: np.ndarray) -> Output:
        self.calls += 1
        self.shapes.append(batch.shape)
        if self.on_infer:
            self.on_infer(batch)
        if self.interrupt_at is not None and self.calls >= self.interrupt_at:
            raise KeyboardInterrupt
        if self.delay:
            time.sleep(self.delay)
        t = np.full((batch.shape[0], 1, *batch.shape[2:]), FAKE_T, np.float32)
        clean = np.clip((batch - FAKE_A) / FAKE_T + FAKE_A, 0, 1).astype(np.float32)
        return Output(clean, t if self.with_t else None, None)

    def describe(self):
        return {"backend": "fake", "delay": self.delay}


def write_clip(path: Path, frames: int = 12, size: tuple[int, int] = (160, 128), fps: float = 25.0,
               seed: int = 0) -> Path:
    """A small mp4 (mp4v) of smooth moving gradients; size is (width, height)."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.8, 3)
    for i in range(frames):
        img = np.stack([(np.sin((xx + 3 * i) / 17 + k) * 0.3 + base[k]) for k in range(3)], -1)
        img = img * (0.8 + 0.2 * np.cos(yy / 23))[..., None]
        writer.write((np.clip(img, 0, 1) * 255).astype(np.uint8))
    writer.release()
    return path


def count_frames(path: Path) -> tuple[int, int, int]:
    """(decoded frame count, width, height) of a video file, by decoding every frame."""
    cap = cv2.VideoCapture(str(path))
    n, w, h = 0, 0, 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n += 1
        h, w = frame.shape[:2]
    cap.release()
    return n, w, h


class FakeCapture:
    """A camera-like object: `read()` blocks for one frame period and returns a BGR frame whose
    pixels all hold the frame number (mod 200); `fail_after` reads then it returns (False, None)."""

    def __init__(self, fps: float = 200.0, size: tuple[int, int] = (160, 128), fail_after: int | None = None,
                 start: int = 0) -> None:
        self.period, self.size, self.fail_after = 1.0 / fps, size, fail_after
        self.count = start
        self.reads = 0
        self.released = False
        self._next = time.perf_counter()

    def isOpened(self) -> bool:
        return True

    def get(self, prop) -> float:
        return 1.0 / self.period if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self):
        if self.fail_after is not None and self.reads >= self.fail_after:
            time.sleep(0.001)
            return False, None
        self._next += self.period
        delay = self._next - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        self.reads += 1
        value = self.count % 200
        self.count += 1
        w, h = self.size
        return True, np.full((h, w, 3), value, np.uint8)

    def release(self) -> None:
        self.released = True


def tiny_onnx(path: Path) -> Path:
    """hazy → clean = clip((hazy − A)/t + A), transmission = t (constants): a stand-in with nedr's names."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dims = ["batch", 3, "height", "width"]
    inits = [numpy_helper.from_array(np.array(FAKE_A, np.float32), "a"),
             numpy_helper.from_array(np.array(FAKE_T, np.float32), "t"),
             numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
             numpy_helper.from_array(np.array(1.0, np.float32), "hi"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1"),
             numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([1], np.int64), "one")]
    nodes = [helper.make_node("Sub", ["hazy", "a"], ["d"]),
             helper.make_node("Div", ["d", "t"], ["q"]),
             helper.make_node("Add", ["q", "a"], ["r"]),
             helper.make_node("Clip", ["r", "lo", "hi"], ["clean"]),
             helper.make_node("Slice", ["hazy", "zero", "one", "axis1"], ["first"]),
             helper.make_node("Mul", ["first", "lo"], ["z"]),
             helper.make_node("Add", ["z", "t"], ["transmission"])]
    graph = helper.make_graph(nodes, "tiny_nedr", [helper.make_tensor_value_info("hazy", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("clean", TensorProto.FLOAT, dims),
                               helper.make_tensor_value_info("transmission", TensorProto.FLOAT, ["batch", 1, "height", "width"])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def run_cli(argv: list[str]) -> int:
    """`nedr run ARGV` through the real CLI entry point (exit code as the shell would see it)."""
    from nedr.cli import main

    return main(["run", *argv])


class Recorder:
    """A sink that keeps what it is given."""

    def __init__(self) -> None:
        self.items: list[tuple[int, tuple[int, ...]]] = []
        self.lock = threading.Lock()
        self.closed = False

    def __call__(self, hazy, dehazed, index) -> None:
        with self.lock:
            self.items.append((index, dehazed.shape))

    def close(self) -> None:
        self.closed = True
