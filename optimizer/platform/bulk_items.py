"""The bulk (async) path's per-text and per-batch items. Pure.

request_paths.bulk_cost adds the rest of that path (empty receives while the event source
mapping long-polls, log lines, egress); these are the items it shares with the first edition's
cost model, kept here so that the estimator, the simulator and the path functions price them
one way. A BulkShape says how texts arrive: alone (the default) or in lists of up to 100 per
POST, with per-text items or as a job with S3 output (functions/shared/jobs.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from optimizer.platform.cost_breakdown import CostBreakdown, RequestPath
from optimizer.platform.pricing import MB_PER_GB, Pricing

SQS_BATCH_MAX = 10  # ReceiveMessage and DeleteMessageBatch take at most 10 messages per call
LIST_MAX_TEXTS = 100  # texts per POST /v1/requests (functions/shared/submission.py MAX_TEXTS)
# Per-request fixed items (the same under every plan, so they never decide between plans):
# the client POSTs the text and GETs its result once: two HTTP API requests.
API_REQUESTS_PER_REQUEST = 2
# Two small functions sit on that path: ingest (tokenize, send to SQS, put PENDING) and results
# (one GetItem). Our assumption: 256 MB each (the tokenizers wheel and powertools do not fit
# comfortably in 128 MB) and 15 ms warm (two in-region AWS API calls of ~5 ms plus tokenizing).
FRONT_INVOCATIONS_PER_REQUEST = 2
FRONT_MEMORY_MB = 256
FRONT_DURATION_MS = 15.0
# Each further text of a list adds ~1 ms to a front invocation (tokenizing it in ingest, turning
# its float16 result into JSON in results). Our assumption, not measured on Lambda.
FRONT_MS_PER_EXTRA_TEXT = 1.0
# DynamoDB on-demand, a text with its own items: the PENDING put (<1 KB: 1 WRU; BatchWriteItem
# bills each item as a PutItem) and the result update (1 WRU: the float16 item stays under 1 KB,
# functions/shared/items.py, and an update bills the larger of the item before and after);
# one strongly consistent read (<4 KB: 1 RRU), or in a batch read (GET /v1/requests?ids=,
# eventually consistent) half a read unit an item.
DDB_WRITE_UNITS_PER_REQUEST = 2
DDB_READ_UNITS_PER_REQUEST = 1
DDB_EVENTUAL_READ_UNITS = 0.5
# The shape prices texts sent alone unless told: the worst case, so a plan priced without
# knowing how its clients submit is never flattered. Pass BulkShape(texts_per_call=100) (and
# s3_job=True) for lists.
DEFAULT_TEXTS_PER_CALL = 1
# A job with S3 output pays per batch (one part object) and per (batch, job) (one count update,
# and one part read at assembly). Our assumption: batches of 10 (the event source mapping's
# default BatchSize), each cut from one list's consecutive messages, so a job's texts per batch
# is the batch size. benchmarks/bench_bulk_cost.py derives both from a plan and shows how the
# cost moves with them.
DEFAULT_TEXTS_PER_BATCH = 10.0


@dataclass(frozen=True)
class BulkShape:
    """How texts reach the bulk path: texts per POST, client reads per POST, and, for a job
    with S3 output (no per-text item), the mean texts of one job in one batch."""

    texts_per_call: int = DEFAULT_TEXTS_PER_CALL
    s3_job: bool = False
    reads_per_call: float = 1.0  # GETs per POST: the batch read, or the job read, once done
    texts_per_batch: float = DEFAULT_TEXTS_PER_BATCH  # a job's part objects: one per batch
    texts_per_job_batch: float | None = None  # a job's texts per batch; None: as many as fit

    def __post_init__(self) -> None:
        if not 1 <= self.texts_per_call <= LIST_MAX_TEXTS:
            raise ValueError(f"texts_per_call must be in 1..{LIST_MAX_TEXTS}, "
                             f"got {self.texts_per_call}")
        if self.reads_per_call < 0 or self.texts_per_batch < 1:
            raise ValueError(f"need reads_per_call >= 0 and texts_per_batch >= 1, got "
                             f"{self.reads_per_call}, {self.texts_per_batch}")
        if self.texts_per_job_batch is not None and not 1 <= self.texts_per_job_batch <= min(
                self.texts_per_batch, self.texts_per_call):
            raise ValueError(f"texts_per_job_batch must be in 1..min(texts_per_batch, "
                             f"texts_per_call), got {self.texts_per_job_batch}")

    @property
    def job_batch_texts(self) -> float:
        """A job's texts per batch it appears in: one count update and one part read each."""
        if self.texts_per_job_batch is not None:
            return self.texts_per_job_batch
        return min(self.texts_per_batch, float(self.texts_per_call))


TEXTS_ALONE = BulkShape()  # the default shape

# Each per-text item and the breakdown field it is billed under (S3 requests go in store_usd
# beside DynamoDB: the results' storage).
PER_TEXT_FIELDS = {"api": "api_usd", "front": "ingest_usd", "sqs_send": "queue_usd",
                   "ddb_write": "store_usd", "ddb_read": "store_usd", "s3_put": "store_usd",
                   "s3_get": "store_usd"}


def sends_per_text(shape: BulkShape) -> float:
    """SendMessage (alone) or SendMessageBatch calls (lists, 10 messages a call) per text.

    A list spread over k buffers needs up to k - 1 calls more (at 100 texts and 4 buffers,
    0.03 a text, $0.012 per 1M): left out, the best case.
    """
    calls = math.ceil(shape.texts_per_call / SQS_BATCH_MAX)
    return calls / shape.texts_per_call


def per_text_units(shape: BulkShape) -> dict[str, float]:
    """Billed units per text of each fixed item: calls, invocations, request units, requests."""
    n, reads = float(shape.texts_per_call), shape.reads_per_call
    units = {"api": (1 + reads) / n, "front": (1 + reads) / n, "sqs_send": sends_per_text(shape)}
    if not shape.s3_job:
        read_units = DDB_READ_UNITS_PER_REQUEST if n == 1 else DDB_EVENTUAL_READ_UNITS
        return {**units, "ddb_write": DDB_WRITE_UNITS_PER_REQUEST,
                "ddb_read": reads * read_units, "s3_put": 0.0, "s3_get": 0.0}
    per_job_batch = shape.job_batch_texts
    return {**units,
            # the job item's put, and per (batch, job) one count update (1 WRU: < 1 KB)
            "ddb_write": 1 / n + 1 / per_job_batch,
            # each job read: one strongly consistent GetItem of the job item
            "ddb_read": reads / n,
            # a part per batch (every job's lines); once per job, the assembled object
            "s3_put": 1 / shape.texts_per_batch + 1 / n,
            # per (batch, job) a part read at assembly; a HEAD per job read; the download
            "s3_get": 1 / per_job_batch + reads / n + 1 / n}


def per_text_usd(shape: BulkShape, pricing: Pricing, arch: str = "x86") -> dict[str, float]:
    """USD per text of each fixed item (per_text_units priced)."""
    duration_ms = FRONT_DURATION_MS + FRONT_MS_PER_EXTRA_TEXT * (shape.texts_per_call - 1)
    price = {"api": pricing.api_http_request_usd,
             "front": pricing.lambda_invocation_usd(duration_ms, FRONT_MEMORY_MB, arch),
             "sqs_send": pricing.sqs_request_usd, "ddb_write": pricing.ddb_write_request_usd,
             "ddb_read": pricing.ddb_read_request_usd, "s3_put": pricing.s3_put_request_usd,
             "s3_get": pricing.s3_get_request_usd}
    return {item: units * price[item] for item, units in per_text_units(shape).items()}


def receive_calls(batch_sizes: np.ndarray, batches: np.ndarray | None = None) -> float:
    """Non-empty ReceiveMessage calls: each batch's messages in calls of 10.

    batches: how many batches of each size (the estimator's expectations); None: one each.
    """
    calls = np.ceil(np.asarray(batch_sizes, dtype=np.float64) / SQS_BATCH_MAX)
    return float(np.sum(calls if batches is None else calls * np.asarray(batches)))


def sqs_calls(batch_sizes: np.ndarray) -> int:
    """Receive plus delete calls for these batches (each batch's messages in calls of 10)."""
    sizes = np.asarray(batch_sizes, dtype=np.int64)
    return int(2 * np.sum(-(-sizes // SQS_BATCH_MAX)))


def fixed_usd(requests: float, pricing: Pricing, arch: str = "x86",
              shape: BulkShape = TEXTS_ALONE) -> dict[str, float]:
    """The per-request items (api_usd, ingest_usd, store_usd) for `requests` texts.

    The SQS sends are not among them: queue_usd also carries the per-batch receives and
    deletes, and run_cost and bulk_cost add sends_per_text there.
    """
    out = {"api_usd": 0.0, "ingest_usd": 0.0, "store_usd": 0.0}
    for item, usd in per_text_usd(shape, pricing, arch).items():
        if PER_TEXT_FIELDS[item] in out:
            out[PER_TEXT_FIELDS[item]] += requests * usd
    return out


def run_cost(requests: int, batch_sizes: np.ndarray, billed_ms: np.ndarray,
             memory_mb: np.ndarray, pricing: Pricing, arch: str = "x86",
             shape: BulkShape = TEXTS_ALONE) -> CostBreakdown:
    """Bulk-path cost of `requests` requests served by invocations of these sizes, billed ms,
    memory: the per-request and per-batch items only (request_paths.bulk_cost adds the rest)."""
    gb_s = float(np.sum(np.asarray(billed_ms, dtype=np.float64) / 1000.0
                        * np.asarray(memory_mb, dtype=np.float64) / MB_PER_GB))
    return CostBreakdown(
        infer_compute_usd=gb_s * pricing.lambda_gb_s_usd(arch),
        infer_request_usd=len(batch_sizes) * pricing.lambda_request_usd,
        queue_usd=(requests * sends_per_text(shape) + sqs_calls(batch_sizes))
        * pricing.sqs_request_usd,
        **fixed_usd(requests, pricing, arch, shape),
        path=RequestPath.BULK,
    )
