"""Starts batches on each buffer's instance pool under Lambda's rules and records them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from buffers.plan import Plan
from buffers.types import ServiceTime
from optimizer.platform.lambda_rules import InstancePool, LambdaRules
from optimizer.platform.pricing import Pricing


def cached_service_ms(service_ms: ServiceTime, cache: dict[tuple[int, int, int], float],
                      key: tuple[int, int, int]) -> float:
    """service_ms(*key) (batch size, padded length, memory), checked >= 0 and memoised."""
    value = cache.get(key)
    if value is None:
        value = float(service_ms(*key))
        if not value >= 0:
            raise ValueError(f"service time must be >= 0 ms, got {value} for {key}")
        cache[key] = value
    return value

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
        self.order: list[int] | np.ndarray = []  # request indices in launch order
        # managed mode: requests that found their poller's window lapsed, exposed to the
        # documented low-traffic wait (optimizer/sim/esm.py)
        self.exposed: list[int] = []
        self.rows: list[tuple[int, int, int | float, float, float, float, bool, int]] = []

    def _service_time(self, size: int, length: int, memory_mb: int) -> float:
        return cached_service_ms(self._service_ms, self._service_cache,
                                 (size, length, memory_mb))

    def launch(self, buffer: int, members: Sequence[int], padded_length: int | float,
               now_s: float, service_length: int | None = None) -> float:
        """Run `members` (request indices) as one invocation ready at now_s; returns its end.

        The model time is looked up at service_length (default: padded_length); a ragged batch
        (optimizer/sim/ragged.py) passes its modelled length there and logs its mean length.
        """
        service_ms = self._service_time(
            len(members), padded_length if service_length is None else service_length,
            self.memory_mb[buffer])
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

    def launch_columns(self, buffer: np.ndarray, members: np.ndarray, size: np.ndarray,
                       padded_length: np.ndarray, ready_s: np.ndarray) -> None:
        """launch() for many batches at once, given as columns in launch order (members: their
        request indices, concatenated); the same pools, rows and figures, with the model and
        billing lookups done once per distinct key instead of once per batch."""
        memory = np.asarray(self.memory_mb, dtype=np.int64)[buffer]
        wide = int(padded_length.max(initial=0)) + 1, int(memory.max(initial=0)) + 1
        codes, inverse = np.unique((size * wide[0] + padded_length) * wide[1] + memory,
                                   return_inverse=True)  # one code per (size, length, memory)
        table = [self._service_time(c // wide[1] // wide[0], c // wide[1] % wide[0], c % wide[1])
                 for c in codes.tolist()]
        service = np.asarray(table, dtype=np.float64)[inverse].tolist()
        starts, colds, busies = [], [], []
        pools, cold_ms = self.pools, self.rules.cold_start_ms
        for index, now_s, service_ms in zip(buffer.tolist(), ready_s.tolist(), service,
                                            strict=True):
            pool = pools[index]
            start_s, cold = pool.acquire(now_s)
            busy_ms = service_ms + (cold_ms if cold else 0.0)
            pool.release(start_s + busy_ms / 1000.0)
            starts.append(start_s)
            colds.append(cold)
            busies.append(busy_ms)
        billed_by = {pair: self._pricing.billed_ms(pair[0] + self.rules.init_billed_ms(pair[1]))
                     for pair in set(zip(service, colds, strict=True))}
        billed = [billed_by[pair] for pair in zip(service, colds, strict=True)]
        if service:
            self.last_service_ms = service[-1]
        # an array, not a list of 8.8M ints (the engine reads order with np.asarray); launch()
        # after this is not supported, as no policy mixes the two
        self.order = np.concatenate((np.asarray(self.order, dtype=np.int64), members))
        self.rows.extend(zip(buffer.tolist(), size.tolist(), padded_length.tolist(), starts,
                             busies, service, colds, billed, strict=True))
