"""Fairness measures over a simulated run, and per-tenant rate limiting. Pure numpy.

Service is counted as VTC counts it (Sheng et al., OSDI'24): tokens served per tenant. A tenant
is backlogged at time t when it has a request that has arrived and not yet started.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def token_bucket_admit(arrivals_s: np.ndarray, tenants: Sequence[str], rate_per_s: float,
                       burst: float) -> np.ndarray:
    """Per-tenant token buckets (rate, burst): which requests are admitted (the rest get 429)."""
    if rate_per_s <= 0 or burst < 1:
        raise ValueError(f"rate_per_s must be > 0 and burst >= 1, got {rate_per_s}, {burst}")
    level: dict[str, float] = {}
    last: dict[str, float] = {}
    admitted = np.zeros(len(arrivals_s), dtype=bool)
    for i, (t, tenant) in enumerate(zip(arrivals_s.tolist(), tenants, strict=True)):
        tokens = min(burst, level.get(tenant, burst) + (t - last.get(tenant, t)) * rate_per_s)
        last[tenant] = t
        if tokens >= 1.0:
            admitted[i] = True
            tokens -= 1.0
        level[tenant] = tokens
    return admitted


@dataclass(frozen=True)
class ServiceCurves:
    """Cumulative tokens served per tenant at each batch start, and who was backlogged."""

    times_s: np.ndarray  # (k,) batch start times, ascending
    tenants: tuple[str, ...]
    served: np.ndarray  # (k, tenants) cumulative tokens served up to and including time k
    backlogged: np.ndarray  # (k, tenants) bool: waiting requests just before time k

    def max_backlogged_gap(self) -> float:
        """The largest service difference between tenants backlogged at the same moment.

        The difference counts only service received while both were backlogged, as VTC's bound
        does: each tenant's curve is measured from the start of the common backlogged period.
        """
        worst = 0.0
        for a in range(len(self.tenants)):
            for b in range(a + 1, len(self.tenants)):
                worst = max(worst, _pair_gap(self.served[:, a], self.served[:, b],
                                             self.backlogged[:, a] & self.backlogged[:, b]))
        return worst


def _pair_gap(served_a: np.ndarray, served_b: np.ndarray, both: np.ndarray) -> float:
    worst, start = 0.0, None
    for k in range(len(both)):
        if both[k] and start is None:
            start = k - 1
        elif not both[k]:
            start = None
            continue
        base_a = served_a[start] if start >= 0 else 0.0
        base_b = served_b[start] if start >= 0 else 0.0
        worst = max(worst, abs((served_a[k] - base_a) - (served_b[k] - base_b)))
    return worst


def service_curves(arrivals_s: np.ndarray, start_s: np.ndarray, lengths: np.ndarray,
                   tenants: Sequence[str]) -> ServiceCurves:
    """Curves from each request's arrival, start (its batch's start) and token length."""
    names = tuple(sorted(set(tenants)))
    column = {t: j for j, t in enumerate(names)}
    cols = np.array([column[t] for t in tenants])
    order = np.argsort(start_s, kind="stable")
    times = np.unique(start_s)
    served = np.zeros((len(times), len(names)))
    backlogged = np.zeros((len(times), len(names)), dtype=bool)
    step = np.searchsorted(times, start_s[order])
    np.add.at(served, (step, cols[order]), lengths[order])
    served = np.cumsum(served, axis=0)
    for j in range(len(names)):
        mine = cols == j
        arrived = np.searchsorted(np.sort(arrivals_s[mine]), times, side="left")
        started = np.searchsorted(np.sort(start_s[mine]), times, side="left")
        backlogged[:, j] = arrived > started
    return ServiceCurves(times, names, served, backlogged)
