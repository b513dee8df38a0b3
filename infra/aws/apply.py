"""Apply a changed plan to a deployed stack without a full redeploy, where AWS allows it.

Lambda's UpdateFunctionConfiguration changes memory and environment, UpdateEventSourceMapping
changes BatchSize, MaximumBatchingWindowInSeconds and ScalingConfig, and SQS SetQueueAttributes
changes the visibility timeout, all in place. A change of buffer names, count or dispatch mode
changes which resources exist, so it needs `mbs deploy` (a CloudFormation update); so does any
change to a stack with the online path, whose dispatcher task definition holds the plan.

The properties changed here drift from the stack's template until the next `mbs deploy` of the
same plan, which writes the same values and so changes nothing further.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from buffers.plan import Plan
from buffers.plan_files import plan_from_dict
from infra.aws.render import plan_env_json
from infra.aws.template.buffers import BufferIds, esm_settings, visibility_timeout_s
from infra.aws.template.common import check_suffixes


class FullDeployNeeded(ValueError):
    """The new plan changes which resources exist; the message says what, and what to run."""


@dataclass(frozen=True)
class Action:
    """One AWS API call of the apply path."""

    api: str  # "lambda.update_function_configuration", ...
    params: dict[str, Any]
    why: str

    def describe(self) -> str:
        shown = {k: v for k, v in self.params.items() if k != "Environment"}
        if "Environment" in self.params:
            shown["Environment"] = "{... MBS_PLAN_JSON=<new plan> ...}"
        return f"{self.api}({json.dumps(shown, sort_keys=True)})  # {self.why}"


@dataclass(frozen=True)
class DeployedStack:
    """What the apply path needs to know about a stack, read once by `read_stack`."""

    plan: Plan
    resources: dict[str, str]  # logical id -> physical id
    functions: dict[str, dict[str, Any]]  # physical name -> {Memory, Timeout, Environment}
    mappings: dict[str, dict[str, Any]] = field(default_factory=dict)  # UUID -> configuration
    visibility_s: dict[str, int] = field(default_factory=dict)  # queue URL -> seconds


def _check_shape(deployed: Plan, new: Plan) -> None:
    old_names = [b.name for b in deployed.buffers]
    new_names = [b.name for b in new.buffers]
    if old_names != new_names:
        raise FullDeployNeeded(f"buffers change from {old_names} to {new_names}: queues and "
                               f"functions must be added or removed; run `mbs deploy`")
    for old, spec in zip(deployed.buffers, new.buffers, strict=True):
        if old.dispatch_mode is not spec.dispatch_mode:
            raise FullDeployNeeded(f"buffer {spec.name!r} changes dispatch mode from "
                                   f"{old.dispatch_mode.value} to {spec.dispatch_mode.value}: "
                                   f"its event source mapping changes; run `mbs deploy`")


def plan_actions(stack: DeployedStack, new: Plan) -> list[Action]:
    """The API calls that take `stack` to `new`; FullDeployNeeded if none can. Pure."""
    _check_shape(stack.plan, new)
    if "DispatcherTaskDefinition" in stack.resources and stack.plan != new:
        # The dispatcher reads the plan from its task definition (MBS_PLAN): changing it takes a
        # new revision and a rolling deployment of the service, which CloudFormation runs.
        raise FullDeployNeeded(f"the stack runs the online path, whose dispatcher holds plan "
                               f"{stack.plan.name!r} in its task definition; run `mbs deploy` "
                               f"to roll it to plan {new.name!r}")
    actions: list[Action] = []
    plan_json = plan_env_json(new)
    suffixes = check_suffixes(new.buffers)
    memory = {stack.resources[BufferIds.of(suffixes[b.name]).function]: b.memory_mb
              for b in new.buffers}
    for name, config in sorted(stack.functions.items()):
        update: dict[str, Any] = {}
        if name in memory and config["MemorySize"] != memory[name]:
            update["MemorySize"] = memory[name]
        env = dict(config["Environment"])
        if env.get("MBS_PLAN_JSON") != plan_json:
            env["MBS_PLAN_JSON"] = plan_json
            update["Environment"] = {"Variables": env}
        if update:
            actions.append(Action("lambda.update_function_configuration",
                                  {"FunctionName": name, **update},
                                  "memory and/or the plan the function reads"))
    for spec in new.buffers:
        ids = BufferIds.of(suffixes[spec.name])
        esm = esm_settings(spec)
        uuid = stack.resources.get(ids.mapping)
        if uuid is not None:  # absent only on stacks from the removed DispatcherBuffers=Off
            current = stack.mappings[uuid]
            wanted = esm.api_fields()
            if any(current.get(k) != v for k, v in wanted.items()):
                actions.append(Action("lambda.update_event_source_mapping",
                                      {"UUID": uuid, **wanted}, f"batching of buffer {spec.name}"))
        url = stack.resources[ids.queue]
        timeout_s = stack.functions[stack.resources[ids.function]]["Timeout"]
        visibility = visibility_timeout_s(timeout_s, esm.window_s)
        if stack.visibility_s.get(url) != visibility:
            actions.append(Action("sqs.set_queue_attributes",
                                  {"QueueUrl": url,
                                   "Attributes": {"VisibilityTimeout": str(visibility)}},
                                  f"6 x function timeout + window for buffer {spec.name}"))
    return actions


def read_stack(stack_name: str, cfn: Any, lam: Any, sqs: Any) -> DeployedStack:
    """Read the stack's resources, its functions' configuration, mappings and queues."""
    resources: dict[str, str] = {}
    types: dict[str, str] = {}
    paginator = cfn.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=stack_name):
        for item in page["StackResourceSummaries"]:
            if not item.get("LogicalResourceId") or not item.get("PhysicalResourceId"):
                continue  # not created (a false Condition in moto; a failed create on AWS)
            resources[item["LogicalResourceId"]] = item["PhysicalResourceId"]
            types[item["LogicalResourceId"]] = item["ResourceType"]
    functions = {}
    for logical, kind in types.items():
        if kind == "AWS::Lambda::Function":
            config = lam.get_function_configuration(FunctionName=resources[logical])
            functions[resources[logical]] = {
                "MemorySize": config["MemorySize"], "Timeout": config["Timeout"],
                "Environment": config.get("Environment", {}).get("Variables", {})}
    if "IngestFunction" not in resources:
        raise ValueError(f"stack {stack_name!r} has no IngestFunction: not an MBS stack")
    raw_plan = functions[resources["IngestFunction"]]["Environment"].get("MBS_PLAN_JSON")
    if not raw_plan:
        raise ValueError(f"stack {stack_name!r}: the ingest function has no MBS_PLAN_JSON")
    mappings = {resources[k]: lam.get_event_source_mapping(UUID=resources[k])
                for k, kind in types.items() if kind == "AWS::Lambda::EventSourceMapping"}
    visibility = {}
    for logical, kind in types.items():
        if kind == "AWS::SQS::Queue" and logical.startswith("Queue"):
            attrs = sqs.get_queue_attributes(QueueUrl=resources[logical],
                                             AttributeNames=["VisibilityTimeout"])
            visibility[resources[logical]] = int(attrs["Attributes"]["VisibilityTimeout"])
    return DeployedStack(plan=plan_from_dict(json.loads(raw_plan)), resources=resources,
                         functions=functions, mappings=mappings, visibility_s=visibility)


def execute(actions: list[Action], lam: Any, sqs: Any) -> None:
    """Run the actions in order; each function update is awaited before the next call."""
    for action in actions:
        service, method = action.api.split(".")
        client = lam if service == "lambda" else sqs
        getattr(client, method)(**action.params)
        if method == "update_function_configuration":
            # A function takes one configuration update at a time (LastUpdateStatus).
            lam.get_waiter("function_updated_v2").wait(
                FunctionName=action.params["FunctionName"],
                WaiterConfig={"Delay": 2, "MaxAttempts": 60})
