"""The estimator's per-workload context: the trace, the length pmf and cached statistics.

Helper of optimizer/estimator/estimate.py (which re-exports EstimatorContext). Built once per
workload;
every cache is keyed by a plan parameter (timeout, band, window offset, memory and batch size)
so that the Bayesian search, which repeats those values, reuses them. No clock reads.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from buffers.plan import MODEL_MAX_LENGTH
from buffers.types import ServiceTime
from optimizer.estimator.batch_waits import Pairs, pair_offsets
from optimizer.estimator.latency import ServiceTable
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.plan_cost import FleetSettings, RunBilling
from optimizer.platform.pricing import Pricing
from optimizer.workload.checks import check_arrivals_and_lengths

PALM_SAMPLE = 4096  # arrivals whose forward windows shape the member-wait distributions
PAIR_BUDGET = 150_000  # (opener, later arrival) pairs kept per timeout; long windows thin it
_CACHE_ENTRIES = 64  # forward counts / pair offsets kept per timeout


class _Lru(OrderedDict):
    """A small least-recently-used cache."""

    def __init__(self, entries: int) -> None:
        super().__init__()
        self.entries = entries

    def get_or(self, key: object, make: Callable[[], Any]) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        if len(self) > self.entries:
            self.popitem(last=False)
        return value


@dataclass(frozen=True, eq=False)
class EstimatorContext:
    """A workload's precomputed statistics: build once, estimate many plans."""

    arrivals_s: np.ndarray
    length_pmf: np.ndarray  # P(L = l) for l = 0..MODEL_MAX_LENGTH (index 0 is 0)
    service: ServiceTable
    pricing: Pricing
    slo_ms: float
    rules: LambdaRules
    arch: str
    keep_alive_start: np.ndarray  # first arrival within keep_alive_s before each arrival
    sample: np.ndarray  # the Palm sample: sorted arrival indices (all of them up to PALM_SAMPLE)
    billing: RunBilling  # the run's span and dispatcher fleet, as the simulator prices them
    _counts: _Lru = field(default_factory=lambda: _Lru(_CACHE_ENTRIES), repr=False)
    _pairs: _Lru = field(default_factory=lambda: _Lru(_CACHE_ENTRIES), repr=False)
    _positions: _Lru = field(default_factory=lambda: _Lru(4 * _CACHE_ENTRIES), repr=False)
    _windows: _Lru = field(default_factory=lambda: _Lru(_CACHE_ENTRIES), repr=False)

    @classmethod
    def build(cls, arrivals_s: np.ndarray, lengths: np.ndarray, service_ms: ServiceTime,
              pricing: Pricing, slo_ms: float, rules: LambdaRules | None = None,
              arch: str = "x86", fleet: FleetSettings | None = None) -> EstimatorContext:
        """Precompute a workload's statistics.

        Parameters: arrivals_s sorted seconds; lengths one token length (1..256) per arrival;
        service_ms(batch_size, padded_length, memory_mb) -> ms, the same callable the simulator
        takes; slo_ms the latency target for slo_attainment; rules the platform constants
        (LambdaRules() when None); arch "x86" or "arm64"; fleet how the dispatcher scales
        (FleetSettings() when None), priced over the arrivals as the simulator does.
        Returns: the context that estimate() takes.
        """
        rules = rules or LambdaRules()
        arrivals = np.asarray(arrivals_s, dtype=np.float64)
        lens = np.asarray(lengths, dtype=np.int64)
        _check_workload(arrivals, lens, slo_ms)
        pricing.lambda_gb_s_usd(arch)  # fails fast on an unknown arch
        pmf = np.bincount(lens, minlength=MODEL_MAX_LENGTH + 1).astype(np.float64)
        pmf /= max(lens.size, 1)
        back = np.searchsorted(arrivals, arrivals - rules.keep_alive_s, side="left")
        sample = np.arange(arrivals.size)
        if arrivals.size > PALM_SAMPLE:  # a fixed seed: the same context for the same workload
            sample = np.sort(np.random.default_rng(0).choice(arrivals.size, PALM_SAMPLE,
                                                             replace=False))
        return cls(arrivals, pmf, ServiceTable(service_ms, MODEL_MAX_LENGTH), pricing,
                   float(slo_ms), rules, arch, back, sample,
                   RunBilling.for_arrivals(arrivals, pricing, arch, fleet))

    @property
    def requests(self) -> int:
        return int(self.arrivals_s.size)

    def counts(self, timeout_ms: int) -> np.ndarray:
        """N_i(T): arrivals in (t_i, t_i + T] (T as the batcher computes it, timeout_ms/1000)."""
        def make() -> np.ndarray:
            ends = np.searchsorted(self.arrivals_s, self.arrivals_s + timeout_ms / 1000.0,
                                   side="right")
            return (ends - np.arange(self.requests) - 1).astype(np.int64)
        return self._counts.get_or(timeout_ms, make)

    def positions(self, offset_s: float) -> np.ndarray:
        """searchsorted(t, t + offset_s, "left") for every arrival, cached per offset (1 us)."""
        key = round(offset_s, 6)
        return self._positions.get_or(
            key, lambda: np.searchsorted(self.arrivals_s, self.arrivals_s + key, side="left"))

    def window_counts(self, timeout_ms: int, points: int) -> tuple[np.ndarray, np.ndarray]:
        """At u_j = (j + 1/2) / points * T: the arrivals besides each one in [t + u_j - T,
        t + u_j), and those after it in (t, t + u_j); two (arrivals, points) arrays, cached."""
        def make() -> tuple[np.ndarray, np.ndarray]:
            window_s = timeout_ms / 1000.0
            index = np.arange(self.requests)
            us = (np.arange(points) + 0.5) / points * window_s
            ends = [np.searchsorted(self.arrivals_s, self.arrivals_s + u, side="left")
                    for u in us]
            starts = [np.searchsorted(self.arrivals_s, self.arrivals_s + u - window_s,
                                      side="left") for u in us]
            others = np.stack([np.maximum(e - s - 1, 0) for e, s in zip(ends, starts,
                                                                          strict=True)], axis=1)
            ahead = np.stack([np.maximum(e - index - 1, 0) for e in ends], axis=1)
            return others, ahead
        return self._windows.get_or((timeout_ms, points), make)

    def pairs(self, timeout_ms: int, band: int) -> tuple[np.ndarray, Pairs]:
        """The Palm sample rows used, and (i, d, t_{i+d} - t_i) for i in them and
        1 <= d <= min(N_i(T), band); long windows thin the sample to PAIR_BUDGET pairs."""
        def make() -> tuple[np.ndarray, Pairs]:
            counts = self.counts(timeout_ms)
            rows = self.sample
            pairs = int(np.sum(np.minimum(counts[rows], band)))
            if pairs > PAIR_BUDGET:
                rows = rows[:: int(np.ceil(pairs / PAIR_BUDGET))]
            return rows, pair_offsets(self.arrivals_s, counts, band, rows)
        return self._pairs.get_or((timeout_ms, band), make)


def _check_workload(arrivals: np.ndarray, lens: np.ndarray, slo_ms: float) -> None:
    check_arrivals_and_lengths(arrivals, lens, MODEL_MAX_LENGTH)
    if not slo_ms > 0:
        raise ValueError(f"slo_ms must be > 0, got {slo_ms}")
