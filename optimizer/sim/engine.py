"""Discrete-event simulator: replays a trace through a plan under Lambda's rules. Pure.

The loop (after microsoft/vidur's simulator.py) keeps a heap of (time_s, seq, event); a
handler returns follow-up events and only the loop advances the clock. Arrivals are already
sorted, so they are read in order from arrays instead of going through the heap: only timers
and instance-free events are heap events, which keeps 1M requests within seconds.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from buffers.gears import GearSet
from buffers.plan import BackendType, Plan
from buffers.types import ServiceTime
from optimizer.platform.cost_breakdown import RequestPath
from optimizer.platform.gpu_cost import FleetBill, FleetBilling
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.lmi_scaling import ScalingRules
from optimizer.platform.metrics import BatchLog, PlanMetrics, plan_metrics
from optimizer.platform.plan_cost import FleetSettings, RunBilling, plan_paths
from optimizer.platform.pricing import Pricing
from optimizer.sim.fleet import FleetLauncher, bound_switches
from optimizer.sim.launcher import Launcher
from optimizer.sim.policy import BulkPolicy, Policy, PolicyInputs, PolicyOptions, make_policy
from optimizer.workload.checks import check_arrivals_and_lengths


@dataclass(frozen=True)
class SimResult:
    """A run's figures, each request's latency (input order, for CDFs) and every invocation."""

    metrics: PlanMetrics
    latency_ms: np.ndarray
    batch_of_request: np.ndarray  # row of `batches` that served each request
    batches: BatchLog
    buffer_names: tuple[str, ...]
    gear_of_request: np.ndarray | None = None  # with gears: the gear each request went to
    exposed: np.ndarray | None = None  # managed mode: found its poller's window lapsed
    low_traffic_extra_ms: float = 0.0  # how much longer an exposed request may wait
    # a gpu plan's fleet: per instance (launched_s, retired_s); their spans sum to the
    # instance-seconds billed (PlanMetrics.instance_hours x 3600)
    instance_lifetimes_s: np.ndarray | None = None


def run_events(policy: Policy, arrivals_s: list[float]) -> None:
    """The loop: the next arrival or heap event, whichever is earlier (arrivals win ties)."""
    if isinstance(policy, BulkPolicy):
        policy.replay()  # launches the loop would make, formed at once (optimizer/sim/bulk.py)
        return
    heap: list[tuple[float, int, Any]] = []
    seq = itertools.count()
    index, count = 0, len(arrivals_s)
    while index < count or heap:
        if heap and (index == count or heap[0][0] < arrivals_s[index]):
            now_s, _, event = heapq.heappop(heap)
            follow_ups = policy.on_event(event, now_s)
        else:
            now_s = arrivals_s[index]
            follow_ups = policy.on_arrival(index, now_s)
            index += 1
        for when_s, event in follow_ups:
            heapq.heappush(heap, (when_s, next(seq), event))


def simulate(plan: Plan, arrivals_s: np.ndarray, lengths: np.ndarray, service_ms: ServiceTime,
             pricing: Pricing, slo_ms: float, rules: LambdaRules | None = None,
             arch: str = "x86", policy: PolicyOptions | None = None,
             gears: GearSet | None = None, fleet: FleetSettings | None = None,
             scaling: ScalingRules | None = None) -> SimResult:
    """Replay arrivals (sorted seconds) with token lengths through `plan` on Lambda.

    Parameters: service_ms(batch_size, padded_length, memory_mb) gives one invocation's model
    time; rules holds the platform constants (LambdaRules() when None); policy picks the batch
    policy (default: the plan's; the registry in optimizer/sim/policy.py) with per-request
    tenants and SLOs; gears (optional, over the plan's layout) switch batching with the measured
    arrival rate (buffers/geared.py); fleet sizes the dispatcher's tasks from the trace's
    per-minute rates (FleetSettings() when None). A gpu plan (backend "gpu") runs on its GPU
    fleet instead of Lambda environments (optimizer/sim/fleet.py, scaling by `scaling`,
    ScalingRules() when None) and is priced by instance time (optimizer/platform/gpu_cost.py);
    its PlanMetrics.instance_hours is the fleet's; its gears may change the fleet's bounds.
    Returns: SimResult. Latency = completion - arrival (wait for the batch, wait for an
    instance, cold start if any, model time); billing per invocation rounds
    model time (+ INIT when cold and rules.bill_init) up at the plan's memory. Cost is end to
    end, each buffer on its dispatch mode's request path (optimizer/platform/plan_cost.py).
    """
    rules = rules or LambdaRules()
    arrivals, lens = _validated(plan, arrivals_s, lengths, rules)
    upper = np.array([spec.max_length for spec in plan.buffers])
    routes = np.searchsorted(upper, lens, side="left")  # the LengthRouter's bisect, vectorised
    gpu = plan.backend is BackendType.GPU
    launcher = _fleet(plan, arrivals, service_ms, rules, scaling, gears) if gpu \
        else Launcher(plan, service_ms, pricing, rules)
    arrivals_list = arrivals.tolist()
    options = policy or PolicyOptions()
    events = make_policy(PolicyInputs(options.name or plan.policy, plan, arrivals_list,
                                      lens.tolist(), routes.tolist(), launcher, service_ms,
                                      options, gears))
    run_events(events, arrivals_list)
    billing = RunBilling.for_arrivals(arrivals, pricing, arch, fleet)
    if gpu:
        billing = _fleet_billing(plan, launcher, billing)
    result = _result(plan, arrivals, lens, routes, launcher, slo_ms, billing, rules)
    if gpu:
        hours = billing.fleet.instance_hours
        result = replace(result, metrics=replace(result.metrics, instance_hours=hours),
                         instance_lifetimes_s=np.asarray(launcher.lifetimes, dtype=np.float64))
    return result if gears is None else replace(result, gear_of_request=events.gear_of)


def _fleet(plan: Plan, arrivals: np.ndarray, service_ms: ServiceTime, rules: LambdaRules,
           scaling: ScalingRules | None, gears: GearSet | None) -> FleetLauncher:
    """A gpu plan's fleet; with gears, on each gear's bounds from its switch on."""
    if gears is None:
        return FleetLauncher(plan, service_ms, rules, scaling)
    initial, switches = bound_switches(arrivals, gears)
    return FleetLauncher(plan, service_ms, rules, scaling, initial, switches)


def _fleet_billing(plan: Plan, launcher: FleetLauncher, billing: RunBilling) -> FleetBilling:
    """End the fleet's run when the last request arrives or the last batch ends, if later."""
    last_end_s = max((row[3] + row[4] / 1000.0 for row in launcher.rows), default=0.0)
    launcher.finish(max(billing.duration_s, last_end_s))
    bill = FleetBill.for_instance_type(launcher.instance_seconds(), str(plan.instance_type))
    return FleetBilling.for_run(billing, bill)


def _validated(plan: Plan, arrivals_s: np.ndarray, lengths: np.ndarray,
               rules: LambdaRules) -> tuple[np.ndarray, np.ndarray]:
    arrivals = np.asarray(arrivals_s, dtype=np.float64)
    lens = np.asarray(lengths, dtype=np.int64)
    check_arrivals_and_lengths(arrivals, lens, plan.max_length)
    total = sum(spec.max_concurrency for spec in plan.buffers)
    if total > rules.account_concurrency:
        raise ValueError(f"the buffers' max_concurrency sum to {total}, over the account's "
                         f"concurrency limit {rules.account_concurrency}")
    return arrivals, lens


def _result(plan: Plan, arrivals: np.ndarray, lens: np.ndarray, routes: np.ndarray,
            launcher: Launcher, slo_ms: float, billing: RunBilling,
            rules: LambdaRules) -> SimResult:
    order = np.asarray(launcher.order, dtype=np.int64)
    rows = launcher.rows
    cols = list(zip(*rows, strict=True)) if rows else [()] * 8
    buffer, size, padded, start_s, busy_ms, service_ms, cold, billed = (np.asarray(c) for c in cols)
    size = size.astype(np.int64)
    offsets = np.concatenate(([0], np.cumsum(size)[:-1])).astype(np.int64)
    real = np.add.reduceat(lens[order], offsets) if rows else np.zeros(0, np.int64)
    log = BatchLog(buffer=buffer.astype(np.int64), size=size,
                   padded_length=_lengths(padded), real_tokens=real,
                   start_s=start_s.astype(np.float64), busy_ms=busy_ms.astype(np.float64),
                   service_ms=service_ms.astype(np.float64), cold=cold.astype(bool),
                   billed_ms=billed.astype(np.int64),
                   memory_mb=np.asarray(launcher.memory_mb, dtype=np.int64)[buffer.astype(int)])
    batch_of_request = np.full(arrivals.size, -1, dtype=np.int64)
    batch_of_request[order] = np.repeat(np.arange(len(rows)), size)
    if order.size != arrivals.size or np.any(batch_of_request < 0):
        raise RuntimeError(f"{order.size} launches for {arrivals.size} requests: a request was "
                           "lost or served twice")
    latency_ms = (log.end_s[batch_of_request] - arrivals) * 1000.0
    names = tuple(spec.name for spec in plan.buffers)
    exposed = np.zeros(arrivals.size, bool)
    exposed[np.asarray(launcher.exposed, dtype=np.int64)] = True
    metrics = plan_metrics(log, latency_ms, routes, names, slo_ms, billing, plan_paths(plan),
                           exposed, rules.esm.low_traffic_extra_ms)
    return SimResult(metrics, latency_ms, batch_of_request, log, names, exposed=exposed,
                     low_traffic_extra_ms=rules.esm.low_traffic_extra_ms)


def _lengths(padded: np.ndarray) -> np.ndarray:
    """Padded lengths as integers, unless a ragged batch logged a fractional mean length."""
    whole = padded.astype(np.int64)
    return whole if np.array_equal(whole, padded) else padded.astype(np.float64)


def repriced(result: SimResult, slo_ms: float, billing: RunBilling,
             path: RequestPath) -> SimResult:
    """The same run with every buffer priced on `path` (e.g. the plain_lambda baseline: the
    no-batching run's invocations and cold starts, behind the HTTP API with no dispatcher)."""
    request_buffer = result.batches.buffer[result.batch_of_request]
    paths = (RequestPath(path),) * len(result.buffer_names)
    metrics = plan_metrics(result.batches, result.latency_ms, request_buffer,
                           result.buffer_names, slo_ms, billing, paths, result.exposed,
                           result.low_traffic_extra_ms)
    return replace(result, metrics=metrics)
