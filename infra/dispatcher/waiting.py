"""One input from admission until its caller is answered, and a request's results collected;
with the service's counters."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from infra.dispatcher.errors import ApiError
from infra.dispatcher.execute import Embedded
from infra.dispatcher.inputs import PreparedInput


@dataclass(frozen=True)
class InputResult:
    embedded: Embedded
    buffer: str
    queue_wait_ms: float


@dataclass
class ServiceStats:
    requests: int = 0
    rejected: int = 0  # 429: the admission queue was full
    expired: int = 0  # inputs answered 504: their deadline could no longer be met
    failed_inputs: int = 0  # inputs answered 5xx by a failed invocation
    batches: Counter = field(default_factory=Counter)
    inputs: Counter = field(default_factory=Counter)
    invocations: int = 0
    bisect_invocations: int = 0
    splits: int = 0

    def to_dict(self) -> dict[str, int | dict[str, int]]:
        # not dataclasses.asdict: it rebuilds a Counter from (key, value) pairs, counting them
        return {name: dict(value) if isinstance(value, Counter) else value
                for name, value in vars(self).items()}


@dataclass(eq=False)
class Waiting:
    """One input from admission until its caller is answered."""

    id: str
    prepared: PreparedInput
    buffer_index: int
    arrival_s: float
    future: asyncio.Future
    give_up: asyncio.TimerHandle | None = None


async def collect(waiting: list[Waiting]) -> list[InputResult]:
    """Every input's result in order, or the first failure, named by its input index."""
    futures = [w.future for w in waiting]
    await asyncio.wait(futures, return_when=asyncio.FIRST_EXCEPTION)
    for i, w in enumerate(waiting):
        if w.future.done() and (exc := w.future.exception()) is not None:
            if isinstance(exc, ApiError) and exc.param is None and len(waiting) > 1:
                exc.param = f"input[{i}]"
                exc.message = f"input[{i}]: {exc.message}"
            raise exc
    return [w.future.result() for w in waiting]
