"""Replay a workload over HTTP at its real arrival times, then collect every result."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from tqdm import tqdm

from infra.client.replay_report import DONE, FAILED, PENDING, REJECTED, Outcome, summarize
from optimizer.workload.workloads import Workload

HTTP_TIMEOUT_S = 30.0
ONLINE, BULK = "online", "bulk"
PATHS = (ONLINE, BULK)
POLL_INTERVAL_S = 0.25


def _call(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"content-type": "application/json"})
    try:
        # replay() only accepts http(s) base URLs (checked there), so no file:// or ftp://.
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as reply:  # nosec B310
            return reply.status, json.loads(reply.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except json.JSONDecodeError:
            return exc.code, {}
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        return 0, {"error": {"code": "connection", "message": str(exc)}}


def _submit(base_url: str, text: str) -> Outcome:
    sent_ms = int(time.time() * 1000)
    status, body = _call("POST", f"{base_url}/v1/requests", {"text": text})
    if status != 202:
        return Outcome(sent_at_ms=sent_ms, http_status=status, state=REJECTED)
    return Outcome(sent_at_ms=sent_ms, http_status=status, state=PENDING,
                   request_id=body["id"], buffer=body["buffer"], length=body["length"])


def _embed(base_url: str, text: str) -> Outcome:
    """One synchronous `POST /v1/embeddings`: the answer is the result, so nothing to collect."""
    sent_ms = int(time.time() * 1000)
    status, body = _call("POST", f"{base_url}/v1/embeddings", {"input": text})
    done_ms = int(time.time() * 1000)
    if status == 200:
        extras = body["mbs"]["inputs"][0]
        return Outcome(sent_at_ms=sent_ms, http_status=status, state=DONE,
                       buffer=extras["buffer"], length=extras["tokens"],
                       batch_id=extras["batch_id"], batch_size=extras["batch_size"],
                       padded_length=extras["padded_length"],
                       batch_real_tokens=extras["batch_real_tokens"], completed_at_ms=done_ms,
                       inference_ms=extras["inference_ms"])
    if status in (429, 503) or 400 <= status < 500:
        return Outcome(sent_at_ms=sent_ms, http_status=status, state=REJECTED)
    if status == 0:  # no answer at all: counted lost
        return Outcome(sent_at_ms=sent_ms, http_status=status, state=PENDING)
    return Outcome(sent_at_ms=sent_ms, http_status=status, state=FAILED, completed_at_ms=done_ms)


def _refresh(base_url: str, outcome: Outcome) -> Outcome:
    status, body = _call("GET", f"{base_url}/v1/requests/{outcome.request_id}")
    if status != 200 or body.get("status") not in (DONE, FAILED):
        return outcome
    return replace(outcome, state=body["status"], batch_id=body.get("batch_id"),
                   batch_size=body.get("batch_size"), padded_length=body.get("padded_length"),
                   batch_real_tokens=body.get("batch_real_tokens"),
                   completed_at_ms=body.get("completed_at_ms"),
                   inference_ms=body.get("inference_ms"))


def _bar_off(progress: bool) -> bool | None:
    """tqdm's disable: None shows a bar on a terminal only, so a log or pipe gets no updates."""
    return None if progress else True


def _send_all(base_url: str, workload: Workload, speedup: float, pool: ThreadPoolExecutor,
              progress: bool, send: Callable[[str, str], Outcome]) -> list[Outcome]:
    futures = []
    started = time.monotonic()
    with tqdm(total=workload.count, desc="sending", unit="req", disable=_bar_off(progress)) as bar:
        for at_s, text in zip(workload.arrivals_s, workload.texts, strict=True):
            delay = started + float(at_s) / speedup - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            future = pool.submit(send, base_url, text)
            future.add_done_callback(lambda _: bar.update(1))
            futures.append(future)
        outcomes = [f.result() for f in futures]
    return outcomes


def _collect(base_url: str, outcomes: list[Outcome], timeout_s: float, pool: ThreadPoolExecutor,
             progress: bool) -> list[Outcome]:
    deadline = time.monotonic() + timeout_s
    pending = [i for i, o in enumerate(outcomes) if o.state == PENDING]
    with tqdm(total=len(pending), desc="collecting", unit="req", disable=_bar_off(progress)) as bar:
        while pending and time.monotonic() < deadline:
            refreshed = list(pool.map(lambda i: _refresh(base_url, outcomes[i]), pending))
            still = []
            for i, outcome in zip(pending, refreshed, strict=True):
                outcomes[i] = outcome
                if outcome.state == PENDING:
                    still.append(i)
            bar.update(len(pending) - len(still))
            pending = still
            if pending:
                time.sleep(POLL_INTERVAL_S)
    return outcomes


def replay(base_url: str, workload: Workload, speedup: float = 1.0,
           collect_timeout_s: float = 120.0, workers: int = 256,
           progress: bool = True, path: str = ONLINE) -> dict[str, Any]:
    """Send every request of the workload at arrival_s / speedup and report what came back.

    path "online" (default): each request is one `POST /v1/embeddings` that answers with the
    embedding; "bulk": `POST /v1/requests`, then poll `GET /v1/requests/{id}` until done.
    """
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    if speedup <= 0:
        raise ValueError(f"speedup must be > 0, got {speedup}")
    if not base_url.startswith(("http://", "https://")):
        raise ValueError(f"url must start with http:// or https://, got {base_url!r}")
    base_url = base_url.rstrip("/")
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="replay") as pool:
        send = _embed if path == ONLINE else _submit
        outcomes = _send_all(base_url, workload, speedup, pool, progress, send)
        if path == BULK:
            outcomes = _collect(base_url, outcomes, collect_timeout_s, pool, progress)
    report = summarize(outcomes, wall_s=time.monotonic() - started)
    report["workload"] = workload.spec.describe()
    report["speedup"] = speedup
    report["path"] = path
    return report
