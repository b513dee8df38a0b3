"""Seed plans for the gpu search: every buffer batched at its knee, the fleet sized to match.

On a GPU a batch costs the launch floor until its arithmetic exceeds it (GpuLatencyModel's
knee), then time in proportion to its padded tokens. Below the knee a request pays a share of
the floor; past it, only its padded tokens. So a good plan batches each buffer just past its
knee, where padding is whatever its length range leaves, and no larger: a larger batch buys no
throughput and waits longer to fill. These seeds are that rule for 1..max_buffers buffers at
equal shares of the lengths (and at twice the knee), each with the fleet floor that carries its
GPU time at the scaling target's utilisation (optimizer/platform/lmi_scaling.py). They are told
to the GP first (optimize's `seeds`), so the search starts where the compute is, instead of
finding the knee by chance: with one buffer among the seeds, MBS also starts from BATCH's
family. Pure: numbers in, plans out; a seed off the space's grids is dropped by the search.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from buffers.plan import MODEL_MAX_LENGTH, BackendType, BufferSpec, DispatchMode, Plan
from optimizer.platform.latency_model import GpuLatencyModel
from optimizer.search.encoding import named_plan
from optimizer.search.space import SearchSpace

KNEE_MULTIPLES = (1, 2)  # seed batches at the knee and at twice it
FILL_SHARE_OF_SLO = 0.25  # a seed's timeout: the fill time, at most this share of the SLO
CEILING_FACTOR = 2  # a seed's fleet ceiling: this multiple of its floor (bursts, scale-out)


def padded_length(lengths: np.ndarray, batch: int) -> float:
    """E[max of `batch` draws] of `lengths` (i.i.d.): sum over l of 1 - F(l - 1)^batch."""
    values, counts = np.unique(np.asarray(lengths, dtype=np.int64), return_counts=True)
    below = np.concatenate(([0.0], np.cumsum(counts)[:-1] / counts.sum()))  # F(l - 1) per value
    steps = np.diff(np.concatenate(([0], values)))
    return float(np.sum(steps * (1.0 - below ** batch)))


def knee_batch(model: GpuLatencyModel, lengths: np.ndarray, batches: tuple[int, ...]) -> int:
    """The smallest batch of `batches` whose compute at its expected padded length reaches
    the launch floor (the largest batch if none does)."""
    return next((b for b in batches if model.compute_bound(b, round(padded_length(lengths, b)))),
                batches[-1])


def _cuts(lengths: np.ndarray, buffers: int, cuts: tuple[int, ...]) -> list[int]:
    """Upper bounds of `buffers` ranges holding equal shares of the lengths, on `cuts`."""
    wanted = np.quantile(lengths, np.arange(1, buffers) / buffers, method="inverted_cdf")
    snapped = sorted({min(cuts, key=lambda c, w=w: abs(c - w)) for w in wanted.tolist()})
    return [*(c for c in snapped if c < MODEL_MAX_LENGTH), MODEL_MAX_LENGTH]


def _at_least(choices: tuple[int, ...], value: float) -> int:
    """The smallest choice >= value (the largest choice if none is)."""
    return next((c for c in choices if c >= value), choices[-1])


def _at_most(choices: tuple[int, ...], value: float) -> int:
    """The largest choice <= value (the smallest choice if none is)."""
    return next((c for c in reversed(choices) if c <= value), choices[0])


def knee_seeds(space: SearchSpace, cuts: tuple[int, ...], model: GpuLatencyModel,
               arrivals_s: np.ndarray, lengths: np.ndarray, slo_ms: float,
               target_utilization: float) -> list[Plan]:
    """One seed per buffer count (1..space.max_buffers) and knee multiple (module doc)."""
    if space.instance_type is None:
        raise ValueError("knee seeds are for a gpu space (instance_type set), got a lambda one")
    lens = np.asarray(lengths, dtype=np.int64)
    if lens.size == 0:
        return []
    span_s = max(float(arrivals_s[-1] - arrivals_s[0]), 1.0)
    rate_rps = lens.size / span_s
    top_ms = _at_most(space.timeouts_ms, FILL_SHARE_OF_SLO * slo_ms)
    seeds = []
    for buffers in range(1, space.max_buffers + 1):
        uppers = _cuts(lens, buffers, cuts)
        for multiple in KNEE_MULTIPLES:
            specs, gpu_s_per_s, low = [], 0.0, 1
            for upper in uppers:
                mine = lens[(lens >= low) & (lens <= upper)]
                if mine.size == 0:
                    mine = np.array([upper])
                batch = _at_least(space.batch_sizes,
                                  multiple * knee_batch(model, mine, space.batch_sizes))
                padded = max(1, round(padded_length(mine, batch)))
                share_rps = rate_rps * mine.size / lens.size
                fill_ms = 1000.0 * batch / share_rps if share_rps > 0 else math.inf
                timeout = min(_at_least(space.timeouts_ms, fill_ms), top_ms)
                gpu_s_per_s += share_rps / batch * model.predict_ms(batch, padded) / 1000.0
                specs.append(BufferSpec("b", low, upper, batch, timeout, space.memories_mb[-1],
                                        DispatchMode.DISPATCHER, space.concurrencies[-1]))
                low = upper + 1
            floor = _at_least(space.min_instances, gpu_s_per_s / target_utilization)
            ceiling = _at_least(space.max_instances, max(floor, CEILING_FACTOR * floor))
            seeds.append(replace(named_plan(specs, space.mode), backend=BackendType.GPU,
                                 instance_type=space.instance_type, min_instances=floor,
                                 max_instances=max(ceiling, floor)))
    return list({plan.to_json(): plan for plan in seeds}.values())
