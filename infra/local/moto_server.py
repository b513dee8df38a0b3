"""moto's server with two SQS hot spots made linear: what infra/local/moto_process.py runs.

moto 5's SQS emulation does O(n) work per message on a queue of n messages:
- ReceiveMessage checks each message it returns against the queue's retention period through
  get_queue_attributes, which computes every attribute, three of them counting all n messages;
- DeleteMessage(Batch) scans the queue twice per receipt handle (any(), then a rebuild).
With 10,000 texts queued at once (a bulk run), both grow quadratic and the emulator, not the
model, sets the pace. Here the retention period is read from the queue directly, and a delete
stops at the message it finds. The answers are the same (a receipt handle belongs to one
message; the retention rule is unchanged), and so are the boto3 calls the functions make:
this only changes how fast the local stand-in for AWS answers them.
"""

from __future__ import annotations

import sys
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


def apply() -> None:
    """Patch moto's SQS models in this process (idempotent)."""
    from moto.sqs import models

    models.SQSBackend.is_message_valid_based_on_retention_period = _retention_ok
    models.Queue.delete_message = _delete_message


def main() -> None:
    """`python -m infra.local.moto_server -H HOST -p PORT`: moto.server's command line."""
    apply()
    from moto.server import main as moto_main

    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
