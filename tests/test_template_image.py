"""Building and pushing the dispatcher image: ECR in moto, docker through a recording runner."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from infra.aws.image import (
    ImagePushFailed,
    docker_commands,
    image_tag,
    push_dispatcher_image,
    repository_name,
)
from infra.aws.render import Rendered, render_template
from tests.test_render import shipped


@pytest.fixture
def ecr(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for key, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield boto3.client("ecr")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return render_template(shipped("batch"), tmp_path_factory.mktemp("render"))


class Recorder:
    """A docker runner that records each call and answers with the given exit codes."""

    def __init__(self, codes: dict[str, int] | None = None) -> None:
        self.calls: list[tuple[list[str], bytes | None]] = []
        self.codes = codes or {}

    def __call__(self, argv: Sequence[str], cwd: Path, stdin: bytes | None) -> int:
        self.calls.append((list(argv), stdin))
        return self.codes.get(argv[1], 0)


def test_the_tag_hashes_exactly_what_the_dockerfile_copies(tmp_path: Path) -> None:
    code = render_template(shipped("batch"), tmp_path).code_dir
    tag = image_tag(code)
    assert tag.startswith("d-") and len(tag) == 18 and image_tag(code) == tag
    (code / "requirements.txt").write_text("not in the dispatcher image\n")
    assert image_tag(code) == tag  # the zip functions' file is not copied
    (code / "buffers" / "plan.py").write_text("changed = True\n")
    assert image_tag(code) != tag


def test_push_creates_the_repository_builds_logs_in_and_pushes(ecr: object,
                                                               rendered: Rendered) -> None:
    # GIVEN no repository yet
    runner, printed = Recorder(), []
    # WHEN the image is pushed for stack "MBS-Prod"
    image = push_dispatcher_image(rendered, "MBS-Prod", ecr, echo=printed.append, runner=runner)
    # THEN the repository exists with immutable tags and scanning, named after the stack
    (repo,) = ecr.describe_repositories()["repositories"]
    assert repo["repositoryName"] == repository_name("MBS-Prod") == "mbs-prod-dispatcher"
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert image.uri == f"{repo['repositoryUri']}:{image_tag(rendered.code_dir)}"
    # AND docker ran build, login (password on stdin, never in argv or output), push, as printed
    assert [argv[1] for argv, _ in runner.calls] == ["build", "login", "push"]
    assert [argv for argv, _ in runner.calls] == docker_commands(rendered, image)
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    password = base64.b64decode(token).split(b":", 1)[1]
    assert runner.calls[1][1] == password
    assert password.decode() not in json.dumps([printed, [a for a, _ in runner.calls]])
    build = runner.calls[0][0]
    assert build[build.index("--platform") + 1] == "linux/amd64"
    assert Path(build[build.index("-f") + 1]).name == "dispatcher.Dockerfile"


def test_an_image_already_pushed_is_not_built_again(ecr: object, rendered: Rendered) -> None:
    tag = image_tag(rendered.code_dir)
    name = repository_name("mbs")
    ecr.create_repository(repositoryName=name)
    manifest = {"schemaVersion": 2, "mediaType":
                "application/vnd.docker.distribution.manifest.v2+json", "config": {}, "layers": []}
    ecr.put_image(repositoryName=name, imageManifest=json.dumps(manifest), imageTag=tag)
    runner, printed = Recorder(), []
    image = push_dispatcher_image(rendered, "mbs", ecr, echo=printed.append, runner=runner)
    assert runner.calls == [] and image.tag == tag
    assert "already pushed" in printed[-1]


def test_dry_run_prints_the_steps_and_runs_nothing(rendered: Rendered) -> None:
    runner, printed = Recorder(), []
    push_dispatcher_image(rendered, "mbs", ecr=None, dry_run=True, echo=printed.append,
                          runner=runner)
    assert runner.calls == []
    assert [line.split()[1:3] for line in printed[1:]] == [
        ["docker", "build"], ["docker", "login"], ["docker", "push"]]


def test_a_failed_build_stops_before_the_push(ecr: object, rendered: Rendered) -> None:
    runner = Recorder({"build": 1})
    with pytest.raises(ImagePushFailed, match="`docker build` failed with exit code 1"):
        push_dispatcher_image(rendered, "mbs", ecr, echo=lambda _: None, runner=runner)
    assert [argv[1] for argv, _ in runner.calls] == ["build"]
