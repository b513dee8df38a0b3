"""The search's last phase: the simulator re-checks the estimator's cheapest feasible plans.

The cheapest feasible plan is replayed by the simulator; if it misses the SLO there, the next
cheapest are tried (skipping those whose estimated p exceeds slo over the worst
simulated/estimated ratio seen), and every re-check is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.search.evaluation import Evaluator
from optimizer.sim.engine import SimResult, simulate
from optimizer.sim.inputs import SimInputs

RECHECK_LIMIT = 8  # simulator re-checks before giving up


@dataclass(frozen=True)
class Recheck:
    """The simulator's verdict on one estimator-feasible candidate."""

    evaluation: int  # Evaluation.index
    estimated_percentile_ms: float | None
    simulated_percentile_ms: float
    simulated_cost_per_million_usd: float
    passed: bool


def recheck(run: Evaluator, sim: SimInputs, arch: str) -> list[tuple[Recheck, SimResult]]:
    """Simulate the cheapest feasible candidates until one passes (or RECHECK_LIMIT)."""
    out: list[tuple[Recheck, SimResult]] = []
    ratio = 1.0
    ranked = sorted((e for e in run.history if e.feasible),
                    key=lambda e: (e.cost_per_million_usd, e.index))
    for ev in ranked:
        if len(out) >= RECHECK_LIMIT:
            break
        if ev.percentile_ms is not None and ev.percentile_ms * ratio > run.slo_ms:
            continue  # the simulator has run this much slower than estimated: skip
        result = simulate(ev.plan, sim.arrivals_s, sim.lengths, sim.service_ms, sim.pricing,
                          run.slo_ms, rules=sim.rules, arch=arch, fleet=sim.fleet,
                          scaling=sim.scaling)
        p_ms = float(np.percentile(result.latency_ms, run.percentile)) \
            if result.latency_ms.size else 0.0
        passed = p_ms <= run.slo_ms
        out.append((Recheck(ev.index, ev.percentile_ms, p_ms,
                            result.metrics.end_to_end_cost_per_million_usd, passed), result))
        if passed:
            break
        if ev.percentile_ms:
            ratio = max(ratio, p_ms / ev.percentile_ms)
    return out
