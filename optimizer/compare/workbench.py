"""The shared ground of `mbs compare`: the workbench every policy is judged on, and outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Protocol

import numpy as np

from buffers.plan import Plan
from optimizer.platform.backends import Backend
from optimizer.platform.cost_breakdown import RequestPath
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.metrics import PlanMetrics
from optimizer.platform.plan_cost import FleetSettings, RunBilling
from optimizer.sim.engine import SimResult, repriced, simulate
from optimizer.workload.sampling import sample_minutes

MODES = ("dispatcher", "managed")


@dataclass(frozen=True, eq=False)
class Workbench:
    """The work every policy is judged on: one trace, its lengths, a backend and the SLO.

    The SLO holds when the `percentile`-th latency is at most slo_ms. Every plan is priced end
    to end on its request path, the dispatcher fleet sized by `fleet` from the trace's rates.
    """

    arrivals_s: np.ndarray
    lengths: np.ndarray
    backend: Backend
    slo_ms: float
    percentile: float = 99.0
    mode: str = "dispatcher"
    arch: str = "x86"
    rules: LambdaRules = field(default_factory=LambdaRules)
    fleet: FleetSettings = field(default_factory=FleetSettings)

    def __post_init__(self) -> None:
        if not self.slo_ms > 0:
            raise ValueError(f"slo_ms must be > 0, got {self.slo_ms}")
        if not 0 < self.percentile < 100:
            raise ValueError(f"percentile must be in (0, 100), got {self.percentile}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        if len(self.arrivals_s) == 0:
            raise ValueError("the workload has no requests")

    @cached_property
    def billing(self) -> RunBilling:
        """How a run on this trace is billed besides its invocations (the simulator's own)."""
        return RunBilling.for_arrivals(self.arrivals_s, self.backend.pricing, self.arch,
                                       self.fleet)

    def simulate(self, plan: Plan, path: RequestPath | None = None) -> SimResult:
        """The plan (as the backend runs it) replayed on the trace; path, if given, prices every
        buffer on that request path instead of its dispatch mode's (e.g. plain_lambda)."""
        result = simulate(self.backend.pin(plan), self.arrivals_s, self.lengths,
                          self.backend.service_ms, self.backend.pricing, self.slo_ms,
                          rules=self.rules, arch=self.arch, fleet=self.fleet)
        return result if path is None else repriced(result, self.slo_ms, self.billing, path)

    def tail_ms(self, latency_ms: np.ndarray) -> float:
        """The SLO's percentile of these latencies."""
        return float(np.percentile(latency_ms, self.percentile)) if latency_ms.size else 0.0

    def minute_sample(self, minutes: int, seed: int = 0) -> Workbench:
        """The same work on `minutes` whole minutes of the trace, run warm: how a dense trace
        (a superposed 1000x hour) is judged in seconds (optimizer/workload/sampling.py)."""
        sample = sample_minutes(self.arrivals_s, self.lengths, minutes,
                                np.random.default_rng([seed, minutes]))
        return replace(self, arrivals_s=sample.arrivals_s, lengths=sample.lengths,
                       rules=replace(self.rules, cold_start_ms=0.0))

    def at_slo(self, slo_ms: float) -> Workbench:
        """The same work judged against another SLO."""
        return Workbench(self.arrivals_s, self.lengths, self.backend, slo_ms, self.percentile,
                         self.mode, self.arch, self.rules, self.fleet)


@dataclass(frozen=True)
class Tuned:
    """What a search returns: the plan it chose and what finding it took."""

    plan: Plan
    wall_s: float
    evaluations: int
    feasible: bool  # the search's own verdict; compare re-judges it in the simulator
    message: str = ""


class Tuner(Protocol):
    """Searches plans of at most `max_buffers` buffers for the workbench's SLO."""

    def __call__(self, bench: Workbench, max_buffers: int, evals: int) -> Tuned: ...


@dataclass(frozen=True, eq=False)
class Outcome:
    """One policy, tuned and simulated (the oracle is a cost floor: no tail, not judged)."""

    name: str
    plan: Plan | None
    metrics: PlanMetrics
    latency_ms: np.ndarray  # per request; empty for the oracle
    tail_ms: float | None
    feasible: bool | None
    tuning: str
    settings: dict[str, Any] = field(default_factory=dict)
    search: Tuned | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {**self.metrics.to_dict(), "tail_ms": self.tail_ms, "feasible": self.feasible,
               "plan": self.plan.to_dict() if self.plan else None, "tuning": self.tuning,
               "settings": self.settings}
        if self.search is not None:
            out["search"] = {"wall_s": self.search.wall_s,
                             "evaluations": self.search.evaluations}
        return out


def judge(bench: Workbench, name: str, plan: Plan, result: SimResult, tuning: str,
          settings: dict[str, Any] | None = None, search: Tuned | None = None) -> Outcome:
    """An outcome from a simulated plan: its tail latency against the SLO."""
    tail = bench.tail_ms(result.latency_ms)
    return Outcome(name, bench.backend.pin(plan), result.metrics, result.latency_ms, tail,
                   tail <= bench.slo_ms, tuning, settings or {}, search)
