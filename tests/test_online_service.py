"""The online service over real HTTP (uvicorn on a free port) with the stand-in model: batching
across callers, the per-buffer cap, overload, deadlines, failures, poison, and draining."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from functions.shared.model import StandInEmbedder
from infra.dispatcher.app import create_app
from infra.dispatcher.invoke import FailureKind, InProcessInvoker, InvokeFailed
from infra.dispatcher.server import BackgroundServer
from tests.support.online import GatedInvoker, PoisonEmbedder, post_json, small_plan, wait_until

SHORT = "a short text"  # 5 tokens: buffer b0 of the plans below
LONG = "a much longer text about buffers " * 8  # 50 tokens: buffer b1


@contextmanager
def serving(plan, invoker, **options):
    app = create_app(plan, model="stand-in", invoker=invoker, **options)
    server = BackgroundServer(app).start()
    try:
        yield server, app.state.service
    finally:
        server.stop()


def _post_many(url, bodies):
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(lambda body: post_json(url, body), bodies))


def test_inputs_of_one_call_ride_in_their_buffers_and_come_back_in_order():
    plan = small_plan([(32, 4, 20), (256, 4, 20)])
    with serving(plan, GatedInvoker()) as (server, service):
        status, _, body = post_json(server.url, {"input": [LONG, SHORT, LONG, SHORT]})
    assert status == 200
    assert [d["index"] for d in body["data"]] == [0, 1, 2, 3]
    assert [m["buffer"] for m in body["mbs"]["inputs"]] == ["b1", "b0", "b1", "b0"]
    expected = StandInEmbedder().embed([LONG, SHORT]).vectors
    assert body["data"][0]["embedding"] == pytest.approx(expected[0].tolist(), abs=1e-7)
    assert body["data"][1]["embedding"] == pytest.approx(expected[1].tolist(), abs=1e-7)
    assert service.stats.batches == {"b0": 1, "b1": 1}


def test_callers_share_batches_and_each_buffer_is_capped_at_its_concurrency():
    # GIVEN a held function, batches of 2 (a long timeout: they leave when full), and at most
    # 2 invocations at once per buffer
    plan = small_plan([(256, 2, 5000)], max_concurrency=2)
    invoker = GatedInvoker(open_=False)
    with serving(plan, invoker, max_waiting_inputs=100) as (server, service), \
            ThreadPoolExecutor(12) as pool:
        replies = [pool.submit(post_json, server.url, {"input": f"text {i}"}) for i in range(12)]
        # WHEN 12 callers arrive THEN 2 batches run and the other 8 inputs wait
        wait_until(lambda: service.snapshot()["waiting_inputs"] == 8)
        assert invoker.running["b0"] == 2
        invoker.gate.set()
        statuses = [r.result()[0] for r in replies]
    assert statuses == [200] * 12
    assert invoker.peak["b0"] == 2
    assert invoker.sizes == {2: 6}  # the waiting inputs left as full batches as slots freed


def test_overload_gets_429_with_retry_after_and_nothing_is_batched():
    plan = small_plan([(256, 1, 1)], max_concurrency=2)
    invoker = GatedInvoker(open_=False)
    with serving(plan, invoker, max_waiting_inputs=3) as (server, service), \
            ThreadPoolExecutor(5) as pool:
        held = [pool.submit(post_json, server.url, {"input": f"held {i}"}) for i in range(5)]
        wait_until(lambda: service.snapshot()["waiting_inputs"] == 3)
        status, headers, body = post_json(server.url, {"input": "one too many"})
        assert status == 429
        assert int(headers["retry-after"]) >= 1
        assert body["error"]["code"] == "rate_limit_exceeded"
        assert body["error"]["type"] == "rate_limit_error"
        assert service.snapshot()["waiting_inputs"] == 3  # the refused input never queued
        invoker.gate.set()
        assert [h.result()[0] for h in held] == [200] * 5
    assert service.stats.rejected == 1


def test_a_request_that_can_no_longer_meet_its_slo_gets_a_fast_504():
    plan = small_plan([(256, 1, 1)], max_concurrency=2)
    invoker = GatedInvoker(open_=False)
    with serving(plan, invoker, slo_ms=300) as (server, service), ThreadPoolExecutor(2) as pool:
        running = [pool.submit(post_json, server.url, {"input": f"runs {i}"}) for i in range(2)]
        wait_until(lambda: invoker.running["b0"] == 2)
        started = time.monotonic()
        status, _, body = post_json(server.url, {"input": "waits behind a full buffer"})
        waited_s = time.monotonic() - started
        invoker.gate.set()
        assert [r.result()[0] for r in running] == [200, 200]
    assert status == 504 and body["error"]["code"] == "deadline_exceeded"
    assert "300 ms SLO" in body["error"]["message"]
    assert 0.25 <= waited_s < 5  # answered at its deadline, not when the function freed up
    assert service.stats.expired == 1


def test_a_function_slower_than_the_slo_does_not_lock_the_service_out():
    # GIVEN one batch that ran past the 300 ms SLO (so the measured service time exceeds it)
    plan = small_plan([(256, 1, 1)], max_concurrency=2)
    invoker = GatedInvoker(open_=False)
    with serving(plan, invoker, slo_ms=300) as (server, service):
        threading.Timer(0.4, invoker.gate.set).start()
        late = post_json(server.url, {"input": "runs long"})
        # WHEN the next request comes THEN it is still batched and served, not refused
        after = post_json(server.url, {"input": "comes after"})
    assert late[0] == 200 and after[0] == 200
    assert service.stats.expired == 0


def test_an_input_longer_than_the_plan_covers_gets_400():
    plan = small_plan([(16, 4, 1), (32, 4, 1)])
    with serving(plan, GatedInvoker()) as (server, service):
        status, _, body = post_json(server.url, {"input": ["short", "word " * 40]})
    assert status == 400 and body["error"]["code"] == "input_too_long"
    assert body["error"]["param"] == "input[1]" and "up to 32" in body["error"]["message"]
    assert service.stats.batches == {}


def test_a_dead_infer_fails_only_that_batchs_callers_with_502():
    # GIVEN batches of 3, and a function that dies on its first invocation only
    plan = small_plan([(256, 3, 2000)], max_concurrency=2)
    invoker = GatedInvoker()
    invoker.failures.append(InvokeFailed(FailureKind.TRANSPORT, "ReadTimeoutError",
                                         "Read timeout on endpoint URL"))
    with serving(plan, invoker) as (server, service):
        first = _post_many(server.url, [{"input": f"first batch {i}"} for i in range(3)])
        second = _post_many(server.url, [{"input": f"second batch {i}"} for i in range(3)])
    assert [s for s, _, _ in first] == [502] * 3
    assert all(b["error"]["code"] == "infer_failed" and "ReadTimeoutError" in
               b["error"]["message"] for _, _, b in first)
    assert [s for s, _, _ in second] == [200] * 3
    assert service.stats.invocations == 2  # the failed batch was not run again


def test_a_poison_input_fails_only_its_caller_and_neighbours_get_embeddings(caplog):
    plan = small_plan([(256, 8, 2000)])
    bodies = [{"input": f"neighbour {i}"} for i in range(8)]
    bodies[3] = {"input": "this one is POISON"}
    with caplog.at_level(logging.WARNING, logger="mbs.dispatcher"), \
            serving(plan, InProcessInvoker(PoisonEmbedder())) as (server, service):
        replies = _post_many(server.url, bodies)
    statuses = [s for s, _, _ in replies]
    assert statuses == [200, 200, 200, 502, 200, 200, 200, 200]
    error = replies[3][2]["error"]
    assert error["code"] == "input_rejected" and "POISON" in error["message"]
    assert service.stats.bisect_invocations == 6 and service.stats.invocations == 7
    assert any("bisecting" in r.message for r in caplog.records)


def test_a_list_with_a_poison_item_names_the_item():
    plan = small_plan([(256, 8, 5)])
    with serving(plan, InProcessInvoker(PoisonEmbedder())) as (server, _):
        status, _, body = post_json(server.url, {"input": ["fine", "POISON", "fine too"]})
    assert status == 502
    assert body["error"]["param"] == "input[1]"
    assert body["error"]["message"].startswith("input[1]: ")


def test_shutdown_drains_requests_waiting_for_their_batch():
    # GIVEN a 30 s batching timeout, so requests wait in the buffer until something flushes it
    plan = small_plan([(256, 64, 30_000)])
    with ThreadPoolExecutor(6) as pool:
        app = create_app(plan, model="stand-in", invoker=GatedInvoker())
        server = BackgroundServer(app).start()
        service = app.state.service
        replies = [pool.submit(post_json, server.url, {"input": f"in flight {i}"})
                   for i in range(6)]
        wait_until(lambda: service.snapshot()["waiting_inputs"] == 6)
        # WHEN the server is stopped (as on SIGTERM)
        started = time.monotonic()
        server.stop()
        # THEN every request in flight is answered, at once, not after the timeout
        assert [r.result()[0] for r in replies] == [200] * 6
    assert time.monotonic() - started < 10
    assert service.stats.batches == {"b0": 1}


def test_while_draining_new_requests_get_503_and_health_says_so():
    import urllib.error
    import urllib.request

    plan = small_plan([(256, 4, 5)])
    with serving(plan, GatedInvoker()) as (server, service):
        service.request_drain()
        wait_until(lambda: service.draining)
        status, headers, body = post_json(server.url, {"input": "late"})
        with pytest.raises(urllib.error.HTTPError) as health:
            urllib.request.urlopen(f"{server.url}/healthz", timeout=10)
    assert status == 503 and body["error"]["code"] == "shutting_down"
    assert headers["retry-after"] == "1"
    assert health.value.code == 503


def test_health_and_unknown_routes():
    import json
    import urllib.error
    import urllib.request

    with serving(small_plan([(256, 4, 5)]), GatedInvoker()) as (server, _):
        assert post_json(server.url, {"input": ["one", "two"]})[0] == 200
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=10) as reply:
            health = json.loads(reply.read())
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{server.url}/v1/nothing", timeout=10)
        with pytest.raises(urllib.error.HTTPError) as wrong_method:
            urllib.request.urlopen(f"{server.url}/v1/embeddings", timeout=10)
    assert health["status"] == "ok" and health["model"] == "stand-in"
    assert health["in_flight"] == {"b0": 0}
    assert health["stats"]["requests"] == 1 and health["stats"]["inputs"] == {"b0": 2}
    assert missing.value.code == 404
    assert json.loads(missing.value.read())["error"]["code"] == "not_found"
    assert wrong_method.value.code == 405


def test_a_body_over_the_limit_gets_413_before_it_is_read():
    import http.client
    import json
    from urllib.parse import urlsplit

    with serving(small_plan([(256, 4, 5)]), GatedInvoker()) as (server, service):
        address = urlsplit(server.url)
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
        # Only the headers: the server answers from Content-Length, without reading 2 MiB.
        connection.putrequest("POST", "/v1/embeddings")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(2 * 1024 * 1024))
        connection.endheaders()
        reply = connection.getresponse()
        body = json.loads(reply.read())
        connection.close()
    assert reply.status == 413 and body["error"]["code"] == "body_too_large"
    assert "2097152" in body["error"]["message"]
    assert service.stats.requests == 0


def _geared(plan):
    from dataclasses import replace

    from buffers.gears import GearConfig, GearSet
    from buffers.plan import Plan

    bigger = Plan(buffers=tuple(replace(s, max_batch_size=s.max_batch_size * 2)
                                for s in plan.buffers), name="busy", policy=plan.policy)
    gears = GearSet((plan, bigger), GearConfig(up_rps=(5.0,), down_rps=(1.0,), tau_s=1.0,
                                               min_dwell_s=0.0))
    return replace(plan, meta={"gears": gears.to_meta()})


@pytest.mark.parametrize("policy, geared", [("size_timeout", False), ("deadline", False),
                                            ("vtc", False), ("size_timeout", True)])
def test_every_policy_and_gears_serve_mixed_callers(policy, geared):
    plan = small_plan([(32, 4, 5), (256, 2, 5)], policy=policy)
    plan = _geared(plan) if geared else plan
    options = {"predict_ms": lambda batch, length, memory_mb: 1.0 + 0.01 * batch * length,
               "slo_ms": 5000} if policy == "deadline" else {}
    bodies = [{"input": [SHORT, LONG] if i % 2 else LONG, "user": f"tenant-{i % 3}"}
              for i in range(12)]
    with serving(plan, GatedInvoker(), **options) as (server, service):
        replies = _post_many(server.url, bodies)
    assert [s for s, _, _ in replies] == [200] * 12
    for body, (_, _, reply) in zip(bodies, replies, strict=True):
        sent = body["input"] if isinstance(body["input"], list) else [body["input"]]
        assert [m["tokens"] > 32 for m in reply["mbs"]["inputs"]] == [t == LONG for t in sent]
    assert sum(service.stats.inputs.values()) == 18
