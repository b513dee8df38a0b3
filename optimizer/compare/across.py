"""`mbs compare --backend lambda,gpu`: MBS and BATCH on each backend at each rate, end to end.

At every rate (`--rate-scale 1,10,100,1000`, best with `--rate-mode superpose`, which keeps the
trace's hour so that a fleet scaling in minutes and its floor of three instances are exercised)
each backend gets its own tuned plans for the same trace, lengths and SLO, replayed by the
simulator (every figure simulated, none measured):
- mbs: the Bayesian search with up to max_buffers buffers; on gpu, buffers and fleet together
  on each instance type (optimizer/search/gpu.py), the cheapest type's plan;
- batch: the same search restricted to one buffer (BATCH, SC'20); on gpu the same fleet search;
- ragged (gpu only, where the ragged baseline is available): TEI-style token-budget batching
  on the fleet, service time modelled at the real token count (optimizer/sim/ragged.py).
Costs are end to end on the online path (dispatcher, HTTP API, ...), gpu plans billed by the
fleet's instance time (optimizer/platform/gpu_cost.py). The crossover is where the cheaper
backend for MBS (and for BATCH) changes along the rate (optimizer/compare/crossover.py).

JSON schema (BackendSweep.to_dict; tests/test_compare_backends.py checks it):
{
  "schema": "mbs.compare-backends/1",
  "figures": "simulated",
  "rate_mode": "compress" | "superpose",   # how --rate-scale raised the rate, every figure
  "slo_ms": float, "percentile": float,
  "backends": {NAME: {"profile": str, "model": str}},   # NAME: "lambda" | "gpu"
  "rates": [
    {"rate_scale": float, "workload": str, "requests": int,
     "cheaper": {"mbs": NAME | null, "batch": NAME | null},   # lowest end-to-end $/1M
     "backends": {NAME: {POLICY: {        # POLICY: "mbs", "batch"; on gpu also "ragged"
        "feasible": bool,                 # the simulated tail met the SLO
        "end_to_end_cost_per_million_usd": float | null,   # null: no plan met the SLO
        "infer_cost_per_million_usd": float | null,
        "instance_hours": float | null,   # gpu: the fleet's instance time; lambda: null
        "padding_overhead": float | null, "mean_batch_size": float | null,
        "p99_ms": float | null, "slo_attainment": float | null,
        "plan": {...} | null,             # Plan.to_dict()
        "tuning": str, "message": str,
        "search": {"wall_s": float, "evaluations": int}}}}}
  ],
  "crossovers": {"mbs": [CROSSOVER, ...], "batch": [CROSSOVER, ...]},
      # CROSSOVER: {"rate_scale": float (interpolated), "cheaper_below": NAME,
      #             "cheaper_above": NAME, "between": [float, float] (the measured rates)}
      # empty where the cheaper backend never changes (or only one backend was compared)
  "plots": {"files": [str, ...]}        # only with --plots
}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from buffers.plan import Plan
from optimizer.compare.crossover import Crossover, cheaper, crossovers
from optimizer.platform.metrics import PlanMetrics

SCHEMA = "mbs.compare-backends/1"
SEARCHED = ("mbs", "batch")  # the policies compared on every backend
ORDER = ("lambda", "gpu")  # backends in table and chart order
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Figures:
    """One policy on one backend at one rate: simulated metrics, or why there are none."""

    policy: str
    feasible: bool
    metrics: PlanMetrics | None
    plan: Plan | None
    tuning: str
    message: str = ""
    wall_s: float = 0.0
    evaluations: int = 0

    @property
    def cost_usd(self) -> float | None:
        """End-to-end $/1M (simulated), None where no plan met the SLO."""
        if self.metrics is None or not self.feasible:
            return None
        return self.metrics.end_to_end_cost_per_million_usd

    def to_dict(self) -> dict[str, Any]:
        m = self.metrics
        return {"feasible": self.feasible,
                "end_to_end_cost_per_million_usd": self.cost_usd,
                "infer_cost_per_million_usd": m.infer_cost_per_million_usd if m else None,
                "instance_hours": m.instance_hours if m else None,
                "padding_overhead": m.padding_overhead if m else None,
                "mean_batch_size": m.mean_batch_size if m else None,
                "p99_ms": m.p99_ms if m else None,
                "slo_attainment": m.slo_attainment if m else None,
                "plan": self.plan.to_dict() if self.plan else None,
                "tuning": self.tuning, "message": self.message,
                "search": {"wall_s": self.wall_s, "evaluations": self.evaluations}}


@dataclass(frozen=True, eq=False)
class RateWork:
    """The work at one rate: the trace, its lengths and the SLO every backend is held to."""

    rate_scale: float
    workload: str
    arrivals_s: np.ndarray
    lengths: np.ndarray
    slo_ms: float
    percentile: float = 99.0


class Searcher(Protocol):
    """Tunes and simulates `policy` on one backend at one rate."""

    def __call__(self, work: RateWork, policy: str) -> Figures: ...


@dataclass(frozen=True)
class RateRow:
    """Every backend's figures at one rate."""

    rate_scale: float
    workload: str
    requests: int
    figures: dict[str, dict[str, Figures]]  # backend -> policy -> figures

    def cost_usd(self, backend: str, policy: str) -> float | None:
        figures = self.figures.get(backend, {}).get(policy)
        return figures.cost_usd if figures else None

    def cheaper(self, policy: str) -> str | None:
        """The backend with the lowest end-to-end $/1M for `policy` (None: fewer than two)."""
        names = [b for b in ORDER if b in self.figures]
        if len(names) != 2:
            return None
        pair = (names[0], names[1])
        return cheaper(self.cost_usd(pair[0], policy), self.cost_usd(pair[1], policy), pair)


@dataclass(frozen=True)
class BackendSweep:
    """The rows of a sweep over rates and backends, with where the cheaper backend changes."""

    rows: tuple[RateRow, ...]
    backends: dict[str, dict[str, str]]  # name -> {"profile", "model"}
    rate_mode: str
    slo_ms: float
    percentile: float
    plots: list[str] = field(default_factory=list)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(b for b in ORDER if b in self.backends)

    def series(self, backend: str, policy: str) -> list[float | None]:
        return [row.cost_usd(backend, policy) for row in self.rows]

    def crossovers(self, policy: str) -> tuple[Crossover, ...]:
        """Where the cheaper backend for `policy` changes along the rate (needs two backends)."""
        if len(self.names) != 2 or len(self.rows) < 2:
            return ()
        a, b = self.names
        return crossovers([r.rate_scale for r in self.rows], self.series(a, policy),
                          self.series(b, policy), (a, b))

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON object (see the module docstring)."""
        out = {"schema": SCHEMA, "figures": "simulated", "rate_mode": self.rate_mode,
               "slo_ms": self.slo_ms, "percentile": self.percentile,
               "backends": self.backends,
               "rates": [{"rate_scale": r.rate_scale, "workload": r.workload,
                          "requests": r.requests,
                          "cheaper": {p: r.cheaper(p) for p in SEARCHED},
                          "backends": {b: {p: f.to_dict() for p, f in r.figures[b].items()}
                                       for b in self.names if b in r.figures}}
                         for r in self.rows],
               "crossovers": {p: [c.to_dict() for c in self.crossovers(p)] for p in SEARCHED}}
        if self.plots:
            out["plots"] = {"files": list(self.plots)}
        return out


def run_sweep(works: Sequence[RateWork], searchers: dict[str, dict[str, Searcher]],
              backends: dict[str, dict[str, str]], rate_mode: str,
              progress: Progress | None = None) -> BackendSweep:
    """Tune and simulate every policy of every backend at every rate.

    Parameters: works one RateWork per rate, ascending; searchers backend -> policy -> Searcher
    (optimizer/compare/backend_search.py builds the real ones; tests pass stubs); backends each
    backend's profile and model, for the report.
    """
    if not works:
        raise ValueError("a sweep needs at least one rate, got none")
    say = progress or (lambda _msg: None)
    rows = []
    for work in works:
        figures: dict[str, dict[str, Figures]] = {}
        for backend in (b for b in ORDER if b in searchers):
            figures[backend] = {}
            for policy, search in searchers[backend].items():
                say(f"rate x{work.rate_scale:g}: {policy} on {backend} "
                    f"({len(work.arrivals_s)} requests)")
                figures[backend][policy] = search(work, policy)
        rows.append(RateRow(work.rate_scale, work.workload, len(work.arrivals_s), figures))
    first = works[0]
    return BackendSweep(tuple(rows), backends, rate_mode, first.slo_ms, first.percentile)
