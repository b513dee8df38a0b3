"""A gpu plan's template: the capacity provider, the GPU infer function, its alarms and wiring."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from buffers.plan import BackendType, Plan
from infra.aws.cfn_lint import CFN_LINT_CONFIG, CFN_LINT_OVERRIDE_SPEC
from infra.aws.render import build_template, render_template, template_text
from infra.aws.template.buffers import BufferIds
from infra.aws.template.common import (
    DISPATCHER_CONDITION,
    EMBED_HANDLER,
    RenderError,
    RenderOptions,
    logical_suffix,
)
from infra.aws.template.gpu import (
    CAPACITY_PROVIDER,
    GPU_FUNCTION,
    LOGS_ENDPOINT,
    LOGS_ENDPOINT_SECURITY_GROUP,
    OPERATOR_ROLE,
    SECURITY_GROUP,
)
from infra.aws.template.gpu_fleet import (
    ACCELERATOR_MEMORY_GIB,
    GPU_INSTANCES,
    accelerator_memory_gib,
)
from infra.aws.template.network import VPC_CIDR
from infra.aws.template.online import EMBED_TIMEOUT_S, EmbedIds
from infra.aws.template.shared import API_INTEGRATION_TIMEOUT_MS
from tests.test_render import of_type, shipped


def gpu_plan(**fleet: Any) -> Plan:
    return replace(shipped("gpu"), **fleet)


def _props(template: dict[str, Any], logical: str) -> dict[str, Any]:
    return template["Resources"][logical]["Properties"]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return build_template(shipped("gpu"))


def test_the_capacity_provider_runs_the_plans_instance_type_in_the_stacks_vpc(
        template: dict[str, Any]) -> None:
    provider = _props(template, CAPACITY_PROVIDER)
    assert template["Resources"][CAPACITY_PROVIDER]["Type"] == "AWS::Lambda::CapacityProvider"
    assert provider["InstanceRequirements"] == {"Architectures": ["x86_64"],
                                                "AllowedInstanceTypes": ["g6.xlarge"]}
    # The dispatcher's two public subnets and a security group of its own.
    assert provider["VpcConfig"] == {
        "SubnetIds": [{"Ref": "PublicSubnetA"}, {"Ref": "PublicSubnetB"}],
        "SecurityGroupIds": [{"Fn::GetAtt": [SECURITY_GROUP, "GroupId"]}]}
    group = _props(template, SECURITY_GROUP)
    assert "SecurityGroupIngress" not in group  # invocations arrive through Lambda, not the VPC
    assert [(r["FromPort"], r["ToPort"], r["CidrIp"]) for r in group["SecurityGroupEgress"]] == [
        (443, 443, VPC_CIDR)]  # nothing leaves the VPC
    assert provider["PermissionsConfig"] == {
        "CapacityProviderOperatorRoleArn": {"Fn::GetAtt": [OPERATOR_ROLE, "Arn"]}}


def test_the_instances_only_way_out_is_a_cloudwatch_logs_endpoint(
        template: dict[str, Any]) -> None:
    endpoint = _props(template, LOGS_ENDPOINT)
    assert endpoint["VpcEndpointType"] == "Interface" and endpoint["PrivateDnsEnabled"] is True
    assert endpoint["ServiceName"] == {"Fn::Sub": "com.amazonaws.${AWS::Region}.logs"}
    assert endpoint["SubnetIds"] == _props(template, CAPACITY_PROVIDER)["VpcConfig"]["SubnetIds"]
    (rule,) = _props(template, LOGS_ENDPOINT_SECURITY_GROUP)["SecurityGroupIngress"]
    assert rule["SourceSecurityGroupId"] == {"Fn::GetAtt": [SECURITY_GROUP, "GroupId"]}
    assert (rule["FromPort"], rule["ToPort"]) == (443, 443)
    kinds = {r["Type"] for r in template["Resources"].values()}
    assert not kinds & {"AWS::EC2::NatGateway", "AWS::EC2::EIP"}


def test_the_operator_role_is_lambdas_with_the_documented_managed_policy(
        template: dict[str, Any]) -> None:
    role = _props(template, OPERATOR_ROLE)
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert role["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AWSLambdaManagedEC2ResourceOperator"}]


def test_scaling_tracks_gpu_utilisation_up_to_the_plans_ceiling(template: dict[str, Any]) -> None:
    scaling = _props(template, CAPACITY_PROVIDER)["CapacityProviderScalingConfig"]
    # max_instances 6 x 4 vCPUs of a g6.xlarge
    assert scaling["MaxVCpuCount"] == 6 * 4
    assert scaling["ScalingMode"] == "Manual"
    assert scaling["ScalingPolicies"] == [{
        "PredefinedMetricType": "LambdaCapacityProviderAverageGPUUtilization",
        "TargetValue": RenderOptions().gpu_target_utilization_percent}]


def test_the_gpu_function_is_a_cuda_image_on_the_capacity_provider(
        template: dict[str, Any]) -> None:
    function = template["Resources"][GPU_FUNCTION]
    props = function["Properties"]
    assert function["Type"] == "AWS::Lambda::Function"  # raw: SAM refuses AcceleratorConfig
    assert props["PackageType"] == "Image" and props["Architectures"] == ["x86_64"]
    assert props["ImageConfig"] == {"Command": [EMBED_HANDLER]}
    assert function["Metadata"]["Dockerfile"] == "infer-gpu.Dockerfile"
    assert function["Metadata"]["DockerTag"].startswith("python3.13")
    assert props["AcceleratorConfig"] == {"AcceleratorMemorySize": 24}  # one whole L4
    config = props["CapacityProviderConfig"]["LambdaManagedInstancesCapacityProviderConfig"]
    assert config["CapacityProviderArn"] == {"Fn::GetAtt": [CAPACITY_PROVIDER, "Arn"]}
    opts = RenderOptions()
    assert config["PerExecutionEnvironmentMaxConcurrency"] == opts.gpu_processes_per_environment
    assert config["ExecutionEnvironmentMemoryGiBPerVCpu"] == opts.gpu_memory_gib_per_vcpu
    assert props["MemorySize"] == opts.gpu_memory_mb >= 2048  # LMI's smallest function: 2 GB
    assert props["FunctionScalingConfig"] == {"MinExecutionEnvironments": 3,
                                              "MaxExecutionEnvironments": 6}
    assert props["Environment"]["Variables"]["MBS_DEVICE"] == "cuda"
    assert props["Timeout"] == EMBED_TIMEOUT_S < API_INTEGRATION_TIMEOUT_MS / 1000
    assert props["PublishToLatestPublished"] is True


def test_the_gpu_function_may_only_write_its_own_logs(template: dict[str, Any]) -> None:
    role = _props(template, _props(template, GPU_FUNCTION)["Role"]["Fn::GetAtt"][0])
    (policy,) = role["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    log_group = _props(template, GPU_FUNCTION)["LoggingConfig"]["LogGroup"]["Ref"]
    assert statement["Resource"] == {"Fn::GetAtt": [log_group, "Arn"]}


def test_the_dispatcher_invokes_the_gpu_function_for_every_buffer(
        template: dict[str, Any]) -> None:
    plan = shipped("gpu")
    (container,) = _props(template, "DispatcherTaskDefinition")["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert json.loads(env["MBS_INFER_FUNCTIONS"]["Fn::Sub"]) == {
        b.name: "${" + GPU_FUNCTION + "}" for b in plan.buffers}
    (policy,) = _props(template, "DispatcherTaskRole")["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Resource"] == [{"Fn::GetAtt": [GPU_FUNCTION, "Arn"]}]
    # No CPU online functions: the GPU function replaces them; the bulk path stays on CPU.
    for spec in plan.buffers:
        suffix = logical_suffix(spec.name)
        assert EmbedIds.of(suffix).function not in template["Resources"]
        assert template["Resources"][BufferIds.of(suffix).function]["Type"] == (
            "AWS::Serverless::Function")


def test_gpu_resources_exist_only_with_the_online_path(template: dict[str, Any]) -> None:
    gpu = {CAPACITY_PROVIDER, OPERATOR_ROLE, SECURITY_GROUP, GPU_FUNCTION, LOGS_ENDPOINT,
           LOGS_ENDPOINT_SECURITY_GROUP,
           "GpuUtilizationAlarm", "EmbedGpuThrottlesAlarm", "EmbedGpuErrorsAlarm"}
    for logical in gpu:
        assert template["Resources"][logical]["Condition"] == DISPATCHER_CONDITION, logical
    assert {o for o, v in template["Outputs"].items() if "Gpu" in o} == {
        "EmbedGpuFunctionName", "EmbedGpuFunctionArn", "GpuCapacityProviderArn"}


def test_alarms_on_gpu_utilisation_throttles_and_errors(template: dict[str, Any]) -> None:
    alarms = of_type(template, "AWS::CloudWatch::Alarm")
    utilisation = alarms["GpuUtilizationAlarm"]["Properties"]
    assert utilisation["Dimensions"] == [{"Name": "CapacityProviderName",
                                          "Value": {"Ref": CAPACITY_PROVIDER}}]
    assert utilisation["Statistic"] == "Average" and utilisation["Threshold"] == 90
    assert utilisation["Period"] == 300  # LMI publishes its metrics every 5 minutes
    # An unconfirmed metric name must show as missing data, never as a healthy OK.
    assert utilisation["TreatMissingData"] == "missing"
    for name, metric in (("EmbedGpuThrottlesAlarm", "Throttles"),
                         ("EmbedGpuErrorsAlarm", "Errors")):
        props = alarms[name]["Properties"]
        assert (props["Namespace"], props["MetricName"]) == ("AWS/Lambda", metric)
        assert props["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": GPU_FUNCTION}}]


@pytest.mark.parametrize(("instance_type", "gib"), [("g4dn.xlarge", 16), ("g5.xlarge", 24),
                                                    ("g6.2xlarge", 24), ("g6e.xlarge", 48)])
def test_each_environment_gets_its_instances_whole_gpu(instance_type: str, gib: int) -> None:
    template = build_template(gpu_plan(instance_type=instance_type))
    props = _props(template, GPU_FUNCTION)
    assert props["AcceleratorConfig"] == {"AcceleratorMemorySize": gib}
    scaling = _props(template, CAPACITY_PROVIDER)["CapacityProviderScalingConfig"]
    assert scaling["MaxVCpuCount"] == 6 * GPU_INSTANCES[instance_type].vcpus


def test_every_catalogued_gpu_has_a_valid_accelerator_size() -> None:
    for instance in GPU_INSTANCES.values():
        assert accelerator_memory_gib(instance) in ACCELERATOR_MEMORY_GIB
        assert accelerator_memory_gib(instance) <= instance.gpu_memory_gib


def test_an_unknown_instance_type_is_refused_by_name() -> None:
    with pytest.raises(RenderError, match="instance_type 'p5.48xlarge' is not a GPU instance "
                                          "type the template knows; choose from"):
        build_template(gpu_plan(instance_type="p5.48xlarge"))


def test_a_fleet_over_the_vcpu_limit_is_refused() -> None:
    with pytest.raises(RenderError, match="max_instances 1000 x 16 vCPUs of g6.4xlarge is "
                                          "16000 vCPUs, over .* 15000"):
        build_template(gpu_plan(instance_type="g6.4xlarge", max_instances=1000))


def test_a_function_larger_than_its_instance_is_refused() -> None:
    opts = RenderOptions(gpu_memory_mb=32_768, gpu_memory_gib_per_vcpu=8.0)
    with pytest.raises(RenderError, match="does not fit one g6.xlarge"):
        build_template(shipped("gpu"), opts)


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("gpu_memory_mb", 1024, "gpu_memory_mb must be in 2048..32768, got 1024"),
    ("gpu_memory_gib_per_vcpu", 1.0, "gpu_memory_gib_per_vcpu must be in 2..8, got 1.0"),
    ("gpu_processes_per_environment", 0, "gpu_processes_per_environment must be in 1..1600"),
    ("gpu_target_utilization_percent", 0.0, "gpu_target_utilization_percent must be in"),
])
def test_gpu_render_options_are_validated(field: str, value: Any, needle: str) -> None:
    with pytest.raises(RenderError, match=needle.replace(".", r"\.")):
        RenderOptions(**{field: value})


def test_a_lambda_plan_renders_no_gpu_resource() -> None:
    template = build_template(shipped("default"))
    kinds = {r["Type"] for r in template["Resources"].values()}
    assert "AWS::Lambda::CapacityProvider" not in kinds
    assert GPU_FUNCTION not in template["Resources"]
    assert "infer on GPU" not in template["Description"]


def test_the_gpu_render_names_the_fleet_and_parses_as_yaml() -> None:
    text = template_text(shipped("gpu"))
    assert yaml.safe_load(text)["Description"].endswith("infer on GPU: g6.xlarge x 3-6")
    assert shipped("gpu").backend is BackendType.GPU


def test_a_gpu_render_carries_cfn_lints_override_spec(tmp_path: Path) -> None:
    # GIVEN a gpu plan and a lambda plan rendered
    gpu = render_template(shipped("gpu"), tmp_path / "gpu", stage=False)
    cpu = render_template(shipped("default"), tmp_path / "cpu", stage=False)
    # THEN the gpu render's .cfnlintrc.yaml points at a copy of the repository's override spec
    config = yaml.safe_load((gpu.out_dir / CFN_LINT_CONFIG).read_text())
    assert config == {"override_spec": CFN_LINT_OVERRIDE_SPEC.name}
    copied = gpu.out_dir / CFN_LINT_OVERRIDE_SPEC.name
    assert copied.read_text() == CFN_LINT_OVERRIDE_SPEC.read_text()
    # AND the lambda render has neither: nothing there needs the override
    assert not (cpu.out_dir / CFN_LINT_CONFIG).exists()
    assert not (cpu.out_dir / CFN_LINT_OVERRIDE_SPEC.name).exists()


def test_the_override_spec_adds_only_the_documented_accelerator_config() -> None:
    spec = json.loads(CFN_LINT_OVERRIDE_SPEC.read_text())
    assert list(spec["Patches"]) == ["AWS::Lambda::Function"]
    patches = spec["Patches"]["AWS::Lambda::Function"]
    assert [(p["op"], p["path"]) for p in patches] == [
        ("add", "/definitions/AcceleratorConfig"), ("add", "/properties/AcceleratorConfig")]
    definition = patches[0]["value"]
    assert definition["required"] == ["AcceleratorMemorySize"]
    assert definition["additionalProperties"] is False
    assert definition["properties"]["AcceleratorMemorySize"]["enum"] == list(
        ACCELERATOR_MEMORY_GIB)
    assert "aws-properties-lambda-function-acceleratorconfig" in spec["Comment"]
