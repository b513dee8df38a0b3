"""Ingest's submit flow: route by length, backpressure, record PENDING, enqueue, compensate.

`submit` takes one text (PutItem, SendMessage); `submit_many` a list (BatchWriteItem,
SendMessageBatch per buffer), so one API call and one ingest invocation cover many texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from buffers.plan import BufferSpec
from buffers.router import LengthRouter
from functions.shared.queues import QueueDepth, QueueSender
from functions.shared.store import MissingRequest, PendingRecord, ResultStore
from functions.shared.tokenizer import TokenCount

ENQUEUE_FAILED = "could not enqueue the request"


class SubmitStatus(Enum):
    ACCEPTED = "accepted"  # PENDING recorded and the message enqueued
    OVERLOADED = "overloaded"  # the buffer's queue is past its depth limit; nothing stored
    UNAVAILABLE = "unavailable"  # the enqueue failed; the request was marked FAILED


@dataclass(frozen=True)
class Job:
    """One text to submit (cut to what the model reads), its tenant and token count."""

    text: str
    tenant: str
    tokens: TokenCount
    slo_ms: int | None = None


@dataclass(frozen=True)
class SubmitPorts:
    router: LengthRouter
    store: ResultStore
    sender: QueueSender
    depth: QueueDepth


@dataclass(frozen=True)
class Submitted:
    """What submit did, and why when it did not accept."""

    status: SubmitStatus
    buffer: str
    request_id: str | None = None
    enqueue_error: Exception | None = None
    depth_error: Exception | None = None  # the depth could not be read; submit failed open


def _saturated(depth: QueueDepth, buffer_name: str, limit: int) -> tuple[bool, Exception | None]:
    if not limit:
        return False, None
    try:
        return depth.depth(buffer_name) >= limit, None
    except Exception as exc:
        # Fail open: if the depth cannot be read, the send below succeeds or answers 503.
        return False, exc


def submit(job: Job, ports: SubmitPorts, request_id: str, now_ms: int, max_queue_depth: int,
           result_ttl_s: int) -> Submitted:
    """Route the job to its buffer, record it PENDING and enqueue it.

    Parameters
    ----------
    job: the validated text, its tenant, token count and SLO.
    ports: the length router, the results store and the buffer queues (sender and depth).
    request_id: the id the new request gets.
    now_ms: the enqueue time (epoch milliseconds).
    max_queue_depth: refuse past this many waiting messages on the buffer's queue (0: never).
    result_ttl_s: how long the request's item lives in the results table.
    """
    spec = ports.router.route(job.tokens.length)
    saturated, depth_error = _saturated(ports.depth, spec.name, max_queue_depth)
    if saturated:
        return Submitted(SubmitStatus.OVERLOADED, spec.name)
    # PENDING is written before the message is sent, so a fast result can never be overwritten.
    ports.store.put_pending(_record(job, spec, request_id, now_ms, result_ttl_s))
    try:
        ports.sender.send(spec.name, _message(job, spec, request_id, now_ms))
    except Exception as exc:
        # Compensate: a request whose message never left would stay PENDING forever.
        ports.store.fail(request_id, ENQUEUE_FAILED)
        return Submitted(SubmitStatus.UNAVAILABLE, spec.name, request_id, enqueue_error=exc,
                         depth_error=depth_error)
    return Submitted(SubmitStatus.ACCEPTED, spec.name, request_id, depth_error=depth_error)


def _record(job: Job, spec: BufferSpec, request_id: str, now_ms: int,
            result_ttl_s: int) -> PendingRecord:
    return PendingRecord(
        id=request_id, tenant=job.tenant, buffer=spec.name, length=job.tokens.length,
        full_length=job.tokens.full_length, enqueued_at_ms=now_ms,
        expires_at_s=now_ms // 1000 + result_ttl_s, slo_ms=job.slo_ms)


def _message(job: Job, spec: BufferSpec, request_id: str, now_ms: int,
             in_job: tuple[str, int] | None = None) -> dict[str, Any]:
    message = {"id": request_id, "text": job.text, "length": job.tokens.length,
               "buffer": spec.name, "tenant": job.tenant, "enqueued_at_ms": now_ms,
               "slo_ms": job.slo_ms}
    if in_job is not None:  # (job id, index): infer writes the text's line to the job's part
        message.update(job={"id": in_job[0], "index": in_job[1]},
                       full_length=job.tokens.full_length)
    return message


@dataclass(frozen=True)
class Entry:
    """One text of a list as submit_many left it: PENDING and enqueued, or FAILED (why)."""

    request_id: str
    buffer: str
    error: Exception | None = None

    @property
    def accepted(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class BulkSubmitted:
    """What submit_many did. OVERLOADED: nothing stored; UNAVAILABLE: no text accepted."""

    status: SubmitStatus
    entries: tuple[Entry, ...] = ()
    overloaded_buffer: str | None = None
    depth_errors: tuple[Exception, ...] = ()


def _fail_quietly(store: ResultStore, request_id: str, reason: str) -> None:
    try:
        store.fail(request_id, reason)
    except MissingRequest:
        return  # its PENDING item was never written: nothing to fail


def _enqueue(jobs: Sequence[Job], specs: Sequence[BufferSpec], ports: SubmitPorts,
             request_ids: Sequence[str], now_ms: int, job_id: str | None
             ) -> list[Exception | None]:
    """Send in batches per buffer; each text's send error (its request then marked FAILED)."""
    errors: list[Exception | None] = [None] * len(jobs)
    by_buffer: dict[str, list[int]] = {}
    for index, spec in enumerate(specs):
        by_buffer.setdefault(spec.name, []).append(index)
    for name, indexes in by_buffer.items():
        sent = ports.sender.send_many(name, [
            _message(jobs[i], specs[i], request_ids[i], now_ms,
                     None if job_id is None else (job_id, i)) for i in indexes])
        for index, error in zip(indexes, sent, strict=True):
            if error is not None:
                errors[index] = error
                if job_id is None:
                    _fail_quietly(ports.store, request_ids[index], ENQUEUE_FAILED)
    return errors


def submit_many(jobs: Sequence[Job], ports: SubmitPorts, request_ids: Sequence[str],
                now_ms: int, max_queue_depth: int, result_ttl_s: int,
                job_id: str | None = None) -> BulkSubmitted:
    """Route a list, record every text PENDING in batches, then enqueue in batches per buffer.

    Parameters are submit's, with one job and one request id per text, in order. A saturated
    buffer refuses the whole list before anything is stored. A text whose message could not be
    sent is marked FAILED (as submit does), and the others stay accepted. With job_id (a job
    with S3 output, its item already written) no PENDING item is written: each message carries
    the job and the text's index, and the caller records the texts that failed on the job.
    """
    specs = [ports.router.route(job.tokens.length) for job in jobs]
    depth_errors = []
    for name in dict.fromkeys(spec.name for spec in specs):
        saturated, depth_error = _saturated(ports.depth, name, max_queue_depth)
        if depth_error is not None:
            depth_errors.append(depth_error)
        if saturated:
            return BulkSubmitted(SubmitStatus.OVERLOADED, overloaded_buffer=name)
    records = [_record(job, spec, rid, now_ms, result_ttl_s)
               for job, spec, rid in zip(jobs, specs, request_ids, strict=True)]
    try:
        if job_id is None:
            ports.store.put_pending_many(records)
    except Exception as exc:
        # Some items may be written: fail each, so none stays PENDING without a message.
        for request_id in request_ids:
            _fail_quietly(ports.store, request_id, "could not record the request")
        return BulkSubmitted(SubmitStatus.UNAVAILABLE, tuple(
            Entry(rid, spec.name, exc) for rid, spec in zip(request_ids, specs, strict=True)),
            depth_errors=tuple(depth_errors))
    errors = _enqueue(jobs, specs, ports, request_ids, now_ms, job_id)
    entries = tuple(Entry(rid, spec.name, error)
                    for rid, spec, error in zip(request_ids, specs, errors, strict=True))
    status = SubmitStatus.ACCEPTED if any(e.accepted for e in entries) else \
        SubmitStatus.UNAVAILABLE
    return BulkSubmitted(status, entries, depth_errors=tuple(depth_errors))
