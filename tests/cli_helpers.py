"""Running the command line as a user does: a subprocess, and `sseproto serve`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

CLI = [sys.executable, "-m", "sseproto"]


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: bytes = b"", timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*CLI, *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


@contextmanager
def serving(*args: str) -> Iterator[dict[str, str]]:
    """`sseproto serve` in the foreground, as a user starts it; its printed settings."""
    proc = subprocess.Popen([*CLI, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().decode() for _ in range(3 + args.count("--task"))]
        pairs = [line.split(":", 1) for line in lines]
        settings = {name.strip(): value.split()[0] for name, value in pairs if name != "task"}
        scripted = [args[i + 1].split("=")[0] for i, a in enumerate(args) if a == "--task"]
        assert [value.split()[0] for name, value in pairs if name == "task"] == scripted
        yield settings
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130  # Ctrl-C stops it cleanly
    assert b"Traceback" not in err


def api_env(settings: dict[str, str]) -> dict[str, str]:
    """What a user exports to point the command line at `sseproto serve`."""
    return {
        "CYBERUN_API_KEY": settings["token"],
        "CYBERUN_BASE_URL": settings["base URL"],
        "SSL_CERT_FILE": settings["CA file"],
    }
