"""Multi-buffer batcher with size-or-timeout semantics. Pure: the caller passes `now_s`."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from buffers.padding import PaddingStats, batch_padding
from buffers.plan import BufferSpec, Plan
from buffers.router import LengthRouter


class FlushReason(StrEnum):
    SIZE = "size"  # max_batch_size requests are waiting
    TOKENS = "tokens"  # the padded-token budget (max_batch_tokens) is reached
    TIMEOUT = "timeout"  # the oldest request has waited timeout_ms
    DRAIN = "drain"  # shutdown: flush whatever is left


@dataclass(frozen=True)
class Request:
    """A request as the batcher sees it: an id, a token length and when it arrived."""

    id: str
    length: int
    arrival_s: float
    tenant: str = "default"
    deadline_s: float | None = None
    payload: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Batch:
    """Requests from one buffer that run together, padded to the longest member."""

    buffer_index: int
    buffer_name: str
    requests: tuple[Request, ...]
    reason: FlushReason
    formed_at_s: float

    @property
    def size(self) -> int:
        return len(self.requests)

    @property
    def padded_length(self) -> int:
        return max(r.length for r in self.requests)

    @property
    def padding(self) -> PaddingStats:
        return batch_padding([r.length for r in self.requests])


class BufferQueue:
    """One buffer's pending requests in arrival order, and its flush rule."""

    def __init__(self, index: int, spec: BufferSpec) -> None:
        self.index = index
        self.spec = spec
        self._pending: deque[Request] = deque()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, request: Request) -> None:
        self._pending.append(request)

    def due_s(self) -> float | None:
        """When the oldest pending request's timeout fires, or None if empty."""
        return self._pending[0].arrival_s + self.spec.timeout_s if self._pending else None

    def _fitting_count(self) -> int:
        """How many requests from the front fit max_batch_size and the token budget."""
        limit = min(len(self._pending), self.spec.max_batch_size)
        budget = self.spec.max_batch_tokens
        if budget is None:
            return limit
        longest = 0
        for n, request in enumerate(self._pending):
            if n == limit:
                return limit
            longest = max(longest, request.length)
            if (n + 1) * longest > budget:
                return max(n, 1)  # one request always fits: the plan guarantees budget >= L
        return limit

    def take_full(self, now_s: float) -> list[Batch]:
        """Batches that are full by count or by padded tokens."""
        out = []
        while self._pending:
            n = self._fitting_count()
            if n >= self.spec.max_batch_size:
                out.append(self._pop(n, FlushReason.SIZE, now_s))
            elif n < len(self._pending):
                out.append(self._pop(n, FlushReason.TOKENS, now_s))
            else:
                break
        return out

    def take_due(self, now_s: float) -> list[Batch]:
        """Batches whose oldest request has waited its timeout."""
        out = []
        while self._pending and self.due_s() <= now_s:
            out.append(self._pop(self._fitting_count(), FlushReason.TIMEOUT, now_s))
        return out

    def drain(self, now_s: float) -> list[Batch]:
        out = []
        while self._pending:
            out.append(self._pop(self._fitting_count(), FlushReason.DRAIN, now_s))
        return out

    def _pop(self, n: int, reason: FlushReason, now_s: float) -> Batch:
        taken = tuple(self._pending.popleft() for _ in range(n))
        return Batch(self.index, self.spec.name, taken, reason, now_s)


class MultiBufferBatcher:
    """Routes requests by length into the plan's buffers and forms batches.

    Use: `add(request, now_s)` returns batches that filled up; `poll(now_s)` returns batches whose
    timeout fired; `next_due_s()` says when to poll next. No clock reads, no I/O.
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.router = LengthRouter(plan)
        self.queues = [BufferQueue(i, spec) for i, spec in enumerate(plan.buffers)]

    def add(self, request: Request, now_s: float) -> list[Batch]:
        queue = self.queues[self.router.index(request.length)]
        queue.add(request)
        return queue.take_full(now_s)

    def add_to(self, buffer_index: int, request: Request, now_s: float) -> list[Batch]:
        """Add to a given buffer (a message already routed to that buffer's queue)."""
        queue = self.queues[buffer_index]
        queue.add(request)
        return queue.take_full(now_s)

    def add_many(self, requests: Iterable[Request], now_s: float) -> list[Batch]:
        out: list[Batch] = []
        for request in requests:
            out.extend(self.add(request, now_s))
        return out

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
