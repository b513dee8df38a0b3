"""Where the cheaper backend changes along the rate: crossovers of two cost series. Pure.

Costs per 1M requests against the rate are straight-ish lines on log-log axes (a fixed fleet's
cost per request falls as 1/rate, a per-invocation bill stays flat), so a crossover between two
measured rates is interpolated linearly in log(rate) on the difference of log(cost): where
log(cost_a) - log(cost_b) changes sign. A rate where the two are equal is the crossover itself
if the sign differs on both sides of it, and no crossover otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Crossover:
    """The rate where `below` stops being the cheaper backend and `above` starts."""

    rate_scale: float
    below: str  # the cheaper backend at the lower rates
    above: str  # the cheaper backend at the higher rates
    bracket: tuple[float, float]  # the two measured rates it lies between

    def to_dict(self) -> dict[str, object]:
        return {"rate_scale": self.rate_scale, "cheaper_below": self.below,
                "cheaper_above": self.above, "between": list(self.bracket)}


def _gap(a: float | None, b: float | None) -> float | None:
    """log(a / b), or None where either cost is missing or not positive."""
    if a is None or b is None or a <= 0 or b <= 0:
        return None
    return math.log(a) - math.log(b)


def crossovers(rates: Sequence[float], cost_a: Sequence[float | None],
               cost_b: Sequence[float | None], names: tuple[str, str] = ("a", "b"),
               ) -> tuple[Crossover, ...]:
    """Every rate at which the cheaper of two cost series changes (module doc).

    Parameters: rates ascending and positive; cost_a, cost_b per rate (None: no figure there,
    e.g. no plan met the SLO, so no crossover is claimed across it); names label the series.
    """
    if not len(rates) == len(cost_a) == len(cost_b):
        raise ValueError(f"rates and costs must have one entry per rate, got {len(rates)}, "
                         f"{len(cost_a)}, {len(cost_b)}")
    if any(r <= 0 for r in rates) or any(b <= a for a, b in zip(rates, rates[1:], strict=False)):
        raise ValueError(f"rates must be positive and ascending, got {list(rates)}")
    gaps = [_gap(a, b) for a, b in zip(cost_a, cost_b, strict=True)]
    points = [(r, g) for r, g in zip(rates, gaps, strict=True) if g is not None]
    found = []
    last_sign, last = 0, None  # the sign of the last nonzero gap and its (rate, gap)
    tie = None  # the first rate since then where the two were equal
    for rate, gap in points:
        sign = (gap > 0) - (gap < 0)
        if sign == 0:
            tie = rate if tie is None else tie
            continue
        if last_sign and sign != last_sign:
            (r0, g0), (r1, g1) = last, (rate, gap)
            x0, x1 = math.log(r0), math.log(r1)
            at = tie if tie is not None else math.exp(x0 + (x1 - x0) * g0 / (g0 - g1))
            cheaper_low = names[0] if g0 < 0 else names[1]
            cheaper_high = names[0] if g1 < 0 else names[1]
            found.append(Crossover(at, cheaper_low, cheaper_high, (r0, r1)))
        last_sign, last, tie = sign, (rate, gap), None
    return tuple(found)


def cheaper(cost_a: float | None, cost_b: float | None,
            names: tuple[str, str] = ("a", "b")) -> str | None:
    """The name of the cheaper figure (None if either is missing; ties go to the first)."""
    if cost_a is None or cost_b is None:
        return None
    return names[0] if cost_a <= cost_b else names[1]
