"""Jobs whose results go to S3 as one object: the job record (results table) and the object store.

A job is one list submission with `"output": {"s3": true}`. Its record lives in the results
table under the key `job-<id>` (request ids are 32 hex digits, so the two never meet), with the
tenant and the member request ids packed as 16 raw bytes each (100 ids: 1.6 KB, 2 write units).
`mbs audit` counts request items only (those with enqueued_at_ms).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

JOB_KEY_PREFIX = "job-"
ID_BYTES = 16  # a uuid4 hex id as raw bytes
URL_EXPIRY_S = 3600  # a presigned GET stays valid for an hour (within the signer's session)


@dataclass(frozen=True)
class JobRecord:
    id: str
    tenant: str
    request_ids: tuple[str, ...]
    created_at_ms: int
    expires_at_s: int

    @property
    def object_key(self) -> str:
        return f"jobs/{self.id}.jsonl"


class JobStore(ABC):
    @abstractmethod
    def put(self, job: JobRecord) -> None:
        """Record a new job."""

    @abstractmethod
    def get(self, job_id: str) -> JobRecord | None:
        """The job, or None if unknown (or expired)."""


class DynamoJobStore(JobStore):
    def __init__(self, table_name: str, client: Any) -> None:
        self._table, self._ddb = table_name, client

    def put(self, job: JobRecord) -> None:
        members = b"".join(bytes.fromhex(i) for i in job.request_ids)
        self._ddb.put_item(TableName=self._table, Item={
            "id": {"S": JOB_KEY_PREFIX + job.id}, "tenant": {"S": job.tenant},
            "members": {"B": members}, "created_at_ms": {"N": str(job.created_at_ms)},
            "expires_at_s": {"N": str(job.expires_at_s)}},
            ConditionExpression="attribute_not_exists(id)")

    def get(self, job_id: str) -> JobRecord | None:
        item = self._ddb.get_item(TableName=self._table,
                                  Key={"id": {"S": JOB_KEY_PREFIX + job_id}}).get("Item")
        if item is None:
            return None
        raw = bytes(item["members"]["B"])
        ids = tuple(raw[i:i + ID_BYTES].hex() for i in range(0, len(raw), ID_BYTES))
        return JobRecord(job_id, item["tenant"]["S"], ids, int(item["created_at_ms"]["N"]),
                         int(item["expires_at_s"]["N"]))


class ResultObjects(ABC):
    """Where a finished job's results are written, and how its owner downloads them."""

    @abstractmethod
    def head(self, key: str) -> dict[str, str] | None:
        """The object's metadata, or None if it was not written yet."""

    @abstractmethod
    def put(self, key: str, body: bytes, metadata: dict[str, str]) -> None:
        """Write the object (the same key always gets the same content)."""

    @abstractmethod
    def url(self, key: str) -> str:
        """A presigned GET URL for the object."""


class S3ResultObjects(ResultObjects):
    def __init__(self, bucket: str, client: Any) -> None:
        self._bucket, self._s3 = bucket, client

    def head(self, key: str) -> dict[str, str] | None:
        try:
            return self._s3.head_object(Bucket=self._bucket, Key=key).get("Metadata", {})
        except self._s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def put(self, key: str, body: bytes, metadata: dict[str, str]) -> None:
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, Metadata=metadata,
                            ContentType="application/x-ndjson")

    def url(self, key: str) -> str:
        return self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=URL_EXPIRY_S)
