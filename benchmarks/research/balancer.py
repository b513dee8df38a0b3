"""Token-aware balancing (SAL: Kossmann et al., "Is the GPU half-empty or half-full?", 2024).

When several instances can take a batch, pick the one with the least outstanding work. Counting
outstanding requests treats a batch of 16 ten-token queries like a batch of 16 documents;
counting outstanding padded tokens (batch size x padded length) does not. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class BalanceBy(StrEnum):
    REQUESTS = "requests"
    TOKENS = "tokens"


@dataclass(frozen=True)
class InstanceLoad:
    outstanding_requests: int
    outstanding_tokens: int


def pick_instance(loads: Sequence[InstanceLoad], by: BalanceBy) -> int:
    """Index of the least-loaded instance by the chosen measure (lowest index on ties)."""
    if not loads:
        raise ValueError("pick_instance needs at least one instance, got none")
    if by is BalanceBy.TOKENS:
        return min(range(len(loads)), key=lambda i: (loads[i].outstanding_tokens, i))
    return min(range(len(loads)), key=lambda i: (loads[i].outstanding_requests, i))
