"""Buffer queue port: send an accepted request to its buffer's queue."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any


class QueueSender(ABC):
    @abstractmethod
    def send(self, buffer_name: str, message: dict[str, Any]) -> str:
        """Enqueue `message` on the buffer's queue; returns the message id."""


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

    def send(self, buffer_name: str, message: dict[str, Any]) -> str:
        try:
            url = self._urls[buffer_name]
        except KeyError:
            raise KeyError(f"no queue for buffer {buffer_name!r}") from None
        reply = self._sqs.send_message(QueueUrl=url, MessageBody=json.dumps(message))
        return reply["MessageId"]
