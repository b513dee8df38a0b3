"""moto's server with its SQS hot spots made linear: what infra/local/moto_process.py runs.

moto 5's SQS emulation does O(n) work per message on a queue of n messages:
- SendMessage reads the queue's attributes for one FIFO setting, and ReceiveMessage checks each
  message it returns against the retention period through get_queue_attributes: each computes
  every attribute, three of them counting all n messages (three passes);
- DeleteMessage(Batch) scans the queue twice per receipt handle (any(), then a rebuild).
With thousands of texts queued at once (a bulk run) these grow quadratic, and the emulator,
not the model, sets the pace: measured on 3,000 queued messages, moto answered about one
receive a second. Here the retention period is read from the queue directly, a delete stops
at the message it finds, the three counts come from one pass, and SendMessage skips them (it
reads one FIFO setting from the attributes, never a count). Every answer is the same, and so
are the boto3 calls the functions make: this only changes how fast the local stand-in for AWS
answers them.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import Any


def _retention_ok(self: Any, queue_name: str, message: Any) -> bool:
    from moto.core.utils import unix_time

    queue = self.get_queue(queue_name)
    retain_until = int(queue.message_retention_period) + message.sent_timestamp / 1000
    return retain_until > unix_time()


def _delete_message(self: Any, receipt_handle: str) -> None:
    from moto.sqs.exceptions import ReceiptHandleIsInvalid

    if receipt_handle in self.deleted_messages:
        return  # already deleted: moto (and SQS) accept a second delete
    index = next((i for i, m in enumerate(self._messages)
                  if m.had_receipt_handle(receipt_handle)), None)
    if index is None:
        raise ReceiptHandleIsInvalid()
    message = self._messages.pop(index)
    self.pending_messages.discard(message)
    self.deleted_messages.update(message.all_receipt_handles)


_sending = threading.local()  # set while SendMessage runs: it reads no count


def _counts(queue: Any) -> tuple[int, int, int]:
    """(visible, delayed, not visible) in one pass; zeros inside SendMessage, which never
    reads them (it asks the attributes for ContentBasedDeduplication only)."""
    if getattr(_sending, "active", False):
        return 0, 0, 0
    visible = delayed = hidden = 0
    for message in queue._messages:
        is_visible, is_delayed = message.visible, message.delayed
        visible += is_visible and not is_delayed
        delayed += is_delayed
        hidden += not is_visible
    return visible, delayed, hidden


def _sending_wrapper(send: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(send)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        _sending.active = True
        try:
            return send(*args, **kwargs)
        finally:
            _sending.active = False

    wrapped._mbs_wrapped = True  # type: ignore[attr-defined]
    return wrapped


def apply() -> None:
    """Patch moto's SQS models in this process (idempotent)."""
    from moto.sqs import models

    models.SQSBackend.is_message_valid_based_on_retention_period = _retention_ok
    models.Queue.delete_message = _delete_message
    models.Queue.approximate_number_of_messages = property(lambda q: _counts(q)[0])
    models.Queue.approximate_number_of_messages_delayed = property(lambda q: _counts(q)[1])
    models.Queue.approximate_number_of_messages_not_visible = property(lambda q: _counts(q)[2])
    if not getattr(models.SQSBackend.send_message, "_mbs_wrapped", False):
        models.SQSBackend.send_message = _sending_wrapper(models.SQSBackend.send_message)


def main() -> None:
    """`python -m infra.local.moto_server -H HOST -p PORT`: moto.server's command line."""
    apply()
    from moto.server import main as moto_main

    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
