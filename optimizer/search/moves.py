"""The plan search's neighbourhood: plans one or two steps away, for the local polish.

A step moves one buffer's field one choice up or down, moves a boundary to the next candidate,
splits a buffer or merges two; a pair step moves two buffers' fields at once. Every plan
yielded is valid (a move that breaks a rule, e.g. managed mode's, yields nothing). A gpu plan's
steps keep its fleet, and a fleet step (tried first) moves min_instances or max_instances one
choice.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from functools import partial

from buffers.plan import BackendType, BufferSpec, Plan, PlanError
from optimizer.search.encoding import FLEET_FIELDS, SLOT_FIELDS, Encoding, named_plan

SPLITS = (0.25, 0.5, 0.75)  # where (in boundary candidates) a split move cuts a buffer


def steps(enc: Encoding, plan: Plan) -> Iterator[Plan]:
    """Plans one step away: (gpu) a fleet bound one choice up or down first, as the fleet is
    most of a gpu plan's bill and the polish takes the first step that improves; then one
    buffer's field one choice up or down, then (without a layout) a boundary moved to the
    next candidate, a buffer split, two buffers merged."""
    yield from _fleet_steps(enc, plan)
    yield from (_same_fleet(step, plan) for step in _buffer_steps(enc, plan))


def _same_fleet(step: Plan, plan: Plan) -> Plan:
    """`step` on `plan`'s backend and fleet (a lambda plan's step is unchanged)."""
    if plan.backend is BackendType.LAMBDA:
        return step
    return replace(step, backend=plan.backend, instance_type=plan.instance_type,
                   min_instances=plan.min_instances, max_instances=plan.max_instances)


def _fleet_steps(enc: Encoding, plan: Plan) -> Iterator[Plan]:
    if plan.backend is BackendType.LAMBDA or enc.space.instance_type is None:
        return
    ceilings = enc.space.max_instances
    for name in FLEET_FIELDS:
        choices = getattr(enc.space, name)
        at = _nearest(choices, getattr(plan, name))
        for j in (at - 1, at + 1):
            if 0 <= j < len(choices):
                change = {name: choices[j]}
                if name == "min_instances":  # as Encoding.decode: a ceiling under the floor is
                    # raised to it, and one raised so (not a choice) moves with the floor
                    ceiling = plan.max_instances if plan.max_instances in ceilings else 0
                    change["max_instances"] = max(ceiling, choices[j])
                yield from _valid(partial(replace, plan, **change))


def _buffer_steps(enc: Encoding, plan: Plan) -> Iterator[Plan]:
    for i, spec in enumerate(plan.buffers):
        for key, choices in enc.searched:
            field = SLOT_FIELDS[key][0]
            at = _nearest(choices, getattr(spec, field))
            for j in (at - 1, at + 1):
                if 0 <= j < len(choices):
                    yield from _changed(enc, plan, {i: {field: choices[j]}})
    if enc.space.layout is None:
        yield from _structure_steps(enc, plan)


def pair_steps(enc: Encoding, plan: Plan) -> Iterator[Plan]:
    """Two buffers' fields stepped at once, one up and one down or both the same way: this
    trades SLO slack between buffers, which single steps cannot do at the SLO's edge."""
    fields = [(i, SLOT_FIELDS[key][0], choices) for i in range(len(plan.buffers))
              for key, choices in enc.searched]
    for (i, f1, c1), (k, f2, c2) in itertools.combinations(fields, 2):
        if i == k:
            continue
        a = _nearest(c1, getattr(plan.buffers[i], f1))
        b = _nearest(c2, getattr(plan.buffers[k], f2))
        for da, db in ((1, -1), (-1, 1), (1, 1), (-1, -1)):
            if 0 <= a + da < len(c1) and 0 <= b + db < len(c2):
                yield from (_same_fleet(step, plan) for step in _changed(
                    enc, plan, {i: {f1: c1[a + da]}, k: {f2: c2[b + db]}}))


def _structure_steps(enc: Encoding, plan: Plan) -> Iterator[Plan]:
    specs = list(plan.buffers)
    for i in range(len(specs) - 1):  # move the boundary between buffers i and i+1
        inside = [c for c in enc.cuts if specs[i].min_length <= c < specs[i + 1].max_length]
        at = _nearest(inside, specs[i].max_length)
        for j in (at - 1, at + 1):
            if 0 <= j < len(inside):
                cut = inside[j]
                yield from _from_specs(enc, [*specs[:i], replace(specs[i], max_length=cut),
                                        replace(specs[i + 1], min_length=cut + 1),
                                        *specs[i + 2:]])
    if len(specs) < enc.space.max_buffers:  # split a buffer; both halves keep its fields
        for i, spec in enumerate(specs):
            inside = [c for c in enc.cuts if spec.min_length <= c < spec.max_length]
            for cut in sorted({inside[int(f * (len(inside) - 1))] for f in SPLITS} if
                              inside else set()):
                yield from _from_specs(enc, [*specs[:i], replace(spec, max_length=cut),
                                        replace(spec, min_length=cut + 1), *specs[i + 1:]])
    for i in range(len(specs) - 1):  # merge two neighbours, with either one's fields
        for keep in (specs[i], specs[i + 1]):
            merged = replace(keep, min_length=specs[i].min_length,
                             max_length=specs[i + 1].max_length)
            yield from _from_specs(enc, [*specs[:i], merged, *specs[i + 2:]])


def _changed(enc: Encoding, plan: Plan, changes: dict[int, dict[str, object]]) -> Iterator[Plan]:
    specs = [replace(s, **changes.get(i, {})) for i, s in enumerate(plan.buffers)]
    if enc.space.layout is not None:
        yield from _valid(lambda: Plan(buffers=tuple(specs), name="mbs"))
    else:
        yield from _from_specs(enc, specs)


def _from_specs(enc: Encoding, specs: list[BufferSpec]) -> Iterator[Plan]:
    yield from _valid(lambda: named_plan(specs, enc.space.mode))


def _valid(make: Callable[[], Plan]) -> Iterator[Plan]:
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
