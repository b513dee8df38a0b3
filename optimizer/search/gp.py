"""The search's first phase: a Gaussian process over the encoded space, asked and told
(scikit-optimize's `Optimizer`).

gp_rounds(evals) rounds (1 in 25 of the budget, 8..60): the given seed plans and the fastest
plan of the space (a feasible start whenever any plan is), skopt's random initial points, then
GP proposals. The budget goes mostly to the polish (optimizer/search/polish.py), because in
12-16 dimensions a GP refit costs ~0.2-0.5 s against ~5 ms for an estimate.
"""

from __future__ import annotations

import warnings
from typing import Any

from optimizer.search.encoding import Encoding
from optimizer.search.evaluation import Evaluator

GP_SHARE = 25  # one GP round per this many estimates of the budget ...
MIN_GP_ROUNDS, MAX_GP_ROUNDS = 8, 60  # ... within these (a refit is ~0.2-0.5 s at 60 points)
MIN_INITIAL_POINTS, MAX_INITIAL_POINTS = 8, 24
ACQ_POINTS = 2000  # candidates the acquisition function is evaluated on per proposal


def gp_rounds(evals: int) -> int:
    """Ask/tell rounds for a budget of `evals` estimates."""
    return min(evals, max(MIN_GP_ROUNDS, min(MAX_GP_ROUNDS, evals // GP_SHARE)))


def _gp_optimizer(enc: Encoding, seed: int, initial: int) -> Any:
    """skopt's Optimizer over the encoding's integer dimensions, never proposing invalid points."""
    from skopt import Optimizer
    from skopt.space import Integer

    dims = [Integer(0, len(d.choices) - 1, name=d.name) for d in enc.dimensions]
    return Optimizer(dims, base_estimator="GP", n_initial_points=initial, random_state=seed,
                     acq_optimizer="sampling", acq_optimizer_kwargs={"n_points": ACQ_POINTS},
                     space_constraint=lambda x: enc.valid(x))


def gp_phase(run: Evaluator, seeds: list[list[int]], budget: int, seed: int) -> None:
    """`budget` ask/tell rounds: the seeds, skopt's random initial points, then GP proposals."""
    from threadpoolctl import threadpool_limits

    dims = len(run.enc.dimensions)
    initial = min(max(MIN_INITIAL_POINTS, 2 * dims), MAX_INITIAL_POINTS, max(budget, 1))
    initial = max(initial, len(seeds) + 1)
    opt = _gp_optimizer(run.enc, seed, initial)
    # One BLAS thread: the GP's matrices are small, and threads only add contention and
    # run-to-run noise in the last bits (which would break seed reproducibility).
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for point in seeds[:budget]:
            opt.tell(point, run(point, "seed").objective, fit=False)
        for i in range(len(seeds), budget):
            point = [int(v) for v in opt.ask()]
            ev = run(point, "initial" if i < initial else "gp")
            opt.tell(point, ev.objective)
