"""A schedule, replayed by the simulator under Lambda's rules.

A schedule (clairvoyant.py) is planned warm and without queueing. Here it runs through the
simulator itself (optimizer/sim/engine.py) as the `schedule` policy: each batch is launched
when its last member arrives, on one function of the schedule's memory with at most
`max_concurrency` environments, so cold starts, keep-alive and waiting for a free environment
are the simulator's, as for every other policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from buffers.plan import MODEL_MAX_LENGTH, BufferSpec, DispatchMode, Plan
from buffers.types import ServiceTime
from optimizer.floors.clairvoyant import Schedule
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.pricing import Pricing
from optimizer.sim.engine import SimResult, simulate
from optimizer.sim.launcher import Launcher
from optimizer.sim.policy import PolicyInputs, PolicyOptions, register

SCHEDULE_POLICY = "schedule"  # its name in the simulator's policy registry


class SchedulePolicy:
    """Launches fixed batches, each when its last member (by arrival) arrives."""

    gear_of = None

    def __init__(self, schedule: Sequence[Sequence[int]], arrivals_s: list[float],
                 lengths: list[int], routes: list[int], launcher: Launcher) -> None:
        self.lengths = lengths
        self.routes = routes
        self.launcher = launcher
        self.due: dict[int, list[tuple[int, ...]]] = {}
        for members in schedule:
            if not members:
                raise ValueError("a scheduled batch needs at least one request, got none")
            last = max(members, key=lambda i: (arrivals_s[i], i))
            self.due.setdefault(last, []).append(tuple(members))

    def on_arrival(self, index: int, now_s: float) -> list[tuple[float, Any]]:
        for members in self.due.pop(index, ()):
            padded = max(self.lengths[i] for i in members)
            self.launcher.launch(self.routes[members[0]], members, padded, now_s)
        return []

    def on_event(self, event: Any, now_s: float) -> list[tuple[float, Any]]:
        return []


def _schedule(inputs: PolicyInputs) -> SchedulePolicy:
    if inputs.options.schedule is None:
        raise ValueError("the schedule policy needs PolicyOptions.schedule, got None")
    if len(inputs.plan.buffers) != 1:
        raise ValueError(f"the schedule policy takes a one-buffer plan, got "
                         f"{len(inputs.plan.buffers)} buffers")
    return SchedulePolicy(inputs.options.schedule, inputs.arrivals_s, inputs.lengths,
                          inputs.routes, inputs.launcher)


register(SCHEDULE_POLICY, _schedule)


def schedule_plan(schedule: Schedule, max_concurrency: int) -> Plan:
    """The one function a schedule runs on: its memory, this many environments at most."""
    largest = max(len(b) for b in schedule.batches)
    spec = BufferSpec(name="clairvoyant", min_length=1, max_length=MODEL_MAX_LENGTH,
                      max_batch_size=largest, timeout_ms=0, memory_mb=schedule.memory_mb,
                      dispatch_mode=DispatchMode.DISPATCHER, max_concurrency=max_concurrency)
    return Plan(buffers=(spec,), name="clairvoyant", policy=SCHEDULE_POLICY)


def replay(schedule: Schedule, max_concurrency: int, arrivals_s: np.ndarray,
           lengths: np.ndarray, service_ms: ServiceTime, pricing: Pricing, slo_ms: float,
           rules: LambdaRules | None = None, arch: str = "x86") -> SimResult:
    """The schedule run by the simulator (cold starts, keep-alive, the concurrency cap)."""
    return simulate(schedule_plan(schedule, max_concurrency), arrivals_s, lengths, service_ms,
                    pricing, slo_ms, rules=rules, arch=arch,
                    policy=PolicyOptions(name=SCHEDULE_POLICY, schedule=schedule.batches))
