"""`mbs profile`: measure the model over batch x length, fit the latency model, write a profile."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from infra.cli.common import add_report_flags, emit
from optimizer.platform.latency_model import LatencyModel
from optimizer.profiling.profiler import MAX_FOREIGN_CORES

DEFAULT_BATCHES = "1,2,4,8,16,32,64"
DEFAULT_LENGTHS = "16,32,64,128,256"


def parse_sizes(text: str, flag: str) -> list[int]:
    """A comma-separated list of positive integers, e.g. '1,2,4'; errors name the bad value."""
    values = []
    for item in text.split(","):
        try:
            value = int(item.strip())
        except ValueError:
            raise ValueError(f"{flag}: {item.strip()!r} is not an integer (in {text!r})") from None
        if value < 1:
            raise ValueError(f"{flag}: values must be >= 1, got {value} (in {text!r})")
        values.append(value)
    return sorted(set(values))


def _check_counts(args: argparse.Namespace) -> None:
    for flag, value, least in (("--repeats", args.repeats, 1), ("--warmup", args.warmup, 0),
                               ("--cold-start-runs", args.cold_start_runs, 0)):
        if value < least:
            raise ValueError(f"{flag} must be >= {least}, got {value}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if not args.budget_s > 0:
        raise ValueError(f"--budget-s must be > 0, got {args.budget_s}")
    if not args.patience_s >= 0:
        raise ValueError(f"--patience-s must be >= 0, got {args.patience_s}")


def format_profile(profile: dict[str, Any]) -> str:
    """A table of measured median ms (batch rows x length columns) and the fit's error."""
    grid = {(g["batch"], g["length"]): g["median_ms"] for g in profile["grid"]}
    batches = sorted({b for b, _ in grid})
    lengths = sorted({length for _, length in grid})
    lines = [f"{profile['device_name']} ({profile['device']}), torch {profile['torch']}, "
             f"{profile['threads']} thread(s): median ms per forward pass",
             "batch \\ len " + "".join(f"{length:>10}" for length in lengths)]
    for b in batches:
        lines.append(f"{b:>11} " + "".join(f"{grid[(b, length)]:>10.1f}" for length in lengths))
    model = LatencyModel.from_dict(profile["latency_model"])
    fit = profile["fit"]
    lines += [
        f"fit: t = {model.fixed_ms:.3g} + {model.per_item_ms:.3g}*B + {model.per_token_ms:.3g}*B*L"
        f" + {model.per_token_sq_ms:.3g}*B*L^2 ms; relative error max "
        f"{fit['max_rel_err']:.1%}, median {fit['median_rel_err']:.1%}",
        f"Amdahl parallel fraction p = {model.parallel_fraction:.3f}"
        + (f" (1-thread check: max error {c['max_rel_err']:.1%})"
           if (c := profile["amdahl"].get("check")) else ""),
    ]
    crowded = [g for g in profile["grid"] if g.get("foreign_cores", 0.0) > MAX_FOREIGN_CORES]
    if crowded:
        lines.append(f"warning: {len(crowded)} of {len(grid)} points were timed while other "
                     f"processes used > {MAX_FOREIGN_CORES} cores (their times run high)")
    if profile.get("cold_start_ms") is not None:
        lines.append(f"cold start (imports + model load, fresh process): "
                     f"{profile['cold_start_ms']:.0f} ms")
    return "\n".join(lines)


def _from_reference(args: argparse.Namespace) -> int:
    from optimizer.profiling.reference import profile_from_reference

    path = Path(args.from_reference)
    if not path.is_file():
        raise ValueError(f"--from-reference: no file at {path}")
    try:
        reference = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"--from-reference: {path} is not JSON ({err})") from None
    emit(profile_from_reference(reference, source=str(path), dtype=args.dtype), args,
         format_profile, indent=1)
    return 0


def run(args: argparse.Namespace) -> int:
    """Measure (or, with --from-reference, convert), fit, print and write the profile."""
    if args.from_reference:
        return _from_reference(args)
    batches = parse_sizes(args.batches, "--batches")
    lengths = parse_sizes(args.lengths, "--lengths")
    _check_counts(args)
    from tqdm import tqdm

    from optimizer.profiling.profiler import run_profile  # torch loads only when profiling

    passes = 1 if args.device.startswith("cuda") or args.threads == 1 else 2
    # disable=None: a bar on a terminal only, never carriage-return updates in a log or pipe
    with tqdm(total=passes * len(batches) * len(lengths), unit="point", file=sys.stderr,
              disable=None) as bar:
        def on_point(label: str, point: Any) -> None:
            bar.set_postfix_str(f"{label} {point.batch}x{point.length} {point.median_ms:.0f} ms")
            bar.update()

        profile = run_profile(batches, lengths, device=args.device, warmup=args.warmup,
                              repeats=args.repeats, threads=args.threads,
                              budget_s=args.budget_s, patience_s=args.patience_s,
                              cold_start_runs=args.cold_start_runs,
                              on_point=on_point)
    emit(profile, args, format_profile, indent=1)
    return 0


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `mbs profile` (the workload flags do not apply: it times fixed shapes)."""
    prof = sub.add_parser(
        "profile", help="measure the model's latency over batch x length and fit t(B, L)",
        description="Time the real model's forward pass (mean pooling included) over batch "
        "size x padded length, plus a 1-thread pass for the Amdahl scaling to Lambda's CPU "
        "share and the cold-load time; fit t(B, L) and write the profile JSON.")
    prof.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    prof.add_argument("--batches", default=DEFAULT_BATCHES, help="default %(default)s")
    prof.add_argument("--lengths", default=DEFAULT_LENGTHS,
                      help="padded lengths in tokens (default %(default)s)")
    prof.add_argument("--repeats", type=int, default=10,
                      help="timed runs per point, fewer for slow points (default %(default)s)")
    prof.add_argument("--warmup", type=int, default=2, help="untimed runs per point")
    prof.add_argument("--threads", type=int, default=None,
                      help="torch threads for the main pass (default: torch's, all cores)")
    prof.add_argument("--budget-s", type=float, default=2.0, metavar="S",
                      help="about this much timed work per point, at least 3 runs (default 2)")
    prof.add_argument("--patience-s", type=float, default=60.0, metavar="S",
                      help="when other processes load the CPU during a point, wait up to S "
                           "for quiet before each of 3 retries (default 60; 0 = never)")
    prof.add_argument("--cold-start-runs", type=int, default=3, metavar="N",
                      help="fresh processes timed for the cold load (0 = skip; default 3)")
    prof.add_argument("--from-reference", metavar="FILE",
                      help="measure nothing: build a GPU profile from a reference timing file "
                           "of 'dtype:BxL' -> ms (e.g. shared/reference/minilm_h100_ms.json)")
    prof.add_argument("--dtype", default="float32",
                      help="with --from-reference, which dtype's entries (default %(default)s)")
    add_report_flags(prof, "profile")
    return prof
