"""Admission and deadline rules of the online service. Pure: the caller passes `now_s`.

- A bounded admission queue: inputs waiting for a batch are capped; past the cap a request is
  refused whole (429 with Retry-After), so overload shows as refusals, not as a growing queue.
- A bounded event-loop lag: when the process itself is the bottleneck (CPU), requests queue in
  the loop before any handler runs, where the cap above cannot see them. A timer measures how
  late the loop runs it; past MAX_LOOP_LAG_MS on average, requests are refused (429), which
  costs a fraction of serving them, until the loop catches up.
- Deadlines: a request's inputs carry deadline = arrival + SLO. An input still waiting when its
  batch could no longer finish by the deadline (now >= deadline - the buffer's expected service
  time) is answered at once with 504 instead of being batched late. An input already running
  is answered when its batch returns: its invocation cannot be called back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from buffers.plan import Plan

# Enough waiting inputs to fill every invocation slot of every buffer this many times over.
QUEUE_FILLS = 2
EWMA_ALPHA = 0.2  # weight of the newest measurement in the service-time average
MAX_SERVICE_SHARE = 0.5  # of the SLO, at most, reserved for the invocation itself
LAG_PROBE_S = 0.02  # how often the loop's lateness is measured
# Average lateness past which requests are refused: a loop this far behind adds it to every
# request twice (reading it and answering it), past the overhead the service is allowed.
DEFAULT_MAX_LOOP_LAG_MS = 50.0


def default_queue_limit(plan: Plan) -> int:
    """Waiting inputs admitted at most: QUEUE_FILLS x what all buffers run at once."""
    return QUEUE_FILLS * sum(s.max_batch_size * s.max_concurrency for s in plan.buffers)


def admits(waiting: int, incoming: int, limit: int) -> bool:
    """Whether a request of `incoming` inputs fits beside `waiting` (all or nothing)."""
    return waiting + incoming <= limit


def retry_after_s(plan: Plan, expected_service_s: float) -> int:
    """Seconds to wait before retrying a refused request: one batching cycle, at least 1 s.

    HTTP's Retry-After is whole seconds (RFC 9110 §10.2.3).
    """
    longest_timeout_s = max(s.timeout_s for s in plan.buffers)
    return max(1, math.ceil(longest_timeout_s + expected_service_s))


def deadline_s(arrival_s: float, slo_ms: float | None) -> float | None:
    return None if slo_ms is None else arrival_s + slo_ms / 1000.0


def give_up_at_s(deadline: float, expected_service_s: float, slo_ms: float) -> float:
    """The last moment a waiting input can still be launched and finish by its deadline.

    The expected service time counts for at most MAX_SERVICE_SHARE of the SLO: a function that
    turned slower than the SLO must not make every input give up at arrival, or no batch would
    run again to measure it faster when it recovers.
    """
    return deadline - min(expected_service_s, MAX_SERVICE_SHARE * slo_ms / 1000.0)


def loop_overloaded(lag_s: float, max_lag_ms: float | None) -> bool:
    return max_lag_ms is not None and lag_s * 1000.0 > max_lag_ms


@dataclass
class Ewma:
    """Exponentially weighted mean of a measured duration in seconds (a buffer's invocation
    time, the loop's lateness)."""

    mean_s: float = 0.0
    samples: int = 0

    def observe(self, elapsed_s: float) -> None:
        if elapsed_s < 0:
            raise ValueError(f"elapsed_s must be >= 0, got {elapsed_s}")
        self.mean_s = elapsed_s if self.samples == 0 else \
            (1 - EWMA_ALPHA) * self.mean_s + EWMA_ALPHA * elapsed_s
        self.samples += 1
