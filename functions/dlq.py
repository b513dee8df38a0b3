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

from functions.logic.dead_letter import DeadLetter, fail_dead_letter, fail_job_dead_letter
from functions.shared import deps

logger = Logger(service="dlq")


def on_dead_letter(record: SQSRecord) -> None:
    """Parse the dead letter's request id and fail that request."""
    try:
        body = json.loads(record.body)
        request_id = str(body["id"])
        job = body.get("job")
        in_job = None if job is None else (str(job["id"]), int(job["index"]))
    except (KeyError, TypeError, ValueError, AttributeError):
        # Not one of ours: nothing to mark. It is logged by id and dropped from the DLQ.
        logger.warning("unparseable dead letter", extra={"message_id": record.message_id})
        return
    receives = int(record.attributes.approximate_receive_count)
    objects = deps.result_objects()
    if in_job is not None and objects is not None:
        done = fail_job_dead_letter(deps.job_store(), objects, *in_job, request_id, receives)
    else:
        done = fail_dead_letter(deps.result_store(), request_id, receives)
    if done is DeadLetter.UNKNOWN:
        logger.warning("dead letter for an unknown request", extra={"request_id": request_id})
    elif done is DeadLetter.FAILED:
        logger.info("request failed", extra={"request_id": request_id})


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(event, on_dead_letter, processor, context)
