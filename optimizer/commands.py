"""CLI subcommands that live beside their code, registered into `mbs` (infra/cli.py).

Each registrar is `register(subparsers, add_workload_flags, workload_spec)`: it adds one
subparser and sets `func` to a function taking the parsed args and returning an exit code.
"""

from __future__ import annotations

from typing import Any

from infra.deploy_cmd import register as register_deploy
from optimizer.compare_cmd import register as register_compare
from optimizer.optimize_cmd import register as register_optimize
from optimizer.profile_cmd import register as register_profile
from optimizer.simulate_cmd import register as register_simulate

REGISTRARS: list[Any] = [register_profile, register_simulate, register_deploy,
                         register_compare, register_optimize]
