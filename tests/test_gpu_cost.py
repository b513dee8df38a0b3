"""The gpu backend's instance-time bill (optimizer/platform/gpu_cost.py) against hand-computed
values: instance-seconds x on-demand price x 1.15, $0.20 per 1M invocations, no GB-seconds, and
the online path's items as the lambda backend prices them."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.platform.backends import gpu_pricing
from optimizer.platform.cost_breakdown import RequestPath
from optimizer.platform.gpu_cost import FleetBill, FleetBilling, lambda_prices
from optimizer.platform.plan_cost import RunBilling
from optimizer.platform.pricing import Pricing
from optimizer.platform.request_paths import InferBill, online_request_cost, online_run_cost


def test_fleet_bill_is_instance_time_plus_fifteen_percent() -> None:
    # 2 instance-hours of g5.xlarge at $1.006/h: 2 x 1.006 x 1.15 = $2.3138
    bill = FleetBill(7200.0, 1.006)
    assert bill.instance_hours == pytest.approx(2.0)
    assert bill.compute_usd == pytest.approx(2.3138)


def test_fleet_bill_prices_a_catalogued_instance_type() -> None:
    # three g6.xlarge for an hour at $0.8048/h: 3 x 0.8048 x 1.15 = $2.77656
    bill = FleetBill.for_instance_type(3 * 3600.0, "g6.xlarge")
    assert bill.compute_usd == pytest.approx(2.77656)
    with pytest.raises(ValueError, match="Unknown GPU instance type: 'p9.huge'"):
        FleetBill.for_instance_type(1.0, "p9.huge")
    with pytest.raises(ValueError, match="instance_seconds"):
        FleetBill(-1.0, 1.0)


def test_buffers_pay_the_request_fee_per_batch_and_no_gb_seconds() -> None:
    pricing = Pricing()
    billing = FleetBilling.for_run(RunBilling(pricing, duration_s=3600.0, task_seconds=7200.0),
                                   FleetBill(3 * 3600.0, 0.8048))
    # 1M requests in 10,000 batches that ran 500 GPU-seconds: the GB-seconds are not billed
    cost = billing.buffer_cost(RequestPath.ONLINE, 1e6, InferBill(gb_s=500.0, invocations=1e4))
    assert cost.infer_compute_usd == 0.0
    assert cost.infer_request_usd == pytest.approx(1e4 * 0.20 / 1e6)  # $0.002
    online = online_request_cost(1e6, InferBill(0.0, 1e4), pricing)
    assert cost == online  # the rest of the online path, as the lambda backend prices it
    assert cost.api_usd == pytest.approx(1.00)  # $1.00 per 1M HTTP API requests


def test_the_run_adds_the_fleet_to_the_dispatcher_items() -> None:
    pricing = Pricing()
    billing = FleetBilling.for_run(RunBilling(pricing, duration_s=3600.0, task_seconds=7200.0),
                                   FleetBill(3 * 3600.0, 0.8048))
    run = billing.run_cost([RequestPath.ONLINE])
    dispatcher = online_run_cost(3600.0, 7200.0, pricing)
    assert run.infer_compute_usd == pytest.approx(2.77656)
    assert run.dispatcher_usd == pytest.approx(dispatcher.dispatcher_usd)
    assert run.front_door_usd == pytest.approx(dispatcher.front_door_usd)
    assert run.total_usd == pytest.approx(dispatcher.total_usd + 2.77656)
    assert run.path == RequestPath.ONLINE


def test_gpu_pricing_is_read_as_the_lambda_table_it_carries() -> None:
    # GpuPricing (the per-invocation GPU model) zeroes the request fee; the fleet bill keeps it.
    base = Pricing()
    gpu = gpu_pricing(base)
    assert gpu.lambda_request_usd == 0.0
    assert lambda_prices(gpu) is base
    assert lambda_prices(base) is base
    billing = FleetBilling.for_run(RunBilling.for_arrivals(np.array([0.0, 10.0]), gpu),
                                   FleetBill(0.0, 1.0))
    cost = billing.buffer_cost(RequestPath.ONLINE, 2, InferBill(1.0, 1))
    assert cost.infer_request_usd == pytest.approx(0.20 / 1e6)
    assert billing.with_fleet(FleetBill(3600.0, 1.0)).fleet.compute_usd == pytest.approx(1.15)
