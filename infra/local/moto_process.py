"""moto in server mode as its own process on 127.0.0.1, so its work does not share our GIL.

It runs infra/local/moto_server.py: moto's own server, with two SQS hot spots made linear.
"""

from __future__ import annotations

import os
import socket
import subprocess  # nosec B404 - runs moto's own server module, fixed argv, no shell
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

START_TIMEOUT_S = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _env_with_this_checkout() -> dict[str, str]:
    """The environment, with this checkout first on the path (the launcher module is here)."""
    root = str(Path(__file__).resolve().parents[2])
    paths = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}


class MotoProcess:
    """moto's server on a free loopback port; stopped (and reaped) by stop()."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host)
        self._proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> MotoProcess:
        self._proc = subprocess.Popen(  # nosec B603 - sys.executable and fixed arguments
            [sys.executable, "-m", "infra.local.moto_server", "-H", self.host, "-p",
             str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env_with_this_checkout())
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto server exited at start with code {self._proc.returncode}")
            try:
                # An http:// URL on 127.0.0.1 built above, never a user's.
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1)  # nosec B310
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server did not answer on {self.endpoint} "
                           f"within {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
