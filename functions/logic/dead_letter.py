"""A request whose message exhausted its retries becomes FAILED, with the last error as why."""

from __future__ import annotations

from enum import Enum

from functions.logic.jobs import failed_line, write_failed_part
from functions.shared.jobs import JobStore, ResultObjects, error_key
from functions.shared.store import ResultStore


class DeadLetter(Enum):
    FAILED = "failed"  # the request is now FAILED with the reason
    UNKNOWN = "unknown"  # no such request (never accepted, or expired by TTL)
    ALREADY_TERMINAL = "already_terminal"  # it was DONE or FAILED already: nothing written


def fail_dead_letter(store: ResultStore, request_id: str, receive_count: int) -> DeadLetter:
    """Mark the request FAILED with its last recorded error (or the retry count)."""
    item = store.get(request_id)
    if item is None:
        return DeadLetter.UNKNOWN
    reason = item.get("last_error") or f"failed {receive_count} deliveries"
    if store.fail(request_id, f"dead-lettered after {receive_count} deliveries: {reason}"):
        return DeadLetter.FAILED
    return DeadLetter.ALREADY_TERMINAL


def fail_job_dead_letter(jobs: JobStore, objects: ResultObjects, job_id: str, index: int,
                         request_id: str, receive_count: int) -> DeadLetter:
    """Count a job's text FAILED, with infer's last noted error, unless it is DONE already."""
    job = jobs.get(job_id)
    if job is None:
        return DeadLetter.UNKNOWN
    if index in job.done or index in job.failed:
        return DeadLetter.ALREADY_TERMINAL
    noted = objects.get(error_key(job_id, index))
    reason = noted.decode("utf-8", errors="replace") if noted else \
        f"failed {receive_count} deliveries"
    line = failed_line(index, request_id,
                       f"dead-lettered after {receive_count} deliveries: {reason}")
    if write_failed_part(jobs, objects, job_id, [line]):
        return DeadLetter.FAILED
    return DeadLetter.ALREADY_TERMINAL
