"""Benchmark (not a test): the online dispatcher service's own overhead and capacity, measured.

The service runs as the container runs it (`python -m infra.dispatcher`, uvicorn) with the
labelled zero-cost stand-in model in process, so what is measured is the dispatcher itself:
HTTP, validation, tokenizing, batching timers, the response. The load comes from a SEPARATE
process (`python -m infra.client.loadgen`, open loop, aiohttp), both on this 2-core machine.

Phases (each bounded in requests and time; loopback only):
1. overhead at 500 req/s for 30 s: latency beyond the batching wait (latency - queue wait -
   forward pass), p50 and p99;
2. steps up the rate (20 s each) while p99 stays under the SLO with no refusals: the highest
   sustained rate;
3. 3x that rate for 20 s: refusals must be 429s, not dropped connections or a growing queue;
4. hold the sustained rate for 300 s, sampling the service's RSS and CPU time every 10 s.
Figures go to benchmarks/results/online_load.json. Measured, not modelled.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess  # nosec B404 - starts this repo's own modules with sys.executable, fixed argv, no shell
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra.local.moto_process import free_port  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "online_load.json"
SLO_MS = 1000.0
OVERHEAD_RATE_RPS = 500.0
STEPS_RPS = (250.0, 500.0, 750.0, 1000.0, 1250.0, 1500.0, 2000.0)
STEP_S = 20.0
HOLD_S = 300.0
SAMPLE_EVERY_S = 10.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _start_service(port: int) -> subprocess.Popen:
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "MBS_MODEL": "stand-in",
           "MBS_INVOKE": "inprocess", "MBS_LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "infra.dispatcher"], env=env, cwd=ROOT,  # nosec B603 - sys.executable and fixed arguments
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):  # nosec B310 - a fixed http://127.0.0.1 URL
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the service did not start: {proc.stderr.read()}")


def _health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:  # nosec B310 - a fixed http://127.0.0.1 URL
        return json.loads(reply.read())


def _load(port: int, rate: float, duration_s: float) -> dict[str, Any]:
    out = subprocess.run(  # nosec B603 - sys.executable and fixed arguments
        [sys.executable, "-m", "infra.client.loadgen", "--url",
         f"http://127.0.0.1:{port}/v1/embeddings", "--rate", str(rate), "--duration",
         str(duration_s), "--timeout", "30"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=duration_s + 120, check=True)
    return json.loads(out.stdout)


def _proc_sample(pid: int) -> dict[str, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    rss_kb = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if line.startswith("VmRSS:"))
    return {"cpu_s": cpu_s, "rss_mb": rss_kb / 1024.0}


def _sustained(result: dict[str, Any]) -> bool:
    ok = result["statuses"].get("200", 0)
    return (ok == result["sent"] and result["client_saturated"] == 0
            and (result["latency_p99_ms"] or 1e9) <= SLO_MS)


def _hold(port: int, pid: int, rate: float) -> dict[str, Any]:
    loadgen = subprocess.Popen(  # nosec B603 - sys.executable and fixed arguments
        [sys.executable, "-m", "infra.client.loadgen", "--url",
         f"http://127.0.0.1:{port}/v1/embeddings", "--rate", str(rate), "--duration",
         str(HOLD_S), "--timeout", "30"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    samples = []
    started = time.monotonic()
    while loadgen.poll() is None and time.monotonic() - started < HOLD_S + 120:
        samples.append({"t_s": round(time.monotonic() - started, 1), **_proc_sample(pid)})
        time.sleep(SAMPLE_EVERY_S)
    out, _ = loadgen.communicate(timeout=120)
    result = json.loads(out)
    span = [s for s in samples if s["t_s"] <= HOLD_S]
    cpu_ms_per_request = ((span[-1]["cpu_s"] - span[0]["cpu_s"]) * 1000.0
                          / max(1.0, rate * (span[-1]["t_s"] - span[0]["t_s"])))
    return {"load": result, "samples": samples,
            "rss_mb_first_last_max": [round(span[0]["rss_mb"], 1), round(span[-1]["rss_mb"], 1),
                                      round(max(s["rss_mb"] for s in span), 1)],
            "service_cpu_ms_per_request": round(cpu_ms_per_request, 3)}


def main() -> int:
    port = free_port()
    service = _start_service(port)
    report: dict[str, Any] = {
        "kind": "measured", "what": "the online dispatcher service with the zero-cost stand-in "
        "model (python -m infra.dispatcher, default plan), load from a separate process",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "slo_ms": SLO_MS}
    try:
        print(f"[bench] overhead at {OVERHEAD_RATE_RPS:g} req/s", flush=True)
        report["overhead"] = _load(port, OVERHEAD_RATE_RPS, 30.0)
        steps, best = [], None
        for rate in STEPS_RPS:
            print(f"[bench] step {rate:g} req/s", flush=True)
            result = _load(port, rate, STEP_S)
            steps.append(result)
            if not _sustained(result):
                break
            best = rate
        report["steps"] = steps
        report["highest_sustained_rps"] = best
        if best is not None:
            print(f"[bench] 3x = {3 * best:g} req/s", flush=True)
            report["overload_3x"] = _load(port, 3 * best, STEP_S)
            report["overload_3x"]["health_after"] = _health(port)
            print(f"[bench] hold {best:g} req/s for {HOLD_S:g} s", flush=True)
            report["hold"] = _hold(port, service.pid, best)
    finally:
        service.terminate()
        service.wait(timeout=60)
    OUT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    over = report["overhead"]
    print(f"overhead at {OVERHEAD_RATE_RPS:g} req/s: p50 {over['overhead_p50_ms']} ms, "
          f"p99 {over['overhead_p99_ms']} ms; highest sustained {best} req/s; wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
