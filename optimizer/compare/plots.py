"""PNG charts of a comparison: latency CDFs, cost per policy, cost against the SLO. Simulated.

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

from optimizer.compare.comparison import POLICIES, Comparison, SweepPoint  # noqa: E402

LABELS = {"mbs": "MBS", "batch": "BATCH (tuned)", "no_batching": "no batching",
          "triton": "Triton-style", "oracle": "SLO-blind oracle",
          "bound": "lower bound (SLO)", "clairvoyant": "clairvoyant"}
COLOURS = {"mbs": "tab:blue", "batch": "tab:orange", "no_batching": "tab:gray",
           "triton": "tab:green", "oracle": "black", "bound": "tab:red",
           "clairvoyant": "tab:purple"}
DASHED = ("oracle", "bound")  # floors, not plans that run
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
    """Batching cost per 1M requests per policy; hatched bars missed the SLO."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    costs = [comparison.cost_usd(name) for name in POLICIES]
    bars = ax.bar([LABELS[n] for n in POLICIES], costs, color=[COLOURS[n] for n in POLICIES])
    for name, bar, cost in zip(POLICIES, bars, costs, strict=True):
        if comparison.outcomes[name].feasible is False:
            bar.set_hatch("//")
            bar.set_alpha(0.6)
        ax.annotate(f"${cost:.2f}", (bar.get_x() + bar.get_width() / 2, cost),
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("batching cost per 1M requests (USD, simulated)")
    ax.set_title(f"Cost per policy (simulated; hatched: SLO missed){_sub(subtitle)}",
                 fontsize=TITLE_FONT)
    ax.tick_params(axis="x", labelsize=8)
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
    ax.set_ylabel("batching cost per 1M requests (USD, simulated)")
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
