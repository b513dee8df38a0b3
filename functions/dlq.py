"""Dead-letter consumer: a request whose message exhausted its retries becomes FAILED with why."""

from __future__ import annotations

import json

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from functions.shared import deps

logger = Logger(service="dlq")


def fail_dead_letter(record: SQSRecord) -> None:
    """Mark the record's request FAILED with its last recorded error (or the retry count)."""
    try:
        request_id = str(json.loads(record.body)["id"])
    except (KeyError, TypeError, ValueError):
        # Not one of ours: nothing to mark. It is logged by id and dropped from the DLQ.
        logger.warning("unparseable dead letter", extra={"message_id": record.message_id})
        return
    store = deps.result_store()
    item = store.get(request_id)
    if item is None:
        logger.warning("dead letter for an unknown request", extra={"request_id": request_id})
        return
    receives = record.attributes.approximate_receive_count
    reason = item.get("last_error") or f"failed {receives} deliveries"
    if store.fail(request_id, f"dead-lettered after {receives} deliveries: {reason}"):
        logger.info("request failed", extra={"request_id": request_id})


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(event, fail_dead_letter, processor, context)
