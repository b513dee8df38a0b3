"""The gpu search's starting points and budget (optimizer/search/gpu_seeds.py, gpu.py), its
fixed fleets on a sample (moves.py), and fitting a sampled fleet to the whole trace
(optimizer/compare/backend_search.py)."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import numpy as np
import pytest

import optimizer.sim  # noqa: F401  (registers the policies)
from buffers.plan import BufferSpec, Plan
from optimizer.compare.across import RateWork
from optimizer.compare.backend_search import fit_fleet, smallest_passing
from optimizer.platform.latency_model import GpuLatencyModel
from optimizer.platform.pricing import Pricing
from optimizer.search.encoding import Encoding
from optimizer.search.gpu import MAX_INSTANCES_LADDER, GpuWorkload, gpu_space, optimize_gpu
from optimizer.search.gpu_seeds import knee_batch, knee_seeds, padded_length
from optimizer.search.moves import steps

MODEL = GpuLatencyModel(device="cuda", gpu_name="NVIDIA L4", dtype="float16", launch_ms=3.0,
                        per_token_ms=0.002, per_token_sq_ms=0.0)


def trace(seed: int = 0, rate_rps: float = 400.0,
          duration_s: float = 120.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrivals = np.sort(rng.uniform(0, duration_s, int(rate_rps * duration_s)))
    return arrivals, np.clip(rng.lognormal(3.5, 0.7, arrivals.size).astype(int), 1, 256)


def test_padded_length_is_the_expected_maximum_of_the_batch() -> None:
    lengths = np.array([3, 7, 7, 20, 41])
    for batch in (1, 2, 3):
        brute = np.mean([max(c) for c in itertools.product(lengths, repeat=batch)])
        assert padded_length(lengths, batch) == pytest.approx(brute)


def test_the_knee_is_the_first_batch_whose_compute_reaches_the_launch_floor() -> None:
    lengths = np.full(10, 100)  # compute 0.2 ms per request of 100 tokens; the floor 3 ms
    assert knee_batch(MODEL, lengths, (1, 2, 4, 8, 16, 32)) == 16
    assert knee_batch(MODEL, lengths, (1, 2, 4)) == 4  # none reaches it: the largest
    assert knee_batch(MODEL, np.full(10, 2000), (1, 2, 4)) == 1


def test_knee_seeds_lie_on_the_space_and_carry_their_gpu_time() -> None:
    arrivals, lengths = trace()
    space = gpu_space("g6.xlarge", 3, min_instances=MAX_INSTANCES_LADDER)
    enc = Encoding.build(space, lengths)
    seeds = knee_seeds(space, enc.cuts, MODEL, arrivals, lengths, 1000.0, 0.6)
    assert {len(s.buffers) for s in seeds} == {1, 2, 3}  # one buffer: BATCH's family too
    for seed in seeds:
        assert enc.encode(seed) is not None, seed  # every seed is a point of the space
        assert seed.instance_type == "g6.xlarge" and seed.backend.value == "gpu"
        # the floor carries the seed's GPU time at 60% utilisation
        rate = lengths.size / (arrivals[-1] - arrivals[0])
        need = 0.0
        for spec in seed.buffers:
            mine = lengths[(lengths >= spec.min_length) & (lengths <= spec.max_length)]
            padded = round(padded_length(mine, spec.max_batch_size))
            need += (rate * mine.size / lengths.size / spec.max_batch_size
                     * MODEL.predict_ms(spec.max_batch_size, padded) / 1000.0)
        assert seed.min_instances >= min(need / 0.6, MAX_INSTANCES_LADDER[-1])
    one = next(s for s in seeds if len(s.buffers) == 1)
    assert MODEL.compute_bound(one.buffers[0].max_batch_size,
                               round(padded_length(lengths, one.buffers[0].max_batch_size)))
    with pytest.raises(ValueError, match="gpu space"):
        knee_seeds(replace(space, instance_type=None), enc.cuts, MODEL, arrivals, lengths,
                   1000.0, 0.6)


def test_a_fixed_fleet_moves_as_one_in_the_polish() -> None:
    space = gpu_space("g6.xlarge", 2, min_instances=MAX_INSTANCES_LADDER, max_instances=(3,))
    enc = Encoding.build(space, np.arange(1, 257))
    plan = enc.decode(enc.fastest())
    pinned = replace(plan, min_instances=8, max_instances=8)
    fleets = {(p.min_instances, p.max_instances) for p in steps(enc, pinned)}
    assert (7, 7) in fleets and (9, 9) in fleets
    assert all(low == high for low, high in fleets)  # never a ceiling left behind the floor
    first = next(steps(enc, pinned))
    assert first.buffers == pinned.buffers  # fleet steps come first


def test_successive_halving_spends_one_budget_over_the_instance_types() -> None:
    arrivals, lengths = trace(1)
    work = GpuWorkload(arrivals, lengths, MODEL, Pricing(), 1000.0)
    kinds = ("g4dn.xlarge", "g5.xlarge", "g6.xlarge")
    found = optimize_gpu(work, 99.0, 60, seed=0, instance_types=kinds, max_buffers=2,
                         space_options={"max_instances": (3, 6, 12)})
    spent = sum(r.evaluations for r in found.by_type.values())
    assert spent <= 60 + len(kinds)  # each round's search may finish the estimate it started
    rounds = sorted(r.evaluations for r in found.by_type.values())
    assert rounds[0] < rounds[-1]  # the finalists searched longer than the type left behind
    best = found.best
    assert best is not None and best.simulated.p99_ms <= 1000.0


def test_smallest_passing_bisects_to_the_first_fleet_that_holds() -> None:
    sizes = (3, 4, 5, 6, 8, 10, 12)
    calls = []

    def run(n: int) -> object | None:
        calls.append(n)
        return "ok" if n >= 8 else None

    assert smallest_passing(sizes, run) == (8, "ok")
    assert len(calls) <= 3 + 1
    assert smallest_passing(sizes, lambda n: None) is None


def test_a_sampled_fixed_fleet_grows_until_the_whole_trace_meets_the_slo() -> None:
    # GIVEN a trace whose busy half needs more GPUs than a fleet of 3 holds (10 ms a request)
    rng = np.random.default_rng(2)
    arrivals = np.sort(np.concatenate([rng.uniform(0, 300, 30_000),
                                       rng.uniform(150, 300, 60_000)]))
    lengths = np.full(arrivals.size, 200)
    heavy = replace(MODEL, per_token_ms=0.05)
    work = RateWork(1.0, "test", arrivals, lengths, 1000.0, 99.0)
    small = Plan(buffers=(BufferSpec("all", 1, 256, 16, 50, 1024, max_concurrency=3),),
                 backend="gpu", instance_type="g6.xlarge", min_instances=3, max_instances=3)
    # WHEN it is fitted to the whole trace
    plan, result, grown = fit_fleet(work, small, heavy, Pricing(), max_steps=8)
    # THEN it grew, stays fixed, its caps follow it, and it meets the SLO there
    assert grown > 0 and plan.min_instances == plan.max_instances > 3
    assert plan.buffers[0].max_concurrency >= plan.max_instances
    assert float(np.percentile(result.latency_ms, 99)) <= 1000.0
    # and a fleet that already holds is left alone
    same, _, none = fit_fleet(work, plan, heavy, Pricing())
    assert none == 0 and same == plan


def test_mbs_optimize_gpu_samples_a_dense_trace_and_fits_the_fleet_to_all_of_it(
        tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from buffers.plan_files import load_plan
    from infra.cli.main import main

    # GIVEN a trace denser than the fleet search's sample (20x superposed, 15 min: ~44k)
    out = tmp_path / "plan.json"
    assert main(["optimize", "--backend", "gpu", "--evals", "16", "--max-buffers", "2",
                 "--instance-types", "g6.xlarge", "--rate-scale", "20", "--rate-mode",
                 "superpose", "--duration", "900", "--json", "--out", str(out)]) == 0
    # THEN the search ran on pieces, the plan's fleet is fixed, and its figures are the whole
    # trace's replay (its request count), meeting the SLO there
    reply = json.loads(capsys.readouterr().out)
    plan = load_plan(out)
    assert plan.min_instances == plan.max_instances
    search = reply["search"]
    assert "5 s pieces" in search["message"] and "whole trace" in search["message"]
    simulated = plan.meta["predicted"]["simulated"]
    assert simulated["requests"] > 40_000 and simulated["p99_ms"] <= 1000.0
