"""A plan's end-to-end bill: each buffer on its request path, plus the run's fixed items. Pure.

The estimator and the simulator both price a plan here, so that they agree on every item but
the infer function's bill (which each computes its own way) and the batch counts:
- a dispatcher-mode buffer is priced on the ONLINE path (request_paths.online_request_cost: an
  HTTP API call, a Cloud Map discovery call, log lines and the response's egress per request;
  no SQS and no DynamoDB);
- a managed-mode buffer on the BULK path (request_paths.bulk_cost, with its queue and its DLQ
  long-polled for the run: the DLQ has an event source mapping, infra/aws/template/buffers.py);
- the PLAIN_LAMBDA path prices a one-request-per-invocation run behind the HTTP API.
Once per plan, if any buffer is in dispatcher mode, the dispatcher fleet that autoscaling runs
for the trace's per-minute rates over the run (dispatcher_fleet.fleet_task_seconds) with its
Cloud Map instances (request_paths.online_run_cost). Those run items belong to the plan, not to
a buffer, so a plan's cost is the sum of its buffers' plus the run's.

The run lasts from the first arrival (time 0) to the last: the dispatcher serves while requests
arrive; the few seconds after the last arrival, before its answer, are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from buffers.plan import BufferSpec, DispatchMode, Plan
from optimizer.platform.cost_breakdown import CostBreakdown, RequestPath
from optimizer.platform.dispatcher_fleet import (
    DEFAULT_TASK,
    DISPATCHER_TASK_CAPACITY_RPS,
    MIN_DISPATCHER_TASKS,
    DispatcherTask,
    fleet_task_seconds,
)
from optimizer.platform.pricing import Pricing
from optimizer.platform.request_paths import (
    InferBill,
    bulk_cost,
    online_request_cost,
    online_run_cost,
    plain_lambda_cost,
)

QUEUES_PER_MANAGED_BUFFER = 2  # its queue and its DLQ, each with an event source mapping


@dataclass(frozen=True)
class FleetSettings:
    """How the dispatcher's ECS service scales (dispatcher_fleet.py's model and defaults)."""

    capacity_rps: float = DISPATCHER_TASK_CAPACITY_RPS
    min_tasks: int = MIN_DISPATCHER_TASKS
    max_tasks: int | None = None
    task: DispatcherTask = DEFAULT_TASK

    def task_seconds(self, arrivals_s: np.ndarray, duration_s: float) -> float:
        """Task-seconds autoscaling runs for these arrivals over duration_s (0 with none)."""
        arrivals = np.asarray(arrivals_s, dtype=np.float64)
        if arrivals.size == 0:
            return 0.0
        return fleet_task_seconds(arrivals, duration_s, self.capacity_rps, self.min_tasks,
                                  self.max_tasks)


@dataclass(frozen=True)
class RunBilling:
    """Everything that prices a run besides its invocations: prices, arch, span and fleet."""

    pricing: Pricing
    arch: str = "x86"
    duration_s: float = 0.0
    task_seconds: float = 0.0  # the dispatcher fleet's, over duration_s
    task: DispatcherTask = DEFAULT_TASK
    encoding: str = "float"  # the responses' encoding_format (egress)

    def __post_init__(self) -> None:
        if self.duration_s < 0 or self.task_seconds < 0:
            raise ValueError(f"duration_s and task_seconds must be >= 0, got "
                             f"{self.duration_s}, {self.task_seconds}")

    @classmethod
    def for_arrivals(cls, arrivals_s: np.ndarray, pricing: Pricing, arch: str = "x86",
                     fleet: FleetSettings | None = None, encoding: str = "float") -> RunBilling:
        """The billing of a run over these arrivals (sorted seconds from 0)."""
        arrivals = np.asarray(arrivals_s, dtype=np.float64)
        fleet = fleet or FleetSettings()
        duration_s = max(float(arrivals.max(initial=0.0)), 0.0)
        return cls(pricing, arch, duration_s, fleet.task_seconds(arrivals, duration_s),
                   fleet.task, encoding)

    def buffer_cost(self, path: RequestPath, requests: float, bill: InferBill,
                    receives: float = 0.0) -> CostBreakdown:
        """One buffer's items on `path`; receives: its non-empty SQS receives (bulk only)."""
        path = RequestPath(path)
        if path is RequestPath.ONLINE:
            return online_request_cost(requests, bill, self.pricing, encoding=self.encoding,
                                       arch=self.arch)
        if path is RequestPath.BULK:
            return bulk_cost(requests, bill, receives, self.duration_s,
                             QUEUES_PER_MANAGED_BUFFER, self.pricing, encoding=self.encoding,
                             arch=self.arch)
        return plain_lambda_cost(requests, bill, self.pricing, encoding=self.encoding,
                                 arch=self.arch)

    def run_cost(self, paths: Sequence[RequestPath]) -> CostBreakdown:
        """The run's fixed items: the dispatcher fleet when any buffer is online, else none."""
        if RequestPath.ONLINE in paths:
            return online_run_cost(self.duration_s, self.task_seconds, self.pricing, self.task)
        kinds = set(paths)
        return CostBreakdown(path=kinds.pop() if len(kinds) == 1 else None)


def buffer_path(spec: BufferSpec) -> RequestPath:
    """The request path a buffer is reached by: its dispatch mode's."""
    if spec.dispatch_mode is DispatchMode.MANAGED:
        return RequestPath.BULK
    return RequestPath.ONLINE


def plan_paths(plan: Plan) -> tuple[RequestPath, ...]:
    """Each buffer's request path, in plan order."""
    return tuple(buffer_path(spec) for spec in plan.buffers)


def plan_cost(buffers: Sequence[CostBreakdown], run: CostBreakdown) -> CostBreakdown:
    """The plan's bill: its buffers' items plus the run's. A plan whose buffers mix dispatch
    modes has no single path (path None); its items still add."""
    parts = [*buffers, run]
    kinds = {part.path for part in parts if part.path is not None}
    if len(kinds) > 1:
        parts = [replace(part, path=None) for part in parts]
    total = sum(parts, CostBreakdown())
    if not kinds:
        return total
    return total if len(kinds) > 1 else replace(total, path=kinds.pop())

