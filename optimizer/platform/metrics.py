"""What a plan costs and how fast it answers: the figures the simulator and estimator report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from buffers.padding import padding_overhead
from optimizer.platform.cost_breakdown import PER_MILLION, CostBreakdown, RequestPath
from optimizer.platform.pricing import MB_PER_GB, Pricing

SQS_BATCH_MAX = 10  # ReceiveMessage and DeleteMessageBatch take at most 10 messages per call
# Per-request fixed items (the same under every plan, so they never decide between plans):
# the client POSTs the text and GETs its result once: two HTTP API requests.
API_REQUESTS_PER_REQUEST = 2
# Two small functions sit on that path: ingest (tokenize, send to SQS, put PENDING) and results
# (one GetItem). Our assumption: 256 MB each (the tokenizers wheel and powertools do not fit
# comfortably in 128 MB) and 15 ms warm (two in-region AWS API calls of ~5 ms plus tokenizing).
FRONT_INVOCATIONS_PER_REQUEST = 2
FRONT_MEMORY_MB = 256
FRONT_DURATION_MS = 15.0
# DynamoDB on-demand: PENDING put (<1 KB: 1 WRU), result put (384 floats, ~1.5 KB: 2 WRU),
# one strongly consistent read of the result (<4 KB: 1 RRU).
DDB_WRITE_UNITS_PER_REQUEST = 3
DDB_READ_UNITS_PER_REQUEST = 1


def sqs_calls(batch_sizes: np.ndarray) -> int:
    """Receive plus delete calls for these batches (each batch's messages in calls of 10)."""
    sizes = np.asarray(batch_sizes, dtype=np.int64)
    return int(2 * np.sum(-(-sizes // SQS_BATCH_MAX)))


def fixed_usd(requests: int, pricing: Pricing, arch: str = "x86") -> dict[str, float]:
    """The per-request items (api_usd, ingest_usd, store_usd) for `requests` requests."""
    front = pricing.lambda_invocation_usd(FRONT_DURATION_MS, FRONT_MEMORY_MB, arch)
    store = (DDB_WRITE_UNITS_PER_REQUEST * pricing.ddb_write_request_usd
             + DDB_READ_UNITS_PER_REQUEST * pricing.ddb_read_request_usd)
    return {
        "api_usd": requests * API_REQUESTS_PER_REQUEST * pricing.api_http_request_usd,
        "ingest_usd": requests * FRONT_INVOCATIONS_PER_REQUEST * front,
        "store_usd": requests * store,
    }


def run_cost(requests: int, batch_sizes: np.ndarray, billed_ms: np.ndarray,
             memory_mb: np.ndarray, pricing: Pricing, arch: str = "x86") -> CostBreakdown:
    """Bulk-path cost of `requests` requests served by invocations of these sizes, billed ms,
    memory: the per-request and per-batch items only (request_paths.bulk_cost adds the rest)."""
    gb_s = float(np.sum(np.asarray(billed_ms, dtype=np.float64) / 1000.0
                        * np.asarray(memory_mb, dtype=np.float64) / MB_PER_GB))
    return CostBreakdown(
        infer_compute_usd=gb_s * pricing.lambda_gb_s_usd(arch),
        infer_request_usd=len(batch_sizes) * pricing.lambda_request_usd,
        queue_usd=(requests + sqs_calls(batch_sizes)) * pricing.sqs_request_usd,
        **fixed_usd(requests, pricing, arch),
        path=RequestPath.BULK,
    )


@dataclass(frozen=True)
class BufferMetrics:
    """Cost, latency, padding and platform counts of one buffer, or of a whole plan.

    Counts are floats so that the analytical estimator can report expectations.
    Empty (no requests): latencies 0.0 and SLO attainment 1.0.
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

    @property
    def cost_per_million_usd(self) -> float:
        """Batching cost (infer + queue) per 1M requests: the figure plans compete on."""
        return self.cost.batching_usd / self.requests * PER_MILLION if self.requests else 0.0

    @property
    def total_cost_per_million_usd(self) -> float:
        return self.cost.total_usd / self.requests * PER_MILLION if self.requests else 0.0

    @property
    def end_to_end_cost_per_million_usd(self) -> float:
        """Every line item per 1M requests (the same figure as total_cost_per_million_usd)."""
        return self.cost.per_million(self.requests)["end_to_end_cost_per_million_usd"]

    @property
    def infer_cost_per_million_usd(self) -> float:
        """The infer function's GB-seconds (INIT included) and request fees per 1M requests."""
        return self.cost.per_million(self.requests)["infer_cost_per_million_usd"]

    @property
    def batching_cost_per_million_usd(self) -> float:
        """What batching changes per 1M requests (the same figure as cost_per_million_usd)."""
        return self.cost.per_million(self.requests)["batching_cost_per_million_usd"]

    @property
    def padding_overhead(self) -> float:
        """Padded over real tokens, minus one."""
        return padding_overhead(self.real_tokens, self.padded_tokens)

    @property
    def mean_batch_size(self) -> float:
        return self.requests / self.invocations if self.invocations else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
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
            "cost": self.cost.to_dict(),
        }


@dataclass(frozen=True)
class PlanMetrics(BufferMetrics):
    """A whole plan's figures, with the same figures per buffer."""

    per_buffer: dict[str, BufferMetrics] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(),
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
                 buffer_names: Sequence[str], pricing: Pricing, slo_ms: float,
                 arch: str = "x86") -> PlanMetrics:
    """Figures for a run: per buffer, then the whole plan (its cost is the sum of the buffers')."""
    per_buffer = {}
    for index, name in enumerate(buffer_names):
        per_buffer[name] = _buffer_metrics(log.select(log.buffer == index),
                                           latency_ms[request_buffer == index],
                                           pricing, slo_ms, arch)
    cost = sum((m.cost for m in per_buffer.values()), CostBreakdown())
    whole = _buffer_metrics(log, latency_ms, pricing, slo_ms, arch)
    return PlanMetrics(**{**whole.__dict__, "cost": cost}, per_buffer=per_buffer)


def _buffer_metrics(log: BatchLog, latency_ms: np.ndarray, pricing: Pricing, slo_ms: float,
                    arch: str) -> BufferMetrics:
    requests = int(latency_ms.size)
    return BufferMetrics(
        requests=requests,
        invocations=len(log),
        cost=run_cost(requests, log.size, log.billed_ms, log.memory_mb, pricing, arch),
        **latency_summary(latency_ms, slo_ms),
        real_tokens=int(np.sum(log.real_tokens)),
        padded_tokens=int(np.sum(log.size * log.padded_length)),
        cold_starts=int(np.sum(log.cold)),
    )
