"""The SQS event source mapping (ESM) as AWS runs it: its documented rules and our assumptions.

Documented (AWS Lambda developer guide, each checked against the page):
- "How Lambda processes records from stream and queue-based event sources", Batching behavior:
  for SQS, "the next batching window begins as soon as the previous function invocation
  completes", not when a poller receives the first record (buffers/esm_window.py).
- "Using Lambda with Amazon SQS": with a batching window and very low traffic, "Lambda might
  wait for up to 20 seconds before invoking your function", even with a window below 20 s
  (LOW_TRAFFIC_WAIT_S).
- "Configuring scaling behavior for SQS event source mappings": for standard queues Lambda
  "starts processing five batches at a time with five concurrent invocations", adds "up to 300
  more instances per minute" while messages remain, processes at most 1,000 batches at once,
  and scales back to five when traffic is low (the optimisation to as few as 2 is "not
  available when you enable the maximum concurrency setting", which MBS always sets).
- ScalingConfig.MaximumConcurrency (2-1,000) "limits the number of concurrent instances of the
  function that an Amazon SQS event source can invoke": it caps invocations, not pollers.

Not documented, so named assumptions (benchmarks/bench_managed.py shows how a plan's cost moves
with each):
- Each poller batches on its own: it long-polls, gathers the records it receives in its window,
  invokes, waits for that invocation to return, and only then opens its next window.
- `split`: a record goes to one of the pollers that are receiving (not waiting on their own
  invocation), uniformly at random ("random", seeded) or in turn ("round_robin").
- Scale-up: a poller is added when a record finds every poller waiting on its invocation, at most
  one every 60/300 s, and pollers never outnumber max(`pollers`, MaximumConcurrency): at the cap
  the ESM stops reading, so a backlog then is no reason for more pollers. Scale-down: an added
  poller retires as soon as one of its windows closes empty.
- A poller whose window lapsed empty invokes at once with what its next receive returns (that
  window is over). The documented low-traffic wait is the other end: `low_traffic_wait_s` = 20
  makes such a poller wait 20 s instead (the pessimistic variant); the metrics report the
  resulting p99 bound either way (low_traffic_p99_bound_ms).
- At MaximumConcurrency a closed batch waits for a free invocation, held by its poller. AWS
  stops reading instead, so under overload its next batches would be fuller.
- The ESM has no padded-token budget: a managed buffer's max_batch_tokens is not applied.
"""

from __future__ import annotations

from dataclasses import dataclass

ESM_INITIAL_POLLERS = 5  # "five batches at a time with five concurrent invocations"
ESM_MAX_BATCHES = 1_000  # "The maximum number of batches ... simultaneously is 1,000"
ESM_SCALE_UP_PER_MINUTE = 300  # "up to 300 more instances per minute"
LOW_TRAFFIC_WAIT_S = 20.0  # "might wait for up to 20 seconds before invoking your function"
SPLITS = ("random", "round_robin")


@dataclass(frozen=True)
class EsmRules:
    """How the simulator and the estimator run a managed-mode buffer's event source mapping."""

    pollers: int = ESM_INITIAL_POLLERS
    max_pollers: int = ESM_MAX_BATCHES
    scale_up_per_minute: int = ESM_SCALE_UP_PER_MINUTE
    split: str = "random"
    low_traffic_wait_s: float = 0.0  # 0: a lapsed poller invokes at once; 20: pessimistic
    seed: int = 0  # of the "random" split

    def __post_init__(self) -> None:
        if not 1 <= self.pollers <= self.max_pollers:
            raise ValueError(f"pollers must be in 1..max_pollers ({self.max_pollers}), "
                             f"got {self.pollers}")
        if self.scale_up_per_minute < 1:
            raise ValueError(f"scale_up_per_minute must be >= 1, got {self.scale_up_per_minute}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {self.split!r}")
        if not 0.0 <= self.low_traffic_wait_s <= LOW_TRAFFIC_WAIT_S:
            raise ValueError(f"low_traffic_wait_s must be in 0..{LOW_TRAFFIC_WAIT_S:g}, "
                             f"got {self.low_traffic_wait_s}")

    @property
    def scale_up_gap_s(self) -> float:
        """The least time between two added pollers."""
        return 60.0 / self.scale_up_per_minute

    def poller_cap(self, max_concurrency: int) -> int:
        """The most pollers a mapping with this MaximumConcurrency runs (see the module doc)."""
        return min(self.max_pollers, max(self.pollers, max_concurrency))

    @property
    def low_traffic_extra_ms(self) -> float:
        """How much longer than modelled a request that found its poller lapsed may wait."""
        return (LOW_TRAFFIC_WAIT_S - self.low_traffic_wait_s) * 1000.0
