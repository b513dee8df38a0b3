"""Jobs whose results go to S3: the job item (results table) and the object store.

A job is one list submission with `"output": {"s3": true}`. Its texts get no item of their own
(no PENDING item, no result item: a per-text item costs a write unit, $0.625 per 1M, alone over
half the bulk path's fixed-cost budget of $0.60). Instead:
- the job item, key `job-<id>` (request ids are 32 hex digits, so the two never meet), holds the
  tenant, the text count, two number sets (the indexes DONE and the indexes FAILED) and a binary
  set of the part objects that hold its lines (16-byte ids). With 100 texts in, say, 10 parts it
  is ~400 bytes, so each update is 1 write unit;
- infer writes ONE part object per batch, `jobs/parts/<part>.jsonl`, with a line per text of
  every job in the batch (an S3 PUT costs $5 per 1M: a part per batch and job would cost
  ~$0.45 per 1M texts when three length buffers split each list of 100), THEN per job in the
  batch one UpdateItem adds the indexes to DONE and the part to the job's parts. ADD on a set is
  a union, so a redelivered message never counts twice; a line written twice (a redelivery) is
  dropped at assembly. The order keeps the invariant `mbs audit` checks: every index counted
  DONE or FAILED has its line in a part the job item names;
- the dead-letter handler (and ingest, for texts it could not enqueue) writes FAILED lines the
  same way and adds the indexes to FAILED, unless one is DONE already;
- once DONE and FAILED cover every index, the first GET /v1/jobs/{id} reads the job's parts and
  writes its lines, in index order, to `jobs/<id>.jsonl` (functions/logic/jobs.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

JOB_KEY_PREFIX = "job-"
URL_EXPIRY_S = 3600  # a presigned GET stays valid for an hour (within the signer's session)


def part_key(part_id: str) -> str:
    """Where one part goes (a batch's lines, or FAILED lines); ids are fresh uuid4 hex."""
    return f"jobs/parts/{part_id}.jsonl"


def error_key(job_id: str, index: int) -> str:
    """Where infer notes why a job's text failed a delivery (the dead-letter handler reads it)."""
    return f"jobs/{job_id}/errors/{index}"


@dataclass(frozen=True)
class JobRecord:
    id: str
    tenant: str
    total: int
    created_at_ms: int
    expires_at_s: int
    done: frozenset[int] = frozenset()
    failed: frozenset[int] = frozenset()
    parts: frozenset[str] = frozenset()  # part ids (hex) holding this job's lines

    @property
    def object_key(self) -> str:
        return f"jobs/{self.id}.jsonl"

    @property
    def failed_only(self) -> frozenset[int]:
        """FAILED indexes that are not DONE (a DONE result wins over a later dead letter)."""
        return self.failed - self.done

    @property
    def pending(self) -> int:
        return self.total - len(self.done | self.failed)


class MissingJob(LookupError):
    """A write for a job with no item (never created, or expired by TTL)."""


class JobStore(ABC):
    @abstractmethod
    def put(self, job: JobRecord) -> None:
        """Record a new job (no index counted yet)."""

    @abstractmethod
    def get(self, job_id: str) -> JobRecord | None:
        """The job, or None if unknown (or expired)."""

    @abstractmethod
    def add_done(self, job_id: str, indexes: Sequence[int], part_id: str) -> JobRecord:
        """Count these indexes DONE, their lines in part `part_id` (set unions: idempotent)."""

    @abstractmethod
    def add_failed(self, job_id: str, indexes: Sequence[int], part_id: str) -> bool:
        """Count these indexes FAILED unless one is DONE already (then False, nothing written)."""


def record_from_item(item: dict[str, Any]) -> JobRecord:
    """A job item as DynamoDB returns it -> a JobRecord."""
    return JobRecord(
        item["id"]["S"].removeprefix(JOB_KEY_PREFIX), item["tenant"]["S"],
        int(item["total"]["N"]), int(item["created_at_ms"]["N"]),
        int(item["expires_at_s"]["N"]),
        frozenset(int(i) for i in item.get("done", {}).get("NS", [])),
        frozenset(int(i) for i in item.get("failed", {}).get("NS", [])),
        frozenset(bytes(p).hex() for p in item.get("parts", {}).get("BS", [])))


def _number_set(indexes: Sequence[int]) -> dict[str, list[str]]:
    return {"NS": [str(i) for i in sorted(set(indexes))]}


class DynamoJobStore(JobStore):
    def __init__(self, table_name: str, client: Any) -> None:
        self._table, self._ddb = table_name, client
        self._conditional_failed = client.exceptions.ConditionalCheckFailedException

    def _key(self, job_id: str) -> dict[str, Any]:
        return {"id": {"S": JOB_KEY_PREFIX + job_id}}

    def put(self, job: JobRecord) -> None:
        self._ddb.put_item(TableName=self._table, Item={
            **self._key(job.id), "tenant": {"S": job.tenant}, "total": {"N": str(job.total)},
            "created_at_ms": {"N": str(job.created_at_ms)},
            "expires_at_s": {"N": str(job.expires_at_s)}},
            ConditionExpression="attribute_not_exists(id)")

    def get(self, job_id: str) -> JobRecord | None:
        # Strongly consistent: a count read just after infer's update must include it.
        item = self._ddb.get_item(TableName=self._table, Key=self._key(job_id),
                                  ConsistentRead=True).get("Item")
        return None if item is None else record_from_item(item)

    def add_done(self, job_id: str, indexes: Sequence[int], part_id: str) -> JobRecord:
        try:
            reply = self._ddb.update_item(
                TableName=self._table, Key=self._key(job_id),
                UpdateExpression="ADD done :i, parts :p",
                # Without it, ADD would create a bare item for an unknown (or expired) job.
                ConditionExpression="attribute_exists(id)",
                ExpressionAttributeValues={":i": _number_set(indexes),
                                           ":p": {"BS": [bytes.fromhex(part_id)]}},
                ReturnValues="ALL_NEW")
        except self._conditional_failed:
            raise MissingJob(f"no job item with id {job_id!r}") from None
        return record_from_item(reply["Attributes"])

    def add_failed(self, job_id: str, indexes: Sequence[int], part_id: str) -> bool:
        wanted = sorted(set(indexes))
        values: dict[str, Any] = {":i": _number_set(wanted),
                                  ":p": {"BS": [bytes.fromhex(part_id)]}}
        conditions = ["attribute_exists(id)"]
        for n, index in enumerate(wanted):
            values[f":x{n}"] = {"N": str(index)}
            conditions.append(f"NOT contains(done, :x{n})")
        try:
            self._ddb.update_item(
                TableName=self._table, Key=self._key(job_id),
                UpdateExpression="ADD failed :i, parts :p",
                ConditionExpression=" AND ".join(conditions), ExpressionAttributeValues=values)
        except self._conditional_failed:
            return False
        return True


class ResultObjects(ABC):
    """Where jobs' parts and results are written, and how an owner downloads them."""

    @abstractmethod
    def head(self, key: str) -> dict[str, str] | None:
        """The object's metadata, or None if it was not written yet."""

    @abstractmethod
    def put(self, key: str, body: bytes, metadata: dict[str, str]) -> None:
        """Write the object."""

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None if there is none."""

    @abstractmethod
    def url(self, key: str) -> str:
        """A presigned GET URL for the object."""


def _missing(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return code in ("404", "NoSuchKey", "NotFound")


class S3ResultObjects(ResultObjects):
    def __init__(self, bucket: str, client: Any) -> None:
        self._bucket, self._s3 = bucket, client

    def head(self, key: str) -> dict[str, str] | None:
        try:
            return self._s3.head_object(Bucket=self._bucket, Key=key).get("Metadata", {})
        except self._s3.exceptions.ClientError as exc:
            if _missing(exc):
                return None
            raise

    def put(self, key: str, body: bytes, metadata: dict[str, str]) -> None:
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, Metadata=metadata,
                            ContentType="application/x-ndjson")

    def get(self, key: str) -> bytes | None:
        try:
            return self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except self._s3.exceptions.ClientError as exc:
            if _missing(exc):
                return None
            raise

    def url(self, key: str) -> str:
        return self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=URL_EXPIRY_S)
