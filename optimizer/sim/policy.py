"""What a simulator policy is, what it is given, and the registry that builds one by name.

The engine asks the registry for the policy a run names and never imports a policy module;
each policy module registers its names when imported (optimizer/sim/__init__.py imports them),
after microsoft/vidur's scheduler registries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from buffers.gears import GearSet
from buffers.plan import Plan
from buffers.types import ServiceTime
from optimizer.sim.launcher import Launcher

FollowUps = list[tuple[float, Any]]  # (time_s, event) pairs a handler schedules


class Policy(Protocol):
    """Batch formation: turns arrivals and its own events into launches."""

    gear_of: np.ndarray | None  # with gears: the gear each request went to

    def on_arrival(self, index: int, now_s: float) -> FollowUps: ...

    def on_event(self, event: Any, now_s: float) -> FollowUps: ...


@runtime_checkable
class BulkPolicy(Protocol):
    """A policy whose launches follow from the trace alone, so that it forms them all at once
    (optimizer/sim/bulk.py); the loop then calls replay() instead of stepping events."""

    def replay(self) -> None: ...


@dataclass(frozen=True)
class RequestAttrs:
    """Per-request inputs beyond arrival and length (None: defaults for every request)."""

    tenants: Sequence[str] | None = None
    slo_ms: Sequence[float] | None = None  # per-request SLO: deadline = arrival + slo


@dataclass(frozen=True)
class PolicyOptions:
    """How batches form: the policy's name (None: the plan's) and its inputs."""

    name: str | None = None
    attrs: RequestAttrs = RequestAttrs()
    hold_when_busy: bool = False
    weights: dict[str, float] | None = None
    schedule: Sequence[Sequence[int]] | None = None  # fixed batches (request indices) to replay


@dataclass(frozen=True)
class PolicyInputs:
    """Everything a policy is built from: the run's plan, trace, launcher and options."""

    name: str
    plan: Plan
    arrivals_s: list[float]
    lengths: list[int]
    routes: list[int]  # each request's buffer index
    launcher: Launcher
    service_ms: ServiceTime | None = None
    options: PolicyOptions = PolicyOptions()
    gears: GearSet | None = None  # switch batching with the measured rate (buffers/gears.py)


PolicyFactory = Callable[[PolicyInputs], Policy]
_REGISTRY: dict[str, PolicyFactory] = {}


def register(name: str, factory: PolicyFactory) -> None:
    """Make `factory` the policy called `name`; a name is registered once."""
    if name in _REGISTRY and _REGISTRY[name] is not factory:
        raise ValueError(f"policy {name!r} is already registered")
    _REGISTRY[name] = factory


def policy_names() -> list[str]:
    """The registered policy names, sorted."""
    return sorted(_REGISTRY)


def make_policy(inputs: PolicyInputs) -> Policy:
    """The registered policy called inputs.name, built from `inputs`."""
    factory = _REGISTRY.get(inputs.name)
    if factory is None:
        raise ValueError(f"Unknown policy: {inputs.name!r}; known: {policy_names()}")
    return factory(inputs)
