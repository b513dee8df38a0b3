"""`mbs smoke --url URL`: a few real requests to a deployed stack's POST /v1/embeddings.

Texts of four lengths go out as single inputs and as one list per round, several calls at once
so that batches can form. Each call is signed as the stack's AuthMode wants: SigV4 for IAM
(service execute-api, the caller's AWS credentials), a bearer token for JWT, nothing for NONE.
The report gives the round-trip latency of the calls and, per buffer, the batch sizes, padded
lengths and queue waits that the dispatcher returns beside the embeddings (the response's
`mbs.inputs`, which OpenAI clients ignore).
"""

from __future__ import annotations

import json
import re
import statistics
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

EMBEDDINGS_PATH = "/v1/embeddings"
# The dispatcher's figures sit beside OpenAI's fields, where its clients ignore them: the
# response's "mbs" object holds "inputs", one entry per input with its buffer, batch size,
# padded length and queue wait.
EXTRAS_KEY = "mbs"
SERVED_MODEL = "all-MiniLM-L6-v2"
AUTH_MODES = ("iam", "jwt", "none")
# One sentence repeated: 14, 50, 98 and 290 tokens with all-MiniLM-L6-v2's tokenizer (the last
# truncated to 256), one text for each of the default plan's buffers (1-32, 33-64, 65-128,
# 129-256).
_SENTENCE = "Multi-buffer serving batches requests of similar length together."
SMOKE_TEXTS = tuple(" ".join([_SENTENCE] * n) for n in (1, 4, 8, 24))
_API_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")


class SmokeError(ValueError):
    """A smoke run that cannot start: a bad URL, auth mode or missing credentials."""


@dataclass(frozen=True)
class CallResult:
    """One POST: how many inputs, the HTTP status, the round trip, and the error if any."""

    inputs: int
    status: int
    latency_ms: float
    error: str | None = None
    items: list[dict[str, Any]] = field(default_factory=list)  # each input's MBS extras


@dataclass(frozen=True)
class BufferFigures:
    """What the dispatcher reported for the inputs one buffer served."""

    inputs: int
    batch_sizes: list[int]
    padded_lengths: list[int]
    queue_wait_ms: list[float]


@dataclass(frozen=True)
class SmokeReport:
    endpoint: str
    calls: list[CallResult]
    buffers: dict[str, BufferFigures]

    @property
    def ok(self) -> bool:
        return bool(self.calls) and all(c.error is None for c in self.calls)

    def latency_ms(self) -> dict[str, float]:
        values = sorted(c.latency_ms for c in self.calls if c.error is None)
        if not values:
            return {}
        p99_index = min(len(values) - 1, round(0.99 * (len(values) - 1)))
        return {"p50": statistics.median(values), "p99": values[p99_index], "max": values[-1]}

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "ok": self.ok, "latency_ms": self.latency_ms(),
                "calls": [{k: v for k, v in asdict(c).items() if k != "items"}
                          for c in self.calls],
                "buffers": {name: asdict(f) for name, f in self.buffers.items()}}


def endpoint_of(url: str) -> str:
    """The API's base URL (stack output ApiUrl) or the endpoint itself -> the endpoint."""
    if not url.startswith(("https://", "http://")):
        raise SmokeError(f"--url must be an http(s) URL, got {url!r}")
    base = url.rstrip("/")
    return base if base.endswith(EMBEDDINGS_PATH) else base + EMBEDDINGS_PATH


def region_of(endpoint: str, region: str | None) -> str:
    """The region to sign for: given, or read from an execute-api host name."""
    if region:
        return region
    host = urllib.parse.urlsplit(endpoint).hostname or ""
    match = _API_HOST.search(host)
    if match is None:
        raise SmokeError(f"cannot tell the AWS region from host {host!r}; pass --region")
    return match.group(1)


def _headers(endpoint: str, body: bytes, auth: str, token: str | None,
             region: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if auth == "jwt":
        if not token:
            raise SmokeError("auth jwt needs a token (--token or MBS_API_TOKEN)")
        return {**headers, "Authorization": f"Bearer {token}"}
    if auth == "none":
        return headers
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    credentials = boto3.session.Session().get_credentials()
    if credentials is None:
        raise SmokeError("auth iam needs AWS credentials (environment, profile or role)")
    request = AWSRequest(method="POST", url=endpoint, data=body, headers=headers)
    SigV4Auth(credentials.get_frozen_credentials(), "execute-api",
              region_of(endpoint, region)).add_auth(request)
    return dict(request.headers.items())


def _error_message(status: int, raw: bytes) -> str:
    try:
        error = json.loads(raw)["error"]
        return f"{status} {error.get('type')}: {error.get('message')}"
    except (ValueError, KeyError, TypeError):
        return f"{status}: {raw[:200].decode('utf-8', 'replace')}"


def _check(payload: Any, texts: list[str]) -> list[dict[str, Any]]:
    """The response's extras per input; ValueError if it is not the embeddings of `texts`."""
    data = payload["data"]
    if [item["index"] for item in data] != list(range(len(texts))):
        raise ValueError(f"data indexes {[item['index'] for item in data]} do not follow the "
                         f"{len(texts)} inputs")
    for item in data:
        vector = item["embedding"]
        if not vector or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                 for x in vector):
            raise ValueError(f"input {item['index']}: the embedding is not a list of floats")
    extras = (payload.get(EXTRAS_KEY) or {}).get("inputs") or []
    by_index = {entry.get("index"): entry for entry in extras}
    return [by_index.get(item["index"], {}) for item in data]


def call(endpoint: str, texts: list[str], auth: str, token: str | None = None,
         region: str | None = None, timeout_s: float = 30.0,
         model: str = SERVED_MODEL) -> CallResult:
    """POST one request (a string, or a list when several texts) and time the round trip."""
    body = json.dumps({"input": texts[0] if len(texts) == 1 else texts,
                       "model": model}).encode()
    request = urllib.request.Request(endpoint, data=body, method="POST",
                                     headers=_headers(endpoint, body, auth, token, region))
    started = time.perf_counter()
    try:
        # The URL is the user's own stack endpoint (http or https), checked by endpoint_of.
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # nosec B310
            raw, status = response.read(), response.status
    except urllib.error.HTTPError as exc:
        latency_ms = (time.perf_counter() - started) * 1000
        return CallResult(len(texts), exc.code, latency_ms, _error_message(exc.code, exc.read()))
    except (urllib.error.URLError, TimeoutError) as exc:
        return CallResult(len(texts), 0, (time.perf_counter() - started) * 1000, repr(exc))
    latency_ms = (time.perf_counter() - started) * 1000
    try:
        items = _check(json.loads(raw), texts)
    except (ValueError, KeyError, TypeError) as exc:
        return CallResult(len(texts), status, latency_ms, f"bad response: {exc}")
    return CallResult(len(texts), status, latency_ms, None, items)


def _by_buffer(calls: list[CallResult]) -> dict[str, BufferFigures]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for result in calls:
        for extras in result.items:
            groups[str(extras.get("buffer", "?"))].append(extras)
    return {name: BufferFigures(
        inputs=len(items),
        batch_sizes=[int(x["batch_size"]) for x in items if "batch_size" in x],
        padded_lengths=[int(x["padded_length"]) for x in items if "padded_length" in x],
        queue_wait_ms=[float(x["queue_wait_ms"]) for x in items if "queue_wait_ms" in x])
        for name, items in sorted(groups.items())}


def run_smoke(url: str, auth: str = "iam", token: str | None = None, region: str | None = None,
              rounds: int = 3, concurrency: int = 4, timeout_s: float = 30.0,
              model: str = SERVED_MODEL) -> SmokeReport:
    """Send `rounds` x (each text alone, then all texts as one list), `concurrency` at a time.

    Parameters
    ----------
    url: the stack's ApiUrl or EmbeddingsEndpoint output.
    auth: iam (SigV4 with the caller's AWS credentials), jwt (bearer `token`) or none.
    region: the region to sign for (iam); read from an execute-api URL when not given.

    Returns
    -------
    SmokeReport: every call's status and latency, and the MBS extras grouped by buffer.
    """
    if auth not in AUTH_MODES:
        raise SmokeError(f"auth must be one of {list(AUTH_MODES)}, got {auth!r}")
    if rounds < 1 or concurrency < 1:
        raise SmokeError(f"rounds and concurrency must be >= 1, got {rounds} and {concurrency}")
    endpoint = endpoint_of(url)
    if auth == "iam":
        region_of(endpoint, region)  # fail before sending anything
    batches = [[text] for text in SMOKE_TEXTS] + [list(SMOKE_TEXTS)]
    work = [texts for _ in range(rounds) for texts in batches]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        calls = list(pool.map(lambda texts: call(endpoint, texts, auth, token, region,
                                                 timeout_s, model), work))
    return SmokeReport(endpoint=endpoint, calls=calls, buffers=_by_buffer(calls))


def _summary(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{min(values):g}/{statistics.mean(values):.1f}/{max(values):g}"


def format_smoke(report: SmokeReport) -> str:
    """The report as text: calls and latency, then one line per buffer."""
    ok = sum(1 for c in report.calls if c.error is None)
    lines = [f"POST {report.endpoint}: {ok}/{len(report.calls)} calls answered 200"]
    latency = report.latency_ms()
    if latency:
        lines.append("latency ms (round trip): " + ", ".join(
            f"{k} {v:.0f}" for k, v in latency.items()))
    lines.append(f"{'buffer':<10} {'inputs':>6}  batch size min/mean/max  padded length "
                 f"min/mean/max  queue wait ms min/mean/max")
    for name, figures in report.buffers.items():
        lines.append(f"{name:<10} {figures.inputs:>6}  {_summary(figures.batch_sizes):<23}  "
                     f"{_summary(figures.padded_lengths):<26}  "
                     f"{_summary(figures.queue_wait_ms)}")
    lines += [f"error: {c.error}" for c in report.calls if c.error is not None][:5]
    return "\n".join(lines)
