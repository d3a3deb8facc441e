"""Interleaved timing: variants run side by side, in rotating order, many rounds.

Every figure the benchmarks report is a median over rounds, and every
comparison a median of *paired* ratios (variant / baseline within the same
round), so slow drifts and other processes affect both sides of each ratio.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Runner = Callable[[int], object]  # runs the operation n times


@dataclass
class Samples:
    """Per-round times, in ns per operation, of each variant."""

    ns: dict[str, list[float]]

    def median(self, name: str) -> float:
        return statistics.median(self.ns[name])

    def ratios(self, name: str, baseline: str) -> list[float]:
        return [a / b for a, b in zip(self.ns[name], self.ns[baseline])]

    def ratio(self, name: str, baseline: str) -> Ratio:
        return Ratio.of(self.ratios(name, baseline))


@dataclass
class Ratio:
    """The median of paired ratios, with a distribution-free 95% interval."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Ratio:
        ordered = sorted(values)
        n = len(ordered)
        # Order statistics bounding the median at ~95% (binomial, normal approx.).
        k = max(0, math.floor(n / 2 - 0.98 * math.sqrt(n)))
        return cls(statistics.median(ordered), ordered[k], ordered[n - 1 - k], n)

    def as_dict(self) -> dict[str, float]:
        return {
            "median": round(self.median, 4),
            "ci95_low": round(self.low, 4),
            "ci95_high": round(self.high, 4),
            "rounds": self.n,
        }


def interleave(variants: dict[str, Runner], rounds: int, batch: int) -> Samples:
    """Time ``batch`` operations of each variant per round, rotating the order."""
    names = list(variants)
    ns: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            run = variants[name]
            start = time.perf_counter_ns()
            run(batch)
            ns[name].append((time.perf_counter_ns() - start) / batch)
    return Samples(ns)
