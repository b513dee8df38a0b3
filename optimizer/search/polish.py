"""The search's second phase: local search from the best structures, then iterated local search.

Local search (optimizer/search/moves.py: one field one choice up or down, a boundary moved, a
buffer split or merged; then two buffers' fields at once, which trades SLO slack between
buffers) runs from the best plan of each of the POLISH_STARTS best distinct structures, with
the rest of the budget. Why: in 12-16 dimensions a GP refit costs ~0.2-0.5 s against ~5 ms for
an estimate with per-buffer caching, and the landscape has one basin per structure; measured on
the default workload, the GP phase's best is 15-30% above the final plan
(benchmarks/results/search.json).
When every start has reached a local optimum and budget is left, iterated local search
(Lourenco, Martin & Stuetzle, "Iterated Local Search", 2003) spends it: a kick of KICK_STEPS
random single steps from the best plan so far (rng seeded by `seed`), then the same descent; it
stops when the budget is spent or MAX_STALE_KICKS kicks in a row found no plan not already
estimated.
"""

from __future__ import annotations

import numpy as np

from buffers.plan import Plan
from optimizer.search.evaluation import Evaluation, Evaluator
from optimizer.search.moves import pair_steps, steps

POLISH_STARTS = 4  # local searches, from the best plans of this many distinct structures
KICK_STEPS = (2, 4)  # an ILS kick is this many random single steps (inclusive range)
MAX_STALE_KICKS = 25  # kicks in a row that found nothing new: the space near the best is spent


def _starts(run: Evaluator) -> list[Evaluation]:
    """The best plan (by rank) of each distinct set of length ranges, best first."""
    seen: set[tuple] = set()
    out = []
    for ev in sorted(run.history, key=lambda e: (e.rank, e.index)):
        ranges = tuple((b.min_length, b.max_length) for b in ev.plan.buffers)
        if ranges not in seen:
            seen.add(ranges)
            out.append(ev)
    return out[:POLISH_STARTS]


def _better_step(run: Evaluator, best: Evaluation, limit: int) -> Evaluation | None:
    """The first single step, else pair step, to a better-ranked plan (first improvement)."""
    for moves in (steps, pair_steps):
        for plan in moves(run.enc, best.plan):
            if len(run.history) >= limit:
                return None
            ev = run.plan(plan, "polish")
            if ev.rank < best.rank:
                return ev
    return None


def _descend(run: Evaluator, best: Evaluation, limit: int) -> Evaluation:
    """Local search until no step improves or `limit` estimates have been made in all; from an
    infeasible start it first walks towards the SLO (smaller violation), then down in cost."""
    while (better := _better_step(run, best, limit)) is not None:
        best = better
    return best


def _kick(run: Evaluator, plan: Plan, rng: np.random.Generator) -> Plan:
    """A random walk of KICK_STEPS single steps from `plan` (its plans are not estimated)."""
    for _ in range(int(rng.integers(KICK_STEPS[0], KICK_STEPS[1] + 1))):
        moves = list(steps(run.enc, plan))
        if not moves:
            break
        plan = moves[int(rng.integers(len(moves)))]
    return plan


def polish(run: Evaluator, limit: int, seed: int) -> None:
    """Local search from the best plan of each of the POLISH_STARTS best structures, then
    iterated local search (kick the best, descend) with what is left of the budget."""
    for start in _starts(run):
        if len(run.history) >= limit:
            return
        _descend(run, start, limit)
    rng = np.random.default_rng(seed)
    stale = 0
    while len(run.history) < limit and stale < MAX_STALE_KICKS:
        best = run.best() or min(run.history, key=lambda e: (e.rank, e.index))
        before = len(run.history)
        _descend(run, run.plan(_kick(run, best.plan, rng), "polish"), limit)
        stale = stale + 1 if len(run.history) == before else 0
