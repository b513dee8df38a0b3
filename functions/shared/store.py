"""Results storage port, and its DynamoDB implementation (idempotent, conditional writes).

The item layout (short result names, the float16 embedding) is in functions/shared/items.py.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from functions.shared.items import (
    DONE,
    FAILED,
    PENDING,
    RESULT_ATTRIBUTES,
    encode_embedding,
    public_view,
)

__all__ = ["DONE", "FAILED", "PENDING", "DynamoResultStore", "MissingRequest", "PendingRecord",
           "ResultRecord", "ResultStore"]
# DynamoDB batch limits (API reference, BatchWriteItem and BatchGetItem): 25 puts or deletes, and
# 100 keys, per call. Items left unprocessed (throttling) are retried with a backoff.
BATCH_WRITE_MAX = 25
BATCH_GET_MAX = 100
BATCH_RETRIES = 5
BATCH_BACKOFF_S = 0.05


@dataclass(frozen=True)
class PendingRecord:
    id: str
    tenant: str
    buffer: str
    length: int
    full_length: int
    enqueued_at_ms: int
    expires_at_s: int
    slo_ms: int | None = None


@dataclass(frozen=True)
class ResultRecord:
    embedding: np.ndarray  # (384,) float32
    batch_id: str
    batch_size: int
    padded_length: int
    batch_real_tokens: int
    queue_wait_ms: int
    inference_ms: float
    completed_at_ms: int
    device: str


class MissingRequest(LookupError):
    """A result arrived for a request with no item (never accepted, or expired by TTL)."""


class ResultStore(ABC):
    @abstractmethod
    def put_pending(self, record: PendingRecord) -> None:
        """Record an accepted request; never overwrites an existing id."""

    @abstractmethod
    def complete(self, request_id: str, result: ResultRecord) -> bool:
        """Store a result; False (and no write) if the request already has one.

        Raises MissingRequest when there is no item at all, so the message is not dropped as a
        duplicate: it is retried and ends in the DLQ, where it can be seen.
        """

    @abstractmethod
    def fail(self, request_id: str, reason: str) -> bool:
        """Mark a request FAILED; False (and no write) if it already reached a terminal state."""

    @abstractmethod
    def note_error(self, request_id: str, reason: str) -> None:
        """Record why a delivery failed on a PENDING request (the DLQ handler reports it)."""

    @abstractmethod
    def get(self, request_id: str) -> dict[str, Any] | None:
        """The request's public view, or None if unknown."""

    def put_pending_many(self, records: Sequence[PendingRecord]) -> None:
        """Record many accepted requests (fresh ids) in as few calls as the store allows."""
        for record in records:
            self.put_pending(record)

    def get_many(self, request_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Public views of the known ids among `request_ids` (distinct), by id."""
        return {i: view for i in request_ids if (view := self.get(i)) is not None}


def _chunks(values: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [values[start:start + size] for start in range(0, len(values), size)]


class DynamoResultStore(ResultStore):
    """One item per request, keyed by id; TTL on expires_at_s."""

    def __init__(self, table_name: str, client: Any) -> None:
        self._table = table_name
        self._ddb = client
        self._conditional_failed = client.exceptions.ConditionalCheckFailedException

    def put_pending(self, record: PendingRecord) -> None:
        self._ddb.put_item(
            TableName=self._table, Item=pending_item(record),
            ConditionExpression="attribute_not_exists(id)")

    def _terminal_write(self, request_id: str, values: dict[str, Any]) -> bool:
        names = {f"#{k}": k for k in values}
        update = "SET " + ", ".join(f"#{k} = :{k}" for k in values)
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key={"id": {"S": request_id}},
                UpdateExpression=update,
                # The redelivery guard: only a PENDING request may take a terminal state, so a
                # redelivered message never overwrites or duplicates a stored result.
                ConditionExpression="attribute_exists(id) AND #status = :pending",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={
                    **{f":{k}": v for k, v in values.items()},
                    ":pending": {"S": PENDING},
                },
            )
        except self._conditional_failed:
            # Rare path (redelivery): one read tells a duplicate from a missing request.
            if self._ddb.get_item(TableName=self._table, Key={"id": {"S": request_id}},
                                  ConsistentRead=True).get("Item") is None:
                raise MissingRequest(f"no request item with id {request_id!r}") from None
            return False
        return True

    def complete(self, request_id: str, result: ResultRecord) -> bool:
        return self._terminal_write(
            request_id,
            {"status": {"S": DONE}, **result_values(result)},
        )

    def fail(self, request_id: str, reason: str) -> bool:
        return self._terminal_write(
            request_id, {"status": {"S": FAILED}, "reason": {"S": reason[:1000]}}
        )

    def note_error(self, request_id: str, reason: str) -> None:
        try:
            self._ddb.update_item(
                TableName=self._table, Key={"id": {"S": request_id}},
                UpdateExpression="SET last_error = :e ADD attempts :one",
                ConditionExpression="#status = :pending",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":e": {"S": reason[:1000]}, ":one": {"N": "1"},
                                           ":pending": {"S": PENDING}})
        except self._conditional_failed:
            return  # already terminal, or gone: nothing to note

    def get(self, request_id: str) -> dict[str, Any] | None:
        item = self._ddb.get_item(
            TableName=self._table, Key={"id": {"S": request_id}}, ConsistentRead=True
        ).get("Item")
        return None if item is None else public_view(item)

    def put_pending_many(self, records: Sequence[PendingRecord]) -> None:
        # BatchWriteItem takes no condition: the ids are fresh uuid4s (122 random bits), so
        # there is nothing to overwrite. Each item costs the same write unit as a PutItem.
        for chunk in _chunks(records, BATCH_WRITE_MAX):
            pending = {self._table: [{"PutRequest": {"Item": pending_item(r)}} for r in chunk]}
            for attempt in range(BATCH_RETRIES + 1):
                pending = self._ddb.batch_write_item(RequestItems=pending).get(
                    "UnprocessedItems") or {}
                if not pending:
                    break
                if attempt == BATCH_RETRIES:
                    left = len(pending[self._table])
                    raise RuntimeError(f"{left} PENDING item(s) unprocessed after "
                                       f"{BATCH_RETRIES} retries")
                time.sleep(BATCH_BACKOFF_S * 2 ** attempt)

    def get_many(self, request_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        # Eventually consistent first (half a read unit per item): an item only ever goes from
        # PENDING to one terminal state and is never rewritten, so a stale read shows an older
        # state (PENDING), never a wrong result. Only an id the read misses (a PENDING put a
        # moment ago) is read again, strongly consistent, so a caller never sees its own fresh
        # request as unknown.
        found = self._batch_get(request_ids, consistent=False)
        missing = [i for i in request_ids if i not in found]
        if missing:
            found.update(self._batch_get(missing, consistent=True))
        return {i: public_view(item) for i, item in found.items()}

    def _batch_get(self, request_ids: Sequence[str], consistent: bool
                   ) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(list(request_ids), BATCH_GET_MAX):
            wanted = {self._table: {"Keys": [{"id": {"S": i}} for i in chunk],
                                    "ConsistentRead": consistent}}
            for attempt in range(BATCH_RETRIES + 1):
                reply = self._ddb.batch_get_item(RequestItems=wanted)
                for item in reply.get("Responses", {}).get(self._table, []):
                    found[item["id"]["S"]] = item
                wanted = reply.get("UnprocessedKeys") or {}
                if not wanted:
                    break
                if attempt == BATCH_RETRIES:
                    raise RuntimeError(f"{len(wanted[self._table]['Keys'])} key(s) unprocessed "
                                       f"after {BATCH_RETRIES} retries")
                time.sleep(BATCH_BACKOFF_S * 2 ** attempt)
        return found


def pending_item(record: PendingRecord) -> dict[str, Any]:
    """A PENDING item, as put_pending and put_pending_many write it."""
    item = {
        "id": {"S": record.id},
        "status": {"S": PENDING},
        "tenant": {"S": record.tenant},
        "buffer": {"S": record.buffer},
        "length": {"N": str(record.length)},
        "full_length": {"N": str(record.full_length)},
        "enqueued_at_ms": {"N": str(record.enqueued_at_ms)},
        "expires_at_s": {"N": str(record.expires_at_s)},
    }
    if record.slo_ms is not None:
        item["slo_ms"] = {"N": str(record.slo_ms)}
    return item


def result_values(result: ResultRecord) -> dict[str, Any]:
    """The attributes a result adds to its item, under their short stored names."""
    values = {
        "embedding": {"B": encode_embedding(result.embedding)},
        "batch_id": {"B": bytes.fromhex(result.batch_id)},
        "batch_size": {"N": str(result.batch_size)},
        "padded_length": {"N": str(result.padded_length)},
        "batch_real_tokens": {"N": str(result.batch_real_tokens)},
        "queue_wait_ms": {"N": str(result.queue_wait_ms)},
        "inference_ms": {"N": f"{result.inference_ms:.3f}"},
        "completed_at_ms": {"N": str(result.completed_at_ms)},
        "device": {"S": result.device},
    }
    return {RESULT_ATTRIBUTES[name]: value for name, value in values.items()}
