"""The geared batcher: one multi-buffer batcher per gear over one layout. Pure.

New arrivals go to the active gear's batcher (GearSelector, buffers/gears.py); requests already
buffered leave under their own gear's rules, so a switch never reshapes a waiting batch. It has
the multi-buffer batcher's interface, so the dispatcher and the simulator drive either one.
"""

from __future__ import annotations

from buffers.batcher import BufferQueue, MultiBufferBatcher
from buffers.gears import GearSelector, GearSet, check_layout
from buffers.plan import Plan
from buffers.policies.base import BatchPolicy
from buffers.router import LengthRouter
from buffers.types import Batch, Request


class GearedBatcher:
    """Batches under the active gear's plan. One policy instance serves every gear and buffer
    (fairness and deadline state are global), as in MultiBufferBatcher."""

    def __init__(self, plan: Plan, gears: GearSet, policy: BatchPolicy | None = None) -> None:
        check_layout(plan, gears.plans[0], "the gear set")  # ValueError names the field
        self.plan = plan
        self.gears = gears
        self.selector = GearSelector(gears.config)
        first = MultiBufferBatcher(gears.plans[0], policy)
        self.policy = first.policy
        self.batchers = [first] + [MultiBufferBatcher(p, self.policy) for p in gears.plans[1:]]
        self.router = LengthRouter(plan)

    @property
    def gear(self) -> int:
        """The active gear: where the latest arrival went."""
        return self.selector.gear

    def add(self, request: Request, now_s: float) -> list[Batch]:
        return self.add_to(self.router.index(request.length), request, now_s)

    def add_to(self, buffer_index: int, request: Request, now_s: float) -> list[Batch]:
        """Add to a given buffer of the active gear (a message already routed to that buffer)."""
        return self.enqueue(buffer_index, request, now_s).take_full(now_s)

    def enqueue(self, buffer_index: int, request: Request, now_s: float) -> BufferQueue:
        """Count the arrival, then add it to the active gear's queue without forming batches."""
        gear = self.selector.observe(now_s)
        return self.batchers[gear].enqueue(buffer_index, request, now_s)

    def buffer_queues(self, buffer_index: int) -> tuple[BufferQueue, ...]:
        """This buffer's queue in every gear, lowest gear first."""
        return tuple(b.queues[buffer_index] for b in self.batchers)

    def poll(self, now_s: float) -> list[Batch]:
        return [batch for b in self.batchers for batch in b.poll(now_s)]

    def next_due_s(self) -> float | None:
        due = [d for b in self.batchers if (d := b.next_due_s()) is not None]
        return min(due) if due else None

    def drain(self, now_s: float) -> list[Batch]:
        return [batch for b in self.batchers for batch in b.drain(now_s)]

    def pending(self) -> int:
        return sum(b.pending() for b in self.batchers)
