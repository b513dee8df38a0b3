"""How a Lambda Managed Instances (LMI) GPU fleet scales: the rules and one decision. Pure.

What AWS documents (Lambda developer guide, "Scaling Lambda Managed Instances",
docs.aws.amazon.com/lambda/latest/dg/lambda-managed-instances-scaling.html):
- LMI "does not scale when invocations arrive and does not support cold starts. Instead, it
  scales asynchronously using resource consumption signals" (utilisation);
- "It launches three [instances] by default for AZ resiliency" (buffers/plan.py's
  DEFAULT_MIN_INSTANCES);
- "If your traffic more than doubles within 5 minutes, you may see throttles as Lambda scales up
  instances and execution environments to meet demand";
- and it scales down gradually ("Troubleshooting Lambda Managed Instances", lambda-managed-
  instances-troubleshooting.html, "Slow scale-down"; the excerpt read here was cut after
  "scale down grad", so the word is not checked).
AWS publishes no decision period, window or launch time. Ours, each an assumption:
- a decision every TICK_S = 60 s, from the GPU busy time of the last scale_out_window_s (60 s)
  to grow and of the last scale_in_window_s (10 min) to shrink, so it shrinks gradually;
- target tracking: the fleet that would run at target_utilization (60%, the template's
  RenderOptions.gpu_target_utilization_percent, after the CDK's GPU example);
- a new instance serves launch_s = 180 s after the decision (EC2 launch of a GPU instance, the
  CUDA image's pull and the model load), and is billed from the decision.
With 60% target and that lag, a load that more than doubles (1/0.6 = 1.67x headroom) within
the 4 minutes a decision takes to land saturates the fleet that was there, as AWS warns.
One execution environment with one process owns each instance's GPU (infra/aws/template/gpu.py),
so "busy" is GPU-busy seconds and an instance runs one batch at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from buffers.plan import BackendType, Plan

TICK_S = 60.0


@dataclass(frozen=True)
class ScalingRules:
    """The fleet's scaling constants (see the module doc for what each assumes)."""

    target_utilization: float = 0.6
    tick_s: float = TICK_S
    scale_out_window_s: float = 60.0
    scale_in_window_s: float = 600.0
    launch_s: float = 180.0

    def __post_init__(self) -> None:
        if not 0.0 < self.target_utilization <= 1.0:
            raise ValueError(f"target_utilization must be in (0, 1], got "
                             f"{self.target_utilization}")
        if not self.tick_s > 0:
            raise ValueError(f"tick_s must be > 0, got {self.tick_s}")
        for name in ("scale_out_window_s", "scale_in_window_s"):
            ticks = getattr(self, name) / self.tick_s
            if ticks < 1 or not math.isclose(ticks, round(ticks)):
                raise ValueError(f"{name} must be a whole number (>= 1) of tick_s "
                                 f"{self.tick_s:g} s, got {getattr(self, name)}")
        if not (math.isfinite(self.launch_s) and self.launch_s >= 0):
            raise ValueError(f"launch_s must be finite and >= 0, got {self.launch_s}")

    def window_ticks(self, window_s: float) -> int:
        """A window's length in ticks."""
        return round(window_s / self.tick_s)


@dataclass(frozen=True)
class FleetBounds:
    """The plan's fleet: at least min_instances, at most max_instances."""

    min_instances: int
    max_instances: int

    def __post_init__(self) -> None:
        if not 1 <= self.min_instances <= self.max_instances:
            raise ValueError(f"need 1 <= min_instances <= max_instances, got "
                             f"{self.min_instances}, {self.max_instances}")

    @classmethod
    def of(cls, plan: Plan) -> FleetBounds:
        """A gpu plan's bounds; ValueError for a lambda plan, which has no fleet."""
        if plan.backend is not BackendType.GPU or plan.max_instances is None:
            raise ValueError(f"plan {plan.name!r} has backend {plan.backend.value!r}; only gpu "
                             f"plans have a fleet")
        return cls(plan.min_instances, plan.max_instances)


def desired_instances(busy_s: float, window_s: float, target_utilization: float) -> int:
    """Instances that would have run `busy_s` of GPU time in window_s at the target."""
    if window_s <= 0:
        return 0
    return max(0, math.ceil(busy_s / (window_s * target_utilization) - 1e-9))


def scale_decision(out_busy_s: float, out_window_s: float, in_busy_s: float,
                   in_window_s: float, serving: int, pending: int, rules: ScalingRules,
                   bounds: FleetBounds) -> int:
    """Instances to launch (> 0) or retire (< 0) at a decision; 0 keeps the fleet.

    out_busy_s / in_busy_s: GPU-busy seconds of the whole fleet over the last out_window_s /
    in_window_s (shorter than the rules' windows at the start of a run). Grows to the target
    fleet of the short window; shrinks only when the long window agrees and nothing is pending.
    """
    current = serving + pending
    want_out = desired_instances(out_busy_s, out_window_s, rules.target_utilization)
    grow_to = min(max(want_out, bounds.min_instances), bounds.max_instances)
    if grow_to > current:
        return grow_to - current
    if pending:
        return 0
    want_in = desired_instances(in_busy_s, in_window_s, rules.target_utilization)
    shrink_to = min(max(want_in, want_out, bounds.min_instances), bounds.max_instances)
    return min(0, shrink_to - serving)
