"""Tenant fairness: the Virtual Token Counter (Sheng et al., "Fairness in Serving Large Language
Models", OSDI'24), at batch granularity.

Each tenant has a counter of the service it received, charged per request with its own tokens
(VTC's input-token cost), divided by the tenant's weight. Not the batch's padded length: the
picks within a batch are made on these same charges, and charging padding afterwards would let
tenants with short texts drift past the bound. Padding is the system's cost, and MBS's buffers
keep it small. A batch is filled by repeatedly taking the oldest request of the backlogged
tenant with the smallest counter. Lift rule (§4, Algorithm 2): a tenant whose queue was empty
rejoins at the smallest counter among the backlogged tenants, so idling never banks credit.
The bound this gives: between backlogged tenants, counters differ by at most about two charges.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from buffers.policies.base import BatchPolicy, token_capped


class VTCPolicy(BatchPolicy):
    name = "vtc"

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        self.weights = dict(weights or {})
        for tenant, weight in self.weights.items():
            if not weight > 0:
                raise ValueError(f"VTC weight of tenant {tenant!r} must be > 0, got {weight}")
        self.counters: dict[str, float] = defaultdict(float)
        self.backlog: dict[str, int] = defaultdict(int)  # pending requests per tenant, all buffers

    def on_add(self, request) -> None:
        tenant = request.tenant
        if self.backlog[tenant] == 0:
            # Lift rule: rejoin at the smallest counter among the tenants still backlogged.
            others = [self.counters[t] for t, n in self.backlog.items() if n > 0 and t != tenant]
            if others:
                self.counters[tenant] = max(self.counters[tenant], min(others))
        self.backlog[tenant] += 1

    def select(self, pending: Sequence, spec, now_s: float) -> list[int]:
        queues: dict[str, list[int]] = defaultdict(list)
        for position, request in enumerate(pending):
            queues[request.tenant].append(position)
        # Counters as they will be after each pick (on_launch applies the same charges).
        provisional = {t: self.counters[t] for t in queues}
        order: list[int] = []
        while len(order) < min(len(pending), spec.max_batch_size):
            tenant = min((t for t in queues if queues[t]), key=lambda t: (provisional[t], t))
            position = queues[tenant].pop(0)
            order.append(position)
            provisional[tenant] += pending[position].length / self.weights.get(tenant, 1.0)
        return token_capped(order, pending, spec)

    def on_launch(self, batch, now_s: float) -> None:
        for request in batch.requests:
            self.counters[request.tenant] += request.length / self.weights.get(
                request.tenant, 1.0)
            self.backlog[request.tenant] -= 1
