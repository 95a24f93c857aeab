"""The network size for a target frame rate, chosen from latency measured on this machine (`nedr run
--realtime FPS`, and the CPU real-time defaults).

Why measure rather than predict: the rate depends on the cores, the backend, the precision, the
variant and whatever else shares the machine. The network's latency grows with its input's pixels,
so the sizes are tried from the smallest up and the search stops at the first one over budget; a
slow machine never pays for timing the large sizes. Fast mode then carries the result to the frame's
full resolution (guided upsampling), so a smaller network size costs detail in t, not output pixels.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from nedr.contract import MIN_SIZE, PAD_MULTIPLE, padded_hw

# Share of the frame period the network may take: decoding, fast-mode upsampling and encoding run in
# other threads, but on a small CPU they share its cores with inference.
DEFAULT_BUDGET_SHARE = 0.7
TIMED_RUNS = 3


@dataclass(frozen=True)
class RealtimeChoice:
    frame_hw: tuple[int, int]
    network_hw: tuple[int, int]  # (H, W) the network runs at, on the ×32 contract
    latency_s: float  # its measured latency (median of TIMED_RUNS calls)
    target_fps: float
    budget_s: float
    reachable: bool  # False: even the smallest size is over budget (it is used anyway)
    measured: tuple[tuple[tuple[int, int], float], ...]  # every ((H, W), seconds) timed, ascending

    @property
    def infer_size(self) -> tuple[int, int] | None:
        """(width, height) for fast mode, or None when the frame runs at its own (padded) size."""
        h, w = self.network_hw
        return None if self.network_hw == padded_hw(*self.frame_hw) else (w, h)

    def describe(self) -> str:
        h, w = self.network_hw
        head = (f"network {h}×{w} for {self.target_fps:g} fps ({self.latency_s * 1e3:.0f} ms a call measured, "
                f"budget {self.budget_s * 1e3:.0f} ms)")
        return head if self.reachable else head + f"; {self.target_fps:g} fps is out of reach here even at the smallest size"


def network_sizes(frame_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """Contract sizes (H, W) with the frame's aspect, ascending, from the smallest the network takes
    to the frame's own padded size. Sizes are exact ×32 multiples, so no pixel is spent on padding."""
    h, w = frame_hw
    full = padded_hw(h, w)
    short, long_ = (h, w) if h <= w else (w, h)
    sizes = set()
    for side in range(MIN_SIZE, min(full) + 1, PAD_MULTIPLE):
        other = max(MIN_SIZE, int(round(side * long_ / short / PAD_MULTIPLE)) * PAD_MULTIPLE)
        sizes.add((side, other) if h <= w else (other, side))
    sizes = {s for s in sizes if s[0] <= full[0] and s[1] <= full[1]}
    sizes.add(full)
    return sorted(sizes, key=lambda s: (s[0] * s[1], s))


def choose_network_size(measure: Callable[[int, int], float], frame_hw: tuple[int, int], fps: float,
                        budget_share: float = DEFAULT_BUDGET_SHARE) -> RealtimeChoice:
    """The largest network size whose measured latency fits `budget_share / fps`.

    `measure(h, w)` returns the seconds one call takes at that size (already warm). Latency rises
    with size, so the search walks up from the smallest and stops at the first size over budget.
    """
    if not fps > 0:
        raise ValueError(f"target fps must be positive, got {fps}")
    budget = budget_share / fps
    measured: list[tuple[tuple[int, int], float]] = []
    best: tuple[tuple[int, int], float] | None = None
    for hw in network_sizes(frame_hw):
        seconds = float(measure(*hw))
        measured.append((hw, seconds))
        if seconds > budget:
            break
        best = (hw, seconds)
    reachable = best is not None
    hw, seconds = best if reachable else measured[0]
    return RealtimeChoice(tuple(frame_hw), hw, seconds, float(fps), budget, reachable, tuple(measured))


def backend_latency(backend, runs: int = TIMED_RUNS) -> Callable[[int, int], float]:
    """A `measure` for `choose_network_size`: the median of `runs` calls of an active backend on a
    random frame, after one warm-up call at that size (allocations, kernel selection)."""
    rng = np.random.default_rng(0)

    def measure(h: int, w: int) -> float:
        x = rng.random((1, 3, h, w), dtype=np.float32)
        backend.infer_full(x)
        times = []
        for _ in range(max(1, runs)):
            start = time.perf_counter()
            backend.infer_full(x)
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    return measure
