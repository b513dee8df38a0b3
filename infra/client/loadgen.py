"""An open-loop load generator for `POST /v1/embeddings`, meant to run in its own process.

Open loop: request i leaves at t0 + i / rate whatever the server does, so a slow server meets a
growing backlog instead of a politely waiting client (a closed loop hides queueing delay, the
"coordinated omission" of wrk and ab). Every request is bounded by `timeout_s`, the in-flight
count by `max_in_flight` (past it a send is counted `client_saturated`, not silently delayed),
and the run by its request count, so it always stops by itself.

Run: `python -m infra.client.loadgen --url URL --rate 500 --duration 30` prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
import numpy as np

from optimizer.workload.texts import pang_lee_corpus

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_IN_FLIGHT = 4096
CONNECTION_ERROR = 0  # the status recorded when no HTTP answer came back


@dataclass(frozen=True)
class Sample:
    """One request as the client saw it."""

    sent_s: float  # since the run's start
    latency_ms: float
    status: int
    queue_wait_ms: float | None = None  # from the response's mbs extras (200 only)
    inference_ms: float | None = None


@dataclass(frozen=True)
class LoadSummary:
    """What one phase measured: answers by status, latency, and overhead beyond the batching."""

    offered_rps: float
    duration_s: float
    sent: int
    client_saturated: int
    statuses: dict[str, int]
    achieved_ok_rps: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    overhead_p50_ms: float | None  # latency - (queue wait + inference), 200s only
    overhead_p99_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if len(values) else None


def summarize(samples: Sequence[Sample], offered_rps: float, duration_s: float,
              saturated: int) -> LoadSummary:
    """Fold samples into a summary (pure)."""
    statuses: dict[str, int] = {}
    for sample in samples:
        statuses[str(sample.status)] = statuses.get(str(sample.status), 0) + 1
    ok = [s for s in samples if s.status == 200]
    overhead = [s.latency_ms - (s.queue_wait_ms or 0.0) - (s.inference_ms or 0.0) for s in ok]
    span_s = max((s.sent_s + s.latency_ms / 1000.0 for s in ok), default=0.0)
    return LoadSummary(
        offered_rps=offered_rps, duration_s=duration_s, sent=len(samples),
        client_saturated=saturated, statuses=dict(sorted(statuses.items())),
        achieved_ok_rps=round(len(ok) / span_s, 3) if span_s > 0 else 0.0,
        latency_p50_ms=_percentile([s.latency_ms for s in ok], 50),
        latency_p99_ms=_percentile([s.latency_ms for s in ok], 99),
        overhead_p50_ms=_percentile(overhead, 50), overhead_p99_ms=_percentile(overhead, 99))


def _extras(body: dict[str, Any]) -> tuple[float | None, float | None]:
    """The slowest input's batching wait and forward pass, from the response's mbs extras."""
    entries = (body.get("mbs") or {}).get("inputs") or []
    if not entries:
        return None, None
    slowest = max(entries, key=lambda e: e.get("queue_wait_ms", 0) + e.get("inference_ms", 0))
    return float(slowest.get("queue_wait_ms", 0.0)), float(slowest.get("inference_ms", 0.0))


async def _one(session: aiohttp.ClientSession, url: str, payload: bytes, t0: float,
               timeout_s: float) -> Sample:
    sent = time.perf_counter()
    status, wait_ms, infer_ms = CONNECTION_ERROR, None, None
    try:
        async with session.post(url, data=payload,
                                headers={"content-type": "application/json"},
                                timeout=aiohttp.ClientTimeout(total=timeout_s)) as reply:
            status = reply.status
            body = await reply.read()
            if status == 200:
                wait_ms, infer_ms = _extras(json.loads(body))
    except (aiohttp.ClientError, TimeoutError, OSError):
        status = CONNECTION_ERROR
    latency_ms = (time.perf_counter() - sent) * 1000.0
    return Sample(sent - t0, latency_ms, status, wait_ms, infer_ms)


async def run_load(url: str, texts: Sequence[str], rate_rps: float, duration_s: float,
                   timeout_s: float = DEFAULT_TIMEOUT_S,
                   max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> LoadSummary:
    """Send `rate_rps x duration_s` requests at fixed spacing, one text each, cycling `texts`."""
    if rate_rps <= 0 or duration_s <= 0:
        raise ValueError(f"rate_rps and duration_s must be > 0, got {rate_rps}, {duration_s}")
    if not texts:
        raise ValueError("texts must not be empty")
    payloads = [json.dumps({"input": t}).encode() for t in texts]  # the served model
    count = int(rate_rps * duration_s)
    connector = aiohttp.TCPConnector(limit=max_in_flight, force_close=False)
    tasks: list[asyncio.Task[Sample]] = []
    saturated = 0
    in_flight = 0

    def finished(_: asyncio.Task[Sample]) -> None:
        nonlocal in_flight
        in_flight -= 1

    async with aiohttp.ClientSession(connector=connector) as session:
        t0 = time.perf_counter()
        for i in range(count):
            # Always yield (sleep(0) when late), so answers are read while sending.
            await asyncio.sleep(max(0.0, t0 + i / rate_rps - time.perf_counter()))
            if in_flight >= max_in_flight:
                saturated += 1
                continue
            in_flight += 1
            task = asyncio.create_task(
                _one(session, url, payloads[i % len(payloads)], t0, timeout_s))
            task.add_done_callback(finished)
            tasks.append(task)
        samples = await asyncio.gather(*tasks)
    return summarize(samples, rate_rps, duration_s, saturated)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.client.loadgen",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the service's /v1/embeddings URL")
    parser.add_argument("--rate", type=float, required=True, metavar="RPS")
    parser.add_argument("--duration", type=float, required=True, metavar="S")
    parser.add_argument("--texts", metavar="FILE",
                        help="one text per line (default: 1,500 review sentences and 500 "
                        "review passages, Pang & Lee)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S")
    args = parser.parse_args(argv)
    if args.texts:
        with open(args.texts, encoding="utf-8") as handle:
            texts = [line.strip() for line in handle if line.strip()]
    else:
        corpus = pang_lee_corpus()
        texts = [*corpus.short[:1500], *corpus.long[:500]]
    summary = asyncio.run(run_load(args.url, texts, args.rate, args.duration, args.timeout))
    json.dump(summary.to_dict(), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
