"""Which backend to plan for: CPU Lambda or a GPU fleet, by the estimator's figures (modelled).

`mbs optimize` asks this before its search. Each backend gets a short estimator-only search
(the GP and the polish of optimize.py, no simulator re-check: cheap at any request count) over
its own space: lambda over buffers and memory, gpu over buffers and the fleet on each
instance type (optimizer/search/gpu.py's space, the profile moved to each type's GPU, an
estimate), on whole minutes of a dense trace (dense_sample). The cheaper best plan end to
end wins; both figures are modelled, and so is the
reason given: the two request paths are the same (the online path), so the difference is the
infer bill, Lambda's GB-seconds against the fleet's instance time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from buffers.plan import Plan
from optimizer.estimator.context import EstimatorContext
from optimizer.estimator.fleet import fleet_context
from optimizer.platform.gpu_cost import SECONDS_PER_HOUR
from optimizer.platform.gpu_instances import INSTANCES
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.latency_model import GpuLatencyModel, LatencyModel
from optimizer.platform.metrics import PlanMetrics
from optimizer.platform.pricing import Pricing
from optimizer.search.encoding import Encoding
from optimizer.search.evaluation import Evaluation, Evaluator
from optimizer.search.gp import gp_phase, gp_rounds
from optimizer.search.gpu import gpu_space, service_for
from optimizer.search.polish import polish
from optimizer.search.space import SearchSpace, make_space
from optimizer.workload.sampling import MINUTE_S, sample_minutes

DEFAULT_CHOICE_EVALS = 80  # estimates per backend (per instance type on gpu): a few seconds
DENSE_REQUESTS = 200_000  # above this a search runs on whole minutes of the trace


def dense_sample(arrivals_s: np.ndarray, lengths: np.ndarray, seed: int = 0,
                 sample_requests: int = DENSE_REQUESTS,
                 piece_s: float = MINUTE_S) -> tuple[np.ndarray, np.ndarray, str]:
    """The trace, or whole pieces of piece_s seconds (minutes by default) of a dense one (about
    sample_requests requests), and a note saying which (empty: the whole trace)."""
    count = len(arrivals_s)
    if count <= sample_requests:
        return arrivals_s, lengths, ""
    total = max(1, math.ceil(float(arrivals_s[-1]) / piece_s))
    pieces = max(1, min(total, round(sample_requests * total / count)))
    sample = sample_minutes(arrivals_s, lengths, pieces,
                            np.random.default_rng([seed, pieces]), piece_s)
    unit = "minutes" if piece_s == MINUTE_S else f"{piece_s:g} s pieces"
    return sample.arrivals_s, sample.lengths, (
        f"; searched on {pieces} of {total} {unit} ({sample.arrivals_s.size} requests, "
        "optimizer/workload/sampling.py), figures simulated on the whole trace")


def modelled_best(ctx: EstimatorContext, space: SearchSpace, lengths: np.ndarray,
                  slo_ms: float, percentile: float, evals: int, seed: int) -> Evaluation | None:
    """The cheapest plan the estimator finds meeting the SLO in `evals` estimates (or None)."""
    enc = Encoding.build(space, lengths)
    run = Evaluator(ctx, enc, slo_ms, percentile)
    if enc.dimensions:
        gp_phase(run, [enc.fastest()], gp_rounds(evals), seed)
    else:
        run([], "seed")
    polish(run, evals, seed)
    return run.best()


@dataclass(frozen=True)
class Choice:
    """The recommended backend and the modelled figures behind it."""

    backend: str  # "lambda" or "gpu"
    lambda_best: Evaluation | None
    gpu_best: Evaluation | None
    duration_s: float

    @property
    def lambda_usd(self) -> float | None:
        return self.lambda_best.cost_per_million_usd if self.lambda_best else None

    @property
    def gpu_usd(self) -> float | None:
        return self.gpu_best.cost_per_million_usd if self.gpu_best else None

    def reason(self) -> str:
        """One line: the choice, both end-to-end figures, and what makes the difference."""
        lam, gpu = self.lambda_best, self.gpu_best
        if lam is None and gpu is None:
            return "neither backend has a plan meeting the SLO (modelled)"
        if gpu is None or lam is None:
            missing = "a GPU fleet" if gpu is None else "CPU Lambda"
            best = lam or gpu
            return (f"{self.backend}: ${best.cost_per_million_usd:.3f}/1M end to end (modelled);"
                    f" no plan on {missing} met the SLO in the estimator")
        fleet = _fleet_words(gpu.plan, gpu.metrics, self.duration_s)
        cpu_infer = lam.metrics.infer_cost_per_million_usd
        gpu_infer = gpu.metrics.infer_cost_per_million_usd
        if self.backend == "gpu":
            return (f"gpu: ${gpu.cost_per_million_usd:.3f}/1M end to end vs "
                    f"${lam.cost_per_million_usd:.3f} on CPU Lambda at this rate (modelled): "
                    f"{fleet} cost ${gpu_infer:.3f} per 1M requests against ${cpu_infer:.3f} "
                    "of Lambda GB-seconds")
        return (f"lambda: ${lam.cost_per_million_usd:.3f}/1M end to end vs "
                f"${gpu.cost_per_million_usd:.3f} on a GPU fleet at this rate (modelled): "
                f"Lambda's GB-seconds cost ${cpu_infer:.3f} per 1M requests against "
                f"${gpu_infer:.3f} for {fleet}")

    def to_dict(self) -> dict[str, object]:
        return {"backend": self.backend, "figures": "modelled", "reason": self.reason(),
                "lambda_end_to_end_cost_per_million_usd": self.lambda_usd,
                "gpu_end_to_end_cost_per_million_usd": self.gpu_usd,
                "gpu_plan": self.gpu_best.plan.to_dict() if self.gpu_best else None}


def _fleet_words(plan: Plan, metrics: PlanMetrics, duration_s: float) -> str:
    """'the fleet of 3-8 g6.xlarge (3.1 instance-hours, 1.0x its floor)'."""
    hours = metrics.instance_hours or 0.0
    floor_h = plan.min_instances * duration_s / SECONDS_PER_HOUR
    over = f", {hours / floor_h:.1f}x its floor" if floor_h > 0 else ""
    return (f"the fleet of {plan.min_instances}-{plan.max_instances} {plan.instance_type} "
            f"({hours:.2f} instance-hours{over})")


def choose_backend(arrivals_s: np.ndarray, lengths: np.ndarray, cpu_model: LatencyModel,
                   gpu_model: GpuLatencyModel, pricing: Pricing, slo_ms: float,
                   percentile: float, *, evals: int = DEFAULT_CHOICE_EVALS, seed: int = 0,
                   max_buffers: int = 4, arch: str = "x86",
                   instance_types: Sequence[str] | None = None) -> Choice:
    """The cheaper backend end to end for this workload and SLO (modelled; module doc).

    Parameters: cpu_model the Lambda profile's model, gpu_model the GPU profile's (moved to
    each instance type's GPU); evals the estimate budget per backend and instance type.
    Returns: Choice; on a tie or where neither meets the SLO, lambda (it scales to zero).
    """
    arrivals_s, lengths, note = dense_sample(arrivals_s, lengths, seed)
    warm = LambdaRules(cold_start_ms=0.0) if note else None  # a sample runs warm (sampling.py)
    ctx = EstimatorContext.build(arrivals_s, lengths, cpu_model, pricing, slo_ms, warm, arch)
    lam = modelled_best(ctx, make_space("dispatcher", max_buffers, arch, slo_ms=slo_ms),
                        lengths, slo_ms, percentile, evals, seed)
    gpu = None
    for kind in instance_types or sorted(INSTANCES):
        gctx = fleet_context(arrivals_s, lengths, service_for(gpu_model, kind), pricing, slo_ms)
        best = modelled_best(gctx, gpu_space(kind, max_buffers, slo_ms=slo_ms), lengths,
                             slo_ms, percentile, evals, seed)
        if best is not None and (gpu is None
                                 or best.cost_per_million_usd < gpu.cost_per_million_usd):
            gpu = best
    wins_gpu = gpu is not None and (lam is None
                                    or gpu.cost_per_million_usd < lam.cost_per_million_usd)
    return Choice("gpu" if wins_gpu else "lambda", lam, gpu, ctx.billing.duration_s)
