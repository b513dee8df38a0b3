"""The dispatcher's Fargate fleet: how many tasks run for a request rate, and what they cost.

The online path's dispatcher is an ECS service on Fargate with CPU target-tracking autoscaling.
Several tasks split the traffic (HTTP API spreads requests over the healthy tasks Cloud Map
returns), so each task carries rate / tasks. Its cost is per task-second, whatever the requests:
it enters a plan's bill once per run, through the run's duration (request_paths.online_run_cost),
not per request and not per buffer.

Scaling model, per minute of the trace (ECS target tracking acts on 1-minute CloudWatch data):
- desired tasks = max(min_tasks, ceil(rate / per-task capacity)), capped at max_tasks;
- scale-out is taken as immediate (the real alarm needs about 3 minutes above target, so cost is
  slightly overstated, and the lag shows as latency, which the simulator models, not as cost);
- scale-in waits until the desired count has stayed lower for `scale_in_minutes` (target
  tracking's scale-in alarm needs 15 consecutive minutes below target; Application Auto Scaling
  docs, not checked here), so the running count is the trailing maximum of the desired count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from optimizer.platform.pricing import Pricing

SECONDS_PER_MINUTE = 60.0
# The request rate one dispatcher task of DEFAULT_TASK's size is scaled to carry (the target of
# its CPU target-tracking policy). ASSUMED, not measured: the target is >= 1,000 req/s
# on two cores, so a quarter vCPU would carry ~100 req/s flat out. Replace it with the load
# benchmark's figure for a 0.25 vCPU task.
DISPATCHER_TASK_CAPACITY_RPS = 100.0
# One task is the cheapest setup that serves; ECS replaces a failed task, but a task's or its
# Availability Zone's loss is an outage until the replacement passes its health check. Two tasks
# in two AZs is the highly available choice, at twice the fixed cost.
MIN_DISPATCHER_TASKS = 1
SCALE_IN_MINUTES = 15
# Task sizes Fargate accepts (ECS task definition parameters): vCPU -> memory choices in GB.
FARGATE_MEMORY_GB = {
    0.25: (0.5, 1.0, 2.0),
    0.5: (1.0, 2.0, 3.0, 4.0),
    1.0: tuple(float(g) for g in range(2, 9)),
    2.0: tuple(float(g) for g in range(4, 17)),
    4.0: tuple(float(g) for g in range(8, 31)),
}


@dataclass(frozen=True)
class DispatcherTask:
    """One dispatcher task's size and how it is billed.

    Default: the smallest Fargate task, 0.25 vCPU and 0.5 GB, on ARM (Graviton, 20% below x86).
    The dispatcher waits on Lambda Invoke most of the time and tokenizes in between, so CPU, not
    memory, bounds it; 0.5 GB holds Python, uvicorn, boto3 and the tokenizer, an assumption
    (1 GB is the next size if its RSS passes ~400 MB). public_ipv4: a task in a public subnet
    with no NAT gateway needs a public IPv4 address to reach Lambda, ECR and CloudWatch Logs.
    spot: Fargate Spot, x86 only, interruptible with a two-minute warning.
    """

    vcpu: float = 0.25
    memory_gb: float = 0.5
    arch: str = "arm64"
    public_ipv4: bool = True
    spot: bool = False

    def __post_init__(self) -> None:
        allowed = FARGATE_MEMORY_GB.get(self.vcpu)
        if allowed is None:
            raise ValueError(f"vcpu must be one of {sorted(FARGATE_MEMORY_GB)}, got {self.vcpu}")
        if self.memory_gb not in allowed:
            raise ValueError(f"memory_gb for {self.vcpu} vCPU must be one of {allowed}, "
                             f"got {self.memory_gb}")
        if self.arch not in ("x86", "arm64"):
            raise ValueError(f"arch must be 'x86' or 'arm64', got {self.arch!r}")
        if self.spot and self.arch != "x86":
            raise ValueError(f"Fargate Spot runs x86 tasks only, got arch {self.arch!r}")

    def compute_hour_usd(self, pricing: Pricing) -> float:
        """vCPU and memory of one running task, per hour."""
        return pricing.fargate_task_hour_usd(self.vcpu, self.memory_gb, self.arch, self.spot)

    def ipv4_hour_usd(self, pricing: Pricing) -> float:
        return pricing.public_ipv4_hour_usd if self.public_ipv4 else 0.0


DEFAULT_TASK = DispatcherTask()


def per_minute_rates(arrivals_s: np.ndarray, duration_s: float | None = None) -> np.ndarray:
    """Mean request rate (req/s) in each minute of a run that starts at 0 and lasts duration_s."""
    arrivals = np.asarray(arrivals_s, dtype=np.float64)
    if duration_s is None:
        duration_s = float(arrivals.max(initial=0.0))
    if duration_s < 0 or not math.isfinite(duration_s):
        raise ValueError(f"duration_s must be finite and >= 0, got {duration_s}")
    minutes = max(1, math.ceil(duration_s / SECONDS_PER_MINUTE))
    bins = np.minimum((arrivals // SECONDS_PER_MINUTE).astype(np.int64), minutes - 1)
    return np.bincount(bins, minlength=minutes) / SECONDS_PER_MINUTE


def tasks_for_rates(rates_rps: np.ndarray, capacity_rps: float = DISPATCHER_TASK_CAPACITY_RPS,
                    min_tasks: int = MIN_DISPATCHER_TASKS, max_tasks: int | None = None,
                    scale_in_minutes: int = SCALE_IN_MINUTES) -> np.ndarray:
    """Running dispatcher tasks in each minute, for these per-minute request rates."""
    if capacity_rps <= 0:
        raise ValueError(f"capacity_rps must be > 0, got {capacity_rps}")
    if min_tasks < 1:
        raise ValueError(f"min_tasks must be >= 1, got {min_tasks}")
    if max_tasks is not None and max_tasks < min_tasks:
        raise ValueError(f"max_tasks must be >= min_tasks ({min_tasks}), got {max_tasks}")
    if scale_in_minutes < 1:
        raise ValueError(f"scale_in_minutes must be >= 1, got {scale_in_minutes}")
    rates = np.asarray(rates_rps, dtype=np.float64)
    if np.any(rates < 0) or not np.all(np.isfinite(rates)):
        raise ValueError("rates_rps must be finite and >= 0")
    desired = np.maximum(min_tasks, np.ceil(rates / capacity_rps)).astype(np.int64)
    if max_tasks is not None:
        desired = np.minimum(desired, max_tasks)
    if desired.size == 0:
        return desired
    windows = np.lib.stride_tricks.sliding_window_view(
        np.concatenate([np.full(scale_in_minutes - 1, desired[0]), desired]), scale_in_minutes)
    return windows.max(axis=1)


def task_seconds(tasks_per_minute: np.ndarray, duration_s: float) -> float:
    """Task-seconds a run of duration_s bills for these per-minute task counts.

    The last minute counts only the part the run covers. Fargate's one-minute minimum per task
    start is met: tasks here run whole minutes.
    """
    tasks = np.asarray(tasks_per_minute, dtype=np.float64)
    if tasks.size == 0:
        return 0.0
    seconds = np.full(tasks.size, SECONDS_PER_MINUTE)
    seconds[-1] = duration_s - SECONDS_PER_MINUTE * (tasks.size - 1)
    if seconds[-1] < 0:
        raise ValueError(f"duration_s {duration_s} is shorter than {tasks.size - 1} whole minutes")
    return float(np.dot(tasks, seconds))


def fleet_task_seconds(arrivals_s: np.ndarray, duration_s: float,
                       capacity_rps: float = DISPATCHER_TASK_CAPACITY_RPS,
                       min_tasks: int = MIN_DISPATCHER_TASKS,
                       max_tasks: int | None = None) -> float:
    """Task-seconds of the fleet that autoscaling runs for these arrivals over duration_s."""
    rates = per_minute_rates(arrivals_s, duration_s)
    return task_seconds(tasks_for_rates(rates, capacity_rps, min_tasks, max_tasks), duration_s)
