"""A gpu plan's gears set the fleet's bounds: on a gear switch whose bounds differ, the
dispatcher asks Lambda for them (PutFunctionScalingConfig), off the request path.

- FleetScaler is the port: one method, set_bounds(min, max). LambdaFleetScaler calls
  PutFunctionScalingConfig on the GPU function; LocalFleetScaler (the local stack and `mbs
  serve`, where no fleet runs) only records what it was asked, labelled as such.
- GearFleet watches the active gear: observe(gear) runs on the event loop with each arrival, and
  only compares two numbers; a call it needs goes to one background thread, in switch order.
  A failed call is logged and counted, never raised into a request: the fleet then keeps its
  previous bounds, and Lambda's own utilisation scaling still runs within them.
- At start, the initial gear's bounds are set if they differ from the plan's own, which are
  what the template deployed (FunctionScalingConfig, infra/aws/template/gpu.py).
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

from buffers.gears import GearSet
from buffers.plan import BackendType, Plan

log = logging.getLogger("mbs.dispatcher")

# PutFunctionScalingConfig needs a Qualifier, "(\$LATEST\.PUBLISHED|[0-9]+)": the scaling
# configuration of a published version (Lambda API reference, "PutFunctionScalingConfig",
# docs.aws.amazon.com/lambda/latest/dg/API_PutFunctionScalingConfig.html). The template
# publishes the GPU function to $LATEST.PUBLISHED, which the dispatcher's unqualified invokes
# run (infra/aws/template/gpu.py), so that is the version whose bounds the gears set.
LATEST_PUBLISHED = "$LATEST.PUBLISHED"


class FleetScaler(ABC):
    """Sets the GPU fleet's bounds (execution environments: one per GPU instance)."""

    label: str = ""  # what /healthz says this port does

    @abstractmethod
    def set_bounds(self, min_instances: int, max_instances: int) -> None:
        """Ask for the fleet's bounds; raises on failure (GearFleet logs and counts it)."""


class LambdaFleetScaler(FleetScaler):
    """PutFunctionScalingConfig on the deployed GPU function."""

    label = "lambda: PutFunctionScalingConfig"

    def __init__(self, client: Any, function_name: str,
                 qualifier: str = LATEST_PUBLISHED) -> None:
        self._client, self.function_name, self.qualifier = client, function_name, qualifier

    @classmethod
    def for_function(cls, function_name: str, region: str | None = None) -> LambdaFleetScaler:
        """With its own client: the standard retry mode (a throttled call is retried), unlike
        the invoke client, which never retries a batch."""
        config = Config(retries={"mode": "standard", "total_max_attempts": 3})
        return cls(boto3.client("lambda", region_name=region, config=config), function_name)

    def set_bounds(self, min_instances: int, max_instances: int) -> None:
        self._client.put_function_scaling_config(
            FunctionName=self.function_name, Qualifier=self.qualifier,
            FunctionScalingConfig={"MinExecutionEnvironments": min_instances,
                                   "MaxExecutionEnvironments": max_instances})


class LocalFleetScaler(FleetScaler):
    """No fleet runs locally: records the bounds asked for, which /healthz shows."""

    label = "local: no fleet to scale"

    def __init__(self) -> None:
        self.requested: list[tuple[int, int]] = []

    def set_bounds(self, min_instances: int, max_instances: int) -> None:
        self.requested.append((min_instances, max_instances))


def gear_fleet(plan: Plan, gears: GearSet | None, scaler: FleetScaler | None
               ) -> GearFleet | None:
    """The fleet's bounds per gear of a gpu plan with gears (None for any other plan)."""
    if gears is None or scaler is None or plan.backend is not BackendType.GPU:
        return None
    bounds = [(p.min_instances, p.max_instances or p.min_instances) for p in gears.plans]
    return GearFleet(scaler, bounds, (plan.min_instances, plan.max_instances or 0))


class GearFleet:
    """Sets the fleet's bounds when the active gear's differ from the last ones asked for."""

    def __init__(self, scaler: FleetScaler, bounds: list[tuple[int, int]],
                 deployed: tuple[int, int]) -> None:
        self.scaler, self.bounds = scaler, bounds
        self._asked = deployed  # what the fleet was last asked for (at first: the template's)
        self._gear: int | None = None
        self._lock = threading.Lock()  # counters are written by the worker, read by /healthz
        self.calls = self.errors = 0
        self.applied: tuple[int, int] | None = None
        self.last_error: str | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fleet-bounds")

    def observe(self, gear: int) -> None:
        """The gear the latest arrival went to; cheap, and never blocks the caller."""
        if gear == self._gear:
            return
        self._gear = gear
        wanted = self.bounds[gear]
        if wanted != self._asked:
            self._asked = wanted
            self._worker.submit(self._apply, gear, wanted)

    def _apply(self, gear: int, wanted: tuple[int, int]) -> None:
        try:
            self.scaler.set_bounds(*wanted)
        except Exception as exc:  # any failure: logged and counted, the requests go on
            log.warning("setting the GPU fleet to %s-%s instances for gear %d failed: %r",
                        wanted[0], wanted[1], gear, exc)
            with self._lock:
                self.calls += 1
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
            return
        log.info("GPU fleet set to %s-%s instances for gear %d (%s)", wanted[0], wanted[1],
                 gear, self.scaler.label)
        with self._lock:
            self.calls += 1
            self.applied = wanted

    def close(self, wait: bool = True) -> None:
        """Finish (wait) or drop the calls not yet made; no more are taken."""
        self._worker.shutdown(wait=wait, cancel_futures=not wait)

    def snapshot(self) -> dict[str, Any]:
        """The port, the gear's bounds asked for and the last applied, and the counters."""
        with self._lock:
            return {"scaler": self.scaler.label, "gear": self._gear,
                    "asked": list(self._asked),
                    "applied": None if self.applied is None else list(self.applied),
                    "calls": self.calls, "errors": self.errors, "last_error": self.last_error}
