"""The clairvoyant floor: schedules planned at several budgets, memories and concurrency caps,
replayed by the simulator; the cheapest that meets the SLO is an upper bound on the optimum.

The plan (clairvoyant.py) assumes warm environments and no queueing; the replay (replay.py)
adds cold starts, keep-alive and the concurrency cap. So each memory is planned at budgets
SLO - margin, from the smallest margin, each replayed at the smallest cap that meets the SLO;
when no cap does, batches that started cold are split into singletons (only the first then
misses while it opens the environment) and replayed again. Memories are tried from the
cheapest floor (every request at its cheapest share, ignoring time), skipping those whose floor
exceeds the best replay so far. Schedules are compared on their per-batch bill on the online
path: the per-request and run items are the same for every schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from buffers.plan import Plan
from buffers.types import ServiceTime
from optimizer.floors.clairvoyant import DEFAULT_CUT_POINTS, Schedule, schedule_dp
from optimizer.floors.replay import replay, schedule_plan
from optimizer.floors.tables import (
    BatchTable,
    InfeasibleSLO,
    UnitCosts,
    allowed_misses,
    check_trace,
    forced_misses,
    infeasible_slo,
    window_capacity,
)
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.pricing import MB_PER_GB, Pricing
from optimizer.sim.engine import SimResult

MARGINS_MS = (0.0, 50.0, 100.0, 200.0, 400.0)  # budget = SLO - margin, for cold starts, queues
CONCURRENCIES = (2, 4, 8, 16, 64)  # environment caps tried per schedule
SPLIT_ROUNDS = 8  # rounds of splitting cold batches when no cap meets the SLO


@dataclass(frozen=True, eq=False)
class Clairvoyant:
    """A replayed schedule: the cheapest that met the SLO (or, strict=False, the closest)."""

    schedule: Schedule
    plan: Plan
    result: SimResult
    tail_ms: float
    tried: int  # replays run to find it
    batch_usd: float  # its per-batch bill on the online path (see batch_usd())

    def settings(self) -> dict[str, Any]:
        spec = self.plan.buffers[0]
        return {"memory_mb": spec.memory_mb, "max_concurrency": spec.max_concurrency,
                "budget_ms": self.schedule.budget_ms, "segments": self.schedule.segments,
                "batches": len(self.schedule.batches), "schedules_replayed": self.tried}


def batch_usd(result: SimResult, units: UnitCosts) -> float:
    """A run's per-batch bill on the online path: GB-seconds (INIT included), request fees and
    the per-batch log lines."""
    log = result.batches
    gb_s = float(np.sum(log.billed_ms / 1000.0 * log.memory_mb / MB_PER_GB))
    return gb_s * units.gb_s_usd + len(log) * units.per_batch.total_usd


@dataclass
class _Trials:
    """The replays of one search: its trace and rules, the best and closest found so far."""

    arrivals: np.ndarray
    lengths: np.ndarray
    service_ms: ServiceTime
    pricing: Pricing
    slo_ms: float
    percentile: float
    rules: LambdaRules
    arch: str
    units: UnitCosts
    concurrencies: tuple[int, ...]
    best: Clairvoyant | None = None
    closest: Clairvoyant | None = None
    tried: int = 0

    def run(self, schedule: Schedule, concurrency: int) -> Clairvoyant:
        self.tried += 1
        result = replay(schedule, concurrency, self.arrivals, self.lengths, self.service_ms,
                        self.pricing, self.slo_ms, self.rules, self.arch)
        found = Clairvoyant(schedule, schedule_plan(schedule, concurrency), result,
                            float(np.percentile(result.latency_ms, self.percentile)),
                            self.tried, batch_usd(result, self.units))
        if self.closest is None or found.tail_ms < self.closest.tail_ms:
            self.closest = found
        if found.tail_ms <= self.slo_ms and (self.best is None
                                             or found.batch_usd < self.best.batch_usd):
            self.best = found
        return found

    def meets(self, schedule: Schedule) -> bool:
        """Replay at each cap, then with cold batches split; whether one met the SLO."""
        for concurrency in self.concurrencies:
            if self.run(schedule, concurrency).tail_ms <= self.slo_ms:
                return True
        smallest = self.concurrencies[0]
        found = self.run(schedule, smallest)
        for _ in range(SPLIT_ROUNDS):
            split = _split_cold(found.schedule, found.result)
            if split is None:
                return False
            found = self.run(split, smallest)
            if found.tail_ms <= self.slo_ms:
                return True
        return False


def _split_cold(plan: Schedule, result: SimResult) -> Schedule | None:
    """The schedule with every batch that started cold run as singletons, or None if none.

    A cold start takes cold_start_ms, so a cold batch's members all miss the SLO. As
    singletons, each at its own arrival, the first one opens the new environment (and misses)
    while the rest, at the smallest cap, wait for a warm one.
    """
    cold_rows = np.flatnonzero(result.batches.cold & (result.batches.size > 1))
    if cold_rows.size == 0:
        return None
    split = set(cold_rows.tolist())
    batches: list[tuple[int, ...]] = []
    for members in plan.batches:
        if int(result.batch_of_request[members[0]]) in split:
            batches += [(i,) for i in members]
        else:
            batches.append(members)
    return replace(plan, batches=tuple(batches))


def _floor_usd(table: BatchTable, level_of: np.ndarray) -> np.ndarray:
    """Per memory: what the requests cost at their cheapest share, ignoring time entirely."""
    sizes = np.arange(1, table.max_batch + 1)[None, :, None]
    cheapest = np.min(table.batch_usd / sizes, axis=1)  # [memory, level]
    return cheapest[:, level_of].sum(axis=1)


def clairvoyant(arrivals_s: np.ndarray, lengths: np.ndarray, service_ms: ServiceTime,
                pricing: Pricing, slo_ms: float, *, percentile: float = 99.0,
                memories_mb: tuple[int, ...] = (1769,), max_batch: int | None = None,
                rules: LambdaRules | None = None, arch: str = "x86",
                margins_ms: Sequence[float] = MARGINS_MS,
                concurrencies: Sequence[int] = CONCURRENCIES,
                cut_points: int = DEFAULT_CUT_POINTS, strict: bool = True) -> Clairvoyant:
    """The cheapest schedule found that meets p{percentile} <= slo_ms in the simulator.

    Raises InfeasibleSLO, naming the SLO, if none does; with strict=False it returns the
    replay with the lowest tail instead (its tail_ms says it misses). Where some requests must
    miss however they are batched (tables.forced_misses), it plans once, at the first memory.
    """
    arrivals, lens = check_trace(arrivals_s, lengths, slo_ms, percentile)
    rules = rules or LambdaRules()
    levels, level_of = np.unique(lens, return_inverse=True)
    cap = window_capacity(arrivals, slo_ms / 1000.0)
    cap = cap if max_batch is None else min(cap, max_batch)
    units = UnitCosts.online(pricing, arch)
    table = BatchTable.build(service_ms, pricing, units, levels, tuple(memories_mb), cap, slo_ms)
    misses = allowed_misses(lens.size, percentile)
    alone_ms = table.service_ms[:, 0, :].min(axis=0)[level_of]
    forced = forced_misses(arrivals, alone_ms, slo_ms, rules)
    if forced.sum() > misses:
        if strict:
            raise infeasible_slo(forced, lens, alone_ms, misses, slo_ms, percentile, rules)
        memories_mb, margins_ms = tuple(memories_mb[:1]), (0.0,)
        table = BatchTable.build(service_ms, pricing, units, levels, memories_mb, cap, slo_ms)
    trials = _Trials(arrivals, lens, service_ms, pricing, slo_ms, percentile, rules, arch,
                     units, tuple(sorted(concurrencies)))
    floors = _floor_usd(table, level_of)
    for memory in np.argsort(floors, kind="stable"):
        if trials.best is not None and floors[memory] >= trials.best.batch_usd:
            continue  # even unconstrained batches at this memory cost more
        for margin_ms in sorted(m for m in margins_ms if m < slo_ms):
            plan = schedule_dp(arrivals, level_of, table, int(memory), slo_ms - margin_ms,
                               cut_points)
            if trials.best is not None and plan.planned_usd >= trials.best.batch_usd:
                break  # a replay only adds cold starts; larger margins plan dearer
            if trials.meets(plan):
                break  # the smallest margin that meets the SLO is kept for this memory
    found = trials.best or (None if strict else trials.closest)
    if found is None:
        raise InfeasibleSLO(f"no clairvoyant schedule met the SLO p{percentile:g} <= "
                            f"{slo_ms:g} ms in the simulator ({trials.tried} replays: memories "
                            f"{list(memories_mb)}, margins {list(margins_ms)} ms, concurrency "
                            f"caps {list(concurrencies)})")
    return replace(found, tried=trials.tried)
