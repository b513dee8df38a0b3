"""Poison isolation: run a batch; if it fails on its input, bisect so only the bad members fail.

A batch that fails because of one bad input would otherwise fail every member on every retry.
Halving costs O(log n) extra runs per poison member, and a batch with no failure runs once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def isolate_failures(items: Sequence[T], run: Callable[[Sequence[T]], Sequence[R]],
                     whole_batch_errors: tuple[type[Exception], ...] = (),
                     ) -> tuple[dict[int, R], dict[int, Exception]]:
    """Results and errors keyed by each item's index in `items`.

    Parameters
    ----------
    items: the batch, in order.
    run: runs a sub-batch and returns one result per member, in order; raises if any fails.
    whole_batch_errors: errors that are no member's fault (a model that cannot load): every
        member of the failing run takes the error, without bisecting.
    """
    return _isolate(items, run, whole_batch_errors, offset=0)


def _isolate(items: Sequence[T], run: Callable[[Sequence[T]], Sequence[R]],
             whole_batch_errors: tuple[type[Exception], ...], offset: int,
             ) -> tuple[dict[int, R], dict[int, Exception]]:
    if not items:
        return {}, {}
    try:
        results = run(items)
    except whole_batch_errors as exc:
        return {}, {offset + i: exc for i in range(len(items))}
    except Exception as exc:
        if len(items) == 1:
            return {}, {offset: exc}
        middle = len(items) // 2
        left_ok, left_err = _isolate(items[:middle], run, whole_batch_errors, offset)
        right_ok, right_err = _isolate(items[middle:], run, whole_batch_errors, offset + middle)
        return {**left_ok, **right_ok}, {**left_err, **right_err}
    if len(results) != len(items):
        raise ValueError(f"run must return one result per item: {len(items)} items, "
                         f"got {len(results)} results")
    return {offset + i: result for i, result in enumerate(results)}, {}
