"""`mbs compare`: MBS and every baseline, tuned for one workload and SLO, judged by one simulator.

Each policy is tuned for the same trace, lengths, backend and SLO (the `percentile`-th latency
<= slo_ms), then replayed through the same discrete-event simulator on the same trace:
- mbs: the Bayesian search (optimizer/search/optimize.py) with up to `max_buffers` buffers;
- batch: BATCH (SC'20), the same search (same budget and seed) restricted to one buffer;
- triton: a Triton/TF-Serving dynamic batcher (one queue, max batch, max queue delay, a fixed
  pool of instances), its knobs picked from a small grid by simulation (compare_grid.py);
- no_batching: one request per invocation, its memory picked the same way;
- plain_lambda: the no-batching runs (their cold starts and latency) priced as a plain Lambda
  per request behind the HTTP API: no dispatcher, queue or table; its memory picked the same way;
- oracle: the SLO-blind floor of optimizer.sim.baselines.oracle_floor (each request at its own
  length in full zero-wait batches), the cheapest over the memory choices at the largest batch
  size the search may use. It ignores the SLO, so no plan that meets the SLO reaches it;
- bound and clairvoyant (optimizer/compare/floors.py): the floors that respect the SLO. bound
  is a proven lower bound (no plan of the memory sizes and batch cap above that meets the SLO
  costs less; computed, not simulated), clairvoyant a schedule planned knowing the whole trace
  and replayed by the simulator (an upper bound on the optimum). Together they bracket it.
Every figure is simulated (modelled), never measured, but the bound's, which is computed. Every
cost is end to end on the policy's request path (optimizer/platform/plan_cost.py): MBS and BATCH
on their mode's (dispatcher: the online path with its dispatcher fleet; managed: the bulk path,
batched by the SQS event source mapping as AWS runs it), Triton-style and no batching on the
online path as MBS in dispatcher mode, plain_lambda on its own. Tuning and ratios use the end-
to-end cost; infer and batching costs are reported beside it. In managed mode (`mbs compare
--mode managed`, with SLOs of seconds) one more policy, mbs_online, puts the online path beside
the bulk one on the same workload and SLO: MBS searched in dispatcher mode, for reference.

JSON schema (Comparison.to_dict; tests/test_compare.py checks it):
{
  "schema": "mbs.compare/2",
  "figures": "simulated",
  "workload": {"description": str, "requests": int, "rate_scale": float},
  "slo_ms": float, "percentile": float, "mode": "dispatcher" | "managed",
  "backend": {"name": "lambda" | "gpu", "profile": str, "device": str, "pricing": {...},
              "memory_choices_mb": [int, ...] | null},
  "policies": {            # keys: "mbs", "batch", "no_batching", "triton", "plain_lambda",
                           #       "oracle", "bound", "clairvoyant"; in managed mode also
                           #       "mbs_online"
    NAME: {
      ...PlanMetrics.to_dict():  end_to_end_cost_per_million_usd (every line item, the figure
                                 plans compete on), infer_cost_per_million_usd (the infer
                                 function: GB-seconds with INIT, request fees),
                                 batching_cost_per_million_usd (infer + queue: what batching
                                 changes), cost_per_million_usd and total_cost_per_million_usd
                                 (both aliases of end to end since mbs.compare/2; in /1
                                 cost_per_million_usd was the batching cost), p50_ms, p95_ms,
                                 p99_ms, slo_attainment, padding_overhead, invocations,
                                 requests, cold_starts, mean_batch_size, low_traffic_share and
                                 low_traffic_p99_bound_ms (managed mode's low-traffic wait,
                                 optimizer/platform/metrics.py), cost {line items in USD, path,
                                 totals}, per_buffer {...},
      "tail_ms": float,            # the percentile-th latency
      "feasible": bool | null,     # tail_ms <= slo_ms; null for the oracle and the bound
                                   # (false, with settings.infeasible, where no batching can
                                   # meet the SLO)
      "plan": {...} | null,        # Plan.to_dict(); null for the oracle and the bound
      "tuning": str,               # how its settings were chosen
      "settings": {...},           # the tuned knobs (e.g. the oracle's memory_mb, max_batch;
                                   # for searched ones max_buffers, search_feasible and
                                   # search_message)
      "search": {"wall_s": float, "evaluations": int}   # only the searched ones
    }
  },
  "ratios": {
    "cost_vs_mbs": {"batch": x, "no_batching": x, "triton": x, "plain_lambda": x,
                    "oracle": x, "bound": x, "clairvoyant": x},  # end to end, policy / mbs
    "padding_vs_mbs": {...}, "invocations_vs_mbs": {...},                    # policy / mbs
    "mbs_vs_oracle": x,                                                       # mbs / oracle
    "mbs_vs_bound": {"end_to_end": x, "infer": x},          # mbs / bound, per cost figure
    "mbs_vs_clairvoyant": {"end_to_end": x, "infer": x},    # mbs / clairvoyant
    "clairvoyant_vs_bound": {"end_to_end": x, "infer": x},  # the bracket's width
    "mbs_vs_online": x               # managed mode only: mbs (bulk) / mbs_online (online)
  }                                  # a ratio is null where its denominator is 0
}
With several rates (`mbs compare --rate-scale 1,10,100`), RateSweep.to_dict:
{"schema": "mbs.compare-rates/1", "figures": "simulated", "rate_scales": [float, ...],
 "comparisons": [one object as above per rate, in rate order]}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from optimizer.compare.floors import FLOORS, floor_outcomes
from optimizer.compare.grid import (
    BaselineGrids,
    oracle_outcome,
    pick_no_batching,
    pick_plain_lambda,
    pick_triton,
)
from optimizer.compare.workbench import Outcome, Tuner, Workbench, judge
from optimizer.platform.backends import Backend

SCHEMA = "mbs.compare/2"
RATES_SCHEMA = "mbs.compare-rates/1"
POLICIES = ("mbs", "batch", "no_batching", "triton", "plain_lambda", "oracle", *FLOORS)
BASELINES = ("batch", "no_batching", "triton", "plain_lambda", "oracle", *FLOORS)
ONLINE_REFERENCE = "mbs_online"  # managed mode: MBS planned for the online path, beside it
COST_FIGURES = ("end_to_end_cost_per_million_usd", "infer_cost_per_million_usd",
                "batching_cost_per_million_usd")
Progress = Callable[[str], None]


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


@dataclass(frozen=True)
class Comparison:
    """Every policy's outcome on one workbench."""

    slo_ms: float
    percentile: float
    mode: str
    outcomes: dict[str, Outcome]

    def __post_init__(self) -> None:
        missing = [p for p in POLICIES if p not in self.outcomes]
        if missing:
            raise ValueError(f"a comparison needs every policy, missing {missing}")

    @property
    def names(self) -> tuple[str, ...]:
        """Every policy compared: POLICIES, then the online reference where there is one."""
        return POLICIES + ((ONLINE_REFERENCE,) if ONLINE_REFERENCE in self.outcomes else ())

    def cost_usd(self, name: str) -> float:
        """A policy's end-to-end cost per 1M requests (simulated)."""
        return self.outcomes[name].metrics.end_to_end_cost_per_million_usd

    def costs(self, name: str) -> dict[str, float]:
        """A policy's three cost figures per 1M requests (simulated)."""
        metrics = self.outcomes[name].metrics
        return {figure: getattr(metrics, figure) for figure in COST_FIGURES}

    def ratios(self) -> dict[str, Any]:
        """Each baseline over MBS (end-to-end cost, padding, invocations), and MBS over the
        oracle."""
        mbs = self.outcomes["mbs"].metrics
        out: dict[str, Any] = {"cost_vs_mbs": {}, "padding_vs_mbs": {},
                               "invocations_vs_mbs": {}}
        for name in BASELINES:
            other = self.outcomes[name].metrics
            out["cost_vs_mbs"][name] = _ratio(self.cost_usd(name), self.cost_usd("mbs"))
            out["padding_vs_mbs"][name] = _ratio(other.padding_overhead, mbs.padding_overhead)
            out["invocations_vs_mbs"][name] = _ratio(other.invocations, mbs.invocations)
        out["mbs_vs_oracle"] = _ratio(self.cost_usd("mbs"), self.cost_usd("oracle"))
        out.update(self.floor_ratios())
        if ONLINE_REFERENCE in self.outcomes:
            out["mbs_vs_online"] = _ratio(self.cost_usd("mbs"), self.cost_usd(ONLINE_REFERENCE))
        return out

    def floor_ratios(self) -> dict[str, dict[str, float | None]]:
        """MBS over each floor and the bracket (clairvoyant over bound), end to end and infer."""
        def pair(num: str, den: str) -> dict[str, float | None]:
            a, b = self.outcomes[num].metrics, self.outcomes[den].metrics
            return {"end_to_end": _ratio(a.end_to_end_cost_per_million_usd,
                                         b.end_to_end_cost_per_million_usd),
                    "infer": _ratio(a.infer_cost_per_million_usd,
                                    b.infer_cost_per_million_usd)}

        return {"mbs_vs_bound": pair("mbs", "bound"),
                "mbs_vs_clairvoyant": pair("mbs", "clairvoyant"),
                "clairvoyant_vs_bound": pair("clairvoyant", "bound")}

    def to_dict(self, workload: str, backend: Backend, rate_scale: float = 1.0) -> dict[str, Any]:
        """The documented JSON object (see the module docstring)."""
        return {
            "schema": SCHEMA,
            "figures": "simulated",
            "workload": {"description": workload,
                         "requests": int(self.outcomes["mbs"].metrics.requests),
                         "rate_scale": rate_scale},
            "slo_ms": self.slo_ms,
            "percentile": self.percentile,
            "mode": self.mode,
            "backend": backend.to_dict(),
            "policies": {name: self.outcomes[name].to_dict() for name in self.names},
            "ratios": self.ratios(),
        }


@dataclass(frozen=True)
class CompareSettings:
    """How hard to tune: the search's budget, the grids' memory sizes, the oracle's batch cap.

    memory_choices_mb and oracle_max_batch should match the search space's, so that the
    baselines and the floor see the same memory sizes and batch sizes as MBS.
    """

    max_buffers: int = 4
    evals: int = 60
    memory_choices_mb: tuple[int, ...] = (1024, 1769, 3008)
    oracle_max_batch: int = 64

    def __post_init__(self) -> None:
        if self.max_buffers < 2:
            raise ValueError(f"max_buffers must be >= 2 (1 is BATCH), got {self.max_buffers}")
        if self.evals < 1:
            raise ValueError(f"evals must be >= 1, got {self.evals}")
        if not self.memory_choices_mb:
            raise ValueError("memory_choices_mb must name at least one size, got ()")
        if self.oracle_max_batch < 1:
            raise ValueError(f"oracle_max_batch must be >= 1, got {self.oracle_max_batch}")


def searched(bench: Workbench, tuner: Tuner, name: str, max_buffers: int,
             evals: int) -> Outcome:
    """MBS (max_buffers > 1) or BATCH (1): the search's plan, replayed by the simulator."""
    tuned = tuner(bench, max_buffers, evals)
    if len(tuned.plan.buffers) > max_buffers:
        raise ValueError(f"the search returned {len(tuned.plan.buffers)} buffers for "
                         f"max_buffers={max_buffers}")
    how = (f"Bayesian search, up to {max_buffers} buffers" if max_buffers > 1 else
           "Bayesian search restricted to one buffer (BATCH, SC'20)")
    settings = {"max_buffers": max_buffers, "search_feasible": tuned.feasible}
    if tuned.message:
        settings["search_message"] = tuned.message
    return judge(bench, name, tuned.plan, bench.simulate(tuned.plan), how, settings, tuned)


def compare(bench: Workbench, tuner: Tuner, settings: CompareSettings,
            progress: Progress | None = None,
            grids: BaselineGrids | None = None) -> Comparison:
    """Tune MBS and every baseline for the workbench, and simulate them all on its trace.

    MBS's and BATCH's searches are independent, with the same budget and seed; MBS's space
    holds every one-buffer plan, so where MBS comes out dearer than BATCH the search's budget,
    not the space, is the cause.
    In managed mode MBS is also searched in dispatcher mode (ONLINE_REFERENCE), so that the
    online path's figures stand beside the bulk path's.
    Parameters: tuner runs the search (compare_search.search_tuner, or a stub in tests);
    grids, if already simulated on this trace, are reused for the grid baselines.
    Returns: the Comparison, every figure simulated.
    """
    say = progress or (lambda _msg: None)
    say(f"searching MBS plans (up to {settings.max_buffers} buffers, {settings.evals} evals)")
    mbs = searched(bench, tuner, "mbs", settings.max_buffers, settings.evals)
    say(f"searching BATCH plans (one buffer, {settings.evals} evals)")
    batch = searched(bench, tuner, "batch", 1, settings.evals)
    if grids is None:
        say("simulating the Triton-style and no-batching grids")
        grids = BaselineGrids.build(bench, settings.memory_choices_mb)
    outcomes = {"mbs": mbs, "batch": batch, "no_batching": pick_no_batching(grids, bench),
                "triton": pick_triton(grids, bench),
                "plain_lambda": pick_plain_lambda(grids, bench),
                "oracle": oracle_outcome(bench, settings.memory_choices_mb,
                                         settings.oracle_max_batch)}
    if bench.mode == "managed":
        say(f"searching MBS plans for the online path (dispatcher mode, {settings.evals} "
            "evals), for reference")
        online = searched(replace(bench, mode="dispatcher"), tuner, ONLINE_REFERENCE,
                          settings.max_buffers, settings.evals)
        outcomes[ONLINE_REFERENCE] = replace(online, tuning=online.tuning + "; dispatcher "
                                             "mode, priced on the online path, for reference")
    say("computing the floors: the lower bound and the clairvoyant schedule")
    outcomes.update(floor_outcomes(bench, settings.memory_choices_mb, settings.oracle_max_batch))
    return Comparison(bench.slo_ms, bench.percentile, bench.mode, outcomes)


@dataclass(frozen=True)
class SweepPoint:
    """Each policy's simulated cost per 1M requests (end to end; infer and batching beside),
    and whether it met the SLO, at one SLO."""

    slo_ms: float
    cost_usd: dict[str, float]
    feasible: dict[str, bool | None]  # None for the oracle, which is not judged
    infer_usd: dict[str, float] | None = None
    batching_usd: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"slo_ms": self.slo_ms, "cost_per_million_usd": self.cost_usd,
                "infer_cost_per_million_usd": self.infer_usd,
                "batching_cost_per_million_usd": self.batching_usd,
                "feasible": self.feasible}


def sweep(bench: Workbench, tuner: Tuner, settings: CompareSettings, slos_ms: Sequence[float],
          grids: BaselineGrids | None = None,
          progress: Progress | None = None) -> tuple[SweepPoint, ...]:
    """Re-optimize every policy at each SLO (use a small settings.evals: it runs per SLO)."""
    grids = grids or BaselineGrids.build(bench, settings.memory_choices_mb)
    points = []
    for slo_ms in slos_ms:
        if progress:
            progress(f"SLO sweep: {slo_ms:g} ms")
        result = compare(bench.at_slo(float(slo_ms)), tuner, settings, grids=grids)
        costs = {n: result.costs(n) for n in POLICIES}
        points.append(SweepPoint(
            float(slo_ms), {n: c["end_to_end_cost_per_million_usd"] for n, c in costs.items()},
            {n: result.outcomes[n].feasible for n in POLICIES},
            {n: c["infer_cost_per_million_usd"] for n, c in costs.items()},
            {n: c["batching_cost_per_million_usd"] for n, c in costs.items()}))
    return tuple(points)


@dataclass(frozen=True)
class RatePoint:
    """One comparison at one rate scale (the trace's times divided by rate_scale)."""

    rate_scale: float
    workload: str
    comparison: Comparison


def rates_to_dict(points: Sequence[RatePoint], backend: Backend) -> dict[str, Any]:
    """The documented JSON object of a rate sweep: one comparison per rate."""
    return {"schema": RATES_SCHEMA, "figures": "simulated",
            "rate_scales": [p.rate_scale for p in points],
            "comparisons": [p.comparison.to_dict(p.workload, backend, p.rate_scale)
                            for p in points]}
