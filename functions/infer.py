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
from botocore.exceptions import ClientError

from buffers.padding import PaddingStats, batch_padding
from functions.shared import deps
from functions.shared.model import ModelLoadError, get_embedder
from functions.shared.store import ResultRecord
from infra.local import faults

logger = Logger(service="infer")


class MalformedMessage(ValueError):
    """A message body that can never be processed (it goes to the DLQ after retries)."""


class PoisonInput(ValueError):
    """The model rejects this input (raised by the fault injector's poison marker)."""


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


def _count(name: str) -> None:
    metrics = EphemeralMetrics(namespace="MBS", service="infer")
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    metrics.flush_metrics()


def run_batch(items: list[InferItem], started_ms: int) -> dict[str, ResultRecord]:
    """Run the model once over the batch, padded to its longest member."""
    marker = faults.active().poison_marker
    if marker and any(marker in item.text for item in items):
        raise PoisonInput("the model rejected an input of this batch (injected poison)")
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


def run_isolating(items: list[InferItem], started_ms: int
                  ) -> tuple[dict[str, ResultRecord], dict[str, Exception]]:
    """Run the batch; if it fails on its input, bisect so that only the poison members fail.

    A batch that fails because of one bad input would otherwise fail every member on every
    retry. Halving costs O(log n) extra forward passes per poison message. A model that cannot
    load is not an input problem: every member fails at once and is retried.
    """
    try:
        return run_batch(items, started_ms), {}
    except ModelLoadError as exc:
        return {}, {item.message_id: exc for item in items}
    except Exception as exc:
        if len(items) == 1:
            return {}, {items[0].message_id: exc}
        middle = len(items) // 2
        left_ok, left_err = run_isolating(items[:middle], started_ms)
        right_ok, right_err = run_isolating(items[middle:], started_ms)
        return {**left_ok, **right_ok}, {**left_err, **right_err}


def _parse_all(event: dict) -> tuple[dict[str, InferItem], dict[str, Exception]]:
    items: dict[str, InferItem] = {}
    errors: dict[str, Exception] = {}
    for record in event.get("Records", []):
        try:
            item = parse_record(record)
            items[item.message_id] = item
        except MalformedMessage as exc:
            errors[record.get("messageId", "")] = exc
    return items, errors


def _process(event: dict, context: object) -> dict:
    started_ms = int(time.time() * 1000)
    injected = faults.begin_invocation()
    items, errors = _parse_all(event)
    results: dict[str, ResultRecord] = {}
    if items:
        results, failed = run_isolating(list(items.values()), started_ms)
        errors.update(failed)
        if failed:
            logger.warning("batch members failed", extra={"failed": len(failed),
                                                          "batch_size": len(items)})
    store = deps.result_store()
    writes = 0

    def store_one(record: SQSRecord) -> None:
        nonlocal writes
        item = items.get(record.message_id)
        if record.message_id in errors:
            if item is not None:
                store.note_error(item.request_id, repr(errors[record.message_id])[:500])
            raise errors[record.message_id]
        if faults.take_store_error():
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException",
                                         "Message": "injected throttle"}}, "UpdateItem")
        if not store.complete(item.request_id, results[record.message_id]):
            # Redelivery of a message whose result is already stored: success, no new write.
            _count("DuplicateDeliveries")
            logger.info("duplicate delivery", extra={"request_id": item.request_id})
        writes += 1
        crash_after = injected.crash_after_writes
        if crash_after is not None and writes >= crash_after:
            raise faults.InjectedCrash(f"process died after {writes} result writes")

    # A processor per invocation: BatchProcessor holds the batch's state, and the local stack
    # runs several invocations at once in one process.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(event, store_one, processor, context)
    if (sleep_ms := injected.sleep_ms) > 0:
        time.sleep(sleep_ms / 1000.0)  # injected: run past the queue's visibility timeout
    return response


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    return _process(event, context)
