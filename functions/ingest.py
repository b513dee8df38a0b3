"""POST /v1/requests: validate, tokenize, submit (functions/logic/submit.py), answer 202."""

from __future__ import annotations

import time
import uuid

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from functions.logic.submit import Job, SubmitPorts, SubmitStatus, submit
from functions.shared import deps
from functions.shared.http import install_error_handlers, json_response, overloaded_response
from functions.shared.identity import authenticated_tenant, submitting_tenant
from functions.shared.settings import get_settings
from functions.shared.submission import body_bytes, parse_submission
from functions.shared.tokenizer import count_tokens

logger = Logger(service="ingest")
app = APIGatewayHttpResolver()
install_error_handlers(app)


@app.post("/v1/requests")
def create_request() -> Response:
    event = app.current_event
    settings = get_settings()
    raw = body_bytes(event.get("body"), bool(event.get("isBase64Encoded")))
    submission = parse_submission(raw, event.headers.get("content-type"), settings.max_body_bytes)
    identity = authenticated_tenant(event.raw_event, settings.trust_tenant_header)
    job = Job(text=submission.text, tenant=submitting_tenant(identity, submission.tenant),
              tokens=count_tokens(submission.text), slo_ms=submission.slo_ms)
    ports = SubmitPorts(deps.router(), deps.result_store(), deps.queue_sender(),
                        deps.queue_depth())
    done = submit(job, ports, request_id=uuid.uuid4().hex, now_ms=int(time.time() * 1000),
                  max_queue_depth=settings.max_queue_depth, result_ttl_s=settings.result_ttl_s)
    if done.depth_error is not None:
        logger.warning("queue depth unavailable", extra={"buffer": done.buffer})
    if done.status is SubmitStatus.OVERLOADED:
        return overloaded_response(done.buffer)
    if done.status is SubmitStatus.UNAVAILABLE:
        logger.error("enqueue failed", exc_info=done.enqueue_error,
                     extra={"request_id": done.request_id, "buffer": done.buffer})
        return json_response(503, {"error": {"code": "unavailable",
                                              "message": "could not enqueue; retry later"}})
    logger.info("accepted", extra={"request_id": done.request_id, "buffer": done.buffer,
                                   "length": job.tokens.length})
    return json_response(202, {"id": done.request_id, "buffer": done.buffer,
                               "length": job.tokens.length, "truncated": job.tokens.truncated,
                               "original_length": job.tokens.full_length})


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    return app.resolve(event, context)
