"""Conservation audit: every accepted request is DONE, FAILED, or provably still in flight."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class AuditReport:
    accepted: int
    done: int
    failed: int
    pending: int  # PENDING items of any age
    stale_pending: int  # PENDING for longer than the grace period
    messages_in_queues: int  # visible + in flight, buffer queues
    messages_in_dlqs: int

    @property
    def unaccounted(self) -> int:
        """Stale PENDING requests that no message anywhere can still complete or fail."""
        return max(0, self.stale_pending - self.messages_in_queues - self.messages_in_dlqs)

    @property
    def ok(self) -> bool:
        return self.unaccounted == 0 and self.accepted == self.done + self.failed + self.pending

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "unaccounted": self.unaccounted, "ok": self.ok}


def reconcile(items: list[dict[str, Any]], since_ms: int, now_ms: int, grace_ms: int,
              messages_in_queues: int, messages_in_dlqs: int) -> AuditReport:
    """Count request items accepted since `since_ms` by state. Pure."""
    recent = [i for i in items if int(i["enqueued_at_ms"]) >= since_ms]
    states = Counter(i["status"] for i in recent)
    stale = sum(1 for i in recent if i["status"] == "PENDING"
                and now_ms - int(i["enqueued_at_ms"]) > grace_ms)
    return AuditReport(accepted=len(recent), done=states["DONE"], failed=states["FAILED"],
                       pending=states["PENDING"], stale_pending=stale,
                       messages_in_queues=messages_in_queues, messages_in_dlqs=messages_in_dlqs)


def scan_items(ddb: Any, table: str) -> list[dict[str, Any]]:
    """id, status and enqueued_at_ms of every request item (paginated scan).

    Job records (functions/shared/jobs.py) share the table; they have no enqueued_at_ms.
    """
    items, start = [], None
    while True:
        kwargs = {"TableName": table, "ProjectionExpression": "id, #s, enqueued_at_ms",
                  "FilterExpression": "attribute_exists(enqueued_at_ms)",
                  "ExpressionAttributeNames": {"#s": "status"}}
        if start:
            kwargs["ExclusiveStartKey"] = start
        page = ddb.scan(**kwargs)
        items += [{"id": i["id"]["S"], "status": i["status"]["S"],
                   "enqueued_at_ms": int(i["enqueued_at_ms"]["N"])} for i in page["Items"]]
        start = page.get("LastEvaluatedKey")
        if not start:
            return items


def queue_depth(sqs: Any, urls: list[str]) -> int:
    """Visible plus in-flight messages over these queues."""
    total = 0
    for url in urls:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
        total += sum(int(v) for v in attrs["Attributes"].values())
    return total


def audit_stack(ddb: Any, sqs: Any, table: str, queue_urls: list[str], dlq_urls: list[str],
                *, since_ms: int, now_ms: int, grace_ms: int) -> AuditReport:
    """Read a stack's table and queues and reconcile them: what `mbs audit` reports."""
    return reconcile(scan_items(ddb, table), since_ms=since_ms, now_ms=now_ms,
                     grace_ms=grace_ms, messages_in_queues=queue_depth(sqs, queue_urls),
                     messages_in_dlqs=queue_depth(sqs, dlq_urls))


def format_audit(report: AuditReport) -> str:
    """One line: the counts, the queues' depths and the verdict."""
    verdict = "OK" if report.ok else f"NOT OK: {report.unaccounted} request(s) unaccounted for"
    return (f"audit: accepted {report.accepted}  done {report.done}  failed {report.failed}  "
            f"in flight {report.pending} (stale {report.stale_pending})  messages: queues "
            f"{report.messages_in_queues}, DLQs {report.messages_in_dlqs}  -> {verdict}")
