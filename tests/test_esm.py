"""The SQS event source mapping as AWS runs it, on tiny traces checked by hand.

Every trace below uses a constant 100 ms model time, no cold starts, round-robin pollers (the
split is then deterministic) and a 1 s window unless a test says otherwise, so each batch's
start can be worked out on paper: a poller's window begins when its previous invocation
completes, a poller with no open window invokes at once, and each poller batches on its own.
"""

from __future__ import annotations

import numpy as np
import pytest

from buffers.esm_window import window_close_s, window_open
from buffers.plan import BufferSpec, DispatchMode, Plan
from optimizer.estimator.estimate import EstimatorContext, estimate
from optimizer.platform.esm_rules import LOW_TRAFFIC_WAIT_S, EsmRules
from optimizer.platform.lambda_rules import LambdaRules
from optimizer.platform.pricing import Pricing
from optimizer.sim.engine import SimResult, simulate

PRICING = Pricing()
SERVICE_MS = 100.0


def constant(batch: int, length: int, memory_mb: int) -> float:
    return SERVICE_MS


def managed(window_ms: int = 1000, batch: int = 10, concurrency: int = 2) -> Plan:
    return Plan(buffers=(BufferSpec("m", 1, 256, batch, window_ms, 1024, DispatchMode.MANAGED,
                                    max_concurrency=concurrency),))


def run(plan: Plan, arrivals: list[float], pollers: int = 1, **esm: object) -> SimResult:
    rules = LambdaRules(cold_start_ms=0.0,
                        esm=EsmRules(pollers=pollers, split="round_robin", **esm))
    return simulate(plan, np.array(arrivals), np.full(len(arrivals), 20), constant, PRICING,
                    30_000.0, rules=rules)


def starts(result: SimResult) -> list[float]:
    return [round(s, 6) for s in result.batches.start_s.tolist()]


def test_the_window_begins_when_the_previous_invocation_completes() -> None:
    # GIVEN one poller: 0.0 finds no open window and goes at once (done 0.1); its window is
    # [0.1, 1.1], so 0.5 and 0.9 go together at 1.1 (done 1.2, next window [1.2, 2.2]);
    # 3.0 comes after that window closed empty and goes at once
    result = run(managed(), [0.0, 0.5, 0.9, 3.0])
    # THEN three batches: not at 1.5, where a window opened by the first receive would close
    assert starts(result) == [0.0, 1.1, 3.0]
    assert result.batches.size.tolist() == [1, 2, 1]
    np.testing.assert_allclose(result.latency_ms, [100.0, 700.0, 300.0, 100.0])
    # AND 0.0 and 3.0 found the poller's window lapsed: exposed to the low-traffic wait
    assert result.exposed.tolist() == [True, False, False, True]


def test_batch_size_closes_the_window_early() -> None:
    # 0.0 alone at once (done 0.1); window [0.1, 1.1] fills with 0.2, 0.3, 0.4 (BatchSize 3)
    result = run(managed(batch=3), [0.0, 0.2, 0.3, 0.4])
    assert starts(result) == [0.0, 0.4]
    assert result.batches.size.tolist() == [1, 3]


def test_pollers_batch_on_their_own_so_batches_fragment() -> None:
    # GIVEN two pollers taking records in turn: 0.0 -> p0 (lapsed: at once, done 0.1), 0.01
    # -> p1, the only one receiving (lapsed: at once, done 0.11); then both have open windows
    # ([0.1, 1.1] and [0.11, 1.11]) and the next four alternate p0, p1, p0, p1
    result = run(managed(), [0.0, 0.01, 0.2, 0.3, 0.4, 0.5], pollers=2)
    # THEN two batches of two where one poller would have sent one batch of four
    assert starts(result) == [0.0, 0.01, 1.1, 1.11]
    assert result.batches.size.tolist() == [1, 1, 2, 2]
    assert result.batch_of_request.tolist() == [0, 1, 2, 3, 2, 3]


def test_more_pollers_more_invocations() -> None:
    # GIVEN 0.0, 0.2, 0.3, 0.4, 0.5. One poller: 0.0 at once, the rest in its window [0.1, 1.1].
    assert run(managed(), [0.0, 0.2, 0.3, 0.4, 0.5]).batches.size.tolist() == [1, 4]
    # Two pollers: 0.0 -> p0 at once; 0.2 -> p1, never invoked: at once (busy until 0.3);
    # 0.3 -> p0 (p1 still busy: arrivals come first); 0.4 -> p1 (window [0.3, 1.3]); 0.5 -> p0
    two = run(managed(), [0.0, 0.2, 0.3, 0.4, 0.5], pollers=2)
    assert two.batches.size.tolist() == [1, 1, 2, 1]
    assert starts(two) == [0.0, 0.2, 1.1, 1.3]


def test_maximum_concurrency_caps_invocations_not_pollers() -> None:
    # GIVEN three pollers, MaximumConcurrency 2 and 1 s of model time: three records at once
    # each find a lapsed poller, so three batches form; only two run at a time
    plan = managed(concurrency=2)
    rules = LambdaRules(cold_start_ms=0.0, esm=EsmRules(pollers=3, split="round_robin"))
    result = simulate(plan, np.array([0.0, 0.001, 0.002]), np.full(3, 20),
                      lambda b, n, m: 1000.0, PRICING, 30_000.0, rules=rules)
    assert result.batches.size.tolist() == [1, 1, 1]
    # THEN the third waits for the first instance to free up at 1.0
    assert starts(result) == [0.0, 0.001, 1.0]


def test_records_wait_in_the_queue_while_every_poller_is_busy() -> None:
    # GIVEN two pollers, both invoking (0.0 and 0.01, done 0.1 and 0.11), and MaximumConcurrency
    # 2 (no more pollers): 0.05 and 0.06 stay in the queue; p0's window begins at 0.1 and takes
    # both, and closes at 1.1
    result = run(managed(), [0.0, 0.01, 0.05, 0.06], pollers=2)
    assert starts(result) == [0.0, 0.01, 1.1]
    assert result.batches.size.tolist() == [1, 1, 2]


def test_a_backlog_adds_a_poller_up_to_maximum_concurrency() -> None:
    # GIVEN one poller and MaximumConcurrency 3: 0.0 goes at once (busy until 0.1); 0.05 finds
    # no poller receiving, so one is added with a window [0.05, 1.05] and takes it and 0.06
    result = run(managed(concurrency=3), [0.0, 0.05, 0.06], pollers=1)
    assert starts(result) == [0.0, 1.05]
    assert result.batches.size.tolist() == [1, 2]
    # (with MaximumConcurrency 2 the cap is max(1, 2) = 2 pollers: the same here)
    capped = run(managed(concurrency=2), [0.0, 0.05, 0.06], pollers=1)
    assert starts(capped) == [0.0, 1.05]


def test_scale_up_is_paced_at_300_pollers_a_minute() -> None:
    # GIVEN BatchSize 1 (every record goes at once), 1 s of model time, one poller and room for
    # 8: 0.0 -> p0; 0.05 finds every poller busy, adds p1; 0.1 finds every poller busy again
    # but only 0.05 s after the last addition (one a 0.2 s at most), so it waits in the queue;
    # 0.3 adds p2; p0's next window begins at 1.0 and takes 0.1
    rules = LambdaRules(cold_start_ms=0.0, esm=EsmRules(pollers=1, split="round_robin"))
    result = simulate(managed(batch=1, concurrency=8), np.array([0.0, 0.05, 0.1, 0.3]),
                      np.full(4, 20), lambda b, n, m: 1000.0, PRICING, 30_000.0, rules=rules)
    assert starts(result) == [0.0, 0.05, 0.3, 1.0]
    assert result.batch_of_request.tolist() == [0, 1, 3, 2]
    assert EsmRules().scale_up_gap_s == pytest.approx(0.2)


def test_the_low_traffic_bound_and_the_pessimistic_variant() -> None:
    # GIVEN one request on an idle queue with a 5 s window: it goes at once (100 ms), but AWS
    # documents that Lambda may wait up to 20 s at very low traffic
    literal = run(managed(window_ms=5000), [0.0])
    assert literal.latency_ms.tolist() == [100.0]
    m = literal.metrics
    assert m.low_traffic_share == 1.0
    assert m.low_traffic_p99_bound_ms == pytest.approx(LOW_TRAFFIC_WAIT_S * 1000 + 100.0)
    # AND in the pessimistic variant the poller waits the 20 s; its bound is its p99
    worst = run(managed(window_ms=5000), [0.0], low_traffic_wait_s=LOW_TRAFFIC_WAIT_S)
    assert worst.latency_ms.tolist() == [20_100.0]
    assert worst.metrics.low_traffic_p99_bound_ms == pytest.approx(20_100.0)
    # AND what arrives during that wait joins the batch
    joined = run(managed(window_ms=5000), [0.0, 10.0], low_traffic_wait_s=LOW_TRAFFIC_WAIT_S)
    assert joined.batches.size.tolist() == [2]


def test_no_window_means_no_low_traffic_exposure() -> None:
    result = run(managed(window_ms=0), [0.0, 5.0])
    assert result.batches.size.tolist() == [1, 1]
    assert result.metrics.low_traffic_share == 0.0
    assert result.metrics.low_traffic_p99_bound_ms == pytest.approx(result.metrics.p99_ms)


def test_the_random_split_is_seeded() -> None:
    rng = np.random.default_rng(4)
    arrivals = np.sort(rng.uniform(0, 60, 300)).tolist()
    plan = managed()
    runs = [simulate(plan, np.array(arrivals), np.full(300, 20), constant, PRICING, 30_000.0,
                     rules=LambdaRules(esm=EsmRules(seed=seed)))
            for seed in (1, 1, 2)]
    assert runs[0].batches.size.tolist() == runs[1].batches.size.tolist()
    assert runs[0].batches.size.tolist() != runs[2].batches.size.tolist()


@pytest.mark.parametrize(("previous", "now", "window", "close", "open_"), [
    (None, 3.0, 1.0, 3.0, False),  # never invoked: no window is open, it goes at once
    (2.0, 2.5, 1.0, 3.0, True),  # the window [2, 3] is open: it closes at 3
    (2.0, 3.0, 1.0, 3.0, True),  # received as the window closes: still in it
    (2.0, 3.5, 1.0, 3.5, False),  # the window lapsed: at once
    (2.0, 2.0, 0.0, 2.0, True),
])
def test_window_rule(previous, now, window, close, open_) -> None:
    assert window_close_s(previous, now, window) == close
    assert window_open(previous, now, window) is open_


def test_rules_validate_and_name_the_bad_value() -> None:
    with pytest.raises(ValueError, match="'fifo'"):
        EsmRules(split="fifo")
    with pytest.raises(ValueError, match="25"):
        EsmRules(low_traffic_wait_s=25.0)
    with pytest.raises(ValueError, match="got 0"):
        EsmRules(pollers=0)
    assert EsmRules(pollers=5).poller_cap(16) == 16
    assert EsmRules(pollers=5).poller_cap(2) == 5


def test_estimator_follows_the_window_rule_on_a_regular_trace() -> None:
    # GIVEN one poller, a record every 0.25 s for 25 s and no model time: the first goes at
    # once; every later window [done, done + 1 s] holds the four records after it
    arrivals = np.arange(100) * 0.25
    rules = LambdaRules(cold_start_ms=0.0, esm=EsmRules(pollers=1, split="round_robin"))
    plan = managed(batch=32)
    service = lambda b, n, m: 0.0  # noqa: E731
    sim = simulate(plan, arrivals, np.full(100, 30), service, PRICING, 30_000.0, rules=rules)
    assert sim.batches.size.tolist() == [1] + [4] * 24 + [3]
    ctx = EstimatorContext.build(arrivals, np.full(100, 30), service, PRICING, 30_000.0,
                                 rules=rules)
    est = estimate(plan, ctx)
    # THEN the estimator's invocations are within a few percent of the simulator's
    assert est.invocations == pytest.approx(sim.metrics.invocations, rel=0.05)
    assert est.low_traffic_share == pytest.approx(0.01, abs=0.005)
