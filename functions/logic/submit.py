"""Ingest's submit flow: route by length, backpressure, record PENDING, enqueue, compensate."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from buffers.router import LengthRouter
from functions.shared.queues import QueueDepth, QueueSender
from functions.shared.store import PendingRecord, ResultStore
from functions.shared.tokenizer import TokenCount


class SubmitStatus(Enum):
    ACCEPTED = "accepted"  # PENDING recorded and the message enqueued
    OVERLOADED = "overloaded"  # the buffer's queue is past its depth limit; nothing stored
    UNAVAILABLE = "unavailable"  # the enqueue failed; the request was marked FAILED


@dataclass(frozen=True)
class Job:
    """An accepted body, with who sent it and its token count."""

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
    ports.store.put_pending(PendingRecord(
        id=request_id, tenant=job.tenant, buffer=spec.name, length=job.tokens.length,
        full_length=job.tokens.full_length, enqueued_at_ms=now_ms,
        expires_at_s=now_ms // 1000 + result_ttl_s, slo_ms=job.slo_ms,
    ))
    message = {"id": request_id, "text": job.text, "length": job.tokens.length,
               "buffer": spec.name, "tenant": job.tenant,
               "enqueued_at_ms": now_ms, "slo_ms": job.slo_ms}
    try:
        ports.sender.send(spec.name, message)
    except Exception as exc:
        # Compensate: a request whose message never left would stay PENDING forever.
        ports.store.fail(request_id, "could not enqueue the request")
        return Submitted(SubmitStatus.UNAVAILABLE, spec.name, request_id, enqueue_error=exc,
                         depth_error=depth_error)
    return Submitted(SubmitStatus.ACCEPTED, spec.name, request_id, depth_error=depth_error)
