"""The floors as `mbs compare` policies: the proven lower bound and the clairvoyant schedule.

- bound: optimizer/floors/bound.py's lower bound for the workbench's trace, SLO, backend and
  the search space's memory sizes and batch cap: no plan of those that meets the SLO costs less
  (end to end on the online path, with the dispatcher fleet in dispatcher mode; the infer
  function alone for any plan). It is not simulated: its latencies are not modelled (0.0), its
  tail and feasibility are null, like the SLO-blind oracle's (feasible is false, with the reason
  in settings.infeasible, where no plan can meet the SLO).
- clairvoyant: optimizer/floors/replay.py's schedule, planned knowing the whole trace and
  replayed by the simulator under Lambda's rules, so judged like every other policy: an upper
  bound on the optimum, which the bound brackets from below.
"""

from __future__ import annotations

import numpy as np

from optimizer.compare.workbench import Outcome, Workbench, judge
from optimizer.floors.bound import FloorBound, lower_bound
from optimizer.floors.schedule_search import clairvoyant
from optimizer.floors.tables import dispatcher_run_cost
from optimizer.platform.metrics import PlanMetrics

FLOORS = ("bound", "clairvoyant")


def bound_metrics(floor: FloorBound) -> PlanMetrics:
    """The bound as metrics: its cost breakdown and the LP's batches; latency not modelled."""
    return PlanMetrics(requests=floor.requests, invocations=floor.invocations, cost=floor.cost,
                       p50_ms=0.0, p95_ms=0.0, p99_ms=0.0,
                       slo_attainment=1.0 - floor.allowed_misses / floor.requests,
                       real_tokens=floor.real_tokens, padded_tokens=floor.padded_tokens,
                       cold_starts=1.0)


def bound_outcome(bench: Workbench, memory_choices_mb: tuple[int, ...],
                  max_batch: int) -> Outcome:
    """The proven lower bound on the workbench (see the module doc)."""
    pricing = bench.backend.pricing
    run = dispatcher_run_cost(bench.arrivals_s, pricing) if bench.mode == "dispatcher" else None
    floor = lower_bound(bench.arrivals_s, bench.lengths, bench.backend.service_ms, pricing,
                        bench.slo_ms, percentile=bench.percentile,
                        memories_mb=tuple(memory_choices_mb), max_batch=max_batch,
                        rules=bench.rules, arch=bench.arch, run=run, strict=False)
    settings = {"memory_choices_mb": list(floor.memories_mb), "max_batch": floor.max_batch,
                "allowed_misses": floor.allowed_misses, "forced_misses": floor.forced_misses,
                "lp_cost_per_million_usd": floor.lp_usd / floor.requests * 1e6,
                "certificate_gap": floor.certificate_gap, "rounds": floor.rounds,
                "run_items": "dispatcher fleet" if run is not None else "none"}
    if floor.infeasible is not None:
        settings["infeasible"] = floor.infeasible
    return Outcome("bound", None, bound_metrics(floor), np.zeros(0), None,
                   None if floor.infeasible is None else False,
                   "lower bound: LP duality over every batch that could meet the SLO, "
                   "certified by an exhaustive search (optimizer/floors/bound.py); no plan "
                   "meeting the SLO costs less", settings)


def clairvoyant_outcome(bench: Workbench, memory_choices_mb: tuple[int, ...],
                        max_batch: int) -> Outcome:
    """The clairvoyant schedule, replayed by the simulator and judged against the SLO."""
    found = clairvoyant(bench.arrivals_s, bench.lengths, bench.backend.service_ms,
                        bench.backend.pricing, bench.slo_ms, percentile=bench.percentile,
                        memories_mb=tuple(memory_choices_mb), max_batch=max_batch,
                        rules=bench.rules, arch=bench.arch, strict=False)
    return judge(bench, "clairvoyant", found.plan, found.result,
                 "clairvoyant: a dynamic program over length bins and time knowing the whole "
                 "trace, replayed by the simulator (optimizer/floors/replay.py)",
                 found.settings())


def floor_outcomes(bench: Workbench, memory_choices_mb: tuple[int, ...],
                   max_batch: int) -> dict[str, Outcome]:
    """Both floors, keyed by their names in FLOORS. Where no batching can meet the SLO, both
    are marked as missing it: the bound is then the bound on plans that miss only the requests
    every plan misses, and the clairvoyant schedule the replay with the lowest tail."""
    return {"bound": bound_outcome(bench, memory_choices_mb, max_batch),
            "clairvoyant": clairvoyant_outcome(bench, memory_choices_mb, max_batch)}
