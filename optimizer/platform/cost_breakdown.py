"""What a run costs, by line item of the AWS bill: the breakdown every cost model returns.

Three figures come from one breakdown (DESIGN.md: every cost figure says what it counts):
- end to end (`end_to_end_usd`, alias `total_usd`): every line item of the request path;
- the inference function alone (`infer_usd`): billed GB-seconds, INIT included, plus Lambda's
  request fee, the metric of the MBS paper;
- what batching changes (`batching_usd`): the inference function plus the per-batch items (SQS
  receive and delete on the bulk path; the online path has none beyond the invocation itself).

A breakdown is the sum of its line items, so breakdowns add: per buffer, then per plan. The
run-level items (dispatcher tasks, Cloud Map instances, SQS polling) depend on the run's
duration, not on the requests, and belong to the plan, never to one buffer
(request_paths.py says where each enters).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum

PER_MILLION = 1e6


class RequestPath(StrEnum):
    """How a request reaches the inference function (DESIGN.md, "Two paths for a request")."""

    ONLINE = "online"  # HTTP API -> VPC link -> dispatcher on Fargate -> Lambda Invoke
    BULK = "bulk"  # HTTP API -> ingest -> SQS -> event source mapping -> infer -> table <- GET
    PLAIN_LAMBDA = "plain_lambda"  # HTTP API -> one Lambda invocation per request


@dataclass(frozen=True)
class CostBreakdown:
    """USD for a whole run, by line item. Totals are derived properties."""

    infer_compute_usd: float = 0.0  # billed GB-seconds of the infer function, INIT included
    infer_request_usd: float = 0.0  # Lambda's per-invocation fee
    queue_usd: float = 0.0  # SQS send per request; receive and delete per 10 messages of a batch
    api_usd: float = 0.0  # HTTP API requests (metered per 512 KB)
    ingest_usd: float = 0.0  # the bulk path's front functions: ingest and results
    store_usd: float = 0.0  # DynamoDB
    front_door_usd: float = 0.0  # VPC link (no charge) and Cloud Map: discovery calls, instances
    dispatcher_compute_usd: float = 0.0  # Fargate vCPU-hours and GB-hours of the dispatcher
    dispatcher_ipv4_usd: float = 0.0  # one public IPv4 address per running dispatcher task
    queue_polling_usd: float = 0.0  # SQS receives that come back empty while pollers wait
    logs_usd: float = 0.0  # CloudWatch Logs ingestion: dispatcher and Lambda functions
    egress_usd: float = 0.0  # the responses' data transfer out to the internet
    path: str | None = None  # a RequestPath value; None where the builder did not say

    def __post_init__(self) -> None:
        if self.path is not None:
            object.__setattr__(self, "path", RequestPath(self.path).value)

    def line_items(self) -> dict[str, float]:
        """Every line item in USD (the fields, without `path`): what a stacked plot shows."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "path"}

    def nonzero_items(self) -> dict[str, float]:
        """The line items that are not zero, in field order (what a table lists)."""
        return {name: usd for name, usd in self.line_items().items() if usd}

    @property
    def infer_usd(self) -> float:
        """The inference function alone: GB-seconds (INIT included) plus request fees."""
        return self.infer_compute_usd + self.infer_request_usd

    @property
    def batching_usd(self) -> float:
        """What batching changes: the infer function and its queue traffic."""
        return self.infer_usd + self.queue_usd

    @property
    def dispatcher_usd(self) -> float:
        return self.dispatcher_compute_usd + self.dispatcher_ipv4_usd

    @property
    def total_usd(self) -> float:
        """Every line item: the end-to-end bill of the run."""
        return sum(self.line_items().values())

    @property
    def end_to_end_usd(self) -> float:
        return self.total_usd

    def per_million(self, requests: float) -> dict[str, float]:
        """The three figures per 1M requests (0.0 for an empty run)."""
        scale = PER_MILLION / requests if requests else 0.0
        return {"end_to_end_cost_per_million_usd": self.end_to_end_usd * scale,
                "infer_cost_per_million_usd": self.infer_usd * scale,
                "batching_cost_per_million_usd": self.batching_usd * scale}

    def __add__(self, other: CostBreakdown) -> CostBreakdown:
        if self.path is not None and other.path is not None and self.path != other.path:
            raise ValueError(f"cannot add a {self.path!r} breakdown to a {other.path!r} one")
        mine, theirs = self.line_items(), other.line_items()
        return CostBreakdown(**{k: v + theirs[k] for k, v in mine.items()},
                             path=self.path if self.path is not None else other.path)

    def to_dict(self) -> dict[str, float | str | None]:
        return {**self.line_items(), "path": self.path, "batching_usd": self.batching_usd,
                "total_usd": self.total_usd, "end_to_end_usd": self.end_to_end_usd,
                "infer_usd": self.infer_usd, "dispatcher_usd": self.dispatcher_usd}
