"""Token lengths of a workload's texts, as the model's own tokenizer counts them."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from functions.shared.tokenizer import count_tokens
from optimizer.workload.workloads import Workload


@lru_cache(maxsize=65_536)  # a corpus holds ~10-20k distinct texts; workloads redraw them
def _length(text: str) -> int:
    return count_tokens(text).length


def token_lengths(workload: Workload) -> np.ndarray:
    """One token length per request (capped at the model's 256, as ingest routes them)."""
    return np.fromiter((_length(t) for t in workload.texts), dtype=np.int64,
                       count=workload.count)
