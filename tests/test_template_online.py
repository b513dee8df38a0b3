"""The online path in the rendered template: the dispatcher on Fargate, its ingress and IAM."""

from __future__ import annotations

import json
from typing import Any

import pytest

from buffers.plan import Plan
from infra.aws.render import DeployParams, build_template, parameters_json, plan_env_json
from infra.aws.template.buffers import BufferIds
from infra.aws.template.common import (
    DISPATCHER_CONDITION,
    DISPATCHER_PORT,
    EMBED_HANDLER,
    RenderError,
    RenderOptions,
    logical_suffix,
)
from infra.aws.template.dispatcher import CPU_TARGET_PERCENT, DISPATCHER_TASK_CAPACITY_RPS
from infra.aws.template.online import EMBED_TIMEOUT_S, EmbedIds
from infra.aws.template.shared import API_INTEGRATION_TIMEOUT_MS
from tests.test_render import PLANS, of_type, shipped, varied_plan


@pytest.fixture(params=sorted(PLANS))
def plan(request: pytest.FixtureRequest) -> Plan:
    return PLANS[request.param]()


def _res(template: dict[str, Any], logical: str) -> dict[str, Any]:
    return template["Resources"][logical]["Properties"]


def _container(template: dict[str, Any]) -> dict[str, Any]:
    (container,) = _res(template, "DispatcherTaskDefinition")["ContainerDefinitions"]
    return container


def test_the_online_path_exists_only_with_a_dispatcher_image(plan: Plan) -> None:
    template = build_template(plan)
    online = {k for k, r in template["Resources"].items()
              if r.get("Condition") == DISPATCHER_CONDITION}
    assert {"DispatcherService", "VpcLink", "EmbeddingsRoute", "Vpc"} <= online
    assert {EmbedIds.of(logical_suffix(b.name)).function for b in plan.buffers} <= online
    assert template["Conditions"][DISPATCHER_CONDITION] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "DispatcherImageTag"}, ""]}]}
    assert template["Parameters"]["DispatcherImageTag"]["Default"] == ""
    # No hourly-billed extras: no NAT gateway, no load balancer, no interface endpoint.
    kinds = {r["Type"] for r in template["Resources"].values()}
    assert not kinds & {"AWS::EC2::NatGateway", "AWS::EC2::VPCEndpoint", "AWS::EC2::EIP",
                        "AWS::ElasticLoadBalancingV2::LoadBalancer"}


def test_one_online_infer_function_per_buffer_from_the_bulk_image(plan: Plan) -> None:
    template = build_template(plan)
    for spec in plan.buffers:
        suffix = logical_suffix(spec.name)
        embed = template["Resources"][EmbedIds.of(suffix).function]
        bulk = template["Resources"][BufferIds.of(suffix).function]
        props = embed["Properties"]
        assert props["PackageType"] == "Image" and props["MemorySize"] == spec.memory_mb
        assert props["ImageConfig"] == {"Command": [EMBED_HANDLER]}
        assert "Policies" not in props  # CloudWatch Logs only: it touches no queue or table
        # The same image as the bulk function: same Dockerfile, context and tag.
        build = ("Dockerfile", "DockerContext", "DockerTag")
        assert [embed["Metadata"][k] for k in build] == [bulk["Metadata"][k] for k in build]
        # A hung batch ends as the function's timeout, inside the API's integration timeout.
        assert props["Timeout"] == EMBED_TIMEOUT_S < API_INTEGRATION_TIMEOUT_MS / 1000


def test_the_dispatcher_container_is_configured_as_the_service_reads_it(plan: Plan) -> None:
    template = build_template(plan)
    container = _container(template)
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["MBS_PLAN"] == plan_env_json(plan)
    assert env["MBS_INVOKE"] == "lambda" and env["MBS_SLO_MS"] == {"Ref": "SloMs"}
    assert env["PORT"] == str(DISPATCHER_PORT)
    functions = json.loads(env["MBS_INFER_FUNCTIONS"]["Fn::Sub"])
    assert functions == {b.name: "${" + EmbedIds.of(logical_suffix(b.name)).function + "}"
                         for b in plan.buffers}
    assert container["PortMappings"] == [{"ContainerPort": DISPATCHER_PORT, "Protocol": "tcp"}]
    probe = container["HealthCheck"]["Command"]
    assert probe[:2] == ["CMD", "python"] and f":{DISPATCHER_PORT}/healthz" in probe[-1]
    assert container["RestartPolicy"]["Enabled"] is True
    assert container["ReadonlyRootFilesystem"] is True
    assert container["LogConfiguration"]["Options"]["awslogs-group"] == {
        "Ref": "DispatcherLogGroup"}
    assert container["Image"]["Fn::Sub"].endswith(
        "/${DispatcherImageRepository}:${DispatcherImageTag}")


def test_the_service_runs_on_fargate_with_health_rollback_and_cpu_scaling() -> None:
    template = build_template(shipped("default"))
    task = _res(template, "DispatcherTaskDefinition")
    assert task["RequiresCompatibilities"] == ["FARGATE"] and task["NetworkMode"] == "awsvpc"
    assert (task["Cpu"], task["Memory"]) == ("256", "512")
    service = _res(template, "DispatcherService")
    assert service["LaunchType"] == "FARGATE" and "DesiredCount" not in service
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {
        "Enable": True, "Rollback": True}
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "ENABLED" and len(network["Subnets"]) == 2
    assert service["ServiceRegistries"] == [{
        "RegistryArn": {"Fn::GetAtt": ["DispatcherDiscovery", "Arn"]},
        "ContainerName": "dispatcher", "ContainerPort": DISPATCHER_PORT}]
    target = _res(template, "DispatcherScalableTarget")
    assert target["ResourceId"] == {
        "Fn::Sub": "service/${DispatcherCluster}/${DispatcherService.Name}"}
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, {"Ref": "DispatcherMaxTasks"})
    tracking = _res(template, "DispatcherScalingPolicy")[
        "TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "ECSServiceAverageCPUUtilization"}
    assert tracking["TargetValue"] == CPU_TARGET_PERCENT
    assert str(DISPATCHER_TASK_CAPACITY_RPS) in template["Parameters"]["DispatcherMaxTasks"][
        "Description"]
    alarms = of_type(template, "AWS::CloudWatch::Alarm")
    assert {"DispatcherCpuAlarm", "DispatcherNoTasksAlarm", "Api5xxAlarm"} <= set(alarms)
    no_tasks = alarms["DispatcherNoTasksAlarm"]["Properties"]
    assert no_tasks["TreatMissingData"] == "breaching"  # no task reports no CPU sample


def test_the_route_reaches_the_tasks_through_the_vpc_link_with_the_stacks_auth() -> None:
    template = build_template(shipped("default"))
    route = _res(template, "EmbeddingsRoute")
    assert route["RouteKey"] == "POST /v1/embeddings"
    assert route["Target"] == {"Fn::Sub": "integrations/${EmbeddingsIntegration}"}
    assert route["AuthorizationType"] == _res(template, "IngestRoute")["AuthorizationType"]
    assert route["AuthorizerId"] == _res(template, "IngestRoute")["AuthorizerId"]
    integration = _res(template, "EmbeddingsIntegration")
    assert (integration["ConnectionType"], integration["ConnectionId"]) == (
        "VPC_LINK", {"Ref": "VpcLink"})
    assert integration["IntegrationUri"] == {"Fn::GetAtt": ["DispatcherDiscovery", "Arn"]}
    assert _res(template, "DispatcherDiscovery")["DnsConfig"]["DnsRecords"][0]["Type"] == "SRV"


def test_the_tasks_admit_only_the_vpc_link_and_leave_only_over_https() -> None:
    template = build_template(shipped("default"))
    tasks = _res(template, "DispatcherSecurityGroup")
    assert tasks["SecurityGroupIngress"] == [{
        "IpProtocol": "tcp", "FromPort": DISPATCHER_PORT, "ToPort": DISPATCHER_PORT,
        "SourceSecurityGroupId": {"Fn::GetAtt": ["VpcLinkSecurityGroup", "GroupId"]},
        "Description": "from the API's VPC link only"}]
    assert [(r["FromPort"], r["ToPort"]) for r in tasks["SecurityGroupEgress"]] == [(443, 443)]
    link = _res(template, "VpcLinkSecurityGroup")
    assert "SecurityGroupIngress" not in link
    assert [(r["FromPort"], r["CidrIp"]) for r in link["SecurityGroupEgress"]] == [
        (DISPATCHER_PORT, _res(template, "Vpc")["CidrBlock"])]
    assert _res(template, "VpcLink")["SecurityGroupIds"] == [{"Ref": "VpcLinkSecurityGroup"}]


def test_the_task_role_may_invoke_the_online_functions_and_nothing_else() -> None:
    plan = varied_plan()
    template = build_template(plan)
    (policy,) = _res(template, "DispatcherTaskRole")["Policies"]
    assert policy["PolicyDocument"]["Statement"] == [{
        "Effect": "Allow", "Action": ["lambda:InvokeFunction"],
        "Resource": [{"Fn::GetAtt": [EmbedIds.of(logical_suffix(b.name)).function, "Arn"]}
                     for b in plan.buffers]}]
    execution = _res(template, "DispatcherExecutionRole")
    statements = [s for p in execution["Policies"] for s in p["PolicyDocument"]["Statement"]]
    wildcard = [s for s in statements if s["Resource"] == "*"]
    assert wildcard == [{"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"],
                         "Resource": "*"}]  # the one action ECR does not scope
    assert "ManagedPolicyArns" not in execution


def test_the_dispatcher_image_is_a_deploy_parameter() -> None:
    default = shipped("default")
    plain = json.loads(parameters_json(default, DeployParams()))
    assert "DispatcherImageTag" not in {p["ParameterKey"] for p in plain}
    params = DeployParams(dispatcher_image_repository="mbs-dispatcher",
                          dispatcher_image_tag="d-0123456789ab")
    overrides = params.overrides(default)
    assert (overrides["DispatcherImageRepository"], overrides["DispatcherImageTag"]) == (
        "mbs-dispatcher", "d-0123456789ab")
    with pytest.raises(RenderError, match="repository and a tag"):
        DeployParams(dispatcher_image_repository="mbs-dispatcher")
    rule = build_template(default)["Rules"]["DispatcherImageIsComplete"]
    assert "together" in rule["Assertions"][0]["AssertDescription"]


@pytest.mark.parametrize(("cpu", "memory_mb", "message"), [
    (128, 512, "dispatcher_cpu_units must be one of"),
    (256, 4096, "is not a Fargate size for 256 CPU units"),
])
def test_a_task_size_fargate_does_not_offer_is_refused(cpu: int, memory_mb: int,
                                                       message: str) -> None:
    with pytest.raises(RenderError, match=message):
        RenderOptions(dispatcher_cpu_units=cpu, dispatcher_memory_mb=memory_mb)
    task = _res(build_template(shipped("batch"), RenderOptions(
        dispatcher_cpu_units=1024, dispatcher_memory_mb=2048)), "DispatcherTaskDefinition")
    assert (task["Cpu"], task["Memory"]) == ("1024", "2048")
