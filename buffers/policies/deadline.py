"""Deadline-aware flush and batch sizing: SLAI's last schedulable time and SlackFit.

- SLAI (Bari, Hegde, de Veciana, 2025): every request has a last schedulable time,
  LST = deadline - predicted execution - a safety offset; a buffer flushes no later than its most
  urgent request's LST, and no later than the plan's timeout either.
- SlackFit (SuperServe, Khare et al., NSDI'25): the batch is the largest one, taken in deadline
  order, whose predicted latency fits the most urgent request's slack. If even one request no
  longer fits (its deadline is lost), the batch is as large as allowed: throughput first, so that
  one late request does not make the ones behind it late too.
- The safety offset is learnt from measured batches: a high quantile of (actual - predicted) over
  a sliding window, never below `min_offset_ms` (the invocation's work around the model).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from buffers.policies.base import BatchPolicy, token_capped
from buffers.types import ServiceTime

OFFSET_WINDOW = 200  # batches remembered for the safety offset
OFFSET_QUANTILE = 95
# The predictor times the forward pass only; an invocation also builds its event, tokenizes and
# writes its results (30-50 ms measured in the local stack). Until measured batches teach the
# offset, this floor covers that.
DEFAULT_MIN_OFFSET_MS = 50.0


class DeadlinePolicy(BatchPolicy):
    name = "deadline"

    def __init__(self, predict_ms: ServiceTime,
                 min_offset_ms: float = DEFAULT_MIN_OFFSET_MS) -> None:
        self.predict_ms = predict_ms
        self.min_offset_ms = min_offset_ms
        self._errors_ms: deque[float] = deque(maxlen=OFFSET_WINDOW)

    @property
    def offset_s(self) -> float:
        learnt = float(np.percentile(self._errors_ms, OFFSET_QUANTILE)) if self._errors_ms else 0.0
        return max(self.min_offset_ms, learnt) / 1000.0

    @staticmethod
    def _urgency(pending: Sequence) -> list[int]:
        return sorted(range(len(pending)), key=lambda i: (
            pending[i].deadline_s if pending[i].deadline_s is not None else float("inf"), i))

    def due_s(self, pending: Sequence, spec) -> float | None:
        timeout = self.timeout_due_s(pending, spec)
        if timeout is None:
            return None
        order = self._urgency(pending)
        head = pending[order[0]]
        if head.deadline_s is None:
            return timeout
        batch = token_capped(order, pending, spec)
        longest = max(pending[i].length for i in batch)
        predicted_ms = self.predict_ms(len(batch), longest, spec.memory_mb)
        lst = head.deadline_s - predicted_ms / 1000.0 - self.offset_s
        return min(timeout, lst)

    def select(self, pending: Sequence, spec, now_s: float) -> list[int]:
        order = self._urgency(pending)
        allowed = token_capped(order, pending, spec)
        head = pending[order[0]]
        if head.deadline_s is None:
            return allowed
        slack_ms = (head.deadline_s - now_s - self.offset_s) * 1000.0
        longest = 0
        best = 0
        for size, position in enumerate(allowed, start=1):
            longest = max(longest, pending[position].length)
            if self.predict_ms(size, longest, spec.memory_mb) <= slack_ms:
                best = size
        return allowed[:best] if best else allowed

    def on_complete(self, batch, predicted_ms: float, actual_ms: float) -> None:
        self._errors_ms.append(actual_ms - predicted_ms)
