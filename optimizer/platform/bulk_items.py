"""The bulk (async) path's per-request and per-batch items, priced as before issue 12. Pure.

request_paths.bulk_cost adds the rest of that path (empty receives while the event source
mapping long-polls, log lines, egress); these are the items it shares with the first edition's
cost model, kept here so that the estimator, the simulator and the path functions price them
one way.
"""

from __future__ import annotations

import numpy as np

from optimizer.platform.cost_breakdown import CostBreakdown, RequestPath
from optimizer.platform.pricing import MB_PER_GB, Pricing

SQS_BATCH_MAX = 10  # ReceiveMessage and DeleteMessageBatch take at most 10 messages per call
# Per-request fixed items (the same under every plan, so they never decide between plans):
# the client POSTs the text and GETs its result once: two HTTP API requests.
API_REQUESTS_PER_REQUEST = 2
# Two small functions sit on that path: ingest (tokenize, send to SQS, put PENDING) and results
# (one GetItem). Our assumption: 256 MB each (the tokenizers wheel and powertools do not fit
# comfortably in 128 MB) and 15 ms warm (two in-region AWS API calls of ~5 ms plus tokenizing).
FRONT_INVOCATIONS_PER_REQUEST = 2
FRONT_MEMORY_MB = 256
FRONT_DURATION_MS = 15.0
# DynamoDB on-demand: PENDING put (<1 KB: 1 WRU), result put (384 floats, ~1.5 KB: 2 WRU),
# one strongly consistent read of the result (<4 KB: 1 RRU).
DDB_WRITE_UNITS_PER_REQUEST = 3
DDB_READ_UNITS_PER_REQUEST = 1


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


def fixed_usd(requests: float, pricing: Pricing, arch: str = "x86") -> dict[str, float]:
    """The per-request items (api_usd, ingest_usd, store_usd) for `requests` requests."""
    front = pricing.lambda_invocation_usd(FRONT_DURATION_MS, FRONT_MEMORY_MB, arch)
    store = (DDB_WRITE_UNITS_PER_REQUEST * pricing.ddb_write_request_usd
             + DDB_READ_UNITS_PER_REQUEST * pricing.ddb_read_request_usd)
    return {
        "api_usd": requests * API_REQUESTS_PER_REQUEST * pricing.api_http_request_usd,
        "ingest_usd": requests * FRONT_INVOCATIONS_PER_REQUEST * front,
        "store_usd": requests * store,
    }


def run_cost(requests: int, batch_sizes: np.ndarray, billed_ms: np.ndarray,
             memory_mb: np.ndarray, pricing: Pricing, arch: str = "x86") -> CostBreakdown:
    """Bulk-path cost of `requests` requests served by invocations of these sizes, billed ms,
    memory: the per-request and per-batch items only (request_paths.bulk_cost adds the rest)."""
    gb_s = float(np.sum(np.asarray(billed_ms, dtype=np.float64) / 1000.0
                        * np.asarray(memory_mb, dtype=np.float64) / MB_PER_GB))
    return CostBreakdown(
        infer_compute_usd=gb_s * pricing.lambda_gb_s_usd(arch),
        infer_request_usd=len(batch_sizes) * pricing.lambda_request_usd,
        queue_usd=(requests + sqs_calls(batch_sizes)) * pricing.sqs_request_usd,
        **fixed_usd(requests, pricing, arch),
        path=RequestPath.BULK,
    )
