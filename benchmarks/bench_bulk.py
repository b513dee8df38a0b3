"""Benchmark (not a test): the bulk path end to end on the local stack, texts submitted in lists.

Starts the local stack (moto server, the HTTP gateway, the dispatcher, the real model on this
machine's CPU), submits N texts (Pang & Lee, 70% sentences / 30% passages, seed 0) in lists of
L over real HTTP from a few client threads, the first list as a job with S3 output, then polls
GET /v1/requests?ids=... (one call per list) until every text is DONE or FAILED. Reports:
- lost: accepted texts that never reached DONE or FAILED (target 0), and `mbs audit`'s verdict
  (the CLI run on the stack's state file);
- throughput: texts per second accepted (submit phase) and completed (first submit to last DONE);
- the result items' size as DynamoDB counts it (functions/shared/items.py), read back from the
  table for every text: min, mean, max, and the share over 1 KB (one write unit);
- the job's object: fetched through its presigned URL, one line per text;
- the calls the client made per text (API calls) beside what the model prices.
Writes benchmarks/results/bulk.json.

    nice -n 5 .venv/bin/python benchmarks/bench_bulk.py [--texts 10000] [--list 100]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from buffers.plan_files import default_plan_path, load_plan  # noqa: E402
from functions.shared.items import ONE_WRITE_UNIT_BYTES, item_bytes  # noqa: E402
from infra.cli.main import main as mbs  # noqa: E402
from infra.cli.serve import write_state  # noqa: E402
from infra.client.audit import audit_stack  # noqa: E402
from infra.local.stack import LocalStack  # noqa: E402
from optimizer.workload.texts import sample_texts  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "bulk.json"
TENANT = "bench"


def _http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        "content-type": "application/json", "x-mbs-tenant": TENANT})
    for attempt in range(20):
        try:
            with urllib.request.urlopen(request, timeout=600) as reply:  # nosec B310 - loopback
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            if exc.code != 429:  # the gateway or a saturated buffer: back off and retry
                return exc.code, json.loads(exc.read())
            time.sleep(0.2 * (attempt + 1))
    raise RuntimeError(f"{method} {url}: still 429 after 20 tries")


def _submit_all(url: str, lists: list[list[str]], clients: int) -> list[list[str]]:
    """POST every list (the first as an S3 job); the accepted ids per list, in order."""
    def post(index: int) -> tuple[list[str], str | None]:
        body: dict[str, Any] = {"texts": lists[index]}
        if index == 0:
            body["output"] = {"s3": True}
        status, reply = _http("POST", f"{url}/v1/requests", body)
        if status != 202:
            raise RuntimeError(f"list {index}: {status} {reply}")
        return [r["id"] for r in reply["requests"]], (reply.get("job") or {}).get("id")

    with ThreadPoolExecutor(max_workers=clients) as pool:
        answers = list(pool.map(post, range(len(lists))))
    _submit_all.job_id = answers[0][1]  # type: ignore[attr-defined]
    return [ids for ids, _ in answers]


def _wait_done(url: str, id_lists: list[list[str]], timeout_s: float) -> tuple[dict, int, float]:
    """Poll each list with one batch read until all are terminal; states, reads, finish time."""
    states: dict[str, str] = {}
    open_lists = list(range(len(id_lists)))
    reads, finished = 0, time.time()
    deadline = time.monotonic() + timeout_s
    while open_lists and time.monotonic() < deadline:
        still = []
        for index in open_lists:
            status, reply = _http("GET", f"{url}/v1/requests?ids=" + ",".join(id_lists[index]))
            reads += 1
            if status != 200:
                raise RuntimeError(f"batch read: {status} {reply}")
            for view in reply["results"]:
                states[view["id"]] = view["status"]
            if any(states.get(i, "PENDING") == "PENDING" for i in id_lists[index]):
                still.append(index)
            else:
                finished = time.time()
        open_lists = still
        if open_lists:
            terminal = sum(1 for s in states.values() if s != "PENDING")
            print(f"{terminal} of {sum(map(len, id_lists))} texts terminal", file=sys.stderr,
                  flush=True)
            time.sleep(1.0)
    return states, reads, finished


def _item_sizes(table: str, ids: list[str]) -> list[int]:
    ddb = boto3.client("dynamodb")
    sizes = []
    for start in range(0, len(ids), 100):
        keys = [{"id": {"S": i}} for i in ids[start:start + 100]]
        reply = ddb.batch_get_item(RequestItems={table: {"Keys": keys}})
        sizes += [item_bytes(item) for item in reply["Responses"][table]
                  if item["status"]["S"] == "DONE"]
    return sizes


def _job_object(url: str, job_id: str) -> dict[str, Any]:
    status, view = _http("GET", f"{url}/v1/jobs/{job_id}")
    if status != 200 or view["status"] != "DONE":
        return {"status": status, "view": view}
    with urllib.request.urlopen(view["url"], timeout=60) as reply:  # nosec B310: moto's URL
        lines = reply.read().decode().splitlines()
    return {"status": view["status"], "lines": len(lines), "done": view["done"],
            "failed": view["failed"], "bytes": sum(len(line) + 1 for line in lines)}


def run(n_texts: int, list_size: int, clients: int, timeout_s: float) -> dict[str, Any]:
    texts = sample_texts(n_texts, np.random.default_rng(0))
    lists = [texts[i:i + list_size] for i in range(0, n_texts, list_size)]
    plan = load_plan(default_plan_path())
    with LocalStack(plan, log_level="ERROR") as stack:
        started = time.time()
        id_lists = _submit_all(stack.url, lists, clients)
        submitted = time.time()
        states, reads, finished = _wait_done(stack.url, id_lists, timeout_s)
        ids = [i for group in id_lists for i in group]
        sizes = _item_sizes(stack.resources.table_name, ids)
        job = _job_object(stack.url, _submit_all.job_id)  # type: ignore[attr-defined]
        with tempfile.TemporaryDirectory() as tmp:
            state_file = Path(tmp) / "state.json"
            write_state(str(state_file), stack.url, stack)
            audit_exit = mbs(["audit", "--state-file", str(state_file), "--grace", "0"])
        now_ms = int(time.time() * 1000)
        res = stack.resources
        audit = audit_stack(boto3.client("dynamodb"), boto3.client("sqs"), res.table_name,
                            list(res.queue_urls.values()), list(res.dlq_urls.values()),
                            since_ms=0, now_ms=now_ms, grace_ms=0).to_dict()
        batches = dict(stack.dispatcher.stats.batches) if stack.dispatcher else {}
    done = sum(1 for i in ids if states.get(i) == "DONE")
    failed = sum(1 for i in ids if states.get(i) == "FAILED")
    return {
        "texts": n_texts, "list_size": list_size, "lists": len(lists), "clients": clients,
        "plan": plan.name, "accepted": len(ids), "done": done, "failed": failed,
        "lost": len(ids) - done - failed,
        "mbs_audit_exit_code": audit_exit, "audit": audit,
        "submit_s": round(submitted - started, 2),
        "submit_texts_per_s": round(len(ids) / (submitted - started), 1),
        "end_to_end_s": round(finished - started, 2),
        "completed_texts_per_s": round(done / (finished - started), 1),
        "infer_batches": batches,
        "mean_batch_size": round(len(ids) / max(1, sum(batches.values())), 2),
        "client_calls": {"submits": len(lists), "batch_reads": reads, "job_reads": 1,
                         "api_calls_per_text": round((len(lists) + reads + 1) / len(ids), 4)},
        "result_item_bytes": {"n": len(sizes), "min": min(sizes, default=0),
                              "mean": round(float(np.mean(sizes)), 1) if sizes else 0,
                              "max": max(sizes, default=0),
                              "over_one_write_unit": sum(s > ONE_WRITE_UNIT_BYTES
                                                         for s in sizes)},
        "job": job,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--list", type=int, default=100, help="texts per POST (default 100)")
    parser.add_argument("--clients", type=int, default=2, help="concurrent submitting clients")
    parser.add_argument("--timeout-s", type=float, default=1800.0)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    report = run(args.texts, args.list, args.clients, args.timeout_s)
    report["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "load_average": os.getloadavg(), "threads": threading.active_count()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: report[k] for k in ("accepted", "done", "failed", "lost",
                                             "mbs_audit_exit_code", "submit_texts_per_s",
                                             "completed_texts_per_s", "result_item_bytes")},
                     indent=2))
    return 0 if report["lost"] == 0 and report["mbs_audit_exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
