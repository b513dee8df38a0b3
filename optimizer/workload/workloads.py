"""A workload: arrival times from a trace and texts from a corpus, deterministic under a seed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from optimizer.workload.texts import corpus_from_texts, load_texts, pang_lee_corpus, sample_texts
from optimizer.workload.traces import DEFAULT_PRESET, Trace, load_preset, load_trace_csv


class RateMode(StrEnum):
    """How --rate-scale X raises the rate."""

    COMPRESS = "compress"  # divide every arrival time by X: X times the rate, 1/X the duration
    SUPERPOSE = "superpose"  # X time-shifted copies over the same window (Trace.superposed)


# The superposition's offsets come from their own stream of the seed, so that turning it on
# leaves the text sampling (default_rng(seed)) as it was.
SUPERPOSE_STREAM = 1


@dataclass(frozen=True)
class WorkloadSpec:
    """What the CLI's workload flags name."""

    preset: str | None = DEFAULT_PRESET
    trace_csv: str | None = None
    texts_file: str | None = None
    start_s: float = 0.0
    duration_s: float | None = None
    rate_scale: float = 1.0
    seed: int = 0
    rate_mode: str = RateMode.COMPRESS

    def __post_init__(self) -> None:
        RateMode(self.rate_mode)  # fails fast, naming the bad value

    def describe(self) -> str:
        source = self.trace_csv or self.preset
        span = "whole trace" if self.duration_s is None else (
            f"{self.start_s:g}-{self.start_s + self.duration_s:g} s")
        texts = self.texts_file or "Pang & Lee (70% sentences, 30% review passages)"
        mode = "" if self.rate_scale == 1.0 else (
            " (superposed)" if self.rate_mode == RateMode.SUPERPOSE else " (time compressed)")
        return (f"{source} [{span}] x{self.rate_scale:g} rate{mode}, texts: {texts}, "
                f"seed {self.seed}")


@dataclass(frozen=True)
class Workload:
    arrivals_s: np.ndarray  # seconds from the first arrival, at the requested rate scale
    texts: tuple[str, ...]
    spec: WorkloadSpec

    @property
    def count(self) -> int:
        return len(self.texts)


def load_arrivals(spec: WorkloadSpec) -> Trace:
    """The spec's trace, windowed then rate-scaled (compressed or superposed)."""
    if spec.trace_csv is not None:
        trace = load_trace_csv(spec.trace_csv)
    elif spec.preset is not None:
        trace = load_preset(spec.preset)
    else:
        raise ValueError("a workload needs a preset or a trace CSV, got neither")
    if spec.duration_s is not None or spec.start_s:
        duration = spec.duration_s if spec.duration_s is not None else trace.duration_s
        trace = trace.window(spec.start_s, duration)
    if spec.rate_mode == RateMode.SUPERPOSE:
        rng = np.random.default_rng([spec.seed, SUPERPOSE_STREAM])
        return trace.superposed(spec.rate_scale, rng)
    return trace.scaled(spec.rate_scale) if spec.rate_scale != 1.0 else trace


def build_workload(spec: WorkloadSpec) -> Workload:
    """Arrivals plus one text per arrival, sampled with numpy's Generator seeded by spec.seed."""
    trace = load_arrivals(spec)
    if trace.count == 0:
        raise ValueError(f"the workload {spec.describe()} has no arrivals")
    corpus = (corpus_from_texts(load_texts(Path(spec.texts_file)), source=spec.texts_file)
              if spec.texts_file else pang_lee_corpus())
    texts = sample_texts(trace.count, np.random.default_rng(spec.seed), corpus)
    return Workload(arrivals_s=np.asarray(trace.arrivals_s), texts=tuple(texts), spec=spec)
