"""A clairvoyant offline schedule: the cheapest batching a dynamic program finds knowing the
whole trace in advance. Pure; replay.py runs it through the simulator.

The program, at one memory size, runs per segment: the trace is split at arrival gaps longer
than the budget (no batch spans one), and runs longer than `segment_requests` are split again
at their widest gap (batches cannot span those cuts, a small loss).
- Length bins. The segment's distinct lengths are cut at up to `cut_points` candidates
  (length quantiles by request count); a bin is a run of lengths between two cuts.
- Inside a bin, a time DP over its requests in arrival order: a batch is a run of consecutive
  requests j..k of the bin, dispatched when k arrives, padded to its longest member. It is
  legal when its first member still meets the budget: a_k - a_j + t(k - j + 1, L, m) <= budget
  (then every member does). F[k] = min over legal j of F[j - 1] + C(j..k). Legality is
  monotone in j (span, size and padding only grow), so the scan stops at the first illegal j.
  A request that cannot meet the budget even alone is batched alone.
- Across bins, a DP over the candidate cuts: G[c] = min over c' < c of G[c'] + bin(c', c).
It is exact for its family (length bins per segment, contiguous batches in time within a bin,
dispatch at the last arrival) and knows nothing of cold starts or concurrency: replay.py
charges those by simulation, and plans with a budget below the SLO to leave them room.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from optimizer.floors.tables import BatchTable, split_runs

DEFAULT_CUT_POINTS = 16  # length quantiles (of a segment's requests) a bin may end at
SEGMENT_REQUESTS = 400  # a segment longer than this is cut at its widest arrival gap


@dataclass(frozen=True)
class Schedule:
    """Batches as request indices, each dispatched when its last member arrives."""

    batches: tuple[tuple[int, ...], ...]
    memory_mb: int
    budget_ms: float
    planned_usd: float  # the DP's own total (warm, per-batch items included)
    segments: int  # runs of the trace planned apart (bins are chosen per segment)

    def __post_init__(self) -> None:
        if not self.batches:
            raise ValueError("a schedule needs at least one batch, got none")


def _bin_dp(arrivals: list[float], levels: list[int], time_ms: list[list[float]],
            usd: list[list[float]], budget_ms: float, cap: int) -> tuple[float, list[int]]:
    """The time DP inside one bin; returns its cost and each batch's first position."""
    count = len(arrivals)
    best = [0.0] * (count + 1)
    start = [0] * (count + 1)
    for k in range(1, count + 1):
        a_k = arrivals[k - 1]
        top = -1
        cost, first = math.inf, k
        for j in range(k, max(0, k - cap), -1):
            level = levels[j - 1]
            top = level if level > top else top
            size = k - j
            if (a_k - arrivals[j - 1]) * 1000.0 + time_ms[size][top] > budget_ms:
                break
            total = best[j - 1] + usd[size][top]
            if total < cost:
                cost, first = total, j
        if first == k and cost == math.inf:  # alone and still late: run it alone anyway
            cost = best[k - 1] + usd[0][levels[k - 1]]
        best[k], start[k] = cost, first
    firsts, k = [], count
    while k > 0:
        firsts.append(start[k])
        k = start[k] - 1
    return best[count], firsts[::-1]


def schedule_dp(arrivals_s: np.ndarray, level_of: np.ndarray, table: BatchTable,
                memory_index: int, budget_ms: float, cut_points: int = DEFAULT_CUT_POINTS,
                segment_requests: int = SEGMENT_REQUESTS) -> Schedule:
    """The cheapest schedule of the program above at table.memories_mb[memory_index].

    Parameters: level_of maps each request to its index in table.levels; budget_ms is the
    latency each planned batch must meet, warm and without queueing (the SLO or less);
    segment_requests caps a segment (bins are chosen per segment).
    """
    if not budget_ms > 0:
        raise ValueError(f"budget_ms must be > 0, got {budget_ms}")
    arrivals = np.asarray(arrivals_s, dtype=np.float64)
    level_of = np.asarray(level_of, dtype=np.int64)
    time_ms = table.service_ms[memory_index]
    rows = (np.where(np.isfinite(time_ms), time_ms, math.inf).tolist(),
            np.where(np.isfinite(time_ms), table.batch_usd[memory_index], math.inf).tolist())
    batches: list[tuple[int, ...]] = []
    planned = 0.0
    parts = split_runs(arrivals, budget_ms / 1000.0, segment_requests)
    for part in parts:
        cost, found = _segment_dp(arrivals[part], level_of[part], rows, budget_ms, cut_points,
                                  table.max_batch)
        planned += cost
        batches += [tuple(part[list(b)].tolist()) for b in found]
    return Schedule(tuple(batches), table.memories_mb[memory_index], budget_ms, planned,
                    len(parts))


def _segment_dp(arrivals: np.ndarray, level_of: np.ndarray,
                rows: tuple[list[list[float]], list[list[float]]], budget_ms: float,
                cut_points: int, cap: int) -> tuple[float, list[list[int]]]:
    """The bins-then-time program over one segment; its cost and batches (local indices)."""
    cuts = np.unique(np.quantile(level_of, np.linspace(0.0, 1.0, cut_points + 1)[1:],
                                 method="lower"))
    bounds = [-1, *cuts.tolist()]
    memo: dict[tuple[int, int], tuple[float, list[list[int]]]] = {}
    for hi in range(1, len(bounds)):
        for lo in range(hi):
            members = np.flatnonzero((level_of > bounds[lo]) & (level_of <= bounds[hi]))
            cost, firsts = _bin_dp(arrivals[members].tolist(), level_of[members].tolist(),
                                   rows[0], rows[1], budget_ms, cap)
            ends = [*firsts[1:], members.size + 1]
            memo[(lo, hi)] = (cost, [members[f - 1:e - 1].tolist()
                                     for f, e in zip(firsts, ends, strict=True)])
    total = [0.0] + [math.inf] * (len(bounds) - 1)
    back = [0] * len(bounds)
    for hi in range(1, len(bounds)):
        for lo in range(hi):
            cost = total[lo] + memo[(lo, hi)][0]
            if cost < total[hi]:
                total[hi], back[hi] = cost, lo
    found: list[list[int]] = []
    hi = len(bounds) - 1
    while hi > 0:
        found += memo[(back[hi], hi)][1]
        hi = back[hi]
    return total[-1], found
