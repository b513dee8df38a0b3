"""Pure parts of reliability: the conservation audit's arithmetic, and the fault wrappers.

Poison bisection is tested with its code, in tests/test_logic_isolation.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from functions.shared import deps
from functions.shared.jobs import JobRecord
from functions.shared.model import EmbedResult, ModelLoadError
from functions.shared.queues import QueueSender
from functions.shared.store import PendingRecord, ResultRecord, ResultStore
from infra.client.audit import reconcile, tally_job
from infra.local.faults import (
    FaultInjector,
    Faults,
    InjectedCrash,
    PoisonInput,
    faults_from_env,
    injected,
)
from infra.local.stack import FunctionDied, contained


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


def _line(index: int, status: str) -> dict:
    return {"index": index, "id": f"r{index}", "status": status}


def test_a_job_is_counted_from_its_item_and_checked_against_its_parts():
    # GIVEN a job of 5: 0, 1 DONE; 2 FAILED; 3, 4 pending; 1's line written twice (redelivery)
    job = JobRecord("j", "t", 5, created_at_ms=0, expires_at_s=0, done=frozenset({0, 1}),
                    failed=frozenset({2}))
    lines = [_line(0, "DONE"), _line(1, "DONE"), _line(1, "DONE"), _line(2, "FAILED")]
    tally = tally_job(job, lines, now_ms=10_000, grace_ms=1_000)
    assert (tally.total, tally.done, tally.failed, tally.pending) == (5, 2, 1, 2)
    assert (tally.stale_pending, tally.unbacked, tally.duplicate_lines) == (2, 0, 1)
    # THEN with one message per pending text left in the queues, the audit is OK
    report = reconcile([_item("DONE", 100)], since_ms=0, now_ms=10_000, grace_ms=1_000,
                       messages_in_queues=2, messages_in_dlqs=0, jobs=[tally])
    assert (report.accepted, report.done, report.failed, report.pending) == (6, 3, 1, 2)
    assert report.jobs == 1 and report.unaccounted == 0 and report.ok
    # AND with none left, the two stale texts are unaccounted for
    assert not reconcile([], since_ms=0, now_ms=10_000, grace_ms=1_000, messages_in_queues=0,
                         messages_in_dlqs=0, jobs=[tally]).ok


def test_a_counted_job_text_with_no_line_is_a_breach():
    job = JobRecord("j", "t", 3, created_at_ms=0, expires_at_s=0, done=frozenset({0, 1}),
                    failed=frozenset({2}))
    # index 1 counted DONE but its part was lost; index 2 FAILED has only a DONE line
    tally = tally_job(job, [_line(0, "DONE"), _line(2, "DONE")], now_ms=0, grace_ms=0)
    assert tally.unbacked == 2 and tally.pending == 0
    report = reconcile([], since_ms=0, now_ms=0, grace_ms=0, messages_in_queues=0,
                       messages_in_dlqs=0, jobs=[tally])
    assert report.unbacked == 2 and not report.ok


def test_a_dead_letter_after_done_keeps_the_text_done():
    # The DLQ's add is conditional, but a FAILED mark beside DONE still counts the text once.
    job = JobRecord("j", "t", 1, created_at_ms=0, expires_at_s=0, done=frozenset({0}),
                    failed=frozenset({0}))
    tally = tally_job(job, [_line(0, "DONE")], now_ms=0, grace_ms=0)
    assert (tally.done, tally.failed, tally.pending, tally.unbacked) == (1, 0, 0, 0)


class Recorder(ResultStore, QueueSender):
    """Test double for the store and the sender: counts the calls that reach it."""

    def __init__(self) -> None:
        self.completed: list[str] = []
        self.sent: list[str] = []

    def put_pending(self, record: PendingRecord) -> None:
        pass

    def complete(self, request_id: str, result: ResultRecord) -> bool:
        self.completed.append(request_id)
        return True

    def fail(self, request_id: str, reason: str) -> bool:
        return True

    def note_error(self, request_id: str, reason: str) -> None:
        pass

    def get(self, request_id: str) -> dict[str, Any] | None:
        return None

    def send(self, buffer_name: str, message: dict[str, Any]) -> str:
        self.sent.append(buffer_name)
        return "m"


class Model:
    def embed(self, texts: list[str]) -> EmbedResult:
        return EmbedResult(np.zeros((len(texts), 384), np.float32), 4, 1.0, "test-double")


def test_faults_come_from_the_environment_the_stack_is_given():
    assert faults_from_env({}) == Faults()
    assert faults_from_env({"MBS_FAULTS": '{"store_errors": 2, "invocations": 1}',
                            "MBS_FAIL_MODEL_LOAD": "1"}) == Faults(
        store_errors=2, invocations=1, fail_model_load=True)


def test_store_and_sender_faults_hit_the_first_n_calls_then_pass_through():
    injector = FaultInjector(Faults(store_errors=2, send_errors=1))
    inner = Recorder()
    store, sender = injector.result_store(lambda: inner), injector.queue_sender(lambda: inner)
    for _ in range(2):
        with pytest.raises(ClientError, match="ProvisionedThroughputExceeded"):
            store.complete("r", None)
    assert store.complete("r", None) is True and inner.completed == ["r"]
    with pytest.raises(ClientError, match="ServiceUnavailable"):
        sender.send("short", {})
    assert sender.send("short", {}) == "m" and inner.sent == ["short"]


def test_poison_marker_and_failed_load_wrap_the_model():
    poisoned = FaultInjector(Faults(poison_marker="POISON")).embedder(Model)
    assert poisoned.embed(["fine"]).vectors.shape == (1, 384)
    with pytest.raises(PoisonInput, match="injected poison"):
        poisoned.embed(["fine", "a POISON text"])
    loads: list[int] = []
    with pytest.raises(ModelLoadError, match="MBS_FAIL_MODEL_LOAD"):
        FaultInjector(Faults(fail_model_load=True)).embedder(lambda: loads.append(1) or Model())
    assert loads == []  # the real model is never loaded


def test_crash_after_writes_hits_only_the_first_invocations():
    injector = FaultInjector(Faults(crash_after_writes=2, invocations=1))
    store = injector.result_store(Recorder)

    def write_three(_buffer: str, _event: dict) -> dict:
        for request_id in ("a", "b", "c"):
            store.complete(request_id, None)
        return {"batchItemFailures": []}

    invoke = contained(injector.invocation(write_three))
    # WHEN the first invocation writes its second result, its process dies: a failed invoke
    with pytest.raises(FunctionDied, match="died after 2 result writes") as died:
        invoke("short", {})
    assert isinstance(died.value.__cause__, InjectedCrash)
    # THEN later invocations, and writes outside any invocation, run clean
    assert invoke("short", {}) == {"batchItemFailures": []}
    write_three("short", {})


def test_contained_passes_ordinary_errors_through():
    def broken(_buffer: str, _event: dict) -> dict:
        raise KeyError("x")

    with pytest.raises(KeyError):
        contained(broken)("short", {})


def test_injected_wraps_the_ports_deps_makes_for_the_block_only(monkeypatch):
    monkeypatch.setattr("functions.shared.deps.get_embedder", Model)
    with injected(Faults(poison_marker="zebra")), pytest.raises(PoisonInput):
        deps.embedder().embed(["zebra"])
    assert deps.embedder().embed(["zebra"]).device == "test-double"
