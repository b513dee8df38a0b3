"""SQS batch -> one padded forward pass -> idempotent result writes, partial failures reported."""

from __future__ import annotations

import time

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from functions.logic.infer_batch import (
    ForwardPass,
    JobPorts,
    infer_records,
    store_job_parts,
    store_outcome,
)
from functions.shared import deps

logger = Logger(service="infer")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _emit_batch_metrics(forward: ForwardPass) -> None:
    # EphemeralMetrics keeps no shared state, so concurrent batches in one process (the local
    # stack) cannot mix their dimensions; on Lambda one process runs one batch at a time anyway.
    metrics = EphemeralMetrics(namespace="MBS", service="infer")
    metrics.add_dimension(name="buffer", value=forward.buffer)
    metrics.add_metric(name="BatchSize", unit=MetricUnit.Count, value=forward.size)
    metrics.add_metric(name="RealTokens", unit=MetricUnit.Count,
                       value=forward.padding.real_tokens)
    metrics.add_metric(name="PaddedTokens", unit=MetricUnit.Count,
                       value=forward.padding.padded_tokens)
    metrics.add_metric(name="InferenceMs", unit=MetricUnit.Milliseconds,
                       value=forward.inference_ms)
    metrics.flush_metrics()


def _count(name: str) -> None:
    metrics = EphemeralMetrics(namespace="MBS", service="infer")
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    metrics.flush_metrics()


@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    outcome = infer_records(event.get("Records", []), deps.embedder, _now_ms(), _now_ms)
    for forward in outcome.passes:
        _emit_batch_metrics(forward)
    if outcome.failed:
        logger.warning("batch members failed", extra={"failed": len(outcome.failed),
                                                      "batch_size": len(outcome.items)})
    store = deps.result_store()
    jobs = JobPorts(deps.job_store(), deps.result_objects())
    # A job's texts are stored per (batch, job): one part object and one count update each.
    job_errors = store_job_parts(jobs, outcome)
    for job_id, error in job_errors.items():
        logger.warning("job part not stored", extra={"job_id": job_id, "error": repr(error)})

    def store_one(record: SQSRecord) -> None:
        if not store_outcome(store, outcome, record.message_id, jobs, job_errors):
            # Redelivery of a message whose result is already stored: success, no new write.
            _count("DuplicateDeliveries")
            logger.info("duplicate delivery",
                        extra={"request_id": outcome.items[record.message_id].request_id})

    # A processor per invocation: BatchProcessor holds the batch's state, and the local stack
    # runs several invocations at once in one process.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(event, store_one, processor, context)
