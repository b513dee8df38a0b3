"""The batching-policy axis: one base class; each policy decides for one buffer's pending list.

A policy answers three questions about a buffer's pending requests (arrival order), given `now_s`:
- `due_s`: when must the buffer be looked at again, even if nothing arrives?
- `ready`: should a batch leave now?
- `select`: which pending requests (positions) form that batch?
It is pure: no clock, no I/O. The same instance runs in the dispatcher and in the simulator.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from buffers.plan import BufferSpec
from buffers.types import Batch, Request


def token_capped(order: Sequence[int], pending: Sequence[Request], spec: BufferSpec) -> list[int]:
    """The longest prefix of `order` within max_batch_size and the padded-token budget.

    Sarathi-Serve's token budget (Agrawal et al., OSDI'24 §4.2), at batch granularity: a batch
    costs batch_size x its longest member, so the cap is on that product, not on the count alone.
    One request always fits (the plan guarantees budget >= the buffer's max length).
    """
    chosen: list[int] = []
    longest = 0
    budget = spec.max_batch_tokens
    for position in order[: spec.max_batch_size]:
        longest_if = max(longest, pending[position].length)
        if budget is not None and chosen and (len(chosen) + 1) * longest_if > budget:
            break
        chosen.append(position)
        longest = longest_if
    return chosen


class BatchPolicy(ABC):
    """Decides when a buffer flushes and which of its pending requests go together."""

    name: str = "base"

    def timeout_due_s(self, pending: Sequence[Request], spec: BufferSpec) -> float | None:
        """The plan's timeout: the oldest request never waits longer than timeout_ms."""
        return pending[0].arrival_s + spec.timeout_s if pending else None

    def due_s(self, pending: Sequence[Request], spec: BufferSpec) -> float | None:
        return self.timeout_due_s(pending, spec)

    def full(self, pending: Sequence[Request], spec: BufferSpec) -> bool:
        """A batch is full by count, or by padded tokens (the next request would not fit)."""
        if len(pending) >= spec.max_batch_size:
            return True
        if spec.max_batch_tokens is None:
            return False  # the hot path: no budget, so only the count matters
        return len(token_capped(range(len(pending)), pending, spec)) < len(pending)

    def ready(self, pending: Sequence[Request], spec: BufferSpec, now_s: float) -> bool:
        if not pending:
            return False
        due = self.due_s(pending, spec)
        return self.full(pending, spec) or (due is not None and due <= now_s)

    @abstractmethod
    def select(self, pending: Sequence[Request], spec: BufferSpec, now_s: float) -> list[int]:
        """Positions in `pending` of the next batch (at least one)."""

    def on_add(self, request: Request) -> None:  # noqa: B027 - optional hook
        """Called once per request that joins any buffer (fairness tracks backlogs here)."""

    def on_launch(self, batch: Batch, now_s: float) -> None:  # noqa: B027 - optional hook
        """Called once per batch that leaves (fairness counters are charged here)."""

    def on_complete(self, batch: Batch, predicted_ms: float,  # noqa: B027 - optional hook
                    actual_ms: float) -> None:
        """Called when a batch finishes (deadline policies learn their safety offset here)."""
