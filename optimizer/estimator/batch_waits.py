"""How long a buffer's requests wait for their batch to close, by batch size, in expectation.

Helper of optimizer/estimator/estimate.py, on the batch formation of
optimizer/estimator/batching.py (opener probabilities q_i, forward counts K_i, thinning p):
- a batch that times out: its opener waits T, and its members are a uniform subset of the K_i
  candidate arrivals, so a member waits T - (t_{i+d} - t_i) for a uniform d;
- a batch that fills closes at the (B-1)-th buffer arrival, tau = t_{i+d} - t_i with
  probability p * P(Bin(d - 1, p) = B - 2); its opener waits tau, the filler 0, the B - 2
  between are taken as uniform on (0, tau).
Approximations: the members' offsets come from a Palm sample of openers (reweighted per
forward-count group to the whole trace's opener mass), their profile is shared within a count
group (each K up to 16, then 25% bands), and the uniform (0, tau) above.
"""

from __future__ import annotations

import numpy as np

from optimizer.estimator.batching import BatchFormation
from optimizer.estimator.latency import spread_into


def pair_offsets(arrivals_s: np.ndarray, counts: np.ndarray, band: int,
                 rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (i, d) with i in `rows`, 1 <= d <= min(K_i, band), and t_{i+d} - t_i (s)."""
    reach = np.minimum(counts[rows], band)
    first = np.repeat(rows, reach)
    starts = np.cumsum(reach) - reach
    step = np.arange(first.size) - np.repeat(starts, reach) + 1
    return first, step, arrivals_s[first + step] - arrivals_s[first]


Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]  # (i, d, t_{i+d} - t_i) from pair_offsets


def wait_histograms(form: BatchFormation, pairs: Pairs, sample: np.ndarray, timeout_s: float,
                    step_s: float, bins: int) -> np.ndarray:
    """Expected requests by batch size (rows 0..B) and wait (columns, `step_s` apart), per unit p.

    Openers' atoms and the size split use every arrival; members' offsets and fill times come
    from `pairs` over the Palm sample `sample`, each opener reweighted so that the sample's
    opener mass per forward-count group matches the whole trace's. Waits are placed on the grid
    by splitting each mass between its two nearest points.
    """
    big = form.max_batch
    out = np.zeros((big + 1, bins))
    if big == 1:
        out[1, 0] = float(np.sum(form.openers))
        return out
    first = pairs[0]
    weight = form.openers[first] * _sample_ratio(form, sample)[_count_group(form.counts[first])]
    _timeout_rows(form, pairs, weight, timeout_s, step_s, out)
    _full_row(form, pairs, weight, step_s, out)
    return out


def _count_group(counts: np.ndarray) -> np.ndarray:
    """Groups of forward counts: each count up to 16, then bands 25% wide."""
    k = np.arange(int(counts.max(initial=0)) + 1)
    bands = 16 + np.floor(np.log(np.maximum(k, 16) / 16.0) / np.log(1.25))
    return np.where(k <= 16, k, bands).astype(np.int64)[counts]


def _sample_ratio(form: BatchFormation, sample: np.ndarray) -> np.ndarray:
    """Per count group: the whole trace's opener mass over the Palm sample's."""
    groups = _count_group(form.counts)
    whole = np.bincount(groups, weights=form.openers)
    part = np.bincount(groups[sample], weights=form.openers[sample], minlength=whole.size)
    return np.divide(whole, part, out=np.zeros_like(whole), where=part > 0)


def _timeout_rows(form: BatchFormation, pairs: Pairs, opener_weight: np.ndarray,
                  timeout_s: float, step_s: float, out: np.ndarray) -> None:
    """Batches that close at the timeout: the opener waits T, each member T - its offset."""
    big, bins = form.max_batch, out.shape[1]
    size_pmf = form.table[:, : big - 1]  # P(Bin(K, p) = s - 1), s = 1..B-1, K = 0..band+1
    usable = form.counts <= form.band
    weight = np.where(usable, form.openers, 0.0)
    by_count = np.bincount(form.counts[usable], weights=weight[usable],
                           minlength=size_pmf.shape[0])[: size_pmf.shape[0]]
    openers_by_size = np.einsum("k,ks->s", by_count, size_pmf)  # index s - 1
    _spread(out[1:big], timeout_s / step_s, openers_by_size)
    first, step, offset_s = pairs
    keep = usable[first]
    if not np.any(keep):
        return
    # Members' waits, by the opener's count group G (each K up to 16, then 25% bands):
    # sum_K P(Bin(K, p) = s - 1) * mass_K * profile_G(K), the profile normalised per group.
    cols = min(bins, int(np.ceil(timeout_s / step_s)) + 2)  # waits are <= T
    group_of_k = _count_group(np.arange(size_pmf.shape[0]))
    starts = np.nonzero(np.diff(group_of_k, prepend=-1))[0]
    mass = np.add.reduceat(by_count[:, None] * size_pmf, starts, axis=0)  # (groups, s - 1)
    member_k = form.counts[first[keep]]
    profile = np.zeros((starts.size, cols))
    rank = np.searchsorted(group_of_k[starts], _count_group(member_k))
    spread_into(profile, rank, (timeout_s - offset_s[keep]) / step_s,
                opener_weight[keep] / member_k)
    total = profile.sum(axis=1, keepdims=True)
    uniform = np.full((1, cols), 1.0 / cols)  # a group the sample missed: offsets uniform
    profile = np.where(total > 0, profile / np.where(total > 0, total, 1.0), uniform)
    # einsum, not BLAS: a threaded gemm this small only loses time on a busy 2-core machine
    members = np.einsum("gs,gw->sw", mass, profile)
    out[1:big, :cols] += (np.arange(1, big)[:, None] - 1.0) * members


def _full_row(form: BatchFormation, pairs: Pairs, opener_weight: np.ndarray, step_s: float,
              out: np.ndarray) -> None:
    """Batches that fill: the opener waits tau, the filler 0, the B - 2 between U(0, tau)."""
    big, bins = form.max_batch, out.shape[1]
    _, step, offset_s = pairs
    fill = form.p * form.table[: form.band + 1, big - 2]  # p * P(Bin(d - 1, p) = B - 2)
    weight = opener_weight * fill[step - 1]
    close = np.zeros(bins)
    _spread(close[None, :], offset_s / step_s, weight)
    out[big] += close
    out[big, 0] += float(np.sum(weight))
    if big > 2:
        # U(0, g*step) on the grid: 1/g at points 1..g-1, 1/(2g) at 0 and at g
        density = close / np.maximum(np.arange(bins), 1)
        density[0] = 0.0
        above = np.cumsum(density[::-1])[::-1] - density  # sum over g > j
        uniform = above + 0.5 * density
        uniform[0] = 0.5 * above[0] + close[0]
        out[big] += (big - 2) * uniform


def _spread(rows: np.ndarray, position: np.ndarray | float, weight: np.ndarray) -> None:
    """Add `weight` (per row, or per item into a single row) at fractional grid positions."""
    bins = rows.shape[1]
    pos = np.clip(np.asarray(position, dtype=np.float64), 0.0, bins - 1.0)
    low = np.floor(pos).astype(np.int64)
    frac = pos - low
    high = np.minimum(low + 1, bins - 1)
    if pos.ndim == 0:
        rows[:, low] += weight * (1.0 - frac)
        rows[:, high] += weight * frac
        return
    rows[0] += np.bincount(low, weights=weight * (1.0 - frac), minlength=bins)[:bins]
    rows[0] += np.bincount(high, weights=weight * frac, minlength=bins)[:bins]
