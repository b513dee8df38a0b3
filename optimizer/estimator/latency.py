"""Service-time tables, padded-length order statistics and latency CDFs for the estimator.

Helper of optimizer/estimator/estimate.py. Pure numpy: the service-time callable is the only outside
input, and its values are cached per (memory_mb, batch size).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from buffers.types import ServiceTime

# The service time is evaluated exactly at these lengths and sizes and linearly interpolated in
# between: a profile's t(B, L) is linear in B and smooth in L (optimizer/platform/latency_model.py),
# so
# this keeps a new memory size to a few hundred calls instead of B x 256.
_EXACT_SIZES = 16
_SIZE_GROWTH = 1.25


def length_nodes(max_length: int) -> np.ndarray:
    """Every length up to 16, every 4th up to 64, every 8th beyond, and max_length."""
    nodes = {*range(1, 17), *range(16, 65, 4), *range(64, max_length + 1, 8), max_length}
    return np.array(sorted(n for n in nodes if n <= max_length), dtype=np.int64)


def size_nodes(max_size: int) -> np.ndarray:
    """Every size up to 16, then a geometric ladder (x1.25), and max_size."""
    nodes = list(range(1, min(max_size, _EXACT_SIZES) + 1))
    while nodes[-1] < max_size:
        nodes.append(min(max_size, int(np.ceil(nodes[-1] * _SIZE_GROWTH))))
    return np.array(nodes, dtype=np.int64)


class ServiceTable:
    """t(s, l) in ms for l = 0..max_length (column 0 unused), cached per (memory_mb, s)."""

    def __init__(self, service_ms: ServiceTime, max_length: int) -> None:
        self._service_ms = service_ms
        self._lengths = np.arange(max_length + 1, dtype=np.float64)
        self._nodes = length_nodes(max_length)
        self._rows: dict[tuple[int, int], np.ndarray] = {}

    def _row(self, memory_mb: int, size: int) -> np.ndarray:
        key = (memory_mb, size)
        row = self._rows.get(key)
        if row is None:
            values = np.array([float(self._service_ms(size, int(n), memory_mb))
                               for n in self._nodes])
            if not np.all(values >= 0):
                raise ValueError(f"service time must be >= 0 ms, got {values.min()} at batch "
                                 f"{size}, memory {memory_mb} MB")
            row = np.interp(self._lengths, self._nodes, values)
            self._rows[key] = row
        return row

    def rows(self, memory_mb: int, sizes: np.ndarray) -> np.ndarray:
        """Service ms for each size in `sizes` (rows) and every length (columns)."""
        nodes = size_nodes(int(sizes.max()))
        node_rows = np.stack([self._row(memory_mb, int(s)) for s in nodes])
        upper = np.clip(np.searchsorted(nodes, sizes, side="left"), 0, nodes.size - 1)
        lower = np.maximum(upper - 1, 0)
        span = np.maximum(nodes[upper] - nodes[lower], 1)
        frac = np.where(nodes[upper] == sizes, 1.0, (sizes - nodes[lower]) / span)[:, None]
        return node_rows[lower] * (1.0 - frac) + node_rows[upper] * frac


def max_length_pmf(length_cdf: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """P(max of s i.i.d. lengths = l) = F(l)^s - F(l-1)^s, rows per size, columns per length."""
    powered = np.power.outer(length_cdf, sizes.astype(np.float64)).T
    previous = np.concatenate((np.zeros((sizes.size, 1)), powered[:, :-1]), axis=1)
    return np.clip(powered - previous, 0.0, None)


def spread_rows(values: np.ndarray, weights: np.ndarray, step: float, bins: int) -> np.ndarray:
    """Histograms (one per row) of `values` on a grid `step` apart, split between neighbours."""
    rows = values.shape[0]
    pos = np.clip(values / step, 0.0, bins - 1.0)
    low = np.floor(pos).astype(np.int64)
    frac = pos - low
    high = np.minimum(low + 1, bins - 1)
    offset = (np.arange(rows) * bins)[:, None]
    out = np.bincount((low + offset).ravel(), weights=(weights * (1.0 - frac)).ravel(),
                      minlength=rows * bins)
    out += np.bincount((high + offset).ravel(), weights=(weights * frac).ravel(),
                       minlength=rows * bins)
    return out.reshape(rows, bins)


def convolve_rows(left: np.ndarray, right: np.ndarray, bins: int) -> np.ndarray:
    """Row-wise linear convolution of two (rows, n) arrays, summed over rows, first `bins`."""
    size = 1 << int(np.ceil(np.log2(left.shape[1] + right.shape[1])))
    spectrum = np.sum(np.fft.rfft(left, size) * np.fft.rfft(right, size), axis=0)
    out = np.fft.irfft(spectrum, size)
    tail = float(np.sum(out[bins:]))
    out = np.clip(out[:bins], 0.0, None)
    out[-1] += max(tail, 0.0)  # nothing should land here; keep the mass if it does
    return out


def spread_into(table: np.ndarray, row: np.ndarray, position: np.ndarray,
                weight: np.ndarray) -> None:
    """Add weights at (row, fractional column) into a 2-D `table`, split between the two
    nearest columns so that means are kept."""
    rows, bins = table.shape
    pos = np.clip(position, 0.0, bins - 1.0)
    low = np.floor(pos).astype(np.int64)
    frac = pos - low
    high = np.minimum(low + 1, bins - 1)
    flat = table.reshape(-1)
    flat += np.bincount(row * bins + low, weights=weight * (1.0 - frac), minlength=rows * bins)
    flat += np.bincount(row * bins + high, weights=weight * frac, minlength=rows * bins)


def queue_masses(backlog_ms: np.ndarray, idle: np.ndarray, busy: np.ndarray,
                 wait_class: np.ndarray, class_means_ms: np.ndarray, step: float,
                 bins: int) -> np.ndarray:
    """The wait for an environment on the grid: per arrival's batch, a fluid backlog shift, plus
    (with weight `busy`) an exponential wait of its class's mean; `idle` weighs no extra wait."""
    classes = class_means_ms.size
    shifted = np.nonzero(backlog_ms > 0)[0]
    table = np.zeros((classes + 1, bins))  # row 0: no exponential part; row k + 1: class k
    table[0, 0] = float(np.sum(idle)) - float(np.sum(idle[shifted]))
    spread_into(table, np.zeros(shifted.size, np.int64), backlog_ms[shifted] / step,
                idle[shifted])
    waiting = np.nonzero(busy > 0)[0]
    spread_into(table, wait_class[waiting] + 1, backlog_ms[waiting] / step, busy[waiting])
    if waiting.size == 0:
        return table[0]
    edges = (np.arange(bins) + 0.5) * step
    cdf = 1.0 - np.exp(-edges[None, :] / np.maximum(class_means_ms, 1e-9)[:, None])
    cdf[:, -1] = 1.0
    kernels = np.diff(np.concatenate((np.zeros((classes, 1)), cdf), axis=1), axis=1)
    return table[0] + convolve_rows(table[1:], kernels, bins)


@dataclass(frozen=True)
class LatencyCdf:
    """A latency distribution: expected requests on a grid, then shifted copies of it.

    `base[j]` requests finish near j*step_ms (spread over the cell); `parts` are (share,
    shift_ms) pairs, e.g. (0.99, 0) for warm requests and (0.01, cold_ms) for those that also
    sit through a cold start; shares sum to 1. `exposed` (managed mode), the part of `base`
    whose requests found their poller's window lapsed, may wait longer (low_traffic below).
    """

    step_ms: float
    base: np.ndarray
    parts: tuple[tuple[float, float], ...]
    exposed: np.ndarray | None = None

    @property
    def exposed_total(self) -> float:
        return 0.0 if self.exposed is None else float(np.sum(self.exposed))

    def low_traffic(self, extra_ms: float) -> tuple[LatencyCdf, ...]:
        """This distribution with the exposed requests extra_ms later, as a mixture."""
        if self.exposed is None or extra_ms <= 0:
            return (self,)
        later = tuple((share, shift + extra_ms) for share, shift in self.parts)
        return (LatencyCdf(self.step_ms, self.base - self.exposed, self.parts),
                LatencyCdf(self.step_ms, self.exposed, later))

    @property
    def total(self) -> float:
        return float(np.sum(self.base))

    @property
    def top_ms(self) -> float:
        return (self.base.size - 0.5) * self.step_ms + max(shift for _, shift in self.parts)

    def counts_below(self, latency_ms: np.ndarray) -> np.ndarray:
        """Expected requests with latency <= each value."""
        edges = (np.arange(-1, self.base.size) + 0.5) * self.step_ms
        edges[0] = 0.0
        cum = np.concatenate(([0.0], np.cumsum(self.base)))
        return sum(share * np.interp(latency_ms - shift, edges, cum, left=0.0)
                   for share, shift in self.parts)


_COARSE_POINTS = 256  # geometric probe points per decade span when locating a percentile
_FINE_POINTS = 65


def _quantile(cdfs: list[LatencyCdf], total: float, coarse: np.ndarray, share: np.ndarray,
              q: float) -> float:
    """The latency where the mixture's share of requests reaches q, refined within a bracket."""
    hi = int(min(np.searchsorted(share, q, side="left"), coarse.size - 1))
    lo = max(hi - 1, 0)
    fine = np.linspace(coarse[lo], coarse[hi], _FINE_POINTS)
    fine_share = sum(c.counts_below(fine) for c in cdfs) / total
    k = int(min(np.searchsorted(fine_share, q, side="left"), fine.size - 1))
    if k == 0 or fine_share[k] <= fine_share[k - 1]:
        return float(fine[k])
    frac = (q - fine_share[k - 1]) / (fine_share[k] - fine_share[k - 1])
    return float(fine[k - 1] + frac * (fine[k] - fine[k - 1]))


def tail_figures(cdfs: list[LatencyCdf], slo_ms: float,
                 low_traffic_extra_ms: float) -> dict[str, float]:
    """latency_figures, and the low-traffic figures of BufferMetrics (esm_rules.py): the share
    of exposed requests and the p99 if each waited low_traffic_extra_ms longer."""
    figures = latency_figures(cdfs, slo_ms)
    total = sum(c.total for c in cdfs)
    exposed = sum(c.exposed_total for c in cdfs)
    bound = figures["p99_ms"]
    if exposed > 0 and low_traffic_extra_ms > 0:
        later = [part for c in cdfs for part in c.low_traffic(low_traffic_extra_ms)]
        bound = latency_figures(later, slo_ms)["p99_ms"]
    return {**figures, "low_traffic_share": exposed / total if total > 0 else 0.0,
            "low_traffic_p99_bound_ms": bound}


def latency_figures(cdfs: list[LatencyCdf], slo_ms: float) -> dict[str, float]:
    """p50/p95/p99 and SLO attainment of the mixture of these distributions."""
    cdfs = [c for c in cdfs if c.total > 0]
    total = sum(c.total for c in cdfs)
    if total <= 0:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "slo_attainment": 1.0}
    low = min(c.step_ms for c in cdfs) / 2.0
    top = max(c.top_ms for c in cdfs)
    coarse = np.concatenate(([0.0], np.geomspace(low, max(top, 2.0 * low), _COARSE_POINTS)))
    share = np.maximum.accumulate(sum(c.counts_below(coarse) for c in cdfs) / total)
    p50, p95, p99 = (_quantile(cdfs, total, coarse, share, q) for q in (0.50, 0.95, 0.99))
    attained = float(sum(c.counts_below(np.array([slo_ms]))[0] for c in cdfs) / total)
    return {"p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "slo_attainment": min(attained, 1.0)}
