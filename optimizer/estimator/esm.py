"""Managed-mode buffers in the estimator: the SQS event source mapping as AWS runs it.

The rules are optimizer/platform/esm_rules.py's, as the simulator runs them (optimizer/sim/esm.py).
P pollers each receive a share r = p / (P (1 - busy)) of the trace's arrivals (p the buffer's
share, busy the share of time a poller waits on its own invocation, of mean length S):
- Lapsed pollers. A poller's window begins when its invocation returns and lapses if no record
  comes before it closes, so the poller is lapsed at t exactly when its last record came more
  than W + S + R ago, R that record's remaining wait (0 if it found the poller lapsed, else
  about U(0, W)). With F0 = P(no record in the last W + S), FU = that averaged over a further
  U(0, W) and q the last record's chance of having found the poller lapsed, P(lapsed) = q F0 +
  (1 - q) FU; taking q = P(lapsed) gives L = FU / (1 - F0 + FU), exact for a stationary Poisson
  stream. F0 and FU come from the real trace's counts before each arrival, so the later members
  of a burst find their pollers busy batching.
- A record that finds its poller lapsed goes out alone, at once (exposed to the documented
  low-traffic wait). Any other joins an open window whose remaining time R is uniform on
  (0, W) (the window's phase is set by the poller's last invocation, not by the record), taken
  at QUADRATURE points. Its batch holds it and Bin(K - 1, r) others, K the real arrivals in
  [t + R - W, t + R), capped at BatchSize; a full batch closes early, after about
  B / (1 + r (K - 1)) of the window, so its records wait that share of R.
- Expected batches are the sum over records of 1 / their batch's size. Service time, bill, cold
  starts and waits for an instance are the dispatcher estimator's (pieces.py, environments.py),
  window batches launching W / 2 after their records on average.
- With a 0 s window every record goes out alone with the receive that returns it (a poller
  batches only a backlog left while every poller was busy, rare at these loads).
Approximations: busy at its mean; no pollers beyond P (the simulator adds one only when a record
finds every poller busy); q = L. The pessimistic low-traffic variant (EsmRules.
low_traffic_wait_s > 0) is simulated only; the estimator reports its bound instead
(BufferMetrics.low_traffic_p99_bound_ms).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from buffers.plan import BufferSpec
from optimizer.estimator.batching import binomial_table
from optimizer.estimator.context import EstimatorContext
from optimizer.estimator.environments import LaunchStream, PlatformLoad, platform_load
from optimizer.estimator.latency import (
    LatencyCdf,
    convolve_rows,
    queue_masses,
    spread_into,
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
from optimizer.platform.metrics import BufferMetrics

QUADRATURE = 16  # points of a window's remaining time R ~ U(0, W)
LOOK_STEP_S = 0.05  # W + S is rounded to this, so that the trace's counts are reused
MAX_BUSY_SHARE = 0.9  # a poller receives at least this share of the time in the model
PASSES = 2  # the busy share and mean service time are refined this many times


@dataclass(frozen=True)
class EsmBatches:
    """One managed buffer's batches in expectation over the records' pollers and lengths."""

    max_batch: int
    size_weights: np.ndarray  # expected batches of each size 0..B (index 0 unused)
    exposed: np.ndarray  # per arrival: expected exposed requests (p * P(lapsed))
    openings: np.ndarray  # per arrival: expected batches (its record's 1 / size)
    late: np.ndarray  # per arrival: the share of those that are window batches
    others: np.ndarray  # (arrivals, QUADRATURE): K - 1 at each point of R
    size_given: np.ndarray  # P(size = s | K - 1), rows K - 1, columns s = 0..B
    waits: tuple[np.ndarray, np.ndarray, np.ndarray]  # window records: (size, wait_s, mass)
    joined: np.ndarray  # per arrival: expected requests that joined a window (p * (1 - L))


def _points(window_s: float) -> np.ndarray:
    return (np.arange(QUADRATURE) + 0.5) / QUADRATURE * window_s


def _size_given(counts_max: int, r: float, big: int) -> np.ndarray:
    """P(1 + Bin(k, r) capped at big = s), rows k = 0..counts_max, columns s = 0..big."""
    given = np.zeros((counts_max + 1, big + 1))
    if big == 1:
        given[:, 1] = 1.0
        return given
    table = binomial_table(counts_max, big - 1, r)
    given[:, 1:big] = table[:, : big - 1]
    given[:, big] = np.maximum(1.0 - given[:, 1:big].sum(axis=1), 0.0)
    return given


def _fill_waits(full: np.ndarray, given: np.ndarray, ahead: np.ndarray, points: np.ndarray,
                window_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Waits in full batches: a record sits at a uniform place m = 1..B of its batch, which
    closes once B - m more records came (or the window ends), so P(wait <= x) =
    E[min(1 + Bin(K(t, t + x), r), B)] / B. Returns (wait_s, expected requests) at 0, the
    points and the window's end, summed over arrivals weighted by `full`."""
    big = given.shape[1] - 1
    mean_size = given @ np.arange(big + 1, dtype=np.float64)
    total = float(np.sum(full))
    below = np.concatenate(([total / big], full @ mean_size[ahead] / big, [total]))
    return (np.concatenate(([0.0], points, [window_s])),
            np.diff(np.maximum.accumulate(below), prepend=0.0))


def lapsed(ctx: EstimatorContext, r: float, window_s: float, look_s: float) -> np.ndarray:
    """P(an arrival's poller is lapsed): L = FU / (1 - F0 + FU) (module docstring)."""
    index = np.arange(ctx.requests)
    keep = np.power(1.0 - r, np.arange(ctx.requests + 1))  # (1 - r)^k by lookup
    f0 = keep[index - ctx.positions(-look_s)]
    fu = np.zeros(ctx.requests)
    for u in _points(window_s):
        fu += keep[index - ctx.positions(-(look_s + u))]
    fu /= QUADRATURE
    return fu / np.maximum(1.0 - f0 + fu, 1e-300)


def _singles(n: int, p: float, big: int) -> EsmBatches:
    """A 0 s window or BatchSize 1: every record goes out alone, at once, and none waits."""
    weights = np.zeros(big + 1)
    weights[1] = p * n
    none = np.zeros(0)
    return EsmBatches(big, weights, np.zeros(n), np.full(n, p), np.zeros(n),
                      np.zeros((n, 0), np.int64), _size_given(0, 0.0, big),
                      (none.astype(np.int64), none, none), np.zeros(n))


def esm_batches(ctx: EstimatorContext, spec: BufferSpec, p: float, busy_s: float,
                busy_share: float, waits: bool = True) -> EsmBatches:
    """Batch counts, sizes and (with `waits`) waits of a managed buffer (module docstring)."""
    n, big, window_s = ctx.requests, spec.max_batch_size, spec.timeout_s
    if window_s <= 0 or big == 1:
        return _singles(n, p, big)
    r = min(1.0, p / (ctx.rules.esm.pollers * (1.0 - min(busy_share, MAX_BUSY_SHARE))))
    look_s = max(LOOK_STEP_S, round((window_s + busy_s) / LOOK_STEP_S) * LOOK_STEP_S)
    lapse = lapsed(ctx, r, window_s, look_s)
    others, ahead = ctx.window_counts(spec.timeout_ms, QUADRATURE)
    given = _size_given(int(max(others.max(initial=0), ahead.max(initial=0))), r, big)
    sizes = np.arange(big + 1, dtype=np.float64)
    inverse = given[:, 1:] @ (1.0 / sizes[1:])  # E[1 / size | K - 1]
    joined = p * (1.0 - lapse)
    per_window = joined * np.mean(inverse[others], axis=1)
    rows = given.shape[0]
    by_count = np.bincount((others + np.arange(QUADRATURE) * rows).ravel(),
                           weights=np.repeat(joined / QUADRATURE, QUADRATURE),
                           minlength=QUADRATURE * rows).reshape(QUADRATURE, rows)
    requests = by_count @ given  # (point, size): expected requests by size, waiting u_j
    weights = np.concatenate(([0.0], requests[:, 1:].sum(axis=0) / sizes[1:]))
    weights[1] += float(np.sum(p * lapse))
    openings = p * lapse + per_window
    late = np.divide(per_window, openings, out=np.zeros(n), where=openings > 0)
    none = np.zeros(0)
    found = (none.astype(np.int64), none, none)
    if waits:
        points = _points(window_s)
        full_waits, full_mass = _fill_waits(joined * np.mean(given[others, big], axis=1),
                                            given, ahead, points, window_s)
        found = (np.concatenate((np.tile(np.arange(1, big), QUADRATURE),
                                 np.full(full_mass.size, big))),
                 np.concatenate((np.repeat(points, big - 1), full_waits)),
                 np.concatenate((requests[:, 1:big].ravel(), full_mass)))
    return EsmBatches(big, weights, p * lapse, openings, late, others, given, found, joined)


def _startup_cold(ctx: EstimatorContext, spec: BufferSpec, p: float, busy_s: float) -> float:
    """Environments the buffer's first records start cold. While the first one is in INIT,
    each record goes to a poller that has not invoked yet (the busy ones do not receive) and
    invokes on a new environment; once all pollers are busy, scale-up adds one a gap. So
    E[min(MaximumConcurrency, N, pollers + added)], N the buffer's records in that INIT."""
    rules, t = ctx.rules, ctx.arrivals_s
    first = 0 if p >= 1.0 else int(min(t.size - 1, max(0, np.ceil(np.log(0.5) / np.log1p(-p))
                                                        - 1)))  # median first arrival
    init_s = rules.cold_start_ms / 1000.0 + busy_s
    later = int(np.searchsorted(t, t[first] + init_s, side="left")) - first - 1
    pmf = binomial_table(max(later, 0), max(later, 0), p)[-1]  # others: Bin(later, p)
    added = min(rules.esm.poller_cap(spec.max_concurrency) - rules.esm.pollers,
                int(init_s / rules.esm.scale_up_gap_s))
    top = min(spec.max_concurrency, rules.esm.pollers + max(added, 0))
    return float(pmf @ np.minimum(1 + np.arange(pmf.size), top))


def _per_arrival(form: EsmBatches, svc: Service, p: float) -> tuple[np.ndarray, np.ndarray]:
    """E[model time] and E[size] of the batches each arrival's record is counted in."""
    service = np.zeros(form.max_batch + 1)
    service[svc.sizes] = svc.service_ms
    sizes = np.arange(1, form.max_batch + 1, dtype=np.float64)
    work = form.exposed * service[1]
    if form.others.shape[1]:
        share = form.size_given[:, 1:] @ (service[1:] / sizes)  # E[t(size) / size | K - 1]
        work = work + form.joined * np.mean(share[form.others], axis=1)
    else:
        work = work + (p - form.exposed) * service[1]
    openings = np.maximum(form.openings, 1e-300)
    return work / openings, p / openings


def _latency(ctx: EstimatorContext, spec: BufferSpec, form: EsmBatches, svc: Service,
             load: PlatformLoad, requests: float) -> LatencyCdf:
    """Window wait + service (+ environment wait), the exposed requests kept apart."""
    queue_tail = float(load.backlog_ms.max(initial=0.0))
    if load.waits:
        queue_tail += QUEUE_TAIL_MEANS * float(load.class_means_ms.max())
    top_ms = spec.timeout_ms + float(svc.table_ms.max()) + queue_tail
    step = max(top_ms, 1.0) / (LATENCY_BINS - 1)
    rows, wait_s, mass = form.waits
    waiting = np.zeros((form.max_batch + 1, LATENCY_BINS))
    spread_into(waiting, rows, wait_s * 1000.0 / step, mass)
    alone = np.zeros_like(waiting)
    alone[1, 0] = float(np.sum(form.exposed))
    if spec.timeout_ms == 0:
        waiting[1, 0] += requests
    service = spread_rows(svc.table_ms, svc.max_pmf, step, LATENCY_BINS)
    window = convolve_rows(waiting[svc.sizes], service, LATENCY_BINS)
    exposed = convolve_rows(alone[svc.sizes], service, LATENCY_BINS)
    if load.waits:
        queue = queue_masses(load.backlog_ms, load.share * (1.0 - load.busy_chance),
                             load.share * load.busy_chance, load.wait_class,
                             load.class_means_ms, step, LATENCY_BINS)
        window = convolve_rows(window[None, :], queue[None, :], LATENCY_BINS)
        exposed = convolve_rows(exposed[None, :], queue[None, :], LATENCY_BINS)
    scale = requests / max(float(np.sum(window) + np.sum(exposed)), 1e-300)
    parts = startup_parts(ctx, load, float(np.sum(svc.batches)))
    return LatencyCdf(step, (window + exposed) * scale, parts,
                      exposed * scale if spec.timeout_ms > 0 else None)


def estimate_managed_buffer(spec: BufferSpec,
                            ctx: EstimatorContext) -> tuple[BufferMetrics, LatencyCdf]:
    """One managed buffer's expected figures and latency distribution under the ESM rules."""
    if ctx.rules.esm.low_traffic_wait_s > 0:
        raise ValueError(f"the estimator models low_traffic_wait_s = 0 (the bound covers the "
                         f"rest), got {ctx.rules.esm.low_traffic_wait_s}")
    pmf = ctx.length_pmf[spec.min_length: spec.max_length + 1]
    p = float(np.sum(pmf))
    if p <= 0.0 or ctx.requests == 0:
        return empty_buffer(ctx, spec)
    lengths = np.arange(spec.min_length, spec.max_length + 1, dtype=np.float64)
    cdf = np.minimum(np.cumsum(pmf) / p, 1.0)
    p = min(p, 1.0)
    single = np.zeros(2)
    single[1] = 1.0
    busy_ms = float(service_by_size(ctx, spec, single, cdf, lengths).service_ms[0])
    share, span_s = 0.0, max(ctx.billing.duration_s, 1e-9) * ctx.rules.esm.pollers
    for last in (False,) * (PASSES - 1) + (True,):
        form = esm_batches(ctx, spec, p, busy_ms / 1000.0, share, waits=last)
        svc = service_by_size(ctx, spec, form.size_weights, cdf, lengths)
        batches = max(float(np.sum(svc.batches)), 1e-300)
        busy_ms = float(np.sum(svc.batches * svc.service_ms)) / batches
        share = batches * busy_ms / 1000.0 / span_s
    requests = p * ctx.requests
    stream = LaunchStream(p, form.openings, form.late, spec.timeout_ms / 2.0,
                          rounded_busy(busy_ms), *_per_arrival(form, svc, p), form.max_batch,
                          spec.max_concurrency, service_cv2(svc))
    load = platform_load(ctx.arrivals_s, ctx.positions, ctx.keep_alive_start, stream,
                         ctx.rules.cold_start_ms)
    if ctx.rules.cold_start_ms > 0:  # the start-up cascade as the pollers make it
        load = replace(load, cold_starts=load.cold_starts - load.startup_cold
                       + _startup_cold(ctx, spec, p, busy_ms / 1000.0))
    cdf_ms = _latency(ctx, spec, form, svc, load, requests)
    metrics = BufferMetrics(
        requests=requests, invocations=float(np.sum(svc.batches)),
        cost=buffer_cost(ctx, spec, requests, svc, load.cold_starts),
        **tail_figures([cdf_ms], ctx.slo_ms, ctx.rules.esm.low_traffic_extra_ms),
        real_tokens=requests * float(np.sum(pmf * lengths)) / p,
        padded_tokens=float(np.sum(svc.batches * svc.sizes * svc.padded)),
        cold_starts=load.cold_starts)
    return metrics, cdf_ms
