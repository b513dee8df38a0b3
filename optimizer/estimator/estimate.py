"""Analytical estimator: a plan's cost and latency on a workload, without replaying the trace.

Dispatcher-mode buffers are estimated here; managed-mode ones, batched by the SQS event source
mapping as AWS runs it, in optimizer/estimator/esm.py, on the same pieces (pieces.py).

`EstimatorContext.build(...)` once per workload (context.py), then `estimate(plan,
ctx)` per plan: tens of ms or less, pure numpy/scipy, no clock reads, so the Bayesian search
can call it thousands of times. The discrete-event simulator (optimizer/sim/engine.py) judges
it: benchmarks/bench_estimator.py.

What we chose, and why. Lengths are i.i.d., so a buffer sees an independent thinning of the
real trace with p = P(L in its range). BATCH (Ali et al., SC'20) fits a MAP(2) to the arrivals
and runs a transient CTMC per batch; a 2-state MAP cannot hold both the Azure code trace's
millisecond bursts and its minute-scale swings. We keep the real arrival times instead and take
exact expectations over the thinning (batching.py):
- arrival i opens a batch with probability q_i; at most one batch is open, so q solves a banded
  unit-triangular system built from the forward counts N_i(T) (LAPACK dtbtrs, O(n x band)). The
  plain Palm-count shortcut (every arrival a possible opener, size min(B, 1 + Bin(N_i(T), p)))
  counts a burst's later arrivals as openers and misses invocations on the code trace by up to
  19% for a plan and 24% for one buffer; with q the expected invocations and batch-size
  distribution are exact (a test checks them against all 2^10 thinnings of a small trace).
- waits, per batch size: a timed-out batch's opener waits T and its members T minus their
  offsets (a uniform subset of the real arrivals in its window, taken from a Palm sample of
  openers); a filled batch closes at the (B-1)-th buffer arrival. Waits are a full
  distribution, not BATCH's CDF cut at the next size's service time (DESIGN.md's warning;
  batch_waits.py).
- padded length: the maximum of s draws from the buffer's length pmf, P(M_s <= l) = F(l)^s;
  service t(s, M_s) from the `service_ms` callable (interpolated between profile nodes).
- Lambda (platform.py): the launches still running around each arrival give local
  load; cold starts count when the m-th environment is needed after keep_alive_s unused
  (including the INIT cascade at start-up); waits for an environment combine an M/M/c-like
  term at the local load with a fluid backlog (Lindley's recursion on expected work).
- latency = wait + service (+ environment wait) convolved per batch size on a grid, with
  shifted copies for cold starts; p50/p95/p99 of the buffers' mixture (latency.py).
- cost: expected invocations x expected billed ms (1 ms rounding applied to every (s, l)
  service time) x memory, request fees and INIT billed per expected cold start make the infer
  bill; the rest of the request path (online for dispatcher-mode buffers, bulk with SQS calls
  of 10 messages for managed ones) and, once per plan, the dispatcher fleet over the trace's
  per-minute rates come from platform/plan_cost.py, the same functions the simulator prices by.
Approximations: members of a filled batch are uniform in (0, close time); members' offsets come
from a Palm sample of 4,096 openers; a token budget acts as the largest batch size s with
s * E[M_s] <= max_batch_tokens; the start-up transient (first cold_start_ms) is coarse, which
shows at high rate scales where it holds about 1% of requests.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from buffers.plan import BackendType, BufferSpec, DispatchMode, Plan
from optimizer.estimator.batch_waits import wait_histograms
from optimizer.estimator.batching import BatchFormation, batch_formation
from optimizer.estimator.context import EstimatorContext
from optimizer.estimator.environments import LaunchStream, PlatformLoad, platform_load
from optimizer.estimator.esm import estimate_managed_buffer
from optimizer.estimator.latency import (
    LatencyCdf,
    convolve_rows,
    max_length_pmf,
    queue_masses,
    spread_rows,
    tail_figures,
)
from optimizer.estimator.pieces import (
    LATENCY_BINS,
    QUEUE_TAIL_MEANS,
    Service,
    buffer_cost,
    empty_buffer,
    rounded_busy,
    service_by_size,
    service_cv2,
    startup_parts,
)
from optimizer.platform.metrics import BufferMetrics, PlanMetrics
from optimizer.platform.plan_cost import plan_cost, plan_paths

__all__ = ["EstimatorContext", "estimate", "estimate_buffer"]



def _effective_batch(spec: BufferSpec, cdf: np.ndarray, lengths: np.ndarray) -> int:
    """max_batch_size, cut to the largest s with s * E[M_s] <= max_batch_tokens if set."""
    if spec.max_batch_tokens is None:
        return spec.max_batch_size
    sizes = np.arange(1, spec.max_batch_size + 1)
    mean_max = np.einsum("sl,l->s", max_length_pmf(cdf, sizes), lengths)
    fits = np.nonzero(sizes * mean_max <= spec.max_batch_tokens)[0]
    return int(sizes[fits[-1]]) if fits.size else 1


def _latency(ctx: EstimatorContext, spec: BufferSpec, form: BatchFormation, svc: Service,
             load: PlatformLoad, requests: float) -> LatencyCdf:
    """Wait + service (+ environment wait), per batch size, and its cold-start shares."""
    queue_tail = float(load.backlog_ms.max(initial=0.0))
    waits = load.waits
    if waits:
        queue_tail += QUEUE_TAIL_MEANS * float(load.class_means_ms.max())
    top_ms = spec.timeout_ms + float(svc.table_ms.max()) + queue_tail
    step = max(top_ms, 1.0) / (LATENCY_BINS - 1)
    rows, pairs = ctx.pairs(spec.timeout_ms, form.band) if form.max_batch > 1 else (None, None)
    by_size = wait_histograms(form, pairs, rows, spec.timeout_ms / 1000.0, step / 1000.0,
                              LATENCY_BINS)
    service = spread_rows(svc.table_ms, svc.max_pmf, step, LATENCY_BINS)
    base = convolve_rows(by_size[svc.sizes], service, LATENCY_BINS)
    if waits:
        queue = queue_masses(load.backlog_ms, load.share * (1.0 - load.busy_chance),
                             load.share * load.busy_chance, load.wait_class,
                             load.class_means_ms, step, LATENCY_BINS)
        base = convolve_rows(base[None, :], queue[None, :], LATENCY_BINS)
    base *= requests / max(float(np.sum(base)), 1e-300)
    return LatencyCdf(step, base, startup_parts(ctx, load, float(np.sum(svc.batches))))


def _per_opener(form: BatchFormation, svc: Service) -> tuple[np.ndarray, np.ndarray]:
    """E[model time] and E[size] of the batch each arrival would open, given its K_i."""
    by_size = np.zeros(form.max_batch + 1)
    by_size[svc.sizes] = svc.service_ms
    given = form.size_given_count()
    at = np.minimum(form.counts, given.shape[0] - 1)
    sizes = np.arange(form.max_batch + 1.0)
    return np.einsum("ks,s->k", given, by_size)[at], np.einsum("ks,s->k", given, sizes)[at]


@dataclass(frozen=True)
class BufferShape:
    """What a dispatcher-mode buffer's batches look like: its share of the requests, its
    lengths, how its batches form and their model time per size."""

    p: float  # P(a request's length is in the buffer's range)
    pmf: np.ndarray  # the length pmf over the range (unnormalised: sums to p)
    cdf: np.ndarray  # the range's length cdf given the buffer
    lengths: np.ndarray
    form: BatchFormation
    svc: Service

    def metrics(self, ctx: EstimatorContext, spec: BufferSpec, cdf_ms: LatencyCdf,
                cold_starts: float) -> BufferMetrics:
        """The buffer's figures for a latency distribution and expected cold starts."""
        requests = self.p * ctx.requests
        return BufferMetrics(
            requests=requests, invocations=float(np.sum(self.svc.batches)),
            cost=buffer_cost(ctx, spec, requests, self.svc, cold_starts),
            **tail_figures([cdf_ms], ctx.slo_ms, 0.0),
            real_tokens=requests * float(np.sum(self.pmf * self.lengths)) / self.p,
            padded_tokens=float(np.sum(self.svc.batches * self.svc.sizes * self.svc.padded)),
            cold_starts=cold_starts)


def buffer_shape(spec: BufferSpec, ctx: EstimatorContext) -> BufferShape | None:
    """The buffer's batch formation and service times (None when it gets no requests)."""
    pmf = ctx.length_pmf[spec.min_length: spec.max_length + 1]
    p = float(np.sum(pmf))
    if p <= 0.0 or ctx.requests == 0:
        return None
    lengths = np.arange(spec.min_length, spec.max_length + 1, dtype=np.float64)
    cdf = np.minimum(np.cumsum(pmf) / p, 1.0)
    p = min(p, 1.0)
    form = batch_formation(ctx.counts(spec.timeout_ms), p, _effective_batch(spec, cdf, lengths))
    svc = service_by_size(ctx, spec, p * form.size_weights(), cdf, lengths)
    return BufferShape(p, pmf, cdf, lengths, form, svc)


def estimate_buffer(spec: BufferSpec, ctx: EstimatorContext) -> tuple[BufferMetrics, LatencyCdf]:
    """One buffer's expected figures and its latency distribution (managed mode: esm.py)."""
    if spec.dispatch_mode is DispatchMode.MANAGED:
        return estimate_managed_buffer(spec, ctx)
    shape = buffer_shape(spec, ctx)
    if shape is None:
        return empty_buffer(ctx, spec)
    p, form, svc = shape.p, shape.form, shape.svc
    batches = max(float(np.sum(svc.batches)), 1e-300)
    busy_ms = rounded_busy(float(np.sum(svc.batches * svc.service_ms)) / batches)
    stream = LaunchStream(p, p * form.openers, form.timeout_probability(), spec.timeout_ms,
                          busy_ms, *_per_opener(form, svc), form.max_batch,
                          spec.max_concurrency, service_cv2(svc))
    load = platform_load(ctx.arrivals_s, ctx.positions, ctx.keep_alive_start, stream,
                         ctx.rules.cold_start_ms)
    cdf_ms = _latency(ctx, spec, form, svc, load, p * ctx.requests)
    return shape.metrics(ctx, spec, cdf_ms, load.cold_starts), cdf_ms


def estimate(plan: Plan, ctx: EstimatorContext) -> PlanMetrics:
    """A plan's expected cost, latency percentiles, SLO attainment, padding and invocations.

    Parameters: plan the buffers to estimate; ctx from EstimatorContext.build.
    Returns: PlanMetrics with the same fields the simulator reports (counts are expectations),
    per buffer and for the whole plan (whose latency is the mixture of the buffers').
    """
    if plan.backend is BackendType.GPU:  # its infer function is a fleet, not invocations
        raise ValueError(f"plan {plan.name!r} has backend 'gpu': estimate it with "
                         "optimizer.estimator.fleet.estimate_gpu")
    if np.sum(ctx.length_pmf[plan.max_length + 1:]) > 0:
        top = int(np.nonzero(ctx.length_pmf)[0][-1])
        raise ValueError(f"lengths must be in 1..{plan.max_length}, got {top}")
    total = sum(spec.max_concurrency for spec in plan.buffers)
    if total > ctx.rules.account_concurrency:  # the simulator refuses these plans too
        raise ValueError(f"the buffers' max_concurrency sum to {total}, over the account's "
                         f"concurrency limit {ctx.rules.account_concurrency}")
    parts = [estimate_buffer(spec, ctx) for spec in plan.buffers]
    return combine_buffers(plan, parts, ctx)


def combine_buffers(plan: Plan, parts: list[tuple[BufferMetrics, LatencyCdf]],
                    ctx: EstimatorContext) -> PlanMetrics:
    """A plan's figures from its buffers' (in plan order): sums plus the run's fixed items
    (the dispatcher fleet), and the merged latency CDF."""
    per_buffer = {spec.name: m for spec, (m, _) in zip(plan.buffers, parts, strict=True)}
    ms = per_buffer.values()
    return PlanMetrics(
        requests=float(sum(m.requests for m in ms)),
        invocations=float(sum(m.invocations for m in ms)),
        cost=plan_cost([m.cost for m in ms], ctx.billing.run_cost(plan_paths(plan))),
        **tail_figures([cdf for _, cdf in parts], ctx.slo_ms,
                       ctx.rules.esm.low_traffic_extra_ms),
        real_tokens=float(sum(m.real_tokens for m in ms)),
        padded_tokens=float(sum(m.padded_tokens for m in ms)),
        cold_starts=float(sum(m.cold_starts for m in ms)),
        per_buffer=per_buffer)
