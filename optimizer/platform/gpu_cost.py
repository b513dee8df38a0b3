"""The gpu backend's bill: instance time of the fleet, not invocation time. Pure.

Lambda Managed Instances pricing (AWS Lambda pricing page, "Lambda Managed Instances", as
transcribed from aws.amazon.com/lambda/pricing on 2026-09-20 by api-evangelist/aws-lambda,
plans/aws-lambda-plans-pricing.yml; the page's own tables render client-side):
- "Request charges: $0.20 per million requests", the same fee as Lambda's
  (Pricing.lambda_request_usd), per invocation, i.e. per batch the dispatcher sends;
- "Compute management fee: 15% premium on the EC2 on-demand instance price", on top of the
  EC2 instance charges themselves, for every second an instance runs (MANAGEMENT_FEE);
- no duration (GB-second) charge: the page lists none for LMI, and the instances are what runs.
The fleet's lifetime is its instance-seconds: three instances by default (Lambda developer
guide, "Scaling Lambda Managed Instances": "It launches three by default for AZ resiliency").

The rest of the bill is the online path's, priced as for the lambda backend
(request_paths.online_request_cost per buffer, online_run_cost once: HTTP API, Cloud Map,
dispatcher tasks, logs, egress). FleetBilling is plan_cost.RunBilling with the infer function's
GB-seconds replaced by the fleet's instance time, so that the simulator and the estimator price
a gpu plan through the same plan_cost/metrics code as a lambda plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

from optimizer.platform.backends import GpuPricing
from optimizer.platform.cost_breakdown import CostBreakdown, RequestPath
from optimizer.platform.gpu_instances import instance
from optimizer.platform.plan_cost import RunBilling
from optimizer.platform.pricing import Pricing
from optimizer.platform.request_paths import InferBill

MANAGEMENT_FEE = 0.15  # LMI's compute management fee, a share of the EC2 on-demand price
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class FleetBill:
    """What a fleet is billed for: its instance-seconds at an on-demand price per hour."""

    instance_seconds: float
    on_demand_usd_per_hour: float

    def __post_init__(self) -> None:
        if self.instance_seconds < 0 or self.on_demand_usd_per_hour < 0:
            raise ValueError(f"instance_seconds and on_demand_usd_per_hour must be >= 0, got "
                             f"{self.instance_seconds}, {self.on_demand_usd_per_hour}")

    @classmethod
    def for_instance_type(cls, instance_seconds: float, instance_type: str) -> FleetBill:
        """The bill of `instance_seconds` of a catalogued type (gpu_instances.INSTANCES)."""
        return cls(instance_seconds, instance(instance_type).on_demand_usd_per_hour)

    @property
    def instance_hours(self) -> float:
        return self.instance_seconds / SECONDS_PER_HOUR

    @property
    def compute_usd(self) -> float:
        """EC2 on-demand instance time plus the management fee."""
        return self.instance_hours * self.on_demand_usd_per_hour * (1.0 + MANAGEMENT_FEE)


def lambda_prices(pricing: Pricing) -> Pricing:
    """The plain Lambda table behind `pricing` (GpuPricing carries it; others are it)."""
    if isinstance(pricing, GpuPricing):
        return pricing.lambda_pricing
    return pricing


@dataclass(frozen=True)
class FleetBilling(RunBilling):
    """RunBilling for a gpu plan: per buffer no GB-seconds (the request fee stays, per batch),
    and once per run the fleet's instance time beside the dispatcher's items."""

    fleet: FleetBill = FleetBill(0.0, 0.0)

    @classmethod
    def for_run(cls, billing: RunBilling, fleet: FleetBill) -> FleetBilling:
        """`billing`'s span, dispatcher fleet and prices (as Lambda's table) with `fleet`."""
        values = {f.name: getattr(billing, f.name) for f in fields(RunBilling)}
        values["pricing"] = lambda_prices(billing.pricing)
        return cls(**values, fleet=fleet)

    def with_fleet(self, fleet: FleetBill) -> FleetBilling:
        return replace(self, fleet=fleet)

    def buffer_cost(self, path: RequestPath, requests: float, bill: InferBill,
                    receives: float = 0.0) -> CostBreakdown:
        """A buffer's items on `path`, its invocations charged the request fee only."""
        return super().buffer_cost(path, requests, InferBill(0.0, bill.invocations), receives)

    def run_cost(self, paths: Sequence[RequestPath]) -> CostBreakdown:
        """The run's items plus the fleet's instance time (infer compute)."""
        return super().run_cost(paths) + CostBreakdown(infer_compute_usd=self.fleet.compute_usd)
