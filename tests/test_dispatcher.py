"""The dispatcher / event-source-mapping emulation against moto's SQS: limits and deletion rules."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import boto3
import pytest
from moto import mock_aws

from buffers.plan_files import plan_from_dict
from infra.dispatcher.queue_dispatcher import QueueDispatcher, managed_timer_start_s
from infra.local.stack import create_resources


def _plan(mode: str, max_batch: int, timeout_ms: int, concurrency: int = 2) -> Any:
    return plan_from_dict({"version": 1, "name": "t", "max_length": 256, "buffers": [
        {"name": "short", "min_length": 1, "max_length": 32, "max_batch_size": max_batch,
         "timeout_ms": timeout_ms, "memory_mb": 1024, "dispatch_mode": mode,
         "max_concurrency": concurrency},
        {"name": "long", "min_length": 33, "max_length": 256, "max_batch_size": 4,
         "timeout_ms": 0 if mode == "managed" else 50, "memory_mb": 2048,
         "dispatch_mode": mode, "max_concurrency": 2}]})


FAST_POLL_S = 1  # moto's long poll on an empty queue blocks; stop() waits for it


class RecordingInvoke:
    """Stands in for the infer function: records batches and the peak concurrency per buffer."""

    def __init__(self, service_s: float = 0.05, fail_ids: frozenset[str] = frozenset()) -> None:
        self.service_s, self.fail_ids = service_s, fail_ids
        self.batches: list[tuple[str, list[str], float]] = []
        self.running: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, buffer: str, event: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.running[buffer] = self.running.get(buffer, 0) + 1
            self.peak[buffer] = max(self.peak.get(buffer, 0), self.running[buffer])
        time.sleep(self.service_s)
        ids = [json.loads(r["body"])["id"] for r in event["Records"]]
        with self._lock:
            self.running[buffer] -= 1
            self.batches.append((buffer, ids, time.time()))
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]}
                                      for r in event["Records"]
                                      if json.loads(r["body"])["id"] in self.fail_ids]}


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield boto3.client("sqs")


def _send(sqs: Any, url: str, n: int, length: int) -> list[str]:
    ids = []
    for _ in range(n):
        request_id = uuid.uuid4().hex
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({
            "id": request_id, "text": "x", "length": length, "buffer": "?",
            "enqueued_at_ms": int(time.time() * 1000)}))
        ids.append(request_id)
    return ids


def _run_until(invoke: RecordingInvoke, expected: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(len(b[1]) for b in invoke.batches) < expected and time.monotonic() < deadline:
        time.sleep(0.05)


def _depth(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return sum(int(v) for v in attrs.values())


def test_batches_respect_size_and_concurrency_and_successes_are_deleted(sqs):
    # GIVEN 40 short requests queued for a buffer of max batch 8 and concurrency 2
    plan = _plan("dispatcher", max_batch=8, timeout_ms=100, concurrency=2)
    res = create_resources(plan, f"d-{uuid.uuid4().hex[:6]}", 60)
    ids = _send(sqs, res.queue_urls["short"], 40, length=10)
    invoke = RecordingInvoke(service_s=0.1)
    dispatcher = QueueDispatcher(plan, sqs, res.queue_urls, res.queue_arns, invoke,
                                 receive_wait_s=FAST_POLL_S)
    # WHEN the dispatcher runs until all are processed
    dispatcher.start()
    _run_until(invoke, 40)
    dispatcher.stop()
    # THEN every request ran exactly once, no batch exceeded 8, at most 2 ran at once,
    # and the queue is empty (every success deleted)
    seen = [i for _, batch, _ in invoke.batches for i in batch]
    assert sorted(seen) == sorted(ids)
    assert max(len(b) for _, b, _ in invoke.batches) <= 8
    assert invoke.peak["short"] <= 2
    assert _depth(sqs, res.queue_urls["short"]) == 0
    assert dispatcher.stats.requests["short"] == 40


def test_failed_items_are_not_deleted(sqs):
    plan = _plan("dispatcher", max_batch=4, timeout_ms=50)
    res = create_resources(plan, f"d-{uuid.uuid4().hex[:6]}", 60)
    ids = _send(sqs, res.queue_urls["short"], 4, length=10)
    invoke = RecordingInvoke(service_s=0.0, fail_ids=frozenset(ids[:1]))
    dispatcher = QueueDispatcher(plan, sqs, res.queue_urls, res.queue_arns, invoke,
                                 receive_wait_s=FAST_POLL_S)
    dispatcher.start()
    _run_until(invoke, 4)
    dispatcher.stop()
    # The failed message stays on the queue (in flight until its visibility timeout), the rest go.
    assert _depth(sqs, res.queue_urls["short"]) == 1
    assert dispatcher.stats.failed_items == 1


def test_invoke_error_deletes_nothing(sqs):
    plan = _plan("dispatcher", max_batch=4, timeout_ms=50)
    res = create_resources(plan, f"d-{uuid.uuid4().hex[:6]}", 60)
    _send(sqs, res.queue_urls["short"], 4, length=10)
    calls = []

    def crash(buffer: str, event: dict[str, Any]) -> dict[str, Any]:
        calls.append(len(event["Records"]))
        raise RuntimeError("function crashed")

    dispatcher = QueueDispatcher(plan, sqs, res.queue_urls, res.queue_arns, crash,
                                 receive_wait_s=FAST_POLL_S)
    dispatcher.start()
    deadline = time.monotonic() + 10
    while sum(calls) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    dispatcher.stop()
    assert sum(calls) == 4
    assert _depth(sqs, res.queue_urls["short"]) == 4
    assert dispatcher.stats.invoke_errors >= 1


def test_managed_window_begins_when_the_previous_invocation_completes(sqs):
    # GIVEN managed mode: a 3 s window and BatchSize 20 for short texts, window 0 for long ones
    # (3 s leaves this busy machine time to send the five within the window)
    plan = _plan("managed", max_batch=20, timeout_ms=3000)
    res = create_resources(plan, f"d-{uuid.uuid4().hex[:6]}", 60)
    invoke = RecordingInvoke(service_s=0.0)
    dispatcher = QueueDispatcher(plan, sqs, res.queue_urls, res.queue_arns, invoke,
                                 receive_wait_s=FAST_POLL_S)
    dispatcher.start()
    # WHEN one short text reaches the idle queue, then five more and a long one after its
    # invocation completed
    first = _send(sqs, res.queue_urls["short"], 1, length=10)
    _run_until(invoke, 1)
    done = invoke.batches[0][2]
    short_ids = _send(sqs, res.queue_urls["short"], 5, length=10)
    long_ids = _send(sqs, res.queue_urls["long"], 1, length=100)
    _run_until(invoke, 7)
    dispatcher.stop()
    # THEN the first went alone and at once: no window was open (the ESM's next window begins
    # when its previous invocation completes, not at the first receive)
    assert invoke.batches[0][1] == first
    batches = {buffer: (ids, at) for buffer, ids, at in invoke.batches[1:]}
    # AND the five went as one batch when the window that began at its completion closed,
    # while the long one (window 0) went at once
    assert sorted(batches["short"][0]) == sorted(short_ids)
    assert batches["short"][1] - done >= 2.9
    assert batches["long"][0] == long_ids
    assert batches["long"][1] - done < 2.9


@pytest.mark.parametrize(("previous", "now", "expected"), [
    (None, 5.0, 4.0),  # idle: due now (start + 1 s window = now)
    (4.5, 5.0, 4.5),  # the window [4.5, 5.5] is open: due when it closes
    (3.0, 5.0, 4.0),  # it closed at 4.0 with nothing: due now
])
def test_managed_timer_starts_at_the_window(previous, now, expected):
    assert managed_timer_start_s(previous, now, 1.0) == expected


class HeldPoll:
    """A fake SQS whose long poll returns one message only once the dispatcher was stopped."""

    def __init__(self) -> None:
        self.receives: list[dict[str, Any]] = []
        self.handed_back: list[dict[str, Any]] = []
        self.stopped = threading.Event()

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        self.receives.append(kwargs)
        self.stopped.wait(5)
        return {"Messages": [{"MessageId": "m1", "ReceiptHandle": "r1", "Body": "{}"}]}

    def change_message_visibility_batch(self, **kwargs: Any) -> dict[str, Any]:
        self.handed_back.append(kwargs)
        return {"Successful": [{"Id": e["Id"]} for e in kwargs["Entries"]]}


def test_receives_long_poll_20_s_with_an_explicit_visibility_and_hand_back_after_stop():
    """stop() waits for polls in flight and hands back what they return."""
    # GIVEN a dispatcher whose receivers are inside a long poll
    fake = HeldPoll()
    plan = _plan("dispatcher", 4, 100)
    dispatcher = QueueDispatcher(plan, fake, {"short": "q-short", "long": "q-long"},
                                 {"short": "arn:s", "long": "arn:l"}, RecordingInvoke(),
                                 visibility_timeout_s=45)
    dispatcher.start()
    deadline = time.monotonic() + 5
    while len(fake.receives) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    # WHEN it stops, and the polls in flight return a message each only after that
    threading.Timer(0.3, fake.stopped.set).start()
    started = time.monotonic()
    dispatcher.stop()
    # THEN stop() waited for those polls (none is left to take messages from a successor), every
    # receive long-polled 20 s with the dispatcher's own visibility timeout, and the late
    # messages were made visible again at once instead of hiding for 45 s
    assert 0.25 < time.monotonic() - started < 5
    assert {(r["WaitTimeSeconds"], r["VisibilityTimeout"]) for r in fake.receives} == {(20, 45)}
    assert sorted(h["QueueUrl"] for h in fake.handed_back) == ["q-long", "q-short"]
    assert all(h["Entries"] == [{"Id": "0", "ReceiptHandle": "r1", "VisibilityTimeout": 0}]
               for h in fake.handed_back)


def test_a_slow_buffer_holds_no_more_messages_than_its_batches_can_take(sqs):
    # GIVEN 40 requests for a buffer of batch 4 and concurrency 2, whose batches take 0.5 s
    plan = _plan("dispatcher", max_batch=4, timeout_ms=50, concurrency=2)
    res = create_resources(plan, f"d-{uuid.uuid4().hex[:6]}", 60)
    _send(sqs, res.queue_urls["short"], 40, length=10)
    invoke = RecordingInvoke(service_s=0.5)
    dispatcher = QueueDispatcher(plan, sqs, res.queue_urls, res.queue_arns, invoke,
                                 receive_wait_s=FAST_POLL_S)
    # WHEN it has run for a while
    dispatcher.start()
    time.sleep(1.2)
    attrs = sqs.get_queue_attributes(QueueUrl=res.queue_urls["short"], AttributeNames=[
        "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    dispatcher.stop(drain=False)
    # THEN it has taken at most what two rounds of its two workers hold (2 x 2 x 4), not the
    # whole queue, whose visibility would lapse while the messages wait
    assert 0 < int(attrs["ApproximateNumberOfMessagesNotVisible"]) <= 16


def test_a_batch_that_waited_past_half_its_visibility_is_extended_not_redelivered(sqs):
    # GIVEN a 2 s visibility timeout and batches of 2 that take 1.5 s on two workers, so the
    # third and fourth batches wait 1.5 s for them
    plan = _plan("dispatcher", max_batch=2, timeout_ms=0, concurrency=2)
    res = create_resources(plan, f"d-{uuid.uuid4().hex[:6]}", 2)
    ids = _send(sqs, res.queue_urls["short"], 10, length=10)
    invoke = RecordingInvoke(service_s=1.5)
    dispatcher = QueueDispatcher(plan, sqs, res.queue_urls, res.queue_arns, invoke,
                                 visibility_timeout_s=2, receive_wait_s=FAST_POLL_S)
    # WHEN every request has run
    dispatcher.start()
    _run_until(invoke, 10, timeout_s=30.0)
    time.sleep(1.0)  # a lapsed message would be received again by now
    dispatcher.stop()
    # THEN each ran exactly once: the waiting batches' visibility was restarted before they ran
    seen = [i for _, batch, _ in invoke.batches for i in batch]
    assert sorted(seen) == sorted(ids)
    assert _depth(sqs, res.queue_urls["short"]) == 0
