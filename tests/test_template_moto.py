"""The SAM transform's CloudFormation, created as a stack in moto, holds what the plan says.

moto's CloudFormation cannot create API Gateway v2 resources (the VPC link included), CloudWatch
alarms, Cloud Map namespaces and services, or Application Auto Scaling targets and policies;
those, and what refers to them (the Lambda permissions, the dashboard, and the ECS service,
whose ServiceRegistries name the Cloud Map service), are left out of the moto stack and checked
in the transformed template instead (here and in tests/test_template_online.py). One test
creates the ECS service without its ServiceRegistries, so that moto checks the rest of it. moto
never pulls an image: its Lambda and ECS stub ECR, so functions and tasks are created from the
image URI alone.
"""

from __future__ import annotations

import ast
import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.cloudformation.parsing import get_model_map

from buffers.plan import DispatchMode, Plan
from buffers.plan_files import plan_from_dict
from infra.aws.apply import FullDeployNeeded, execute, plan_actions, read_stack
from infra.aws.render import REPO_ROOT, build_template, plan_env_json
from infra.aws.template.buffers import BufferIds, esm_settings, visibility_timeout_s
from infra.aws.template.common import DISPATCHER_PORT, EMBED_HANDLER, RenderOptions, logical_suffix
from infra.aws.template.online import EMBED_TIMEOUT_S, EmbedIds
from tests.support.sam_offline import (
    FAKE_CODE_URI,
    FAKE_IMAGE_URI,
    MANAGED_POLICIES,
    moto_subset,
    sam_transform,
)
from tests.test_render import VARIED_PLAN, shipped, varied_plan

NOT_IN_MOTO = {"AWS::ApiGatewayV2::Api", "AWS::ApiGatewayV2::Stage", "AWS::ApiGatewayV2::Route",
               "AWS::ApiGatewayV2::Integration", "AWS::ApiGatewayV2::Authorizer",
               "AWS::CloudWatch::Alarm", "AWS::Lambda::Permission", "AWS::CloudWatch::Dashboard",
               "AWS::ApiGatewayV2::VpcLink", "AWS::ServiceDiscovery::PrivateDnsNamespace",
               "AWS::ServiceDiscovery::Service", "AWS::ApplicationAutoScaling::ScalableTarget",
               "AWS::ApplicationAutoScaling::ScalingPolicy", "AWS::S3::BucketPolicy"}
# moto creates ECS services, but this one names the Cloud Map service (ServiceRegistries).
DROPPED_AS_DEPENDANTS = {"AWS::ECS::Service"}
DISPATCHER_IMAGE = {"DispatcherImageRepository": "mbs-dispatcher",
                    "DispatcherImageTag": "d-0123456789ab"}
TIMEOUT_S = 60
SQS_POLLER = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:DeleteMessageBatch",
              "sqs:ChangeMessageVisibility", "sqs:ChangeMessageVisibilityBatch",
              "sqs:GetQueueAttributes"}


@dataclass
class MotoStack:
    plan: Plan
    cfn: dict[str, Any]  # the transformed template
    dropped: set[str]
    resources: dict[str, str]  # logical id -> physical id
    outputs: dict[str, str]


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for key, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield


def create_stack(plan: Plan, parameters: dict[str, str] | None = None,
                 name: str = "mbs", without_registries: bool = False) -> MotoStack:
    """Transform the plan's template and create it as a moto CloudFormation stack.

    `without_registries` drops the ECS service's ServiceRegistries (the Cloud Map service moto
    cannot create), so that moto creates the service itself.
    """
    cfn = sam_transform(build_template(plan, RenderOptions(infer_timeout_s=TIMEOUT_S)))
    if without_registries:
        cfn["Resources"]["DispatcherService"]["Properties"].pop("ServiceRegistries")
    loadable, dropped = moto_subset(cfn, set(get_model_map()))
    s3 = boto3.client("s3")
    bucket, key = FAKE_CODE_URI.removeprefix("s3://").split("/", 1)
    s3.create_bucket(Bucket=bucket)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("functions/__init__.py", "")
    s3.put_object(Bucket=bucket, Key=key, Body=archive.getvalue())
    cf = boto3.client("cloudformation")
    cf.create_stack(StackName=name, TemplateBody=json.dumps(loadable),
                    Capabilities=["CAPABILITY_IAM"],
                    Parameters=[{"ParameterKey": k, "ParameterValue": v}
                                for k, v in (parameters or {}).items()])
    stack = cf.describe_stacks(StackName=name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    resources = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                 for r in cf.describe_stack_resources(StackName=name)["StackResources"]
                 if "LogicalResourceId" in r}  # moto lists false-Condition resources bare
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return MotoStack(plan, cfn, dropped, resources, outputs)


def _check_buffer(stack: MotoStack, spec: Any) -> None:
    lam, sqs = boto3.client("lambda"), boto3.client("sqs")
    ids = BufferIds.of(logical_suffix(spec.name))
    esm = esm_settings(spec)
    # Queue and DLQ: redrive, visibility 6 x timeout + window, retention, SSE.
    attrs = sqs.get_queue_attributes(QueueUrl=stack.resources[ids.queue],
                                     AttributeNames=["All"])["Attributes"]
    dlq = sqs.get_queue_attributes(QueueUrl=stack.resources[ids.dlq],
                                   AttributeNames=["All"])["Attributes"]
    assert json.loads(attrs["RedrivePolicy"]) == {"deadLetterTargetArn": dlq["QueueArn"],
                                                  "maxReceiveCount": 5}
    assert int(attrs["VisibilityTimeout"]) == 6 * TIMEOUT_S + esm.window_s
    assert attrs["SqsManagedSseEnabled"] == dlq["SqsManagedSseEnabled"] == "true"
    assert int(dlq["MessageRetentionPeriod"]) > int(attrs["MessageRetentionPeriod"])
    # The infer function: the buffer's memory, the image, the environment settings.py reads.
    fn = lam.get_function(FunctionName=stack.resources[ids.function])
    assert fn["Configuration"]["MemorySize"] == spec.memory_mb
    assert fn["Configuration"]["Timeout"] == TIMEOUT_S
    assert fn["Code"]["ImageUri"] == FAKE_IMAGE_URI
    env = fn["Configuration"]["Environment"]["Variables"]
    assert json.loads(env["MBS_QUEUE_URLS"])[spec.name] == stack.resources[ids.queue]
    assert plan_from_dict(json.loads(env["MBS_PLAN_JSON"])) == stack.plan
    # Dead letters go to the DLQ consumer, which marks their requests FAILED.
    dead = lam.list_event_source_mappings(EventSourceArn=dlq["QueueArn"])["EventSourceMappings"]
    assert [m["FunctionArn"].split(":")[-1] for m in dead] == [stack.resources["DlqFunction"]]
    assert dead[0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert int(dlq["VisibilityTimeout"]) >= 6 * lam.get_function_configuration(
        FunctionName=stack.resources["DlqFunction"])["Timeout"]
    # The event source mapping: the plan's batching, partial batch responses.
    mappings = lam.list_event_source_mappings(EventSourceArn=attrs["QueueArn"])
    found = mappings["EventSourceMappings"]
    assert len(found) == 1
    mapping = found[0]
    assert mapping["UUID"] == stack.resources[ids.mapping]
    assert mapping["FunctionArn"] == fn["Configuration"]["FunctionArn"]
    assert mapping["BatchSize"] == esm.batch_size
    assert mapping["MaximumBatchingWindowInSeconds"] == esm.window_s
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": esm.max_concurrency}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


@pytest.mark.parametrize("plan_name", ["batch", "varied", "default", "managed"])
def test_moto_stack_holds_the_plans_resources(aws_env: None, plan_name: str) -> None:
    plan = varied_plan() if plan_name == "varied" else shipped(plan_name)
    stack = create_stack(plan)
    for spec in plan.buffers:
        _check_buffer(stack, spec)
    table = boto3.client("dynamodb").describe_table(TableName=stack.resources["ResultsTable"])
    assert table["Table"]["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["Table"]["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    lam = boto3.client("lambda")
    for name, handler in (("IngestFunction", "functions.ingest.handler"),
                          ("ResultsFunction", "functions.results.handler")):
        config = lam.get_function_configuration(FunctionName=stack.resources[name])
        assert (config["Handler"], config["Runtime"]) == (handler, "python3.12")
        assert config["Environment"]["Variables"]["MBS_TABLE_NAME"] == stack.resources[
            "ResultsTable"]
    assert stack.outputs["ResultsTableName"] == stack.resources["ResultsTable"]
    # Only what moto cannot create was left out of the moto stack.
    assert {stack.cfn["Resources"][k]["Type"] for k in stack.dropped} == (
        NOT_IN_MOTO | DROPPED_AS_DEPENDANTS)
    # Without a dispatcher image, the stack has no online path at all.
    assert not {k for k in stack.resources if k.startswith(("Embed", "Dispatcher", "Vpc"))}


def test_every_dispatcher_mode_queue_has_a_consumer(aws_env: None) -> None:
    # The removed DispatcherBuffers=Off left these queues with no consumer: messages expired
    # after 4 days, never reached the DLQ, and ingest kept answering 202.
    plan = shipped("default")
    assert all(b.dispatch_mode is DispatchMode.DISPATCHER for b in plan.buffers)
    stack = create_stack(plan)
    assert "DispatcherBuffers" not in stack.cfn["Parameters"]
    for spec in plan.buffers:
        _check_buffer(stack, spec)


def test_transformed_template_keeps_what_moto_cannot_check() -> None:
    cfn = sam_transform(build_template(varied_plan()))
    res = cfn["Resources"]
    # TTL and encryption of the table (moto's CloudFormation ignores both).
    table = res["ResultsTable"]["Properties"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at_s", "Enabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}
    # Infer functions are container images (moto's CloudFormation drops PackageType).
    for spec in varied_plan().buffers:
        fn = res[BufferIds.of(logical_suffix(spec.name)).function]["Properties"]
        assert fn["PackageType"] == "Image" and fn["Code"] == {"ImageUri": FAKE_IMAGE_URI}
        assert fn["ImageConfig"] == {"Command": ["functions.infer.handler"]}
    # The routes reach the right functions through the right integrations.
    for prefix, key in (("Ingest", "POST /v1/requests"), ("Results", "GET /v1/requests/{id}")):
        assert res[f"{prefix}Route"]["Properties"]["RouteKey"] == key
        assert res[f"{prefix}Integration"]["Properties"]["IntegrationUri"] == {
            "Fn::GetAtt": [f"{prefix}Function", "Arn"]}
        assert res[f"{prefix}ApiPermission"]["Properties"]["SourceArn"]["Fn::Sub"].endswith(
            key.split(" ")[1].replace("{id}", "*"))


def test_moto_stack_with_a_dispatcher_image_runs_the_online_path(aws_env: None) -> None:
    # GIVEN the default plan deployed with a dispatcher image
    plan = shipped("default")
    stack = create_stack(plan, DISPATCHER_IMAGE)
    lam, iam, ec2 = boto3.client("lambda"), boto3.client("iam"), boto3.client("ec2")
    # THEN each buffer has an online infer function with its memory and the online timeout
    embed = {}
    for spec in plan.buffers:
        name = stack.resources[EmbedIds.of(logical_suffix(spec.name)).function]
        config = lam.get_function_configuration(FunctionName=name)
        assert (config["MemorySize"], config["Timeout"]) == (spec.memory_mb, EMBED_TIMEOUT_S)
        embed[spec.name] = config
    # AND the task definition names exactly those functions, the plan and the pushed image
    ecs = boto3.client("ecs")
    task = ecs.describe_task_definition(
        taskDefinition=stack.resources["DispatcherTaskDefinition"])["taskDefinition"]
    (container,) = task["containerDefinitions"]
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert json.loads(env["MBS_INFER_FUNCTIONS"]) == {
        name: config["FunctionName"] for name, config in embed.items()}
    assert plan_from_dict(json.loads(env["MBS_PLAN"])) == plan
    assert container["image"] == ("123456789012.dkr.ecr.us-east-1.amazonaws.com/"
                                  "mbs-dispatcher:d-0123456789ab")
    assert container["logConfiguration"]["options"]["awslogs-group"] == stack.resources[
        "DispatcherLogGroup"]
    assert container["healthCheck"]["command"][-1].endswith(
        f"'http://127.0.0.1:{DISPATCHER_PORT}/healthz', timeout=3)")
    assert container["restartPolicy"]["enabled"] is True
    # AND the task role may invoke those functions and nothing else
    role = stack.resources["DispatcherTaskRole"]
    (policy,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]
    # moto returns the inline policy of a CloudFormation role as the repr of a dict
    document = document if isinstance(document, dict) else ast.literal_eval(document)
    assert document["Statement"] == [{
        "Effect": "Allow", "Action": ["lambda:InvokeFunction"],
        "Resource": [embed[b.name]["FunctionArn"] for b in plan.buffers]}]
    # AND the tasks admit only the VPC link's security group, in two public subnets of two AZs
    (group,) = ec2.describe_security_groups(
        GroupIds=[stack.resources["DispatcherSecurityGroup"]])["SecurityGroups"]
    assert [(p["FromPort"], [g["GroupId"] for g in p["UserIdGroupPairs"]], p["IpRanges"])
            for p in group["IpPermissions"]] == [
        (DISPATCHER_PORT, [stack.resources["VpcLinkSecurityGroup"]], [])]
    subnets = ec2.describe_subnets(SubnetIds=[stack.resources["PublicSubnetA"],
                                              stack.resources["PublicSubnetB"]])["Subnets"]
    assert len({s["AvailabilityZone"] for s in subnets}) == 2
    assert {s["VpcId"] for s in subnets} == {stack.resources["Vpc"]}
    (table,) = ec2.describe_route_tables(
        RouteTableIds=[stack.resources["PublicRouteTable"]])["RouteTables"]
    assert {r.get("GatewayId") for r in table["Routes"]
            if r.get("DestinationCidrBlock") == "0.0.0.0/0"} == {stack.resources["InternetGateway"]}
    assert stack.outputs["DispatcherLogGroupName"] == stack.resources["DispatcherLogGroup"]


def test_moto_creates_the_ecs_service_on_the_task_definition(aws_env: None) -> None:
    stack = create_stack(shipped("batch"), DISPATCHER_IMAGE, without_registries=True)
    ecs = boto3.client("ecs")
    (service,) = ecs.describe_services(cluster=stack.resources["DispatcherCluster"],
                                       services=[stack.resources["DispatcherService"]])[
        "services"]
    assert service["status"] == "ACTIVE"
    assert service["taskDefinition"] == stack.resources["DispatcherTaskDefinition"]
    assert stack.outputs["DispatcherServiceName"] == service["serviceName"]


def test_transformed_template_keeps_the_online_path_moto_cannot_check() -> None:
    cfn = sam_transform(build_template(varied_plan()), DISPATCHER_IMAGE)
    res = cfn["Resources"]
    for spec in varied_plan().buffers:
        fn = res[EmbedIds.of(logical_suffix(spec.name)).function]
        assert fn["Condition"] == "HasDispatcher"
        assert fn["Properties"]["PackageType"] == "Image"
        assert fn["Properties"]["Code"] == {"ImageUri": FAKE_IMAGE_URI}
        assert fn["Properties"]["ImageConfig"] == {"Command": [EMBED_HANDLER]}
    # moto's CloudFormation does not associate route tables: both subnets route to the gateway.
    for subnet in ("PublicSubnetA", "PublicSubnetB"):
        assert res[f"{subnet}Routes"]["Properties"] == {"SubnetId": {"Ref": subnet},
                                                        "RouteTableId": {"Ref": "PublicRouteTable"}}
    assert res["EmbeddingsRoute"]["Properties"]["RouteKey"] == "POST /v1/embeddings"
    assert res["EmbeddingsIntegration"]["Properties"]["ConnectionId"] == {"Ref": "VpcLink"}
    assert res["DispatcherScalingPolicy"]["Properties"]["ScalingTargetId"] == {
        "Ref": "DispatcherScalableTarget"}
    assert res["DispatcherService"]["Properties"]["ServiceRegistries"][0]["RegistryArn"] == {
        "Fn::GetAtt": ["DispatcherDiscovery", "Arn"]}


def _statements(cfn: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for logical, resource in cfn["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role":
            out[logical] = [s for p in resource["Properties"].get("Policies", [])
                            for s in p["PolicyDocument"]["Statement"]]
    return out


def test_iam_is_least_privilege_with_no_wildcard_actions_or_resources() -> None:
    cfn = sam_transform(build_template(varied_plan()))
    roles = _statements(cfn)
    expected = {"IngestFunctionRole": {"dynamodb:PutItem", "dynamodb:BatchWriteItem",
                                       "dynamodb:UpdateItem", "dynamodb:GetItem",
                                       "sqs:SendMessage", "sqs:GetQueueAttributes",
                                       "s3:PutObject"},
                "ResultsFunctionRole": {"dynamodb:GetItem", "dynamodb:BatchGetItem",
                                        "s3:PutObject", "s3:GetObject"},
                "DlqFunctionRole": {"dynamodb:GetItem", "dynamodb:UpdateItem", "s3:PutObject",
                                    "s3:GetObject", *SQS_POLLER}}
    for spec in varied_plan().buffers:
        expected[f"{BufferIds.of(logical_suffix(spec.name)).function}Role"] = {
            "dynamodb:UpdateItem", "dynamodb:GetItem", "s3:PutObject", *SQS_POLLER}
        expected[f"{EmbedIds.of(logical_suffix(spec.name)).function}Role"] = set()
    # The dispatcher: ECS pulls its image and ships its logs; the task invokes the online infer.
    expected["DispatcherExecutionRole"] = {
        "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability",
        "ecr:GetAuthorizationToken", "logs:CreateLogStream", "logs:PutLogEvents"}
    expected["DispatcherTaskRole"] = {"lambda:InvokeFunction"}
    # ECR's GetAuthorizationToken takes no resource but "*" (ECR service authorization reference).
    unscoped = {("DispatcherExecutionRole", "ecr:GetAuthorizationToken")}
    # Job objects get keys at run time: the grant is the bucket's jobs/ prefix, S3's finest scope
    # for them (an object ARN ending in a key prefix and "*").
    key_prefix = {"Fn::Sub": "${ResultsBucket.Arn}/jobs/*"}
    assert set(roles) == set(expected)
    for role, statements in roles.items():
        actions = {a for s in statements for a in
                   (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
        assert actions == expected[role], role
        assert not any("*" in a for a in actions), role
        for statement in statements:
            if {(role, a) for a in statement["Action"]} <= unscoped:
                continue
            resources = statement["Resource"]
            for resource in resources if isinstance(resources, list) else [resources]:
                if resource == key_prefix:  # the jobs/ prefix: parts, lines, the object
                    continue
                assert resource != "*" and "*" not in json.dumps(resource), (role, resource)
        managed = cfn["Resources"][role]["Properties"].get("ManagedPolicyArns", [])
        if role.startswith("Dispatcher"):
            assert managed == [], role  # inline statements only, no AWS managed policy
            continue
        # The one AWS managed policy: CloudWatch Logs for the function's own log stream.
        assert managed == [MANAGED_POLICIES["AWSLambdaBasicExecutionRole"]], role


def _boto_calls() -> set[str]:
    """IAM actions of the boto3 calls in functions/ (`self._ddb.put_item` -> dynamodb:PutItem)."""
    services = {"_ddb": "dynamodb", "_sqs": "sqs"}
    # SendMessageBatch is authorized by sqs:SendMessage (SQS API reference: a batch action's
    # permissions are those of the single action).
    batch_actions = {"sqs:SendMessageBatch": "sqs:SendMessage"}
    found = set()
    for path in (REPO_ROOT / "functions").rglob("*.py"):
        for client, method in re.findall(r"self\.(_ddb|_sqs)\.([a-z_]+)\(", path.read_text()):
            action = f"{services[client]}:" + "".join(w.title() for w in method.split("_"))
            found.add(batch_actions.get(action, action))
    return found


def test_every_aws_call_in_the_functions_is_granted() -> None:
    # moto's IAM enforcement matches DynamoDB requests against resource "*", so resource-scoped
    # grants cannot be proven by running the handlers as their roles; the calls are read instead.
    granted = {a for statements in _statements(sam_transform(build_template(varied_plan())))
               .values() for s in statements for a in s["Action"]}
    calls = _boto_calls()
    assert {"dynamodb:PutItem", "sqs:SendMessage"} <= calls
    assert calls <= granted, f"not granted to any function: {calls - granted}"


def _changed_plan() -> Plan:
    raw = json.loads(json.dumps(VARIED_PLAN))
    raw["buffers"][0].update(memory_mb=1536, max_batch_size=128, timeout_ms=4000)
    raw["buffers"][1].update(max_length=40, max_concurrency=6)
    raw["buffers"][2].update(min_length=41, memory_mb=2048)
    return plan_from_dict(raw)


def test_apply_updates_mappings_memory_and_plan_in_place(aws_env: None) -> None:
    # GIVEN a stack deployed with the varied plan
    create_stack(varied_plan())
    lam, sqs, cfn = boto3.client("lambda"), boto3.client("sqs"), boto3.client("cloudformation")
    new = _changed_plan()
    # WHEN the changed plan is applied
    actions = plan_actions(read_stack("mbs", cfn, lam, sqs), new)
    assert {a.api for a in actions} == {"lambda.update_function_configuration",
                                        "lambda.update_event_source_mapping",
                                        "sqs.set_queue_attributes"}
    execute(actions, lam, sqs)
    # THEN the stack runs the new plan, and a second apply finds nothing to do
    after = read_stack("mbs", cfn, lam, sqs)
    assert after.plan == new
    for spec in new.buffers:
        ids = BufferIds.of(logical_suffix(spec.name))
        config = after.functions[after.resources[ids.function]]
        assert config["MemorySize"] == spec.memory_mb
        esm = esm_settings(spec)
        mapping = after.mappings[after.resources[ids.mapping]]
        assert (mapping["BatchSize"], mapping["MaximumBatchingWindowInSeconds"],
                mapping["ScalingConfig"]) == (esm.batch_size, esm.window_s,
                                              {"MaximumConcurrency": esm.max_concurrency})
        assert after.visibility_s[after.resources[ids.queue]] == visibility_timeout_s(
            TIMEOUT_S, esm.window_s)
    for config in after.functions.values():
        assert config["Environment"]["MBS_PLAN_JSON"] == plan_env_json(new)
        assert "MBS_QUEUE_URLS" in config["Environment"]  # the other variables are kept
    assert plan_actions(after, new) == []


def test_apply_refuses_what_needs_a_full_deploy(aws_env: None) -> None:
    create_stack(varied_plan())
    stack = read_stack("mbs", boto3.client("cloudformation"), boto3.client("lambda"),
                       boto3.client("sqs"))
    renamed = json.loads(json.dumps(VARIED_PLAN))
    renamed["buffers"][3]["name"] = "huge"
    with pytest.raises(FullDeployNeeded, match="buffers change"):
        plan_actions(stack, plan_from_dict(renamed))
    remoded = json.loads(json.dumps(VARIED_PLAN))
    remoded["buffers"][0]["dispatch_mode"] = "dispatcher"
    with pytest.raises(FullDeployNeeded, match="dispatch mode"):
        plan_actions(stack, plan_from_dict(remoded))


def test_apply_leaves_the_online_path_to_a_full_deploy(aws_env: None) -> None:
    create_stack(varied_plan(), DISPATCHER_IMAGE)
    stack = read_stack("mbs", boto3.client("cloudformation"), boto3.client("lambda"),
                       boto3.client("sqs"))
    assert plan_actions(stack, varied_plan()) == []  # the same plan: nothing to do
    with pytest.raises(FullDeployNeeded, match="dispatcher holds plan 'varied'"):
        plan_actions(stack, _changed_plan())
