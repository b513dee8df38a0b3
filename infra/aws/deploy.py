"""`mbs deploy`: render the plan, then `sam build` and `sam deploy`; or apply a changed plan.

Every command is printed exactly as it runs, before it runs; --dry-run prints and runs nothing.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess  # nosec B404 - runs the sam CLI with a fixed argv list, no shell
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.aws.render import REPO_ROOT, Rendered

# `make test` installs aws-sam-cli here (its own virtual environment: it pins boto3 and click).
BUNDLED_SAM = REPO_ROOT / ".venv" / "iac" / "bin" / "sam"
Runner = Callable[[Sequence[str], Path], int]


class SamNotFound(FileNotFoundError):
    """No SAM CLI to run."""


def find_sam(explicit: str | None = None) -> str:
    """The SAM CLI: --sam, $MBS_SAM, `sam` on PATH, or the one `make test` installs."""
    for candidate in (explicit, os.environ.get("MBS_SAM"), shutil.which("sam")):
        if candidate:
            return candidate
    if BUNDLED_SAM.exists():
        return str(BUNDLED_SAM)
    raise SamNotFound("no SAM CLI found: install aws-sam-cli (pip install aws-sam-cli, or "
                      "`make iac-tools`), or pass --sam PATH")


@dataclass(frozen=True)
class SamCommands:
    cwd: Path
    build: list[str]
    deploy: list[str]

    def lines(self) -> list[str]:
        return [f"$ cd {shlex.quote(str(self.cwd))}", f"$ {shlex.join(self.build)}",
                f"$ {shlex.join(self.deploy)}"]


def sam_commands(rendered: Rendered, stack_name: str, sam: str = "sam",
                 region: str | None = None) -> SamCommands:
    """sam build then sam deploy for a rendered directory; absolute paths, so cwd is moot."""
    out = rendered.out_dir.resolve()
    build_dir = out / ".aws-sam" / "build"
    build = [sam, "build", "--template-file", str(rendered.template.resolve()),
             "--build-dir", str(build_dir), "--config-file", str(rendered.samconfig.resolve())]
    deploy = [sam, "deploy", "--template-file", str(build_dir / "template.yaml"),
              "--config-file", str(rendered.samconfig.resolve()), "--stack-name", stack_name]
    if region:
        deploy += ["--region", region]
    return SamCommands(cwd=out, build=build, deploy=deploy)


def _run(argv: Sequence[str], cwd: Path) -> int:
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    # argv is built by sam_commands from fixed words and validated names, never a shell
    return subprocess.run(list(argv), cwd=cwd, env=env, check=False).returncode  # nosec B603


def run_sam(commands: SamCommands, dry_run: bool, echo: Callable[[str], None] = print,
            runner: Runner = _run) -> int:
    """Print each command, then run it (unless dry_run); stops at the first failure."""
    echo(commands.lines()[0])
    for argv, line in ((commands.build, commands.lines()[1]),
                       (commands.deploy, commands.lines()[2])):
        echo(line)
        if dry_run:
            continue
        code = runner(argv, commands.cwd)
        if code != 0:
            echo(f"mbs deploy: `{argv[0]} {argv[1]}` failed with exit code {code}")
            return code
    return 0
