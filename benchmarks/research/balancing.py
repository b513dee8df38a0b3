"""A fixed pool of instances shared by every buffer (e.g. GPU servers), fed a batch stream.

Each batch goes to the instance `benchmarks.research.balancer.pick_instance` chooses at its arrival;
an
instance runs its batches in order. Returns each batch's completion latency. Pure: the batch
stream and service time come in as arrays.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from benchmarks.research.balancer import BalanceBy, InstanceLoad, pick_instance


def run_pool(ready_s: np.ndarray, sizes: np.ndarray, padded: np.ndarray,
             service_ms: np.ndarray, instances: int, by: BalanceBy) -> np.ndarray:
    """Latency (ms, ready to done) of each batch, ready_s ascending."""
    if instances < 1:
        raise ValueError(f"instances must be >= 1, got {instances}")
    free_at = [0.0] * instances
    queued: list[deque[tuple[float, int, int]]] = [deque() for _ in range(instances)]
    latency = np.empty(len(ready_s))
    for k in range(len(ready_s)):
        now = float(ready_s[k])
        loads = []
        for i in range(instances):
            while queued[i] and queued[i][0][0] <= now:  # drop batches finished by now
                queued[i].popleft()
            loads.append(InstanceLoad(sum(q[1] for q in queued[i]),
                                      sum(q[2] for q in queued[i])))
        i = pick_instance(loads, by)
        start = max(now, free_at[i])
        free_at[i] = start + float(service_ms[k]) / 1000.0
        queued[i].append((free_at[i], int(sizes[k]), int(sizes[k] * padded[k])))
        latency[k] = (free_at[i] - now) * 1000.0
    return latency
