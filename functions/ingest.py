"""POST /v1/requests: validate, tokenize, submit one text or a list (functions/logic/submit.py).

One text answers 202 {"id", ...}. A list (`"texts"`, up to 100) answers 202 {"requests": [...]}
with one entry per text, in order, and a `job` when the list asked for S3 output. An invalid
item refuses the whole list with nothing stored or enqueued (functions/shared/submission.py).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from functions.logic.jobs import failed_line, write_failed_part
from functions.logic.submit import (
    ENQUEUE_FAILED,
    BulkSubmitted,
    Job,
    SubmitPorts,
    SubmitStatus,
    submit,
    submit_many,
)
from functions.shared import deps
from functions.shared.http import install_error_handlers, json_response, overloaded_response
from functions.shared.identity import authenticated_tenant, submitting_tenant
from functions.shared.jobs import JobRecord
from functions.shared.settings import Settings, get_settings
from functions.shared.submission import InputError, Submission, body_bytes, parse_submission
from functions.shared.tokenizer import ModelInput, model_input

logger = Logger(service="ingest")
app = APIGatewayHttpResolver()
install_error_handlers(app)


def _unavailable() -> Response:
    return json_response(503, {"error": {"code": "unavailable",
                                         "message": "could not enqueue; retry later"}})


def _accepted(request_id: str, buffer: str, inp: ModelInput) -> dict[str, Any]:
    return {"id": request_id, "buffer": buffer, "length": inp.tokens.length,
            "truncated": inp.tokens.truncated, "original_length": inp.tokens.full_length}


@app.post("/v1/requests")
def create_request() -> Response:
    event = app.current_event
    settings = get_settings()
    raw = body_bytes(event.get("body"), bool(event.get("isBase64Encoded")))
    submission = parse_submission(raw, event.headers.get("content-type"),
                                  settings.max_body_bytes, settings.max_list_body_bytes)
    identity = authenticated_tenant(event.raw_event, settings.trust_tenant_header)
    tenant = submitting_tenant(identity, submission.tenant)
    ports = SubmitPorts(deps.router(), deps.result_store(), deps.queue_sender(),
                        deps.queue_depth())
    now_ms = int(time.time() * 1000)
    if submission.many:
        return _create_many(submission, tenant, ports, now_ms, settings)
    inp = model_input(submission.text or "")
    job = Job(text=inp.text, tenant=tenant, tokens=inp.tokens, slo_ms=submission.slo_ms)
    done = submit(job, ports, request_id=uuid.uuid4().hex, now_ms=now_ms,
                  max_queue_depth=settings.max_queue_depth, result_ttl_s=settings.result_ttl_s)
    if done.depth_error is not None:
        logger.warning("queue depth unavailable", extra={"buffer": done.buffer})
    if done.status is SubmitStatus.OVERLOADED:
        return overloaded_response(done.buffer)
    if done.status is SubmitStatus.UNAVAILABLE:
        logger.error("enqueue failed", exc_info=done.enqueue_error,
                     extra={"request_id": done.request_id, "buffer": done.buffer})
        return _unavailable()
    logger.info("accepted", extra={"request_id": done.request_id, "buffer": done.buffer,
                                   "length": job.tokens.length})
    return json_response(202, _accepted(done.request_id or "", done.buffer, inp))


def _create_many(submission: Submission, tenant: str, ports: SubmitPorts, now_ms: int,
                 settings: Settings) -> Response:
    if submission.output_s3 and deps.result_objects() is None:
        raise InputError(400, "output_unavailable", "this deployment has no results bucket; "
                         "send the list without 'output'")
    inputs = [model_input(text) for text in submission.texts]
    jobs = [Job(text=i.text, tenant=tenant, tokens=i.tokens, slo_ms=submission.slo_ms)
            for i in inputs]
    ids = [uuid.uuid4().hex for _ in jobs]
    job_id = uuid.uuid4().hex if submission.output_s3 else None
    if job_id is not None:
        # Written before any message leaves: infer's count update needs the item to exist.
        deps.job_store().put(JobRecord(job_id, tenant, len(ids), now_ms,
                                       now_ms // 1000 + settings.result_ttl_s))
    done = submit_many(jobs, ports, ids, now_ms, settings.max_queue_depth, settings.result_ttl_s,
                       job_id=job_id)
    if job_id is not None:
        _fail_on_job(job_id, done, ids)
    return _many_response(done, inputs, job_id)


def _fail_on_job(job_id: str, done: BulkSubmitted, ids: list[str]) -> None:
    """Count the texts whose message never left as FAILED on the job, with their lines, so
    that the job still ends (a refused list's job fails whole: the client got a 429)."""
    if done.status is SubmitStatus.OVERLOADED:
        lines = [failed_line(i, rid, "refused: a buffer's queue is over its depth limit")
                 for i, rid in enumerate(ids)]
    else:
        lines = [failed_line(i, e.request_id, ENQUEUE_FAILED)
                 for i, e in enumerate(done.entries) if not e.accepted]
    if lines:
        objects = deps.result_objects()
        if objects is not None:
            write_failed_part(deps.job_store(), objects, job_id, lines)


def _many_response(done: BulkSubmitted, inputs: list[ModelInput], job_id: str | None
                   ) -> Response:
    if done.depth_errors:
        logger.warning("queue depth unavailable", extra={"errors": len(done.depth_errors)})
    if done.status is SubmitStatus.OVERLOADED:
        return overloaded_response(done.overloaded_buffer or "")
    failed = [e for e in done.entries if not e.accepted]
    if failed:
        logger.error("enqueue failed", exc_info=failed[0].error,
                     extra={"failed": len(failed), "texts": len(done.entries)})
    if done.status is SubmitStatus.UNAVAILABLE:
        return _unavailable()
    logger.info("accepted", extra={"texts": len(done.entries), "failed": len(failed)})
    body: dict[str, Any] = {"requests": [
        {**_accepted(e.request_id, e.buffer, inp), "status": "PENDING" if e.accepted else "FAILED"}
        for e, inp in zip(done.entries, inputs, strict=True)]}
    if job_id is not None:
        body["job"] = {"id": job_id}
    return json_response(202, body)


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    return app.resolve(event, context)
