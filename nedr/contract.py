"""The facts every stage must agree on, in one place: tensor names, the size contract, size text, file kinds.

The exporter writes these into the ONNX, the engine builder and Triton repository read them back, and
the runtime feeds frames by them; a second copy anywhere is a mismatch waiting to happen. Standard
library only, and nothing from `nedr`: a Jetson runtime without torch imports it, and every other
module can import it without an import circle.
"""
from __future__ import annotations

import re

# Tensor names of every exported graph (docs/model.md): one input, J and (optionally) t out.
INPUT_NAME = "hazy"
OUTPUT_CLEAN = "clean"
OUTPUT_TRANSMISSION = "transmission"

# The model name (and repository folder) `nedr export --triton` writes and the triton backend asks a
# server for when none is given (README "Triton model repository"): both sides of one deployment.
TRITON_MODEL_NAME = "nedr"

# ONNX metadata props: META_PREFIX + key, read back without the prefix by nedr.export.metadata.read_metadata.
META_PREFIX = "nedr."
META_VERSION = "version"
META_CHECKPOINT = "checkpoint"
META_CHECKPOINT_SHA256 = "checkpoint_sha256"
META_WEIGHTS_SHA256 = "weights_sha256"
META_OPTIONS = "options"
META_INPUT = "input"
META_FAST = "fast"
META_SOURCE_ONNX_SHA256 = "source_onnx_sha256"

# The network's size contract (docs/model.md): H and W multiples of PAD_MULTIPLE and at least MIN_SIZE.
PAD_MULTIPLE = 32
MIN_SIZE = 128

# The scattering-model constants the exported graph bakes in and the torch-free runtime (temporal
# filtering on ONNX Runtime/TensorRT outputs) recomputes: a drift between the two would make the
# runtime's A differ from the graph's (docs/model.md §6-7).
DARK_PATCH = 15                 # dark channel: min over a DARK_PATCH² window
TOP_FRACTION_DIVISOR = 1000     # A from the ⌊H·W / 1000⌋ pixels with the brightest dark channel
TOPK_MAX = 3840                 # TensorRT's TopK limit on K ("k <= 3840"); exports clamp K to it
A_MAX = 220.0 / 255.0           # the public code's clip of the dark-channel A
T_MIN, T_MAX = 0.05, 0.95       # the network's transmission range

# File kinds by suffix (lower case). IMAGE_SUFFIXES and VIDEO_SUFFIXES are what can be read; what a
# sink can write is its own narrower table (nedr.runtime.sinks.WRITABLE_VIDEO_SUFFIXES, from its FOURCCs).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".exr", ".jp2")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".y4m")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
ONNX_SUFFIXES = (".onnx",)
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt")

_HW = re.compile(r"^\s*(\d+)\s*[xX×,]\s*(\d+)\s*$")


def padded_size(size: int) -> int:
    """One side after the right/bottom pad, so every caller pads to the size the network accepts."""
    return max(MIN_SIZE, -(-int(size) // PAD_MULTIPLE) * PAD_MULTIPLE)


def padded_hw(h: int, w: int) -> tuple[int, int]:
    """A frame's (H, W) after the pad: the size the network, an engine profile or a batch sees."""
    return padded_size(h), padded_size(w)


def meets_contract(h: int, w: int) -> bool:
    """Whether the network takes H×W as it is (no pad), the check every static size must pass."""
    return h % PAD_MULTIPLE == 0 and w % PAD_MULTIPLE == 0 and min(h, w) >= MIN_SIZE


def parse_hw(text: str) -> tuple[int, int]:
    """Size text → (H, W), height first as in N×3×H×W, so every option reads a size one way.

    Accepts 'HxW' with x, X, × or a comma between and spaces around; only the syntax is checked
    (callers decide what range they accept). Raises ValueError, which callers turn into their own
    error type.
    """
    m = _HW.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not HxW (height x width), e.g. 736x1280")
    return int(m.group(1)), int(m.group(2))
