"""The replay report's arithmetic on hand-built outcomes."""

from __future__ import annotations

import pytest

from infra.client.replay_report import (
    DONE,
    FAILED,
    PENDING,
    REJECTED,
    Outcome,
    format_report,
    summarize,
)


def _done(sent: int, done: int, buffer: str, batch: str, size: int, padded: int, real: int,
          infer_ms: float = 10.0) -> Outcome:
    return Outcome(sent_at_ms=sent, http_status=202, state=DONE, request_id=f"r{sent}",
                   buffer=buffer, length=1, batch_id=batch, batch_size=size,
                   padded_length=padded, batch_real_tokens=real, completed_at_ms=done,
                   inference_ms=infer_ms)


def test_counts_latency_padding_and_batches():
    # GIVEN two short requests batched together (lengths 3 and 5 -> padded 2 x 5 = 10, real 8),
    # one long request alone (padded 100 = real 100), one failed, one never finished, one 429.
    outcomes = [
        _done(0, 100, "short", "b1", 2, 5, 8),
        _done(10, 100, "short", "b1", 2, 5, 8),
        _done(20, 420, "long", "b2", 1, 100, 100, infer_ms=50.0),
        Outcome(sent_at_ms=30, http_status=202, state=FAILED, request_id="f"),
        Outcome(sent_at_ms=40, http_status=202, state=PENDING, request_id="p"),
        Outcome(sent_at_ms=50, http_status=429, state=REJECTED),
    ]
    report = summarize(outcomes, wall_s=1.0)
    assert report["requests"] == {"sent": 6, "accepted": 5, "done": 3, "failed": 1, "lost": 1,
                                  "rejected_by_status": {429: 1}}
    assert report["latency_ms"]["max"] == 400
    assert report["latency_ms"]["p50"] == 100  # latencies 100, 90, 400
    assert report["totals"]["batches"] == 2
    assert report["totals"]["padded_tokens"] == 110
    assert report["totals"]["real_tokens"] == 108
    assert report["padding_overhead"] == pytest.approx(110 / 108 - 1)
    assert report["buffers"]["short"]["batch_sizes"] == {2: 1}
    assert report["buffers"]["short"]["padding_overhead"] == pytest.approx(10 / 8 - 1)
    assert report["buffers"]["long"]["mean_inference_ms"] == 50.0
    assert report["throughput_rps"] == pytest.approx(3 / 0.42)  # 3 done over 0..420 ms
    text = format_report(report)
    assert "lost 1" in text and "short" in text and "long" in text


def test_nothing_done_reports_no_latency():
    report = summarize([Outcome(sent_at_ms=0, http_status=0, state=REJECTED)], wall_s=0.5)
    assert report["requests"]["done"] == 0
    assert report["latency_ms"]["p99"] is None
    assert report["throughput_rps"] is None
    assert "-" in format_report(report)
