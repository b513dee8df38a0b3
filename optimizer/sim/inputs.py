"""What a simulator run needs besides the plan: the workload, service times, prices and rules."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from buffers.types import ServiceTime
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.lmi_scaling import ScalingRules
from optimizer.platform.plan_cost import FleetSettings
from optimizer.platform.pricing import Pricing


@dataclass(frozen=True)
class SimInputs:
    """What simulate() needs besides the plan: the workload, service times and prices."""

    arrivals_s: np.ndarray
    lengths: np.ndarray
    service_ms: ServiceTime
    pricing: Pricing
    rules: LambdaRules | None = None
    fleet: FleetSettings | None = None  # the dispatcher's scaling (FleetSettings() when None)
    scaling: ScalingRules | None = None  # a gpu plan's fleet scaling (ScalingRules() when None)
