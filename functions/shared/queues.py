"""Buffer queue port: send an accepted request to its buffer's queue."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any


class QueueSender(ABC):
    @abstractmethod
    def send(self, buffer_name: str, message: dict[str, Any]) -> str:
        """Enqueue `message` on the buffer's queue; returns the message id."""


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
