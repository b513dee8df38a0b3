"""Whole-minute samples of a long, dense trace, so that the estimator and the simulator judge a
superposed 1000x trace (8.8M requests) on a tenth of it, with error bars.

Why minutes, stratified, glued. Every per-request figure (cost per 1M, latency percentiles,
padding) is an average over the run, and the state that links one moment to the next lasts
seconds at volume (a batch's timeout, a backlog), so a sample of whole minutes keeps it. The
dispatcher fleet is sized from per-minute rates (optimizer/platform/plan_cost.py), so a whole
minute keeps those too. The trace's minutes are split into `minutes` equal strata and one minute
is drawn from each (seeded), which holds the hour's rate profile; the drawn minutes are glued
back to back in time order, each keeping its arrivals' offsets, so the sample is an ordinary
trace any simulate() or estimate() runs. What a sample changes: each seam joins two minutes that
were not adjacent (state carried over is the previous drawn minute's), and the start-up
transient (the first cold starts) weighs 1 / fraction times more. So run the figures on a
sample warm, with LambdaRules' cold_start_ms at 0: at the volumes that need sampling every
environment stays warm, and the start-up is the only cold start a sample would see. The seams
fade with volume too. The spread over independent replicates is the error bar (sampled()).
Measured (tests/test_sampling.py, benchmarks/results/scale.json): a 6-minute sample's mean over
3 replicates lands within 3 sd + 3% of the whole trace's cost, p50, p99 and padding, in the
simulator and in the estimator. Only stable plans: a plan whose backlog grows all hour keeps
growing over a sample's few minutes only, so its latencies are understated, though still far
over any SLO, which is all a search or a grid reads of an infeasible plan.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

MINUTE_S = 60.0


@dataclass(frozen=True)
class MinuteSample:
    """Some whole minutes of a trace, glued back to back."""

    arrivals_s: np.ndarray
    lengths: np.ndarray
    picks: np.ndarray  # each sampled request's index in the full trace
    minutes: np.ndarray  # the drawn minutes (minute k covers [k, k + 1) x 60 s of the trace)
    fraction: float  # drawn minutes / the trace's minutes


def sample_minutes(arrivals_s: np.ndarray, lengths: np.ndarray, minutes: int,
                   rng: np.random.Generator, piece_s: float = MINUTE_S) -> MinuteSample:
    """One piece of piece_s seconds (a minute by default) drawn from each of `minutes` equal
    strata of the trace's pieces, glued (`minutes` counts pieces when piece_s is not 60)."""
    arrivals = np.asarray(arrivals_s, dtype=np.float64)
    if arrivals.size == 0:
        raise ValueError("a sample needs arrivals, got none")
    if not (math.isfinite(piece_s) and piece_s > 0):
        raise ValueError(f"piece_s must be > 0, got {piece_s}")
    total = max(1, math.ceil(float(arrivals[-1]) / piece_s + 1e-12))
    if not 1 <= minutes <= total:
        raise ValueError(f"minutes must be in 1..{total} (the trace's {piece_s:g} s pieces), "
                         f"got {minutes}")
    edges = np.linspace(0, total, minutes + 1).round().astype(np.int64)
    drawn = np.array([rng.integers(lo, hi) for lo, hi in zip(edges[:-1], edges[1:],
                                                             strict=True)], dtype=np.int64)
    bounds = np.searchsorted(arrivals, np.stack([drawn, drawn + 1]) * piece_s, side="left")
    picks = np.concatenate([np.arange(lo, hi) for lo, hi in bounds.T.tolist()])
    slot = np.repeat(np.arange(minutes), bounds[1] - bounds[0])
    glued = arrivals[picks] - (drawn[slot] - slot) * piece_s
    return MinuteSample(glued, np.asarray(lengths)[picks], picks, drawn, minutes / total)


@dataclass(frozen=True)
class Sampled:
    """A figure over independent replicate samples: their mean and the spread of one."""

    mean: float
    sd: float  # sample standard deviation over the replicates (the error bar of one sample)
    values: tuple[float, ...]

    @property
    def stderr(self) -> float:
        """The error bar of the mean: sd / sqrt(replicates)."""
        return self.sd / math.sqrt(len(self.values))

    def to_dict(self) -> dict[str, float | list[float]]:
        return {"mean": self.mean, "sd": self.sd, "stderr": self.stderr,
                "values": list(self.values)}


def sampled(figures: Callable[[np.ndarray, np.ndarray], Mapping[str, float]],
            arrivals_s: np.ndarray, lengths: np.ndarray, minutes: int, replicates: int,
            seed: int = 0) -> dict[str, Sampled]:
    """`figures(arrivals_s, lengths)` (a simulate or an estimate, reduced to named numbers) on
    `replicates` independent minute samples (seeded), each figure with its mean and spread."""
    if replicates < 2:
        raise ValueError(f"replicates must be >= 2 for an error bar, got {replicates}")
    runs = []
    for replicate in range(replicates):
        sample = sample_minutes(arrivals_s, lengths, minutes,
                                np.random.default_rng([seed, replicate]))
        runs.append(dict(figures(sample.arrivals_s, sample.lengths)))
    out = {}
    for name in runs[0]:
        values = tuple(float(run[name]) for run in runs)
        out[name] = Sampled(float(np.mean(values)), float(np.std(values, ddof=1)), values)
    return out
