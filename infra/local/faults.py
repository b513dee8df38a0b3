"""Fault injection for the reliability tests, off unless MBS_FAULTS holds a JSON object.

Only the local stack's tests set it. Each fault imitates a way SQS/Lambda/DynamoDB fail:
- poison_marker: a text containing this string makes the model raise, in any batch;
- crash_after_writes: the infer process dies (not an exception Powertools can catch) after this
  many result writes in one invocation;
- store_errors: the first N result writes raise a DynamoDB throttling error;
- sleep_ms: infer sleeps this long before answering (a timeout past the visibility timeout);
- invocations: crash_after_writes and sleep_ms hit only the first N infer invocations of the
  process (None: all), as a transient fault does.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from functools import lru_cache


class InjectedCrash(BaseException):  # noqa: N818 - a process death, so deliberately not an Error
    """Stands for the function's process dying mid-batch."""


@dataclass(frozen=True)
class Faults:
    poison_marker: str | None = None
    crash_after_writes: int | None = None
    store_errors: int = 0
    sleep_ms: int = 0
    invocations: int | None = None


@lru_cache(maxsize=1)
def active() -> Faults:
    raw = os.environ.get("MBS_FAULTS")
    return Faults(**json.loads(raw)) if raw else Faults()


_lock = threading.Lock()
_used = {"store_errors": 0, "invocations": 0}


def take_store_error() -> bool:
    """True for each of the first `store_errors` result writes of this process."""
    with _lock:
        if _used["store_errors"] < active().store_errors:
            _used["store_errors"] += 1
            return True
        return False


def begin_invocation() -> Faults:
    """The faults that apply to the infer invocation now starting."""
    faults = active()
    with _lock:
        _used["invocations"] += 1
        if faults.invocations is not None and _used["invocations"] > faults.invocations:
            return Faults(poison_marker=faults.poison_marker)
    return faults


def reset() -> None:
    active.cache_clear()
    with _lock:
        _used.update(store_errors=0, invocations=0)
