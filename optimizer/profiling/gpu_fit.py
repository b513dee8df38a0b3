"""Fit the GPU form t(B, L) = max(launch, compute) + transfer to a measured grid.

The form is in optimizer/platform/latency_model.py (GpuLatencyModel). The max makes it
non-linear, so the fit is bounded least squares (scipy's trust-region reflective solver) on
relative error, started from a few deterministic guesses: the launch floor from the fastest
points, the compute and transfer terms from non-negative least squares on the points well
above it. The best of the starts wins. Pure: numbers in, a model out.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from optimizer.platform.latency_model import GPU_COEFFICIENTS, GpuLatencyModel, GridPoint, nnls

# Points slower than this multiple of the floor seed the compute terms (they are past the knee).
_KNEE_SEED_FACTOR = 1.5
_LAUNCH_SEED_QUANTILE = 25  # the floor's first guess: this percentile of the medians
_START_SCALES = (0.5, 1.0, 2.0)  # each start scales the seed's compute terms by one of these


def _predict(x: np.ndarray, b: np.ndarray, n: np.ndarray) -> np.ndarray:
    launch, per_token, per_token_sq, per_item_io, per_token_io = x
    tokens = b * n
    return (np.maximum(launch, per_token * tokens + per_token_sq * tokens * n)
            + per_item_io * b + per_token_io * tokens)


def _seed(b: np.ndarray, n: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A first guess: the floor from the fast points, compute from the slow ones."""
    launch = float(np.percentile(y, _LAUNCH_SEED_QUANTILE))
    slow = y > _KNEE_SEED_FACTOR * launch
    compute = np.zeros(2)
    if slow.sum() >= 2:
        tokens = b[slow] * n[slow]
        design = np.column_stack([tokens, tokens * n[slow]]) / y[slow, None]
        compute = nnls(design, np.ones(int(slow.sum())))
    return np.array([launch, compute[0], compute[1], 0.0, 0.0])


def fit_gpu_model(points: list[GridPoint], *, device: str, gpu_name: str, dtype: str,
                  estimate: str = "") -> GpuLatencyModel:
    """The GpuLatencyModel closest to the medians in relative error (coefficients >= 0)."""
    if len(points) < len(GPU_COEFFICIENTS):
        raise ValueError(f"need >= {len(GPU_COEFFICIENTS)} grid points to fit, "
                         f"got {len(points)}")
    b = np.array([p.batch for p in points], dtype=float)
    n = np.array([p.length for p in points], dtype=float)
    y = np.array([p.median_ms for p in points], dtype=float)
    seed = _seed(b, n, y)
    # Parameters span ten orders of magnitude (ms vs ms per B*L^2): scale each by the time it
    # adds at the grid's largest shape, so the solver steps see them alike.
    biggest = float(np.max(b * n))
    unit = np.array([1.0, 1.0 / biggest, 1.0 / (biggest * n.max()), 1.0 / b.max(),
                     1.0 / biggest]) * float(np.median(y))
    best = None
    for scale in _START_SCALES:
        start = seed * np.array([1.0, scale, scale, 1.0, 1.0])
        found = least_squares(lambda x: _predict(x, b, n) / y - 1.0, start,
                              bounds=(0.0, np.inf), x_scale=unit, method="trf",
                              xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=20000)
        if best is None or found.cost < best.cost:
            best = found
    # The solver stops a hair above the bound; a term worth 1e-9 of a typical time is zero.
    x = np.where(best.x < 1e-9 * unit, 0.0, best.x)
    values = {name: float(v) for name, v in zip(GPU_COEFFICIENTS, x, strict=True)}
    return GpuLatencyModel(device=device, gpu_name=gpu_name, dtype=dtype, estimate=estimate,
                           **values)
