"""PNG charts of a comparison: latency CDFs, end-to-end cost per policy stacked by line item,
cost against the SLO, and cost against the request rate (one backend, or each backend with the
crossover marked). Simulated.

Every chart says in its title that its figures are simulated (modelled), not measured.
matplotlib runs on its Agg backend (files only, no display).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from optimizer.compare.across import BackendSweep  # noqa: E402
from optimizer.compare.comparison import (  # noqa: E402
    POLICIES,
    Comparison,
    RatePoint,
    SweepPoint,
)
from optimizer.platform.cost_breakdown import CostBreakdown  # noqa: E402

LABELS = {"mbs": "MBS", "batch": "BATCH (tuned)", "no_batching": "no batching",
          "triton": "Triton-style", "plain_lambda": "plain Lambda", "oracle": "SLO-blind oracle",
          "bound": "lower bound (SLO)", "clairvoyant": "clairvoyant"}
COLOURS = {"mbs": "tab:blue", "batch": "tab:orange", "no_batching": "tab:gray",
           "triton": "tab:green", "plain_lambda": "tab:purple", "oracle": "black",
           "bound": "tab:red", "clairvoyant": "tab:brown"}
DASHED = ("oracle", "bound")  # floors, not plans that run
RATE_POLICIES = ("mbs", "batch", "plain_lambda")  # the cost-vs-rate chart's lines
ITEM_LABELS = {"infer_compute_usd": "infer GB-s (INIT incl.)",
               "infer_request_usd": "infer requests", "queue_usd": "SQS",
               "api_usd": "HTTP API", "ingest_usd": "front functions", "store_usd": "DynamoDB",
               "front_door_usd": "Cloud Map", "dispatcher_compute_usd": "dispatcher Fargate",
               "dispatcher_ipv4_usd": "dispatcher IPv4", "queue_polling_usd": "SQS polling",
               "logs_usd": "CloudWatch Logs", "egress_usd": "egress"}
CDF_POINTS = 2000  # latency quantiles drawn per policy
DPI = 120
SUBTITLE_CHARS = 90
TITLE_FONT = 9


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def latency_cdf(comparison: Comparison, path: Path, subtitle: str = "") -> Path:
    """Each policy's latency CDF (the oracle and the bound have none: they are cost floors),
    with the SLO."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    quantiles = np.linspace(0.0, 100.0, CDF_POINTS)
    for name in POLICIES:
        latency = comparison.outcomes[name].latency_ms
        if latency.size == 0:
            continue
        ax.plot(np.percentile(latency, quantiles), quantiles / 100.0, label=LABELS[name],
                color=COLOURS[name])
    ax.axvline(comparison.slo_ms, color="red", linestyle="--",
               label=f"SLO {comparison.slo_ms:g} ms at p{comparison.percentile:g}")
    ax.axhline(comparison.percentile / 100.0, color="red", linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("latency, arrival to result (ms, log scale)")
    ax.set_ylabel("share of requests")
    ax.set_title(f"Latency CDF per policy (simulated){_sub(subtitle)}", fontsize=TITLE_FONT)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def cost_bars(comparison: Comparison, path: Path, subtitle: str = "") -> Path:
    """End-to-end cost per 1M requests per policy, stacked by line item; hatched: SLO missed."""
    fig, ax = plt.subplots(figsize=(8, 5))
    names = [LABELS[n] for n in POLICIES]
    per_million = {n: _items_per_million(comparison.outcomes[n].metrics.cost,
                                         comparison.outcomes[n].metrics.requests)
                   for n in POLICIES}
    items = [k for k in CostBreakdown().line_items() if any(per_million[n][k] for n in POLICIES)]
    colours = plt.get_cmap("tab20")(np.linspace(0.0, 1.0, max(len(items), 1)))
    bottom = np.zeros(len(POLICIES))
    for item, colour in zip(items, colours, strict=False):
        heights = np.array([per_million[n][item] for n in POLICIES])
        bars = ax.bar(names, heights, bottom=bottom, color=colour, label=ITEM_LABELS[item])
        for name, bar in zip(POLICIES, bars, strict=True):
            if comparison.outcomes[name].feasible is False:
                bar.set_hatch("//")
        bottom += heights
    for i, name in enumerate(POLICIES):
        infer = comparison.costs(name)["infer_cost_per_million_usd"]
        ax.annotate(f"${bottom[i]:.2f}\n(infer ${infer:.2f})", (i, bottom[i]), ha="center",
                    va="bottom", fontsize=7)
    ax.set_ylim(0, max(bottom.max(initial=0.0) * 1.18, 1e-9))
    ax.set_ylabel("end-to-end cost per 1M requests (USD, simulated)")
    ax.set_title(f"End-to-end cost per policy by line item (simulated; hatched: SLO missed)"
                 f"{_sub(subtitle)}", fontsize=TITLE_FONT)
    ax.tick_params(axis="x", labelsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def _items_per_million(cost: CostBreakdown, requests: float) -> dict[str, float]:
    scale = 1e6 / requests if requests else 0.0
    return {k: v * scale for k, v in cost.line_items().items()}


def cost_vs_rate(points: Sequence[RatePoint], path: Path, subtitle: str = "") -> Path:
    """End-to-end cost per 1M requests against the rate scale for MBS, BATCH and plain Lambda,
    each re-optimized at each rate; hollow markers missed the SLO."""
    subtitle = subtitle.replace(f" x{points[0].rate_scale:g} rate", "") if points else subtitle
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rates = [p.rate_scale for p in points]
    for name in RATE_POLICIES:
        costs = [p.comparison.cost_usd(name) for p in points]
        ax.plot(rates, costs, color=COLOURS[name], label=LABELS[name])
        missed = [p.comparison.outcomes[name].feasible is False for p in points]
        for rate, cost, miss in zip(rates, costs, missed, strict=True):
            ax.scatter([rate], [cost], edgecolors=COLOURS[name],
                       facecolors="none" if miss else COLOURS[name])
    ax.set_xscale("log")
    ax.set_xticks(rates, [f"{r:g}x" for r in rates])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_yscale("log")  # a policy that cannot keep up costs tens of times the others
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("$%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("$%g"))
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_xlabel("request rate, times the trace's (log scale)")
    ax.set_ylabel("end-to-end cost per 1M requests (USD, simulated, log scale)")
    ax.set_title(f"End-to-end cost against the request rate (simulated){_sub(subtitle)}",
                 fontsize=TITLE_FONT)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


BACKEND_COLOURS = {"lambda": "tab:purple", "gpu": "tab:green"}
BACKEND_STYLES = {"mbs": "-", "batch": "--", "ragged": ":"}


def cost_vs_rate_backends(sweep: BackendSweep, path: Path, subtitle: str = "") -> Path:
    """End-to-end cost per 1M requests against the rate for each policy on each backend, with a
    vertical line where the cheaper backend for MBS (solid) or BATCH (dashed) changes."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    rates = [r.rate_scale for r in sweep.rows]
    for backend in sweep.names:
        for policy, style in BACKEND_STYLES.items():
            costs = sweep.series(backend, policy)
            shown = [(r, c) for r, c in zip(rates, costs, strict=True) if c is not None]
            if not shown:
                continue
            ax.plot(*zip(*shown, strict=True), linestyle=style, marker="o",
                    color=BACKEND_COLOURS.get(backend, "black"),
                    label=f"{LABELS.get(policy, policy)} on {backend}")
    for policy, style in (("mbs", "-"), ("batch", "--")):
        for c in sweep.crossovers(policy):
            ax.axvline(c.rate_scale, color="red", linestyle=style, linewidth=0.9)
            ax.annotate(f"{LABELS[policy]}: {c.below} -> {c.above}\nat ~{c.rate_scale:.3g}x",
                        (c.rate_scale, 0.97 if policy == "mbs" else 0.80),
                        xycoords=("data", "axes fraction"), ha="left", va="top", fontsize=7,
                        color="red", xytext=(3, 0), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xticks(rates, [f"{r:g}x" for r in rates])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_yscale("log")  # a fleet's floor makes the low-rate cost tens of times the high-rate
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("$%g"))
    ax.set_xlabel(f"request rate, times the trace's (log scale; {sweep.rate_mode})")
    ax.set_ylabel("end-to-end cost per 1M requests (USD, simulated, log scale)")
    ax.set_title(f"Cheaper backend against the request rate (simulated; red: crossover)"
                 f"{_sub(subtitle)}", fontsize=TITLE_FONT)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def cost_vs_slo(points: Sequence[SweepPoint], path: Path, percentile: float,
                subtitle: str = "") -> Path:
    """Each policy's cost after re-optimizing at each SLO; hollow markers missed the SLO."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    slos = [p.slo_ms for p in points]
    for name in POLICIES:
        costs = [p.cost_usd[name] for p in points]
        ax.plot(slos, costs, color=COLOURS[name], label=LABELS[name],
                linestyle="--" if name in DASHED else "-")
        missed = [i for i, p in enumerate(points) if p.feasible[name] is False]
        met = [i for i in range(len(points)) if i not in missed]
        ax.scatter([slos[i] for i in met], [costs[i] for i in met], color=COLOURS[name])
        ax.scatter([slos[i] for i in missed], [costs[i] for i in missed],
                   facecolors="none", edgecolors=COLOURS[name])
    ax.set_xscale("log")
    ax.set_xticks(slos, [f"{s:g}" for s in slos])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(f"latency SLO at p{percentile:g} (ms, log scale)")
    ax.set_ylabel("end-to-end cost per 1M requests (USD, simulated)")
    ax.set_title(f"Cost against the SLO, re-optimized per SLO (simulated)"
                 f"{_sub(subtitle)}", fontsize=TITLE_FONT)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def _sub(subtitle: str) -> str:
    return "\n" + "\n".join(textwrap.wrap(subtitle, SUBTITLE_CHARS)) if subtitle else ""


def write_plots(comparison: Comparison, sweep_points: Sequence[SweepPoint], out_dir: Path,
                subtitle: str = "", prefix: str = "") -> list[Path]:
    """All three charts into out_dir; returns their paths."""
    out_dir = Path(out_dir)
    paths = [latency_cdf(comparison, out_dir / f"{prefix}latency_cdf.png", subtitle),
             cost_bars(comparison, out_dir / f"{prefix}cost_per_policy.png", subtitle)]
    if sweep_points:
        paths.append(cost_vs_slo(sweep_points, out_dir / f"{prefix}cost_vs_slo.png",
                                 comparison.percentile, subtitle))
    return paths
