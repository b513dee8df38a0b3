"""Bayesian plan search: a GP (scikit-optimize, ask/tell) over buffers, boundaries, batching and
memory, scored by the analytical estimator, then a local polish, then a simulator re-check.

The pieces, one job per module in optimizer/search/:
- space.py: what may be chosen (SearchSpace, make_space);
- encoding.py: a point of integer dimensions <-> a valid Plan; moves.py: plans a step away;
- evaluation.py: each plan estimated once, judged against the SLO, and the GP's objective
  (ln cost, penalised when infeasible; an infeasible plan is never returned);
- gp.py, polish.py, recheck.py: the three phases below; result.py: what a search returns.

Phases (`evals` is the budget of plan estimates in all; SearchResult.evaluations counts them):
1. gp_rounds(evals) ask/tell rounds (1 in 25 of the budget, 8..60): the given seed plans and
   the fastest plan of the space, skopt's random initial points, then GP proposals.
2. Polish: local search from the best plan of each of the POLISH_STARTS best distinct
   structures, then iterated local search with the rest of the budget.
3. The cheapest feasible plan is replayed by the simulator; if it misses the SLO there, the
   next cheapest are tried, and every re-check is recorded in SearchResult.rechecks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from buffers.plan import Plan
from optimizer.estimator.estimate import EstimatorContext
from optimizer.search.encoding import Encoding
from optimizer.search.evaluation import Evaluation, Evaluator
from optimizer.search.gp import gp_phase, gp_rounds
from optimizer.search.polish import polish
from optimizer.search.recheck import recheck
from optimizer.search.result import SearchResult, search_result
from optimizer.search.space import SearchSpace
from optimizer.sim.inputs import SimInputs

Progress = Callable[[int, int, float | None], None]  # estimates done, budget, best cost


def optimize(ctx: EstimatorContext, sim: SimInputs, space: SearchSpace, slo_ms: float,
             percentile: float, evals: int, seed: int, progress: Progress | None = None,
             seeds: Sequence[Plan] = ()) -> SearchResult:
    """Search `space` for the cheapest plan whose p{percentile} <= slo_ms.

    Parameters: ctx from EstimatorContext.build on the same workload as `sim` (its slo_ms must
    equal slo_ms); space what may be chosen; evals the budget of plan estimates (GP rounds
    first, then the polish, which stops early only when its kicks find nothing new); seed
    makes the run reproducible; progress(done, evals, best_cost or None) is called after each
    new estimate; seeds are plans told to the GP first (e.g. a known good plan).
    Returns: SearchResult; plan is None and feasible False when no plan met the SLO in the
    estimator, or none of the re-checked candidates met it in the simulator (see message).
    """
    _check_args(ctx, slo_ms, percentile, evals)
    started = time.perf_counter()
    enc = Encoding.build(space, sim.lengths)
    run = Evaluator(ctx, enc, slo_ms, percentile, sim.scaling)

    def report() -> None:
        if progress is not None:
            best = run.best()
            progress(len(run.history), evals, best.cost_per_million_usd if best else None)

    run.on_new = report
    seed_points = [p for p in (enc.encode(plan) for plan in seeds) if p is not None]
    seed_points.append(enc.fastest())
    if enc.dimensions:
        gp_phase(run, seed_points, gp_rounds(evals), seed)
    else:
        run([], "seed")
    polish(run, evals, seed)
    checks = recheck(run, sim, space.arch)
    return search_result(run, checks, time.perf_counter() - started)


def _check_args(ctx: EstimatorContext, slo_ms: float, percentile: float, evals: int) -> None:
    if not slo_ms > 0:
        raise ValueError(f"slo_ms must be > 0, got {slo_ms}")
    if not math.isclose(ctx.slo_ms, slo_ms):
        raise ValueError(f"slo_ms {slo_ms} differs from the estimator context's {ctx.slo_ms}")
    if not 0 < percentile < 100:
        raise ValueError(f"percentile must be in (0, 100), got {percentile}")
    if evals < 1:
        raise ValueError(f"evals must be >= 1, got {evals}")


def exhaustive(ctx: EstimatorContext, space: SearchSpace, lengths: np.ndarray, slo_ms: float,
               percentile: float) -> tuple[Evaluation | None, int]:
    """The cheapest feasible plan over every point of a (small) space, and the plans tried."""
    enc = Encoding.build(space, lengths)
    run = Evaluator(ctx, enc, slo_ms, percentile)
    for point in enc.grid():
        run(point, "grid")
    return run.best(), len(run.history)
