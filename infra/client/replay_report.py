"""Summarise a replay from what the service reported per request. Pure."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from buffers.padding import padding_overhead

DONE, FAILED, PENDING, REJECTED = "DONE", "FAILED", "PENDING", "REJECTED"


@dataclass(frozen=True)
class Outcome:
    """One replayed request: when it was sent, what the service answered and finally reported."""

    sent_at_ms: int
    http_status: int
    state: str
    request_id: str | None = None
    buffer: str | None = None
    length: int | None = None
    batch_id: str | None = None
    batch_size: int | None = None
    padded_length: int | None = None
    batch_real_tokens: int | None = None
    completed_at_ms: int | None = None
    inference_ms: float | None = None


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    arr = np.asarray(values, dtype=float)
    return {"p50": float(np.percentile(arr, 50)), "p95": float(np.percentile(arr, 95)),
            "p99": float(np.percentile(arr, 99)), "max": float(arr.max()),
            "mean": float(arr.mean())}


def _batch_stats(done: list[Outcome]) -> dict[str, Any]:
    batches = {o.batch_id: o for o in done}  # one representative member per batch
    sizes: dict[int, int] = defaultdict(int)
    real = padded = 0
    for member in batches.values():
        sizes[member.batch_size] += 1
        real += member.batch_real_tokens
        padded += member.batch_size * member.padded_length
    n = len(batches)
    return {
        "requests": len(done),
        "batches": n,
        "mean_batch_size": sum(s * c for s, c in sizes.items()) / n if n else None,
        "batch_sizes": dict(sorted(sizes.items())),
        "real_tokens": real,
        "padded_tokens": padded,
        "padding_overhead": padding_overhead(real, padded) if real else None,
        "mean_inference_ms": float(np.mean([b.inference_ms for b in batches.values()]))
        if n else None,
        "latency_ms": _percentiles([o.completed_at_ms - o.sent_at_ms for o in done]),
    }


def summarize(outcomes: list[Outcome], wall_s: float) -> dict[str, Any]:
    """Counts, measured latency percentiles, throughput, padding and batch sizes per buffer."""
    done = [o for o in outcomes if o.state == DONE]
    accepted = [o for o in outcomes if o.state != REJECTED]
    failed = sum(o.state == FAILED for o in outcomes)
    rejected: dict[int, int] = defaultdict(int)
    for o in outcomes:
        if o.state == REJECTED:
            rejected[o.http_status] += 1
    per_buffer: dict[str, list[Outcome]] = defaultdict(list)
    for o in done:
        per_buffer[o.buffer].append(o)
    span_ms = (max(o.completed_at_ms for o in done) - min(o.sent_at_ms for o in outcomes)
               if done else 0)
    overall = _batch_stats(done)
    return {
        "kind": "measured",
        "requests": {"sent": len(outcomes), "accepted": len(accepted), "done": len(done),
                     "failed": failed, "lost": len(accepted) - len(done) - failed,
                     "rejected_by_status": dict(rejected)},
        "latency_ms": overall.pop("latency_ms"),
        "throughput_rps": len(done) / (span_ms / 1000.0) if span_ms > 0 else None,
        "wall_s": wall_s,
        "padding_overhead": overall["padding_overhead"],
        "totals": overall,
        "buffers": {name: _batch_stats(items) for name, items in sorted(per_buffer.items())},
    }


def _fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def format_report(report: dict[str, Any]) -> str:
    """A human-readable report; every figure here was measured on the running service."""
    req, lat = report["requests"], report["latency_ms"]
    lines = [
        "Replay report (measured on the running service)",
        f"  requests   sent {req['sent']}  accepted {req['accepted']}  done {req['done']}  "
        f"failed {req['failed']}  lost {req['lost']}  rejected {req['rejected_by_status']}",
        f"  latency    p50 {_fmt(lat['p50'])} ms  p95 {_fmt(lat['p95'])} ms  "
        f"p99 {_fmt(lat['p99'])} ms  max {_fmt(lat['max'])} ms  (sent -> result stored)",
        f"  throughput {_fmt(report['throughput_rps'], '.2f')} req/s over "
        f"{report['wall_s']:.1f} s wall",
        f"  padding    overhead {_fmt(report['padding_overhead'], '.1%')} "
        "(padded / real tokens - 1)",
        "",
        f"  {'buffer':<10}{'requests':>9}{'batches':>9}{'mean B':>8}{'padding':>9}"
        f"{'infer ms':>10}{'p99 ms':>9}  batch sizes",
    ]
    for name, b in report["buffers"].items():
        lines.append(
            f"  {name:<10}{b['requests']:>9}{b['batches']:>9}{_fmt(b['mean_batch_size'], '.1f'):>8}"
            f"{_fmt(b['padding_overhead'], '.1%'):>9}{_fmt(b['mean_inference_ms'], '.1f'):>10}"
            f"{_fmt(b['latency_ms']['p99']):>9}  {b['batch_sizes']}")
    return "\n".join(lines)
