"""The IaC tools on the template and images: cfn-lint, `sam validate --lint`, checkov, `sam build`
and hadolint on every Dockerfile. The gpu plan's template is linted with the repository's cfn-lint
override spec, which teaches cfn-lint 1.58.0 the documented AcceleratorConfig (ARCHITECTURE.md).

Marked `iac`: each runs a tool as a subprocess (seconds each; about a minute in all). `make test`
installs aws-sam-cli and checkov into .venv/iac and sets MBS_REQUIRE_IAC_TOOLS=1, so there a
missing tool fails instead of skipping.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from buffers.plan import Plan
from infra.aws.cfn_lint import CFN_LINT_OVERRIDE_SPEC
from infra.aws.render import REPO_ROOT, _Dumper, build_template, render_template
from tests.test_render import shipped, varied_plan

pytestmark = pytest.mark.iac
IAC_BIN = REPO_ROOT / ".venv" / "iac" / "bin"
ENV = {**os.environ, "SAM_CLI_TELEMETRY": "0", "BC_SKIP_MAPPING": "TRUE"}
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024  # Lambda quotas: zip package, unzipped


def tool(name: str) -> str:
    """A tool from .venv/iac (or PATH); skip, or fail under `make test`, when it is missing."""
    for candidate in (IAC_BIN / name, Path(sys.executable).parent / name):
        if candidate.exists():
            return str(candidate)
    if found := shutil.which(name):
        return found
    message = f"{name} is not installed: run `make iac-tools`"
    if os.environ.get("MBS_REQUIRE_IAC_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env or ENV, capture_output=True, text=True,
                          timeout=600, check=False)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The root template (default plan, 4 buffers), renders of 1-, 2- and 4-buffer plans, and
    the gpu plan's (with its .cfnlintrc.yaml and override spec beside it)."""
    out = {"default": REPO_ROOT / "template.yaml"}
    for name, plan in (("batch", shipped("batch")), ("managed", shipped("managed")),
                       ("varied", varied_plan()), ("gpu", shipped("gpu"))):
        out[name] = render_template(plan, tmp_path_factory.mktemp(name), stage=False).template
    return out


def test_cfn_lint_is_clean_including_informational_rules(rendered: dict[str, Path]) -> None:
    result = run([tool("cfn-lint"), "--include-checks", "I", "--override-spec",
                  str(CFN_LINT_OVERRIDE_SPEC), "--", *map(str, rendered.values())], REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_override_spec_hides_nothing_but_accelerator_config(
        rendered: dict[str, Path]) -> None:
    # WHEN cfn-lint reads the gpu template without the override spec
    result = run([tool("cfn-lint"), "--include-checks", "I", "--format", "json", "--",
                  str(rendered["gpu"])], REPO_ROOT)
    matches = json.loads(result.stdout)
    # THEN its only finding is the property its schema lacks. Once a cfn-lint knows
    # AcceleratorConfig this fails: delete the override spec (ARCHITECTURE.md says so).
    assert matches, ("this cfn-lint knows AcceleratorConfig: delete "
                     "infra/aws/cfnlint/override-spec.json and the .cfnlintrc.yaml render")
    assert {(m["Rule"]["Id"], m["Message"].split("(")[-1]) for m in matches} == {
        ("E3002", "'AcceleratorConfig' was unexpected)")}, matches


@pytest.mark.parametrize("name", ["default", "batch", "gpu"])
def test_sam_validate_lint(rendered: dict[str, Path], name: str) -> None:
    template = rendered[name]
    result = run([tool("sam"), "validate", "--lint", "--template-file", str(template)],
                 template.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_checkov_finds_no_failed_check_and_every_skip_has_a_reason(
        rendered: dict[str, Path]) -> None:
    files = [rendered["default"], rendered["varied"], rendered["gpu"]]
    argv = [tool("checkov"), "--framework", "cloudformation", "--skip-download",
            "--output", "json"]
    for path in files:
        argv += ["-f", str(path)]
    result = run(argv, REPO_ROOT)
    reports = json.loads(result.stdout)
    for report in reports if isinstance(reports, list) else [reports]:
        assert report["summary"]["failed"] == 0, [
            (c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
        assert report["summary"]["passed"] > 0
        for check in report["results"]["skipped_checks"]:
            assert len(check["check_result"].get("suppress_comment", "")) > 20, check["check_id"]
    assert result.returncode == 0, result.stderr[-2000:]


def dockerfiles() -> list[Path]:
    """Every Dockerfile of the repository (not the rendered copies under out/ or .aws-sam/)."""
    return sorted(p for p in REPO_ROOT.rglob("*Dockerfile*") if p.is_file() and not any(
        part.startswith(".") or part == "out" for part in p.relative_to(REPO_ROOT).parts))


def test_hadolint_finds_nothing_in_any_dockerfile() -> None:
    files = dockerfiles()
    assert {p.name for p in files} >= {"infer.Dockerfile", "dispatcher.Dockerfile",
                                       "infer-gpu.Dockerfile"}
    result = run([tool("hadolint"), "--no-color", *map(str, files)], REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def python312() -> Path | None:
    """Python 3.12, the functions' runtime, which `sam build` needs on PATH."""
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))
    candidates = [Path(p) for p in found]
    if which := shutil.which("python3.12"):
        candidates.append(Path(which))
    for candidate in candidates:
        probe = subprocess.run([str(candidate), "--version"], capture_output=True, text=True,
                               check=False)
        if probe.returncode == 0 and "3.12" in probe.stdout:
            return candidate
    return None


def _zip_only(plan: Plan, path: Path) -> None:
    """The plan's template with only the zip functions: the image needs a Docker engine."""
    template = build_template(plan)
    template["Resources"] = {k: v for k, v in template["Resources"].items()
                             if k in ("IngestFunction", "ResultsFunction")}
    for section in ("Rules", "Conditions", "Outputs"):
        template.pop(section)
    path.write_text(yaml.dump(template, Dumper=_Dumper, sort_keys=False), encoding="utf-8")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sam_build_of_the_zip_functions(tmp_path: Path) -> None:
    interpreter = python312()
    if interpreter is None:
        pytest.skip("python3.12 not found (pyenv or PATH): sam build needs the runtime's Python")
    sam = tool("sam")
    # GIVEN the 1-buffer plan rendered, with its code staged
    rendered = render_template(shipped("batch"), tmp_path)
    _zip_only(shipped("batch"), tmp_path / "zip-only.yaml")
    env = {**ENV, "PATH": f"{interpreter.parent}{os.pathsep}{ENV['PATH']}"}
    # WHEN sam builds the ingest and results functions
    result = run([sam, "build", "--template-file", "zip-only.yaml", "--build-dir", "build"],
                 tmp_path, env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # THEN each artifact holds the repo's handler code, the tokenizer and the pinned deps
    for name in ("IngestFunction", "ResultsFunction"):
        artifact = tmp_path / "build" / name
        for module in ("functions/ingest.py", "functions/results.py", "functions/infer.py",
                       "buffers/plan.py", "buffers/router.py"):
            assert _digest(artifact / module) == _digest(REPO_ROOT / module), module
        assert _digest(artifact / "tokenizer" / "tokenizer.json") == _digest(
            rendered.code_dir / "tokenizer" / "tokenizer.json")
        assert any(artifact.glob("numpy/_core/*cpython-312-x86_64-linux-gnu.so"))
        size = sum(p.stat().st_size for p in artifact.rglob("*") if p.is_file())
        assert size < LAMBDA_UNZIPPED_LIMIT_BYTES, size
    # AND the built ingest artifact imports and tokenizes on Python 3.12 as the local stack does
    from functions.shared.tokenizer import count_tokens

    text = "Multi-buffer serving batches requests of similar length."
    artifact = tmp_path / "build" / "IngestFunction"
    probe = subprocess.run(
        [str(IAC_BIN / "python"), "-c",
         "import sys, functions.ingest, functions.results\n"
         "from functions.shared.tokenizer import count_tokens\n"
         f"print(sys.version_info[:2], count_tokens({text!r}).length)"],
        cwd=artifact, capture_output=True, text=True, check=False,
        env={**ENV, "PYTHONPATH": str(artifact), "MBS_MODEL_DIR": str(artifact / "tokenizer")})
    if "(3, 12)" not in probe.stdout and probe.returncode == 0:
        pytest.skip(".venv/iac is not Python 3.12: the import check needs the runtime's Python")
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.split()[-1] == str(count_tokens(text).length)
