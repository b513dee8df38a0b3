"""A request whose message exhausted its retries becomes FAILED, with the last error as why."""

from __future__ import annotations

from enum import Enum

from functions.shared.store import ResultStore


class DeadLetter(Enum):
    FAILED = "failed"  # the request is now FAILED with the reason
    UNKNOWN = "unknown"  # no such request (never accepted, or expired by TTL)
    ALREADY_TERMINAL = "already_terminal"  # it was DONE or FAILED already: nothing written


def fail_dead_letter(store: ResultStore, request_id: str, receive_count: int) -> DeadLetter:
    """Mark the request FAILED with its last recorded error (or the retry count)."""
    item = store.get(request_id)
    if item is None:
        return DeadLetter.UNKNOWN
    reason = item.get("last_error") or f"failed {receive_count} deliveries"
    if store.fail(request_id, f"dead-lettered after {receive_count} deliveries: {reason}"):
        return DeadLetter.FAILED
    return DeadLetter.ALREADY_TERMINAL
