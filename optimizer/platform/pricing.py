"""Prices: a dated, versioned table (us-east-1), overridable from a JSON file. Pure math.

Every field is a unit price of one line item on the AWS bill of one of the request paths
(optimizer/platform/request_paths.py prices the paths from these). Each comment names the AWS
price page the figure comes from and whether it was checked for this table: "checked" means the
figure was found in the public documentation or pricing material read when the table was dated
(`as_of`); "not checked here" means the public figure as we know it, not re-read.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

MB_PER_GB = 1024
SQS_CHUNK_BYTES = 64 * 1024  # SQS bills each 64 KB chunk of a payload as one request
# API Gateway meters HTTP API requests in 512 KB increments (AWS whitepaper "Best Practices for
# Designing Amazon API Gateway Private APIs and Private Integration", cost optimization: "HTTP
# APIs are metered in 512 KB increments"). Checked.
API_METERING_BYTES = 512 * 1024
BYTES_PER_GB = 1024 ** 3  # a GB of data transfer or log ingestion as 2^30 bytes (not checked here)
HOURS_PER_MONTH = 730.0  # AWS's convention for monthly prices (730 h = 8,760 h / 12)


@dataclass(frozen=True)
class Pricing:
    """Unit prices in USD. Defaults: AWS public price pages, us-east-1, as of `as_of`."""

    as_of: str = "2026-11-01"
    region: str = "us-east-1"
    version: int = 2
    # AWS Lambda pricing page: x86 $0.0000166667 and arm64 $0.0000133334 per GB-second
    # (first pricing tier), $0.20 per 1M requests, billed in 1 ms increments.
    lambda_gb_s_usd_x86: float = 0.0000166667
    lambda_gb_s_usd_arm64: float = 0.0000133334
    lambda_request_usd: float = 0.20 / 1e6
    billing_granularity_ms: int = 1
    # Amazon SQS pricing page: standard queue $0.40 per 1M requests (after the free tier). Every
    # API call is a billed request, ReceiveMessage calls that return nothing included: the SQS
    # developer guide ("Using the appropriate polling mode") says long polling (WaitTimeSeconds
    # 1-20 s) exists "to reduce the cost of using Amazon SQS" by cutting empty receives, and that
    # short polling "is billed the same as long polling". Price not checked here; billing of
    # empty receives checked.
    sqs_request_usd: float = 0.40 / 1e6
    # Amazon API Gateway pricing page: HTTP APIs $1.00 per 1M requests for the first 300M a month,
    # $0.90 after; metered in 512 KB increments (API_METERING_BYTES). Checked (AWS whitepaper
    # table 4, which quotes the pricing page). We price the first tier.
    api_http_request_usd: float = 1.00 / 1e6
    # VPC link for HTTP APIs (VPC link V2, to Cloud Map or a load balancer): the API Gateway
    # pricing page says that for HTTP APIs "you pay only for the API calls you receive and the
    # amount of data transferred out"; only REST and WebSocket private integrations need a
    # Network Load Balancer billed per hour (same whitepaper). So no charge. Checked.
    vpc_link_hour_usd: float = 0.0
    # AWS Cloud Map pricing (AWS price list, usage types *-Cloud-Map-Resources and
    # *-Cloud-Map-DIR-API-Calls, effective 2025-08-01): $0.10 per registered resource (instance)
    # a month, $1.00 per 1M discovery (DiscoverInstances) API calls. Read from a copy of the
    # price list (other regions' rows show the same $0.10 and $0.000001), us-east-1 not checked.
    cloud_map_instance_month_usd: float = 0.10
    cloud_map_discover_call_usd: float = 1.00 / 1e6
    # Amazon DynamoDB on-demand (Nov 2024 price cut): $0.625 per 1M write request units,
    # $0.125 per 1M read request units. Unit sizes (1 KB write, 4 KB strongly consistent read)
    # checked on the on-demand pricing page; prices not checked here.
    ddb_write_request_usd: float = 0.625 / 1e6
    ddb_read_request_usd: float = 0.125 / 1e6
    # Amazon S3 pricing page, S3 Standard, us-east-1: $0.005 per 1,000 PUT, COPY, POST and LIST
    # requests; $0.0004 per 1,000 GET, SELECT and all other requests (HEAD included). Not
    # checked here. A job with S3 output pays them (optimizer/platform/bulk_items.py).
    s3_put_request_usd: float = 0.005 / 1e3
    s3_get_request_usd: float = 0.0004 / 1e3
    # AWS Fargate pricing page, Linux, us-east-1, per vCPU-hour and per GB-hour of what a task
    # requests, billed per second with a one-minute minimum: x86 $0.04048 and $0.004445 (the ECS
    # pricing page's worked example quotes $0.000011244 per vCPU-second = $0.04048 an hour),
    # ARM (Graviton) $0.03238 and $0.00356, 20% below x86. The Fargate page renders its table
    # dynamically; these are the figures quoted from it by third parties (Vantage, 2026), and
    # the x86 vCPU figure matches the ECS page. Checked that way.
    fargate_vcpu_hour_usd_x86: float = 0.04048
    fargate_gb_hour_usd_x86: float = 0.004445
    fargate_vcpu_hour_usd_arm64: float = 0.03238
    fargate_gb_hour_usd_arm64: float = 0.00356
    # Fargate Spot: "up to a 70% discount" (Fargate pricing page, checked) at a price AWS moves
    # with supply and demand; x86 only ("Linux tasks with the ARM64 architecture don't support the
    # Fargate Spot capacity provider", ECS developer guide, checked). Here: 70% off x86, the best
    # case, so a Spot figure is a lower bound. The live price is not checked here.
    fargate_spot_vcpu_hour_usd_x86: float = 0.04048 * 0.30
    fargate_spot_gb_hour_usd_x86: float = 0.004445 * 0.30
    # Amazon VPC pricing page, public IPv4 address: $0.005 per IP per hour, in use or idle, for
    # every AWS-provided public IPv4 address since 1 Feb 2024 (AWS networking blog announcing
    # the charge; boto3's map_public_ip_on_launch doc points to the same tab). Checked. A Fargate
    # task in a public subnet with no NAT gateway needs one to reach Lambda, ECR and CloudWatch.
    public_ipv4_hour_usd: float = 0.005
    # Amazon CloudWatch pricing page: Logs, Standard class, data ingestion $0.50 per GB
    # (us-east-1). Storage ($0.03 per GB-month) is left out: it depends on the retention set.
    # Not checked here (third-party summaries read for this table agree).
    logs_ingest_gb_usd: float = 0.50
    # Data transfer out to the internet (EC2 / API Gateway pricing pages, which bill HTTP API
    # data out at the EC2 rates): $0.09 per GB for the first 10 TB a month after the free 100 GB.
    # Not checked here (AWS re:Post answer and third-party summaries agree). The free 100 GB is
    # left out: it is shared by the whole account.
    egress_gb_usd: float = 0.09
    # A GPU-backed function billed per second: one NVIDIA A10G (EC2 g5.xlarge on-demand,
    # $1.006 per hour, us-east-1), the smallest common inference GPU.
    gpu_hour_usd: float = 1.006
    gpu_billing_granularity_ms: int = 1000

    def lambda_gb_s_usd(self, arch: str = "x86") -> float:
        if arch == "x86":
            return self.lambda_gb_s_usd_x86
        if arch == "arm64":
            return self.lambda_gb_s_usd_arm64
        raise ValueError(f"arch must be 'x86' or 'arm64', got {arch!r}")

    def billed_ms(self, duration_ms: float) -> int:
        """Lambda rounds each invocation's duration up to the billing granularity."""
        step = self.billing_granularity_ms
        return int(math.ceil(max(duration_ms, 0.0) / step) * step)

    def lambda_invocation_usd(self, duration_ms: float, memory_mb: int,
                              arch: str = "x86") -> float:
        """Compute plus request fee of one invocation."""
        gb_s = self.billed_ms(duration_ms) / 1000.0 * memory_mb / MB_PER_GB
        return gb_s * self.lambda_gb_s_usd(arch) + self.lambda_request_usd

    def gpu_invocation_usd(self, duration_ms: float) -> float:
        """A GPU-backed function's compute, billed per second (rounded up)."""
        step = self.gpu_billing_granularity_ms
        billed_s = math.ceil(max(duration_ms, 0.0) / step) * step / 1000.0
        return billed_s * self.gpu_hour_usd / 3600.0

    def sqs_requests(self, payload_bytes: int) -> int:
        return max(1, math.ceil(payload_bytes / SQS_CHUNK_BYTES))

    def api_requests(self, payload_bytes: float) -> int:
        """Metered HTTP API requests for one call whose larger side carries `payload_bytes`."""
        return max(1, math.ceil(payload_bytes / API_METERING_BYTES))

    def fargate_task_hour_usd(self, vcpu: float, memory_gb: float, arch: str = "arm64",
                              spot: bool = False) -> float:
        """One running Fargate task's vCPU and memory, per hour (no public IPv4)."""
        if spot:
            if arch != "x86":
                raise ValueError(f"Fargate Spot runs x86 tasks only, got arch {arch!r}")
            return (vcpu * self.fargate_spot_vcpu_hour_usd_x86
                    + memory_gb * self.fargate_spot_gb_hour_usd_x86)
        if arch == "x86":
            return vcpu * self.fargate_vcpu_hour_usd_x86 + memory_gb * self.fargate_gb_hour_usd_x86
        if arch == "arm64":
            return (vcpu * self.fargate_vcpu_hour_usd_arm64
                    + memory_gb * self.fargate_gb_hour_usd_arm64)
        raise ValueError(f"arch must be 'x86' or 'arm64', got {arch!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_pricing(path: str | Path | None = None) -> Pricing:
    """The built-in table, with any fields a JSON file overrides (unknown keys are an error)."""
    base = Pricing()
    if path is None:
        return base
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"pricing file {path} must hold a JSON object")
    known = {f.name: f.type for f in fields(Pricing)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"pricing file {path}: unknown field(s) {unknown}")
    for key, value in raw.items():
        if key not in ("as_of", "region") and (isinstance(value, bool) or
                                                 not isinstance(value, int | float) or value < 0):
            raise ValueError(f"pricing file {path}: {key} must be a number >= 0, got {value!r}")
    return replace(base, **raw)
