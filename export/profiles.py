"""Optimisation profiles: which input sizes a TensorRT engine accepts (pure Python, no TensorRT).

An engine built from the dynamic-shape ONNX only runs frames whose padded size lies inside the
profile it was built with, and it is fastest at the profile's `opt` size. The network contract
(docs/model.md) pads every frame right/bottom to a multiple of 32 and needs at least 128 per side, so
every bound here must be a multiple of 32 and >= 128, and min <= opt <= max per dimension.

Defaults: min 256×256, opt 736×1280 (720p pads to 736×1280), max 1088×1920 (1080p pads to
1088×1920). DLA only runs
static shapes, so a DLA build uses `static_profile(h, w)` (min = opt = max).

Batch is 1: the toolkit streams video frame by frame.
"""
from __future__ import annotations

from dataclasses import dataclass

from nedr import contract
from nedr.contract import MIN_SIZE, PAD_MULTIPLE, padded_hw
from nedr.errors import UserError

DEFAULT_MIN = (256, 256)
DEFAULT_OPT = (736, 1280)   # 720p after the x32 pad (720 is not a multiple of 32)
DEFAULT_MAX = (1088, 1920)


class ProfileError(UserError, ValueError):
    """A size or optimisation profile that breaks the network contract; the message names the fix."""


def format_hw(hw: tuple[int, int]) -> str:
    return f"{hw[0]}x{hw[1]}"


def parse_hw(text: str, *, what: str = "size") -> tuple[int, int]:
    """`nedr.contract.parse_hw`, then `check_hw`: a profile bound must be a size the network takes as it is."""
    try:
        hw = contract.parse_hw(text)
    except ValueError:
        raise ProfileError(f"{what} {text!r} is not HxW (height x width), e.g. 736x1280") from None
    return check_hw(hw, what=what)


def check_hw(hw: tuple[int, int], *, what: str = "size") -> tuple[int, int]:
    """The size unchanged when it meets the contract, else a ProfileError saying the nearest valid one."""
    h, w = (int(v) for v in hw)
    if min(h, w) < MIN_SIZE:
        raise ProfileError(f"{what} {h}x{w}: each side must be >= {MIN_SIZE}")
    if h % PAD_MULTIPLE or w % PAD_MULTIPLE:
        raise ProfileError(f"{what} {h}x{w}: height and width must be multiples of {PAD_MULTIPLE} "
                           f"(try {format_hw(padded_hw(h, w))})")
    return h, w


@dataclass(frozen=True)
class Profile:
    """min/opt/max (H, W) of the `hazy` input; batch and channels are fixed at 1 and 3."""

    min: tuple[int, int] = DEFAULT_MIN
    opt: tuple[int, int] = DEFAULT_OPT
    max: tuple[int, int] = DEFAULT_MAX

    def __post_init__(self) -> None:
        for name in ("min", "opt", "max"):
            object.__setattr__(self, name, check_hw(getattr(self, name), what=f"--{name}"))
        for axis, label in ((0, "height"), (1, "width")):
            lo, mid, hi = self.min[axis], self.opt[axis], self.max[axis]
            if lo > hi:
                raise ProfileError(f"profile {label}: min {lo} > max {hi} (--min {format_hw(self.min)}, "
                                   f"--max {format_hw(self.max)}); min must be <= max in each dimension")
            if not lo <= mid <= hi:
                raise ProfileError(f"profile {label}: opt {mid} is outside [min {lo}, max {hi}]; "
                                   "opt must lie between min and max in each dimension")

    @property
    def is_static(self) -> bool:
        return self.min == self.opt == self.max

    def shapes(self, batch: int = 1, channels: int = 3) -> dict[str, tuple[int, int, int, int]]:
        """NCHW shapes for `IOptimizationProfile.set_shape(name, min, opt, max)`."""
        return {k: (batch, channels, *getattr(self, k)) for k in ("min", "opt", "max")}

    def to_dict(self) -> dict[str, str]:
        return {k: format_hw(getattr(self, k)) for k in ("min", "opt", "max")}

    @classmethod
    def from_dict(cls, data: dict) -> "Profile":
        def hw(v):
            return parse_hw(v) if isinstance(v, str) else tuple(int(x) for x in v[-2:])
        return cls(hw(data["min"]), hw(data["opt"]), hw(data["max"]))

    def describe(self) -> str:
        if self.is_static:
            return f"static {format_hw(self.opt)}"
        return f"min {format_hw(self.min)}, opt {format_hw(self.opt)}, max {format_hw(self.max)}"


def make_profile(min_hw: str | tuple[int, int] | None = None, opt_hw: str | tuple[int, int] | None = None,
                 max_hw: str | tuple[int, int] | None = None) -> Profile:
    """Profile from `--min/--opt/--max` values (strings or tuples).

    A bound left out takes its default, moved as far as needed to agree with the bounds given
    (`--max 512x512` alone gives min 256x256, opt 512x512; `--opt 2176x3840` alone raises max to
    it); bounds given explicitly are never changed, so contradictions among them are errors."""
    def get(value, name):
        if value is None:
            return None
        return parse_hw(value, what=f"--{name}") if isinstance(value, str) else check_hw(value, what=f"--{name}")

    def each(f, *sizes):
        sizes = [s for s in sizes if s is not None]
        return (f(s[0] for s in sizes), f(s[1] for s in sizes))

    lo, mid, hi = get(min_hw, "min"), get(opt_hw, "opt"), get(max_hw, "max")
    lo = lo if lo is not None else each(min, DEFAULT_MIN, mid, hi)
    hi = hi if hi is not None else each(max, DEFAULT_MAX, mid, lo)
    mid = mid if mid is not None else each(max, lo, each(min, DEFAULT_OPT, hi))
    return Profile(lo, mid, hi)


def static_profile(hw: str | tuple[int, int]) -> Profile:
    """min = opt = max = hw: what DLA (and a static-shape ONNX) needs."""
    size = parse_hw(hw, what="--static") if isinstance(hw, str) else check_hw(hw, what="--static")
    return Profile(size, size, size)


def fit_problem(profile: Profile, frame_h: int, frame_w: int) -> str | None:
    """Why a frame of this size cannot run on an engine with `profile`, or None when it can."""
    ph, pw = padded_hw(frame_h, frame_w)
    lo, hi = profile.min, profile.max
    if lo[0] <= ph <= hi[0] and lo[1] <= pw <= hi[1]:
        return None
    padded = f" (padded to {ph}x{pw})" if (ph, pw) != (frame_h, frame_w) else ""
    if profile.is_static:
        rule = f"this engine is static {format_hw(profile.opt)}"
        fix = f"rebuild with --static {ph}x{pw}, or resize frames to fit"
    else:
        rule = f"this engine accepts {format_hw(lo)} to {format_hw(hi)}"
        grow = (max(ph, hi[0]), max(pw, hi[1]))
        shrink = (min(ph, lo[0]), min(pw, lo[1]))
        if ph > hi[0] or pw > hi[1]:
            fix = f"rebuild with --max {format_hw(grow)}, or use fast mode / resize frames"
        else:
            fix = f"rebuild with --min {format_hw(shrink)}, or pad frames up to {format_hw(lo)}"
    return f"frame {frame_h}x{frame_w}{padded} does not fit: {rule}; {fix}"


@dataclass(frozen=True)
class Fit:
    """Result of `fits`: true when the frame fits; `message` says why not and how to fix it."""

    ok: bool
    message: str = ""

    def __bool__(self) -> bool:
        return self.ok


def fits(profile: Profile, frame_h: int, frame_w: int) -> Fit:
    """Whether a frame (after padding to ×32, at least 128) fits the profile; falsy with a message if not."""
    problem = fit_problem(profile, frame_h, frame_w)
    return Fit(problem is None, problem or "")


def require_fit(profile: Profile, frame_h: int, frame_w: int) -> None:
    """Raise ProfileError with `fit_problem`'s message when the frame does not fit."""
    problem = fit_problem(profile, frame_h, frame_w)
    if problem:
        raise ProfileError(problem)
