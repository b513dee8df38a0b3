"""POST /v1/requests: validate, tokenize, route by length, record PENDING, enqueue, answer 202."""

from __future__ import annotations

import time
import uuid

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from functions.shared import deps
from functions.shared.http import install_error_handlers, json_response, overloaded_response
from functions.shared.identity import authenticated_tenant, submitting_tenant
from functions.shared.settings import get_settings
from functions.shared.store import PendingRecord
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
    tenant = submitting_tenant(identity, submission.tenant)
    tokens = count_tokens(submission.text)
    spec = deps.router().route(tokens.length)
    if settings.max_queue_depth and _saturated(spec.name, settings.max_queue_depth):
        return overloaded_response(spec.name)
    request_id = uuid.uuid4().hex
    now_ms = int(time.time() * 1000)
    # PENDING is written before the message is sent, so a fast result can never be overwritten.
    deps.result_store().put_pending(PendingRecord(
        id=request_id, tenant=tenant, buffer=spec.name, length=tokens.length,
        full_length=tokens.full_length, enqueued_at_ms=now_ms,
        expires_at_s=now_ms // 1000 + settings.result_ttl_s, slo_ms=submission.slo_ms,
    ))
    message = {"id": request_id, "text": submission.text, "length": tokens.length,
               "buffer": spec.name, "tenant": tenant,
               "enqueued_at_ms": now_ms, "slo_ms": submission.slo_ms}
    try:
        deps.queue_sender().send(spec.name, message)
    except Exception:
        logger.exception("enqueue failed", extra={"request_id": request_id, "buffer": spec.name})
        deps.result_store().fail(request_id, "could not enqueue the request")
        return json_response(503, {"error": {"code": "unavailable",
                                              "message": "could not enqueue; retry later"}})
    logger.info("accepted", extra={"request_id": request_id, "buffer": spec.name,
                                   "length": tokens.length})
    return json_response(202, {"id": request_id, "buffer": spec.name, "length": tokens.length,
                               "truncated": tokens.truncated,
                               "original_length": tokens.full_length})


def _saturated(buffer_name: str, limit: int) -> bool:
    try:
        return deps.queue_depth().depth(buffer_name) >= limit
    except Exception:
        # Fail open: if the depth cannot be read, the send below succeeds or answers 503.
        logger.warning("queue depth unavailable", extra={"buffer": buffer_name})
        return False


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    return app.resolve(event, context)
