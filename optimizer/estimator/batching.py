"""Size-or-timeout batch formation on a real trace, in expectation over request lengths.

Helper of optimizer/estimator/estimate.py (read its module docstring for the method and why). A
buffer
takes each arrival of the trace independently with probability p (lengths are i.i.d.), so the
only randomness is that thinning; every figure here is an exact expectation over it, given
the trace's arrival times:

- forward count K_i = #arrivals in (t_i, t_i + T] (arrivals win ties with the timer, as in the
  simulator's event loop);
- opener probability q_i = P(arrival i opens a batch | it is in the buffer). At most one batch
  is open at a time and a batch opened at j covers i iff t_i - t_j <= T and fewer than B - 1
  buffer arrivals fell in between, so
      q_i = 1 - p * sum_{d=1..K^-_i} q_{i-d} * P(Bin(d - 1, p) <= B - 2),
  a banded lower-triangular system solved by LAPACK's dtbtrs in O(n * band);
- batch size of an opener: min(B, 1 + Bin(K_i, p)); expected batches = p * sum_i q_i;
- waits: the opener of a batch that times out waits T, and its members are a uniform subset
  of the K_i candidate arrivals, so a member waits T - (t_{i+d} - t_i) for a uniform d; a
  batch that fills closes at the (B-1)-th buffer arrival, tau = t_{i+d} - t_i with probability
  p * P(Bin(d - 1, p) = B - 2); its opener waits tau, the filler 0, the B - 2 between are
  taken as uniform on (0, tau).
Approximations, all in the wait histograms: the members' offsets come from a Palm sample of
openers (reweighted per forward-count group to the whole trace's opener mass), their profile is
shared within a count group (each K up to 16, then 25% bands), and the uniform (0, tau) above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg.lapack import dtbtrs

from optimizer.estimator.latency import spread_into

NEGLIGIBLE = 1e-12  # probabilities below this are dropped from bands and tables
SOLVE_BLOCK_ELEMENTS = 1 << 22  # banded-matrix entries per block of the opener solve (32 MB)


def forward_counts(arrivals_s: np.ndarray, timeout_s: float) -> np.ndarray:
    """K_i: arrivals in (t_i, t_i + timeout_s] after each arrival i."""
    ends = np.searchsorted(arrivals_s, arrivals_s + timeout_s, side="right")
    return (ends - np.arange(arrivals_s.size) - 1).astype(np.int64)


def binomial_table(n_max: int, k_max: int, p: float) -> np.ndarray:
    """P(Bin(n, p) = k) for n = 0..n_max (rows), k = 0..k_max (columns), by Pascal's rule."""
    table = np.zeros((n_max + 1, k_max + 1))
    row = np.zeros(k_max + 1)
    row[0] = 1.0
    table[0] = row
    for n in range(1, n_max + 1):
        shifted = np.concatenate(([0.0], row[:-1]))
        row = (1.0 - p) * row + p * shifted
        table[n] = row
    return table


@dataclass(frozen=True)
class BatchFormation:
    """One buffer's batches: who opens them, their sizes and the band used to get there."""

    p: float
    max_batch: int
    counts: np.ndarray  # K_i per arrival
    openers: np.ndarray  # q_i per arrival
    band: int  # D: the largest d with P(Bin(d - 1, p) <= B - 2) > NEGLIGIBLE, capped by max K
    table: np.ndarray  # binomial_table(band + 1, B - 1, p)

    @property
    def batches(self) -> float:
        """Expected number of batches (= invocations)."""
        return float(self.p * np.sum(self.openers))

    def timeout_probability(self) -> np.ndarray:
        """P(the batch arrival i opens closes at its timeout) = P(Bin(K_i, p) <= B - 2)."""
        if self.max_batch == 1:
            return np.zeros(self.counts.size)
        below = self.table[:, : self.max_batch - 1].sum(axis=1)
        return np.clip(np.where(self.counts < below.size,
                                below[np.minimum(self.counts, below.size - 1)], 0.0), 0.0, 1.0)

    def size_given_count(self) -> np.ndarray:
        """P(size = s | the opener's K), rows K = 0..band+1 (the last row: K > band as well),
        columns s = 0..B."""
        big = self.max_batch
        by_count = np.zeros((self.table.shape[0], big + 1))
        if big == 1:
            by_count[:, 1] = 1.0
        else:
            by_count[:, 1:big] = self.table[:, : big - 1]
            by_count[:, big] = np.maximum(1.0 - by_count[:, 1:big].sum(axis=1), 0.0)
        return by_count

    def size_weights(self) -> np.ndarray:
        """Expected batches of each size s = 0..B (index 0 unused), per unit p."""
        big = self.max_batch
        out = np.zeros(big + 1)
        if big == 1:
            out[1] = float(np.sum(self.openers))
            return out
        capped = np.minimum(self.counts, self.band + 1)
        by_count = np.bincount(capped, weights=self.openers, minlength=self.band + 2)
        pmf = self.table[: by_count.size, : big - 1]  # P(Bin(K, p) = s - 1), s = 1..B-1
        out[1:big] = np.einsum("k,ks->s", by_count, pmf)
        out[big] = float(np.sum(by_count)) - float(np.sum(out[1:big]))
        return np.maximum(out, 0.0)


def _closing_probabilities(p: float, max_batch: int, band: int, table: np.ndarray) -> np.ndarray:
    """c_{d-1} = P(Bin(d - 1, p) <= B - 2) for d = 1..band."""
    return table[:band, : max_batch - 1].sum(axis=1)


def _band(counts: np.ndarray, p: float, max_batch: int) -> tuple[int, np.ndarray]:
    """The band D and its binomial table, D = min(max K, where the binomial cdf vanishes)."""
    k_max = int(counts.max()) if counts.size else 0
    if max_batch == 1 or k_max == 0:
        return 0, binomial_table(1, max(max_batch - 1, 0), p)
    # arrivals needed for B - 1 buffer arrivals: negative binomial, mean + 12 sd is ample
    mean_needed = (max_batch - 1) / max(p, NEGLIGIBLE)
    sd_needed = np.sqrt((max_batch - 1) * (1.0 - p)) / max(p, NEGLIGIBLE)
    limit = int(min(k_max, mean_needed + 12.0 * sd_needed + 16))
    table = binomial_table(limit + 1, max_batch - 1, p)
    closing = _closing_probabilities(p, max_batch, limit, table)
    alive = np.nonzero(closing > NEGLIGIBLE)[0]
    band = int(alive[-1]) + 1 if alive.size else 0
    return band, table[: band + 2]


def batch_formation(counts: np.ndarray, p: float, max_batch: int) -> BatchFormation:
    """Opener probabilities by the banded triangular solve (see the module docstring).

    A batch never holds more than 1 + max K requests, so a larger max_batch acts as
    max K + 2 (never reached); the tables stay that small.
    """
    if max_batch > 1 and counts.size:
        max_batch = min(max_batch, int(counts.max()) + 2)
    band, table = _band(counts, p, max_batch)
    n = counts.size
    if band == 0 or n == 0:
        return BatchFormation(p, max_batch, counts, np.ones(n), 0, table)
    closing = _closing_probabilities(p, max_batch, band, table)
    openers = _solve_openers(counts, p * closing, band)
    return BatchFormation(p, max_batch, counts, np.clip(openers, 0.0, 1.0), band, table)


def _solve_openers(counts: np.ndarray, weight: np.ndarray, band: int) -> np.ndarray:
    """Solve A q = 1, A[j + d, j] = weight[d - 1] if d <= K_j (1 <= d <= band), A unit lower.

    Column blocks of at most SOLVE_BLOCK_ELEMENTS keep memory bounded for long windows; the
    arrivals before a block enter its right-hand side.
    """
    n = counts.size
    block = max(band, SOLVE_BLOCK_ELEMENTS // (band + 1))
    q = np.empty(n)
    d = np.arange(1, band + 1)[None, :]
    for start in range(0, n, block):
        stop = min(n, start + block)
        # LAPACK's lower banded storage, ab[d, j] = A[j + d, j], built transposed so that
        # ab = lower.T is already in Fortran order (no copy on the way in: 3x faster)
        lower = np.empty((stop - start, band + 1))
        lower[:, 0] = 1.0
        np.less_equal(d, counts[start:stop, None], out=lower[:, 1:], casting="unsafe")
        lower[:, 1:] *= weight[None, :]
        rhs = np.ones((stop - start, 1))
        if start:
            rhs[: min(band, stop - start), 0] -= _carried(counts, weight, band, q, start,
                                                          stop)
        solution, info = dtbtrs(lower.T, rhs, uplo="L")
        if info != 0:
            raise RuntimeError(f"banded opener solve failed, LAPACK info={info}")
        q[start:stop] = solution[:, 0]
    return q


def _carried(counts: np.ndarray, weight: np.ndarray, band: int, q: np.ndarray, start: int,
             stop: int) -> np.ndarray:
    """sum_{j < start} A[i, j] q_j for the first rows i = start + t of a block."""
    rows = min(band, stop - start)
    back = min(band, start)
    j = start - 1 - np.arange(back)  # earlier arrivals, nearest first: d = i - j = t + u + 1
    padded = np.concatenate((weight, np.zeros(rows + back)))
    toeplitz = np.lib.stride_tricks.sliding_window_view(padded, back)[:rows]  # weight[t + u]
    reach = counts[j] - np.arange(back) - 1  # d <= K_j  <=>  t <= K_j - u - 1
    inside = np.arange(rows)[:, None] <= reach[None, :]
    return np.einsum("tu,tu,u->t", toeplitz, inside, q[j])


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
