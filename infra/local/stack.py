"""The embedded local stack: moto in server mode, the HTTP gateway, and the dispatcher.

The handlers run in-process (no Docker here) and reach moto, a server process on 127.0.0.1, through
the same boto3 calls they make on AWS: only AWS_ENDPOINT_URL differs.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any

import boto3

from buffers.gears import gears_from_plan
from buffers.plan import Plan
from buffers.policies import make_batch_policy
from buffers.types import ServiceTime
from infra.dispatcher.queue_dispatcher import Invoke, QueueDispatcher
from infra.local.dlq_poller import DeadLetterPoller
from infra.local.events import REGION, LocalLambdaContext
from infra.local.gateway import HttpGateway, Route
from infra.local.moto_process import MotoProcess

LOCAL_VISIBILITY_TIMEOUT_S = 60
LOCAL_RECEIVE_WAIT_S = 1  # the dispatcher's long poll here: stops within a second (moto is free)
MAX_RECEIVE_COUNT = 5  # redrive to the DLQ after five failed deliveries


@dataclass(frozen=True)
class StackResources:
    table_name: str
    queue_urls: dict[str, str]
    queue_arns: dict[str, str]
    dlq_urls: dict[str, str]
    dlq_arns: dict[str, str]
    bucket: str  # jobs' results (S3 output)


def _queue_arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]


def create_resources(plan: Plan, prefix: str, visibility_timeout_s: int,
                     max_receive_count: int = MAX_RECEIVE_COUNT) -> StackResources:
    """Create the results table and bucket and, per buffer, a queue and its DLQ (boto3)."""
    ddb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
    table = f"{prefix}-results"
    boto3.client("s3").create_bucket(Bucket=table)
    ddb.create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
    ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={
        "Enabled": True, "AttributeName": "expires_at_s"})
    urls, arns, dlqs, dlq_arns = {}, {}, {}, {}
    for spec in plan.buffers:
        dlq_url = sqs.create_queue(QueueName=f"{prefix}-{spec.name}-dlq")["QueueUrl"]
        dlq_arn = _queue_arn(sqs, dlq_url)
        url = sqs.create_queue(QueueName=f"{prefix}-{spec.name}", Attributes={
            "VisibilityTimeout": str(visibility_timeout_s),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                         "maxReceiveCount": max_receive_count}),
        })["QueueUrl"]
        urls[spec.name], dlqs[spec.name], dlq_arns[spec.name] = url, dlq_url, dlq_arn
        arns[spec.name] = _queue_arn(sqs, url)
    return StackResources(table, urls, arns, dlqs, dlq_arns, bucket=table)


class FunctionDied(RuntimeError):
    """An in-process function ended its process, which on AWS is a failed invoke."""


def contained(invoke: Invoke) -> Invoke:
    """`invoke` as Lambda runs it: whatever escapes the function reaches the caller as an error.

    On AWS a BaseException that is not an Exception (SystemExit, the fault injector's
    InjectedCrash) ends the function's process, and Invoke answers with an error; in process it
    would unwind the caller's thread instead, so it becomes FunctionDied here.
    """

    def run(buffer_name: str, event: dict[str, Any]) -> dict[str, Any]:
        try:
            return invoke(buffer_name, event)
        except Exception:
            raise
        except BaseException as exc:
            raise FunctionDied(f"mbs-infer-{buffer_name} died: {exc!r}") from exc

    return run


def _local_aws_env(endpoint: str) -> dict[str, str]:
    # Fixed fake credentials: the local stack must never reach a real AWS account.
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",  # nosec B105 - moto's placeholder, not a secret
            "AWS_SESSION_TOKEN": "testing"}  # nosec B105


def profile_predictor(policy_name: str) -> ServiceTime | None:
    """The deadline policy's batch-time prediction from the shipped profile (this machine's
    measured latency, not Lambda's); other policies need none."""
    if policy_name != "deadline":
        return None
    from optimizer.platform.latency_model import load_profile

    _, model = load_profile()
    return lambda batch, length, memory_mb: model.predict_ms(batch, length)


class LocalStack:
    """`with LocalStack(plan) as stack:` serves the plan at `stack.url` until the block ends."""

    def __init__(self, plan: Plan, port: int | None = 0, visibility_timeout_s: int =
                 LOCAL_VISIBILITY_TIMEOUT_S, log_level: str = "WARNING",
                 metrics: bool = False, max_receive_count: int = MAX_RECEIVE_COUNT,
                 extra_env: dict[str, str] | None = None, policy: str | None = None,
                 default_slo_ms: float | None = None) -> None:
        self.plan = plan
        self.policy_name = policy or plan.policy
        self.default_slo_ms = default_slo_ms
        self.port = port
        self.visibility_timeout_s = visibility_timeout_s
        self.max_receive_count = max_receive_count
        self.extra_env = extra_env or {}
        self.log_level = log_level
        self.metrics = metrics
        self.resources: StackResources | None = None
        self.dispatcher: QueueDispatcher | None = None
        self.dlq_poller: DeadLetterPoller | None = None
        self._moto: MotoProcess | None = None
        self._gateway: HttpGateway | None = None
        self._routes: list[Route] = []
        self._saved_env: dict[str, str | None] = {}

    @property
    def routes(self) -> list[Route]:
        """The bulk API's routes to its in-process handlers (for a server in front)."""
        if not self._routes:
            raise RuntimeError("the local stack is not started")
        return self._routes

    @property
    def url(self) -> str:
        if self._gateway is None:
            raise RuntimeError("the local stack is not started")
        return self._gateway.url

    @property
    def aws_endpoint_url(self) -> str:
        if self._moto is None:
            raise RuntimeError("the local stack is not started")
        return self._moto.endpoint

    def _set_env(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def start(self) -> LocalStack:
        make_batch_policy(self.policy_name, lambda b, n, m: 0.0)  # unknown names fail first
        self._moto = MotoProcess().start()
        self._set_env(_local_aws_env(self._moto.endpoint))
        self._set_env({"POWERTOOLS_LOG_LEVEL": self.log_level,
                       "POWERTOOLS_METRICS_DISABLED": "false" if self.metrics else "true",
                       "POWERTOOLS_SERVICE_NAME": "mbs"})
        self.resources = create_resources(self.plan, f"mbs-{uuid.uuid4().hex[:8]}",
                                          self.visibility_timeout_s, self.max_receive_count)
        self._set_env({"MBS_TABLE_NAME": self.resources.table_name,
                       "MBS_QUEUE_URLS": json.dumps(self.resources.queue_urls),
                       "MBS_PLAN_JSON": json.dumps(self.plan.to_dict()),
                       "MBS_RESULTS_BUCKET": self.resources.bucket,
                       "MBS_TRUST_TENANT_HEADER": "1", **self.extra_env})
        self._open_handlers()
        return self

    def _open_handlers(self) -> None:
        from functions import dlq, infer, ingest, results
        from functions.shared import deps
        from functions.shared.model import ModelLoadError
        from infra.local.faults import FaultInjector, Faults, faults_from_env

        deps.reset()  # a cold start: settings and clients for this stack's endpoint
        faults = faults_from_env(os.environ)
        # Test machinery stays outside the functions: faults wrap their ports from here.
        injector = None if faults == Faults() else FaultInjector(faults)
        if injector is not None:
            deps.wrap_ports(injector)
        for module in (dlq, infer, ingest, results):
            module.logger.setLevel(self.log_level)
        try:
            # Load the model and run one pass now: torch's first forward pass in a process is
            # several times slower (lazy initialisation), and the first real batch must not pay.
            deps.embedder().embed(["warm up"])
        except ModelLoadError as exc:
            # Serve anyway: every batch fails and is retried, then dead-lettered as FAILED
            # with this reason, as a Lambda whose model cannot load would behave.
            logging.getLogger("mbs").error("model failed to load: %s", exc)
        memory = {s.name: s.memory_mb for s in self.plan.buffers}

        def invoke(buffer_name: str, event: dict[str, Any]) -> dict[str, Any]:
            context = LocalLambdaContext(function_name=f"mbs-infer-{buffer_name}",
                                         memory_limit_in_mb=memory[buffer_name])
            return infer.handler(event, context)

        if injector is not None:
            invoke = injector.invocation(invoke)
        self._invoke_infer = contained(invoke)
        self.dispatcher = self._new_dispatcher()
        self.dispatcher.start()
        self.dlq_poller = DeadLetterPoller(
            boto3.client("sqs"), self.resources.dlq_urls, self.resources.dlq_arns,
            lambda event: dlq.handler(event, LocalLambdaContext(function_name="mbs-dlq")))
        self.dlq_poller.start()
        self._routes = [
            Route("POST", "/v1/requests", "mbs-ingest", ingest.handler),
            Route("GET", "/v1/requests/{id}", "mbs-results", results.handler),
            Route("GET", "/v1/requests", "mbs-results", results.handler),
            Route("GET", "/v1/jobs/{id}", "mbs-results", results.handler),
        ]
        if self.port is not None:  # None: a server in front serves self.routes instead
            self._gateway = HttpGateway(self._routes, port=self.port)
            self._gateway.start()

    def _new_dispatcher(self) -> QueueDispatcher:
        if self.resources is None:
            raise RuntimeError("the local stack is not started")
        predictor = profile_predictor(self.policy_name)
        # A plan made by `mbs optimize --gears` carries its gears in meta["gears"]: the
        # dispatcher then switches between them on the measured arrival rate.
        return QueueDispatcher(self.plan, boto3.client("sqs"), self.resources.queue_urls,
                               self.resources.queue_arns, self._invoke_infer,
                               policy=make_batch_policy(self.policy_name, predictor),
                               predict_ms=predictor, default_slo_ms=self.default_slo_ms,
                               gears=gears_from_plan(self.plan),
                               visibility_timeout_s=self.visibility_timeout_s,
                               receive_wait_s=LOCAL_RECEIVE_WAIT_S)

    def restart_dispatcher(self) -> None:
        """Kill the dispatcher without draining (its buffered messages stay in flight in SQS)
        and start a fresh one, as after a crash of the long-running dispatcher."""
        if self.dispatcher is not None:
            self.dispatcher.stop(drain=False)
        self.dispatcher = self._new_dispatcher()
        self.dispatcher.start()

    def stop(self, drain: bool = True) -> None:
        """Stop taking requests, finish buffered batches, then shut moto down."""
        if self._gateway is not None:
            self._gateway.stop()
        if self.dispatcher is not None:
            self.dispatcher.stop(drain=drain)
        if self.dlq_poller is not None:
            self.dlq_poller.stop()
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        from functions.shared import deps

        deps.reset()  # forgets the clients and any fault wrappers

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
