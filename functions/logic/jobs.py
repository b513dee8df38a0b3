"""GET /v1/jobs/{id}: a job's progress, and once every member is done, its results in one object.

The object is written by the first GET after the job's last member reached a terminal state
(DONE or FAILED): no counter is kept per result, so infer's writes stay one per request, and
writing it again (two GETs at once) writes the same bytes to the same key.
"""

from __future__ import annotations

import json
from typing import Any

from functions.shared.items import DONE, PENDING
from functions.shared.jobs import JobRecord, JobStore, ResultObjects
from functions.shared.store import ResultStore

RUNNING = "RUNNING"


def jsonl(job: JobRecord, views: dict[str, dict[str, Any]]) -> bytes:
    """One line per text, in submission order: its id, status, and embedding or reason."""
    lines = []
    for index, request_id in enumerate(job.request_ids):
        view = views.get(request_id)
        line: dict[str, Any] = {"index": index, "id": request_id}
        if view is None:
            line.update(status="FAILED", reason="no such request (expired)")
        elif view["status"] == DONE:
            line.update(status=DONE, embedding=view["embedding"], length=view["length"],
                        truncated=view["truncated"])
        else:
            line.update(status=view["status"], reason=view.get("reason", ""))
        lines.append(json.dumps(line, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode("utf-8")


def job_view(jobs: JobStore, store: ResultStore, objects: ResultObjects, job_id: str,
             caller: str) -> dict[str, Any] | None:
    """The job's status for its caller; None when unknown or another tenant's (as for requests).

    RUNNING: counts so far. DONE: the counts and `url`, a presigned link to the JSON lines.
    """
    job = jobs.get(job_id)
    if job is None or job.tenant != caller:
        return None
    out: dict[str, Any] = {"id": job.id, "total": len(job.request_ids)}
    written = objects.head(job.object_key)
    if written is not None:  # done before: no read of the members
        return {**out, "done": int(written["done"]), "failed": int(written["failed"]),
                "pending": 0, "status": DONE, "url": objects.url(job.object_key)}
    views = store.get_many(job.request_ids)
    states = [views[i]["status"] if i in views else "FAILED" for i in job.request_ids]
    out.update(done=states.count(DONE), failed=len(states) - states.count(DONE)
               - states.count(PENDING), pending=states.count(PENDING))
    if out["pending"]:
        return {**out, "status": RUNNING}
    objects.put(job.object_key, jsonl(job, views),
                {"done": str(out["done"]), "failed": str(out["failed"])})
    return {**out, "status": DONE, "url": objects.url(job.object_key)}
