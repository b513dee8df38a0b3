"""What a plan costs and how fast it answers: the figures the simulator and estimator report.

Every cost figure is end to end unless its name says otherwise (DESIGN.md: every figure says
what it counts): `cost_per_million_usd` and `total_cost_per_million_usd` are kept as aliases of
`end_to_end_cost_per_million_usd` (before issue 12, `cost_per_million_usd` was the batching
cost); `infer_cost_per_million_usd` is the inference function alone (the paper's metric), and
`batching_cost_per_million_usd` what batching changes. The cost itself comes from
plan_cost.RunBilling, on the request path of each buffer's dispatch mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from buffers.padding import padding_overhead
from optimizer.platform.bulk_items import receive_calls
from optimizer.platform.cost_breakdown import CostBreakdown, RequestPath
from optimizer.platform.plan_cost import RunBilling, plan_cost
from optimizer.platform.request_paths import InferBill


@dataclass(frozen=True)
class BufferMetrics:
    """Cost, latency, padding and platform counts of one buffer, or of a whole plan.

    Counts are floats so that the analytical estimator can report expectations.
    Empty (no requests): latencies 0.0 and SLO attainment 1.0.
    Managed mode's low-traffic wait (optimizer/platform/esm_rules.py): low_traffic_share is the
    share of requests that found their poller's batching window lapsed (AWS documents that
    Lambda may then wait up to 20 s); low_traffic_p99_bound_ms is the p99 if each of them did
    (equal to p99_ms where none is exposed; None where not computed).
    """

    requests: float
    invocations: float
    cost: CostBreakdown
    p50_ms: float
    p95_ms: float
    p99_ms: float
    slo_attainment: float  # share of requests answered within slo_ms
    real_tokens: float
    padded_tokens: float
    cold_starts: float
    low_traffic_share: float = 0.0
    low_traffic_p99_bound_ms: float | None = None

    @property
    def end_to_end_cost_per_million_usd(self) -> float:
        """Every line item per 1M requests (a buffer's leaves out the plan's run items)."""
        return self.cost.per_million(self.requests)["end_to_end_cost_per_million_usd"]

    @property
    def infer_cost_per_million_usd(self) -> float:
        """The infer function's GB-seconds (INIT included) and request fees per 1M requests."""
        return self.cost.per_million(self.requests)["infer_cost_per_million_usd"]

    @property
    def batching_cost_per_million_usd(self) -> float:
        """What batching changes (infer function + queue traffic) per 1M requests."""
        return self.cost.per_million(self.requests)["batching_cost_per_million_usd"]

    @property
    def cost_per_million_usd(self) -> float:
        """End to end per 1M requests: the figure plans compete on (alias, see module doc)."""
        return self.end_to_end_cost_per_million_usd

    @property
    def total_cost_per_million_usd(self) -> float:
        """End to end per 1M requests (alias, see module doc)."""
        return self.end_to_end_cost_per_million_usd

    @property
    def padding_overhead(self) -> float:
        """Padded over real tokens, minus one."""
        return padding_overhead(self.real_tokens, self.padded_tokens)

    @property
    def mean_batch_size(self) -> float:
        return self.requests / self.invocations if self.invocations else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "end_to_end_cost_per_million_usd": self.end_to_end_cost_per_million_usd,
            "infer_cost_per_million_usd": self.infer_cost_per_million_usd,
            "batching_cost_per_million_usd": self.batching_cost_per_million_usd,
            "cost_per_million_usd": self.cost_per_million_usd,
            "total_cost_per_million_usd": self.total_cost_per_million_usd,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "slo_attainment": self.slo_attainment,
            "padding_overhead": self.padding_overhead,
            "invocations": self.invocations,
            "requests": self.requests,
            "cold_starts": self.cold_starts,
            "mean_batch_size": self.mean_batch_size,
            "low_traffic_share": self.low_traffic_share,
            "low_traffic_p99_bound_ms": self.low_traffic_p99_bound_ms,
            "cost": self.cost.to_dict(),
        }


@dataclass(frozen=True)
class PlanMetrics(BufferMetrics):
    """A whole plan's figures, with the same figures per buffer.

    instance_hours: a gpu plan's fleet, the instance time billed (optimizer/platform/gpu_cost.py);
    None for a lambda plan, which has no fleet (its dict then leaves the key out, as before).
    """

    per_buffer: dict[str, BufferMetrics] = field(default_factory=dict)
    instance_hours: float | None = None

    def to_dict(self) -> dict[str, Any]:
        fleet = {} if self.instance_hours is None else {"instance_hours": self.instance_hours}
        return {**super().to_dict(), **fleet,
                "per_buffer": {name: m.to_dict() for name, m in self.per_buffer.items()}}


def latency_summary(latency_ms: np.ndarray, slo_ms: float) -> dict[str, float]:
    """p50/p95/p99 (numpy's linear interpolation) and SLO attainment of per-request latencies."""
    if latency_ms.size == 0:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "slo_attainment": 1.0}
    p50, p95, p99 = np.percentile(latency_ms, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99),
            "slo_attainment": float(np.mean(latency_ms <= slo_ms))}


@dataclass(frozen=True)
class BatchLog:
    """One row per invocation, as columns (numpy arrays of equal length)."""

    buffer: np.ndarray  # buffer index
    size: np.ndarray
    padded_length: np.ndarray
    real_tokens: np.ndarray
    start_s: np.ndarray  # when the environment starts the batch (after any wait for one)
    busy_ms: np.ndarray  # cold-start INIT (if cold) plus model execution
    service_ms: np.ndarray  # model execution only
    cold: np.ndarray  # bool
    billed_ms: np.ndarray  # per invocation, rounded up to the billing granularity
    memory_mb: np.ndarray

    def __len__(self) -> int:
        return int(self.size.size)

    @property
    def end_s(self) -> np.ndarray:
        return self.start_s + self.busy_ms / 1000.0

    def select(self, mask: np.ndarray) -> BatchLog:
        """The rows where mask holds."""
        return BatchLog(**{k: v[mask] for k, v in self.__dict__.items()})


def plan_metrics(log: BatchLog, latency_ms: np.ndarray, request_buffer: np.ndarray,
                 buffer_names: Sequence[str], slo_ms: float, billing: RunBilling,
                 paths: Sequence[RequestPath], exposed: np.ndarray | None = None,
                 low_traffic_extra_ms: float = 0.0) -> PlanMetrics:
    """Figures for a run: per buffer (each on its request path), then the whole plan, whose
    cost is the buffers' plus the run's fixed items (plan_cost.py).

    exposed: per request, whether it found its poller's window lapsed (managed mode), so that
    it may wait low_traffic_extra_ms longer than simulated (BufferMetrics' low-traffic figures).
    """
    exposed = np.zeros(latency_ms.size, bool) if exposed is None else exposed
    per_buffer = {}
    for index, (name, path) in enumerate(zip(buffer_names, paths, strict=True)):
        mine = request_buffer == index
        per_buffer[name] = _buffer_metrics(log.select(log.buffer == index), latency_ms[mine],
                                           slo_ms, billing, path, exposed[mine],
                                           low_traffic_extra_ms)
    cost = plan_cost([m.cost for m in per_buffer.values()], billing.run_cost(paths))
    whole = _buffer_metrics(log, latency_ms, slo_ms, billing, paths[0], exposed,
                            low_traffic_extra_ms)
    return PlanMetrics(**{**whole.__dict__, "cost": cost}, per_buffer=per_buffer)


def _low_traffic(latency_ms: np.ndarray, exposed: np.ndarray,
                 extra_ms: float) -> dict[str, float]:
    if latency_ms.size == 0:
        return {"low_traffic_share": 0.0, "low_traffic_p99_bound_ms": 0.0}
    bound = np.percentile(latency_ms + np.where(exposed, extra_ms, 0.0), 99)
    return {"low_traffic_share": float(np.mean(exposed)),
            "low_traffic_p99_bound_ms": float(bound)}


def _buffer_metrics(log: BatchLog, latency_ms: np.ndarray, slo_ms: float, billing: RunBilling,
                    path: RequestPath, exposed: np.ndarray,
                    low_traffic_extra_ms: float) -> BufferMetrics:
    requests = int(latency_ms.size)
    bill = InferBill.from_invocations(log.billed_ms, log.memory_mb)
    return BufferMetrics(
        requests=requests,
        invocations=len(log),
        cost=billing.buffer_cost(path, requests, bill, receive_calls(log.size)),
        **latency_summary(latency_ms, slo_ms),
        real_tokens=int(np.sum(log.real_tokens)),
        # rounded: a ragged batch logs its mean length R / B, whose products sum to R +- ulps
        padded_tokens=int(np.rint(np.sum(log.size * log.padded_length))),
        cold_starts=int(np.sum(log.cold)),
        **_low_traffic(latency_ms, exposed, low_traffic_extra_ms),
    )
