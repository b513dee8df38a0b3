"""What the plan search may choose, and how a point of the search space becomes a valid Plan.

Every dimension is an integer index into a sorted tuple of choices (ordinal, so a Gaussian
process can model it smoothly), and a choice tuple with one value is a constant, not a dimension.

Encoding (`Encoding.decode`):
- `buffers` (1..max_buffers) and `cut1..cut{K-1}`: indices into the workload's boundary
  candidates (`boundary_candidates`). The first buffers-1 cuts are sorted and de-duplicated and
  become the buffers' upper bounds, so any point yields a contiguous cover of 1..256; two equal
  cuts merge two buffers (a plan with fewer buffers, never an invalid one).
- per buffer slot j (slot j serves the j-th length range after sorting): `batch{j}`,
  `timeout{j}`, `memory{j}`, and, where the space offers more than one, `tokens{j}`
  (max_batch_tokens) and `concurrency{j}`.
- managed mode: the window is whole seconds (the timeout choices are validated to be) and
  BatchSize <= 10 when the window is 0 (AWS Lambda developer guide, SQS event source mapping).
  `Encoding.valid` is the skopt Space constraint, so the GP never proposes such a point, and
  `decode` refuses one instead of repairing it: no invalid plan is ever evaluated.
- `layout` (gears): boundaries, names, memory and concurrency are fixed to the given buffers,
  and only batch size, timeout and token budget are searched.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from buffers.plan import (
    MAX_BATCH_WITHOUT_WINDOW,
    MAX_DISPATCHER_BATCH,
    MAX_MANAGED_BATCH,
    MAX_WINDOW_S,
    MIN_CONCURRENCY,
    MODEL_MAX_LENGTH,
    BufferSpec,
    DispatchMode,
    Plan,
    PlanError,
)

# Lambda memory in vCPU steps (1,769 MB = 1 vCPU; AWS Lambda docs, "Memory and computing
# power"), from 1,024 MB (a time slice of one core) to the 10,240 MB maximum.
LAMBDA_MEMORIES_MB = (1024, 1769, 2654, 3538, 5307, 7076, 8845, 10240)
# Batch sizes, about 1.25-1.5x apart; 10 is kept because it is managed mode's cap at window 0.
BATCH_LADDER = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160,
                192, 256, 384, 512, 768, 1024)
DISPATCHER_TIMEOUTS = 24  # timeout choices: 0 ms and this many - 1 geometric steps to the top
TIMEOUT_STEP_MS = 5  # dispatcher timeouts are rounded to this
DEFAULT_CONCURRENCY = 4  # the shipped plans' MaximumConcurrency
BOUNDARY_QUANTILES = 32  # cut candidates: the workload's length quantiles at k/32 ...
BOUNDARY_STEP = 16  # ... and every 16 tokens, so sparse long ranges are cut finely too


@dataclass(frozen=True)
class SearchSpace:
    """The choices a plan search may make, as sorted tuples (one value: fixed)."""

    mode: DispatchMode = DispatchMode.DISPATCHER
    max_buffers: int = 4
    arch: str = "x86"
    memories_mb: tuple[int, ...] = LAMBDA_MEMORIES_MB
    batch_sizes: tuple[int, ...] = BATCH_LADDER[:16]
    timeouts_ms: tuple[int, ...] = (0, 50, 100, 200, 400)
    batch_tokens: tuple[int | None, ...] = (None,)  # None: no padded-token budget
    concurrencies: tuple[int, ...] = (DEFAULT_CONCURRENCY,)
    layout: tuple[BufferSpec, ...] | None = None  # fixed boundaries and memory (gears)
    boundaries: tuple[int, ...] | None = None  # cut candidates (None: from the workload)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", DispatchMode(self.mode))
        if not 1 <= self.max_buffers <= MODEL_MAX_LENGTH:
            raise ValueError(f"max_buffers must be in 1..{MODEL_MAX_LENGTH}, "
                             f"got {self.max_buffers}")
        if self.arch not in ("x86", "arm64"):
            raise ValueError(f"arch must be 'x86' or 'arm64', got {self.arch!r}")
        for name in ("memories_mb", "batch_sizes", "timeouts_ms", "concurrencies"):
            _check_sorted(name, getattr(self, name))
        tokens = [t for t in self.batch_tokens if t is not None]
        if not self.batch_tokens or tokens != sorted(set(tokens)) or \
                self.batch_tokens.count(None) > 1 or (None in self.batch_tokens
                                                       and self.batch_tokens[0] is not None):
            raise ValueError(f"batch_tokens must be None then ascending ints, got "
                             f"{self.batch_tokens}")
        if tokens and tokens[0] < MODEL_MAX_LENGTH:
            raise ValueError(f"batch_tokens must be >= {MODEL_MAX_LENGTH} (a buffer may hold "
                             f"the longest request), got {tokens[0]}")
        if self.concurrencies[0] < MIN_CONCURRENCY:
            raise ValueError(f"concurrencies must be >= {MIN_CONCURRENCY}, got "
                             f"{self.concurrencies[0]}")
        self._check_mode()
        if self.boundaries is not None:
            _check_sorted("boundaries", self.boundaries)
            if not 1 <= self.boundaries[0] <= self.boundaries[-1] < MODEL_MAX_LENGTH:
                raise ValueError(f"boundaries must lie in 1..{MODEL_MAX_LENGTH - 1}, got "
                                 f"{self.boundaries}")
        if self.layout is not None:
            Plan(buffers=tuple(self.layout))  # the layout must itself be a valid cover

    def _check_mode(self) -> None:
        if self.mode is DispatchMode.DISPATCHER:
            if self.batch_sizes[-1] > MAX_DISPATCHER_BATCH:
                raise ValueError(f"batch_sizes must be <= {MAX_DISPATCHER_BATCH} in dispatcher "
                                 f"mode, got {self.batch_sizes[-1]}")
            return
        odd = [t for t in self.timeouts_ms if t % 1000 or t > MAX_WINDOW_S * 1000]
        if odd:
            raise ValueError(f"managed timeouts_ms must be whole seconds 0..{MAX_WINDOW_S} s, "
                             f"got {odd}")
        if self.batch_sizes[-1] > MAX_MANAGED_BATCH:
            raise ValueError(f"batch_sizes must be <= {MAX_MANAGED_BATCH} in managed mode, "
                             f"got {self.batch_sizes[-1]}")
        if self.timeouts_ms[0] == 0 and self.batch_sizes[0] > MAX_BATCH_WITHOUT_WINDOW:
            raise ValueError(f"managed mode with a 0 s window needs a batch size <= "
                             f"{MAX_BATCH_WITHOUT_WINDOW}, got smallest {self.batch_sizes[0]}")


def _check_sorted(name: str, values: tuple[int, ...]) -> None:
    if not values or list(values) != sorted(set(values)) or values[0] < 0:
        raise ValueError(f"{name} must be non-empty, ascending, distinct and >= 0, got {values}")


def make_space(mode: str = "dispatcher", max_buffers: int = 4, arch: str = "x86", *,
               slo_ms: float = 1000.0, batch_range: tuple[int, int] = (1, 64),
               timeout_range_ms: tuple[int, int] | None = None,
               memory_range_mb: tuple[int, int] = (1024, 10240),
               max_batch_tokens: Sequence[int] | None = None,
               concurrencies: Sequence[int] = (DEFAULT_CONCURRENCY,)) -> SearchSpace:
    """A SearchSpace on grids spanning the given ranges.

    Timeouts default to 0..slo_ms (dispatcher: 0 then geometric steps of 5 ms resolution;
    managed: whole seconds 0..ceil(slo/1 s), at most 300). max_batch_tokens: budgets to try
    besides none.
    """
    mode_enum = DispatchMode(mode)
    lo_b, hi_b = batch_range
    if not 1 <= lo_b <= hi_b:
        raise ValueError(f"batch_range must be 1 <= lo <= hi, got {batch_range}")
    batches = tuple(sorted({b for b in BATCH_LADDER if lo_b <= b <= hi_b} | {lo_b, hi_b}))
    lo_m, hi_m = memory_range_mb
    memories = tuple(sorted({m for m in LAMBDA_MEMORIES_MB if lo_m <= m <= hi_m} | {lo_m, hi_m}))
    if mode_enum is DispatchMode.MANAGED:
        top_s = min(MAX_WINDOW_S, max(1, math.ceil(slo_ms / 1000.0)))
        lo_t, hi_t = timeout_range_ms or (0, top_s * 1000)
        timeouts = tuple(range(math.ceil(lo_t / 1000) * 1000, hi_t + 1, 1000))
    else:
        lo_t, hi_t = timeout_range_ms or (0, int(slo_ms))
        steps = np.geomspace(max(lo_t, 10), max(hi_t, 10), DISPATCHER_TIMEOUTS - 1)
        rounded = {int(round(t / TIMEOUT_STEP_MS) * TIMEOUT_STEP_MS) for t in steps}
        timeouts = tuple(sorted({lo_t, hi_t} | {t for t in rounded if lo_t <= t <= hi_t}))
    tokens = (None, *sorted(set(max_batch_tokens))) if max_batch_tokens else (None,)
    return SearchSpace(mode=mode_enum, max_buffers=max_buffers, arch=arch, memories_mb=memories,
                       batch_sizes=batches, timeouts_ms=timeouts, batch_tokens=tokens,
                       concurrencies=tuple(sorted(set(concurrencies))))


def boundary_candidates(lengths: np.ndarray, max_length: int = MODEL_MAX_LENGTH) -> tuple[int, ...]:
    """Upper bounds a buffer may end at: length quantiles at k/32 and every 16 tokens, < max."""
    lens = np.asarray(lengths, dtype=np.int64)
    quantiles = np.quantile(lens, np.arange(1, BOUNDARY_QUANTILES) / BOUNDARY_QUANTILES,
                            method="inverted_cdf") if lens.size else np.zeros(0)
    grid = set(range(BOUNDARY_STEP, max_length, BOUNDARY_STEP)) | {int(q) for q in quantiles}
    return tuple(sorted(c for c in grid if 1 <= c < max_length))


# Searched per-buffer fields: dimension prefix -> (BufferSpec field, SearchSpace choices).
_SLOT_FIELDS = {"batch": ("max_batch_size", "batch_sizes"),
                "timeout": ("timeout_ms", "timeouts_ms"),
                "tokens": ("max_batch_tokens", "batch_tokens"),
                "memory": ("memory_mb", "memories_mb"),
                "concurrency": ("max_concurrency", "concurrencies")}
_LAYOUT_FIXED = ("memory", "concurrency")  # a gear keeps its layout's memory and concurrency
SPLITS = (0.25, 0.5, 0.75)  # where (in boundary candidates) a split move cuts a buffer


@dataclass(frozen=True)
class Dimension:
    """One searched choice: a name and its choices (the search sees indices 0..n-1)."""

    name: str
    choices: tuple


def _named(specs: list[BufferSpec], mode: DispatchMode) -> Plan:
    """A plan from contiguous specs, each named by its length range."""
    return Plan(buffers=tuple(replace(s, name=f"len{s.min_length}-{s.max_length}",
                                      dispatch_mode=mode) for s in specs), name="mbs")


@dataclass(frozen=True)
class Encoding:
    """A SearchSpace over a workload's boundary candidates, as integer dimensions."""

    space: SearchSpace
    cuts: tuple[int, ...]
    dimensions: tuple[Dimension, ...]

    @classmethod
    def build(cls, space: SearchSpace, lengths: np.ndarray) -> Encoding:
        """The dimensions for this space; boundary candidates come from the workload."""
        cuts = space.boundaries or boundary_candidates(lengths)
        dims: list[Dimension] = []
        if space.layout is None and space.max_buffers > 1:
            dims.append(Dimension("buffers", tuple(range(1, space.max_buffers + 1))))
            dims += [Dimension(f"cut{j}", cuts) for j in range(1, space.max_buffers)]
        for j in range(cls._slots(space)):
            dims += [Dimension(f"{key}{j}", choices) for key, choices in cls._searched(space)]
        return cls(space, cuts, tuple(dims))

    @staticmethod
    def _slots(space: SearchSpace) -> int:
        return len(space.layout) if space.layout else space.max_buffers

    @staticmethod
    def _searched(space: SearchSpace) -> list[tuple[str, tuple]]:
        """(prefix, choices) of the per-buffer fields with more than one choice."""
        return [(key, getattr(space, attr)) for key, (_, attr) in _SLOT_FIELDS.items()
                if len(getattr(space, attr)) > 1
                and not (space.layout and key in _LAYOUT_FIXED)]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    def values(self, point: Sequence[int]) -> dict[str, object]:
        """Each dimension's chosen value (not its index)."""
        return {d.name: d.choices[int(i)] for d, i in zip(self.dimensions, point, strict=True)}

    def _slot(self, values: dict[str, object], key: str, j: int) -> object:
        return values.get(f"{key}{j}", getattr(self.space, _SLOT_FIELDS[key][1])[0])

    def valid(self, point: Sequence[int]) -> bool:
        """Managed mode's rule in every slot: BatchSize <= 10 when the window is 0 s."""
        if self.space.mode is not DispatchMode.MANAGED:
            return True
        values = self.values(point)
        return all(self._slot(values, "timeout", j) != 0
                   or self._slot(values, "batch", j) <= MAX_BATCH_WITHOUT_WINDOW
                   for j in range(self._slots(self.space)))

    def decode(self, point: Sequence[int]) -> Plan:
        """The Plan this point describes; ValueError if it breaks the mode's rules."""
        if not self.valid(point):
            raise ValueError(f"point {list(point)} breaks managed mode's rule: BatchSize <= "
                             f"{MAX_BATCH_WITHOUT_WINDOW} when the window is 0 s")
        values = self.values(point)
        if self.space.layout is not None:
            bases = list(self.space.layout)
        else:
            count = int(values.get("buffers", 1))
            uppers = [*sorted({int(values[f"cut{j}"]) for j in range(1, count)}),
                      MODEL_MAX_LENGTH]
            lowers = [1, *(u + 1 for u in uppers[:-1])]
            bases = [BufferSpec("b", lo, hi, 1, 0, self.space.memories_mb[0])
                     for lo, hi in zip(lowers, uppers, strict=True)]
        specs = [replace(base, **{field: self._slot(values, key, j)
                                  for key, (field, _) in _SLOT_FIELDS.items()
                                  if not (self.space.layout and key in _LAYOUT_FIXED)})
                 for j, base in enumerate(bases)]
        if self.space.layout is not None:
            return Plan(buffers=tuple(specs), name="mbs")
        return _named(specs, self.space.mode)

    def encode(self, plan: Plan) -> list[int] | None:
        """A point that decodes to `plan`, or None if the plan is outside this space."""
        values: dict[str, object] = {}
        if self.space.layout is None and self.space.max_buffers > 1:
            if len(plan.buffers) > self.space.max_buffers:
                return None
            uppers = [s.max_length for s in plan.buffers[:-1]] or [self.cuts[0]]
            values["buffers"] = len(plan.buffers)
            values.update({f"cut{j}": uppers[min(j, len(uppers)) - 1]
                           for j in range(1, self.space.max_buffers)})
        for j, spec in enumerate(plan.buffers):
            values.update({f"{key}{j}": getattr(spec, field)
                           for key, (field, _) in _SLOT_FIELDS.items()})
        point = []
        for dim in self.dimensions:
            value = values.get(dim.name, dim.choices[0])
            if value not in dim.choices:
                return None
            point.append(dim.choices.index(value))
        return point if self.valid(point) else None

    def fastest(self) -> list[int]:
        """One buffer (or the layout) at the smallest batch and timeout and the most memory and
        concurrency: the lowest-latency point, a feasible start whenever any plan is."""
        top = {"memory", "concurrency"}
        return [len(d.choices) - 1 if d.name.rstrip("0123456789") in top else 0
                for d in self.dimensions]

    def grid(self) -> Iterator[list[int]]:
        """Every valid point (for exhaustive enumeration of small spaces)."""
        for point in itertools.product(*(range(len(d.choices)) for d in self.dimensions)):
            if self.valid(point):
                yield list(point)

    def steps(self, plan: Plan) -> Iterator[Plan]:
        """Plans one step away: one buffer's field one choice up or down, then (without a
        layout) a boundary moved to the next candidate, a buffer split, two buffers merged."""
        for i, spec in enumerate(plan.buffers):
            for key, choices in self._searched(self.space):
                field = _SLOT_FIELDS[key][0]
                at = _nearest(choices, getattr(spec, field))
                for j in (at - 1, at + 1):
                    if 0 <= j < len(choices):
                        yield from self._plan(plan, {i: {field: choices[j]}})
        if self.space.layout is None:
            yield from self._structure_steps(plan)

    def pair_steps(self, plan: Plan) -> Iterator[Plan]:
        """Two buffers' fields stepped at once, one up and one down or both the same way: this
        trades SLO slack between buffers, which single steps cannot do at the SLO's edge."""
        fields = [(i, _SLOT_FIELDS[key][0], choices) for i in range(len(plan.buffers))
                  for key, choices in self._searched(self.space)]
        for (i, f1, c1), (k, f2, c2) in itertools.combinations(fields, 2):
            if i == k:
                continue
            a = _nearest(c1, getattr(plan.buffers[i], f1))
            b = _nearest(c2, getattr(plan.buffers[k], f2))
            for da, db in ((1, -1), (-1, 1), (1, 1), (-1, -1)):
                if 0 <= a + da < len(c1) and 0 <= b + db < len(c2):
                    yield from self._plan(plan, {i: {f1: c1[a + da]}, k: {f2: c2[b + db]}})

    def _structure_steps(self, plan: Plan) -> Iterator[Plan]:
        specs = list(plan.buffers)
        for i in range(len(specs) - 1):  # move the boundary between buffers i and i+1
            inside = [c for c in self.cuts if specs[i].min_length <= c < specs[i + 1].max_length]
            at = _nearest(inside, specs[i].max_length)
            for j in (at - 1, at + 1):
                if 0 <= j < len(inside):
                    cut = inside[j]
                    yield from self._specs([*specs[:i], replace(specs[i], max_length=cut),
                                            replace(specs[i + 1], min_length=cut + 1),
                                            *specs[i + 2:]])
        if len(specs) < self.space.max_buffers:  # split a buffer; both halves keep its fields
            for i, spec in enumerate(specs):
                inside = [c for c in self.cuts if spec.min_length <= c < spec.max_length]
                for cut in sorted({inside[int(f * (len(inside) - 1))] for f in SPLITS} if
                                  inside else set()):
                    yield from self._specs([*specs[:i], replace(spec, max_length=cut),
                                            replace(spec, min_length=cut + 1), *specs[i + 1:]])
        for i in range(len(specs) - 1):  # merge two neighbours, with either one's fields
            for keep in (specs[i], specs[i + 1]):
                merged = replace(keep, min_length=specs[i].min_length,
                                 max_length=specs[i + 1].max_length)
                yield from self._specs([*specs[:i], merged, *specs[i + 2:]])

    def _plan(self, plan: Plan, changes: dict[int, dict[str, object]]) -> Iterator[Plan]:
        specs = [replace(s, **changes.get(i, {})) for i, s in enumerate(plan.buffers)]
        if self.space.layout is not None:
            yield from _valid(lambda: Plan(buffers=tuple(specs), name="mbs"))
        else:
            yield from self._specs(specs)

    def _specs(self, specs: list[BufferSpec]) -> Iterator[Plan]:
        yield from _valid(lambda: _named(specs, self.space.mode))


def _valid(make: object) -> Iterator[Plan]:
    """The plan `make` builds, or nothing if it breaks a rule (e.g. managed mode's)."""
    try:
        yield make()
    except PlanError:
        return


def _nearest(choices: Sequence, value: object) -> int:
    """Index of value in choices, else of the closest choice (None counts as the first)."""
    if value in choices:
        return list(choices).index(value)
    numeric = [(abs(c - value), i) for i, c in enumerate(choices)
               if c is not None and value is not None]
    return min(numeric)[1] if numeric else 0
