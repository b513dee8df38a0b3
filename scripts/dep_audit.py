"""Known-vulnerability check of the installed packages, for where pip-audit cannot run.

pip-audit 2.10.1 asks PyPI for each installed version (/pypi/NAME/VERSION/json) or OSV
(api.osv.dev). On the project's build machines only PyPI's project pages answer: the
per-version pages give 404 and OSV does not resolve, so pip-audit skips every package.
This script asks what does answer: /pypi/NAME/json, the latest release with PyPI's advisories
for it. A package installed at its latest release with no advisory is clean by PyPI's advisory
database; one installed at an older release is listed as not audited, never as clean.

    .venv/bin/python scripts/dep_audit.py [--json]    # exit 1 if any advisory applies
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from importlib import metadata

PYPI = "https://pypi.org/pypi/{name}/json"


def _latest(name: str) -> dict:
    with urllib.request.urlopen(PYPI.format(name=name), timeout=20) as reply:  # nosec B310: fixed https host
        return json.load(reply)


def audit() -> dict[str, list]:
    out: dict[str, list] = {"clean": [], "advisories": [], "not_audited": []}
    dists = {d.metadata["Name"].lower(): d for d in metadata.distributions()}
    for key in sorted(dists):
        name, version = dists[key].metadata["Name"], dists[key].version
        try:
            page = _latest(name)
        except OSError as err:
            out["not_audited"].append({"name": name, "version": version, "why": str(err)[:80]})
            continue
        latest = page["info"]["version"]
        if latest != version:
            out["not_audited"].append({"name": name, "version": version,
                                       "why": f"older than the latest release {latest}"})
            continue
        ids = [v["id"] for v in page.get("vulnerabilities") or []]
        out["advisories" if ids else "clean"].append({"name": name, "version": version,
                                                      "ids": ids})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = parser.parse_args()
    result = audit()
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"clean {len(result['clean'])}, advisories {len(result['advisories'])}, "
              f"not audited {len(result['not_audited'])}")
        for row in result["advisories"] + result["not_audited"]:
            print(f"  {row['name']} {row['version']}: {row.get('ids') or row.get('why')}")
    return 1 if result["advisories"] else 0


if __name__ == "__main__":
    sys.exit(main())
