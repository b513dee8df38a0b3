"""`mbs render` and `mbs deploy`: what they write, print and run."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

import boto3
import pytest

from infra.aws.deploy import run_sam, sam_commands
from infra.aws.render import render_template
from infra.cli.main import main
from tests.test_render import VARIED_PLAN, shipped
from tests.test_template_moto import aws_env, create_stack  # noqa: F401 - the fixture


def mbs(*argv: str) -> int:
    """Run `mbs ARGV`, as the console script does."""
    return main(list(argv))


def test_render_writes_template_samconfig_parameters_and_code(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture
                                                              ) -> None:
    assert mbs("render", "--plan", "batch", "--out", str(tmp_path), "--auth", "NONE",
               "--slo-ms", "2500") == 0
    for name in ("template.yaml", "samconfig.toml", "parameters.json",
                 ".aws-sam/mbs-src/functions/ingest.py"):
        assert (tmp_path / name).exists(), name
    params = {p["ParameterKey"]: p["ParameterValue"]
              for p in json.loads((tmp_path / "parameters.json").read_text())}
    assert params["AuthMode"] == "NONE" and params["SloMs"] == "2500"
    assert "rendered plan 'batch' (1 buffers)" in capsys.readouterr().out


def test_render_refuses_jwt_without_issuer(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert mbs("render", "--plan", "batch", "--out", str(tmp_path), "--auth", "JWT") == 2
    assert "jwt_issuer" in capsys.readouterr().err


def test_deploy_dry_run_prints_exactly_the_sam_commands(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "render"
    assert mbs("deploy", "--plan", "default", "--stack-name", "mbs-test", "--out", str(out),
               "--region", "eu-west-1", "--sam", "/opt/sam/bin/sam", "--dry-run",
               "--no-online") == 0
    lines = capsys.readouterr().out.splitlines()
    root = out.resolve()
    assert lines == [
        f"$ cd {root}",
        f"$ /opt/sam/bin/sam build --template-file {root}/template.yaml "
        f"--build-dir {root}/.aws-sam/build --config-file {root}/samconfig.toml",
        f"$ /opt/sam/bin/sam deploy --template-file {root}/.aws-sam/build/template.yaml "
        f"--config-file {root}/samconfig.toml --stack-name mbs-test --region eu-west-1",
    ]
    assert (root / "template.yaml").exists()  # the dry run still renders


def test_deploy_dry_run_builds_the_dispatcher_image_before_sam(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "render"
    assert mbs("deploy", "--plan", "default", "--stack-name", "mbs-test", "--out", str(out),
               "--region", "eu-west-1", "--sam", "/opt/sam/bin/sam", "--dry-run") == 0
    lines = capsys.readouterr().out.splitlines()
    # the image is built and pushed first (printed, not run), then sam deploys a stack whose
    # parameters name that image, so the online path's resources are in it
    docker = [i for i, line in enumerate(lines) if line.startswith("$ docker ")]
    sam = [i for i, line in enumerate(lines) if line.startswith("$ /opt/sam/bin/sam ")]
    assert docker and sam and max(docker) < min(sam)
    assert any(" push " in lines[i] for i in docker)
    samconfig = (out / "samconfig.toml").read_text()
    assert "DispatcherImageRepository=mbs-test-dispatcher" in samconfig.replace('\\"', "")
    assert "DispatcherImageTag=" in samconfig


def test_run_sam_runs_what_it_prints_and_stops_at_a_failure(tmp_path: Path) -> None:
    commands = sam_commands(render_template(shipped("batch"), tmp_path, stage=False), "mbs", "sam")
    printed: list[str] = []
    ran: list[tuple[list[str], Path]] = []

    def runner(argv: Sequence[str], cwd: Path) -> int:
        ran.append((list(argv), cwd))
        return 0 if argv[1] == "build" else 3

    assert run_sam(commands, dry_run=False, echo=printed.append, runner=runner) == 3
    assert [shlex.split(line[2:]) for line in printed[1:3]] == [argv for argv, _ in ran]
    assert {cwd for _, cwd in ran} == {tmp_path.resolve()}
    assert printed[-1] == "mbs deploy: `sam deploy` failed with exit code 3"
    ran.clear()
    assert run_sam(commands, dry_run=True, echo=printed.append, runner=runner) == 0
    assert ran == []


def test_deploy_apply_dry_run_prints_the_api_calls_and_changes_nothing(
        aws_env: None, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:  # noqa: F811
    create_stack(shipped("managed"))
    changed = json.loads(shipped("managed").to_json())
    changed["buffers"][0]["memory_mb"] = 2048
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(changed))
    assert mbs("deploy", "--plan", str(plan_file), "--stack-name", "mbs", "--apply",
               "--dry-run") == 0
    out = capsys.readouterr().out
    assert '$ lambda.update_function_configuration({"Environment": ' in out
    assert '"MemorySize": 2048' in out
    memories = {f["MemorySize"] for f in boto3.client("lambda").list_functions()["Functions"]
                if "InferShort" in f["FunctionName"]}
    assert memories == {shipped("managed").buffers[0].memory_mb}  # dry run: nothing changed
    assert mbs("deploy", "--plan", str(plan_file), "--stack-name", "mbs", "--apply") == 0
    assert "applied" in capsys.readouterr().out
    assert mbs("deploy", "--plan", str(plan_file), "--stack-name", "mbs", "--apply") == 0
    assert "nothing to apply" in capsys.readouterr().out


def test_deploy_apply_refuses_a_new_buffer_set(aws_env: None, tmp_path: Path,  # noqa: F811
                                              capsys: pytest.CaptureFixture) -> None:
    create_stack(shipped("managed"))
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(VARIED_PLAN))
    assert mbs("deploy", "--plan", str(plan_file), "--stack-name", "mbs", "--apply") == 2
    assert "run `mbs deploy`" in capsys.readouterr().err


def test_render_warns_loudly_when_dispatcher_buffers_round_to_whole_seconds(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert mbs("render", "--plan", "default", "--out", str(tmp_path), "--auth", "NONE") == 0
    err = capsys.readouterr().err
    # THEN the warning names each rounded window and the modelled p99 under it
    assert err.startswith("WARNING: plan 'default' has 4 dispatcher-mode buffer(s)")
    for name in ("short", "medium", "long", "xlong"):
        assert f"{name}: timeout 250 ms -> MaximumBatchingWindowInSeconds 1" in err
    planned, deployed = (float(v.replace(",", "")) for v in re.search(
        r"modelled p99 \(simulator, bundled trace [\w-]+\): ([\d,]+) ms as planned -> "
        r"([\d,]+) ms as deployed", err).groups())
    assert deployed > planned  # a 1 s window waits longer than a 250 ms timeout
    assert (tmp_path / "template.yaml").exists()


def test_strict_refuses_a_plan_that_would_round_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert mbs("render", "--plan", "default", "--out", str(tmp_path), "--strict") == 2
    err = capsys.readouterr().err
    assert "--strict" in err and "short (250 ms -> 1 s)" in err
    assert not (tmp_path / "template.yaml").exists()
    assert mbs("deploy", "--plan", "default", "--out", str(tmp_path), "--strict",
               "--dry-run") == 2


def test_a_managed_plan_renders_without_a_warning_even_under_strict(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert mbs("render", "--plan", "managed", "--out", str(tmp_path), "--strict") == 0
    assert "WARNING" not in capsys.readouterr().err


def test_render_refuses_jwt_without_audience(tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    assert mbs("render", "--plan", "managed", "--out", str(tmp_path), "--auth", "JWT",
               "--jwt-issuer", "https://issuer.example") == 2
    assert "jwt_audience" in capsys.readouterr().err
