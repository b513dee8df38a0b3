"""The `mbs` command line: help, plan tools and clear errors (exit 2, the bad value named)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from buffers.plan_files import default_plan_path, load_plan
from infra.cli.main import COMMANDS, main

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("serve", "replay", "demo", "plan"):
        assert command in out


@pytest.mark.parametrize("command", [c.__name__.rsplit(".", 1)[-1] for c in COMMANDS])
def test_every_command_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: mbs {command}") and "options:" in out
    description = out.split("\n\n")[1]  # argparse: usage, description, then the arguments
    assert not description.startswith(("options:", "positional arguments:")), out


def test_plan_show_prints_a_loadable_plan(capsys, tmp_path):
    assert main(["plan", "show", "managed"]) == 0
    shown = tmp_path / "p.json"
    shown.write_text(capsys.readouterr().out)
    assert load_plan(shown) == load_plan(default_plan_path("managed"))


def test_plan_validate_names_the_bad_field(capsys, tmp_path):
    raw = json.loads(default_plan_path().read_text())
    raw["buffers"][2]["memory_mb"] = 64
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw))
    assert main(["plan", "validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "buffers[2].memory_mb" in err and "64" in err


def test_unknown_shipped_plan_lists_the_shipped_ones(capsys):
    assert main(["plan", "validate", "nope"]) == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "default" in err


def test_replay_rejects_a_bad_rate_scale_before_sending(capsys):
    assert main(["replay", "--url", "http://127.0.0.1:9", "--rate-scale", "0"]) == 2
    assert "rate_scale" in capsys.readouterr().err


def test_replay_rejects_a_missing_trace_file(capsys, tmp_path):
    missing = tmp_path / "none.csv"
    assert main(["replay", "--url", "http://127.0.0.1:9", "--trace", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


@pytest.mark.model
def test_progress_bars_stay_out_of_a_pipe(tmp_path):
    # GIVEN `mbs profile`, which loads the model (transformers draws a "Loading weights" bar)
    # and shows a bar per timed point, WHEN its output goes to a pipe rather than a terminal
    out = tmp_path / "profile.json"
    done = subprocess.run(
        [sys.executable, "-m", "infra.cli.main", "profile", "--batches", "1,2", "--lengths",
         "8,16", "--repeats", "1", "--warmup", "0", "--threads", "1", "--budget-s", "0.01",
         "--cold-start-runs", "0", "--patience-s", "0", "--out", str(out)],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    # THEN it works and writes no carriage-return bar updates, only its lines
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stdout + done.stderr
    assert "median ms per forward pass" in done.stdout and out.exists()
