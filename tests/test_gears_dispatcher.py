"""The dispatcher with a gear set: received messages batch under the active gear's rules."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from buffers.gears import GearConfig, GearSet
from infra.dispatcher.queue_dispatcher import QueueDispatcher
from infra.local.stack import create_resources
from tests.test_dispatcher import RecordingInvoke, _depth, _plan, _run_until, _send, sqs

__all__ = ["sqs"]  # the moto SQS fixture, shared with test_dispatcher


def test_dispatcher_batches_under_the_active_gear(sqs):
    # GIVEN a plan that batches 8 per 10 s, and a high gear that sends each request at once,
    # with a selector that starts (and, with a 1e6 s time constant, stays) in the high gear
    plan = _plan("dispatcher", max_batch=8, timeout_ms=10_000)
    high = replace(plan, buffers=(replace(plan.buffers[0], max_batch_size=1, timeout_ms=0),
                                  plan.buffers[1]))
    config = GearConfig(up_rps=(2.0,), down_rps=(1.0,), tau_s=1e6, min_dwell_s=0.0,
                        initial_gear=1, initial_rps=1.5)
    res = create_resources(plan, f"g-{uuid.uuid4().hex[:6]}", 60)
    ids = _send(sqs, res.queue_urls["short"], 6, length=10)
    invoke = RecordingInvoke(service_s=0.0)
    dispatcher = QueueDispatcher(plan, sqs, res.queue_urls, res.queue_arns, invoke,
                                 gears=GearSet((plan, high), config), receive_wait_s=1)
    # WHEN it runs for well under the plan's 10 s timeout
    dispatcher.start()
    _run_until(invoke, 6, timeout_s=5.0)
    dispatcher.stop()
    # THEN every request ran alone (the high gear's rule) and was deleted
    assert sorted(i for _, b, _ in invoke.batches for i in b) == sorted(ids)
    assert {len(b) for _, b, _ in invoke.batches} == {1}
    assert _depth(sqs, res.queue_urls["short"]) == 0


def test_dispatcher_refuses_gears_over_another_layout(sqs):
    plan = _plan("dispatcher", max_batch=8, timeout_ms=100)
    other = replace(plan, buffers=(replace(plan.buffers[0], memory_mb=4096), plan.buffers[1]))
    res = create_resources(plan, f"g-{uuid.uuid4().hex[:6]}", 60)
    config = GearConfig(up_rps=(2.0,), down_rps=(1.0,))
    with pytest.raises(ValueError, match="memory_mb must equal"):
        QueueDispatcher(plan, sqs, res.queue_urls, res.queue_arns, RecordingInvoke(),
                        gears=GearSet((other, other), config))
