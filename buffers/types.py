"""The types every part of buffers/ shares: a request, a batch, why it left, and service time.

They sit below the batcher and the policies, so both import them without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from buffers.padding import PaddingStats, batch_padding

# One invocation's model time in ms, from (batch_size, padded_length, memory_mb): the latency
# predictor of the deadline policy, and the service time of the estimator and the simulator.
ServiceTime = Callable[[int, int, int], float]


class FlushReason(StrEnum):
    SIZE = "size"  # max_batch_size requests are waiting
    TOKENS = "tokens"  # the padded-token budget (max_batch_tokens) is reached
    TIMEOUT = "timeout"  # the oldest request has waited timeout_ms
    DEADLINE = "deadline"  # the most urgent request reached its last schedulable time
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
