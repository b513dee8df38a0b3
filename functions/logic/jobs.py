"""Jobs with S3 output: part lines, the part writes, assembly, and GET /v1/jobs/{id}.

The layout and its invariant are in functions/shared/jobs.py. A line is what the final object
holds for one text: {"index", "id", "status": "DONE", "embedding", "length", "truncated"} or
{"index", "id", "status": "FAILED", "reason"}. In a part, each line also names its "job" (a
batch's part holds the lines of every job in the batch); the final object leaves it out.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from functions.shared.items import DONE, FAILED, decode_embedding, encode_embedding
from functions.shared.jobs import JobRecord, JobStore, ResultObjects, part_key

RUNNING = "RUNNING"


def done_line(index: int, request_id: str, embedding: Any, length: int,
              full_length: int) -> dict[str, Any]:
    """A DONE text's line; the embedding as stored elsewhere: float16, shortest decimals."""
    return {"index": index, "id": request_id, "status": DONE,
            "embedding": decode_embedding(encode_embedding(embedding)), "length": length,
            "truncated": full_length > length}


def failed_line(index: int, request_id: str, reason: str) -> dict[str, Any]:
    return {"index": index, "id": request_id, "status": FAILED, "reason": reason[:1000]}


def encode_lines(lines: Iterable[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()


def decode_lines(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]


def write_batch_part(jobs: JobStore, objects: ResultObjects,
                     lines_by_job: Mapping[str, Sequence[dict[str, Any]]]
                     ) -> dict[str, Exception]:
    """A batch's DONE lines, every job's in one part; then one count update per job.

    The part goes first (the invariant); the error of each job whose update failed is
    returned (a failed PUT fails them all), so that its texts are retried.
    """
    part_id = uuid.uuid4().hex
    try:
        objects.put(part_key(part_id), encode_lines(
            {**line, "job": job_id} for job_id, lines in lines_by_job.items() for line in lines),
            {})
    except Exception as exc:
        return dict.fromkeys(lines_by_job, exc)
    errors: dict[str, Exception] = {}
    for job_id, lines in lines_by_job.items():
        try:
            jobs.add_done(job_id, [line["index"] for line in lines], part_id)
        except Exception as exc:
            errors[job_id] = exc
    return errors


def write_failed_part(jobs: JobStore, objects: ResultObjects, job_id: str,
                      lines: Sequence[dict[str, Any]]) -> bool:
    """FAILED lines: the part first, then the count; False when an index was DONE already."""
    part_id = uuid.uuid4().hex
    objects.put(part_key(part_id), encode_lines({**line, "job": job_id} for line in lines), {})
    return jobs.add_failed(job_id, [line["index"] for line in lines], part_id)


def read_parts(objects: ResultObjects, job: JobRecord) -> list[dict[str, Any]]:
    """Every line of the job in the parts its item names (duplicates included), less "job"."""
    lines: list[dict[str, Any]] = []
    for part_id in sorted(job.parts):
        raw = objects.get(part_key(part_id))
        if raw is not None:
            lines += [{k: v for k, v in line.items() if k != "job"}
                      for line in decode_lines(raw) if line.get("job") == job.id]
    return lines


def final_lines(job: JobRecord, lines: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per index, in order, as the counts say: DONE's line if DONE, else FAILED's.

    An index counted but with no line (which `mbs audit` reports) gets a FAILED line saying so.
    """
    by_status: dict[tuple[int, str], dict[str, Any]] = {}
    for line in lines:
        by_status.setdefault((int(line["index"]), line["status"]), line)
    out = []
    for index in range(job.total):
        wanted = DONE if index in job.done else FAILED
        line = by_status.get((index, wanted))
        out.append(line if line is not None else
                   failed_line(index, "", "no result line was found for this text"))
    return out


def job_view(jobs: JobStore, objects: ResultObjects, job_id: str, caller: str
             ) -> dict[str, Any] | None:
    """The job's status for its caller; None when unknown or another tenant's (as for requests).

    RUNNING: counts so far. DONE: the counts and `url`, a presigned link to the JSON lines. The
    object is written by the first GET after the counts cover every text; two GETs at once
    write the same bytes to the same key.
    """
    job = jobs.get(job_id)
    if job is None or job.tenant != caller:
        return None
    out: dict[str, Any] = {"id": job.id, "total": job.total, "done": len(job.done),
                           "failed": len(job.failed_only), "pending": job.pending}
    if job.pending:
        return {**out, "status": RUNNING}
    if objects.head(job.object_key) is None:
        objects.put(job.object_key, encode_lines(final_lines(job, read_parts(objects, job))),
                    {"done": str(out["done"]), "failed": str(out["failed"])})
    return {**out, "status": DONE, "url": objects.url(job.object_key)}
