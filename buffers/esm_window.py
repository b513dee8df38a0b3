"""When an SQS event source mapping's batching window opens and closes. Pure: the caller passes
the times.

For SQS, "the next batching window begins as soon as the previous function invocation
completes" (AWS Lambda developer guide, "How Lambda processes records from stream and
queue-based event sources", Batching behavior), not when a poller receives its first record. A
window that closed empty has lapsed: the next record goes out with the poller's next receive, at
once. The simulator (optimizer/sim/esm.py) and the local emulation
(infra/dispatcher/queue_dispatcher.py) both take the rule from here.
"""

from __future__ import annotations


def window_close_s(previous_done_s: float | None, received_s: float, window_s: float) -> float:
    """When the window a record received at received_s belongs to closes.

    previous_done_s: when the poller's previous invocation completed (None: it has not invoked
    yet, so no window is open). The window is [previous_done_s, previous_done_s + window_s]; a
    record received after it closed (or with none open) goes out at once: received_s.
    """
    if window_s < 0:
        raise ValueError(f"window_s must be >= 0, got {window_s}")
    if previous_done_s is None:
        return received_s
    return max(received_s, previous_done_s + window_s)


def window_open(previous_done_s: float | None, now_s: float, window_s: float) -> bool:
    """Whether a record received at now_s joins an open window (False: the window lapsed).

    A record received at the very instant the window closes still joins it (it is received
    before the window's end is acted on, as the simulator's arrivals win ties with timers).
    """
    return previous_done_s is not None and now_s <= previous_done_s + window_s
