"""Timing helpers shared by the benchmarks: synchronised wall-clock and ratios from alternating pairs."""

from __future__ import annotations

import statistics
import time

import torch


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work (no-op elsewhere)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn, device: torch.device) -> float:
    """Wall-clock milliseconds of one ``fn()`` call, synchronised before and after."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return (time.perf_counter() - start) * 1e3


def paired_ms(fn, baseline, device: torch.device, repeats: int, warmup: int = 2) -> tuple[float, float]:
    """Median ms of ``fn`` and the median of per-pair ratios to ``baseline``, timed alternately.

    Alternating the two calls keeps the ratio honest on a shared, noisy machine.
    """
    for _ in range(warmup):
        fn()
        baseline()
    times, ratios = [], []
    for _ in range(repeats):
        base = time_ms(baseline, device)
        ms = time_ms(fn, device)
        times.append(ms)
        ratios.append(ms / base)
    return statistics.median(times), statistics.median(ratios)
