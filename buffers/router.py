"""Length router: which buffer takes a request of a given token length."""

from __future__ import annotations

from bisect import bisect_left

from buffers.plan import BufferSpec, Plan


class LengthRouter:
    """Maps a token length to the index of the buffer whose range holds it (O(log K))."""

    def __init__(self, plan: Plan) -> None:
        self._plan = plan
        self._upper_bounds = [spec.max_length for spec in plan.buffers]

    def index(self, length: int) -> int:
        """Index of the buffer for `length`; ValueError outside 1..plan.max_length."""
        if not 1 <= length <= self._plan.max_length:
            raise ValueError(f"length must be in 1..{self._plan.max_length}, got {length}")
        return bisect_left(self._upper_bounds, length)

    def route(self, length: int) -> BufferSpec:
        """The buffer spec for `length`."""
        return self._plan.buffers[self.index(length)]
