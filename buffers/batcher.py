"""Multi-buffer batcher with size-or-timeout semantics. Pure: the caller passes `now_s`."""

from __future__ import annotations

from buffers.plan import BufferSpec, Plan
from buffers.policies.base import BatchPolicy, token_capped
from buffers.policies.size_timeout import SizeTimeoutPolicy
from buffers.router import LengthRouter
from buffers.types import Batch, FlushReason, Request


class BufferQueue:
    """One buffer's pending requests in arrival order; its policy decides when and which go.

    `blocked` is set by the caller while the buffer has no free capacity (all its instances
    busy): requests then stay pending, so the next batch is formed, fuller, when one frees up.
    """

    def __init__(self, index: int, spec: BufferSpec, policy: BatchPolicy | None = None) -> None:
        self.index = index
        self.spec = spec
        self.policy = policy or SizeTimeoutPolicy()
        self.blocked = False
        self._pending: list[Request] = []

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def pending(self) -> tuple[Request, ...]:
        return tuple(self._pending)

    def add(self, request: Request) -> None:
        self._pending.append(request)
        self.policy.on_add(request)

    def due_s(self) -> float | None:
        """When the policy needs this buffer looked at again (None: empty or blocked)."""
        if not self._pending or self.blocked:
            return None
        return self.policy.due_s(self._pending, self.spec)

    def take_full(self, now_s: float) -> list[Batch]:
        """Batches that are full by count or by padded tokens."""
        out = []
        while self._pending and not self.blocked and self.policy.full(self._pending, self.spec):
            out.append(self._pop(now_s))
        return out

    def take_due(self, now_s: float) -> list[Batch]:
        """Batches the policy releases now: full, timed out, or at a deadline."""
        out = []
        while (self._pending and not self.blocked
               and self.policy.ready(self._pending, self.spec, now_s)):
            out.append(self._pop(now_s))
        return out

    def take_next(self, now_s: float) -> Batch | None:
        """At most one batch the policy releases now (for callers that pace launches)."""
        if self._pending and not self.blocked and self.policy.ready(self._pending, self.spec,
                                                                    now_s):
            return self._pop(now_s)
        return None

    def drain(self, now_s: float) -> list[Batch]:
        out = []
        while self._pending:
            out.append(self._pop(now_s, FlushReason.DRAIN))
        return out

    def _reason(self, selected: int, now_s: float) -> FlushReason:
        if selected >= self.spec.max_batch_size:
            return FlushReason.SIZE
        fitting = token_capped(range(len(self._pending)), self._pending, self.spec)
        if len(fitting) < min(len(self._pending), self.spec.max_batch_size):
            return FlushReason.TOKENS
        timeout = self.policy.timeout_due_s(self._pending, self.spec)
        return FlushReason.TIMEOUT if timeout is not None and timeout <= now_s \
            else FlushReason.DEADLINE

    def _pop(self, now_s: float, reason: FlushReason | None = None) -> Batch:
        positions = self.policy.select(self._pending, self.spec, now_s)
        if not positions:
            raise RuntimeError(f"policy {self.policy.name} selected no request from "
                               f"{len(self._pending)} pending")
        reason = reason or self._reason(len(positions), now_s)
        taken = tuple(self._pending[p] for p in positions)
        chosen = set(positions)
        self._pending = [r for i, r in enumerate(self._pending) if i not in chosen]
        batch = Batch(self.index, self.spec.name, taken, reason, now_s)
        self.policy.on_launch(batch, now_s)
        return batch


class MultiBufferBatcher:
    """Routes requests by length into the plan's buffers and forms batches.

    Use: `add(request, now_s)` returns batches that filled up; `poll(now_s)` returns batches the
    policy releases (timeout, deadline); `next_due_s()` says when to poll next. One policy
    instance serves every buffer (fairness state is global). No clock reads, no I/O.
    GearedBatcher (buffers/geared.py) has the same interface, one of these per gear.
    """

    def __init__(self, plan: Plan, policy: BatchPolicy | None = None) -> None:
        self.plan = plan
        self.policy = policy or SizeTimeoutPolicy()
        self.router = LengthRouter(plan)
        self.queues = [BufferQueue(i, spec, self.policy) for i, spec in enumerate(plan.buffers)]

    def add(self, request: Request, now_s: float) -> list[Batch]:
        return self.add_to(self.router.index(request.length), request, now_s)

    def add_to(self, buffer_index: int, request: Request, now_s: float) -> list[Batch]:
        """Add to a given buffer (a message already routed to that buffer's queue)."""
        return self.enqueue(buffer_index, request, now_s).take_full(now_s)

    def enqueue(self, buffer_index: int, request: Request, now_s: float) -> BufferQueue:
        """Add to a given buffer without forming batches; returns the queue it joined (now_s
        is for the geared batcher, which counts the arrival)."""
        queue = self.queues[buffer_index]
        queue.add(request)
        return queue

    def buffer_queues(self, buffer_index: int) -> tuple[BufferQueue, ...]:
        """Every queue that holds requests of this buffer (here one)."""
        return (self.queues[buffer_index],)

    def poll(self, now_s: float) -> list[Batch]:
        out: list[Batch] = []
        for queue in self.queues:
            out.extend(queue.take_due(now_s))
        return out

    def next_due_s(self) -> float | None:
        due = [d for q in self.queues if (d := q.due_s()) is not None]
        return min(due) if due else None

    def drain(self, now_s: float) -> list[Batch]:
        out: list[Batch] = []
        for queue in self.queues:
            out.extend(queue.drain(now_s))
        return out

    def pending(self) -> int:
        return sum(len(q) for q in self.queues)
