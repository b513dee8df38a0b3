"""The gpu backend's online infer function on Lambda Managed Instances (LMI).

A plan with `backend: gpu` renders, in place of the per-buffer CPU `Embed*Function`s:
- a capacity provider (`AWS::Lambda::CapacityProvider`) with the plan's GPU instance type, the
  dispatcher's VPC subnets, its own security group and a CloudWatch Logs endpoint, an operator
  role, and scaling limits from the plan's fleet bounds, tracking GPU utilisation;
- one infer function serving every buffer: a CUDA container image with the model baked in
  (infra/docker/infer-gpu.Dockerfile), rendered as a raw `AWS::Lambda::Function` with
  `AcceleratorConfig` and `CapacityProviderConfig`;
- alarms on GPU utilisation, throttles and errors;
- the dispatcher's permission to set the function's fleet bounds, which a plan's gears change
  with the load (PutFunctionScalingConfig, infra/dispatcher/fleet_scaling.py).

Why raw CloudFormation rather than SAM (ARCHITECTURE.md, "The gpu backend on AWS"):
aws-sam-translator 1.115.0 refuses `AcceleratorConfig` on `AWS::Serverless::Function`, and its
`AWS::Serverless::CapacityProvider` scales on CPU utilisation only (ScalingConfig has
AverageCPUUtilization, no GPU policy), while CloudFormation's `AWS::Lambda::CapacityProvider`
takes `LambdaCapacityProviderAverageGPUUtilization` (CloudFormation template reference,
"AWS::Lambda::CapacityProvider TargetTrackingScalingPolicy").

Python on LMI: Python 3.13 and later only (Lambda developer guide, "Lambda Managed Instances
runtimes"); each concurrent request runs in its own process, one request at a time, and
`PerExecutionEnvironmentMaxConcurrency` sets the number of processes per execution environment
("Python runtime for Lambda Managed Instances"). The image is built on the Python 3.13 base.
"""

from __future__ import annotations

from typing import Any

from buffers.plan import Plan
from infra.aws.template.common import (
    DISPATCHER_CONDITION,
    EMBED_HANDLER,
    RenderOptions,
    allow,
    checkov_skips,
    conditional,
    getatt,
    image_build_metadata,
    ref,
    sub,
)
from infra.aws.template.gpu_fleet import Fleet, accelerator_memory_gib, fleet_of
from infra.aws.template.network import HTTPS_PORT, VPC_CIDR, name_tags, subnet_refs
from infra.aws.template.online import EMBED_TIMEOUT_S
from infra.aws.template.shared import count_alarm, log_group, metric_alarm

GPU_FUNCTION = "EmbedGpuFunction"
GPU_FUNCTION_ROLE = "EmbedGpuRole"
GPU_LOG_GROUP = "EmbedGpuLogGroup"
CAPACITY_PROVIDER = "GpuCapacityProvider"
OPERATOR_ROLE = "GpuOperatorRole"
SECURITY_GROUP = "GpuInstanceSecurityGroup"
LOGS_ENDPOINT = "GpuLogsEndpoint"
LOGS_ENDPOINT_SECURITY_GROUP = "GpuLogsEndpointSecurityGroup"
GPU_DOCKERFILE = "infer-gpu.Dockerfile"  # its name in the staged build context
GPU_IMAGE_TAG = "python3.13-cuda-v1"
GPU_ALARM_PERCENT = 90  # sustained above this, the fleet is at its ceiling or scaling lags
# "Lambda Managed Instances metrics are published at 5-minute intervals" (Lambda developer
# guide, "CloudWatch metrics for Lambda Managed Instances"): a shorter alarm period sees gaps.
LMI_METRIC_PERIOD_S = 300
# The operator role's permissions: "At minimum, the role requires the permissions in the
# AWSLambdaManagedEC2ResourceOperator managed policy" (Lambda developer guide, "Lambda operator
# role for Lambda Managed Instances").
OPERATOR_POLICY = "AWSLambdaManagedEC2ResourceOperator"
DISPATCHER_TASK_ROLE = "DispatcherTaskRole"  # infra/aws/template/dispatcher.py
FLEET_BOUNDS_POLICY = "DispatcherGpuFleetBoundsPolicy"
# The version whose scaling configuration PutFunctionScalingConfig sets ("Qualifier ...
# Pattern: (\$LATEST\.PUBLISHED|[0-9]+)", Lambda API reference, "PutFunctionScalingConfig"): the
# one this function publishes and the dispatcher invokes (PublishToLatestPublished below).
LATEST_PUBLISHED = "$LATEST.PUBLISHED"


def _operator_role() -> dict[str, Any]:
    # The trust policy the operator role page documents: the Lambda service assumes the role.
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole"}]}
    return {"Type": "AWS::IAM::Role", "Properties": {
        "Description": "MBS GPU capacity provider: Lambda launches and manages its instances",
        "AssumeRolePolicyDocument": trust,
        "ManagedPolicyArns": [sub(f"arn:${{AWS::Partition}}:iam::aws:policy/{OPERATOR_POLICY}")]}}


def _network() -> dict[str, Any]:
    """The instances' security group and their one way out: a CloudWatch Logs endpoint.

    LMI functions need connectivity "for transmitting telemetry data to CloudWatch Logs"
    (Lambda developer guide, "Networking for Lambda Managed Instances"). The dispatcher's public
    subnets give no public IP to instances Lambda launches, and this function calls no other AWS
    service, so an interface endpoint for Logs in each subnet is the whole path out: no NAT
    gateway, no public address, no internet egress. Invocations reach the instances through the
    Lambda service, not the VPC, so nothing may connect in.
    """
    instances = {"Type": "AWS::EC2::SecurityGroup", "Properties": {
        "GroupDescription": "MBS GPU instances: no inbound; HTTPS to the Logs endpoint in the VPC",
        "VpcId": ref("Vpc"),
        "SecurityGroupEgress": [{
            "IpProtocol": "tcp", "FromPort": HTTPS_PORT, "ToPort": HTTPS_PORT,
            "CidrIp": VPC_CIDR, "Description": "to the CloudWatch Logs interface endpoint"}],
        "Tags": name_tags("gpu-instances")}}
    endpoint_group = {"Type": "AWS::EC2::SecurityGroup", "Properties": {
        "GroupDescription": "MBS CloudWatch Logs endpoint: HTTPS from the GPU instances only",
        "VpcId": ref("Vpc"),
        "SecurityGroupIngress": [{
            "IpProtocol": "tcp", "FromPort": HTTPS_PORT, "ToPort": HTTPS_PORT,
            "SourceSecurityGroupId": getatt(SECURITY_GROUP, "GroupId"),
            "Description": "from the GPU instances"}],
        # An endpoint answers; it opens no connection. This rule replaces the allow-all default.
        "SecurityGroupEgress": [{
            "IpProtocol": "tcp", "FromPort": HTTPS_PORT, "ToPort": HTTPS_PORT,
            "CidrIp": VPC_CIDR, "Description": "no traffic leaves the VPC from the endpoint"}],
        "Tags": name_tags("gpu-logs-endpoint")}}
    endpoint = {"Type": "AWS::EC2::VPCEndpoint", "Properties": {
        "VpcEndpointType": "Interface", "VpcId": ref("Vpc"),
        "ServiceName": sub("com.amazonaws.${AWS::Region}.logs"),
        "SubnetIds": subnet_refs(), "PrivateDnsEnabled": True,
        "SecurityGroupIds": [getatt(LOGS_ENDPOINT_SECURITY_GROUP, "GroupId")]}}
    return {SECURITY_GROUP: instances, LOGS_ENDPOINT_SECURITY_GROUP: endpoint_group,
            LOGS_ENDPOINT: endpoint}


def _capacity_provider(fleet: Fleet, opts: RenderOptions) -> dict[str, Any]:
    return {"Type": "AWS::Lambda::CapacityProvider", "Properties": {
        "VpcConfig": {"SubnetIds": subnet_refs(),
                      "SecurityGroupIds": [getatt(SECURITY_GROUP, "GroupId")]},
        "PermissionsConfig": {"CapacityProviderOperatorRoleArn": getatt(OPERATOR_ROLE, "Arn")},
        "InstanceRequirements": {"Architectures": ["x86_64"],
                                 "AllowedInstanceTypes": [fleet.instance_type]},
        # The ceiling in vCPUs: max_instances of the plan's type. Scaling is asynchronous, on
        # utilisation: "If your traffic more than doubles within 5 minutes, you may see
        # throttles" (Lambda developer guide, "Scaling Lambda Managed Instances").
        "CapacityProviderScalingConfig": {
            "MaxVCpuCount": fleet.max_vcpus, "ScalingMode": "Manual",
            "ScalingPolicies": [{"PredefinedMetricType":
                                 "LambdaCapacityProviderAverageGPUUtilization",
                                 "TargetValue": opts.gpu_target_utilization_percent}]},
        "Tags": [{"Key": "mbs:backend", "Value": "gpu"}]}}


def _function_role() -> dict[str, Any]:
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")}}}]}
    logs = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": getatt(GPU_LOG_GROUP, "Arn")}]}
    return {"Type": "AWS::IAM::Role", "Properties": {
        "Description": "MBS GPU infer function: write its own logs, nothing else",
        "AssumeRolePolicyDocument": trust,
        "Policies": [{"PolicyName": "write-logs", "PolicyDocument": logs}]}}


_FUNCTION_SKIPS = checkov_skips(
    ("CKV_AWS_116", "Invoked synchronously (RequestResponse) by the dispatcher, which answers "
                    "the batch's callers with the error; an async DLQ would never receive one."),
    ("CKV_AWS_117", "A Lambda Managed Instances function runs on its capacity provider's "
                    "instances, which are in this stack's VPC; the function takes no VpcConfig."),
    ("CKV_AWS_115", "Concurrency is capped by the fleet: FunctionScalingConfig's "
                    "MaxExecutionEnvironments (the plan's max_instances) times "
                    "PerExecutionEnvironmentMaxConcurrency."),
    ("CKV_AWS_173", "The variables hold no secrets (service name, device, dtype); Lambda encrypts "
                    "them at rest with an AWS managed key."),
)


def _function(plan: Plan, fleet: Fleet, opts: RenderOptions) -> dict[str, Any]:
    metadata = {**image_build_metadata(opts.code_dir, GPU_DOCKERFILE, GPU_IMAGE_TAG),
                **_FUNCTION_SKIPS}
    names = ", ".join(b.name for b in plan.buffers)
    return {"Type": "AWS::Lambda::Function", "Metadata": metadata, "Properties": {
        "Description": f"MBS online infer on GPU ({fleet.instance.gpu}, {fleet.instance_type}) "
                       f"for buffers {names}, invoked by the dispatcher",
        "PackageType": "Image",
        # `sam build` builds the image from Metadata and writes its tag here; `sam deploy`
        # pushes it to ECR and puts the ECR URI in its place. This is sam build's own local tag.
        "Code": {"ImageUri": f"{GPU_FUNCTION.lower()}:{GPU_IMAGE_TAG}"},
        "ImageConfig": {"Command": [EMBED_HANDLER]},
        # "Lambda supports accelerator configuration only for functions that use the Image
        # package type and the x86_64 architecture" (SAM developer guide, "AcceleratorConfig").
        "Architectures": ["x86_64"],
        "MemorySize": opts.gpu_memory_mb,
        "Timeout": EMBED_TIMEOUT_S,
        "Role": getatt(GPU_FUNCTION_ROLE, "Arn"),
        # cuda, not auto: a function that lost its GPU fails at its first batch, loudly, rather
        # than serving at CPU speed on a GPU bill. The dtype is the one the plan's GPU profile
        # was measured in (meta.gpu_dtype), so the function runs as it was planned.
        "Environment": {"Variables": {"POWERTOOLS_SERVICE_NAME": "embed", "MBS_DEVICE": "cuda",
                                      "MBS_TORCH_DTYPE": plan.gpu_dtype}},
        # A log group of its own name, not /aws/lambda/<function>: the role's log permission
        # then names the group without depending on the function (no role-function cycle).
        # LMI functions "always use the structured JSON log format" (Lambda developer guide,
        # "Python runtime for Lambda Managed Instances").
        "LoggingConfig": {"LogGroup": ref(GPU_LOG_GROUP), "LogFormat": "JSON"},
        "AcceleratorConfig": {"AcceleratorMemorySize": accelerator_memory_gib(fleet.instance)},
        "CapacityProviderConfig": {"LambdaManagedInstancesCapacityProviderConfig": {
            "CapacityProviderArn": getatt(CAPACITY_PROVIDER, "Arn"),
            "PerExecutionEnvironmentMaxConcurrency": opts.gpu_processes_per_environment,
            "ExecutionEnvironmentMemoryGiBPerVCpu": opts.gpu_memory_gib_per_vcpu}},
        # One environment owns one instance's GPU (AcceleratorMemorySize is the whole GPU), so
        # the fleet's bounds are the function's environment bounds.
        "FunctionScalingConfig": {"MinExecutionEnvironments": fleet.min_instances,
                                  "MaxExecutionEnvironments": fleet.max_instances},
        # Stack updates republish $LATEST.PUBLISHED, which an unqualified invoke runs (Lambda
        # developer guide, "$LATEST.PUBLISHED version in Lambda Managed Instances"): the
        # dispatcher keeps invoking the function by name.
        "PublishToLatestPublished": True}}


def _fleet_bounds_policy() -> dict[str, Any]:
    """The dispatcher's task role may set this function's fleet bounds, nothing more: a gpu
    plan's gears change them with the load (infra/dispatcher/fleet_scaling.py). A policy of
    its own, attached to the role, so that lambda plans' dispatchers never get it."""
    versions = [getatt(GPU_FUNCTION, "Arn"), sub(f"${{{GPU_FUNCTION}.Arn}}:{LATEST_PUBLISHED}")]
    return {"Type": "AWS::IAM::Policy", "Properties": {
        "PolicyName": "set-gpu-fleet-bounds", "Roles": [ref(DISPATCHER_TASK_ROLE)],
        "PolicyDocument": allow(["lambda:PutFunctionScalingConfig"], versions)}}


def _alarms() -> dict[str, Any]:
    function = ("FunctionName", ref(GPU_FUNCTION))
    return {
        # The metric is named by analogy with the capacity provider's documented CPUUtilization
        # (AWS/Lambda, by CapacityProviderName; Lambda developer guide, "CloudWatch metrics for
        # Lambda Managed Instances"); its GPU counterpart was not found in the documentation.
        # Missing data shows as INSUFFICIENT_DATA, never as OK, so a wrong name cannot pass for
        # a healthy fleet.
        "GpuUtilizationAlarm": metric_alarm(
            f"MBS GPU fleet: average GPU utilisation above {GPU_ALARM_PERCENT}% for 10 minutes "
            f"(at max_instances, or scaling lags a burst)", "AWS/Lambda", "GPUUtilization",
            [("CapacityProviderName", ref(CAPACITY_PROVIDER))], statistic="Average",
            threshold=GPU_ALARM_PERCENT, periods=2, missing="missing",
            period_s=LMI_METRIC_PERIOD_S),
        # "Lambda always emits the standard Throttles metric" for LMI functions, beside the
        # throttle reason metrics ("CloudWatch metrics for Lambda Managed Instances").
        "EmbedGpuThrottlesAlarm": count_alarm(
            "MBS GPU infer: invocations throttled (the fleet is full: traffic more than doubled "
            "within 5 minutes, or max_instances is reached); the dispatcher answered 503",
            "AWS/Lambda", "Throttles", function),
        "EmbedGpuErrorsAlarm": count_alarm(
            "MBS GPU infer: invocations failed (FunctionError or timeout); the dispatcher "
            "answered those callers with 502", "AWS/Lambda", "Errors", function),
    }


def gpu_resources(plan: Plan, opts: RenderOptions) -> dict[str, Any]:
    """The capacity provider, its role and network, the GPU function, its logs, alarms."""
    fleet = fleet_of(plan, opts)
    return conditional({
        **_network(),
        OPERATOR_ROLE: _operator_role(),
        CAPACITY_PROVIDER: _capacity_provider(fleet, opts),
        GPU_FUNCTION_ROLE: _function_role(),
        GPU_FUNCTION: _function(plan, fleet, opts),
        GPU_LOG_GROUP: log_group(sub("/mbs/${AWS::StackName}/embed-gpu")),
        FLEET_BOUNDS_POLICY: _fleet_bounds_policy(),
        **_alarms(),
    }, DISPATCHER_CONDITION)


def gpu_outputs() -> dict[str, Any]:
    """Stack outputs for the GPU function and its capacity provider."""
    def out(description: str, value: Any) -> dict[str, Any]:
        return {"Condition": DISPATCHER_CONDITION, "Description": description, "Value": value}

    return {
        f"{GPU_FUNCTION}Name": out("online infer function on GPU (every buffer)",
                                   ref(GPU_FUNCTION)),
        f"{GPU_FUNCTION}Arn": out("online infer function ARN on GPU",
                                  getatt(GPU_FUNCTION, "Arn")),
        f"{CAPACITY_PROVIDER}Arn": out("Lambda Managed Instances capacity provider of the GPU "
                                       "fleet", getatt(CAPACITY_PROVIDER, "Arn")),
    }
