"""Buffer queue port: send accepted requests to their buffer's queue, one or in batches."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

# SendMessageBatch (SQS API reference): at most 10 entries, and the entries' bodies together at
# most the queue's maximum message size, 256 KiB by default (262,144 bytes; the API allows up to
# 1 MiB on queues configured for it). We pack for the default.
SEND_BATCH_MAX_ENTRIES = 10
SEND_BATCH_MAX_BYTES = 256 * 1024


def message_body(message: dict[str, Any]) -> str:
    """The message as SQS carries it: JSON with non-ASCII escaped, so that every character is one
    SQS accepts (its allowed set excludes some, e.g. U+FFFE)."""
    return json.dumps(message)


def pack_batches(bodies: Sequence[str], max_entries: int = SEND_BATCH_MAX_ENTRIES,
                 max_bytes: int = SEND_BATCH_MAX_BYTES) -> list[list[int]]:
    """Indexes of `bodies` in send order, grouped into SendMessageBatch calls. Pure."""
    batches: list[list[int]] = []
    size = 0
    for index, body in enumerate(bodies):
        length = len(body.encode("utf-8"))
        if length > max_bytes:
            raise ValueError(f"message {index} is {length} bytes, over SQS's {max_bytes}")
        if not batches or len(batches[-1]) == max_entries or size + length > max_bytes:
            batches.append([])
            size = 0
        batches[-1].append(index)
        size += length
    return batches


class QueueSender(ABC):
    @abstractmethod
    def send(self, buffer_name: str, message: dict[str, Any]) -> str:
        """Enqueue `message` on the buffer's queue; returns the message id."""

    def send_many(self, buffer_name: str, messages: Sequence[dict[str, Any]]
                  ) -> list[Exception | None]:
        """Enqueue every message; per message, None when sent or the error that stopped it."""
        errors: list[Exception | None] = []
        for message in messages:
            try:
                self.send(buffer_name, message)
                errors.append(None)
            except Exception as exc:
                errors.append(exc)
        return errors


class QueueDepth(ABC):
    @abstractmethod
    def depth(self, buffer_name: str) -> int:
        """Approximate number of messages waiting on the buffer's queue."""


class SqsQueueDepth(QueueDepth):
    """ApproximateNumberOfMessages, cached for `ttl_s` per queue so ingest adds one
    GetQueueAttributes call per queue per second at most, whatever the request rate."""

    def __init__(self, queue_urls: dict[str, str], client: Any, clock: Any,
                 ttl_s: float = 1.0) -> None:
        self._urls, self._sqs, self._clock, self._ttl_s = queue_urls, client, clock, ttl_s
        self._cache: dict[str, tuple[float, int]] = {}

    def depth(self, buffer_name: str) -> int:
        now = self._clock()
        cached = self._cache.get(buffer_name)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        attrs = self._sqs.get_queue_attributes(QueueUrl=self._urls[buffer_name],
                                               AttributeNames=["ApproximateNumberOfMessages"])
        value = int(attrs["Attributes"]["ApproximateNumberOfMessages"])
        self._cache[buffer_name] = (now, value)
        return value


class SqsQueueSender(QueueSender):
    def __init__(self, queue_urls: dict[str, str], client: Any) -> None:
        self._urls = queue_urls
        self._sqs = client

    def _url(self, buffer_name: str) -> str:
        try:
            return self._urls[buffer_name]
        except KeyError:
            raise KeyError(f"no queue for buffer {buffer_name!r}") from None

    def send(self, buffer_name: str, message: dict[str, Any]) -> str:
        reply = self._sqs.send_message(QueueUrl=self._url(buffer_name),
                                       MessageBody=message_body(message))
        return reply["MessageId"]

    def send_many(self, buffer_name: str, messages: Sequence[dict[str, Any]]
                  ) -> list[Exception | None]:
        url = self._url(buffer_name)
        bodies = [message_body(m) for m in messages]
        errors: list[Exception | None] = [None] * len(messages)
        for batch in pack_batches(bodies):
            try:
                reply = self._sqs.send_message_batch(QueueUrl=url, Entries=[
                    {"Id": str(i), "MessageBody": bodies[i]} for i in batch])
            except Exception as exc:  # the whole call failed: every entry in it did
                for i in batch:
                    errors[i] = exc
                continue
            # A 200 reply can still hold failed entries (SendMessageBatch, "check for batch
            # errors even when the call returns an HTTP status code of 200").
            for failed in reply.get("Failed", []):
                errors[int(failed["Id"])] = RuntimeError(
                    f"SendMessageBatch entry failed: {failed.get('Code')}: "
                    f"{failed.get('Message', '')}")
        return errors
