"""Discrete-event simulator: replays a trace through a plan under Lambda's rules. Pure.

The loop (after microsoft/vidur's simulator.py) keeps a heap of (time_s, seq, event); a
handler returns follow-up events and only the loop advances the clock. Arrivals are already
sorted, so they are read in order from arrays instead of going through the heap: only timers
and instance-free events are heap events, which keeps 1M requests within seconds.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from buffers.batcher import MultiBufferBatcher, Request
from buffers.plan import Plan
from buffers.policies import BatchPolicy, make_batch_policy
from buffers.policies import PolicyType as BufferPolicyType
from optimizer.platform.lambda_rules import InstancePool, LambdaRules
from optimizer.platform.metrics import BatchLog, PlanMetrics, plan_metrics
from optimizer.platform.pricing import Pricing
from optimizer.sim.baselines import TritonPolicy
from optimizer.workload.checks import check_arrivals_and_lengths

if TYPE_CHECKING:
    from buffers.gears import GearSet

ServiceTime = Callable[[int, int, int], float]  # (batch_size, padded_length, memory_mb) -> ms
FollowUps = list[tuple[float, Any]]  # (time_s, event) pairs a handler schedules


# Every buffers/ batch policy (size_timeout, deadline, vtc), plus the simulator-only Triton/
# TF-Serving dynamic batcher (optimizer/sim/baselines.py): derived, so a new buffers/ policy is
# simulated without a second list to keep in step.
PolicyType = StrEnum("PolicyType", {**{p.name: p.value for p in BufferPolicyType},
                                    "TRITON": "triton"})


class Policy(Protocol):
    """Batch formation: turns arrivals and its own events into launches."""

    def on_arrival(self, index: int, now_s: float) -> FollowUps: ...

    def on_event(self, event: Any, now_s: float) -> FollowUps: ...


@dataclass(frozen=True)
class SimResult:
    """A run's figures, each request's latency (input order, for CDFs) and every invocation."""

    metrics: PlanMetrics
    latency_ms: np.ndarray
    batch_of_request: np.ndarray  # row of `batches` that served each request
    batches: BatchLog
    buffer_names: tuple[str, ...]
    gear_of_request: np.ndarray | None = None  # with gears: the gear each request went to


class Launcher:
    """Starts batches on each buffer's instance pool and records them."""

    def __init__(self, plan: Plan, service_ms: ServiceTime, pricing: Pricing,
                 rules: LambdaRules) -> None:
        self.memory_mb = [spec.memory_mb for spec in plan.buffers]
        self.pools = [InstancePool(spec.max_concurrency, rules) for spec in plan.buffers]
        self._service_ms = service_ms
        self._service_cache: dict[tuple[int, int, int], float] = {}
        self._pricing = pricing
        self._rules = rules
        self.last_service_ms = 0.0
        self.order: list[int] = []  # request indices in launch order
        self.rows: list[tuple[int, int, int, float, float, float, bool, int]] = []

    def launch(self, buffer: int, members: Sequence[int], padded_length: int,
               now_s: float) -> float:
        """Run `members` (request indices) as one invocation ready at now_s; returns its end."""
        memory_mb = self.memory_mb[buffer]
        key = (len(members), padded_length, memory_mb)
        service_ms = self._service_cache.get(key)
        if service_ms is None:
            service_ms = float(self._service_ms(*key))
            if not service_ms >= 0:
                raise ValueError(f"service time must be >= 0 ms, got {service_ms} for {key}")
            self._service_cache[key] = service_ms
        self.last_service_ms = service_ms
        pool = self.pools[buffer]
        start_s, cold = pool.acquire(now_s)
        busy_ms = service_ms + (self._rules.cold_start_ms if cold else 0.0)
        end_s = start_s + busy_ms / 1000.0
        pool.release(end_s)
        billed = self._pricing.billed_ms(service_ms + self._rules.init_billed_ms(cold))
        self.order.extend(members)
        self.rows.append((buffer, len(members), padded_length, start_s, busy_ms, service_ms,
                          cold, billed))
        return end_s


@dataclass(frozen=True)
class _Timer:
    buffer: int


@dataclass(frozen=True)
class _Free:
    buffer: int


@dataclass(frozen=True)
class RequestAttrs:
    """Per-request inputs beyond arrival and length (None: defaults for every request)."""

    tenants: Sequence[str] | None = None
    slo_ms: Sequence[float] | None = None  # per-request SLO: deadline = arrival + slo


class BufferedBatching:
    """Batching per buffer with the project's own BufferQueue and a buffers/ batch policy.

    Dispatcher mode: millisecond timers from each request's arrival. Managed mode: the event
    source mapping's window starts when a poller receives the first record (AWS Lambda
    developer guide, SQS batching window); its pollers long-poll, so receipt trails arrival by
    one ReceiveMessage round trip (tens of ms), which we neglect: arrival is taken as receipt.
    A flushed batch keeps its members while it waits for a free instance, as the dispatcher
    holds it. At MaximumConcurrency the ESM instead stops receiving, so under overload its real
    batches grow (closer to the Triton policy); both modes use the dispatcher's rule here.
    """

    def __init__(self, plan: Plan, arrivals_s: list[float], lengths: list[int],
                 routes: list[int], launcher: Launcher, batch_policy: BatchPolicy | None = None,
                 attrs: RequestAttrs | None = None, hold_when_busy: bool = False) -> None:
        self.batcher = MultiBufferBatcher(plan, batch_policy)
        self.arrivals_s = arrivals_s
        self.lengths = lengths
        self.routes = routes
        self.launcher = launcher
        attrs = attrs or RequestAttrs()
        self.tenants = attrs.tenants
        self.slo_ms = attrs.slo_ms
        self.hold_when_busy = hold_when_busy
        self.limits = [spec.max_concurrency for spec in plan.buffers]
        self.busy = [0] * len(plan.buffers)
        self._armed: list[float | None] = [None] * len(plan.buffers)

    def _request(self, index: int) -> Request:
        arrival = self.arrivals_s[index]
        deadline = None if self.slo_ms is None else arrival + self.slo_ms[index] / 1000.0
        tenant = "default" if self.tenants is None else self.tenants[index]
        return Request(str(index), self.lengths[index], arrival, tenant=tenant,
                       deadline_s=deadline, payload=index)

    def on_arrival(self, index: int, now_s: float) -> FollowUps:
        buffer = self.routes[index]
        if self.hold_when_busy:
            self.batcher.queues[buffer].add(self._request(index))
            return self._release(buffer, now_s) + self._arm(buffer)
        batches = self.batcher.add_to(buffer, self._request(index), now_s)
        return self._launch(batches, now_s) + self._arm(buffer)

    def _release(self, buffer: int, now_s: float) -> FollowUps:
        """Hold mode: one batch at a time, so each launch can block the buffer again."""
        queue = self.batcher.queues[buffer]
        follow_ups: FollowUps = []
        while (batch := queue.take_next(now_s)) is not None:
            follow_ups += self._launch([batch], now_s)
        return follow_ups

    def on_event(self, event: _Timer | _Free, now_s: float) -> FollowUps:
        if isinstance(event, _Free):
            self.busy[event.buffer] -= 1
            self._block(event.buffer)
        elif self._armed[event.buffer] != now_s:
            return []  # stale: the batch it was set for already left by size
        else:
            self._armed[event.buffer] = None
        if self.hold_when_busy:
            return self._release(event.buffer, now_s) + self._arm(event.buffer)
        queue = self.batcher.queues[event.buffer]
        return self._launch(queue.take_due(now_s), now_s) + self._arm(event.buffer)

    def _block(self, buffer: int) -> None:
        if self.hold_when_busy:
            self.batcher.queues[buffer].blocked = self.busy[buffer] >= self.limits[buffer]

    def _arm(self, buffer: int) -> FollowUps:
        due_s = self.batcher.queues[buffer].due_s()
        if due_s is None or due_s == self._armed[buffer]:
            return []
        self._armed[buffer] = due_s
        return [(due_s, _Timer(buffer))]

    def _launch(self, batches: list, now_s: float) -> FollowUps:
        follow_ups: FollowUps = []
        for batch in batches:
            end_s = self.launcher.launch(batch.buffer_index, [r.payload for r in batch.requests],
                                         batch.padded_length, now_s)
            predicted_ms = self.launcher.last_service_ms
            self.batcher.policy.on_complete(batch, predicted_ms, (end_s - now_s) * 1000.0)
            if self.hold_when_busy:
                self.busy[batch.buffer_index] += 1
                self._block(batch.buffer_index)
                follow_ups.append((end_s, _Free(batch.buffer_index)))
        return follow_ups


@dataclass(frozen=True)
class PolicyOptions:
    """How batches form: the policy's name (None: the plan's) and its inputs."""

    name: str | None = None
    attrs: RequestAttrs = RequestAttrs()
    hold_when_busy: bool = False
    weights: dict[str, float] | None = None


def make_policy(plan: Plan, arrivals_s: list[float], lengths: list[int], routes: list[int],
                launcher: Launcher, service_ms: ServiceTime | None = None,
                options: PolicyOptions | None = None) -> Policy:
    """The batch-formation policy the options (or else the plan) name."""
    options = options or PolicyOptions()
    name = options.name or plan.policy
    try:
        kind = PolicyType(name)
    except ValueError:
        raise ValueError(f"Unknown policy: {name!r}; known: {[p.value for p in PolicyType]}") \
            from None
    if kind is PolicyType.TRITON:
        return TritonPolicy(plan, arrivals_s, lengths, launcher)
    batch_policy = make_batch_policy(kind.value, service_ms, options.weights)
    return BufferedBatching(plan, arrivals_s, lengths, routes, launcher, batch_policy,
                            options.attrs, options.hold_when_busy)


def run_events(policy: Policy, arrivals_s: list[float]) -> None:
    """The loop: the next arrival or heap event, whichever is earlier (arrivals win ties)."""
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
             gears: GearSet | None = None) -> SimResult:
    """Replay arrivals (sorted seconds) with token lengths through `plan` on Lambda.

    Parameters: service_ms(batch_size, padded_length, memory_mb) gives one invocation's model
    time; rules holds the platform constants (LambdaRules() when None); policy picks the batch
    policy (default: the plan's) with per-request tenants and SLOs; gears (optional, over the
    plan's layout) switch batching with the measured arrival rate (optimizer/search/gears.py).
    Returns: SimResult. Latency = completion - arrival (wait for the batch, wait for an
    instance, cold start if any, model time); billing per invocation rounds
    model time (+ INIT when cold and rules.bill_init) up at the plan's memory.
    """
    rules = rules or LambdaRules()
    arrivals, lens = _validated(plan, arrivals_s, lengths, rules)
    upper = np.array([spec.max_length for spec in plan.buffers])
    routes = np.searchsorted(upper, lens, side="left")  # the LengthRouter's bisect, vectorised
    launcher = Launcher(plan, service_ms, pricing, rules)
    arrivals_list = arrivals.tolist()
    if gears is None:
        events = make_policy(plan, arrivals_list, lens.tolist(), routes.tolist(), launcher,
                             service_ms, policy)
    else:
        from optimizer.search.gears import GearedBatching  # it builds on this module

        events = GearedBatching(gears, plan, arrivals_list, lens.tolist(), routes.tolist(),
                                launcher, service_ms, policy)
    run_events(events, arrivals_list)
    result = _result(plan, arrivals, lens, routes, launcher, pricing, slo_ms, arch)
    return result if gears is None else replace(result, gear_of_request=events.gear_of)


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
            launcher: Launcher, pricing: Pricing, slo_ms: float, arch: str) -> SimResult:
    order = np.asarray(launcher.order, dtype=np.int64)
    rows = launcher.rows
    cols = list(zip(*rows, strict=True)) if rows else [()] * 8
    buffer, size, padded, start_s, busy_ms, service_ms, cold, billed = (np.asarray(c) for c in cols)
    size = size.astype(np.int64)
    offsets = np.concatenate(([0], np.cumsum(size)[:-1])).astype(np.int64)
    real = np.add.reduceat(lens[order], offsets) if rows else np.zeros(0, np.int64)
    log = BatchLog(buffer=buffer.astype(np.int64), size=size,
                   padded_length=padded.astype(np.int64), real_tokens=real,
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
    metrics = plan_metrics(log, latency_ms, routes, names, pricing, slo_ms, arch)
    return SimResult(metrics, latency_ms, batch_of_request, log, names)
