"""The searchers `mbs compare --backend lambda,gpu` runs: MBS and BATCH on each backend.

- lambda: compare's own tuner (optimizer/compare/tuning.py: the Bayesian search on the
  workbench's estimator context, COMPARE_CONCURRENCIES per buffer), its plan replayed by the
  simulator on the workbench (comparison.searched), as in the single-backend comparison;
- gpu: the fleet search (optimizer/search/gpu.py: buffers and fleet bounds on each instance
  type, the profile moved to each type's GPU, an estimate), its best plan already re-checked
  by the simulator on the fleet (instance time billed); BATCH is the same with one buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optimizer.compare.across import Figures, RateWork, Searcher
from optimizer.compare.comparison import searched
from optimizer.compare.tuning import search_tuner
from optimizer.compare.workbench import Workbench
from optimizer.platform.backends import Backend
from optimizer.platform.latency_model import GpuLatencyModel
from optimizer.platform.pricing import Pricing
from optimizer.search.gpu import GpuWorkload, optimize_gpu


def _buffers(policy: str, max_buffers: int) -> int:
    if policy not in ("mbs", "batch"):
        raise ValueError(f"Unknown searched policy: {policy!r}; known: ['mbs', 'batch']")
    return max_buffers if policy == "mbs" else 1


def lambda_searcher(backend: Backend, evals: int, seed: int, max_buffers: int = 4,
                    arch: str = "x86", progress: bool = False) -> Searcher:
    """MBS or BATCH on CPU Lambda: compare's tuner, then the simulator on the trace."""
    tuner = search_tuner(seed=seed, progress=progress)

    def search(work: RateWork, policy: str) -> Figures:
        bench = Workbench(work.arrivals_s, work.lengths, backend, work.slo_ms, work.percentile,
                          "dispatcher", arch)
        out = searched(bench, tuner, policy, _buffers(policy, max_buffers), evals)
        tuned = out.search
        return Figures(policy, bool(out.feasible), out.metrics, out.plan, out.tuning,
                       tuned.message if tuned else "", tuned.wall_s if tuned else 0.0,
                       tuned.evaluations if tuned else 0)

    return search


def gpu_searcher(model: GpuLatencyModel, pricing: Pricing, evals: int, seed: int,
                 max_buffers: int = 4, instance_types: Sequence[str] | None = None,
                 space_options: dict[str, Any] | None = None) -> Searcher:
    """MBS or BATCH on the GPU fleet: optimize_gpu over the instance types, its best plan."""

    def search(work: RateWork, policy: str) -> Figures:
        k = _buffers(policy, max_buffers)
        result = optimize_gpu(GpuWorkload(work.arrivals_s, work.lengths, model, pricing,
                                          work.slo_ms), work.percentile, evals, seed,
                              instance_types=instance_types, max_buffers=k,
                              space_options=space_options)
        wall = sum(r.wall_s for r in result.by_type.values())
        count = sum(r.evaluations for r in result.by_type.values())
        types = ", ".join(result.by_type)
        how = (f"fleet search (buffers and fleet bounds) on {types}, up to {k} buffer(s); "
               f"profile {model.describe()}")
        best = result.best
        if best is None:
            why = "; ".join(f"{t}: {r.message}" for t, r in result.by_type.items())
            return Figures(policy, False, None, None, how, why, wall, count)
        return Figures(policy, True, best.simulated, best.plan, how, best.message, wall, count)

    return search
