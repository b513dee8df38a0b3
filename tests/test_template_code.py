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

import pytest

from infra.aws.render import REPO_ROOT, build_template, render_template
from infra.aws.template.common import CODE_DIR, EMBED_HANDLER
from infra.aws.template.ingress import EMBEDDINGS_ROUTE
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
    # Each HTTP route to a function reaches the same handler on AWS as in the local gateway;
    # POST /v1/embeddings goes to the dispatcher service instead (checked below).
    res = template["Resources"]
    deployed_routes = {}
    for route in (r for r in res.values() if r["Type"] == "AWS::ApiGatewayV2::Route"):
        integration = route["Properties"]["Target"]["Fn::Sub"].removeprefix("integrations/")
        uri = res[integration.strip("${}")]["Properties"]["IntegrationUri"]["Fn::GetAtt"]
        if uri == ["DispatcherDiscovery", "Arn"]:
            assert route["Properties"]["RouteKey"] == EMBEDDINGS_ROUTE
            continue
        deployed_routes[route["Properties"]["RouteKey"]] = handlers[uri[0]]
    assert deployed_routes == routes
    # The online handler runs behind the dispatcher, which invokes it by function name.
    assert set(handlers.values()) == used | {EMBED_HANDLER}
    (container,) = res["DispatcherTaskDefinition"]["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    invoked = {v.strip("${}") for v in json.loads(env["MBS_INFER_FUNCTIONS"]["Fn::Sub"]).values()}
    assert {handlers[f] for f in invoked} == {EMBED_HANDLER}


def test_the_online_handler_is_a_module_of_functions() -> None:
    module = EMBED_HANDLER.rsplit(".", 1)[0]
    path = REPO_ROOT / (module.replace(".", "/") + ".py")
    if not path.exists():
        pytest.skip(f"{path.relative_to(REPO_ROOT)} is not in this checkout yet (issue 12)")
    probe = subprocess.run([sys.executable, "-c", f"import {module}; print({EMBED_HANDLER!r})"],
                           cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert probe.returncode == 0, probe.stderr[-2000:]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# The venv's editable install of the project would import a module the staged directory lacks
# from the repository instead, and hide it; the probes import from the staged code alone.
_WITHOUT_EDITABLE_INSTALL = ("import sys\n"
                             "sys.meta_path[:] = [f for f in sys.meta_path\n"
                             "                    if 'editable' not in repr(f).lower()]\n")


def test_staged_code_is_the_repos_module_for_module(tmp_path: Path) -> None:
    # GIVEN the code `mbs render` stages for sam build and the image
    code = render_template(shipped("batch"), tmp_path).code_dir
    # WHEN every handler is imported from the staged directory alone
    probe = (_WITHOUT_EDITABLE_INSTALL + "import json\n"
             f"for name in {HANDLER_MODULES!r}:\n"
             "    module = __import__(name, fromlist=['handler'])\n"
             "    assert callable(module.handler), name\n"
             "unstaged = [n for n in sys.modules if n.split('.')[0] in "
             "('infra', 'optimizer', 'tests', 'benchmarks')]\n"
             "assert not unstaged, f'handlers import code that is not staged: {unstaged}'\n"
             f"root = {str(code)!r}\n"
             "files = [getattr(m, '__file__', None) or '' for m in list(sys.modules.values())]\n"
             "print(json.dumps(sorted(f[len(root) + 1:] for f in files if f.startswith(root))))\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=code, capture_output=True,
                            text=True, check=False, env={"PYTHONPATH": str(code)})
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    # THEN each module they load is byte for byte the file the local stack imports
    assert {"functions/ingest.py", "functions/shared/store.py", "buffers/plan.py",
            "functions/logic/submit.py"} <= set(loaded)
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
            # Bulk functions run the image's CMD; online ones override it with their handler.
            online = resource.get("Condition") == "HasDispatcher"
            assert resource["Properties"]["ImageConfig"]["Command"] == (
                [EMBED_HANDLER] if online else cmd)
            assert resource["Metadata"]["DockerContext"] == CODE_DIR  # the staged code
            assert resource["Metadata"]["Dockerfile"] == "Dockerfile"


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _with_dependencies(pins: list[str]) -> set[str]:
    """The pinned distributions and everything they require (outside extras), installed here."""
    from importlib import metadata

    found, todo = set(), [p.split("==")[0] for p in pins]
    while todo:
        name = _normal(todo.pop())
        if name in found:
            continue
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # a requirement whose marker excludes this Python (exceptiongroup on 3.11+)
        found.add(name)
        for requirement in requires:
            if "extra ==" not in requirement:
                todo.append(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))
    return found


_IMPORT_DISPATCHER = _WITHOUT_EDITABLE_INSTALL + """\
import ast, importlib, json, pathlib, pkgutil
import infra.dispatcher as package
names = [m.name for m in pkgutil.iter_modules(package.__path__, 'infra.dispatcher.')
         if not m.name.endswith('__main__')]
main = pathlib.Path(package.__path__[0]) / '__main__.py'
if main.exists():  # what `python -m infra.dispatcher` imports, without starting the server
    for node in ast.walk(ast.parse(main.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module)
for name in names:
    importlib.import_module(name)
files = [getattr(m, '__file__', None) or '' for m in list(sys.modules.values())]
print(json.dumps({'top': sorted({n.split('.')[0] for n in sys.modules}),
                  'outside': [f for f in files if f.startswith(%r)]}))  # the repo's packages
"""


def test_the_dispatcher_image_has_every_module_and_package_the_service_imports(
        tmp_path: Path) -> None:
    from importlib import metadata

    # GIVEN the staged build context of the dispatcher image
    code = render_template(shipped("batch"), tmp_path).code_dir
    dockerfile = (code / "dispatcher.Dockerfile").read_text()
    assert re.search(r'^CMD \["python", "-m", "infra\.dispatcher"\]$', dockerfile, re.M)
    assert re.findall(r"^COPY (\S+)/ ", dockerfile, re.M) == [
        "buffers", "functions", "infra", "optimizer", "tokenizer"]
    # WHEN every module of infra.dispatcher is imported from that directory alone
    repo_packages = tuple(f"{REPO_ROOT / p}/" for p in ("buffers", "functions", "infra",
                                                         "optimizer"))
    probe = subprocess.run([sys.executable, "-c", _IMPORT_DISPATCHER % (repo_packages,)],
                           cwd=code, capture_output=True, text=True, check=False,
                           env={"PYTHONPATH": str(code), "MBS_MODEL_DIR": str(code / "tokenizer")})
    assert probe.returncode == 0, probe.stderr[-3000:]
    loaded = json.loads(probe.stdout)
    assert loaded["outside"] == []  # nothing came from the repository instead
    # THEN each third-party package it loads is pinned, or a dependency of a pin, for pip
    pins = (code / "requirements-dispatcher.txt").read_text().split()
    installable = _with_dependencies(pins)
    owners = metadata.packages_distributions()
    local = {"buffers", "functions", "infra", "optimizer"}
    third_party = {top for top in loaded["top"] if top not in sys.stdlib_module_names
                   and top not in local and not top.startswith("_")}
    missing = {top for top in third_party
               if not {_normal(d) for d in owners.get(top, [top])} & installable}
    assert not missing, f"add to DISPATCHER_REQUIREMENTS in infra/aws/render.py: {missing}"
