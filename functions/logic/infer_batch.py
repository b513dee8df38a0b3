"""Infer's batch: SQS records -> items -> one padded forward pass (poison isolated) -> results."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from buffers.padding import PaddingStats, batch_padding
from functions.logic.isolation import isolate_failures
from functions.logic.jobs import done_line, write_batch_part
from functions.shared.jobs import JobStore, ResultObjects, error_key
from functions.shared.model import ModelLoadError, TextEmbedder
from functions.shared.store import ResultRecord, ResultStore


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
    job_id: str | None = None  # a job with S3 output: no request item, a line in a part
    job_index: int = 0
    full_length: int = 0


@dataclass(frozen=True)
class ForwardPass:
    """One successful run of the model: what the batch metrics report."""

    buffer: str
    size: int
    padding: PaddingStats
    inference_ms: float


@dataclass(frozen=True)
class InferOutcome:
    """Every record of a batch, by message id: its item, and its result or its error."""

    items: dict[str, InferItem]
    results: dict[str, ResultRecord]
    malformed: dict[str, Exception]  # records that could not be parsed
    failed: dict[str, Exception]  # items the model failed on (poison isolated)
    passes: tuple[ForwardPass, ...]

    @property
    def errors(self) -> dict[str, Exception]:
        return {**self.malformed, **self.failed}


def parse_record(record: dict[str, Any]) -> InferItem:
    """One SQS record's body -> an InferItem; MalformedMessage names what is wrong."""
    try:
        body = json.loads(record["body"])
        job = body.get("job")
        return InferItem(
            message_id=record["messageId"], request_id=str(body["id"]), text=str(body["text"]),
            length=int(body["length"]), buffer=str(body["buffer"]),
            enqueued_at_ms=int(body["enqueued_at_ms"]),
            job_id=None if job is None else str(job["id"]),
            job_index=0 if job is None else int(job["index"]),
            full_length=int(body.get("full_length", body["length"])),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedMessage(f"message {record.get('messageId')!r}: {exc!r}") from None


def parse_records(records: Sequence[dict[str, Any]]
                  ) -> tuple[dict[str, InferItem], dict[str, Exception]]:
    """Items by message id, and the malformed records' errors by message id."""
    items: dict[str, InferItem] = {}
    errors: dict[str, Exception] = {}
    for record in records:
        try:
            item = parse_record(record)
            items[item.message_id] = item
        except MalformedMessage as exc:
            errors[record.get("messageId", "")] = exc
    return items, errors


def run_batch(items: Sequence[InferItem], embedder: TextEmbedder, started_ms: int,
              clock_ms: Callable[[], int]) -> tuple[list[ResultRecord], ForwardPass]:
    """Run the model once over the batch, padded to its longest member; one result per item."""
    embedded = embedder.embed([item.text for item in items])
    padding = batch_padding([item.length for item in items])
    batch_id = uuid.uuid4().hex
    done_ms = clock_ms()
    results = [
        ResultRecord(
            embedding=embedded.vectors[i], batch_id=batch_id, batch_size=len(items),
            padded_length=embedded.padded_length, batch_real_tokens=padding.real_tokens,
            queue_wait_ms=max(0, started_ms - item.enqueued_at_ms),
            inference_ms=embedded.inference_ms, completed_at_ms=done_ms, device=embedded.device,
        )
        for i, item in enumerate(items)
    ]
    return results, ForwardPass(items[0].buffer, len(items), padding, embedded.inference_ms)


def infer_records(records: Sequence[dict[str, Any]], load_embedder: Callable[[], TextEmbedder],
                  started_ms: int, clock_ms: Callable[[], int]) -> InferOutcome:
    """Parse the batch's records and run the model over the good ones, isolating poison.

    The model is loaded inside each run, so a model that cannot load fails every member with
    its reason (retried, then dead-lettered) instead of failing the invocation.
    """
    items, malformed = parse_records(records)
    passes: list[ForwardPass] = []

    def run(batch: Sequence[InferItem]) -> list[ResultRecord]:
        results, forward = run_batch(batch, load_embedder(), started_ms, clock_ms)
        passes.append(forward)
        return results

    ordered = list(items.values())
    # A model that cannot load is not an input problem: bisecting would only repeat the failure.
    ok, failed = isolate_failures(ordered, run, whole_batch_errors=(ModelLoadError,))
    return InferOutcome(
        items=items,
        results={ordered[i].message_id: result for i, result in ok.items()},
        malformed=malformed,
        failed={ordered[i].message_id: error for i, error in failed.items()},
        passes=tuple(passes),
    )


@dataclass(frozen=True)
class JobPorts:
    jobs: JobStore
    objects: ResultObjects | None  # None: no results bucket (ingest then takes no S3 job)


def store_job_parts(ports: JobPorts, outcome: InferOutcome) -> dict[str, Exception]:
    """One part with the DONE lines of every job in the batch, and one count update per job.

    Returns the error of each job whose write failed: its records are then retried.
    """
    by_job: dict[str, list[dict[str, Any]]] = {}
    for message_id, item in outcome.items.items():
        if item.job_id is not None and (result := outcome.results.get(message_id)) is not None:
            by_job.setdefault(item.job_id, []).append(done_line(
                item.job_index, item.request_id, result.embedding, item.length,
                item.full_length))
    if not by_job:
        return {}
    if ports.objects is None:
        return dict.fromkeys(by_job, RuntimeError("a job's text arrived, but this deployment "
                                                  "has no results bucket"))
    return write_batch_part(ports.jobs, ports.objects, by_job)


def _note_error(store: ResultStore, jobs: JobPorts | None, item: InferItem, reason: str) -> None:
    if item.job_id is None:
        store.note_error(item.request_id, reason)
    elif jobs is not None and jobs.objects is not None:
        # Rare path (a failed delivery): the dead-letter handler reads it as the reason.
        jobs.objects.put(error_key(item.job_id, item.job_index), reason.encode(), {})


def store_outcome(store: ResultStore, outcome: InferOutcome, message_id: str,
                  jobs: JobPorts | None = None,
                  job_errors: dict[str, Exception] | None = None) -> bool:
    """Store one record's outcome: True for a new result, False for a result already stored.

    A record that failed raises its error (after noting it on its request, or beside its job,
    for the DLQ's reason), so the batch processor reports it for retry. A job's record was
    stored by store_job_parts: it raises that job's write error, if any.
    """
    item = outcome.items.get(message_id)
    if (error := outcome.errors.get(message_id)) is not None:
        if item is not None:
            _note_error(store, jobs, item, repr(error)[:500])
        raise error
    if item is None or message_id not in outcome.results:
        raise KeyError(f"no outcome for message {message_id!r}")
    if item.job_id is not None:
        if (job_error := (job_errors or {}).get(item.job_id)) is not None:
            raise job_error
        return True
    return store.complete(item.request_id, outcome.results[message_id])
