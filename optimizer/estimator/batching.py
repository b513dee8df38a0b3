"""Size-or-timeout batch formation on a real trace, in expectation over request lengths.

Helper of optimizer/estimator/estimate.py (read its module docstring for the method and why). A
buffer takes each arrival of the trace independently with probability p (lengths are i.i.d.),
so the only randomness is that thinning; every figure here is an exact expectation over it,
given the trace's arrival times:

- forward count K_i = #arrivals in (t_i, t_i + T] (arrivals win ties with the timer, as in the
  simulator's event loop);
- opener probability q_i = P(arrival i opens a batch | it is in the buffer). At most one batch
  is open at a time and a batch opened at j covers i iff t_i - t_j <= T and fewer than B - 1
  buffer arrivals fell in between, so
      q_i = 1 - p * sum_{d=1..K^-_i} q_{i-d} * P(Bin(d - 1, p) <= B - 2),
  a banded lower-triangular system solved by LAPACK's dtbtrs in O(n * band);
- batch size of an opener: min(B, 1 + Bin(K_i, p)); expected batches = p * sum_i q_i.
How long the requests wait for their batch to close is optimizer/estimator/batch_waits.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg.lapack import dtbtrs

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
