"""Batching policies, one per module, behind `BatchPolicy`; `make_batch_policy` builds one."""

from __future__ import annotations

from enum import StrEnum

from buffers.policies.base import BatchPolicy, token_capped
from buffers.policies.deadline import DeadlinePolicy
from buffers.policies.size_timeout import SizeTimeoutPolicy
from buffers.policies.vtc import VTCPolicy
from buffers.types import ServiceTime

__all__ = ["BatchPolicy", "DeadlinePolicy", "PolicyType", "SizeTimeoutPolicy", "VTCPolicy",
           "make_batch_policy", "token_capped"]


class PolicyType(StrEnum):
    SIZE_TIMEOUT = "size_timeout"
    DEADLINE = "deadline"
    VTC = "vtc"


def make_batch_policy(name: str, predict_ms: ServiceTime | None = None,
                      weights: dict[str, float] | None = None) -> BatchPolicy:
    """The policy called `name`; the deadline policy needs a latency predictor."""
    try:
        kind = PolicyType(name)
    except ValueError:
        raise ValueError(f"Unknown policy: {name!r}; known: {[p.value for p in PolicyType]}") \
            from None
    if kind is PolicyType.DEADLINE:
        if predict_ms is None:
            raise ValueError("the deadline policy needs a latency predictor, got None")
        return DeadlinePolicy(predict_ms)
    if kind is PolicyType.VTC:
        return VTCPolicy(weights)
    return SizeTimeoutPolicy()
