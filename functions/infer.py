"""SQS batch -> one padded forward pass -> idempotent result writes, partial failures reported."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from buffers.padding import PaddingStats, batch_padding
from functions.shared import deps
from functions.shared.model import get_embedder
from functions.shared.store import ResultRecord

logger = Logger(service="infer")


class MalformedMessage(ValueError):
    """A message body that can never be processed (it goes to the DLQ after retries)."""


@dataclass(frozen=True)
class InferItem:
    message_id: str
    request_id: str
    text: str
    length: int
    buffer: str
    enqueued_at_ms: int


def parse_record(record: dict) -> InferItem:
    """One SQS record's body -> an InferItem; MalformedMessage names what is wrong."""
    try:
        body = json.loads(record["body"])
        return InferItem(
            message_id=record["messageId"], request_id=str(body["id"]), text=str(body["text"]),
            length=int(body["length"]), buffer=str(body["buffer"]),
            enqueued_at_ms=int(body["enqueued_at_ms"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedMessage(f"message {record.get('messageId')!r}: {exc!r}") from None


def _emit_batch_metrics(buffer: str, size: int, padding: PaddingStats, inference_ms: float) -> None:
    # EphemeralMetrics keeps no shared state, so concurrent batches in one process (the local
    # stack) cannot mix their dimensions; on Lambda one process runs one batch at a time anyway.
    metrics = EphemeralMetrics(namespace="MBS", service="infer")
    metrics.add_dimension(name="buffer", value=buffer)
    metrics.add_metric(name="BatchSize", unit=MetricUnit.Count, value=size)
    metrics.add_metric(name="RealTokens", unit=MetricUnit.Count, value=padding.real_tokens)
    metrics.add_metric(name="PaddedTokens", unit=MetricUnit.Count, value=padding.padded_tokens)
    metrics.add_metric(name="InferenceMs", unit=MetricUnit.Milliseconds, value=inference_ms)
    metrics.flush_metrics()


def run_batch(items: list[InferItem], started_ms: int) -> dict[str, ResultRecord]:
    """Run the model once over the batch, padded to its longest member."""
    embedded = get_embedder().embed([item.text for item in items])
    padding = batch_padding([item.length for item in items])
    batch_id = uuid.uuid4().hex
    done_ms = int(time.time() * 1000)
    _emit_batch_metrics(items[0].buffer, len(items), padding, embedded.inference_ms)
    return {
        item.message_id: ResultRecord(
            embedding=embedded.vectors[i], batch_id=batch_id, batch_size=len(items),
            padded_length=embedded.padded_length, batch_real_tokens=padding.real_tokens,
            queue_wait_ms=max(0, started_ms - item.enqueued_at_ms),
            inference_ms=embedded.inference_ms, completed_at_ms=done_ms, device=embedded.device,
        )
        for i, item in enumerate(items)
    }


def _process(event: dict, context: object) -> dict:
    started_ms = int(time.time() * 1000)
    items: dict[str, InferItem] = {}
    errors: dict[str, Exception] = {}
    for record in event.get("Records", []):
        try:
            item = parse_record(record)
            items[item.message_id] = item
        except MalformedMessage as exc:
            errors[record.get("messageId", "")] = exc
    results: dict[str, ResultRecord] = {}
    if items:
        try:
            results = run_batch(list(items.values()), started_ms)
        except Exception as exc:  # model or input failure: every member fails and is retried
            logger.exception("batch failed", extra={"batch_size": len(items)})
            errors.update({message_id: exc for message_id in items})

    def store_one(record: SQSRecord) -> None:
        if record.message_id in errors:
            raise errors[record.message_id]
        item = items[record.message_id]
        if not deps.result_store().complete(item.request_id, results[record.message_id]):
            # Redelivery of a message whose result is already stored: success, no new write.
            duplicate = EphemeralMetrics(namespace="MBS", service="infer")
            duplicate.add_metric(name="DuplicateDeliveries", unit=MetricUnit.Count, value=1)
            duplicate.flush_metrics()
            logger.info("duplicate delivery", extra={"request_id": item.request_id})

    # A processor per invocation: BatchProcessor holds the batch's state, and the local stack
    # runs several invocations at once in one process.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(event, store_one, processor, context)


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    return _process(event, context)
