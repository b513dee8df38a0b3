"""The load generator's summary math (pure) on hand-checkable samples."""

from __future__ import annotations

import asyncio

import pytest

from infra.client.loadgen import Sample, run_load, summarize


def test_summary_counts_statuses_and_subtracts_the_batching_wait():
    samples = [
        Sample(0.0, 12.0, 200, queue_wait_ms=8.0, inference_ms=1.0),  # overhead 3 ms
        Sample(0.1, 20.0, 200, queue_wait_ms=10.0, inference_ms=5.0),  # overhead 5 ms
        Sample(0.2, 1.0, 429),
        Sample(0.3, 30000.0, 0),
    ]
    summary = summarize(samples, offered_rps=10.0, duration_s=0.4, saturated=1)
    assert summary.statuses == {"0": 1, "200": 2, "429": 1}
    assert summary.sent == 4 and summary.client_saturated == 1
    assert summary.overhead_p50_ms == pytest.approx(4.0)
    assert summary.latency_p50_ms == pytest.approx(16.0)
    # two answers, the last one back at 0.1 s + 20 ms
    assert summary.achieved_ok_rps == pytest.approx(2 / 0.12, rel=1e-3)


def test_summary_of_no_answers_has_no_latency():
    summary = summarize([Sample(0.0, 5.0, 503)], offered_rps=1.0, duration_s=1.0, saturated=0)
    assert summary.latency_p99_ms is None and summary.achieved_ok_rps == 0.0


def test_run_load_refuses_a_zero_rate():
    with pytest.raises(ValueError, match="rate_rps"):
        asyncio.run(run_load("http://127.0.0.1:9/v1/embeddings", ["x"], 0.0, 1.0))


def test_run_load_records_connection_errors_when_nothing_listens():
    # port 9 (discard) on loopback: nothing listens in the test sandbox, so every send fails fast
    summary = asyncio.run(run_load("http://127.0.0.1:9/v1/embeddings", ["x"], 50.0, 0.1,
                                   timeout_s=2.0))
    assert summary.sent == 5 and summary.statuses == {"0": 5}
