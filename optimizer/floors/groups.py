"""Every legal group of a trace, searched exhaustively: the certificate behind the bound. Pure.

A group is a set of requests that one batch could serve within the SLO: b requests, padded to
their longest length L, at a memory m, whose arrivals span at most S - t(b, L, m) (bound.py
says why). Given a weight y_i per request, `GroupOracle.check` finds, for every request, the
largest ratio sum(y) / cost over the legal groups it starts, and the groups whose weights sum
to more than their cost.

Why the search is exhaustive though it never lists the groups: take any legal group G with
longest length L, size b, memory m, earliest member p. All of G arrives in [a_p, a_p + W]
with W = S - t(b, L, m), among the requests of length <= L; the b largest weights in that
window sum to at least G's, and the window holds a request of length exactly L. So ranking,
for every length level L, every (b, m) and every start p whose window holds a request of
length L, the top-b weights of the window against C(b, L, m) covers G. Windows are skipped
only where another one covers them at no more cost: one whose end equals the window of the
start before it (a subset), and, among the memories giving one window and size, all but the
cheapest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from optimizer.floors.tables import BatchTable

SPAN_TOLERANCE_S = 1e-9  # windows are this much wider than W: more groups, a safer check
CHUNK_VALUES = 400_000  # weights ranked at once (a chunk's window sizes add up to about this)


@dataclass(frozen=True, eq=False)
class _Level:
    """The windows of one length level and the (size, cost) rows checked on each.

    Window w covers sub[start[w]:end[w]]; row r checks the top size[r] weights of window
    window[r] against cost[r]. Windows are sorted by width, so chunks rank alike widths.
    """

    sub: np.ndarray  # request indices of length <= the level, in arrival order
    start: np.ndarray
    end: np.ndarray
    window: np.ndarray
    size: np.ndarray
    cost: np.ndarray
    first: np.ndarray  # per row: the request its window starts at

@dataclass(frozen=True)
class Check:
    """What one exhaustive check found."""

    ratio_at: np.ndarray  # per request: max sum(y)/cost over windows starting at it
    groups: tuple[tuple[int, ...], ...]  # violated groups (sum(y) > cost x (1 + tolerance))
    group_ratios: tuple[float, ...]  # their sum(y) / cost

    @property
    def max_ratio(self) -> float:
        """Max over legal groups of sum(y) / cost (exact where above the check's threshold)."""
        return float(self.ratio_at.max(initial=0.0))


def _level_rows(arrivals: np.ndarray, level_of: np.ndarray, block: np.ndarray, level: int,
                table: BatchTable, cost: np.ndarray, slo_ms: float) -> _Level | None:
    sub = np.flatnonzero(level_of <= level)
    times = arrivals[sub]
    blocks = block[sub]
    limit = np.searchsorted(blocks, blocks, side="right")  # a window ends with its block
    anchors = np.concatenate(([0], np.cumsum(level_of[sub] == level)))
    width_s = (slo_ms - table.service_ms[:, :, level]) / 1000.0  # [memory, b - 1]
    mem, b0 = np.nonzero(width_s >= 0)
    if mem.size == 0:
        return None
    widths = width_s[mem, b0] + SPAN_TOLERANCE_S
    widest = np.minimum(np.searchsorted(times, times + widths.max(), side="right"), limit)
    starts = np.flatnonzero(anchors[widest] - anchors[:sub.size] > 0)
    ends = np.minimum(np.searchsorted(times, times[starts][:, None] + widths[None, :],
                                      side="right"), limit[starts][:, None])
    keep = (ends - starts[:, None] >= (b0 + 1)[None, :]) & \
        (anchors[ends] - anchors[starts][:, None] > 0)
    # a window whose end equals the previous start's holds a subset of that window
    keep[1:] &= ~((ends[1:] == ends[:-1]) & (starts[1:] == starts[:-1] + 1)[:, None])
    row, pair = np.nonzero(keep)
    if row.size == 0:
        return None
    start, end, size = starts[row], ends[row, pair], (b0 + 1)[pair]
    price = cost[mem[pair], b0[pair], level]
    # one window and size at several memories: keep the cheapest (its check is the strictest)
    order = np.lexsort((price, end, size, start))
    start, end, size, price = start[order], end[order], size[order], price[order]
    fresh = np.ones(start.size, bool)
    fresh[1:] = (start[1:] != start[:-1]) | (size[1:] != size[:-1]) | (end[1:] != end[:-1])
    start, end, size, price = start[fresh], end[fresh], size[fresh], price[fresh]
    windows, window = np.unique(np.stack([end - start, start, end]), axis=1,
                                return_inverse=True)
    return _Level(sub, windows[1], windows[2], window.ravel(), size, price, sub[start])


class GroupOracle:
    """The legal groups of one trace under one cost array [memory, b - 1, level].

    block (optional, non-decreasing block ids per request): only groups inside one block.
    """

    def __init__(self, arrivals: np.ndarray, level_of: np.ndarray, table: BatchTable,
                 cost: np.ndarray, slo_ms: float, block: np.ndarray | None = None) -> None:
        self.arrivals = np.asarray(arrivals, dtype=np.float64)
        self.level_of = np.asarray(level_of, dtype=np.int64)
        self.table = table
        self.cost = cost
        self.slo_ms = slo_ms
        block = np.zeros(self.arrivals.size, np.int64) if block is None else \
            np.asarray(block, dtype=np.int64)
        if np.any(np.diff(block) < 0):
            raise ValueError("block ids must not decrease along the arrivals")
        rows = (_level_rows(self.arrivals, self.level_of, block, level, table, cost, slo_ms)
                for level in range(table.levels.size))
        self.levels = [r for r in rows if r is not None]

    @property
    def windows(self) -> int:
        return sum(level.start.size for level in self.levels)

    def group_costs(self, groups: list[tuple[int, ...]]) -> np.ndarray:
        """Each group's cost at its cheapest legal memory (inf where it is legal at none)."""
        if not groups:
            return np.zeros(0)
        sizes = np.fromiter((len(g) for g in groups), np.int64, len(groups))
        members = np.fromiter((i for g in groups for i in g), np.int64, int(sizes.sum()))
        offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        level = np.maximum.reduceat(self.level_of[members], offsets)
        times = self.arrivals[members]
        span_ms = (np.maximum.reduceat(times, offsets)
                   - np.minimum.reduceat(times, offsets)) * 1000.0
        fits = sizes <= self.table.max_batch
        size0 = np.minimum(sizes, self.table.max_batch) - 1
        legal = (span_ms[None, :] + self.table.service_ms[:, size0, level]
                 <= self.slo_ms + 1e-6) & fits[None, :]
        return np.where(legal, self.cost[:, size0, level], np.inf).min(axis=0)

    def check(self, y: np.ndarray, tolerance: float = 1e-9, threshold: float = 1.0,
              collect: bool = False, active: np.ndarray | None = None) -> Check:
        """Ratios sum(y)/cost over every legal group and, with `collect`, violated groups: per
        starting request, length level and size class, the most violated window's top group
        (columns for column generation).

        Windows whose whole weight is at most threshold x cost are not ranked: their groups are
        within the threshold, and the window's whole weight over cost stands for them (an upper
        bound). active (a mask over requests) limits the search to windows starting at active
        requests; ratio_at is 0 elsewhere.
        """
        y = np.asarray(y, dtype=np.float64)
        ratio_at = np.zeros(y.size)
        found: dict[tuple[int, int], tuple[float, tuple[int, ...]]] = {}
        for level in self.levels:
            rows = np.arange(level.size.size) if active is None else \
                np.flatnonzero(active[level.first])
            if rows.size == 0:
                continue
            weights = y[level.sub]
            cumulative = np.concatenate(([0.0], np.cumsum(weights)))
            window = level.window[rows]
            start, end = level.start[window], level.end[window]
            ratio = (cumulative[end] - cumulative[start]) / level.cost[rows]
            ranked = np.flatnonzero((end - start > level.size[rows]) & (ratio > threshold))
            if ranked.size:
                self._rank(level, rows, weights, ratio, ranked,
                           tolerance if collect else np.inf, found)
            if collect:
                whole = np.flatnonzero(end - start == level.size[rows])
                whole = whole[_best_per_first(level.first[rows[whole]], ratio[whole],
                                              tolerance)]
                for k in whole:
                    self._keep(found, level, rows[k], ratio[k], np.arange(start[k], end[k]))
            np.maximum.at(ratio_at, level.first[rows], ratio)
        return Check(ratio_at, tuple(g for _, g in found.values()),
                     tuple(r for r, _ in found.values()))

    @staticmethod
    def _rank(level: _Level, rows: np.ndarray, weights: np.ndarray, ratio: np.ndarray,
              ranked: np.ndarray, tolerance: float,
              found: dict[tuple[int, int], tuple[float, tuple[int, ...]]]) -> None:
        """Top-b weights for rows[ranked], one sort per window, into ratio[ranked]; keeps the
        most violated group per starting request when tolerance is finite."""
        windows, local = np.unique(level.window[rows[ranked]], return_inverse=True)
        spans = level.end[windows] - level.start[windows]  # ascending: windows sort by width
        for chunk in _chunks(spans):
            start = level.start[windows[chunk]]
            span = spans[chunk]
            offsets = np.arange(int(span.max()))
            index = np.minimum(start[:, None] + offsets[None, :], weights.size - 1)
            values = np.where(offsets[None, :] < span[:, None], weights[index], -np.inf)
            mine = np.flatnonzero((local >= chunk[0]) & (local <= chunk[-1]))
            most = int(level.size[rows[ranked[mine]]].max())
            if most < offsets.size:  # only the top `most` weights matter: select, then sort
                part = np.argpartition(-values, most - 1, axis=1)[:, :most]
                order = np.take_along_axis(
                    part, np.argsort(-np.take_along_axis(values, part, axis=1), axis=1), axis=1)
            else:
                order = np.argsort(-values, axis=1)
            ranked_values = np.take_along_axis(values, order, axis=1)
            ranked_values[~np.isfinite(ranked_values)] = 0.0
            top = np.cumsum(ranked_values, axis=1)
            at = local[mine] - chunk[0]
            picked = ranked[mine]
            size = level.size[rows[picked]]
            ratio[picked] = top[at, size - 1] / level.cost[rows[picked]]
            if math.isfinite(tolerance):
                for k in _best_per_first(level.first[rows[picked]], ratio[picked], tolerance):
                    members = index[at[k], order[at[k], :size[k]]]
                    GroupOracle._keep(found, level, rows[picked[k]], ratio[picked[k]],
                                      members)

    @staticmethod
    def _keep(found: dict[tuple[int, int], tuple[float, tuple[int, ...]]], level: _Level,
              row: int, ratio: float, members: np.ndarray) -> None:
        """Keep, per starting request and size, the most violated group seen so far."""
        key = (int(level.first[row]), int(level.size[row]))
        if key not in found or found[key][0] < ratio:
            found[key] = (float(ratio), tuple(sorted(level.sub[members].tolist())))


def _chunks(spans: np.ndarray) -> list[np.ndarray]:
    """Consecutive index runs over windows sorted by width, each about CHUNK_VALUES values."""
    bounds = np.searchsorted(np.cumsum(spans), np.arange(CHUNK_VALUES, int(spans.sum()),
                                                         CHUNK_VALUES))
    return [c for c in np.split(np.arange(spans.size), np.unique(bounds)) if c.size]


def _best_per_first(first: np.ndarray, ratio: np.ndarray, tolerance: float) -> np.ndarray:
    """Positions of the most violated window per starting request (ratio > 1 + tolerance)."""
    violated = np.flatnonzero(ratio > 1.0 + tolerance)
    if violated.size == 0:
        return violated
    order = violated[np.lexsort((-ratio[violated], first[violated]))]
    keep = np.ones(order.size, bool)
    keep[1:] = first[order[1:]] != first[order[:-1]]
    return order[keep]
