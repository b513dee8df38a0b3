"""The platform model: Lambda's cold starts, keep-alive and concurrency caps. Pure, no clock."""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass

from optimizer.platform.esm_rules import EsmRules


@dataclass(frozen=True)
class LambdaRules:
    """Platform constants the simulator applies to every function.

    cold_start_ms: a new execution environment's INIT before it can run a batch. 6 s is our
        assumption for a container image carrying torch and all-MiniLM-L6-v2 (pull of the lazily
        loaded image layers, `import torch` of 2-3 s on a fraction of a vCPU, model load).
    bill_init: whether INIT counts towards billed duration. AWS has billed INIT for container
        images and custom runtimes all along, and since 1 Aug 2025 for every on-demand function
        (AWS Compute Blog, "AWS Lambda standardizes billing for INIT Phase", 2025). MBS ships a
        container image, so the default is True; the whole cold_start_ms is billed, which
        slightly overstates cost (sandbox set-up before INIT is not billed).
    keep_alive_s: how long an idle environment stays warm. AWS does not publish it; community
        measurements put it between about 5 and 15+ minutes and it varies, so 10 min is a guess.
    account_concurrency: the default regional concurrent-executions quota (Lambda quotas page).
    esm: how managed-mode buffers' SQS event source mappings batch (esm_rules.py).
    """

    cold_start_ms: float = 6000.0
    keep_alive_s: float = 600.0
    account_concurrency: int = 1000
    bill_init: bool = True
    esm: EsmRules = EsmRules()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.cold_start_ms) and self.cold_start_ms >= 0):
            raise ValueError(f"cold_start_ms must be finite and >= 0, got {self.cold_start_ms}")
        if not (math.isfinite(self.keep_alive_s) and self.keep_alive_s >= 0):
            raise ValueError(f"keep_alive_s must be finite and >= 0, got {self.keep_alive_s}")
        if self.account_concurrency < 1:
            raise ValueError(f"account_concurrency must be >= 1, got {self.account_concurrency}")

    def init_billed_ms(self, cold: bool) -> float:
        """The part of an invocation's billed duration that INIT adds."""
        return self.cold_start_ms if cold and self.bill_init else 0.0


class InstancePool:
    """One function's execution environments, as a reservation calendar.

    Callers acquire in non-decreasing `now_s` order (the simulator's clock), so an environment's
    busy-until time is known when it is handed out and no completion event is needed:
    `acquire(now_s)` picks the environment, `release(end_s)` books it until the batch ends.
    Choice rule, as Lambda behaves: reuse a warm idle environment (the most recently used one, so
    the others age out); else start a new one cold if the cap allows; else wait for the earliest
    busy environment to finish (Lambda throttles at the cap and the caller retries).
    """

    def __init__(self, max_concurrency: int, rules: LambdaRules) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.max_concurrency = max_concurrency
        self.rules = rules
        self._idle: deque[float] = deque()  # free-since times, ascending; the right end is MRU
        self._busy: list[float] = []  # heap of busy-until times
        self._held = False  # acquired, not yet released
        self.cold_starts = 0

    def alive(self) -> int:
        """Environments that exist now (idle, busy or held)."""
        return len(self._idle) + len(self._busy) + int(self._held)

    def acquire(self, now_s: float) -> tuple[float, bool]:
        """(start_s, cold) for a batch ready at now_s; release(end_s) must follow."""
        if self._held:
            raise RuntimeError("acquire called twice without release")
        while self._busy and self._busy[0] <= now_s:
            self._idle.append(heapq.heappop(self._busy))
        horizon_s = now_s - self.rules.keep_alive_s
        while self._idle and self._idle[0] < horizon_s:
            self._idle.popleft()  # idle longer than keep-alive: the platform reclaimed it
        self._held = True
        if self._idle:
            self._idle.pop()
            return now_s, False
        if len(self._busy) < self.max_concurrency:
            self.cold_starts += 1
            return now_s, True
        return heapq.heappop(self._busy), False

    def release(self, end_s: float) -> None:
        """Book the environment handed out by the last acquire() until end_s."""
        if not self._held:
            raise RuntimeError("release called without acquire")
        self._held = False
        heapq.heappush(self._busy, end_s)
