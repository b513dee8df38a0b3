"""The analytical estimate of a gpu plan: its buffers as for lambda, then the fleet that runs
them, from the GPU time the batches need per minute (the simulator's fleet: sim/fleet.py).

Per buffer, buffer_shape (estimate.py) gives batches, batching waits and service times, once,
for the latency and for the demand; there is no Lambda environment model (no cold starts: an
LMI instance serves only once initialised; the dispatcher's max_concurrency cap is set at the
fleet's ceiling by the gpu search, so the fleet binds first). Then:
- demand per tick: each arrival i opens a batch with probability p * q_i (batching.py) whose
  expected model time is E[t | K_i]; summed per tick (60 s) over buffers, it is the GPU time
  the trace's per-minute rates need, bursts included;
- the fleet per tick: the simulator's rule (lmi_scaling.scale_decision at each tick from the
  busy time served in its windows, instances serving launch_s after the decision) run as a fluid
  model: a tick serves min(backlog + demand, serving x tick); the rest is backlog;
- instance-seconds: (serving + pending) x tick, so never under the floor of min_instances;
- the fleet's wait per tick: the fluid backlog over the serving instances, plus Sakasegawa's
  M/G/c mean wait at the tick's utilisation (Sakasegawa 1977; Hopp & Spearman, Factory Physics,
  eq. 8.12 for c servers) for the random part; each buffer's latency distribution is then a
  mixture over ticks of itself shifted by that wait (up to WAIT_CLASSES shifts).
Approximations: the wait within a tick is its mean, not a distribution; a batch's timeout delay
is not moved into the next tick; the run is billed up to the last arrival.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from buffers.plan import BackendType, BufferSpec, DispatchMode, Plan
from buffers.types import ServiceTime
from optimizer.estimator.context import EstimatorContext
from optimizer.estimator.environments import PlatformLoad
from optimizer.estimator.estimate import (
    BufferShape,
    _latency,
    _per_opener,
    buffer_shape,
    combine_buffers,
)
from optimizer.estimator.latency import LatencyCdf
from optimizer.estimator.pieces import empty_buffer
from optimizer.platform.gpu_cost import FleetBill, FleetBilling
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.lmi_scaling import FleetBounds, ScalingRules, scale_decision
from optimizer.platform.metrics import BufferMetrics, PlanMetrics
from optimizer.platform.plan_cost import FleetSettings, buffer_path, plan_cost, plan_paths
from optimizer.platform.pricing import Pricing
from optimizer.platform.request_paths import InferBill

WAIT_CLASSES = 12  # fleet-wait shifts per buffer's latency mixture
_WAIT_STEP = 1.25  # waits within this ratio share a class
_NO_WAIT_MS = 0.5
_MAX_RHO = 0.99  # the random-wait term is capped here; beyond it the fluid backlog takes over
# A buffer on the fleet waits for instances, not for Lambda environments: no cold starts, and
# its dispatcher cap is the fleet's ceiling (optimizer/search/gpu.py), so the fleet binds first.
_NO_ENVIRONMENT_WAIT = PlatformLoad(cold_starts=0.0, startup_overflow=0.0, share=np.zeros(1),
                                    backlog_ms=np.zeros(1), busy_chance=np.zeros(1),
                                    wait_class=np.zeros(1, dtype=np.int64),
                                    class_means_ms=np.zeros(1))


def fleet_context(arrivals_s: np.ndarray, lengths: np.ndarray, service_ms: ServiceTime,
                  pricing: Pricing, slo_ms: float, rules: LambdaRules | None = None,
                  arch: str = "x86", fleet: FleetSettings | None = None) -> EstimatorContext:
    """EstimatorContext.build for gpu plans: no cold starts (LMI instances serve initialised)."""
    rules = replace(rules or LambdaRules(), cold_start_ms=0.0)
    return EstimatorContext.build(arrivals_s, lengths, service_ms, pricing, slo_ms, rules, arch,
                                  fleet)


@dataclass(frozen=True)
class FleetTrace:
    """The fleet over a run, per tick: instances serving, the mean wait, and the bill."""

    serving: np.ndarray
    wait_ms: np.ndarray
    instance_seconds: float


def fleet_over_ticks(demand_s: np.ndarray, duration_s: float, mean_service_ms: float,
                     rules: ScalingRules, bounds: FleetBounds) -> FleetTrace:
    """The fluid fleet for per-tick GPU demand (seconds), billed over duration_s."""
    ticks = demand_s.size
    tick = rules.tick_s
    serving, pending = bounds.min_instances, []
    served = np.zeros(ticks)
    out_serving = np.zeros(ticks, dtype=np.int64)
    wait_ms = np.zeros(ticks)
    backlog, billed = 0.0, 0.0
    out_w, in_w = rules.window_ticks(rules.scale_out_window_s), \
        rules.window_ticks(rules.scale_in_window_s)
    for k in range(ticks):
        start = k * tick
        serving += sum(1 for ready in pending if ready <= start)
        pending = [ready for ready in pending if ready > start]
        length = max(min(tick, duration_s - start), 0.0) if k == ticks - 1 else tick
        capacity = serving * length
        work = backlog + demand_s[k]
        served[k] = min(work, capacity)
        after = work - served[k]
        rho = min(demand_s[k] / capacity, _MAX_RHO) if capacity > 0 else _MAX_RHO
        wait_ms[k] = ((backlog + after) / 2.0 / serving * 1000.0
                      + _random_wait_ms(rho, serving, mean_service_ms))
        backlog = after
        billed += (serving + len(pending)) * length
        out_serving[k] = serving
        lo_out, lo_in = max(0, k + 1 - out_w), max(0, k + 1 - in_w)
        change = scale_decision(float(served[lo_out:k + 1].sum()), (k + 1 - lo_out) * tick,
                                float(served[lo_in:k + 1].sum()), (k + 1 - lo_in) * tick,
                                serving, len(pending), rules, bounds)
        pending += [(k + 1) * tick + rules.launch_s] * max(change, 0)
        serving += min(change, 0)
    return FleetTrace(out_serving, wait_ms, billed)


def _random_wait_ms(rho: float, servers: int, mean_service_ms: float) -> float:
    """Sakasegawa's mean M/M/c wait at utilisation rho (service variability taken as 1)."""
    if rho <= 0:
        return 0.0
    return (mean_service_ms * rho ** (math.sqrt(2.0 * (servers + 1)) - 1.0)
            / (servers * (1.0 - rho)))


class FleetEstimator:
    """Estimates gpu plans on one context, each buffer's figures and demand cached."""

    def __init__(self, ctx: EstimatorContext, scaling: ScalingRules | None = None) -> None:
        self.ctx = ctx
        self.scaling = scaling or ScalingRules()
        self._tick_of = (ctx.arrivals_s // self.scaling.tick_s).astype(np.int64)
        self._ticks = int(self._tick_of.max(initial=0)) + 1
        self._parts: dict[BufferSpec, tuple[BufferMetrics, LatencyCdf, np.ndarray]] = {}

    def _demand_s(self, shape: BufferShape) -> np.ndarray:
        """Expected GPU-seconds of the buffer's batches opened in each tick."""
        per_opener_ms, _ = _per_opener(shape.form, shape.svc)
        return np.bincount(self._tick_of,
                           weights=shape.p * shape.form.openers * per_opener_ms / 1000.0,
                           minlength=self._ticks)

    def _part(self, spec: BufferSpec) -> tuple[BufferMetrics, LatencyCdf, np.ndarray]:
        if spec.dispatch_mode is DispatchMode.MANAGED:
            raise ValueError(f"buffer {spec.name!r}: the GPU fleet runs buffers dispatched "
                             f"online (dispatcher mode); a gpu plan's bulk path stays on CPU "
                             f"Lambda, got {spec.dispatch_mode.value!r}")
        key = replace(spec, name="b")
        part = self._parts.get(key)
        if part is None:
            shape = buffer_shape(spec, self.ctx)
            if shape is None:
                metrics, cdf = empty_buffer(self.ctx, spec)
                part = (metrics, cdf, np.zeros(self._ticks))
            else:  # waits for the fleet are added per plan (__call__), none for environments
                cdf = _latency(self.ctx, spec, shape.form, shape.svc, _NO_ENVIRONMENT_WAIT,
                               shape.p * self.ctx.requests)
                part = (shape.metrics(self.ctx, spec, cdf, 0.0), cdf, self._demand_s(shape))
            self._parts[key] = part
        return part

    def __call__(self, plan: Plan) -> PlanMetrics:
        """The gpu plan's expected figures, its fleet's instance-hours and bill included."""
        bounds = FleetBounds.of(plan)
        parts = [self._part(spec) for spec in plan.buffers]
        demand = sum(d for _, _, d in parts)
        batches = sum(m.invocations for m, _, _ in parts)
        mean_ms = float(np.sum(demand)) * 1000.0 / batches if batches > 0 else 0.0
        trace = fleet_over_ticks(demand, self.ctx.billing.duration_s, mean_ms, self.scaling,
                                 bounds)
        billing = FleetBilling.for_run(self.ctx.billing, FleetBill.for_instance_type(
            trace.instance_seconds, str(plan.instance_type)))
        shifts = self._wait_classes(trace.wait_ms)
        shifted = []
        for spec, (metrics, cdf, _) in zip(plan.buffers, parts, strict=True):
            cost = billing.buffer_cost(buffer_path(spec), metrics.requests,
                                       InferBill(0.0, metrics.invocations))
            later = tuple((share * w, shift + extra) for share, shift in cdf.parts
                          for w, extra in shifts)
            # no cold starts on a fleet: the Lambda model's first environments are instances
            shifted.append((replace(metrics, cost=cost, cold_starts=0.0),
                            replace(cdf, parts=later)))
        combined = combine_buffers(plan, shifted, self.ctx)
        cost = plan_cost([m.cost for m, _ in shifted], billing.run_cost(plan_paths(plan)))
        return replace(combined, cost=cost, instance_hours=billing.fleet.instance_hours)

    def _wait_classes(self, wait_ms: np.ndarray) -> tuple[tuple[float, float], ...]:
        """(share of requests, wait) classes: ticks weighted by their arrivals."""
        weight = np.bincount(self._tick_of, minlength=self._ticks).astype(np.float64)
        total = float(weight.sum())
        if total <= 0:
            return ((1.0, 0.0),)
        cls = np.where(wait_ms < _NO_WAIT_MS, 0,
                       1 + np.floor(np.log(np.maximum(wait_ms, _NO_WAIT_MS) / _NO_WAIT_MS)
                                    / math.log(_WAIT_STEP))).astype(np.int64)
        out = []
        for c in np.unique(cls):
            mine = cls == c
            share = float(weight[mine].sum()) / total
            if share > 0:
                mean = float(np.sum(weight[mine] * wait_ms[mine]) / weight[mine].sum())
                out.append((share, mean if c else 0.0))
        out.sort(key=lambda pair: -pair[0])
        head, tail = out[:WAIT_CLASSES - 1], out[WAIT_CLASSES - 1:]
        if tail:  # the rarest classes merge at their largest wait (never hides a tail)
            head.append((sum(s for s, _ in tail), max(w for _, w in tail)))
        return tuple(head)


def estimate_gpu(plan: Plan, ctx: EstimatorContext,
                 scaling: ScalingRules | None = None) -> PlanMetrics:
    """A gpu plan's expected figures (one-off; the search keeps a FleetEstimator)."""
    if plan.backend is not BackendType.GPU:
        raise ValueError(f"plan {plan.name!r} has backend {plan.backend.value!r}; "
                         "estimate() prices lambda plans")
    return FleetEstimator(ctx, scaling)(plan)
