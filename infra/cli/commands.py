"""CLI subcommands that live beside their code, registered into `mbs` (infra/cli/main.py).

Each registrar is `register(subparsers, add_workload_flags, workload_spec)`: it adds one
subparser and sets `func` to a function taking the parsed args and returning an exit code.
"""

from __future__ import annotations

from typing import Any

from infra.cli.compare import register as register_compare
from infra.cli.deploy import register as register_deploy
from infra.cli.optimize import register as register_optimize
from infra.cli.profile import register as register_profile
from infra.cli.simulate import register as register_simulate

REGISTRARS: list[Any] = [register_profile, register_simulate, register_deploy,
                         register_compare, register_optimize]
