"""The Bayesian search (optimizer/search/optimize.py) as `mbs compare`'s tuner: MBS and BATCH alike.

BATCH is the same search restricted to one buffer (max_buffers=1) on the same grids, so the two
differ only in what MBS is about: several length ranges. The space is make_space()'s for the
mode and SLO, with each buffer's MaximumConcurrency searched over COMPARE_CONCURRENCIES: with a
fixed 4 per buffer, a 4-buffer MBS plan could use 16 instances where BATCH had 4, which at 10x
the Azure code trace's rate made BATCH pay for 5 GB functions to keep up (simulated $2.62 per
1M against $2.09 with 8 instances). On the gpu backend memory is pinned to GPU_MEMORY_MB.
If the search finds no plan that meets the SLO, compare still reports the plan that came
closest (smallest violation, then cost), marked infeasible.
"""

from __future__ import annotations

import math
import sys

from buffers.plan import Plan
from optimizer.compare.comparison import CompareSettings
from optimizer.compare.workbench import Tuned, Tuner, Workbench
from optimizer.estimator.estimate import EstimatorContext
from optimizer.platform.backends import GPU_MEMORY_MB, Backend
from optimizer.search.optimize import Progress, optimize
from optimizer.search.result import SearchResult
from optimizer.search.space import SearchSpace, make_space
from optimizer.sim.inputs import SimInputs

DEFAULT_EVALS = 1000  # per searched policy: about 10 s for MBS on the whole Azure code trace here
PROGRESS_STEPS = 10  # progress lines per search
COMPARE_CONCURRENCIES = (2, 4, 8, 16)  # per-buffer MaximumConcurrency choices, both policies


def space_for(backend: Backend, mode: str, max_buffers: int, arch: str,
              slo_ms: float) -> SearchSpace:
    """The search space compare uses for this backend (GPU: one memory size)."""
    memory = {"memory_range_mb": (GPU_MEMORY_MB, GPU_MEMORY_MB)} if backend.is_gpu else {}
    return make_space(mode, max_buffers, arch, slo_ms=slo_ms,
                      concurrencies=COMPARE_CONCURRENCIES, **memory)


def search_settings(backend: Backend, max_buffers: int, evals: int | None,
                    mode: str = "dispatcher", arch: str = "x86") -> CompareSettings:
    """Settings whose grids and oracle use the search space's memory sizes and batch cap."""
    space = space_for(backend, mode, max_buffers, arch, 1000.0)
    return CompareSettings(max_buffers=max_buffers,
                           evals=evals if evals is not None else DEFAULT_EVALS,
                           memory_choices_mb=tuple(space.memories_mb),
                           oracle_max_batch=int(max(space.batch_sizes)))


def _closest(result: SearchResult) -> Plan:
    """The evaluated plan nearest to meeting the SLO (smallest penalty, then cheapest)."""
    best = min(result.history, key=lambda e: (
        round(e.objective - math.log(max(e.cost_per_million_usd, 1e-12)), 9),
        e.cost_per_million_usd))
    return best.plan


def _reporter(label: str, enabled: bool) -> Progress | None:
    if not enabled:
        return None
    step = {"next": 0}

    def report(done: int, budget: int, best_usd: float | None) -> None:
        if done >= step["next"] or done == budget:
            shown = "none feasible yet" if best_usd is None else f"best ${best_usd:.3f}/1M"
            print(f"[compare] {label}: {done}/{budget} plans estimated, {shown} (modelled)",
                  file=sys.stderr, flush=True)
            step["next"] = done + max(budget // PROGRESS_STEPS, 1)

    return report


def search_tuner(seed: int, progress: bool) -> Tuner:
    """A tuner that runs optimizer.search.optimize.optimize on the workbench's estimator context."""

    def tune(bench: Workbench, max_buffers: int, evals: int) -> Tuned:
        backend = bench.backend
        ctx = EstimatorContext.build(bench.arrivals_s, bench.lengths, backend.service_ms,
                                     backend.pricing, bench.slo_ms, bench.rules, bench.arch,
                                     bench.fleet)
        sim = SimInputs(bench.arrivals_s, bench.lengths, backend.service_ms, backend.pricing,
                        bench.rules, bench.fleet)
        space = space_for(backend, bench.mode, max_buffers, bench.arch, bench.slo_ms)
        label = "MBS" if max_buffers > 1 else "BATCH"
        result = optimize(ctx, sim, space, bench.slo_ms, bench.percentile, evals, seed,
                          _reporter(label, progress))
        plan = result.plan if result.plan is not None else _closest(result)
        return Tuned(plan, float(result.wall_s), int(result.evaluations),
                     bool(result.feasible), result.message)

    return tune
