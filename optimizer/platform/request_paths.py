"""Line-item cost of a run on each request path. Pure functions over plain values.

Every function returns a CostBreakdown (cost_breakdown.py). The infer function's bill (billed
GB-seconds with INIT, invocations) comes from the caller, who has it from the simulator or the
estimator; these functions add the rest of the path:

- online (the default): per client request, one HTTP API request (metered per 512 KB of the
  response), Cloud Map discovery calls, the dispatcher's log lines and the response's egress;
  per batch, a log line of the dispatcher and the infer function's own START/END/REPORT lines;
  per run, the dispatcher's Fargate task-seconds and public IPv4 addresses, the registered
  Cloud Map instances and the VPC link (no charge). Nothing per request goes to a queue or a
  table. `online_request_cost` is the part that splits by buffer; `online_run_cost` is the
  part that depends on the run's duration (duration_s) and the fleet (task_seconds, from
  dispatcher_fleet), and enters a plan's bill once.
- bulk (the async path): bulk_items.run_cost's items for a BulkShape (texts alone by default:
  two HTTP API requests, two front functions, two DynamoDB write units and one read and an SQS
  send per text; in lists of up to 100, each per call; as a job with S3 output, no per-text
  item but a part object and a count update per batch and job), a receive and a delete per
  10 messages of a batch, plus the event source mapping's empty receives while it long-polls,
  log lines and egress.
- plain_lambda: one Lambda invocation per request behind the HTTP API; no dispatcher, queue or
  table. Cold starts reach it as billed INIT milliseconds inside the caller's bill.

Sizes and log volumes below are assumptions, documented where they are set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from optimizer.platform.bulk_items import TEXTS_ALONE, BulkShape, fixed_usd, sends_per_text
from optimizer.platform.cost_breakdown import CostBreakdown, RequestPath
from optimizer.platform.dispatcher_fleet import DEFAULT_TASK, DispatcherTask
from optimizer.platform.pricing import BYTES_PER_GB, HOURS_PER_MONTH, MB_PER_GB, Pricing

EMBEDDING_DIM = 384  # all-MiniLM-L6-v2
# The service writes each float32 component in its shortest form that reads back to the same
# float32 (orjson, infra/dispatcher/responses.py): ~11.3 characters for components of size ~0.05,
# plus ",": 12.2-12.3 bytes a float measured over seeds (Python's json module, widening to
# float64, wrote 22). A test re-measures it with the service's own serializer.
FLOAT_JSON_BYTES = 12
# encoding_format "base64": 384 little-endian float32 = 1,536 bytes, base64 -> 2,048 characters.
# The official openai Python client asks for base64 unless told otherwise.
BASE64_EMBEDDING_BYTES = 4 * math.ceil(EMBEDDING_DIM * 4 / 3)
EMBEDDING_BYTES = {"float": EMBEDDING_DIM * FLOAT_JSON_BYTES, "base64": BASE64_EMBEDDING_BYTES}
# Our assumptions for the rest of a response: per item, the object, index and embedding keys
# (~45 bytes) plus MBS's optional fields (buffer, padded length, batch size, queue wait: ~75
# bytes); per response, the list envelope with model and usage (~150 bytes) and the status
# line and headers API Gateway sends (~300 bytes).
ITEM_OVERHEAD_BYTES = 120
ENVELOPE_BYTES = 150
HEADER_BYTES = 300
# The bulk path's POST answers with the request id and status (~150 bytes and headers).
SUBMIT_REPLY_BYTES = 150
# CloudWatch Logs volume, our assumptions: Lambda's START, END and REPORT lines per invocation
# (~70 + ~60 + ~220 bytes, REPORT longer when it carries Init Duration); one JSON access line
# per request and one per batch from the dispatcher; the ingest function's structured
# "accepted" line (powertools JSON with the Lambda context keys).
LAMBDA_PLATFORM_LOG_BYTES = 350
DISPATCHER_LOG_BYTES_PER_REQUEST = 250
DISPATCHER_LOG_BYTES_PER_BATCH = 200
INGEST_LOG_BYTES_PER_REQUEST = 450
# HTTP API's Cloud Map integration "uses DiscoverInstances to identify resources" and spreads
# requests over the healthy ones it returns (API Gateway developer guide, private integrations;
# checked). Whether it calls once per request or caches, and whether the calls are billed to the
# account, is not documented there: we count one billed call per request, the worst case. Set it
# to 0.0 if a deployed bill shows no Cloud Map API calls.
DISCOVER_CALLS_PER_REQUEST = 1.0
# Lambda's SQS event source mapping long-polls each queue with several pollers while idle; our
# assumption is five pollers (the documented initial concurrency of five batches) and the
# 20-second maximum wait, so ~900 empty receives an hour per queue. Not checked here.
ESM_POLLERS_PER_QUEUE = 5
SQS_MAX_WAIT_S = 20.0


@dataclass(frozen=True)
class InferBill:
    """What the infer function is billed for over a run."""

    gb_s: float  # billed GB-seconds, INIT included
    invocations: float

    @classmethod
    def from_invocations(cls, billed_ms: np.ndarray, memory_mb: np.ndarray) -> InferBill:
        """One row per invocation: billed ms (rounded, INIT included) and memory."""
        billed = np.asarray(billed_ms, dtype=np.float64)
        gb_s = float(np.sum(billed / 1000.0 * np.asarray(memory_mb, dtype=np.float64)
                            / MB_PER_GB))
        return cls(gb_s=gb_s, invocations=float(billed.size))

    @classmethod
    def uniform(cls, invocations: float, duration_ms: float, memory_mb: int, pricing: Pricing,
                extra_billed_ms: float = 0.0) -> InferBill:
        """`invocations` alike of duration_ms each, plus extra_billed_ms (INIT of cold starts)."""
        billed_ms = invocations * pricing.billed_ms(duration_ms) + extra_billed_ms
        return cls(gb_s=billed_ms / 1000.0 * memory_mb / MB_PER_GB, invocations=invocations)


def response_bytes(inputs: float, encoding: str = "float") -> float:
    """Bytes on the wire of one /v1/embeddings response carrying `inputs` embeddings."""
    if encoding not in EMBEDDING_BYTES:
        raise ValueError(f"encoding must be one of {sorted(EMBEDDING_BYTES)}, got {encoding!r}")
    per_item = ITEM_OVERHEAD_BYTES + EMBEDDING_BYTES[encoding]
    return HEADER_BYTES + ENVELOPE_BYTES + inputs * per_item


def infer_cost(bill: InferBill, pricing: Pricing, arch: str = "x86") -> CostBreakdown:
    """The infer function's GB-seconds and request fees."""
    return CostBreakdown(infer_compute_usd=bill.gb_s * pricing.lambda_gb_s_usd(arch),
                         infer_request_usd=bill.invocations * pricing.lambda_request_usd)


def _gb_usd(total_bytes: float, usd_per_gb: float) -> float:
    return total_bytes / BYTES_PER_GB * usd_per_gb


def _front(requests: float, inputs: float | None, encoding: str,
           pricing: Pricing) -> tuple[float, float]:
    """Metered HTTP API requests and the responses' bytes, at the mean inputs per request."""
    inputs = requests if inputs is None else inputs
    if requests < 0 or inputs < requests:
        raise ValueError(f"need 0 <= requests <= inputs, got requests {requests}, "
                         f"inputs {inputs}")
    one = response_bytes(inputs / requests if requests else 0.0, encoding)
    return requests * pricing.api_requests(one), requests * one


def online_request_cost(requests: float, bill: InferBill, pricing: Pricing, *,
                        inputs: float | None = None, encoding: str = "float",
                        arch: str = "x86") -> CostBreakdown:
    """Online path, the part that scales with requests and batches (split it by buffer)."""
    metered, egress = _front(requests, inputs, encoding, pricing)
    log_bytes = (requests * DISPATCHER_LOG_BYTES_PER_REQUEST
                 + bill.invocations * (DISPATCHER_LOG_BYTES_PER_BATCH + LAMBDA_PLATFORM_LOG_BYTES))
    return infer_cost(bill, pricing, arch) + CostBreakdown(
        api_usd=metered * pricing.api_http_request_usd,
        front_door_usd=requests * DISCOVER_CALLS_PER_REQUEST * pricing.cloud_map_discover_call_usd,
        logs_usd=_gb_usd(log_bytes, pricing.logs_ingest_gb_usd),
        egress_usd=_gb_usd(egress, pricing.egress_gb_usd),
        path=RequestPath.ONLINE)


def online_run_cost(duration_s: float, task_seconds: float, pricing: Pricing,
                    task: DispatcherTask = DEFAULT_TASK) -> CostBreakdown:
    """Online path, the part that scales with time: the fleet, its Cloud Map instances, the link.

    task_seconds: tasks x duration_s for a fixed fleet, or dispatcher_fleet.fleet_task_seconds
    for an autoscaled one. Each running task is one registered Cloud Map instance.
    """
    if duration_s < 0 or task_seconds < 0:
        raise ValueError(f"duration_s and task_seconds must be >= 0, got {duration_s}, "
                         f"{task_seconds}")
    task_hours = task_seconds / 3600.0
    instance_months = task_hours / HOURS_PER_MONTH
    return CostBreakdown(
        dispatcher_compute_usd=task_hours * task.compute_hour_usd(pricing),
        dispatcher_ipv4_usd=task_hours * task.ipv4_hour_usd(pricing),
        front_door_usd=(instance_months * pricing.cloud_map_instance_month_usd
                        + duration_s / 3600.0 * pricing.vpc_link_hour_usd),
        path=RequestPath.ONLINE)


def online_cost(requests: float, bill: InferBill, duration_s: float, task_seconds: float,
                pricing: Pricing, *, inputs: float | None = None, encoding: str = "float",
                task: DispatcherTask = DEFAULT_TASK, arch: str = "x86") -> CostBreakdown:
    """A whole run on the online path."""
    return (online_request_cost(requests, bill, pricing, inputs=inputs, encoding=encoding,
                                arch=arch)
            + online_run_cost(duration_s, task_seconds, pricing, task))


def sqs_empty_receives(duration_s: float, queues: int, nonempty_receives: float = 0.0,
                       pollers_per_queue: int = ESM_POLLERS_PER_QUEUE,
                       wait_time_s: float = SQS_MAX_WAIT_S) -> float:
    """ReceiveMessage calls that return nothing: each poller waits wait_time_s per empty call.

    An upper bound: a poller busy with messages is taken to keep polling at the same pace, so
    its non-empty receives replace empty ones one for one.
    """
    if not 0.0 < wait_time_s <= SQS_MAX_WAIT_S:
        raise ValueError(f"wait_time_s must be in (0, {SQS_MAX_WAIT_S:g}] (long polling), "
                         f"got {wait_time_s}")
    if duration_s < 0 or queues < 0 or pollers_per_queue < 0:
        raise ValueError(f"duration_s, queues and pollers_per_queue must be >= 0, got "
                         f"{duration_s}, {queues}, {pollers_per_queue}")
    polls = queues * pollers_per_queue * duration_s / wait_time_s
    return max(0.0, polls - nonempty_receives)


def bulk_cost(requests: float, bill: InferBill, receive_calls: float, duration_s: float,
              queues: int, pricing: Pricing, *, encoding: str = "float", arch: str = "x86",
              pollers_per_queue: int = ESM_POLLERS_PER_QUEUE,
              wait_time_s: float = SQS_MAX_WAIT_S,
              shape: BulkShape = TEXTS_ALONE) -> CostBreakdown:
    """A whole run on the bulk path; receive_calls: non-empty receives (one per 10 messages).

    queues: every queue an event source mapping polls (each buffer's queue, and its DLQ where a
    handler consumes it). requests: texts; shape: how they were submitted (bulk_items).
    """
    posts = requests / shape.texts_per_call
    reads = posts * shape.reads_per_call
    # Each text's result once (in a read's reply or the job's object), the envelope and headers
    # per read, and per POST its headers and a short entry per text.
    per_item = response_bytes(1.0, encoding) - response_bytes(0.0, encoding)
    egress = (requests * (per_item + SUBMIT_REPLY_BYTES) + reads * (HEADER_BYTES + ENVELOPE_BYTES)
              + posts * HEADER_BYTES)
    log_bytes = ((posts + reads) * LAMBDA_PLATFORM_LOG_BYTES + posts * INGEST_LOG_BYTES_PER_REQUEST
                 + bill.invocations * LAMBDA_PLATFORM_LOG_BYTES)
    empty = sqs_empty_receives(duration_s, queues, receive_calls, pollers_per_queue, wait_time_s)
    return infer_cost(bill, pricing, arch) + CostBreakdown(
        queue_usd=(requests * sends_per_text(shape) + 2 * receive_calls)
        * pricing.sqs_request_usd,
        queue_polling_usd=empty * pricing.sqs_request_usd,
        logs_usd=_gb_usd(log_bytes, pricing.logs_ingest_gb_usd),
        egress_usd=_gb_usd(egress, pricing.egress_gb_usd),
        **fixed_usd(requests, pricing, arch, shape),
        path=RequestPath.BULK)


def plain_lambda_cost(requests: float, bill: InferBill, pricing: Pricing, *,
                      inputs: float | None = None, encoding: str = "float",
                      arch: str = "x86") -> CostBreakdown:
    """A whole run of one Lambda invocation per request behind the HTTP API.

    bill: one invocation per request (InferBill.uniform, with the cold starts' billed INIT as
    extra_billed_ms, or the simulator's no-batching invocations).
    """
    metered, egress = _front(requests, inputs, encoding, pricing)
    return infer_cost(bill, pricing, arch) + CostBreakdown(
        api_usd=metered * pricing.api_http_request_usd,
        logs_usd=_gb_usd(bill.invocations * LAMBDA_PLATFORM_LOG_BYTES, pricing.logs_ingest_gb_usd),
        egress_usd=_gb_usd(egress, pricing.egress_gb_usd),
        path=RequestPath.PLAIN_LAMBDA)
