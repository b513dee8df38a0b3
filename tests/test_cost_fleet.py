"""The dispatcher fleet: tasks per minute from a rate series, and the task-seconds billed."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.platform.dispatcher_fleet import (
    DEFAULT_TASK,
    DispatcherTask,
    fleet_task_seconds,
    per_minute_rates,
    task_seconds,
    tasks_for_rates,
)
from optimizer.platform.pricing import Pricing


def test_per_minute_rates_count_arrivals_per_minute() -> None:
    rates = per_minute_rates(np.array([0.0, 1.0, 59.9, 60.0, 130.0]), duration_s=180.0)
    assert rates.tolist() == pytest.approx([3 / 60, 1 / 60, 1 / 60])
    # an arrival at the very end falls in the last minute
    assert per_minute_rates(np.array([120.0]), duration_s=120.0).tolist() == [0.0, 1 / 60]


def test_tasks_follow_the_rate_up_at_once_and_down_after_the_window() -> None:
    rates = np.array([0.0, 150.0, 50.0, 0.0, 0.0])
    # desired at 100 req/s a task: 1, 2, 1, 1, 1; scale-in waits 2 minutes
    assert tasks_for_rates(rates, 100.0, min_tasks=1, scale_in_minutes=2).tolist() == [
        1, 2, 2, 1, 1]
    assert tasks_for_rates(rates, 100.0, min_tasks=2, scale_in_minutes=1).tolist() == [
        2, 2, 2, 2, 2]
    assert tasks_for_rates(np.array([350.0]), 100.0, max_tasks=3).tolist() == [3]


def test_a_one_minute_spike_holds_its_tasks_for_fifteen_minutes() -> None:
    rates = np.zeros(30)
    rates[5] = 250.0  # 3 tasks at 100 req/s each
    tasks = tasks_for_rates(rates, 100.0)
    assert tasks[:5].tolist() == [1] * 5
    assert tasks[5:20].tolist() == [3] * 15
    assert tasks[20:].tolist() == [1] * 10


def test_task_seconds_count_the_last_partial_minute() -> None:
    assert task_seconds(np.array([1, 2, 2]), 150.0) == 60 + 120 + 2 * 30
    assert task_seconds(np.array([], dtype=int), 0.0) == 0.0
    with pytest.raises(ValueError, match="duration_s"):
        task_seconds(np.array([1, 1, 1]), 100.0)


def test_a_quiet_hour_runs_the_minimum_fleet() -> None:
    arrivals = np.linspace(0.0, 3599.0, 8800)  # ~2.4 req/s, the azure-code trace at 1x
    assert fleet_task_seconds(arrivals, 3600.0, capacity_rps=100.0) == 3600.0
    assert fleet_task_seconds(arrivals, 3600.0, capacity_rps=100.0, min_tasks=2) == 7200.0
    # at 1 req/s a task, three tasks every minute
    assert fleet_task_seconds(arrivals, 3600.0, capacity_rps=1.0) == 3 * 3600.0


def test_bad_fleet_settings_name_the_value() -> None:
    with pytest.raises(ValueError, match="capacity_rps"):
        tasks_for_rates(np.array([1.0]), 0.0)
    with pytest.raises(ValueError, match="min_tasks"):
        tasks_for_rates(np.array([1.0]), 10.0, min_tasks=0)
    with pytest.raises(ValueError, match="max_tasks"):
        tasks_for_rates(np.array([1.0]), 10.0, min_tasks=2, max_tasks=1)
    with pytest.raises(ValueError, match="rates_rps"):
        tasks_for_rates(np.array([-1.0]), 10.0)


def test_task_sizes_are_the_ones_fargate_accepts() -> None:
    assert (DEFAULT_TASK.vcpu, DEFAULT_TASK.memory_gb, DEFAULT_TASK.arch) == (0.25, 0.5, "arm64")
    with pytest.raises(ValueError, match="memory_gb"):
        DispatcherTask(vcpu=0.25, memory_gb=3.0)
    with pytest.raises(ValueError, match="vcpu"):
        DispatcherTask(vcpu=0.3)
    with pytest.raises(ValueError, match="Spot"):
        DispatcherTask(spot=True)  # ARM tasks cannot run on Fargate Spot


def test_task_hour_prices_by_hand() -> None:
    pricing = Pricing()
    # ARM: 0.25 x $0.03238 + 0.5 x $0.00356
    assert DEFAULT_TASK.compute_hour_usd(pricing) == pytest.approx(0.009875)
    assert DEFAULT_TASK.ipv4_hour_usd(pricing) == 0.005
    # x86: 0.25 x $0.04048 + 0.5 x $0.004445
    assert DispatcherTask(arch="x86").compute_hour_usd(pricing) == pytest.approx(0.0123425)
    assert DispatcherTask(arch="x86", spot=True).compute_hour_usd(pricing) == pytest.approx(
        0.3 * 0.0123425)
    assert DispatcherTask(public_ipv4=False).ipv4_hour_usd(pricing) == 0.0
