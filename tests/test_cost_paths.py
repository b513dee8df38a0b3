"""Line-item cost of the three request paths against hand-computed values.

Every expected figure is written out as arithmetic on the price-page numbers, not computed by
the code under test. Units: 2^30 bytes a GB; Lambda x86 $0.0000166667 per GB-second.
"""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.platform.backends import gpu_pricing
from optimizer.platform.bulk_items import run_cost
from optimizer.platform.cost_breakdown import RequestPath
from optimizer.platform.dispatcher_fleet import DispatcherTask
from optimizer.platform.pricing import Pricing
from optimizer.platform.request_paths import (
    FLOAT_JSON_BYTES,
    InferBill,
    bulk_cost,
    online_cost,
    online_request_cost,
    online_run_cost,
    plain_lambda_cost,
    response_bytes,
    sqs_empty_receives,
)

PRICING = Pricing()
GB = 1024 ** 3
GB_S_X86 = 0.0000166667
# One float-encoded single-input response: headers 300 + envelope 150 + item 120 + 384 x 22.
ONE_FLOAT_RESPONSE = 300 + 150 + 120 + 384 * 12  # = 5,178 bytes
# The small example: 1,000 requests of one input in one hour, served by 100 batches billed
# 20 GB-seconds in all.
BILL = InferBill(gb_s=20.0, invocations=100)
INFER_COMPUTE = 20.0 * GB_S_X86
INFER_REQUESTS = 100 * 0.20e-6


def test_float_json_size_per_component_is_measured() -> None:
    rng = np.random.default_rng(7)
    vector = rng.standard_normal(384).astype(np.float32)
    vector /= np.linalg.norm(vector)
    from infra.dispatcher.responses import response_bytes as service_bytes

    measured = (len(service_bytes({"e": vector})) - len('{"e":[]}')) / 384
    assert measured == pytest.approx(FLOAT_JSON_BYTES, rel=0.03)
    assert response_bytes(1) == ONE_FLOAT_RESPONSE
    assert response_bytes(1, "base64") == 300 + 150 + 120 + 2048  # 1,536 bytes as base64


def test_online_path_small_example_by_hand() -> None:
    cost = online_cost(1000, BILL, duration_s=3600.0, task_seconds=3600.0, pricing=PRICING)
    assert cost.path == RequestPath.ONLINE
    assert cost.infer_compute_usd == pytest.approx(INFER_COMPUTE)
    assert cost.infer_request_usd == pytest.approx(INFER_REQUESTS)
    # a 5,178-byte response is one 512 KB metering unit: $1.00 per 1M
    assert cost.api_usd == pytest.approx(1000 * 1.00e-6)
    # one DiscoverInstances call per request ($1.00 per 1M) + one Cloud Map instance for one
    # hour ($0.10 a month of 730 h) + the VPC link (no charge)
    assert cost.front_door_usd == pytest.approx(1000 * 1.00e-6 + 0.10 / 730)
    # one ARM task, 0.25 vCPU at $0.03238 and 0.5 GB at $0.00356 an hour, with one public IPv4
    assert cost.dispatcher_compute_usd == pytest.approx(0.25 * 0.03238 + 0.5 * 0.00356)
    assert cost.dispatcher_ipv4_usd == pytest.approx(0.005)
    # 250 B per request from the dispatcher; per batch 200 B more and 350 B of Lambda lines
    assert cost.logs_usd == pytest.approx((1000 * 250 + 100 * (200 + 350)) / GB * 0.50)
    assert cost.egress_usd == pytest.approx(1000 * ONE_FLOAT_RESPONSE / GB * 0.09)
    assert (cost.queue_usd, cost.store_usd, cost.ingest_usd, cost.queue_polling_usd) == (0, 0, 0, 0)
    end_to_end = (INFER_COMPUTE + INFER_REQUESTS + 0.001 + 0.001 + 0.10 / 730 + 0.009875 + 0.005
                  + 305_000 / GB * 0.50 + 5_178_000 / GB * 0.09)
    figures = cost.per_million(1000)
    assert figures["end_to_end_cost_per_million_usd"] == pytest.approx(end_to_end * 1000)
    assert figures["infer_cost_per_million_usd"] == pytest.approx(0.353334)  # 20 GB-s + fees
    assert figures["batching_cost_per_million_usd"] == pytest.approx(0.353334)


def test_online_parts_split_into_request_and_run_items() -> None:
    whole = online_cost(1000, BILL, 3600.0, 7200.0, PRICING)
    parts = online_request_cost(1000, BILL, PRICING) + online_run_cost(3600.0, 7200.0, PRICING)
    assert parts.line_items() == pytest.approx(whole.line_items())
    run = online_run_cost(3600.0, 7200.0, PRICING)  # two tasks for the hour
    assert run.dispatcher_usd == pytest.approx(2 * (0.009875 + 0.005))
    assert run.infer_usd == 0.0 and run.api_usd == 0.0


def test_one_request_with_256_inputs_meters_three_api_units() -> None:
    cost = online_request_cost(1, InferBill(0.0, 0.0), PRICING, inputs=256)
    # 450 + 256 x (120 + 4,608) = 1,210,818 bytes = 2.31 units of 524,288 bytes -> 3
    assert cost.api_usd == pytest.approx(3 * 1.00e-6)
    assert cost.egress_usd == pytest.approx(1_210_818 / GB * 0.09)
    assert cost.front_door_usd == pytest.approx(1.00e-6)  # one discovery call per HTTP request


def test_spot_task_without_public_ip() -> None:
    task = DispatcherTask(arch="x86", spot=True, public_ipv4=False)
    run = online_run_cost(3600.0, 3600.0, PRICING, task)
    # 70% off x86: 0.25 x $0.04048 x 0.3 + 0.5 x $0.004445 x 0.3
    assert run.dispatcher_compute_usd == pytest.approx(0.25 * 0.012144 + 0.5 * 0.0013335)
    assert run.dispatcher_ipv4_usd == 0.0


def test_sqs_empty_receives_from_long_polling() -> None:
    # 2 queues x 5 pollers, one 20 s wait each per empty call, for an hour: 1,800 polls
    assert sqs_empty_receives(3600.0, 2) == pytest.approx(1800)
    assert sqs_empty_receives(3600.0, 2, nonempty_receives=100) == pytest.approx(1700)
    assert sqs_empty_receives(3600.0, 1, pollers_per_queue=1, wait_time_s=1.0) == 3600
    assert sqs_empty_receives(60.0, 1, nonempty_receives=1e6) == 0.0
    with pytest.raises(ValueError, match="wait_time_s"):
        sqs_empty_receives(60.0, 1, wait_time_s=0.0)
    with pytest.raises(ValueError, match="wait_time_s"):
        sqs_empty_receives(60.0, 1, wait_time_s=21.0)


def test_bulk_path_by_hand() -> None:
    cost = bulk_cost(1000, BILL, receive_calls=100, duration_s=3600.0, queues=2, pricing=PRICING)
    assert cost.path == RequestPath.BULK
    assert cost.infer_usd == pytest.approx(INFER_COMPUTE + INFER_REQUESTS)
    assert cost.queue_usd == pytest.approx((1000 + 2 * 100) * 0.40e-6)  # sends + receive, delete
    assert cost.queue_polling_usd == pytest.approx((1800 - 100) * 0.40e-6)
    assert cost.api_usd == pytest.approx(2 * 1000 * 1.00e-6)  # POST + GET
    # ingest + results: 15 ms at 256 MB = 0.00375 GB-s each, plus the request fee
    assert cost.ingest_usd == pytest.approx(2 * 1000 * (0.00375 * GB_S_X86 + 0.20e-6))
    assert cost.store_usd == pytest.approx(1000 * (2 * 0.625e-6 + 0.125e-6))  # float16: 1 WRU
    # two front functions' Lambda lines + ingest's line per request; Lambda lines per batch
    assert cost.logs_usd == pytest.approx((1000 * (2 * 350 + 450) + 100 * 350) / GB * 0.50)
    # the GET's result, plus the POST's reply and its headers
    assert cost.egress_usd == pytest.approx(1000 * (ONE_FLOAT_RESPONSE + 300 + 150) / GB * 0.09)
    assert cost.dispatcher_usd == 0.0 and cost.front_door_usd == 0.0


def test_bulk_path_prices_todays_items_as_run_cost_does() -> None:
    # 100 batches of 10, each billed 200 ms at 1,024 MB: 20 GB-s, 100 receives and 100 deletes
    sizes = np.full(100, 10)
    today = run_cost(1000, sizes, np.full(100, 200), np.full(100, 1024), PRICING)
    bill = InferBill.from_invocations(np.full(100, 200), np.full(100, 1024))
    assert (bill.gb_s, bill.invocations) == (pytest.approx(20.0), 100)
    bulk = bulk_cost(1000, bill, receive_calls=100, duration_s=3600.0, queues=2, pricing=PRICING)
    for item in ("infer_compute_usd", "infer_request_usd", "queue_usd", "api_usd", "ingest_usd",
                 "store_usd"):
        assert getattr(bulk, item) == pytest.approx(getattr(today, item)), item
    assert bulk.batching_usd == pytest.approx(today.batching_usd)


def test_plain_lambda_one_million_requests_of_40_ms_at_2048_mb() -> None:
    # 100 cold starts, each billing 6 s of INIT: 600,000 extra ms
    bill = InferBill.uniform(1_000_000, 40.0, 2048, PRICING, extra_billed_ms=100 * 6000.0)
    # (1M x 40 ms + 600 s) x 2 GB = (40,000 s + 600 s) x 2 = 81,200 GB-s
    assert bill.gb_s == pytest.approx(81_200.0)
    cost = plain_lambda_cost(1_000_000, bill, PRICING)
    assert cost.path == RequestPath.PLAIN_LAMBDA
    assert cost.api_usd == pytest.approx(1.00)  # $1.00 per 1M HTTP API requests
    assert cost.infer_compute_usd == pytest.approx(81_200 * GB_S_X86)  # = $1.3533
    assert cost.infer_request_usd == pytest.approx(0.20)
    assert cost.logs_usd == pytest.approx(1_000_000 * 350 / GB * 0.50)  # = $0.163
    assert cost.egress_usd == pytest.approx(1_000_000 * 5178 / GB * 0.09)  # = $0.434
    assert cost.dispatcher_usd == cost.queue_usd == cost.store_usd == cost.front_door_usd == 0
    figures = cost.per_million(1_000_000)
    assert figures["infer_cost_per_million_usd"] == pytest.approx(1.353336 + 0.20)
    assert figures["end_to_end_cost_per_million_usd"] == pytest.approx(
        1.00 + 1.353336 + 0.20 + 0.1629815 + 0.4340149, rel=1e-6)
    # API + infer, the two items the issue's $2.35 counts, come to $2.55 at these figures
    assert cost.api_usd + cost.infer_usd == pytest.approx(2.553336)


def test_base64_responses_cut_egress_by_half() -> None:
    bill = InferBill.uniform(1_000_000, 40.0, 2048, PRICING)
    cost = plain_lambda_cost(1_000_000, bill, PRICING, encoding="base64")
    assert cost.egress_usd == pytest.approx(1_000_000 * 2618 / GB * 0.09)  # = $0.219
    with pytest.raises(ValueError, match="encoding"):
        plain_lambda_cost(1, bill, PRICING, encoding="utf8")


def test_inputs_below_requests_are_refused() -> None:
    with pytest.raises(ValueError, match="requests"):
        online_request_cost(10, BILL, PRICING, inputs=5)


def test_gpu_pricing_keeps_the_paths_unit_prices() -> None:
    gpu = gpu_pricing(PRICING)
    assert online_run_cost(3600.0, 3600.0, gpu).line_items() == pytest.approx(
        online_run_cost(3600.0, 3600.0, PRICING).line_items())
    assert gpu.egress_gb_usd == PRICING.egress_gb_usd
