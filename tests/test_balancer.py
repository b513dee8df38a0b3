"""Token-aware balancing: the choice rule, and its effect on a hand-built batch stream."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.research.balancer import BalanceBy, InstanceLoad, pick_instance
from benchmarks.research.balancing import run_pool


def test_tokens_and_requests_disagree_on_heterogeneous_work():
    loads = [InstanceLoad(outstanding_requests=2, outstanding_tokens=2 * 256),
             InstanceLoad(outstanding_requests=16, outstanding_tokens=16 * 10)]
    assert pick_instance(loads, BalanceBy.REQUESTS) == 0
    assert pick_instance(loads, BalanceBy.TOKENS) == 1
    with pytest.raises(ValueError, match="none"):
        pick_instance([], BalanceBy.TOKENS)


def test_token_balancing_keeps_short_batches_off_the_busy_instance():
    # GIVEN two instances; a long batch (2 x 256 tokens, 1 s) then a burst of four batches of
    # short texts (16 x 10 tokens, 312.5 ms each), service time proportional to padded tokens
    ready = np.array([0.0, 0.01, 0.02, 0.03, 0.04])
    sizes = np.array([2, 16, 16, 16, 16])
    padded = np.array([256, 10, 10, 10, 10])
    service = sizes * padded * (1000.0 / 512)
    by_requests = run_pool(ready, sizes, padded, service, 2, BalanceBy.REQUESTS)
    by_tokens = run_pool(ready, sizes, padded, service, 2, BalanceBy.TOKENS)
    # THEN counting requests puts short batches behind the 1 s one (the long batch counts as
    # only 2 requests); counting tokens keeps them on the other instance until it holds more
    # work than the long batch, which lowers both the worst and the mean latency
    assert by_tokens.tolist() == pytest.approx([1000.0, 312.5, 615.0, 917.5, 1220.0])
    assert by_requests.tolist() == pytest.approx([1000.0, 312.5, 1292.5, 605.0, 1585.0])
    assert by_tokens.max() < by_requests.max() and by_tokens.mean() < by_requests.mean()
