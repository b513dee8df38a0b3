"""Build the dispatcher image and push it to ECR before `sam deploy` (SAM builds Lambda images
only; ARCHITECTURE.md, "The online path on AWS").

`push_dispatcher_image` prints each step before it runs it (--dry-run: prints only):
1. the ECR repository `<stack>-dispatcher` is created if missing (scan on push, immutable tags);
2. if the registry has no image with this tag: docker build, docker login (the password from
   ecr:GetAuthorizationToken, passed on stdin), docker push.
The tag is a hash of the build context, so an unchanged dispatcher is neither pushed again nor
rolled out again; immutable tags keep one tag one image. The stack then takes the repository and
tag as its DispatcherImageRepository and DispatcherImageTag parameters (DeployParams).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shlex
import subprocess  # nosec B404 - runs docker with a fixed argv list, no shell
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.aws.render import DISPATCHER_DOCKERFILE, Rendered

# What dispatcher.Dockerfile copies from the staged context: the tag hashes exactly these.
CONTEXT_ENTRIES = (DISPATCHER_DOCKERFILE.name, "requirements-dispatcher.txt", "buffers",
                   "functions", "infra", "optimizer", "tokenizer")
PLATFORM = "linux/amd64"  # the task definition's RuntimePlatform (X86_64)
DockerRunner = Callable[[Sequence[str], Path, bytes | None], int]


@dataclass(frozen=True)
class DispatcherImage:
    """Where the stack finds the dispatcher image: an ECR repository of its account and region."""

    repository: str
    tag: str
    registry: str  # ACCOUNT.dkr.ecr.REGION.amazonaws.com

    @property
    def uri(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"


def repository_name(stack_name: str) -> str:
    """The stack's dispatcher repository (ECR names are lower case)."""
    return f"{stack_name.lower()}-dispatcher"


def image_tag(context: Path) -> str:
    """A hash of the files the Dockerfile copies from `context`: same code, same tag."""
    digest = hashlib.sha256()
    for entry in CONTEXT_ENTRIES:
        root = context / entry
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()
                                                     and "__pycache__" not in p.parts)
        for path in files:
            digest.update(path.relative_to(context).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return f"d-{digest.hexdigest()[:16]}"


def ensure_repository(ecr: Any, name: str) -> str:
    """Create the repository unless it exists; return its registry host."""
    try:
        uri = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]["repositoryUri"]
    except ecr.exceptions.RepositoryNotFoundException:
        uri = ecr.create_repository(
            repositoryName=name, imageTagMutability="IMMUTABLE",
            imageScanningConfiguration={"scanOnPush": True},
            encryptionConfiguration={"encryptionType": "AES256"})["repository"]["repositoryUri"]
    return uri.split("/", 1)[0]


def has_image(ecr: Any, name: str, tag: str) -> bool:
    try:
        ecr.describe_images(repositoryName=name, imageIds=[{"imageTag": tag}])
    except ecr.exceptions.ImageNotFoundException:
        return False
    return True


def docker_commands(rendered: Rendered, image: DispatcherImage,
                    docker: str = "docker") -> list[list[str]]:
    """docker build, login and push for `image` (login reads its password from stdin)."""
    context = rendered.code_dir.resolve()
    return [
        [docker, "build", "--platform", PLATFORM, "-f", str(context / DISPATCHER_DOCKERFILE.name),
         "-t", image.uri, str(context)],
        [docker, "login", "--username", "AWS", "--password-stdin", image.registry],
        [docker, "push", image.uri],
    ]


def _run(argv: Sequence[str], cwd: Path, stdin: bytes | None) -> int:
    # argv is built by docker_commands from fixed words, paths and the ECR URI, never a shell
    return subprocess.run(list(argv), cwd=cwd, input=stdin, check=False,  # nosec B603
                          env={**os.environ, "DOCKER_CLI_HINTS": "false"}).returncode


def _login_password(ecr: Any) -> bytes:
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    return base64.b64decode(token).split(b":", 1)[1]  # "AWS:<password>"


class ImagePushFailed(RuntimeError):
    """A docker step failed; the message names it and its exit code."""


def push_dispatcher_image(rendered: Rendered, stack_name: str, ecr: Any, dry_run: bool = False,
                          echo: Callable[[str], None] = print, runner: DockerRunner = _run,
                          docker: str = "docker") -> DispatcherImage:
    """Make sure the registry holds the dispatcher image of `rendered`'s staged code.

    Parameters
    ----------
    rendered: a render with its code staged (render_template(..., stage=True)).
    ecr: a boto3 ECR client in the stack's account and region.
    dry_run: print the steps, create and run nothing.

    Returns
    -------
    DispatcherImage: the repository and tag to pass to the stack (DeployParams).
    """
    name = repository_name(stack_name)
    tag = image_tag(rendered.code_dir)
    echo(f"# ECR repository {name} (created if missing; immutable tags, scan on push)")
    if dry_run:
        image = DispatcherImage(name, tag, "ACCOUNT.dkr.ecr.REGION.amazonaws.com")
    else:
        image = DispatcherImage(name, tag, ensure_repository(ecr, name))
        if has_image(ecr, name, tag):
            echo(f"# {image.uri} is already pushed: nothing to build")
            return image
    for argv in docker_commands(rendered, image, docker):
        echo(f"$ {shlex.join(argv)}")
        if dry_run:
            continue
        stdin = _login_password(ecr) if argv[1] == "login" else None
        code = runner(argv, rendered.out_dir, stdin)
        if code != 0:
            raise ImagePushFailed(f"`{argv[0]} {argv[1]}` failed with exit code {code}")
    return image
