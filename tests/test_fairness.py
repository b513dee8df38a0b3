"""Fairness measures and the rate limiter, on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.research.fairness import service_curves, token_bucket_admit


def test_token_bucket_admits_the_burst_then_the_rate():
    arrivals = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    admitted = token_bucket_admit(arrivals, ["a"] * 7, rate_per_s=2.0, burst=3.0)
    # 3 from the burst at t=0, then 2 tokens refilled by t=1
    assert admitted.tolist() == [True, True, True, False, True, True, False]


def test_token_bucket_is_per_tenant():
    arrivals = np.zeros(4)
    admitted = token_bucket_admit(arrivals, ["a", "a", "b", "b"], rate_per_s=1.0, burst=1.0)
    assert admitted.tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="0"):
        token_bucket_admit(arrivals, ["a"] * 4, rate_per_s=0.0, burst=1.0)


def test_service_curves_and_the_backlogged_gap():
    # GIVEN tenant a (3 requests of 10 tokens) and b (1 of 10), all arriving at 0;
    # a is served at t=1 and t=2, b at t=3, a's last at t=4
    arrivals = np.zeros(4)
    start = np.array([1.0, 2.0, 4.0, 3.0])
    lengths = np.array([10, 10, 10, 10])
    curves = service_curves(arrivals, start, lengths, ["a", "a", "a", "b"])
    assert curves.tenants == ("a", "b")
    assert curves.times_s.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert curves.served[:, 0].tolist() == [10, 20, 20, 30]
    assert curves.served[:, 1].tolist() == [0, 0, 10, 10]
    # b is backlogged until it starts at 3; both are backlogged at t=1,2,3
    assert curves.backlogged[:, 1].tolist() == [True, True, True, False]
    # while both waited, a got 20 tokens ahead before b was served
    assert curves.max_backlogged_gap() == 20
