"""Tier deadlines end to end: the local stack with the deadline policy, over real HTTP."""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from buffers.plan_files import default_plan_path, load_plan, plan_from_dict
from infra.local.stack import LocalStack

pytestmark = [pytest.mark.e2e, pytest.mark.model]
STRICT_MS, RELAXED_MS = 600, 20_000
# The policy dispatches a strict batch so that it should finish by its deadline, from the
# profile's service-time estimate; on this shared 2-core machine a forward pass can run past
# that estimate (a run measured 606 ms against 600), so completion gets this much slack. It is
# still far below the 3 s the plain policy holds the same requests for.
OVERRUN_MS = 300


def _slow_plan():
    """The default buffers, but with a 3 s timeout: cheap, full batches unless deadlines say no."""
    raw = load_plan(default_plan_path()).to_dict()
    for buffer in raw["buffers"]:
        buffer["timeout_ms"] = 3000
    return plan_from_dict(raw)


def _post(url: str, text: str, slo_ms: int) -> str:
    body = json.dumps({"text": text, "slo_ms": slo_ms}).encode()
    request = urllib.request.Request(f"{url}/v1/requests", data=body,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())["id"]


def _latencies(policy: str) -> dict[str, list[int]]:
    texts = [("a strict query", STRICT_MS), ("another strict one", STRICT_MS),
             ("a relaxed query", RELAXED_MS), ("one more relaxed", RELAXED_MS)]
    with LocalStack(_slow_plan(), policy=policy) as stack:
        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(lambda t: (_post(stack.url, *t), t[1]), texts))
        done: dict[str, dict] = {}
        deadline = time.monotonic() + 30
        while len(done) < len(ids) and time.monotonic() < deadline:
            for request_id, _ in ids:
                with urllib.request.urlopen(f"{stack.url}/v1/requests/{request_id}") as reply:
                    item = json.loads(reply.read())
                if item["status"] == "DONE":
                    done[request_id] = item
            time.sleep(0.05)
    assert len(done) == len(ids)
    out: dict[str, list[int]] = {"strict": [], "relaxed": []}
    for request_id, slo in ids:
        item = done[request_id]
        tier = "strict" if slo == STRICT_MS else "relaxed"
        out[tier].append(item["completed_at_ms"] - item["enqueued_at_ms"])
    return out


def test_deadline_policy_meets_strict_deadlines_that_size_timeout_misses():
    deadline = _latencies("deadline")
    plain = _latencies("size_timeout")
    # THEN strict requests finish by their 600 ms (plus the forward pass's noise, see
    # OVERRUN_MS) under the deadline policy...
    assert max(deadline["strict"]) <= STRICT_MS + OVERRUN_MS, deadline
    # ...while plain size-or-timeout holds them for the 3 s timeout
    assert min(plain["strict"]) >= 2500, plain
    assert max(deadline["relaxed"]) <= RELAXED_MS
