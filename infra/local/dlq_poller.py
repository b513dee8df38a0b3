"""Feeds each buffer's dead-letter queue to the DLQ handler, as an event source mapping would."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from infra.local.events import sqs_event

log = logging.getLogger("mbs.dlq")


class DeadLetterPoller:
    """One thread long-polling every DLQ in turn; deletes what the handler reports done."""

    def __init__(self, sqs: Any, dlq_urls: dict[str, str], dlq_arns: dict[str, str],
                 invoke: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self._sqs, self._urls, self._arns, self._invoke = sqs, dlq_urls, dlq_arns, invoke
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="dlq-poller")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for name, url in self._urls.items():
                try:
                    self._drain_once(name, url)
                except Exception:
                    if not self._stop.is_set():
                        log.exception("dead-letter poll failed on %s", name)
                        self._stop.wait(1.0)

    def _drain_once(self, name: str, url: str) -> None:
        messages = self._sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                             WaitTimeSeconds=1, AttributeNames=["All"]
                                             ).get("Messages", [])
        if not messages:
            return
        reply = self._invoke(sqs_event(messages, self._arns[name])) or {}
        failed = {f["itemIdentifier"] for f in reply.get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self._sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(done[start:start + 10])])
