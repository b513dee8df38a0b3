"""The gpu backend's plan search: buffers and fleet together, on each instance type.

The service time depends on the instance's GPU (a profile measured on one GPU is moved to
another by gpu_instances.scale_model, labelled an estimate), so each catalogued type gets its
own estimator context and simulator inputs, and the usual search (optimize.py) runs over the
buffers and the fleet's bounds (min_instances, max_instances) on that type. A handful of types
is enumerated exactly rather than handed to the GP as a categorical. The answer is the plan
whose simulated end-to-end cost is lowest among the types' winners.

Per-buffer concurrency: a gpu buffer's max_concurrency is the dispatcher's cap on its batches in
flight; the space sets it to the largest fleet searched (within the account's 1,000 in total),
so that the fleet, not the dispatcher, bounds how many batches run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from buffers.plan import DEFAULT_MIN_INSTANCES, MAX_CONCURRENCY, MIN_CONCURRENCY, Plan
from optimizer.estimator.fleet import fleet_context
from optimizer.platform.backends import GPU_MEMORY_MB
from optimizer.platform.gpu_instances import INSTANCES, gpu_for_device_name, instance, scale_model
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.latency_model import GpuLatencyModel
from optimizer.platform.lmi_scaling import ScalingRules
from optimizer.platform.plan_cost import FleetSettings
from optimizer.platform.pricing import Pricing
from optimizer.search.optimize import Progress, optimize
from optimizer.search.result import SearchResult
from optimizer.search.space import SearchSpace, make_space
from optimizer.sim.inputs import SimInputs

# Fleet ceilings to try, about 1.5x apart from the default floor of three.
MAX_INSTANCES_LADDER = (3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


def service_for(model: GpuLatencyModel, instance_type: str) -> GpuLatencyModel:
    """`model` on the instance type's GPU: itself if measured there, else scaled (an estimate)."""
    target = instance(instance_type).gpu
    if gpu_for_device_name(model.gpu_name) == target:
        return model
    return scale_model(model, target)


def gpu_space(instance_type: str, max_buffers: int = 4, *, slo_ms: float = 1000.0,
              batch_range: tuple[int, int] = (1, 512),
              timeout_range_ms: tuple[int, int] | None = None,
              max_batch_tokens: Sequence[int] | None = None,
              min_instances: Sequence[int] = (DEFAULT_MIN_INSTANCES,),
              max_instances: Sequence[int] = MAX_INSTANCES_LADDER) -> SearchSpace:
    """make_space's grids for the gpu backend: one memory (a GPU's time does not depend on
    it), dispatcher mode, and the fleet's bounds on `instance_type`."""
    ceilings = tuple(sorted(set(max_instances)))
    cap = max(MIN_CONCURRENCY, min(ceilings[-1], MAX_CONCURRENCY // max_buffers))
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
                 progress: Progress | None = None) -> GpuSearchResult:
    """Search buffers and fleet on each instance type (default: the whole catalogue).

    Parameters: work the workload and GPU profile; evals the estimate budget per type;
    space_options extra keyword arguments for gpu_space (batch_range, max_instances, ...).
    Returns: GpuSearchResult with every type's SearchResult and the cheapest as `best`.
    """
    kinds = tuple(instance_types) if instance_types is not None else tuple(sorted(INSTANCES))
    by_type: dict[str, SearchResult] = {}
    for kind in kinds:
        service = service_for(work.model, kind)
        ctx = fleet_context(work.arrivals_s, work.lengths, service, work.pricing, work.slo_ms,
                            work.rules, fleet=work.fleet)
        sim = SimInputs(work.arrivals_s, work.lengths, service, work.pricing, work.rules,
                        work.fleet, work.scaling)
        space = gpu_space(kind, max_buffers, slo_ms=work.slo_ms, **(space_options or {}))
        by_type[kind] = optimize(ctx, sim, space, work.slo_ms, percentile, evals, seed,
                                 progress)
    return GpuSearchResult(by_type)
