"""Reads the buffer queues, forms batches with the pure batcher, invokes infer, deletes on success.

SQS stays the durable log: a message is deleted only after the infer function reported it done
(its result is stored). Two modes, as the plan says per buffer:
- managed: emulates the SQS event source mapping. Receives up to 10 messages a call, and the
  batching window begins when the buffer's previous invocation completed, as AWS does for SQS
  (buffers/esm_window.py); a record received with no window open goes out at once. The plan
  validator enforces whole seconds and BatchSize rules. Locally one receiver (poller) serves
  each queue, so the fragmentation over AWS's several pollers is modelled
  (optimizer/sim/esm.py), not emulated; with MaximumConcurrency > 1 "the previous invocation"
  is the buffer's most recently completed one.
- dispatcher: millisecond timers that start at the request's enqueue time, so the timeout bounds
  the whole queueing delay.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from buffers.batcher import MultiBufferBatcher
from buffers.esm_window import window_close_s
from buffers.geared import GearedBatcher
from buffers.gears import GearSet
from buffers.plan import DispatchMode, Plan
from buffers.policies import BatchPolicy
from buffers.types import Batch, Request, ServiceTime
from infra.local.events import sqs_event

log = logging.getLogger("mbs.dispatcher")
Invoke = Callable[[str, dict[str, Any]], dict[str, Any]]  # (buffer name, SQS event) -> response
# Long polls of the SQS maximum, 20 s (SQS developer guide, "short and long polling"): a receive
# returns as soon as a message arrives, so a longer wait adds no latency, and an idle queue costs
# 3 receives a minute instead of 60. stop() waits for the polls in flight (a poll left running
# would take messages, and a receive count each, from the next dispatcher); what they return
# after stop() is handed back at once (visibility 0). The local stack polls 1 s, so that it
# stops within a second; moto bills nothing.
RECEIVE_WAIT_S = 20
# Explicit on every receive (not the queue's attribute): a message stays hidden while the
# dispatcher holds it, i.e. its buffer's timeout plus the infer invocation.
DEFAULT_VISIBILITY_TIMEOUT_S = 60


@dataclass
class DispatchStats:
    batches: Counter = field(default_factory=Counter)
    requests: Counter = field(default_factory=Counter)
    failed_items: int = 0
    invoke_errors: int = 0


def managed_timer_start_s(previous_done_s: float | None, now_s: float, window_s: float) -> float:
    """The start a managed-mode record's size-or-timeout timer is given, so that the batcher
    releases it when the event source mapping's window closes (buffers/esm_window.py): the
    window's start if one is open, else now_s - window_s (due at once)."""
    return window_close_s(previous_done_s, now_s, window_s) - window_s


def _request_from_message(message: dict[str, Any], mode: DispatchMode, now_s: float,
                          default_slo_ms: float | None,
                          timer_start_s: float | None = None) -> Request:
    try:
        body = json.loads(message["Body"])
        length = int(body["length"])
        enqueued_s = int(body["enqueued_at_ms"]) / 1000.0
        tenant = str(body.get("tenant") or "default")
        slo_ms = body.get("slo_ms") or default_slo_ms
    except (KeyError, TypeError, ValueError, AttributeError):
        # A malformed message still goes to infer, which reports it failed (then the DLQ).
        length, enqueued_s, tenant, slo_ms = 1, now_s, "default", default_slo_ms
    arrival_s = enqueued_s if mode is DispatchMode.DISPATCHER else (
        now_s if timer_start_s is None else timer_start_s)
    deadline_s = None if slo_ms is None else enqueued_s + float(slo_ms) / 1000.0
    return Request(id=message["MessageId"], length=max(1, length),
                   arrival_s=min(arrival_s, now_s), tenant=tenant, deadline_s=deadline_s,
                   payload=message)


class QueueDispatcher:
    """One receiver thread per buffer queue, one batching loop, a worker pool per buffer."""

    def __init__(self, plan: Plan, sqs: Any, queue_urls: dict[str, str],
                 queue_arns: dict[str, str], invoke: Invoke,
                 clock: Callable[[], float] = time.time, policy: BatchPolicy | None = None,
                 predict_ms: ServiceTime | None = None,
                 default_slo_ms: float | None = None, gears: GearSet | None = None,
                 visibility_timeout_s: int = DEFAULT_VISIBILITY_TIMEOUT_S,
                 receive_wait_s: int = RECEIVE_WAIT_S) -> None:
        self.plan = plan
        self._visibility_s, self._wait_s = visibility_timeout_s, receive_wait_s
        self.stats = DispatchStats()
        self._sqs, self._urls, self._arns = sqs, queue_urls, queue_arns
        self._invoke, self._clock = invoke, clock
        self._predict_ms, self._default_slo_ms = predict_ms, default_slo_ms
        # With gears (buffers/geared.py), received messages go to the active gear's batcher,
        # and buffered ones leave under their own gear's rules.
        self._batcher = MultiBufferBatcher(plan, policy) if gears is None \
            else GearedBatcher(plan, gears, policy)
        self._policy_lock = threading.Lock()  # workers report completions from their threads
        self._inbox: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pools = [ThreadPoolExecutor(max_workers=s.max_concurrency,
                                          thread_name_prefix=f"infer-{s.name}")
                       for s in plan.buffers]
        self._in_flight = [threading.Semaphore(2 * s.max_concurrency) for s in plan.buffers]
        # Messages received and not yet finished, per buffer, capped at what the in-flight
        # batches can hold: a buffer whose batches wait (the loop may be blocked on another
        # buffer's workers) must not pull more messages whose visibility then lapses, or they
        # come back, are received again and end in the DLQ though nothing failed.
        self._held = [0] * len(plan.buffers)
        self._held_cap = [2 * s.max_concurrency * s.max_batch_size for s in plan.buffers]
        self._held_lock = threading.Lock()
        self._received_s: dict[str, float] = {}  # receipt handle -> when it was received
        self._done_s: list[float | None] = [None] * len(plan.buffers)  # last invocation's end
        self._threads = [threading.Thread(target=self._receive, args=(i,), daemon=True,
                                          name=f"receive-{s.name}")
                         for i, s in enumerate(plan.buffers)]
        self._threads.append(threading.Thread(target=self._loop, daemon=True, name="dispatch"))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, drain: bool = True) -> None:
        """Stop receiving; with drain, flush what is buffered and wait for running batches."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=self._wait_s + 5)
        if drain:
            self._move_inbox()
            for batch in self._batcher.drain(self._clock()):
                self._submit(batch)
        for pool in self._pools:
            pool.shutdown(wait=drain)

    def _receive(self, index: int) -> None:
        spec = self.plan.buffers[index]
        url = self._urls[spec.name]
        while not self._stop.is_set():
            # Backpressure: hold off receiving while this buffer's workers are all busy, so
            # unreceived messages stay durable in SQS instead of piling up in memory.
            if not self._in_flight[index].acquire(timeout=0.5):
                continue
            self._in_flight[index].release()
            room = self._held_cap[index] - self._held[index]
            if room <= 0:
                self._stop.wait(0.05)
                continue
            try:
                reply = self._sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=min(10, room),
                    WaitTimeSeconds=self._wait_s, VisibilityTimeout=self._visibility_s,
                    AttributeNames=["All"])
            except Exception:
                if not self._stop.is_set():
                    log.exception("receive failed on %s", spec.name)
                    self._stop.wait(1.0)
                continue
            if self._stop.is_set():
                self._hand_back(url, reply.get("Messages", []))
                return
            received_s = time.monotonic()
            self._hold(index, len(reply.get("Messages", [])))
            for message in reply.get("Messages", []):
                self._received_s[message["ReceiptHandle"]] = received_s
                self._inbox.put((index, message))
            if reply.get("Messages"):
                self._wake.set()

    def _hand_back(self, url: str, messages: list[dict[str, Any]]) -> None:
        """Make messages received after stop() visible again at once, for the next consumer."""
        for start in range(0, len(messages), 10):
            try:
                self._sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(messages[start:start + 10])])
            except Exception:  # they reappear after their visibility timeout instead
                log.warning("could not hand back %d message(s)", len(messages[start:start + 10]))

    def _move_inbox(self) -> list[Batch]:
        out: list[Batch] = []
        now = self._clock()
        while True:
            try:
                index, message = self._inbox.get_nowait()
            except queue.Empty:
                return out
            spec = self.plan.buffers[index]
            start = None if spec.dispatch_mode is DispatchMode.DISPATCHER else \
                managed_timer_start_s(self._done_s[index], now, spec.timeout_s)
            request = _request_from_message(message, spec.dispatch_mode, now,
                                            self._default_slo_ms, start)
            with self._policy_lock:
                out.extend(self._batcher.add_to(index, request, now))

    def _loop(self) -> None:
        while not self._stop.is_set():
            ready = self._move_inbox()
            with self._policy_lock:
                ready.extend(self._batcher.poll(self._clock()))
            for batch in ready:
                self._submit(batch)
            due = self._batcher.next_due_s()
            wait_s = 0.5 if due is None else max(0.0, min(0.5, due - self._clock()))
            self._wake.wait(timeout=wait_s)
            self._wake.clear()

    def _submit(self, batch: Batch) -> None:
        self._in_flight[batch.buffer_index].acquire()
        self.stats.batches[batch.buffer_name] += 1
        self.stats.requests[batch.buffer_name] += batch.size
        self._pools[batch.buffer_index].submit(self._run, batch)

    def _run(self, batch: Batch) -> None:
        try:
            messages = [r.payload for r in batch.requests]
            self._refresh_visibility(self._urls[batch.buffer_name], messages)
            event = sqs_event(messages, self._arns[batch.buffer_name])
            started = time.perf_counter()
            try:
                reply = self._invoke(batch.buffer_name, event) or {}
                self._report(batch, (time.perf_counter() - started) * 1000.0)
                failed = {f["itemIdentifier"] for f in reply.get("batchItemFailures", [])}
            except Exception:  # the function errored, timed out or died
                log.exception("invoke failed for a batch of %d on %s", batch.size,
                              batch.buffer_name)
                self.stats.invoke_errors += 1
                return  # nothing deleted: every message is redelivered after its visibility
            self.stats.failed_items += len(failed)
            done = [m for m in messages if m["MessageId"] not in failed]
            self._delete(self._urls[batch.buffer_name], done)
        finally:
            done = self._clock()
            last = self._done_s[batch.buffer_index]
            self._done_s[batch.buffer_index] = done if last is None else max(last, done)
            for request in batch.requests:
                self._received_s.pop(request.payload["ReceiptHandle"], None)
            self._hold(batch.buffer_index, -batch.size)
            self._in_flight[batch.buffer_index].release()

    def _hold(self, index: int, count: int) -> None:
        with self._held_lock:
            self._held[index] += count

    def _refresh_visibility(self, url: str, messages: list[dict[str, Any]]) -> None:
        """Restart the visibility timeout of messages held for over half of it before their
        batch runs (SQS's documented way to keep a message while it is still being worked on:
        ChangeMessageVisibility), so a batch that waited for a worker is not redelivered."""
        now_s = time.monotonic()
        stale = [m for m in messages
                 if now_s - self._received_s.get(m["ReceiptHandle"], now_s)
                 > self._visibility_s / 2]
        for start in range(0, len(stale), 10):
            chunk = stale[start:start + 10]
            try:
                self._sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"],
                     "VisibilityTimeout": self._visibility_s} for i, m in enumerate(chunk)])
            except Exception:  # the batch runs anyway; at worst a message is delivered twice
                log.warning("could not extend the visibility of %d message(s)", len(chunk))

    def _report(self, batch: Batch, actual_ms: float) -> None:
        """Tell the policy how long the batch took against the prediction (SLAI's offset)."""
        if self._predict_ms is None:
            return
        spec = self.plan.buffers[batch.buffer_index]
        predicted = self._predict_ms(batch.size, batch.padded_length, spec.memory_mb)
        with self._policy_lock:
            self._batcher.policy.on_complete(batch, predicted, actual_ms)
        self._wake.set()

    def _delete(self, url: str, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):  # DeleteMessageBatch takes 10 at most
            chunk = messages[start:start + 10]
            self._sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)])
