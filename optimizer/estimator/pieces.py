"""The pieces a buffer's estimate is built from, whatever forms its batches: the service time
and bill per batch size, the cost, cold-start shares, and an empty buffer.

Helper of optimizer/estimator/estimate.py (dispatcher mode) and optimizer/estimator/esm.py
(managed mode), so that both price and time a batch one way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from buffers.plan import BufferSpec
from optimizer.estimator.context import EstimatorContext
from optimizer.estimator.environments import PlatformLoad
from optimizer.estimator.latency import LatencyCdf, max_length_pmf
from optimizer.platform.bulk_items import receive_calls
from optimizer.platform.metrics import BufferMetrics, CostBreakdown
from optimizer.platform.plan_cost import buffer_path
from optimizer.platform.pricing import MB_PER_GB
from optimizer.platform.request_paths import InferBill

LATENCY_BINS = 512  # grid points per buffer's latency distribution
QUEUE_TAIL_MEANS = 6.0  # the latency grid reaches this many mean environment waits further
_BUSY_STEP = 0.01  # mean busy time is rounded to 1% steps in log space for the load windows
_OVERFLOW_PARTS = 4  # a uniform wait for INIT to end, as this many shifted copies


@dataclass(frozen=True)
class Service:
    """Per batch size: expected billed ms, service ms, padded length, and the raw tables."""

    sizes: np.ndarray
    batches: np.ndarray  # expected batches of each size
    billed_ms: np.ndarray
    service_ms: np.ndarray
    padded: np.ndarray
    table_ms: np.ndarray  # t(s, l) over the buffer's lengths
    max_pmf: np.ndarray  # P(M_s = l)


def service_by_size(ctx: EstimatorContext, spec: BufferSpec, size_weights: np.ndarray,
                    cdf: np.ndarray, lengths: np.ndarray) -> Service:
    """Service and billed ms per batch size with expected batches of each size (weights)."""
    sizes = np.nonzero(size_weights > 0)[0]
    table = ctx.service.rows(spec.memory_mb, sizes)[:, spec.min_length: spec.max_length + 1]
    step = ctx.pricing.billing_granularity_ms
    billed = np.ceil(np.maximum(table, 0.0) / step) * step
    max_pmf = max_length_pmf(cdf, sizes)
    return Service(sizes, size_weights[sizes], np.sum(max_pmf * billed, axis=1),
                   np.sum(max_pmf * table, axis=1), np.einsum("sl,l->s", max_pmf, lengths), table,
                   max_pmf)


def buffer_cost(ctx: EstimatorContext, spec: BufferSpec, requests: float, svc: Service,
                cold_starts: float) -> CostBreakdown:
    """The buffer's bill on its request path: its batches' billed ms, INIT, requests."""
    invocations = float(np.sum(svc.batches))
    billed_ms = (float(np.sum(svc.batches * svc.billed_ms))
                 + cold_starts * ctx.rules.init_billed_ms(True))
    bill = InferBill(gb_s=billed_ms / 1000.0 * spec.memory_mb / MB_PER_GB,
                     invocations=invocations)
    return ctx.billing.buffer_cost(buffer_path(spec), requests, bill,
                                   receive_calls(svc.sizes, svc.batches))


def startup_parts(ctx: EstimatorContext, load: PlatformLoad,
                  batches: float) -> tuple[tuple[float, float], ...]:
    """Shares of requests that sit through a cold start (+cold_ms), or wait for the first
    environments' INIT to end (+U(0, cold_ms), as _OVERFLOW_PARTS shifted copies)."""
    cold_ms = ctx.rules.cold_start_ms
    cold = min(1.0, load.cold_starts / max(batches, 1e-300))
    overflow = min(1.0 - cold, load.startup_overflow / max(batches, 1e-300))
    shifts = (np.arange(_OVERFLOW_PARTS) + 0.5) / _OVERFLOW_PARTS * cold_ms
    parts = ((1.0 - cold - overflow, 0.0), (cold, cold_ms),
             *((overflow / _OVERFLOW_PARTS, float(x)) for x in shifts))
    return tuple(part for part in parts if part[0] > 0) or ((1.0, 0.0),)


def service_cv2(svc: Service) -> float:
    """Squared coefficient of variation of a batch's model time, over sizes and lengths."""
    share = svc.batches / max(float(np.sum(svc.batches)), 1e-300)
    mean = float(np.sum(share * svc.service_ms))
    second = float(np.sum(share * np.sum(svc.max_pmf * svc.table_ms ** 2, axis=1)))
    return max(second / max(mean * mean, 1e-300) - 1.0, 0.0)


def rounded_busy(busy_ms: float) -> float:
    """busy_ms to 1% steps (it only sets load windows), so that their positions are reused."""
    if busy_ms <= 1.0:
        return busy_ms
    return float(np.exp(np.round(np.log(busy_ms) / _BUSY_STEP) * _BUSY_STEP))


def empty_buffer(ctx: EstimatorContext, spec: BufferSpec) -> tuple[BufferMetrics, LatencyCdf]:
    """No requests: no invocations, but a managed buffer's queues are still polled."""
    cost = ctx.billing.buffer_cost(buffer_path(spec), 0.0, InferBill(0.0, 0.0))
    metrics = BufferMetrics(requests=0.0, invocations=0.0, cost=cost, p50_ms=0.0,
                            p95_ms=0.0, p99_ms=0.0, slo_attainment=1.0, real_tokens=0.0,
                            padded_tokens=0.0, cold_starts=0.0,
                            low_traffic_p99_bound_ms=0.0)
    return metrics, LatencyCdf(1.0, np.zeros(1), ((1.0, 0.0),))
