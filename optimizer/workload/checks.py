"""Validation of (arrivals, lengths) inputs shared by the simulator and the estimator."""

from __future__ import annotations

import numpy as np


def check_arrivals_and_lengths(arrivals: np.ndarray, lens: np.ndarray, max_length: int) -> None:
    """1-D, equal sizes, finite sorted arrivals, lengths in 1..max_length; errors name values."""
    if arrivals.ndim != 1 or arrivals.shape != lens.shape:
        raise ValueError(f"arrivals_s and lengths must be 1-D of one size, got "
                         f"{arrivals.shape} and {lens.shape}")
    if arrivals.size and not np.all(np.isfinite(arrivals)):
        raise ValueError("arrivals_s must be finite")
    if np.any(np.diff(arrivals) < 0):
        bad = int(np.argmax(np.diff(arrivals) < 0)) + 1
        raise ValueError(f"arrivals_s must be sorted, got {arrivals[bad]} after "
                         f"{arrivals[bad - 1]}")
    outside = (lens < 1) | (lens > max_length)
    if np.any(outside):
        raise ValueError(f"lengths must be in 1..{max_length}, got {lens[outside][0]}")
