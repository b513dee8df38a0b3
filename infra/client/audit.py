"""Conservation audit: every accepted request is DONE, FAILED, or provably still in flight.

Two kinds of accepted text are counted:
- a request with its own item (PENDING, then DONE or FAILED): the item says its state;
- a text of a job with S3 output (functions/shared/jobs.py), which has no item: the job item's
  DONE and FAILED index sets say its state, and every counted index must have its line in one
  of the part objects the job item names ("backed"). A counted index without a line is
  `unbacked`, a breach as bad as a lost request; a line written twice is only reported.
A text still PENDING past the grace period must have a message left in a queue or a DLQ.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from functions.logic.jobs import read_parts
from functions.shared.items import DONE, FAILED
from functions.shared.jobs import JOB_KEY_PREFIX, JobRecord, ResultObjects, record_from_item


@dataclass(frozen=True)
class JobTally:
    """One job's texts by state, from its item, checked against its parts' lines."""

    total: int
    done: int
    failed: int
    pending: int
    stale_pending: int  # pending while the job is older than the grace period
    unbacked: int  # indexes counted DONE or FAILED with no such line in any part
    duplicate_lines: int  # lines beyond the first for the same index and state


def tally_job(job: JobRecord, lines: Sequence[dict[str, Any]], now_ms: int,
              grace_ms: int) -> JobTally:
    """Reconcile a job's counts with its parts' lines. Pure."""
    seen = Counter((int(line["index"]), line["status"]) for line in lines)
    done_lines = {i for i, status in seen if status == DONE}
    failed_lines = {i for i, status in seen if status == FAILED}
    in_range = set(range(job.total))
    unbacked = (len(job.done - done_lines) + len(job.failed_only - failed_lines)
                + len((job.done | job.failed) - in_range))
    stale = job.pending if now_ms - job.created_at_ms > grace_ms else 0
    return JobTally(total=job.total, done=len(job.done & in_range),
                    failed=len(job.failed_only & in_range), pending=job.pending,
                    stale_pending=stale, unbacked=unbacked,
                    duplicate_lines=sum(seen.values()) - len(seen))


@dataclass(frozen=True)
class AuditReport:
    accepted: int
    done: int
    failed: int
    pending: int  # PENDING items of any age
    stale_pending: int  # PENDING for longer than the grace period
    messages_in_queues: int  # visible + in flight, buffer queues
    messages_in_dlqs: int
    jobs: int = 0  # jobs with S3 output; their texts are in the counts above
    unbacked: int = 0  # job texts counted with no line in any part (tally_job)
    duplicate_lines: int = 0  # job lines written twice (redeliveries): harmless

    @property
    def unaccounted(self) -> int:
        """Stale PENDING texts that no message anywhere can still complete or fail."""
        return max(0, self.stale_pending - self.messages_in_queues - self.messages_in_dlqs)

    @property
    def ok(self) -> bool:
        return (self.unaccounted == 0 and self.unbacked == 0
                and self.accepted == self.done + self.failed + self.pending)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "unaccounted": self.unaccounted, "ok": self.ok}


def reconcile(items: list[dict[str, Any]], since_ms: int, now_ms: int, grace_ms: int,
              messages_in_queues: int, messages_in_dlqs: int,
              jobs: Sequence[JobTally] = ()) -> AuditReport:
    """Count request items accepted since `since_ms` by state, plus the jobs' tallies. Pure."""
    recent = [i for i in items if int(i["enqueued_at_ms"]) >= since_ms]
    states = Counter(i["status"] for i in recent)
    stale = sum(1 for i in recent if i["status"] == "PENDING"
                and now_ms - int(i["enqueued_at_ms"]) > grace_ms)
    return AuditReport(accepted=len(recent) + sum(j.total for j in jobs),
                       done=states["DONE"] + sum(j.done for j in jobs),
                       failed=states["FAILED"] + sum(j.failed for j in jobs),
                       pending=states["PENDING"] + sum(j.pending for j in jobs),
                       stale_pending=stale + sum(j.stale_pending for j in jobs),
                       messages_in_queues=messages_in_queues, messages_in_dlqs=messages_in_dlqs,
                       jobs=len(jobs), unbacked=sum(j.unbacked for j in jobs),
                       duplicate_lines=sum(j.duplicate_lines for j in jobs))


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


def scan_jobs(ddb: Any, table: str) -> list[JobRecord]:
    """Every job item (paginated scan; request items are filtered out)."""
    jobs, start = [], None
    while True:
        kwargs = {"TableName": table, "FilterExpression": "begins_with(id, :j)",
                  "ExpressionAttributeValues": {":j": {"S": JOB_KEY_PREFIX}}}
        if start:
            kwargs["ExclusiveStartKey"] = start
        page = ddb.scan(**kwargs)
        jobs += [record_from_item(item) for item in page["Items"]]
        start = page.get("LastEvaluatedKey")
        if not start:
            return jobs


def queue_depth(sqs: Any, urls: list[str]) -> int:
    """Visible plus in-flight messages over these queues."""
    total = 0
    for url in urls:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
        total += sum(int(v) for v in attrs["Attributes"].values())
    return total


def audit_stack(ddb: Any, sqs: Any, table: str, queue_urls: list[str], dlq_urls: list[str],
                *, since_ms: int, now_ms: int, grace_ms: int,
                objects: ResultObjects | None = None) -> AuditReport:
    """Read a stack's table, queues and (with `objects`) its jobs' parts, and reconcile them:
    what `mbs audit` reports. Without `objects`, jobs are not counted."""
    tallies = [] if objects is None else [
        tally_job(job, read_parts(objects, job), now_ms, grace_ms)
        for job in scan_jobs(ddb, table) if job.created_at_ms >= since_ms]
    return reconcile(scan_items(ddb, table), since_ms=since_ms, now_ms=now_ms,
                     grace_ms=grace_ms, messages_in_queues=queue_depth(sqs, queue_urls),
                     messages_in_dlqs=queue_depth(sqs, dlq_urls), jobs=tallies)


def format_audit(report: AuditReport) -> str:
    """One line: the counts, the queues' depths and the verdict."""
    verdict = "OK" if report.ok else (
        f"NOT OK: {report.unaccounted} text(s) unaccounted for, {report.unbacked} counted "
        f"with no result line")
    return (f"audit: accepted {report.accepted}  done {report.done}  failed {report.failed}  "
            f"in flight {report.pending} (stale {report.stale_pending})  jobs {report.jobs}  "
            f"messages: queues {report.messages_in_queues}, DLQs {report.messages_in_dlqs}  "
            f"-> {verdict}")
