"""bandit finds nothing unanswered in the product code (each answered finding carries a
`# nosec BXXX` with its reason on the line)."""

from __future__ import annotations

import json
import re
import subprocess  # nosec B404 - runs bandit on our own tree, fixed argv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("buffers", "functions", "infra", "optimizer", "scripts", "benchmarks")


def test_bandit_reports_no_unanswered_finding() -> None:
    done = subprocess.run(  # nosec B603 - this interpreter, fixed arguments
        [sys.executable, "-m", "bandit", "-q", "-r", *SCANNED, "-f", "json"], cwd=ROOT,
        capture_output=True, text=True, timeout=300, check=False)
    report = json.loads(done.stdout)
    findings = [f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}"
                for r in report["results"]]
    assert findings == []
    assert report["metrics"]["_totals"]["loc"] > 5000  # it did scan the tree


def test_every_nosec_names_the_finding_it_answers() -> None:
    # a bare "# nosec" would silence every check on its line; ours name one test id each
    bare = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if "# nosec" in line and not re.search(r"# nosec B\d{3}", line):
                    bare.append(f"{path.relative_to(ROOT)}:{number}")
    assert bare == []
