"""Starts batches on each buffer's instance pool under Lambda's rules and records them."""

from __future__ import annotations

from collections.abc import Sequence

from buffers.plan import Plan
from buffers.types import ServiceTime
from optimizer.platform.lambda_rules import InstancePool, LambdaRules
from optimizer.platform.pricing import Pricing


class Launcher:
    """Starts batches on each buffer's instance pool and records them."""

    def __init__(self, plan: Plan, service_ms: ServiceTime, pricing: Pricing,
                 rules: LambdaRules) -> None:
        self.memory_mb = [spec.memory_mb for spec in plan.buffers]
        self.pools = [InstancePool(spec.max_concurrency, rules) for spec in plan.buffers]
        self._service_ms = service_ms
        self._service_cache: dict[tuple[int, int, int], float] = {}
        self._pricing = pricing
        self.rules = rules
        self.last_service_ms = 0.0
        self.order: list[int] = []  # request indices in launch order
        # managed mode: requests that found their poller's window lapsed, exposed to the
        # documented low-traffic wait (optimizer/sim/esm.py)
        self.exposed: list[int] = []
        self.rows: list[tuple[int, int, int, float, float, float, bool, int]] = []

    def launch(self, buffer: int, members: Sequence[int], padded_length: int,
               now_s: float) -> float:
        """Run `members` (request indices) as one invocation ready at now_s; returns its end."""
        memory_mb = self.memory_mb[buffer]
        key = (len(members), padded_length, memory_mb)
        service_ms = self._service_cache.get(key)
        if service_ms is None:
            service_ms = float(self._service_ms(*key))
            if not service_ms >= 0:
                raise ValueError(f"service time must be >= 0 ms, got {service_ms} for {key}")
            self._service_cache[key] = service_ms
        self.last_service_ms = service_ms
        pool = self.pools[buffer]
        start_s, cold = pool.acquire(now_s)
        busy_ms = service_ms + (self.rules.cold_start_ms if cold else 0.0)
        end_s = start_s + busy_ms / 1000.0
        pool.release(end_s)
        billed = self._pricing.billed_ms(service_ms + self.rules.init_billed_ms(cold))
        self.order.extend(members)
        self.rows.append((buffer, len(members), padded_length, start_s, busy_ms, service_ms,
                          cold, billed))
        return end_s
