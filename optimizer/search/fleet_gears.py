"""Gears for a gpu plan: per load level, its batching AND its fleet's bounds (CascadeServe's
plan per load level, Kakolyris et al. 2024, with the fleet as part of the plan).

- Levels, each gear's own traffic, the static plan as the seed and the replay of the whole
  trace as the judge are optimizer/search/gears.py's; this module gives it a gpu gear's space
  and estimates.
- Space: the static plan's layout and instance type fixed (one capacity provider, whose
  instance type cannot change with a gear), batch size and timeout as for any gear, and the
  fleet's floor and ceiling from the gpu space's ladders (optimizer/search/gpu.py). Floors
  never go under the static plan's (three by default: LMI "launches three [instances] by
  default for AZ resiliency", buffers/plan.py), and the static plan's own bounds are choices,
  so that the seed lies in the space.
- Estimates: the FleetEstimator (optimizer/estimator/fleet.py) on fleet_context, which has no
  cold starts, as an LMI instance serves only once initialised.
- The replay switches the fleet's bounds with the gear (optimizer/sim/fleet.py): a raised floor
  serves launch_s after the switch, so the judge sees the lag that the dispatcher's
  PutFunctionScalingConfig has when deployed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from buffers.gears import GearConfig
from buffers.plan import BackendType, Plan
from optimizer.estimator.context import EstimatorContext
from optimizer.estimator.fleet import fleet_context
from optimizer.search.gears import GearPlans, plan_gears
from optimizer.search.space import SearchSpace
from optimizer.sim.inputs import SimInputs


def fleet_gear_space(static: Plan, space: SearchSpace) -> SearchSpace:
    """`space`'s batching and fleet ladders over `static`'s layout and instance type."""
    if static.backend is not BackendType.GPU or static.max_instances is None:
        raise ValueError(f"fleet gears need a gpu plan, got backend {static.backend.value!r}")
    rungs = set(space.min_instances) | set(space.max_instances)
    floors = sorted({static.min_instances} | {n for n in rungs if n >= static.min_instances})
    ceilings = sorted(set(space.max_instances) | {static.max_instances})
    return replace(space, max_buffers=len(static.buffers), layout=static.buffers,
                   boundaries=None, instance_type=static.instance_type,
                   min_instances=tuple(floors), max_instances=tuple(ceilings))


def fleet_gear_context(sub: SimInputs, slo_ms: float, arch: str) -> EstimatorContext:
    """The FleetEstimator's context for a gear's workload."""
    return fleet_context(sub.arrivals_s, sub.lengths, sub.service_ms, sub.pricing, slo_ms,
                         sub.rules, arch, sub.fleet)


def plan_fleet_gears(static: Plan, sim: SimInputs, space: SearchSpace, slo_ms: float,
                     percentile: float, evals: int, seed: int, config: GearConfig | None = None,
                     progress: Any = None) -> GearPlans:
    """One batching and fleet per load level over a gpu plan's layout (the module doc).

    Parameters: static the gpu plan (its layout, instance type and the seed); sim the whole
    trace (its fleet scaling rules included); space the gpu space the static plan came from
    (its batching choices and fleet ladders); the rest as plan_gears.
    Returns: GearPlans whose gear plans carry their own min_instances and max_instances.
    """
    return plan_gears(static, sim, space, slo_ms, percentile, evals, seed, config, progress,
                      gear_space=fleet_gear_space(static, space), context=fleet_gear_context)
