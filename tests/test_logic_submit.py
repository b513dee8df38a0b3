"""Ingest's submit flow as a plain function: ports in, an outcome out, no events."""

from __future__ import annotations

from typing import Any

import pytest

from buffers.plan_files import default_plan_path, load_plan
from buffers.router import LengthRouter
from functions.logic.submit import Job, SubmitPorts, SubmitStatus, Submitted, submit
from functions.shared.queues import QueueDepth, QueueSender
from functions.shared.store import FAILED, PENDING, PendingRecord, ResultRecord, ResultStore
from functions.shared.tokenizer import TokenCount

NOW_MS = 1_700_000_000_000
RID = "0123456789abcdef0123456789abcdef"


class MemoryStore(ResultStore):
    """Test double: the results table as a dict, with the DynamoDB store's terminal-write rule."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def put_pending(self, record: PendingRecord) -> None:
        assert record.id not in self.items
        self.items[record.id] = {"status": PENDING, "record": record}

    def complete(self, request_id: str, result: ResultRecord) -> bool:
        raise AssertionError("submit never completes a request")

    def fail(self, request_id: str, reason: str) -> bool:
        item = self.items[request_id]
        if item["status"] != PENDING:
            return False
        item.update(status=FAILED, reason=reason)
        return True

    def note_error(self, request_id: str, reason: str) -> None:
        raise AssertionError("submit never notes an error")

    def get(self, request_id: str) -> dict[str, Any] | None:
        return self.items.get(request_id)


class Sender(QueueSender):
    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.error = error

    def send(self, buffer_name: str, message: dict[str, Any]) -> str:
        if self.error is not None:
            raise self.error
        self.sent.append((buffer_name, message))
        return f"msg-{len(self.sent)}"


class Depth(QueueDepth):
    def __init__(self, waiting: int | Exception = 0) -> None:
        self.waiting = waiting
        self.asked: list[str] = []

    def depth(self, buffer_name: str) -> int:
        self.asked.append(buffer_name)
        if isinstance(self.waiting, Exception):
            raise self.waiting
        return self.waiting


def _submit(length: int = 6, sender: Sender | None = None, depth: Depth | None = None,
            max_queue_depth: int = 10, store: MemoryStore | None = None,
            ) -> tuple[Submitted, MemoryStore, Sender]:
    store = store or MemoryStore()
    sender = sender or Sender()
    ports = SubmitPorts(LengthRouter(load_plan(default_plan_path())), store, sender,
                        depth or Depth())
    job = Job(text="a quietly moving film", tenant="acme",
              tokens=TokenCount(length=length, full_length=length), slo_ms=500)
    done = submit(job, ports, request_id=RID, now_ms=NOW_MS, max_queue_depth=max_queue_depth,
                  result_ttl_s=3600)
    return done, store, sender


def test_accepted_job_is_pending_in_its_buffer_and_enqueued_once():
    done, store, sender = _submit(length=92)
    assert done == Submitted(SubmitStatus.ACCEPTED, "long", RID)
    record = store.items[RID]["record"]
    assert (store.items[RID]["status"], record.buffer, record.length, record.tenant) == (
        PENDING, "long", 92, "acme")
    assert record.expires_at_s == NOW_MS // 1000 + 3600
    assert sender.sent == [("long", {"id": RID, "text": "a quietly moving film", "length": 92,
                                     "buffer": "long", "tenant": "acme",
                                     "enqueued_at_ms": NOW_MS, "slo_ms": 500})]


def test_enqueue_failure_compensates_by_failing_the_pending_request():
    # GIVEN a queue that refuses the message
    outage = ConnectionError("sqs is down")
    done, store, sender = _submit(sender=Sender(error=outage))
    # THEN the request is FAILED (never left PENDING), and the outcome says why
    assert done.status is SubmitStatus.UNAVAILABLE
    assert (done.request_id, done.buffer, done.enqueue_error) == (RID, "short", outage)
    assert store.items[RID]["status"] == FAILED
    assert store.items[RID]["reason"] == "could not enqueue the request"


def test_saturated_buffer_is_refused_with_nothing_stored_or_sent():
    depth = Depth(waiting=10)
    done, store, sender = _submit(depth=depth, max_queue_depth=10)
    assert done == Submitted(SubmitStatus.OVERLOADED, "short")
    assert store.items == {} and sender.sent == []
    assert depth.asked == ["short"]


def test_unreadable_depth_fails_open():
    error = TimeoutError("GetQueueAttributes timed out")
    done, store, sender = _submit(depth=Depth(waiting=error))
    assert done.status is SubmitStatus.ACCEPTED and done.depth_error is error
    assert len(sender.sent) == 1


def test_depth_limit_zero_never_reads_the_depth():
    depth = Depth(waiting=10**6)
    done, _, _ = _submit(depth=depth, max_queue_depth=0)
    assert done.status is SubmitStatus.ACCEPTED and depth.asked == []


def test_length_outside_the_plan_is_refused_before_anything_is_stored():
    store = MemoryStore()
    with pytest.raises(ValueError, match="got 300"):
        _submit(length=300, store=store)
    assert store.items == {}
