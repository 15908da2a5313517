"""Timing helpers: interleaved medians with ``torch.utils.benchmark.Timer``.

Ratios are what the targets check, and on a shared machine the load drifts: so every
function of a comparison is timed in turn, round after round, and each one's median over
the rounds is kept. Timer synchronises the accelerator around each measurement.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import torch
from torch.utils.benchmark import Timer

__all__ = ["interleaved", "wall"]


def interleaved(
    fns: Mapping[str, Callable[[], object]], rounds: int, number: int = 1, warmup: int = 1
) -> dict[str, float]:
    """Median seconds per call of each function; ``rounds`` rounds of ``number`` calls each."""
    threads = torch.get_num_threads()
    timers = {k: Timer("f()", globals={"f": f}, num_threads=threads) for k, f in fns.items()}
    for _ in range(warmup):
        for f in fns.values():
            f()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(1, rounds)):
        for k, t in timers.items():
            samples[k].append(t.timeit(number).median)
    return {k: statistics.median(v) for k, v in samples.items()}


def wall(fn: Callable[[], object], device: torch.device | None = None) -> float:
    """Wall-clock seconds of one call (synchronising ``device`` when it is an accelerator)."""
    sync = device is not None and device.type == "cuda"
    if sync:
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if sync:
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0
