from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from optimizer.workload.paths import data_dir
from optimizer.workload.traces import (
    DEFAULT_PRESET,
    TRACE_PRESETS,
    Trace,
    load_preset,
    load_trace_csv,
)


def write(tmp_path: Path, text: str, name: str = "trace.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_data_dir_default_and_override(tmp_path, monkeypatch):
    monkeypatch.delenv("MBS_DATA_DIR", raising=False)
    assert (data_dir() / "traces").is_dir()
    monkeypatch.setenv("MBS_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path
    missing = tmp_path / "nope"
    monkeypatch.setenv("MBS_DATA_DIR", str(missing))
    with pytest.raises(FileNotFoundError, match="nope"):
        data_dir()


def test_code_preset_loads_real_azure_trace():
    trace = load_preset("azure-code")
    # Every data row of the CSV (wc -l reports one fewer: the last row has no trailing newline).
    assert trace.count == 8819
    assert trace.arrivals_s.dtype == np.float64
    assert trace.arrivals_s[0] == 0.0
    assert np.all(np.diff(trace.arrivals_s) >= 0)
    assert trace.duration_s == pytest.approx(3435.948056, abs=1e-6)
    assert trace.mean_rate_per_s == pytest.approx(8819 / 3435.948056)
    # Second row is 2023-11-16 18:17:04.0319600, first 18:17:03.9799600: 52 ms apart, exactly.
    assert trace.arrivals_s[1] == pytest.approx(0.052, abs=1e-9)
    assert trace.lengths is not None and trace.lengths.dtype == np.int64
    assert trace.lengths[:3].tolist() == [4808, 3180, 110]  # ContextTokens column


def test_conv_preset_and_cache():
    trace = load_preset("azure-conv")
    assert trace.count == 19366
    assert trace.arrivals_s[0] == 0.0
    assert trace.duration_s == pytest.approx(3501.72, abs=0.01)
    assert load_preset("azure-conv") is trace
    assert DEFAULT_PRESET == "azure-code" and set(TRACE_PRESETS) == {"azure-code", "azure-conv"}


def test_code_preset_is_bursty():
    gaps_s = np.diff(load_preset(DEFAULT_PRESET).arrivals_s)
    # Coefficient of variation of inter-arrival gaps well above 1 (Poisson would be 1).
    assert gaps_s.std() / gaps_s.mean() > 2


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ValueError, match="azure-code.*azure-conv"):
        load_preset("azure-nope")


def test_presets_are_read_only():
    trace = load_preset("azure-code")
    with pytest.raises(ValueError):
        trace.arrivals_s[0] = 5.0


def test_window_rebases_and_keeps_lengths():
    trace = Trace(np.array([0.0, 1.0, 2.5, 3.0, 7.0]), np.array([1, 2, 3, 4, 5]), "t")
    window = trace.window(2.0, 5.0)  # [2, 7): 2.5 and 3.0, not 7.0
    assert window.arrivals_s.tolist() == [0.0, 0.5]
    assert window.lengths.tolist() == [3, 4]
    assert trace.window(4.0, 1.0).count == 0
    with pytest.raises(ValueError, match="-1"):
        trace.window(0.0, -1.0)


def test_window_of_real_trace():
    trace = load_preset("azure-code")
    window = trace.window(600.0, 300.0)
    expected = np.sum((trace.arrivals_s >= 600.0) & (trace.arrivals_s < 900.0))
    assert window.count == expected > 0
    assert window.arrivals_s[0] == 0.0 and window.duration_s < 300.0


def test_scaled_multiplies_rate():
    trace = Trace(np.array([0.0, 2.0, 10.0]), None, "t")
    fast = trace.scaled(10)
    assert fast.arrivals_s.tolist() == [0.0, 0.2, 1.0]
    assert fast.mean_rate_per_s == pytest.approx(10 * trace.mean_rate_per_s)
    for bad in (0, -2.0, float("nan")):
        with pytest.raises(ValueError, match="rate_scale"):
            trace.scaled(bad)


def test_head_and_empty_properties():
    trace = Trace(np.array([0.0, 1.0, 4.0]), None, "t")
    assert trace.head(2).arrivals_s.tolist() == [0.0, 1.0]
    assert trace.head(10).count == 3
    empty = trace.head(0)
    assert (empty.count, empty.duration_s, empty.mean_rate_per_s) == (0, 0.0, 0.0)
    with pytest.raises(ValueError, match="-1"):
        trace.head(-1)


def test_trace_rejects_unsorted_arrivals():
    with pytest.raises(ValueError, match="sorted"):
        Trace(np.array([1.0, 0.0]), None, "t")


def test_numeric_seconds_csv_is_sorted_and_rebased(tmp_path):
    path = write(tmp_path, "arrival_s,other\n12.5,a\n10.0,b\n\n11,c\n")
    trace = load_trace_csv(path)
    assert trace.arrivals_s.tolist() == [0.0, 1.0, 2.5]
    assert trace.lengths is None
    assert trace.source == str(path)


def test_auto_detect_is_case_insensitive_and_takes_length(tmp_path):
    path = write(tmp_path, "Tokens,Time\n30,2.0\n10,0.0\n20,1.0\n")
    trace = load_trace_csv(path)
    assert trace.arrivals_s.tolist() == [0.0, 1.0, 2.0]
    assert trace.lengths.tolist() == [10, 20, 30]  # sorted along with the times


def test_custom_column_names(tmp_path):
    path = write(tmp_path, "when,size\n2023-01-01T00:00:01.5,7\n2023-01-01T00:00:00,9\n")
    trace = load_trace_csv(path, timestamp_column="when", length_column="size")
    assert trace.arrivals_s.tolist() == [0.0, 1.5]
    assert trace.lengths.tolist() == [9, 7]


def test_iso_datetimes_with_seven_fraction_digits(tmp_path):
    path = write(tmp_path, "TIMESTAMP\n2023-11-16 18:17:03.9799600\n2023-11-16 18:17:05.0000001\n")
    assert load_trace_csv(path).arrivals_s.tolist() == pytest.approx([0.0, 1.02004])


def test_bad_timestamp_names_file_row_and_value(tmp_path):
    path = write(tmp_path, "timestamp\n1.0\n2.0\nabc\n")
    with pytest.raises(ValueError, match=r"trace .*trace\.csv: row 4: timestamp 'abc'"):
        load_trace_csv(path)


def test_bad_length_names_row_and_value(tmp_path):
    path = write(tmp_path, "time,length\n1.0,5\n2.0,-3\n")
    with pytest.raises(ValueError, match=r"row 3: length '-3'"):
        load_trace_csv(path)


def test_missing_columns_are_named(tmp_path):
    path = write(tmp_path, "foo,bar\n1,2\n")
    with pytest.raises(ValueError, match=r"no timestamp column.*'foo', 'bar'"):
        load_trace_csv(path)
    with pytest.raises(ValueError, match="'when' not found"):
        load_trace_csv(path, timestamp_column="when")
    with pytest.raises(ValueError, match="length column 'size' not found"):
        load_trace_csv(path, timestamp_column="foo", length_column="size")


def test_short_row_and_empty_trace_rejected(tmp_path):
    with pytest.raises(ValueError, match="row 3"):
        load_trace_csv(write(tmp_path, "a,time\n1,2\n3\n"))
    with pytest.raises(ValueError, match="no data rows"):
        load_trace_csv(write(tmp_path, "time\n\n"))
    with pytest.raises(ValueError, match="empty"):
        load_trace_csv(write(tmp_path, ""))


def test_mixed_timestamp_kinds_rejected(tmp_path):
    path = write(tmp_path, "time\n1.0\n2023-01-01 00:00:00\n")
    with pytest.raises(ValueError, match="row 3.*mixes"):
        load_trace_csv(path)
