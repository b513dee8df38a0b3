"""Scheduling policies on real traces, in the simulator (modelled, not measured on AWS).

A. Deadline-aware (SLAI + SlackFit) against plain size-or-timeout, on the bursty azure-code
   preset with 30% strict (500 ms) and 70% relaxed (5 s) requests: attainment per tier, cost.
B. Fairness: a noisy tenant sends 10x the load of each of two well-behaved tenants; together
   1.5x the capacity of a 2-instance buffer, sustained over the whole trace. VTC against FCFS
   and per-tenant rate limiting: the largest service gap between backlogged tenants, each
   tenant's p99, utilization. Plot.
C. Token budget (Sarathi-style): a BATCH-style buffer with and without a padded-token cap.
D. Token-aware balancing (SAL): the default plan's batch stream (azure-code at 30x) on a pool
   of 2-4 shared instances, picked by outstanding requests vs outstanding padded tokens.

Service times: the shipped CPU profile scaled to Lambda memory (optimizer/profiles/cpu.json).
Writes benchmarks/results/policies.json and benchmarks/results/fairness.png.

    .venv/bin/python benchmarks/bench_policies.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.research.fairness import service_curves, token_bucket_admit  # noqa: E402
from buffers.plan_files import default_plan_path, load_plan, plan_from_dict  # noqa: E402
from optimizer.platform.latency_model import load_profile  # noqa: E402
from optimizer.platform.pricing import Pricing  # noqa: E402
from optimizer.sim.engine import simulate  # noqa: E402
from optimizer.sim.policy import PolicyOptions, RequestAttrs  # noqa: E402
from optimizer.workload.lengths import token_lengths  # noqa: E402
from optimizer.workload.workloads import WorkloadSpec, build_workload  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
STRICT_MS, RELAXED_MS, STRICT_SHARE = 500.0, 5000.0, 0.3


def _with_timeouts(plan, timeout_ms: int):
    raw = plan.to_dict()
    for buffer in raw["buffers"]:
        buffer["timeout_ms"] = timeout_ms
    raw["name"] = f"{plan.name}-{timeout_ms}ms"
    return plan_from_dict(raw)


def _tier_figures(result, slo_each: np.ndarray) -> dict:
    out = {}
    for tier, slo in (("strict", STRICT_MS), ("relaxed", RELAXED_MS)):
        mine = slo_each == slo
        lat = result.latency_ms[mine]
        out[tier] = {"requests": int(mine.sum()), "slo_ms": slo,
                     "attainment": float(np.mean(lat <= slo)),
                     "p99_ms": float(np.percentile(lat, 99))}
    m = result.metrics
    return {**out, "cost_per_million_usd": m.cost_per_million_usd,
            "invocations": m.invocations, "mean_batch_size": m.mean_batch_size}


def deadline_vs_size_timeout(arrivals, lengths, model, pricing) -> dict:
    rng = np.random.default_rng(7)
    slo_each = np.where(rng.random(len(arrivals)) < STRICT_SHARE, STRICT_MS, RELAXED_MS)
    attrs = RequestAttrs(slo_ms=slo_each.tolist())
    base = load_plan(default_plan_path())
    cases = {"size_timeout, timeout 2000 ms": (_with_timeouts(base, 2000), "size_timeout"),
             "size_timeout, timeout 300 ms": (_with_timeouts(base, 300), "size_timeout"),
             "deadline, timeout 2000 ms": (_with_timeouts(base, 2000), "deadline")}
    out = {}
    for label, (plan, policy) in cases.items():
        result = simulate(plan, arrivals, lengths, model, pricing, slo_ms=STRICT_MS,
                          policy=PolicyOptions(name=policy, attrs=attrs))
        out[label] = _tier_figures(result, slo_each)
        row = out[label]
        print(f"A {label:<32} strict {row['strict']['attainment']:.3f}  relaxed "
              f"{row['relaxed']['attainment']:.3f}  ${row['cost_per_million_usd']:.3f}/1M",
              flush=True)
    return out


def _fair_plan():
    # A deliberately small buffer (2 instances of 512 MB, batches of 4) so that a sustained
    # overload fits in a simulation of tens of thousands of requests.
    return plan_from_dict({"version": 1, "name": "fair", "max_length": 256, "buffers": [
        {"name": "all", "min_length": 1, "max_length": 256, "max_batch_size": 4,
         "timeout_ms": 100, "memory_mb": 512, "max_concurrency": 2}]})


def capacity_per_s(arrivals, lengths, model, pricing) -> float:
    """Requests per second the fair plan serves while saturated (everything queued at once)."""
    burst = np.zeros(min(len(arrivals), 5000))
    result = simulate(_fair_plan(), burst, lengths[: len(burst)], model, pricing, 1000.0,
                      policy=PolicyOptions(hold_when_busy=True))
    warm = result.batches.start_s > burst.max() + 10.0  # after the cold starts
    busy_s = result.batches.end_s[warm].max() - result.batches.start_s[warm].min()
    return float(result.batches.size[warm].sum() / busy_s)


def _fair_run(label, arrivals, lengths, tenants, model, pricing, policy, admitted=None):
    keep = np.ones(len(arrivals), bool) if admitted is None else admitted
    a, n, t = arrivals[keep], lengths[keep], [x for x, k in zip(tenants, keep, strict=True) if k]
    result = simulate(_fair_plan(), a, n, model, pricing, slo_ms=1000.0,
                      policy=PolicyOptions(name=policy, attrs=RequestAttrs(tenants=t),
                                           hold_when_busy=True))
    start = result.batches.start_s[result.batch_of_request]
    curves = service_curves(a, start, n, t)
    span = float(result.batches.end_s.max() - a.min())
    per_tenant = {name: {"requests": int(sum(x == name for x in t)),
                         "rejected": int(sum(1 for x, k in zip(tenants, keep, strict=True)
                                             if x == name and not k)),
                         "p50_ms": float(np.percentile(result.latency_ms[np.array(t) == name],
                                                       50)),
                         "p99_ms": float(np.percentile(result.latency_ms[np.array(t) == name],
                                                       99))}
                  for name in sorted(set(tenants))}
    figures = {"max_backlogged_gap_tokens": curves.max_backlogged_gap(),
               "max_single_charge_tokens": int(n.max()),
               "utilization": float(result.batches.busy_ms.sum() / 1000.0 / (2 * span)),
               "served_per_s": float(len(a) / span),
               "tenants": per_tenant}
    print(f"B {label:<16} gap {figures['max_backlogged_gap_tokens']:>9.0f} tokens  util "
          f"{figures['utilization']:.2f}  p99 " + "  ".join(
              f"{k} {v['p99_ms']:.0f}" for k, v in per_tenant.items()), flush=True)
    return figures, curves


def fairness(arrivals, lengths, model, pricing) -> tuple[dict, dict]:
    rng = np.random.default_rng(11)
    tenants = rng.choice(["noisy", "alice", "bob"], size=len(arrivals),
                         p=[10 / 12, 1 / 12, 1 / 12]).tolist()
    out, curves = {}, {}
    for label, policy in (("fcfs", "size_timeout"), ("vtc", "vtc")):
        out[label], curves[label] = _fair_run(label, arrivals, lengths, tenants, model, pricing,
                                              policy)
    # Rate limiting: each tenant may send a third of the buffer's capacity (what it served per
    # second while saturated under FCFS), with two seconds of burst.
    fair_rate = out["fcfs"]["served_per_s"] / 3
    admitted = token_bucket_admit(arrivals, tenants, rate_per_s=fair_rate, burst=fair_rate * 2)
    out["rate_limit"], curves["rate_limit"] = _fair_run(
        "rate_limit", arrivals, lengths, tenants, model, pricing, "size_timeout", admitted)
    out["rate_limit"]["rate_per_tenant_per_s"] = fair_rate
    return out, curves


def plot_fairness(curves: dict, figures: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(curves), figsize=(5 * len(curves), 7), sharey="row")
    for col, (label, c) in enumerate(curves.items()):
        ax = axes[0, col]
        for j, tenant in enumerate(c.tenants):
            ax.plot(c.times_s - c.times_s[0], c.served[:, j] / 1000, label=tenant)
        ax.set_title(f"{label}: tokens served (gap "
                     f"{figures[label]['max_backlogged_gap_tokens']:.0f})")
        ax.set_xlabel("time (s)")
        tenants = figures[label]["tenants"]
        names = list(tenants)
        x = np.arange(len(names))
        bars = axes[1, col]
        bars.bar(x - 0.2, [tenants[n]["p50_ms"] / 1000 for n in names], 0.4, label="p50")
        bars.bar(x + 0.2, [tenants[n]["p99_ms"] / 1000 for n in names], 0.4, label="p99")
        bars.set_xticks(x, [f"{n}\n({tenants[n]['rejected']} rejected)" for n in names])
        bars.set_yscale("log")
        bars.set_title(f"{label}: latency per tenant (util {figures[label]['utilization']:.2f})")
    axes[0, 0].set_ylabel("thousand tokens served")
    axes[1, 0].set_ylabel("latency (s, log)")
    axes[0, 0].legend()
    axes[1, 0].legend()
    fig.suptitle("Noisy tenant at 10x, 1.5x capacity (simulated)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def token_budget(arrivals, lengths, model, pricing) -> dict:
    out = {}
    for label, budget in (("no budget", None), ("budget 1024 padded tokens", 1024)):
        plan = plan_from_dict({"version": 1, "name": "batch", "max_length": 256, "buffers": [
            {"name": "all", "min_length": 1, "max_length": 256, "max_batch_size": 32,
             "timeout_ms": 500, "memory_mb": 3008, "max_batch_tokens": budget}]})
        m = simulate(plan, arrivals, lengths, model, pricing, slo_ms=1000.0).metrics
        out[label] = {"p99_ms": m.p99_ms, "p50_ms": m.p50_ms,
                      "cost_per_million_usd": m.cost_per_million_usd,
                      "slo_attainment_1s": m.slo_attainment, "invocations": m.invocations}
        print(f"C {label:<28} p99 {m.p99_ms:.0f} ms  ${m.cost_per_million_usd:.3f}/1M", flush=True)
    return out


def balancing(arrivals, lengths, model, pricing) -> dict:
    """D. SAL: the default plan's batch stream on a shared pool, by requests vs by tokens."""
    from benchmarks.research.balancer import BalanceBy
    from benchmarks.research.balancing import run_pool

    result = simulate(load_plan(default_plan_path()), arrivals, lengths, model, pricing, 1000.0)
    log = result.batches
    order = np.argsort(log.start_s, kind="stable")
    ready, sizes, padded = log.start_s[order], log.size[order], log.padded_length[order]
    service = np.array([model.predict_ms(int(b), int(n)) for b, n in zip(sizes, padded,
                                                                          strict=True)])
    span = float(ready.max() - ready.min())
    out = {}
    for instances in (2, 3, 4):
        row = {"utilization": float(service.sum() / 1000.0 / (instances * span))}
        for by in BalanceBy:
            lat = run_pool(ready, sizes, padded, service, instances, by)
            row[by.value] = {"p50_ms": float(np.percentile(lat, 50)),
                             "p99_ms": float(np.percentile(lat, 99))}
        out[f"{instances} instances"] = row
        print(f"D {instances} instances (util {row['utilization']:.2f}): p99 by requests "
              f"{row['requests']['p99_ms']:.0f} ms, by tokens {row['tokens']['p99_ms']:.0f} ms",
              flush=True)
    return out


def main() -> int:
    started = time.perf_counter()
    _, model = load_profile()
    pricing = Pricing()
    code = build_workload(WorkloadSpec(preset="azure-code", seed=0))
    arrivals, lengths = np.asarray(code.arrivals_s), token_lengths(code)
    results = {"kind": "modelled (discrete-event simulator, CPU profile scaled to Lambda)",
               "workload": code.spec.describe()}
    results["deadline"] = deadline_vs_size_timeout(arrivals, lengths, model, pricing)
    # Fairness: the whole trace, rate-scaled to 1.5x the buffer's capacity (a sustained
    # overload that only the noisy tenant causes: each quiet tenant sends 1/8 of capacity).
    capacity = capacity_per_s(arrivals, lengths, model, pricing)
    scale = 1.5 * capacity / code.arrivals_s.size * float(code.arrivals_s[-1])
    loaded = build_workload(WorkloadSpec(preset="azure-code", rate_scale=scale, seed=3))
    results["fairness"], curves = fairness(np.asarray(loaded.arrivals_s), token_lengths(loaded),
                                           model, pricing)
    results["fairness"].update(workload=loaded.spec.describe(), capacity_per_s=capacity,
                               offered_per_s=1.5 * capacity)
    print(f"B capacity {capacity:.1f} req/s, offered {1.5 * capacity:.1f} req/s "
          f"(rate scale {scale:.1f})", flush=True)
    plot_fairness(curves, results["fairness"], OUT / "fairness.png")
    results["token_budget"] = token_budget(arrivals, lengths, model, pricing)
    # SAL on a busy stream: the trace at 30x, batches on a shared pool of this machine's CPU.
    busy = build_workload(WorkloadSpec(preset="azure-code", rate_scale=30.0, seed=5))
    results["balancing"] = balancing(np.asarray(busy.arrivals_s), token_lengths(busy), model,
                                     pricing)
    results["wall_s"] = time.perf_counter() - started
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "policies.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT / 'policies.json'} and {OUT / 'fairness.png'} in {results['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
