"""Flags that several `mbs` subcommands share, defined once, and the one plan-name lookup."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from buffers.plan import Plan
from buffers.plan_files import default_plan_path, load_plan
from optimizer.platform.latency_model import PROFILES_DIR
from optimizer.workload.traces import DEFAULT_PRESET, TRACE_PRESETS
from optimizer.workload.workloads import RateMode, WorkloadSpec

DEFAULT_SLO_MS = 1000.0
DEFAULT_PERCENTILE = 99.0
ARCHES = ("x86", "arm64")
# Shipped profiles by encoder, per backend: `--profile bert-base` picks the backend's own
# (the BERT-base ones are estimates scaled from MiniLM: optimizer/profiling/encoder_scaling.py).
# The -fp16 ones are for a GPU function run in float16, as serving stacks run encoders on GPUs
# (text-embeddings-inference's default dtype is float16 on its CUDA build: `impl Default for
# DType` in huggingface/text-embeddings-inference backends/src/dtype.rs); they have no lambda
# profile: CPU functions run float32 (functions/shared/model.py).
SHIPPED_ENCODERS = {"minilm": {"lambda": "cpu.json", "gpu": "gpu.json"},
                    "bert-base": {"lambda": "bert_base_cpu.json", "gpu": "bert_base_gpu.json"},
                    "minilm-fp16": {"gpu": "gpu_fp16.json"},
                    "bert-base-fp16": {"gpu": "bert_base_gpu_fp16.json"}}


def resolve_plan(value: str | None) -> Plan:
    """A plan file path, or the name of a shipped plan (default, batch, managed)."""
    if value is None:
        return load_plan(default_plan_path())
    path = Path(value)
    return load_plan(path if path.suffix == ".json" or path.exists() else default_plan_path(value))


def add_plan_flag(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """--plan: a plan file or a shipped plan's name (resolve_plan reads it)."""
    parser.add_argument("--plan", required=required,
                        help="plan file, or a shipped plan name" + (
                            "" if required else " (default: default)"))


def add_workload_flags(parser: argparse.ArgumentParser, duration: float | None) -> None:
    """The workload group: a bundled or own trace, own texts, the window, rate and seed."""
    group = parser.add_argument_group("workload")
    source = group.add_mutually_exclusive_group()
    source.add_argument("--workload", choices=sorted(TRACE_PRESETS), default=None,
                        help=f"a bundled real trace (default {DEFAULT_PRESET}, the bursty one)")
    source.add_argument("--trace", metavar="CSV",
                        help="your own trace: a CSV with a timestamp column (seconds or ISO)")
    group.add_argument("--texts", metavar="FILE",
                       help="your own texts: plain text, one per line, or JSON lines with a "
                            "'text' field (a .jsonl/.json file, or one whose first line is a "
                            "JSON object); default: Pang & Lee, 70%% sentences / 30%% review "
                            "passages")
    group.add_argument("--start", type=float, default=0.0, metavar="S",
                       help="start of the trace window, seconds (default 0)")
    group.add_argument("--duration", type=float, default=duration, metavar="S",
                       help="length of the trace window, seconds (default: %(default)s)")
    group.add_argument("--rate-scale", type=float, default=1.0, metavar="X",
                       help="multiply the arrival rate by X (default 1), as --rate-mode says")
    group.add_argument("--rate-mode", choices=[m.value for m in RateMode],
                       default=RateMode.COMPRESS.value,
                       help="compress (default): divide arrival times by X, so the window "
                            "lasts 1/X as long; superpose: lay X copies of the window over "
                            "itself, each shifted by a seeded random offset (wrapping around), "
                            "so the rate grows X-fold while the bursts and the duration stay "
                            "(what fleets that scale in minutes need). A fractional X adds one "
                            "more copy thinned to that fraction; X must be >= 1")
    group.add_argument("--seed", type=int, default=0,
                       help="seed for text sampling and the superposed offsets (default 0)")


def workload_spec(args: argparse.Namespace) -> WorkloadSpec:
    """The WorkloadSpec the workload flags describe."""
    return WorkloadSpec(
        preset=None if args.trace else (args.workload or DEFAULT_PRESET),
        trace_csv=args.trace, texts_file=args.texts, start_s=args.start,
        duration_s=args.duration, rate_scale=args.rate_scale, seed=args.seed,
        rate_mode=args.rate_mode)


def add_slo_flag(parser: argparse.ArgumentParser,
                 help_text: str = "latency SLO (default 1000)") -> None:
    """--slo-ms, in milliseconds (default 1000)."""
    parser.add_argument("--slo-ms", type=float, default=DEFAULT_SLO_MS, metavar="MS",
                        help=help_text)


def add_percentile_flag(parser: argparse.ArgumentParser) -> None:
    """--percentile: which latency percentile the SLO bounds."""
    parser.add_argument("--percentile", type=float, default=DEFAULT_PERCENTILE, metavar="P",
                        help="the SLO holds when the P-th latency percentile <= --slo-ms, "
                             "0 < P < 100 (default 99)")


def check_slo(slo_ms: float, percentile: float | None = None) -> None:
    """Fail before any work when --slo-ms or --percentile is out of range; names the value."""
    if not slo_ms > 0:
        raise ValueError(f"--slo-ms must be > 0, got {slo_ms}")
    if percentile is not None and not 0 < percentile < 100:
        raise ValueError(f"--percentile must be in (0, 100), got {percentile}")


def add_model_flags(parser: argparse.ArgumentParser,
                    profile_default: str = "the shipped CPU profile") -> None:
    """--profile and --pricing: the latency profile and price overrides to plan with."""
    parser.add_argument("--profile", metavar="FILE",
                        help=f"latency profile JSON (default: {profile_default}), or a "
                             f"shipped encoder: {', '.join(SHIPPED_ENCODERS)} (bert-base is "
                             "an estimate scaled from MiniLM, not measured; the -fp16 ones "
                             "are the gpu backend's only, a float16 GPU function)")
    parser.add_argument("--pricing", metavar="FILE", help="pricing overrides JSON")


def resolve_profile(value: str | None, backend: str,
                    backends: tuple[str, ...] | None = None) -> str | None:
    """The profile file `--profile` names for `backend`: None (the shipped default), a
    shipped encoder's name (SHIPPED_ENCODERS), a file, or one per backend ('CPU,GPU' in the
    order of `backends`)."""
    if value is None:
        return None
    backends = backends or (backend,)
    parts = [p.strip() for p in value.split(",")] if "," in value else [value] * len(backends)
    if len(parts) != len(backends):
        raise ValueError(f"--profile names {len(parts)} files for {len(backends)} backends "
                         f"{list(backends)}, got {value!r}")
    part = parts[backends.index(backend)]
    if part not in SHIPPED_ENCODERS:
        return part
    if backend not in SHIPPED_ENCODERS[part]:
        own = [name for name, files in SHIPPED_ENCODERS.items() if backend in files]
        raise ValueError(f"--profile {part!r} is a float16 GPU profile; the {backend} "
                         f"backend's CPU functions run float32: use one of {own}, or a "
                         f"'CPU,GPU' pair such as 'minilm,{part}'")
    return str(PROFILES_DIR / SHIPPED_ENCODERS[part][backend])


def add_arch_flag(parser: argparse.ArgumentParser) -> None:
    """--arch: the Lambda architecture, which sets the GB-second price."""
    parser.add_argument("--arch", choices=ARCHES, default="x86",
                        help="Lambda architecture, for its price (default x86)")


def add_max_buffers_flag(parser: argparse.ArgumentParser) -> None:
    """--max-buffers: the most buffers a searched plan may use."""
    parser.add_argument("--max-buffers", type=int, default=4, metavar="K",
                        help="a plan has at most K buffers (default 4)")


def add_json_flag(parser: argparse.ArgumentParser,
                  help_text: str = "print the report as JSON") -> None:
    """--json: print JSON instead of the text table."""
    parser.add_argument("--json", action="store_true", help=help_text)


def add_report_flags(parser: argparse.ArgumentParser, what: str = "report") -> None:
    """--json and --out FILE for a command whose result is one JSON report (see emit)."""
    add_json_flag(parser, help_text=f"print the {what} as JSON")
    parser.add_argument("--out", metavar="FILE", help=f"also write the JSON {what} here")


def emit(report: dict[str, Any], args: argparse.Namespace,
         format_text: Callable[[dict[str, Any]], str], indent: int = 2) -> None:
    """Write the report to --out (if given), then print it as JSON (--json) or as text."""
    text = json.dumps(report, indent=indent, default=str)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text if args.json else format_text(report))
