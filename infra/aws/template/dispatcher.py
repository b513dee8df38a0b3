"""The dispatcher service on ECS Fargate: cluster, task definition, service, IAM, autoscaling,
logs and alarms. Created only with a dispatcher image (condition HasDispatcher).

The image is built from infra/docker/dispatcher.Dockerfile and pushed to an ECR repository in the
stack's account and region before `sam deploy` (SAM builds images for Lambda functions only);
the stack takes the repository and tag as parameters (ARCHITECTURE.md, "The online path on AWS").
"""

from __future__ import annotations

from typing import Any

from infra.aws.template.common import (
    DISPATCHER_CONDITION,
    DISPATCHER_PORT,
    RenderOptions,
    allow,
    checkov_skips,
    conditional,
    getatt,
    ref,
    sub,
)
from infra.aws.template.network import subnet_refs
from infra.aws.template.online import infer_function_arns, infer_functions_env
from infra.aws.template.shared import log_group, metric_alarm

CONTAINER = "dispatcher"
# Per-task capacity at the CPU target: requests/s one 0.25 vCPU task serves with p99 inside the
# SLO. A placeholder until measured on Fargate (benchmarks/, issue 12's overhead targets): the
# cost model divides the rate by it to count tasks, and the scaling target below keeps each task
# near it.
DISPATCHER_TASK_CAPACITY_RPS = 250
# Target tracking on average CPU: headroom for a burst while a new task starts (~1 min on Fargate).
CPU_TARGET_PERCENT = 60
CPU_ALARM_PERCENT = 90  # sustained above this, scaling is at DispatcherMaxTasks or too slow
MIN_TASKS = 1  # the online path answers at once: no scale to zero
SCALE_OUT_COOLDOWN_S = 60
SCALE_IN_COOLDOWN_S = 300
# Seconds ECS waits after SIGTERM before SIGKILL: the dispatcher drains its buffers, and a batch
# in flight may take up to the online function's timeout (Fargate allows at most 120 s).
STOP_TIMEOUT_S = 60
HEALTH_PATH = "/healthz"
_HEALTH_PROBE = ("import urllib.request; urllib.request.urlopen("
                 f"'http://127.0.0.1:{DISPATCHER_PORT}{HEALTH_PATH}', timeout=3)")


def dispatcher_parameters() -> dict[str, Any]:
    """The image to run, and the most tasks autoscaling may start."""
    return {
        "DispatcherImageRepository": {
            "Type": "String", "Default": "", "AllowedPattern": "^[a-z0-9._/-]*$",
            "Description": "ECR repository (name, in this account and region) holding the "
            "dispatcher image; `mbs deploy` builds and pushes it. Empty: no online path."},
        "DispatcherImageTag": {
            "Type": "String", "Default": "", "AllowedPattern": "^[A-Za-z0-9._-]*$",
            "Description": "Tag of the dispatcher image (a content hash from `mbs deploy`)"},
        "DispatcherMaxTasks": {
            "Type": "Number", "Default": 4, "MinValue": MIN_TASKS, "MaxValue": 100,
            "Description": "Most dispatcher tasks CPU autoscaling may run (each about "
            f"{DISPATCHER_TASK_CAPACITY_RPS} req/s at {CPU_TARGET_PERCENT}% CPU)"},
    }


def dispatcher_conditions() -> dict[str, Any]:
    return {DISPATCHER_CONDITION: {"Fn::Not": [{"Fn::Equals": [ref("DispatcherImageTag"), ""]}]}}


def dispatcher_rules() -> dict[str, Any]:
    """A tag without a repository (or the reverse) names no image: refuse it at deploy time."""
    no_repository = {"Fn::Equals": [ref("DispatcherImageRepository"), ""]}
    no_tag = {"Fn::Equals": [ref("DispatcherImageTag"), ""]}
    both_or_neither = {"Fn::Or": [{"Fn::And": [no_repository, no_tag]},
                                  {"Fn::And": [{"Fn::Not": [no_repository]},
                                               {"Fn::Not": [no_tag]}]}]}
    return {"DispatcherImageIsComplete": {"Assertions": [{
        "Assert": both_or_neither,
        "AssertDescription": "Set DispatcherImageRepository and DispatcherImageTag together"}]}}


def _repository_arn() -> dict[str, Any]:
    return sub("arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:"
               "repository/${DispatcherImageRepository}")


def _ecs_tasks_trust() -> dict[str, Any]:
    # aws:SourceAccount: only this account's tasks assume the role (confused deputy guard, ECS
    # developer guide, "task IAM role").
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")}}}]}


def _roles(targets: dict[str, str]) -> dict[str, Any]:
    pull = allow(["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                  "ecr:BatchCheckLayerAvailability"], _repository_arn())
    # GetAuthorizationToken has no resource-level permissions (ECR service authorization
    # reference): "*" is the only resource it takes.
    pull["Statement"].append({"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"],
                              "Resource": "*"})
    logs = allow(["logs:CreateLogStream", "logs:PutLogEvents"],
                 getatt("DispatcherLogGroup", "Arn"))
    return {
        "DispatcherExecutionRole": {"Type": "AWS::IAM::Role", "Properties": {
            "Description": "MBS dispatcher: ECS pulls the image and ships the container's logs",
            "AssumeRolePolicyDocument": _ecs_tasks_trust(),
            "Policies": [{"PolicyName": "pull-image", "PolicyDocument": pull},
                         {"PolicyName": "write-logs", "PolicyDocument": logs}]}},
        "DispatcherTaskRole": {"Type": "AWS::IAM::Role", "Properties": {
            "Description": "MBS dispatcher: invoke the online infer functions, nothing else",
            "AssumeRolePolicyDocument": _ecs_tasks_trust(),
            "Policies": [{"PolicyName": "invoke-infer", "PolicyDocument": allow(
                ["lambda:InvokeFunction"], infer_function_arns(targets))}]}},
    }


def _container(plan_json: str, targets: dict[str, str]) -> dict[str, Any]:
    env = {"MBS_PLAN": plan_json, "MBS_INFER_FUNCTIONS": infer_functions_env(targets),
           "MBS_INVOKE": "lambda", "MBS_SLO_MS": ref("SloMs"), "PORT": str(DISPATCHER_PORT)}
    return {
        "Name": CONTAINER, "Essential": True,
        "Image": sub("${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/"
                     "${DispatcherImageRepository}:${DispatcherImageTag}"),
        "PortMappings": [{"ContainerPort": DISPATCHER_PORT, "Protocol": "tcp"}],
        "Environment": [{"Name": k, "Value": v} for k, v in env.items()],
        # ECS marks a task unhealthy after 3 failed probes; the service replaces it, and Cloud
        # Map stops routing to it. StartPeriod covers the tokenizer load and uvicorn start.
        "HealthCheck": {"Command": ["CMD", "python", "-c", _HEALTH_PROBE], "Interval": 10,
                        "Timeout": 5, "Retries": 3, "StartPeriod": 30},
        # Restart the container in place when it exits (ECS container restart policy): faster
        # than a new task, and the task keeps its IP in Cloud Map.
        "RestartPolicy": {"Enabled": True, "RestartAttemptPeriod": 60},
        "StopTimeout": STOP_TIMEOUT_S,
        "ReadonlyRootFilesystem": True,
        # The root filesystem is read-only; /tmp is the task's own scratch volume, no shared dir.
        "MountPoints": [{"SourceVolume": "tmp", "ContainerPath": "/tmp",  # nosec B108
                         "ReadOnly": False}],
        "LogConfiguration": {"LogDriver": "awslogs", "Options": {
            "awslogs-group": ref("DispatcherLogGroup"), "awslogs-region": ref("AWS::Region"),
            "awslogs-stream-prefix": CONTAINER}},
    }


def _service() -> dict[str, Any]:
    # Tasks get public IPs: without a NAT gateway, the cheapest way to reach ECR, Lambda and
    # Logs (template/network.py); their security group admits only the VPC link.
    return {"Type": "AWS::ECS::Service", "DependsOn": ["PublicRoute"], "Properties": {
        "Cluster": ref("DispatcherCluster"), "TaskDefinition": ref("DispatcherTaskDefinition"),
        "LaunchType": "FARGATE", "PlatformVersion": "LATEST",
        # No DesiredCount: ECS starts MIN_TASKS (1), and a stack update keeps the count
        # that autoscaling set instead of resetting it.
        "NetworkConfiguration": {"AwsvpcConfiguration": {
            "AssignPublicIp": "ENABLED", "Subnets": subnet_refs(),
            "SecurityGroups": [ref("DispatcherSecurityGroup")]}},
        # A deployment whose tasks never turn healthy stops and rolls back by itself.
        "DeploymentConfiguration": {
            "MinimumHealthyPercent": 100, "MaximumPercent": 200,
            "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True}},
        "ServiceRegistries": [{"RegistryArn": getatt("DispatcherDiscovery", "Arn"),
                               "ContainerName": CONTAINER,
                               "ContainerPort": DISPATCHER_PORT}],
        "EnableECSManagedTags": True, "PropagateTags": "SERVICE"}}


def _scaling() -> dict[str, Any]:
    return {
        "DispatcherScalableTarget": {
            "Type": "AWS::ApplicationAutoScaling::ScalableTarget", "Properties": {
                "ServiceNamespace": "ecs", "ScalableDimension": "ecs:service:DesiredCount",
                "ResourceId": sub("service/${DispatcherCluster}/${DispatcherService.Name}"),
                "MinCapacity": MIN_TASKS, "MaxCapacity": ref("DispatcherMaxTasks")}},
        "DispatcherScalingPolicy": {
            "Type": "AWS::ApplicationAutoScaling::ScalingPolicy", "Properties": {
                "PolicyName": sub("${AWS::StackName}-dispatcher-cpu"),
                "PolicyType": "TargetTrackingScaling",
                "ScalingTargetId": ref("DispatcherScalableTarget"),
                "TargetTrackingScalingPolicyConfiguration": {
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
                    "TargetValue": CPU_TARGET_PERCENT,
                    "ScaleOutCooldown": SCALE_OUT_COOLDOWN_S,
                    "ScaleInCooldown": SCALE_IN_COOLDOWN_S}}},
    }


def _alarms() -> dict[str, Any]:
    service = [("ClusterName", ref("DispatcherCluster")),
               ("ServiceName", getatt("DispatcherService", "Name"))]
    return {
        "DispatcherCpuAlarm": metric_alarm(
            f"MBS dispatcher: average CPU above {CPU_ALARM_PERCENT}% for 3 minutes (scaling at "
            f"DispatcherMaxTasks, or too slow for the load)", "AWS/ECS", "CPUUtilization",
            service, statistic="Average", threshold=CPU_ALARM_PERCENT, periods=3),
        # Fargate reports CPUUtilization each minute while a task runs: no samples means no
        # running task (Container Insights' RunningTaskCount would cost custom metrics).
        "DispatcherNoTasksAlarm": metric_alarm(
            "MBS dispatcher: no running task for 2 minutes (the online path is down)",
            "AWS/ECS", "CPUUtilization", service, statistic="SampleCount", threshold=1,
            comparison="LessThanThreshold", periods=2, missing="breaching"),
    }


def dispatcher_resources(plan_json: str, targets: dict[str, str],
                         opts: RenderOptions) -> dict[str, Any]:
    """Cluster, log group, roles, task definition, service, autoscaling and alarms.

    `targets` maps each buffer to the logical id of the infer function it invokes: its own CPU
    function (template/online.py), or the one GPU function (template/gpu.py).
    """
    resources: dict[str, Any] = {
        "DispatcherCluster": {"Type": "AWS::ECS::Cluster", "Metadata": checkov_skips(
            ("CKV_AWS_65", "Container Insights bills custom metrics per task and service, about "
                           "what the task itself costs; the free AWS/ECS CPU metric drives the "
                           "scaling and the alarms.")),
            "Properties": {"ClusterSettings": [{"Name": "containerInsights",
                                                "Value": "disabled"}]}},
        "DispatcherLogGroup": log_group(sub("/mbs/${AWS::StackName}/dispatcher")),
        **_roles(targets),
        "DispatcherTaskDefinition": {"Type": "AWS::ECS::TaskDefinition", "Properties": {
            "Family": sub("${AWS::StackName}-dispatcher"),
            "RequiresCompatibilities": ["FARGATE"], "NetworkMode": "awsvpc",
            "Cpu": str(opts.dispatcher_cpu_units), "Memory": str(opts.dispatcher_memory_mb),
            "RuntimePlatform": {"OperatingSystemFamily": "LINUX", "CpuArchitecture": "X86_64"},
            "ExecutionRoleArn": getatt("DispatcherExecutionRole", "Arn"),
            "TaskRoleArn": getatt("DispatcherTaskRole", "Arn"),
            "Volumes": [{"Name": "tmp"}],
            "ContainerDefinitions": [_container(plan_json, targets)]}},
        "DispatcherService": _service(),
        **_scaling(),
        **_alarms(),
    }
    return conditional(resources, DISPATCHER_CONDITION)


def dispatcher_outputs() -> dict[str, Any]:
    def out(description: str, value: Any) -> dict[str, Any]:
        return {"Condition": DISPATCHER_CONDITION, "Description": description, "Value": value}

    return {
        "DispatcherClusterName": out("ECS cluster of the dispatcher", ref("DispatcherCluster")),
        "DispatcherServiceName": out("ECS service of the dispatcher",
                                     getatt("DispatcherService", "Name")),
        "DispatcherLogGroupName": out("dispatcher logs", ref("DispatcherLogGroup")),
    }
