"""CLI subcommands for the optimizer side (profile, simulate, ...), registered into `mbs`.

Each registrar is `register(subparsers, add_workload_flags, workload_spec)`: it adds one
subparser and sets `func` to a function taking the parsed args and returning an exit code.
"""

from __future__ import annotations

from typing import Any

REGISTRARS: list[Any] = []
