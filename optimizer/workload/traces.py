"""Request-arrival traces: load real CSV traces (e.g. Azure LLM 2023) into arrival times."""

from __future__ import annotations

import csv
import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from optimizer.workload.paths import data_dir

TIMESTAMP_COLUMNS = ("timestamp", "time", "arrival_s", "arrival_time")
LENGTH_COLUMNS = ("length", "tokens", "contexttokens")

TRACE_PRESETS = {
    "azure-code": "traces/azure_llm_2023/AzureLLMInferenceTrace_code.csv",
    "azure-conv": "traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv",
}
# The code trace is the bursty one (many requests within milliseconds, then gaps).
DEFAULT_PRESET = "azure-code"

# Python's fromisoformat takes at most 6 fractional digits; Azure writes 7 ("...03.9799600").
_EXTRA_FRACTION_DIGITS = re.compile(r"(\.\d{6})\d+")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, eq=False)
class Trace:
    """Sorted request arrival times in seconds (first at 0.0), with optional request lengths."""

    arrivals_s: np.ndarray
    lengths: np.ndarray | None
    source: str

    def __post_init__(self) -> None:
        arrivals_s = np.array(self.arrivals_s, dtype=np.float64)
        if arrivals_s.ndim != 1:
            raise ValueError(f"trace {self.source}: arrivals_s must be 1-D, got {arrivals_s.shape}")
        if not np.all(np.isfinite(arrivals_s)):
            raise ValueError(f"trace {self.source}: arrivals_s contains NaN or infinity")
        if np.any(np.diff(arrivals_s) < 0):
            raise ValueError(f"trace {self.source}: arrivals_s is not sorted ascending")
        arrivals_s.setflags(write=False)
        object.__setattr__(self, "arrivals_s", arrivals_s)
        if self.lengths is not None:
            lengths = np.array(self.lengths, dtype=np.int64)
            if lengths.shape != arrivals_s.shape:
                raise ValueError(
                    f"trace {self.source}: lengths shape {lengths.shape} "
                    f"!= arrivals_s shape {arrivals_s.shape}"
                )
            lengths.setflags(write=False)
            object.__setattr__(self, "lengths", lengths)

    @property
    def count(self) -> int:
        """Number of arrivals."""
        return int(self.arrivals_s.size)

    @property
    def duration_s(self) -> float:
        """Time from the first to the last arrival (0.0 for fewer than two arrivals)."""
        if self.count < 2:
            return 0.0
        return float(self.arrivals_s[-1] - self.arrivals_s[0])

    @property
    def mean_rate_per_s(self) -> float:
        """Arrivals per second over the trace's duration (0.0 if empty, inf if zero duration)."""
        if self.count == 0:
            return 0.0
        if self.duration_s == 0.0:
            return math.inf
        return self.count / self.duration_s

    def window(self, start_s: float, duration_s: float) -> Trace:
        """Arrivals in [start_s, start_s + duration_s), re-based so the first is at 0.0."""
        if not (math.isfinite(start_s) and start_s >= 0):
            raise ValueError(f"trace {self.source}: window start_s {start_s!r} must be >= 0")
        if not (math.isfinite(duration_s) and duration_s > 0):
            raise ValueError(f"trace {self.source}: window duration_s {duration_s!r} must be > 0")
        lo = int(np.searchsorted(self.arrivals_s, start_s, side="left"))
        hi = int(np.searchsorted(self.arrivals_s, start_s + duration_s, side="left"))
        return self._slice(lo, hi, f"{self.source}[{start_s:g}s+{duration_s:g}s]")

    def scaled(self, rate_scale: float) -> Trace:
        """Compress time by rate_scale (rate_scale=10 gives 10x the arrival rate)."""
        if not (math.isfinite(rate_scale) and rate_scale > 0):
            raise ValueError(f"trace {self.source}: rate_scale {rate_scale!r} must be > 0")
        return Trace(self.arrivals_s / rate_scale, self.lengths, f"{self.source}x{rate_scale:g}")

    def superposed(self, copies: float, rng: np.random.Generator,
                   period_s: float | None = None) -> Trace:
        """`copies` time-shifted copies of this trace over its own span: the rate grows,
        the bursts and the duration stay.

        Copy 0 is the trace itself; each further copy is shifted by an offset drawn uniformly
        from [0, period_s) and wrapped around the period (default: the trace's span), so every
        copy keeps its bursts and gaps and all arrivals stay in the same window. A fractional
        part f of `copies` adds one more shifted copy thinned to a fraction f of its arrivals
        (each kept with probability f), so the expected count is copies x count. Lengths travel
        with their arrivals.
        """
        if not (math.isfinite(copies) and copies >= 1):
            raise ValueError(f"trace {self.source}: superpose copies {copies!r} must be >= 1")
        period = self.duration_s if period_s is None else period_s
        if not (math.isfinite(period) and period > 0):
            raise ValueError(f"trace {self.source}: superpose period_s {period!r} must be > 0 "
                             "(a trace of one instant has no span to shift over)")
        whole, fraction = int(copies), copies - int(copies)
        offsets = rng.uniform(0.0, period, size=whole)
        offsets[0] = 0.0  # copy 0 stays as it is: its last arrival ends the window
        shifted = np.mod(self.arrivals_s[None, :] + offsets[1:, None], period)
        parts, picks = [self.arrivals_s, shifted.ravel()], [np.tile(np.arange(self.count), whole)]
        if fraction > 0:
            offset, kept = rng.uniform(0.0, period), np.flatnonzero(rng.random(self.count)
                                                                    < fraction)
            parts.append(np.mod(self.arrivals_s[kept] + offset, period))
            picks.append(kept)
        arrivals = np.concatenate(parts)
        order = np.argsort(arrivals, kind="stable")
        lengths = None if self.lengths is None else self.lengths[np.concatenate(picks)][order]
        return Trace(arrivals[order], lengths, f"{self.source}+{copies:g}x superposed")

    def head(self, n: int) -> Trace:
        """The first n arrivals."""
        if n < 0:
            raise ValueError(f"trace {self.source}: head n {n!r} must be >= 0")
        return self._slice(0, n, f"{self.source}[:{n}]")

    def _slice(self, lo: int, hi: int, source: str) -> Trace:
        arrivals_s = self.arrivals_s[lo:hi]
        if arrivals_s.size:
            arrivals_s = arrivals_s - arrivals_s[0]
        lengths = None if self.lengths is None else self.lengths[lo:hi]
        return Trace(arrivals_s, lengths, source)


def _find_column(
    header: Sequence[str], wanted: str | None, candidates: Sequence[str], what: str, path: Path
) -> int | None:
    """Index of the wanted column (or the first candidate present), matched case-insensitively."""
    names = [name.strip().lower() for name in header]
    if wanted is not None:
        if wanted.strip().lower() in names:
            return names.index(wanted.strip().lower())
        raise ValueError(f"trace {path}: {what} column {wanted!r} not found in header {header}")
    for candidate in candidates:
        if candidate in names:
            return names.index(candidate)
    return None


def _parse_time(value: str) -> tuple[float | int, bool]:
    """Parse seconds (float) or an ISO datetime (exact int epoch microseconds)."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        stamp = datetime.fromisoformat(_EXTRA_FRACTION_DIGITS.sub(r"\1", text, count=1))
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return (stamp - _EPOCH) // _MICROSECOND, True
    if not math.isfinite(seconds):
        raise ValueError("not finite")
    return seconds, False


def _parse_length(value: str) -> int:
    """Parse a non-negative integer length (accepts '12' and '12.0'). Raises ValueError."""
    number = float(value.strip())
    if not (math.isfinite(number) and number >= 0 and number == int(number)):
        raise ValueError("not a non-negative integer")
    return int(number)


def _parse_row(
    path: Path, row_number: int, row: list[str], time_index: int, length_index: int | None
) -> tuple[float | int, bool, int | None]:
    """Parse one data row into (time, is_datetime, length); see _parse_time for the time unit."""
    needed = max(time_index, -1 if length_index is None else length_index)
    if len(row) <= needed:
        raise ValueError(f"trace {path}: row {row_number}: has {len(row)} cells, expected more")
    value = row[time_index]
    try:
        time, is_datetime = _parse_time(value)
    except ValueError:
        raise ValueError(
            f"trace {path}: row {row_number}: timestamp {value!r} is not a number or ISO datetime"
        ) from None
    if length_index is None:
        return time, is_datetime, None
    try:
        return time, is_datetime, _parse_length(row[length_index])
    except ValueError:
        raise ValueError(
            f"trace {path}: row {row_number}: length {row[length_index]!r} "
            "is not a non-negative integer"
        ) from None


def load_trace_csv(
    path: str | Path, timestamp_column: str | None = None, length_column: str | None = None
) -> Trace:
    """Load a CSV trace with a header; rows are numbered as in a spreadsheet (header is row 1)."""
    path = Path(path)
    times: list[float | int] = []
    lengths: list[int] = []
    kinds: set[bool] = set()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"trace {path}: file is empty (no header row)")
        time_index = _find_column(header, timestamp_column, TIMESTAMP_COLUMNS, "timestamp", path)
        if time_index is None:
            raise ValueError(
                f"trace {path}: no timestamp column in header {header}; "
                f"expected one of {TIMESTAMP_COLUMNS} or pass timestamp_column"
            )
        length_index = _find_column(header, length_column, LENGTH_COLUMNS, "length", path)
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            time, is_datetime, length = _parse_row(
                path, reader.line_num, row, time_index, length_index
            )
            kinds.add(is_datetime)
            if len(kinds) > 1:
                raise ValueError(
                    f"trace {path}: row {reader.line_num}: timestamp {row[time_index]!r} mixes "
                    "numeric seconds and ISO datetimes in one column"
                )
            times.append(time)
            if length is not None:
                lengths.append(length)
    if not times:
        raise ValueError(f"trace {path}: no data rows")
    kept_lengths = lengths if length_index is not None else None
    return _build_trace(times, kinds == {True}, kept_lengths, str(path))


def _build_trace(
    times: list[float | int], is_datetime: bool, lengths: list[int] | None, source: str
) -> Trace:
    """Sort arrivals by time (stable) and re-base them so the first is at 0.0."""
    raw = np.asarray(times, dtype=np.int64 if is_datetime else np.float64)
    order = np.argsort(raw, kind="stable")
    relative = raw[order] - raw[order[0]]
    arrivals_s = relative / 1e6 if is_datetime else relative.astype(np.float64)
    sorted_lengths = None if lengths is None else np.asarray(lengths, dtype=np.int64)[order]
    return Trace(arrivals_s, sorted_lengths, source)


def preset_path(name: str) -> Path:
    """Path of a named trace preset under data_dir()."""
    if name not in TRACE_PRESETS:
        raise ValueError(f"unknown trace preset {name!r}; valid presets: {sorted(TRACE_PRESETS)}")
    return data_dir() / TRACE_PRESETS[name]


def load_preset(name: str) -> Trace:
    """Load a named trace preset (parsed once per file, then cached)."""
    return _load_cached(preset_path(name))


@functools.lru_cache(maxsize=8)
def _load_cached(path: Path) -> Trace:
    return load_trace_csv(path)
