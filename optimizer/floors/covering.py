"""The covering LP of the bound, by column generation, with certified dual weights. Pure.

Rows are requests, columns are legal groups (groups.py) at their cheapest legal cost; the
LP "min sum c(G) x_G, every covered request in >= 1 chosen group" is solved per block by
HiGHS (scipy's linprog) over a growing set of groups, and its duals are certified against
every legal group by the oracle's exhaustive check (bound.py's proof says why that suffices).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import OptimizeWarning, linprog

from optimizer.floors.groups import GroupOracle

SMOOTHING = 0.5  # weight of the best certified weights in the pricing weights
NEW_COLUMNS_PER_REQUEST = 2  # columns a round may add to a block, per request in it
SMALL_COMPONENT = 100  # blocks of up to this many requests are solved together ...
SMALL_TOGETHER = 600  # ... in LPs of about this many requests


@dataclass
class _Columns:
    """One component's LP columns: the groups (request indices), flat, and their costs."""

    keys: set[tuple[int, ...]]
    members: list[np.ndarray]
    prices: list[float]
    x: np.ndarray | None = None  # the last solve's primal, over the first len(x) columns

    def add(self, members: tuple[int, ...], price: float) -> bool:
        if members in self.keys:
            return False
        self.keys.add(members)
        self.members.append(np.asarray(members, np.int64))
        self.prices.append(price)
        return True


class ColumnGeneration:
    """The covering LP per component over a growing set of groups, with certified weights.

    Each round solves the changed components' LPs (HiGHS's interior point method without
    crossover: its duals lie inside the optimal face, which steadies column generation, after
    Rousseau, Gendreau and Feillet, EJOR 2007), prices with the smoothed weights
    y_mix = SMOOTHING x center + (1 - SMOOTHING) x y_LP (Wentges smoothing), certifies y_mix
    per component (groups never cross components: y_mix / max(1, rho_c) is feasible) and
    keeps the best certified weights as the center. A component is done when its certificate
    is within `gap` of its LP value (an upper bound on any certificate), or when no group is
    overpaid at its LP duals.
    """

    def __init__(self, oracle: GroupOracle, covered: np.ndarray, component: np.ndarray,
                 budget: int | None = None) -> None:
        self.oracle = oracle
        self.covered = covered
        self.component = component
        self.budget = budget  # with one component: up to `budget` requests may go uncovered
        count = int(component.max()) + 1
        self.sizes = np.bincount(component, minlength=count)
        self.columns: dict[int, _Columns] = {}
        self._add([(int(i),) for i in np.flatnonzero(covered)])
        self.y = np.zeros(covered.size)  # the LPs' duals
        self.center = np.zeros(covered.size)  # certified weights
        self.certified = np.zeros(count)
        self.lp_value = np.zeros(count)

    def _add(self, groups: list[tuple[int, ...]]) -> set[int]:
        """Add new groups as columns (at their cheapest legal cost); the components grown."""
        fresh = [m for g in groups if (m := tuple(i for i in g if self.covered[i]))]
        grown = set()  # a subset of a group is a group: requests already missed are dropped
        for members, price in zip(fresh, self.oracle.group_costs(fresh), strict=True):
            comp = int(self.component[members[0]])
            columns = self.columns.setdefault(comp, _Columns(set(), [], []))
            if math.isfinite(price) and columns.add(members, float(price)):
                grown.add(comp)
        return grown

    def solve(self, components: set[int]) -> None:
        """Solve each component's LP; small ones together (the LP is block-diagonal, so the
        duals are the same), up to SMALL_TOGETHER requests in one call, to save the per-call
        overhead. Larger ones alone: HiGHS's interior point method takes as many iterations
        as the hardest block, so joining those costs more than it saves."""
        batch: list[int] = []
        for comp in sorted(components, key=lambda c: self.sizes[c]):
            if self.sizes[comp] > SMALL_COMPONENT or self.budget is not None:
                self._solve([comp])
                continue
            batch.append(comp)
            if sum(self.sizes[c] for c in batch) >= SMALL_TOGETHER:
                self._solve(batch)
                batch = []
        if batch:
            self._solve(batch)

    def _solve(self, components: list[int]) -> None:
        blocks = [self.columns[comp] for comp in components]
        sizes = np.fromiter((m.size for b in blocks for m in b.members), np.int64)
        members = np.concatenate([m for b in blocks for m in b.members])
        prices = np.concatenate([np.asarray(b.prices) for b in blocks])
        rows, local = np.unique(members, return_inverse=True)
        matrix = sparse.csr_matrix(
            (np.ones(members.size), (local, np.repeat(np.arange(sizes.size), sizes))),
            shape=(rows.size, sizes.size))
        costs, bounds = prices, -np.ones(rows.size)
        if self.budget is not None:  # z_i >= 0 uncovers request i; sum z <= budget
            eye = sparse.identity(rows.size, format="csr")
            matrix = sparse.bmat([[matrix, eye], [None, -np.ones((1, rows.size))]],
                                 format="csr")
            costs = np.concatenate((prices, np.zeros(rows.size)))
            bounds = np.append(bounds, float(self.budget))
        with warnings.catch_warnings():  # run_crossover reaches HiGHS as an extra option
            warnings.simplefilter("ignore", OptimizeWarning)
            result = linprog(costs, A_ub=-matrix, b_ub=bounds, bounds=(0, None),
                             method="highs-ipm", options={"run_crossover": "off",
                                                         "ipm_optimality_tolerance": 1e-6})
        if result.status != 0:
            raise RuntimeError(f"the covering LP of components {components} failed: "
                               f"{result.message}")
        self.y[rows] = np.maximum(-result.ineqlin.marginals[:rows.size], 0.0)
        at = 0
        for comp, block in zip(components, blocks, strict=True):
            count = len(block.prices)
            block.x = result.x[at:at + count]  # the uncovering z come after every block
            self.lp_value[comp] = float(prices[at:at + count] @ block.x)
            at += count

    def _price(self, y: np.ndarray, components: set[int]) -> tuple[np.ndarray, set[int]]:
        """Per component: max ratio of y over its groups; and the components given columns."""
        active = np.isin(self.component, list(components))
        check = self.oracle.check(y, collect=True, active=active)
        rho = np.zeros(self.certified.size)
        np.maximum.at(rho, self.component, check.ratio_at)
        quota = dict.fromkeys(components, 0)
        chosen = []
        for k in np.argsort(-np.asarray(check.group_ratios), kind="stable"):
            comp = int(self.component[check.groups[k][0]])
            if quota[comp] < NEW_COLUMNS_PER_REQUEST * self.sizes[comp]:
                quota[comp] += 1
                chosen.append(check.groups[k])
        return rho, self._add(chosen)

    def _certify(self, y: np.ndarray, rho: np.ndarray, components: set[int]) -> None:
        for comp in components:
            members = self.component == comp
            scale = max(1.0, rho[comp]) * (1.0 + 1e-9)
            weights = y[members] / scale
            value = float(weights.sum())
            if self.budget:  # what the bound keeps: all but the `budget` largest weights
                value -= float(np.sort(weights)[max(0, weights.size - self.budget):].sum())
            if value > self.certified[comp]:
                self.certified[comp] = value
                self.center[members] = y[members] / scale

    def run(self, max_rounds: int, gap: float) -> int:
        """Rounds until every component is done (or max_rounds); returns the rounds run."""
        open_ = set(self.columns)
        rounds = 0
        while open_ and rounds < max_rounds:
            rounds += 1
            self.solve(open_)
            fresh = {c for c in open_ if self.certified[c] == 0.0 or self.budget is not None}
            y_mix = np.where(np.isin(self.component, list(fresh)), self.y,
                             SMOOTHING * self.center + (1.0 - SMOOTHING) * self.y)
            rho, grown = self._price(y_mix, open_)
            self._certify(y_mix, rho, open_)
            quiet = open_ - grown - fresh
            if quiet:  # smoothing may hide what the LP duals still overpay: price those too
                rho_lp, grown_lp = self._price(self.y, quiet)
                self._certify(self.y, rho_lp, quiet)
                grown |= grown_lp
            open_ = {c for c in grown
                     if self.budget is not None
                     or self.certified[c] < (1.0 - gap) * self.lp_value[c]}
        return rounds

    def primal(self) -> tuple[float, float]:
        """The LPs' batches and padded tokens (x-weighted sums over their groups)."""
        batches = padded = 0.0
        lengths = self.oracle.table.levels[self.oracle.level_of]
        for columns in self.columns.values():
            if columns.x is None:
                continue
            batches += float(columns.x.sum())
            padded += sum(float(w) * m.size * float(lengths[m].max())
                          for w, m in zip(columns.x, columns.members, strict=False) if w > 0)
        return batches, padded
