"""The breakdown's line items, its three figures, and the price table's new lines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from optimizer.platform.cost_breakdown import CostBreakdown, RequestPath
from optimizer.platform.metrics import BufferMetrics
from optimizer.platform.pricing import Pricing, load_pricing

OLD_KEYS = {"infer_compute_usd", "infer_request_usd", "queue_usd", "api_usd", "ingest_usd",
            "store_usd", "batching_usd", "total_usd"}
# Line items numbered 1..12 in field order: infer compute 1, infer requests 2, queue 3, api 4,
# ingest 5, store 6, front door 7, dispatcher compute 8, IPv4 9, polling 10, logs 11, egress 12.
NUMBERED = CostBreakdown(*np.arange(1.0, 13.0).tolist(), path="online")


def test_the_three_figures_by_hand() -> None:
    assert NUMBERED.infer_usd == 1 + 2
    assert NUMBERED.batching_usd == 1 + 2 + 3
    assert NUMBERED.dispatcher_usd == 8 + 9
    assert NUMBERED.end_to_end_usd == NUMBERED.total_usd == 78  # 1 + 2 + ... + 12
    assert NUMBERED.per_million(2_000_000) == {
        "end_to_end_cost_per_million_usd": 39.0, "infer_cost_per_million_usd": 1.5,
        "batching_cost_per_million_usd": 3.0}
    assert CostBreakdown().per_million(0) == {
        "end_to_end_cost_per_million_usd": 0.0, "infer_cost_per_million_usd": 0.0,
        "batching_cost_per_million_usd": 0.0}


def test_to_dict_keeps_the_old_keys_and_adds_every_line_item() -> None:
    out = NUMBERED.to_dict()
    assert set(out) >= OLD_KEYS
    assert set(NUMBERED.line_items()) <= set(out)
    assert len(NUMBERED.line_items()) == 12
    assert (out["path"], out["end_to_end_usd"], out["infer_usd"]) == ("online", 78, 3)
    json.dumps(out)  # plain values only


def test_breakdowns_add_and_keep_their_path() -> None:
    both = NUMBERED + NUMBERED
    assert both.total_usd == 156 and both.path == "online"
    assert (CostBreakdown() + NUMBERED).path == "online"  # an unlabelled start takes the path
    assert sum([NUMBERED], CostBreakdown()).total_usd == 78
    with pytest.raises(ValueError, match="bulk"):
        NUMBERED + CostBreakdown(api_usd=1.0, path=RequestPath.BULK)
    with pytest.raises(ValueError, match="nowhere"):
        CostBreakdown(path="nowhere")


def test_buffer_metrics_report_the_three_figures() -> None:
    m = BufferMetrics(requests=2_000_000, invocations=10.0, cost=NUMBERED, p50_ms=0.0,
                      p95_ms=0.0, p99_ms=0.0, slo_attainment=1.0, real_tokens=1.0,
                      padded_tokens=1.0, cold_starts=0.0)
    # cost_per_million_usd and total_cost_per_million_usd are aliases of end to end (issue 12)
    assert m.end_to_end_cost_per_million_usd == 39.0 == m.total_cost_per_million_usd
    assert m.cost_per_million_usd == 39.0
    assert m.infer_cost_per_million_usd == 1.5
    assert m.batching_cost_per_million_usd == 3.0


def test_new_price_lines_and_overrides(tmp_path: Path) -> None:
    pricing = Pricing()
    assert pricing.public_ipv4_hour_usd == 0.005
    assert pricing.vpc_link_hour_usd == 0.0
    assert (pricing.cloud_map_instance_month_usd, pricing.cloud_map_discover_call_usd) == (
        0.10, 1.00e-6)
    assert (pricing.logs_ingest_gb_usd, pricing.egress_gb_usd) == (0.50, 0.09)
    # HTTP API metering: 512 KB units
    assert [pricing.api_requests(b) for b in (0, 9018, 524_288, 524_289)] == [1, 1, 1, 2]
    with pytest.raises(ValueError, match="x86 tasks only"):
        pricing.fargate_task_hour_usd(0.25, 0.5, "arm64", spot=True)
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"public_ipv4_hour_usd": 0.0, "egress_gb_usd": 0.085}))
    override = load_pricing(path)
    assert (override.public_ipv4_hour_usd, override.egress_gb_usd) == (0.0, 0.085)
    path.write_text(json.dumps({"fargate_vcpu_hour_usd_arm64": -1}))
    with pytest.raises(ValueError, match="fargate_vcpu_hour_usd_arm64"):
        load_pricing(path)
