"""What one batch costs and takes, tabulated for the floors: pure functions over the models.

Both floors (bound.py, clairvoyant.py) price a batch of b requests padded to length L at memory
m the same way, on the online path (request_paths.py), the default path of MBS:
- per batch: billed GB-seconds of the infer function (Pricing.billed_ms of its service time, at
  m) plus `per_batch`: Lambda's request fee, the dispatcher's batch log line and the function's
  START/END/REPORT lines (online_request_cost of one invocation and no request);
- per request: `per_request`, the items every request pays whatever the batching: one HTTP API
  request (metered per 512 KB of its response), one Cloud Map discovery call, the dispatcher's
  access log line and the response's egress (online_request_cost of one request and no
  invocation).
The infer-only figure counts the GB-seconds and the request fee alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from buffers.types import ServiceTime
from optimizer.platform.cost_breakdown import CostBreakdown
from optimizer.platform.dispatcher_fleet import fleet_task_seconds
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.pricing import MB_PER_GB, Pricing
from optimizer.platform.request_paths import InferBill, online_request_cost, online_run_cost
from optimizer.workload.checks import check_arrivals_and_lengths

MAX_TABLE_LENGTH = 4096  # lengths above this are not a model's; a sanity cap on the inputs


class InfeasibleSLO(ValueError):
    """No batching of the requests can meet the SLO; the message names the SLO and why."""


def allowed_misses(requests: int, percentile: float) -> int:
    """How many requests may miss the SLO with the percentile-th latency still within it.

    numpy's percentile (linear interpolation) of n sorted latencies is at least the one at rank
    floor(p/100 * (n - 1)), so that rank and all below must meet the SLO: at most
    n - 1 - floor(p/100 * (n - 1)) may miss. 1e-9 absorbs float error towards more misses, so
    the count is never below the true one (the bound stays a bound).
    """
    if requests < 1:
        raise ValueError(f"requests must be >= 1, got {requests}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    rank = math.floor(percentile / 100.0 * (requests - 1) - 1e-9)
    return max(0, requests - 1 - max(rank, 0))


@dataclass(frozen=True)
class UnitCosts:
    """The online path's fixed items: per request and per batch (see the module doc)."""

    per_request: CostBreakdown
    per_batch: CostBreakdown
    gb_s_usd: float  # the infer function's price per GB-second (per GPU-second on the gpu)

    @classmethod
    def online(cls, pricing: Pricing, arch: str = "x86") -> UnitCosts:
        return cls(per_request=online_request_cost(1.0, InferBill(0.0, 0.0), pricing, arch=arch),
                   per_batch=online_request_cost(0.0, InferBill(0.0, 1.0), pricing, arch=arch),
                   gb_s_usd=pricing.lambda_gb_s_usd(arch))

    @property
    def batch_fee_usd(self) -> float:
        """The infer function's request fee (the per-batch part of the infer-only figure)."""
        return self.per_batch.infer_usd


def dispatcher_run_cost(arrivals_s: np.ndarray, pricing: Pricing) -> CostBreakdown:
    """The online path's run items for this trace: the autoscaled dispatcher fleet and its Cloud
    Map instances, over the run from time 0 to the last arrival. Every dispatcher-mode plan pays
    them whatever its batching (they depend on the arrivals only)."""
    arrivals = np.asarray(arrivals_s, dtype=np.float64)
    duration_s = max(float(arrivals.max(initial=0.0)), 0.0)
    seconds = fleet_task_seconds(arrivals, duration_s) if arrivals.size else 0.0
    return online_run_cost(duration_s, seconds, pricing)


@dataclass(frozen=True, eq=False)
class BatchTable:
    """Service time and cost of a batch of b (1..max_batch) padded to each level, per memory.

    Arrays are indexed [memory, b - 1, level]; levels are the trace's distinct lengths, sorted.
    Entries whose service time exceeds `horizon_ms` at every smaller b are not needed by the
    floors and hold +inf (a batch that long can hold no request within the SLO).
    """

    levels: np.ndarray
    memories_mb: tuple[int, ...]
    service_ms: np.ndarray
    infer_usd: np.ndarray  # billed GB-seconds and the request fee
    batch_usd: np.ndarray  # infer_usd plus the per-batch log lines (end to end, per batch)

    @property
    def max_batch(self) -> int:
        return int(self.service_ms.shape[1])

    @classmethod
    def build(cls, service_ms: ServiceTime, pricing: Pricing, units: UnitCosts,
              levels: np.ndarray, memories_mb: tuple[int, ...], max_batch: int,
              horizon_ms: float) -> BatchTable:
        """Tabulate service_ms; a (memory, level) row stops once a batch takes > horizon_ms."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if not memories_mb:
            raise ValueError("memories_mb must name at least one size, got ()")
        levels = np.asarray(levels, dtype=np.int64)
        shape = (len(memories_mb), max_batch, levels.size)
        time = np.full(shape, np.inf)
        billed = np.full(shape, np.inf)
        for mi, memory in enumerate(memories_mb):
            for li, level in enumerate(levels.tolist()):
                for b in range(1, max_batch + 1):
                    ms = float(service_ms(b, level, memory))
                    if not ms >= 0:
                        raise ValueError(f"service time must be >= 0 ms, got {ms} for "
                                         f"({b}, {level}, {memory})")
                    time[mi, b - 1, li] = ms
                    billed[mi, b - 1, li] = pricing.billed_ms(ms)
                    if ms > horizon_ms:
                        break
        _check_monotone(time, levels, memories_mb)
        gb = np.asarray(memories_mb, dtype=np.float64)[:, None, None] / MB_PER_GB
        infer = billed / 1000.0 * gb * units.gb_s_usd + units.batch_fee_usd
        return cls(levels, tuple(memories_mb), time, infer,
                   infer + (units.per_batch.total_usd - units.batch_fee_usd))


def _check_monotone(time: np.ndarray, levels: np.ndarray, memories_mb: tuple[int, ...]) -> None:
    """The floors' argument needs a batch to take no less time with more members or padding."""
    for axis, what in ((1, "batch size"), (2, "padded length")):
        with np.errstate(invalid="ignore"):  # inf - inf past the horizon: not a fall
            bad = np.argwhere(np.diff(time, axis=axis) < -1e-9)
        if bad.size:
            mi, b, li = (int(x) for x in bad[0])
            raise ValueError(f"the service time must not fall as {what} grows, got a fall at "
                             f"memory {memories_mb[mi]} MB, batch {b + 1}, length "
                             f"{int(levels[li])}")


def check_trace(arrivals_s: np.ndarray, lengths: np.ndarray, slo_ms: float,
                percentile: float) -> tuple[np.ndarray, np.ndarray]:
    """Validated float arrivals and int lengths; errors name the bad value."""
    arrivals = np.asarray(arrivals_s, dtype=np.float64)
    lens = np.asarray(lengths, dtype=np.int64)
    if arrivals.size == 0:
        raise ValueError("the trace has no requests")
    check_arrivals_and_lengths(arrivals, lens, MAX_TABLE_LENGTH)
    if not (math.isfinite(slo_ms) and slo_ms > 0):
        raise ValueError(f"slo_ms must be finite and > 0, got {slo_ms}")
    if not 0 < percentile < 100:
        raise ValueError(f"percentile must be in (0, 100), got {percentile}")
    return arrivals, lens


def window_capacity(arrivals_s: np.ndarray, span_s: float) -> int:
    """The most requests whose arrivals lie within span_s of each other."""
    arrivals = np.asarray(arrivals_s, dtype=np.float64)
    ends = np.searchsorted(arrivals, arrivals + span_s, side="right")
    return int(np.max(ends - np.arange(arrivals.size)))


def split_runs(arrivals_s: np.ndarray, gap_s: float, most: int) -> list[np.ndarray]:
    """Runs of requests between arrival gaps longer than gap_s (no batch of the budget spans
    one), each cut again at the widest gap of its middle half while it holds more than `most`
    requests (a batch may span those cuts: the caller decides what that costs)."""
    arrivals = np.asarray(arrivals_s, dtype=np.float64)
    cuts = np.flatnonzero(np.diff(arrivals) > gap_s) + 1
    pending = np.split(np.arange(arrivals.size), cuts)
    done = []
    while pending:
        run = pending.pop()
        if run.size <= most:
            done.append(run)
            continue
        quarter = run.size // 4  # the widest gap in the middle half: blocks stay balanced
        widest = quarter + int(np.argmax(np.diff(arrivals[run])[quarter:run.size - quarter])) + 1
        pending += [run[:widest], run[widest:]]
    return sorted(done, key=lambda r: int(r[0]))


def forced_misses(arrivals: np.ndarray, alone_ms: np.ndarray, slo_ms: float,
                   rules: LambdaRules) -> np.ndarray:
    """Requests no schedule can meet (bound.py, step 4): too slow alone at the fastest memory
    (alone_ms), or due before any environment is warm."""
    warm_from_s = arrivals[0] + rules.cold_start_ms / 1000.0
    before_warm = arrivals + (slo_ms - alone_ms) / 1000.0 < warm_from_s
    cold_misses = rules.cold_start_ms + alone_ms > slo_ms
    return (alone_ms > slo_ms) | (before_warm & cold_misses)


def infeasible_slo(forced: np.ndarray, lens: np.ndarray, alone_ms: np.ndarray, misses: int,
                   slo_ms: float, percentile: float, rules: LambdaRules) -> InfeasibleSLO:
    """The error saying why no batching meets the SLO (`forced` more than `misses`)."""
    slow = alone_ms > slo_ms
    why = []
    if np.any(slow):
        worst = int(np.argmax(alone_ms))
        why.append(f"{int(slow.sum())} take longer than {slo_ms:g} ms alone at the fastest "
                   f"memory (e.g. length {int(lens[worst])}: {alone_ms[worst]:.0f} ms)")
    if np.any(forced & ~slow):
        why.append(f"{int((forced & ~slow).sum())} are due before any environment is warm "
                   f"(cold start {rules.cold_start_ms:g} ms)")
    return InfeasibleSLO(f"no batching meets the SLO p{percentile:g} <= {slo_ms:g} ms: "
                         f"{int(forced.sum())} of {forced.size} requests must miss it ("
                         f"{'; '.join(why)}), more than the {misses} the percentile allows")
