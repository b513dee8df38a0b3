"""Benchmark (not a test): the bulk path end to end through `mbs serve`, texts sent in lists.

For each mode, starts `mbs serve --state-file` in its own process (moto server, the queue
dispatcher, the real model on this machine's CPU), submits N texts (Pang & Lee, 70% sentences /
30% passages, seed 0) in lists of L over real HTTP from a few client threads, waits until every
text is DONE or FAILED, runs `mbs audit --grace 0` on the service's state file, and stops the
service (SIGINT: it drains). Modes:
- items: lists without output; every text has its PENDING and result items. The client polls
  the oldest open list with GET /v1/requests?ids=<its texts still PENDING> once a second, so a
  result is read about once (polling every open list each second re-reads 100 results per list
  and starves the service: the first edition of this benchmark did);
- job: every list a job with S3 output (no per-text item); the client polls the oldest open job
  with GET /v1/jobs/{id}, then downloads each job's object through its presigned URL and counts
  its lines.
Reports per mode: lost texts (target 0), the audit's verdict, throughput (texts per second
accepted during the submit phase, and completed from the first submit to the last text
terminal), the stored sizes read back (result items: DynamoDB's item size; jobs: the job item
and the part objects), the batch sizes seen, and the client's API calls per text.
Writes benchmarks/results/bulk.json.

    nice -n 5 .venv/bin/python benchmarks/bench_bulk.py --texts 10000 --list 100 --mode both
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess  # nosec B404 - runs this repository's own CLI, fixed argv, no shell
import sys
import tempfile
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

from functions.shared.items import ONE_WRITE_UNIT_BYTES, item_bytes  # noqa: E402
from functions.shared.jobs import JOB_KEY_PREFIX, part_key  # noqa: E402
from infra.local.events import REGION  # noqa: E402
from optimizer.workload.texts import sample_texts  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "bulk.json"
TENANT = "bench"
START_TIMEOUT_S = 300.0
POLL_S = 1.0
RETRY_429_S = 600.0  # a 429 (gateway or queue depth) is retried this long, then it is an error


def _http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        "content-type": "application/json", "x-mbs-tenant": TENANT})
    deadline = time.monotonic() + RETRY_429_S
    attempt = 0
    while True:
        try:
            with urllib.request.urlopen(request, timeout=600) as reply:  # nosec B310 - loopback
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            if exc.code != 429:  # the gateway or a saturated buffer: back off and retry
                return exc.code, json.loads(exc.read())
            if time.monotonic() > deadline:
                raise RuntimeError(f"{method} {url}: still 429 after {RETRY_429_S:.0f} s") \
                    from None
            attempt += 1
            time.sleep(min(2.0, 0.2 * attempt))


class Service:
    """`mbs serve` in its own process; `state` is what it wrote to its state file."""

    def __init__(self, log_dir: Path) -> None:
        self.state_file = log_dir / "state.json"
        self.log = (log_dir / "serve.log").open("w")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(  # nosec B603 - sys.executable, fixed arguments
            [sys.executable, "-m", "infra.cli.main", "serve", "--port", "0", "--log-level",
             "ERROR", "--state-file", str(self.state_file)],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.state_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mbs serve did not start (see {log_dir / 'serve.log'})")
            time.sleep(0.5)
        self.state = json.loads(self.state_file.read_text(encoding="utf-8"))
        self.url = self.state["url"]

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.state["aws_endpoint_url"],
                            region_name=REGION, aws_access_key_id="testing",
                            aws_secret_access_key="testing")  # nosec B106 - moto's placeholder

    def audit(self) -> tuple[int, dict[str, Any]]:
        done = subprocess.run(  # nosec B603 - sys.executable, fixed arguments
            [sys.executable, "-m", "infra.cli.main", "audit", "--state-file",
             str(self.state_file), "--grace", "0", "--json"],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
            text=True, check=False)
        return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _submit_all(url: str, lists: list[list[str]], clients: int, job: bool
                ) -> list[tuple[list[str], str | None]]:
    """POST every list; per list, the accepted ids in order and the job id (job mode)."""
    def post(index: int) -> tuple[list[str], str | None]:
        body: dict[str, Any] = {"texts": lists[index]}
        if job:
            body["output"] = {"s3": True}
        status, reply = _http("POST", f"{url}/v1/requests", body)
        if status != 202:
            raise RuntimeError(f"list {index}: {status} {reply}")
        return [r["id"] for r in reply["requests"]], (reply.get("job") or {}).get("id")

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(post, range(len(lists))))


def _progress(terminal: int, total: int) -> None:
    print(f"{terminal} of {total} texts terminal", file=sys.stderr, flush=True)


def _wait_items(url: str, id_lists: list[list[str]], timeout_s: float
                ) -> tuple[dict[str, str], int, float]:
    """Poll the oldest open list's PENDING texts until all are terminal; states, reads, end."""
    states = {i: "PENDING" for ids in id_lists for i in ids}
    reads, finished, open_lists = 0, time.time(), list(id_lists)
    deadline = time.monotonic() + timeout_s
    while open_lists and time.monotonic() < deadline:
        pending = [i for i in open_lists[0] if states[i] == "PENDING"]
        status, reply = _http("GET", f"{url}/v1/requests?ids=" + ",".join(pending))
        reads += 1
        if status != 200:
            raise RuntimeError(f"batch read: {status} {reply}")
        for view in reply["results"]:
            states[view["id"]] = view["status"]
        if all(states[i] != "PENDING" for i in open_lists[0]):
            open_lists.pop(0)
            finished = time.time()
            continue
        _progress(sum(s != "PENDING" for s in states.values()), len(states))
        time.sleep(POLL_S)
    return states, reads, finished


def _wait_jobs(url: str, job_ids: list[str], timeout_s: float
               ) -> tuple[dict[str, dict[str, Any]], int, float]:
    """Poll the oldest open job until every job is DONE; the final views, reads, end."""
    views: dict[str, dict[str, Any]] = {}
    reads, finished, open_jobs = 0, time.time(), list(job_ids)
    deadline = time.monotonic() + timeout_s
    while open_jobs and time.monotonic() < deadline:
        status, view = _http("GET", f"{url}/v1/jobs/{open_jobs[0]}")
        reads += 1
        if status != 200:
            raise RuntimeError(f"job read: {status} {view}")
        views[open_jobs[0]] = view
        if view["status"] == "DONE":
            open_jobs.pop(0)
            finished = time.time()
            continue
        _progress(sum(v["done"] + v["failed"] for v in views.values()),
                  sum(v["total"] for v in views.values()))
        time.sleep(POLL_S)
    return views, reads, finished


def _sizes(values: list[int]) -> dict[str, float]:
    return {"n": len(values), "min": min(values, default=0),
            "mean": round(float(np.mean(values)), 1) if values else 0.0,
            "max": max(values, default=0)}


def _items_read_back(service: Service, ids: list[str]) -> dict[str, Any]:
    """The DONE result items' sizes as DynamoDB counts them, and their batch sizes."""
    ddb, table = service.client("dynamodb"), service.state["table_name"]
    sizes, batches = [], []
    for start in range(0, len(ids), 100):
        keys = [{"id": {"S": i}} for i in ids[start:start + 100]]
        reply = ddb.batch_get_item(RequestItems={table: {"Keys": keys}})
        for item in reply["Responses"][table]:
            if item["status"]["S"] == "DONE":
                sizes.append(item_bytes(item))
                batches.append(int(item["n"]["N"]))
    return {"result_item_bytes": {**_sizes(sizes), "over_one_write_unit": sum(
                s > ONE_WRITE_UNIT_BYTES for s in sizes)},
            "mean_batch_size": round(float(np.mean(batches)), 2) if batches else 0.0}


def _jobs_read_back(service: Service, views: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every job's object (its lines counted), the job items' and the parts' sizes."""
    ddb, s3 = service.client("dynamodb"), service.client("s3")
    table, bucket = service.state["table_name"], service.state["bucket"]
    lines, job_sizes, parts = 0, [], set()
    for job_id, view in views.items():
        if view["status"] == "DONE":
            with urllib.request.urlopen(view["url"], timeout=60) as reply:  # nosec B310 - moto
                lines += len(reply.read().decode().splitlines())
        item = ddb.get_item(TableName=table, Key={"id": {"S": JOB_KEY_PREFIX + job_id}})["Item"]
        job_sizes.append(item_bytes(item))
        parts |= {bytes(p).hex() for p in item.get("parts", {}).get("BS", [])}
    part_bytes, part_lines = [], []
    for part_id in parts:
        body = s3.get_object(Bucket=bucket, Key=part_key(part_id))["Body"].read()
        part_bytes.append(len(body))
        part_lines.append(len(body.splitlines()))
    return {"object_lines": lines, "job_item_bytes": _sizes(job_sizes),
            "part_object_bytes": _sizes(part_bytes), "parts": len(parts),
            "mean_lines_per_part": round(float(np.mean(part_lines)), 2) if part_lines else 0.0}


def run_mode(mode: str, lists: list[list[str]], clients: int, timeout_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        service = Service(Path(tmp))
        try:
            started = time.time()
            answers = _submit_all(service.url, lists, clients, job=mode == "job")
            submitted = time.time()
            ids = [i for group, _ in answers for i in group]
            if mode == "job":
                views, reads, finished = _wait_jobs(
                    service.url, [j for _, j in answers if j], timeout_s)
                done = sum(v["done"] for v in views.values())
                failed = sum(v["failed"] for v in views.values())
                stored = _jobs_read_back(service, views)
            else:
                states, reads, finished = _wait_items(service.url, [g for g, _ in answers],
                                                      timeout_s)
                done = sum(s == "DONE" for s in states.values())
                failed = sum(s == "FAILED" for s in states.values())
                stored = _items_read_back(service, ids)
            audit_exit, audit = service.audit()
        finally:
            service.stop()
    return {
        "mode": mode, "accepted": len(ids), "done": done, "failed": failed,
        "lost": len(ids) - done - failed, "mbs_audit_exit_code": audit_exit, "audit": audit,
        "submit_s": round(submitted - started, 2),
        "submit_texts_per_s": round(len(ids) / (submitted - started), 1),
        "end_to_end_s": round(finished - started, 2),
        "completed_texts_per_s": round(done / (finished - started), 1),
        "client_calls": {"submits": len(lists), "reads": reads,
                         "api_calls_per_text": round((len(lists) + reads) / len(ids), 4)},
        "stored": stored,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--list", type=int, default=100, help="texts per POST (default 100)")
    parser.add_argument("--mode", choices=["items", "job", "both"], default="both")
    parser.add_argument("--clients", type=int, default=2, help="concurrent submitting clients")
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    texts = sample_texts(args.texts, np.random.default_rng(0))
    lists = [texts[i:i + args.list] for i in range(0, args.texts, args.list)]
    modes = ["items", "job"] if args.mode == "both" else [args.mode]
    report: dict[str, Any] = {"texts": args.texts, "list_size": args.list,
                              "lists": len(lists), "clients": args.clients, "plan": "default",
                              "model": "minilm (this machine's CPU)"}
    for mode in modes:
        report[mode] = run_mode(mode, lists, args.clients, args.timeout_s)
        print(json.dumps({k: report[mode][k] for k in (
            "mode", "accepted", "done", "failed", "lost", "mbs_audit_exit_code",
            "submit_texts_per_s", "completed_texts_per_s", "end_to_end_s", "stored")}), flush=True)
    report["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "load_average_after": os.getloadavg()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    ok = all(report[m]["lost"] == 0 and report[m]["mbs_audit_exit_code"] == 0 for m in modes)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
