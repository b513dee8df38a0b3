"""The baselines MBS is judged against: no batching, BATCH, a Triton-style batcher, plain Lambda,
the oracle."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from buffers.plan import MAX_CONCURRENCY, MODEL_MAX_LENGTH, BufferSpec, DispatchMode, Plan
from buffers.types import ServiceTime
from optimizer.platform.cost_breakdown import RequestPath
from optimizer.platform.metrics import BatchLog, PlanMetrics, plan_metrics
from optimizer.platform.plan_cost import RunBilling
from optimizer.platform.pricing import Pricing
from optimizer.sim.launcher import Launcher
from optimizer.sim.policy import PolicyInputs, register

TRITON_POLICY = "triton"  # its name in the simulator's policy registry


def _one_buffer(name: str, policy: str, max_batch: int, timeout_ms: int, memory_mb: int,
                max_concurrency: int) -> Plan:
    spec = BufferSpec(name="all", min_length=1, max_length=MODEL_MAX_LENGTH,
                      max_batch_size=max_batch, timeout_ms=timeout_ms, memory_mb=memory_mb,
                      dispatch_mode=DispatchMode.DISPATCHER, max_concurrency=max_concurrency)
    return Plan(buffers=(spec,), name=name, policy=policy)


def no_batching_plan(memory_mb: int, max_concurrency: int = MAX_CONCURRENCY) -> Plan:
    """One request per invocation, the serverless default (concurrency up to the account's)."""
    return _one_buffer("no-batching", "size_timeout", 1, 0, memory_mb, max_concurrency)


def plain_lambda_plan(memory_mb: int, max_concurrency: int = MAX_CONCURRENCY) -> Plan:
    """A plain Lambda per request: runs as no batching does; price it on the PLAIN_LAMBDA path
    (optimizer.sim.engine.repriced), since it has no dispatcher, queue or table."""
    return _one_buffer("plain-lambda", "size_timeout", 1, 0, memory_mb, max_concurrency)


def batch_plan(max_batch: int, timeout_ms: int, memory_mb: int,
               max_concurrency: int = MAX_CONCURRENCY) -> Plan:
    """BATCH (Ali et al., SC'20): one buffer, flushed at max_batch or timeout, padded to its max."""
    return _one_buffer("batch", "size_timeout", max_batch, timeout_ms, memory_mb, max_concurrency)


def triton_plan(max_batch: int, max_queue_delay_ms: int, memory_mb: int, instances: int) -> Plan:
    """A Triton/TF-Serving dynamic batcher over `instances` functions (>= 2, the plan's minimum)."""
    return _one_buffer("triton", TRITON_POLICY, max_batch, max_queue_delay_ms, memory_mb,
                       instances)


_FREE = "free"  # an instance finished its batch
_DELAY = "delay"  # the oldest queued request has waited max_queue_delay


class TritonPolicy:
    """Triton's dynamic batcher (and TF-Serving's): one queue, a fixed pool, work-conserving.

    A batch is formed only when an instance is free: it takes up to max_batch queued requests
    at once, or, if fewer are queued, waits until the oldest has waited max_queue_delay (the
    plan's timeout_ms) for a fuller batch. How it differs from BATCH: BATCH forms a batch at
    size or timeout whatever the instances are doing, and a formed batch keeps its members while
    it waits for an instance; here requests stay queued while every instance is busy, so under
    load the next batch is whatever piled up (up to max_batch) and batch size adapts to load.
    Instances are Lambda environments under the same rules (cold on first use and after
    keep-alive) and are billed per invocation like the other plans, so only batching differs.
    """

    gear_of = None  # one queue, no gears

    def __init__(self, plan: Plan, arrivals_s: list[float], lengths: list[int],
                 launcher: Launcher) -> None:
        if len(plan.buffers) != 1:
            raise ValueError(f"the triton policy takes a one-buffer plan, got "
                             f"{len(plan.buffers)} buffers")
        spec = plan.buffers[0]
        self.max_batch = spec.max_batch_size
        self.delay_s = spec.timeout_s
        self.instances = spec.max_concurrency
        self.arrivals_s = arrivals_s
        self.lengths = lengths
        self.launcher = launcher
        self.queue: deque[int] = deque()
        self.busy = 0
        self._armed: float | None = None

    def on_arrival(self, index: int, now_s: float) -> list[tuple[float, Any]]:
        self.queue.append(index)
        return self._dispatch(now_s)

    def on_event(self, event: str, now_s: float) -> list[tuple[float, Any]]:
        if event == _FREE:
            self.busy -= 1
        elif self._armed != now_s:
            return []  # stale delay timer: its request already left
        return self._dispatch(now_s)

    def _dispatch(self, now_s: float) -> list[tuple[float, Any]]:
        follow_ups: list[tuple[float, Any]] = []
        while self.queue and self.busy < self.instances:
            if len(self.queue) < self.max_batch:
                due_s = self.arrivals_s[self.queue[0]] + self.delay_s
                if due_s > now_s:
                    if due_s != self._armed:
                        self._armed = due_s
                        follow_ups.append((due_s, _DELAY))
                    break
            members = [self.queue.popleft() for _ in range(min(len(self.queue), self.max_batch))]
            padded = max(self.lengths[i] for i in members)
            self.busy += 1
            follow_ups.append((self.launcher.launch(0, members, padded, now_s), _FREE))
        return follow_ups



def _triton(inputs: PolicyInputs) -> TritonPolicy:
    if inputs.gears is not None:
        raise ValueError(f"the triton policy takes no gears, got {inputs.gears.config.gears}")
    return TritonPolicy(inputs.plan, inputs.arrivals_s, inputs.lengths, inputs.launcher)


register(TRITON_POLICY, _triton)

def oracle_floor(lengths: np.ndarray, service_ms: ServiceTime,
                 pricing: Pricing, memory_mb: int, max_batch: int, *, slo_ms: float = 1000.0,
                 arch: str = "x86", billing: RunBilling | None = None,
                 path: RequestPath = RequestPath.ONLINE) -> PlanMetrics:
    """Every request at its own length in full batches: no padding, no waiting, no cold starts.

    Requests are grouped by exact length and cut into batches of max_batch (the last of each
    length holds the remainder); latency is the batch's model time. It is a floor for plans at
    the same memory with batches of at most max_batch as long as per-request model time does
    not grow with batch size nor shrink with length, and each length has many requests (with a
    handful per length, one mixed batch can beat several tiny exact-length ones).
    Priced on `path` (the path of the plans it bounds); billing (for the workload's arrivals)
    adds the run's fixed items every plan on that path pays (the dispatcher fleet, or the
    queues' polling), None leaves them out (a run of no duration).
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    lens = np.asarray(lengths, dtype=np.int64)
    values, counts = np.unique(lens, return_counts=True)
    sizes: list[int] = []
    pads: list[int] = []
    for length, count in zip(values.tolist(), counts.tolist(), strict=True):
        full, rest = divmod(count, max_batch)
        sizes += [max_batch] * full + ([rest] if rest else [])
        pads += [length] * (full + (1 if rest else 0))
    cache: dict[tuple[int, int], float] = {}
    for key in set(zip(sizes, pads, strict=True)):
        cache[key] = float(service_ms(key[0], key[1], memory_mb))
    service = np.array([cache[k] for k in zip(sizes, pads, strict=True)], dtype=np.float64)
    size = np.asarray(sizes, dtype=np.int64)
    pad = np.asarray(pads, dtype=np.int64)
    log = BatchLog(buffer=np.zeros(size.size, np.int64), size=size, padded_length=pad,
                   real_tokens=size * pad, start_s=np.zeros(size.size), busy_ms=service,
                   service_ms=service, cold=np.zeros(size.size, bool),
                   billed_ms=np.array([pricing.billed_ms(s) for s in service], dtype=np.int64),
                   memory_mb=np.full(size.size, memory_mb, np.int64))
    latency_ms = np.repeat(service, size)
    return plan_metrics(log, latency_ms, np.zeros(lens.size, np.int64), ("all",), slo_ms,
                        billing or RunBilling(pricing, arch), (RequestPath(path),))
