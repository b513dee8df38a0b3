"""Pure parts of reliability: the conservation audit's arithmetic and poison bisection."""

from __future__ import annotations

import pytest

from functions import infer
from functions.infer import InferItem, run_isolating
from functions.shared.model import ModelLoadError
from infra.client.audit import reconcile


def _item(status: str, at_ms: int) -> dict:
    return {"id": f"{status}{at_ms}", "status": status, "enqueued_at_ms": at_ms}


def test_audit_counts_and_accepts_pending_that_still_has_a_message():
    items = [_item("DONE", 100), _item("FAILED", 200), _item("PENDING", 300),
             _item("PENDING", 9_000)]
    report = reconcile(items, since_ms=0, now_ms=10_000, grace_ms=5_000,
                       messages_in_queues=1, messages_in_dlqs=0)
    assert (report.accepted, report.done, report.failed, report.pending) == (4, 1, 1, 2)
    assert report.stale_pending == 1 and report.unaccounted == 0 and report.ok


def test_audit_flags_stale_pending_with_no_message_anywhere():
    items = [_item("PENDING", 0), _item("PENDING", 1)]
    report = reconcile(items, since_ms=0, now_ms=10_000, grace_ms=1_000,
                       messages_in_queues=0, messages_in_dlqs=1)
    assert report.unaccounted == 1 and not report.ok


def test_audit_window_excludes_older_requests():
    report = reconcile([_item("PENDING", 0), _item("DONE", 5_000)], since_ms=1_000,
                       now_ms=10_000, grace_ms=0, messages_in_queues=0, messages_in_dlqs=0)
    assert report.accepted == 1 and report.ok


def _items(n: int) -> list[InferItem]:
    return [InferItem(f"m{i}", f"r{i}", f"text {i}", 4, "short", 0) for i in range(n)]


def test_bisection_fails_only_the_poison_members(monkeypatch):
    calls: list[int] = []

    def fake_run(items, started_ms):
        calls.append(len(items))
        if any(item.message_id in ("m2", "m5") for item in items):
            raise ValueError("bad input")
        return {item.message_id: "ok" for item in items}

    monkeypatch.setattr(infer, "run_batch", fake_run)
    ok, failed = run_isolating(_items(8), started_ms=0)
    assert sorted(failed) == ["m2", "m5"]
    assert sorted(ok) == ["m0", "m1", "m3", "m4", "m6", "m7"]
    assert len(calls) < 2 * 8  # bisection, not one retry per member and then some


def test_model_load_failure_is_not_bisected(monkeypatch):
    calls: list[int] = []

    def no_model(items, started_ms):
        calls.append(len(items))
        raise ModelLoadError("no model")

    monkeypatch.setattr(infer, "run_batch", no_model)
    ok, failed = run_isolating(_items(4), started_ms=0)
    assert ok == {} and sorted(failed) == ["m0", "m1", "m2", "m3"]
    assert calls == [4]


@pytest.mark.parametrize("n", [1, 2, 7])
def test_no_failure_is_one_forward_pass(monkeypatch, n):
    calls: list[int] = []
    monkeypatch.setattr(infer, "run_batch",
                        lambda items, s: calls.append(len(items)) or {i.message_id: 1
                                                                      for i in items})
    ok, failed = run_isolating(_items(n), started_ms=0)
    assert len(ok) == n and failed == {} and calls == [n]
