"""Results storage port, and its DynamoDB implementation (idempotent, conditional writes)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

PENDING, DONE, FAILED = "PENDING", "DONE", "FAILED"


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


def encode_embedding(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def decode_embedding(raw: bytes) -> list[float]:
    return np.frombuffer(raw, dtype="<f4").astype(float).tolist()


class DynamoResultStore(ResultStore):
    """One item per request, keyed by id; TTL on expires_at_s."""

    def __init__(self, table_name: str, client: Any) -> None:
        self._table = table_name
        self._ddb = client
        self._conditional_failed = client.exceptions.ConditionalCheckFailedException

    def put_pending(self, record: PendingRecord) -> None:
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
        self._ddb.put_item(
            TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(id)"
        )

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
            {
                "status": {"S": DONE},
                "embedding": {"B": encode_embedding(result.embedding)},
                "batch_id": {"S": result.batch_id},
                "batch_size": {"N": str(result.batch_size)},
                "padded_length": {"N": str(result.padded_length)},
                "batch_real_tokens": {"N": str(result.batch_real_tokens)},
                "queue_wait_ms": {"N": str(result.queue_wait_ms)},
                "inference_ms": {"N": f"{result.inference_ms:.3f}"},
                "completed_at_ms": {"N": str(result.completed_at_ms)},
                "device": {"S": result.device},
            },
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
        return None if item is None else _public_view(item)


_INT_FIELDS = ("length", "full_length", "enqueued_at_ms", "batch_size", "padded_length",
               "batch_real_tokens", "queue_wait_ms", "completed_at_ms", "slo_ms", "attempts")


def _public_view(item: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB item -> the JSON the results API returns."""
    out: dict[str, Any] = {"id": item["id"]["S"], "status": item["status"]["S"]}
    for key in ("tenant", "buffer", "batch_id", "device", "reason", "last_error"):
        if key in item:
            out[key] = item[key]["S"]
    for key in _INT_FIELDS:
        if key in item:
            out[key] = int(item[key]["N"])
    if "inference_ms" in item:
        out["inference_ms"] = float(item["inference_ms"]["N"])
    out["truncated"] = out.get("full_length", 0) > out.get("length", 0)
    if "embedding" in item:
        out["embedding"] = decode_embedding(bytes(item["embedding"]["B"]))
    return out
