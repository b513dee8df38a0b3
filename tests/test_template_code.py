"""The code the template deploys is the code the local stack runs: same handlers, same files."""

from __future__ import annotations

import ast
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from infra.aws.render import REPO_ROOT, build_template, render_template
from infra.aws.template.common import CODE_DIR
from tests.test_render import shipped

HANDLER_MODULES = ("functions.ingest", "functions.results", "functions.infer", "functions.dlq")


def _template_handlers(template: dict[str, Any]) -> dict[str, str]:
    """Logical id -> handler of every function in the template."""
    out = {}
    for logical, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            props = resource["Properties"]
            out[logical] = props.get("Handler") or props["ImageConfig"]["Command"][0]
    return out


def _local_stack_handlers() -> tuple[dict[str, str], set[str]]:
    """From infra/local/stack.py: HTTP route -> handler, and every handler it calls."""
    tree = ast.parse((REPO_ROOT / "infra" / "local" / "stack.py").read_text())
    modules = {alias.asname or alias.name: f"{node.module}.{alias.name}"
               for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               and node.module == "functions" for alias in node.names}
    routes, used = {}, set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr == "handler"
                and isinstance(node.value, ast.Name) and node.value.id in modules):
            used.add(f"{modules[node.value.id]}.handler")
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Route":
            method, path = (arg.value for arg in node.args[:2])
            target = node.args[3]
            routes[f"{method} {path}"] = f"{modules[target.value.id]}.handler"
    return routes, used


def test_template_deploys_every_handler_the_local_stack_runs_and_no_other() -> None:
    template = build_template(shipped("default"))
    handlers = _template_handlers(template)
    routes, used = _local_stack_handlers()
    # Each HTTP route reaches the same handler on AWS as in the local gateway.
    res = template["Resources"]
    deployed_routes = {}
    for route in (r for r in res.values() if r["Type"] == "AWS::ApiGatewayV2::Route"):
        integration = route["Properties"]["Target"]["Fn::Sub"].removeprefix("integrations/")
        function = res[integration.strip("${}")]["Properties"]["IntegrationUri"]["Fn::GetAtt"][0]
        deployed_routes[route["Properties"]["RouteKey"]] = handlers[function]
    assert deployed_routes == routes
    assert set(handlers.values()) == used


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_staged_code_is_the_repos_module_for_module(tmp_path: Path) -> None:
    # GIVEN the code `mbs render` stages for sam build and the image
    code = render_template(shipped("batch"), tmp_path).code_dir
    # WHEN every handler is imported from the staged directory alone
    probe = ("import json, sys\n"
             f"for name in {HANDLER_MODULES!r}:\n"
             "    module = __import__(name, fromlist=['handler'])\n"
             "    assert callable(module.handler), name\n"
             f"root = {str(code)!r}\n"
             "files = [getattr(m, '__file__', None) or '' for m in list(sys.modules.values())]\n"
             "print(json.dumps(sorted(f[len(root) + 1:] for f in files if f.startswith(root))))\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=code, capture_output=True,
                            text=True, check=False, env={"PYTHONPATH": str(code)})
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    # THEN each module they load is byte for byte the file the local stack imports
    assert {"functions/ingest.py", "functions/shared/store.py", "buffers/plan.py"} <= set(loaded)
    for relative in loaded:
        assert _digest(code / relative) == _digest(REPO_ROOT / relative), relative


def test_the_image_runs_the_templates_handler_on_the_staged_code() -> None:
    template = build_template(shipped("default"))
    dockerfile = (REPO_ROOT / "infra" / "docker" / "infer.Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (.+)$", dockerfile, re.M).group(1))
    assert re.search(r"^FROM public\.ecr\.aws/lambda/python:3\.12$", dockerfile, re.M)
    assert re.search(r"--index-url https://download\.pytorch\.org/whl/cpu torch==", dockerfile)
    copied = re.findall(r"^COPY (\S+)/ ", dockerfile, re.M)
    assert copied == ["functions", "buffers"]
    for resource in template["Resources"].values():
        if resource["Properties"].get("PackageType") == "Image":
            assert resource["Properties"]["ImageConfig"]["Command"] == cmd
            assert resource["Metadata"]["DockerContext"] == CODE_DIR  # the staged code
            assert resource["Metadata"]["Dockerfile"] == "Dockerfile"
