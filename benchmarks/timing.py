"""Interleaved, adaptive latency measurement.

Backends are timed round-robin (A, B, C, A, B, C, ...) rather than one after the other, so a
burst of load from other work on a shared machine lands on all of them alike and the ratios
between them hold even when absolute times drift. Warm-up calls are made first and excluded.
The number of rounds adapts to the speed of the slowest backend: enough to fill `min_seconds`
per backend, within [min_iters, max_iters], and stopping at `max_seconds` once min_iters are in.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np


@dataclass
class Timing:
    """Wall-clock milliseconds of each timed call."""

    samples_ms: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.samples_ms, q))

    @property
    def mean_ms(self) -> float:
        return float(np.mean(self.samples_ms))

    def summary(self) -> dict[str, float | int]:
        """p50/p95/p99/mean in ms, throughput (frames/s from the mean), and the call count."""
        return {"p50_ms": self.percentile(50), "p95_ms": self.percentile(95), "p99_ms": self.percentile(99),
                "mean_ms": self.mean_ms, "fps": 1000.0 / self.mean_ms, "iterations": len(self.samples_ms)}


def interleaved(runners: Mapping[str, Callable[[], object]], *, warmup: int = 1, min_iters: int = 3,
                max_iters: int = 200, min_seconds: float = 1.0, max_seconds: float | None = None,
                sync: Callable[[], None] | None = None,
                on_round: Callable[[int], None] | None = None) -> dict[str, Timing]:
    """Time each zero-argument runner, one call each per round, until the budget is met.

    `sync` is called after every call inside the timed region (e.g. a CUDA synchronise, for
    runners that return before the device is done). `on_round(n)` reports progress.
    """
    if not runners:
        return {}
    if min_iters < 1 or max_iters < min_iters:
        raise ValueError(f"need 1 <= min_iters <= max_iters, got {min_iters}, {max_iters}")
    done = sync or (lambda: None)
    for _ in range(warmup):
        for run in runners.values():
            run()
            done()
    timings = {key: Timing() for key in runners}
    budget = min_seconds * len(runners)
    start = time.perf_counter()
    rounds = 0
    while rounds < max_iters:
        for key, run in runners.items():
            t0 = time.perf_counter()
            run()
            done()
            timings[key].samples_ms.append(1000.0 * (time.perf_counter() - t0))
        rounds += 1
        if on_round:
            on_round(rounds)
        elapsed = time.perf_counter() - start
        if rounds >= min_iters and (elapsed >= budget or (max_seconds is not None and elapsed >= max_seconds)):
            break
    return timings
