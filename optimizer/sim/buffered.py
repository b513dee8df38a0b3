"""The buffered batching policies in simulation: MBS's and BATCH's buffers, run by the same
buffers/ batcher and batch policies the dispatcher runs, with or without gears."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from buffers.batcher import MultiBufferBatcher
from buffers.geared import GearedBatcher
from buffers.plan import DispatchMode
from buffers.policies import PolicyType, make_batch_policy
from buffers.types import Batch, Request
from optimizer.sim.bulk import BulkSizeTimeout, bulk_eligible
from optimizer.sim.esm import Done, EventSourceMapping, WindowEnd
from optimizer.sim.policy import FollowUps, PolicyInputs, register


@dataclass(frozen=True)
class _Timer:
    buffer: int


@dataclass(frozen=True)
class _Free:
    buffer: int


class BufferedBatching:
    """Batching per buffer with the project's own batcher and a buffers/ batch policy.

    Dispatcher mode: millisecond timers from each request's arrival. A flushed batch keeps its
    members while it waits for a free instance, as the dispatcher holds it.
    Managed mode: no batch policy runs; the SQS event source mapping batches, as AWS runs it
    (optimizer/sim/esm.py: windows that begin when a poller's previous invocation completes,
    several pollers per queue). Its pollers long-poll, so receipt trails arrival by one
    ReceiveMessage round trip (tens of ms), which we neglect: arrival is taken as receipt.
    With gears (GearedBatcher), a buffer has one queue per gear; its timer is set for the
    earliest of them, and its instances are shared by every gear (dispatcher mode only).
    """

    def __init__(self, inputs: PolicyInputs) -> None:
        plan, options = inputs.plan, inputs.options
        batch_policy = make_batch_policy(inputs.name, inputs.service_ms, options.weights)
        self.batcher = MultiBufferBatcher(plan, batch_policy) if inputs.gears is None \
            else GearedBatcher(plan, inputs.gears, batch_policy)
        self.gear_of = None if inputs.gears is None \
            else np.zeros(len(inputs.arrivals_s), dtype=np.int64)
        self.arrivals_s = inputs.arrivals_s
        self.lengths = inputs.lengths
        self.routes = inputs.routes
        self.launcher = inputs.launcher
        self.tenants = options.attrs.tenants
        self.slo_ms = options.attrs.slo_ms
        self.hold_when_busy = options.hold_when_busy
        self.limits = [spec.max_concurrency for spec in plan.buffers]
        self.busy = [0] * len(plan.buffers)
        self._armed: list[float | None] = [None] * len(plan.buffers)
        self.esm = _mappings(inputs)


    def _request(self, index: int) -> Request:
        arrival = self.arrivals_s[index]
        deadline = None if self.slo_ms is None else arrival + self.slo_ms[index] / 1000.0
        tenant = "default" if self.tenants is None else self.tenants[index]
        return Request(str(index), self.lengths[index], arrival, tenant=tenant,
                       deadline_s=deadline, payload=index)

    def on_arrival(self, index: int, now_s: float) -> FollowUps:
        buffer = self.routes[index]
        if buffer in self.esm:
            return self.esm[buffer].on_arrival(index, now_s)
        queue = self.batcher.enqueue(buffer, self._request(index), now_s)
        if self.gear_of is not None:
            self.gear_of[index] = self.batcher.gear
        if self.hold_when_busy:
            return self._release(buffer, now_s) + self._arm(buffer)
        return self._launch(queue.take_full(now_s), now_s) + self._arm(buffer)

    def _release(self, buffer: int, now_s: float) -> FollowUps:
        """Hold mode: one batch at a time, so each launch can block the buffer again."""
        follow_ups: FollowUps = []
        for queue in self.batcher.buffer_queues(buffer):
            while (batch := queue.take_next(now_s)) is not None:
                follow_ups += self._launch([batch], now_s)
        return follow_ups

    def on_event(self, event: _Timer | _Free | WindowEnd | Done, now_s: float) -> FollowUps:
        if isinstance(event, WindowEnd | Done):
            return self.esm[event.buffer].on_event(event, now_s)
        if isinstance(event, _Free):
            self.busy[event.buffer] -= 1
            self._block(event.buffer)
        elif self._armed[event.buffer] != now_s:
            return []  # stale: the batch it was set for already left by size
        else:
            self._armed[event.buffer] = None
        if self.hold_when_busy:
            return self._release(event.buffer, now_s) + self._arm(event.buffer)
        due = [b for q in self.batcher.buffer_queues(event.buffer) for b in q.take_due(now_s)]
        return self._launch(due, now_s) + self._arm(event.buffer)

    def _block(self, buffer: int) -> None:
        if self.hold_when_busy:
            for queue in self.batcher.buffer_queues(buffer):
                queue.blocked = self.busy[buffer] >= self.limits[buffer]

    def _arm(self, buffer: int) -> FollowUps:
        due = [d for q in self.batcher.buffer_queues(buffer) if (d := q.due_s()) is not None]
        due_s = min(due) if due else None
        if due_s is None or due_s == self._armed[buffer]:
            return []
        self._armed[buffer] = due_s
        return [(due_s, _Timer(buffer))]

    def _launch(self, batches: list[Batch], now_s: float) -> FollowUps:
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


def _mappings(inputs: PolicyInputs) -> dict[int, EventSourceMapping]:
    """An event source mapping per managed-mode buffer, each with its own seeded split."""
    rules = inputs.launcher.rules.esm
    managed = [i for i, spec in enumerate(inputs.plan.buffers)
               if spec.dispatch_mode is DispatchMode.MANAGED]
    if managed and inputs.gears is not None:
        raise ValueError(f"gears apply to dispatcher-mode buffers, got managed buffers "
                         f"{[inputs.plan.buffers[i].name for i in managed]}")
    return {i: EventSourceMapping(i, inputs.plan.buffers[i], rules, inputs.launcher,
                                  inputs.lengths, np.random.default_rng([rules.seed, i]))
            for i in managed}


def _buffered(inputs: PolicyInputs) -> BufferedBatching | BulkSizeTimeout:
    """The batch-by-batch replay where it launches the same batches (bulk.py), else the loop's."""
    return BulkSizeTimeout(inputs) if bulk_eligible(inputs) else BufferedBatching(inputs)


for _kind in PolicyType:  # every buffers/ batch policy, so a new one is simulated as it lands
    register(_kind.value, _buffered)
