"""Prices: a dated, versioned table (us-east-1), overridable from a JSON file. Pure math."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

MB_PER_GB = 1024
SQS_CHUNK_BYTES = 64 * 1024  # SQS bills each 64 KB chunk of a payload as one request


@dataclass(frozen=True)
class Pricing:
    """Unit prices in USD. Defaults: AWS public price pages, us-east-1, as of `as_of`."""

    as_of: str = "2026-11-01"
    region: str = "us-east-1"
    version: int = 1
    # AWS Lambda pricing page: x86 $0.0000166667 and arm64 $0.0000133334 per GB-second
    # (first pricing tier), $0.20 per 1M requests, billed in 1 ms increments.
    lambda_gb_s_usd_x86: float = 0.0000166667
    lambda_gb_s_usd_arm64: float = 0.0000133334
    lambda_request_usd: float = 0.20 / 1e6
    billing_granularity_ms: int = 1
    # Amazon SQS pricing page: standard queue $0.40 per 1M requests (after the free tier).
    sqs_request_usd: float = 0.40 / 1e6
    # Amazon API Gateway pricing page: HTTP APIs $1.00 per 1M requests (first 300M).
    api_http_request_usd: float = 1.00 / 1e6
    # Amazon DynamoDB on-demand (Nov 2024 price cut): $0.625 per 1M write request units,
    # $0.125 per 1M read request units.
    ddb_write_request_usd: float = 0.625 / 1e6
    ddb_read_request_usd: float = 0.125 / 1e6
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
