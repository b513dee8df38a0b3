"""What a plan search returns: the best plan with its modelled and simulated figures, every
estimate in order, every simulator re-check, and a message that says why when none is returned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from buffers.plan import Plan
from optimizer.platform.metrics import PlanMetrics
from optimizer.search.evaluation import Evaluation, Evaluator
from optimizer.search.recheck import Recheck
from optimizer.sim.engine import SimResult


@dataclass(frozen=True)
class SearchResult:
    """The best plan (None if none met the SLO in both the estimator and the simulator)."""

    plan: Plan | None
    estimated: PlanMetrics | None
    simulated: PlanMetrics | None
    feasible: bool
    evaluations: int
    wall_s: float
    history: tuple[Evaluation, ...]
    rechecks: tuple[Recheck, ...]
    slo_ms: float
    percentile: float
    message: str

    @property
    def simulated_percentile_ms(self) -> float | None:
        """The simulated percentile of the plan returned (None if none was)."""
        passed = [r for r in self.rechecks if r.passed]
        return passed[-1].simulated_percentile_ms if passed else None


def search_result(run: Evaluator, checks: list[tuple[Recheck, SimResult]],
                  wall_s: float) -> SearchResult:
    """The SearchResult of a finished search: the first plan the simulator passed, if any."""
    rechecks = tuple(r for r, _ in checks)
    common = {"evaluations": len(run.history), "wall_s": wall_s, "history": tuple(run.history),
              "rechecks": rechecks, "slo_ms": run.slo_ms, "percentile": run.percentile}
    target = f"p{run.percentile:g} <= {run.slo_ms:g} ms"
    if run.best() is None:
        closest = min(run.history, key=lambda e: e.objective - math.log(
            max(e.cost_per_million_usd, 1e-12)))
        shown = f"{closest.percentile_ms:.0f} ms" if closest.percentile_ms is not None else \
            f"SLO attainment {closest.slo_attainment:.2%}"
        return SearchResult(None, None, None, False, **common, message=(
            f"no plan met {target} in the estimator after {len(run.history)} evaluations "
            f"(closest: {shown}); relax the SLO or widen the space"))
    passed = [(r, res) for r, res in checks if r.passed]
    if not passed:
        return SearchResult(None, None, None, False, **common, message=(
            f"the estimator found plans meeting {target}, but the simulator rejected all "
            f"{len(rechecks)} re-checked candidates"))
    recheck, sim_result = passed[0]
    ev = run.history[recheck.evaluation]
    note = "" if len(rechecks) == 1 else (
        f"; the simulator rejected {len(rechecks) - 1} cheaper candidate(s) first")
    return SearchResult(ev.plan, ev.metrics, sim_result.metrics, True, **common, message=(
        f"best plan meets {target} (modelled and simulated){note}"))
