"""The gpu backend's plan search: buffers and fleet together, on each instance type.

The service time depends on the instance's GPU (a profile measured on one GPU is moved to
another by gpu_instances.scale_model, labelled an estimate), so each catalogued type gets its
own estimator context and simulator inputs, and the usual search (optimize.py) runs over the
buffers and the fleet's bounds (min_instances, max_instances) on that type, started from knee
seeds (gpu_seeds.py). A handful of types is enumerated rather than handed to the GP as a
categorical, by successive halving: every type gets a short search, the two cheapest a long
one, so the budget is the whole search's, not each type's. The answer is the plan whose
simulated end-to-end cost is lowest among the types' winners.

Per-buffer concurrency: a gpu buffer's max_concurrency is the dispatcher's cap on its batches in
flight; the space sets it to the largest fleet searched (within the account's 1,000 in total),
so that the fleet, not the dispatcher, bounds how many batches run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from buffers.plan import DEFAULT_MIN_INSTANCES, MAX_CONCURRENCY, MIN_CONCURRENCY, Plan
from optimizer.estimator.context import EstimatorContext
from optimizer.estimator.fleet import fleet_context
from optimizer.platform.backends import GPU_MEMORY_MB
from optimizer.platform.gpu_instances import INSTANCES, gpu_for_device_name, instance, scale_model
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.latency_model import GpuLatencyModel
from optimizer.platform.lmi_scaling import ScalingRules
from optimizer.platform.plan_cost import FleetSettings
from optimizer.platform.pricing import Pricing
from optimizer.search.encoding import Encoding
from optimizer.search.gpu_seeds import knee_batch, knee_seeds
from optimizer.search.optimize import Progress, optimize
from optimizer.search.result import SearchResult
from optimizer.search.space import BATCH_LADDER, SearchSpace, make_space
from optimizer.sim.inputs import SimInputs

# Fleet bounds to try: every count to 32 (a fixed fleet on a sample is sized to its load, and
# a step of one instance is its own resolution), then steps of at most 12.5% to 64.
MAX_INSTANCES_LADDER = (*range(3, 33), 36, 40, 44, 48, 52, 56, 60, 64)
FINALISTS = 2  # instance types that go on to the second round of optimize_gpu
MAX_GPU_BATCH = 512  # gpu_space's default batch range's top
KNEE_SPAN, SHORT_QUANTILE = 8, 0.1  # batch_ceiling: 8x the knee of the shortest 10%


def service_for(model: GpuLatencyModel, instance_type: str) -> GpuLatencyModel:
    """`model` on the instance type's GPU: itself if measured there, else scaled (an estimate)."""
    target = instance(instance_type).gpu
    if gpu_for_device_name(model.gpu_name) == target:
        return model
    return scale_model(model, target)


def gpu_space(instance_type: str, max_buffers: int = 4, *, slo_ms: float = 1000.0,
              batch_range: tuple[int, int] = (1, MAX_GPU_BATCH),
              timeout_range_ms: tuple[int, int] | None = None,
              max_batch_tokens: Sequence[int] | None = None,
              min_instances: Sequence[int] = (DEFAULT_MIN_INSTANCES,),
              max_instances: Sequence[int] = MAX_INSTANCES_LADDER) -> SearchSpace:
    """make_space's grids for the gpu backend: one memory (a GPU's time does not depend on
    it), dispatcher mode, and the fleet's bounds on `instance_type`."""
    ceilings = tuple(sorted(set(max_instances)))
    largest = max(ceilings[-1], max(min_instances))  # a ceiling under a floor is raised to it
    cap = max(MIN_CONCURRENCY, min(largest, MAX_CONCURRENCY // max_buffers))
    base = make_space("dispatcher", max_buffers, "x86", slo_ms=slo_ms, batch_range=batch_range,
                      timeout_range_ms=timeout_range_ms,
                      memory_range_mb=(GPU_MEMORY_MB, GPU_MEMORY_MB),
                      max_batch_tokens=max_batch_tokens, concurrencies=(cap,))
    return replace(base, instance_type=instance_type,
                   min_instances=tuple(sorted(set(min_instances))), max_instances=ceilings)


@dataclass(frozen=True)
class GpuWorkload:
    """What a gpu search runs on besides the space: the trace, the profile and the rules."""

    arrivals_s: np.ndarray
    lengths: np.ndarray
    model: GpuLatencyModel  # measured on some GPU; moved to each instance type's
    pricing: Pricing
    slo_ms: float
    rules: LambdaRules | None = None
    fleet: FleetSettings | None = None  # the dispatcher's tasks
    scaling: ScalingRules | None = None  # the GPU fleet's


@dataclass(frozen=True)
class GpuSearchResult:
    """The best gpu plan over the instance types searched, and each type's own search."""

    by_type: dict[str, SearchResult]

    @property
    def best(self) -> SearchResult | None:
        """The feasible winner with the lowest simulated end-to-end cost (None if none)."""
        feasible = [r for r in self.by_type.values() if r.feasible and r.simulated is not None]
        return min(feasible, key=lambda r: r.simulated.end_to_end_cost_per_million_usd,
                   default=None)

    @property
    def plan(self) -> Plan | None:
        best = self.best
        return None if best is None else best.plan

    def to_dict(self) -> dict[str, Any]:
        return {kind: {"feasible": r.feasible, "message": r.message,
                       "plan": r.plan.to_dict() if r.plan else None,
                       "simulated": r.simulated.to_dict() if r.simulated else None}
                for kind, r in self.by_type.items()}


def optimize_gpu(work: GpuWorkload, percentile: float, evals: int, seed: int, *,
                 instance_types: Sequence[str] | None = None, max_buffers: int = 4,
                 space_options: dict[str, Any] | None = None,
                 progress: Progress | None = None,
                 seeds: Sequence[Plan] = ()) -> GpuSearchResult:
    """Search buffers and fleet on each instance type (default: the whole catalogue).

    Parameters: work the workload and GPU profile; evals the budget of estimates over all the
    types: with several, a first round gives each type an equal part of half of it, and the
    FINALISTS types whose first-round plans simulate cheapest share the other half, each
    seeded with its first-round plan (successive halving: a type that cannot win stops
    early); space_options extra keyword arguments for gpu_space (batch_range, max_instances,
    ...); seeds plans told to every type's search first (moved to its instance type), besides
    each type's knee seeds (optimizer/search/gpu_seeds.py).
    Returns: GpuSearchResult with every type's SearchResult and the cheapest as `best`.
    """
    kinds = tuple(instance_types) if instance_types is not None else tuple(sorted(INSTANCES))
    if not kinds:
        raise ValueError("instance_types must name at least one instance type, got none")
    scaling = work.scaling or ScalingRules()

    setups: dict[str, tuple[EstimatorContext, SimInputs, SearchSpace, list[Plan]]] = {}

    def setup(kind: str) -> tuple[EstimatorContext, SimInputs, SearchSpace, list[Plan]]:
        """A type's context, simulator inputs, space and seeds, built once for both rounds."""
        if kind not in setups:
            service = service_for(work.model, kind)
            options = dict(space_options or {})
            options.setdefault("batch_range", (1, batch_ceiling(service, work.lengths)))
            space = gpu_space(kind, max_buffers, slo_ms=work.slo_ms, **options)
            setups[kind] = (
                fleet_context(work.arrivals_s, work.lengths, service, work.pricing,
                              work.slo_ms, work.rules, fleet=work.fleet),
                SimInputs(work.arrivals_s, work.lengths, service, work.pricing, work.rules,
                          work.fleet, work.scaling),
                space,
                [replace(p, instance_type=kind) for p in seeds]
                + knee_seeds(space, Encoding.build(space, work.lengths).cuts, service,
                             work.arrivals_s, work.lengths, work.slo_ms,
                             scaling.target_utilization))
        return setups[kind]

    def run(kind: str, budget: int, extra: Sequence[Plan]) -> SearchResult:
        ctx, sim, space, told = setup(kind)
        return optimize(ctx, sim, space, work.slo_ms, percentile, max(budget, 1), seed,
                        progress, seeds=[*extra, *told])

    if len(kinds) == 1:
        return GpuSearchResult({kinds[0]: run(kinds[0], evals, ())})
    first = max(1, evals // (2 * len(kinds)))
    by_type = {kind: run(kind, first, ()) for kind in kinds}
    finalists = sorted(kinds, key=lambda k: _rank(by_type[k]))[:FINALISTS]
    second = max(1, (evals - first * len(kinds)) // len(finalists))
    for kind in finalists:
        earlier = by_type[kind]
        again = run(kind, second, (earlier.plan,) if earlier.plan is not None else ())
        best = min((earlier, again), key=_rank)
        by_type[kind] = replace(best, evaluations=earlier.evaluations + again.evaluations,
                                wall_s=earlier.wall_s + again.wall_s)
    return GpuSearchResult(by_type)


def batch_ceiling(model: GpuLatencyModel, lengths: np.ndarray) -> int:
    """The largest batch worth searching on this GPU: KNEE_SPAN times the knee of the short
    requests (SHORT_QUANTILE of the lengths), at most the dispatcher's MAX_GPU_BATCH. Past its
    knee a batch is compute-bound, so a larger one serves no more per GPU-second and only
    waits longer to fill; the span leaves room for the request fee per invocation and for
    buffers of shorter requests still."""
    short = np.asarray(lengths)[np.asarray(lengths) <= np.quantile(lengths, SHORT_QUANTILE)]
    knee = knee_batch(model, short if short.size else np.asarray([1]), BATCH_LADDER)
    return int(min(MAX_GPU_BATCH, max(KNEE_SPAN * knee, 1)))


def _rank(result: SearchResult) -> tuple[bool, float]:
    """Feasible first, then by simulated end-to-end cost."""
    if not result.feasible or result.simulated is None:
        return (True, math.inf)
    return (False, result.simulated.end_to_end_cost_per_million_usd)
