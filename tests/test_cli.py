"""The command line, run as a subprocess (as a user runs it) against the embedded
server, plus the exit codes of failed and cancelled tasks in-process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

import sseproto
from sseproto._cli import EXIT_AUTH, EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, _watch_one
from sseproto.testing import Task, cancelled, failed, serve, status

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import trio

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


def test_demo_runs_to_completion_quickly() -> None:
    start = time.monotonic()
    done = run_cli("demo")
    assert done.returncode == EXIT_OK, done.stderr.decode()
    links = done.stdout.decode().split()
    assert len(links) == 2
    assert all(link.startswith("https://127.0.0.1:") for link in links)
    assert b"resumed with Last-Event-ID" in done.stderr  # the scripted drop was survived
    assert time.monotonic() - start < 30


def test_demo_json_lines() -> None:
    done = run_cli("demo", "--json", "--interval", "0.05")
    assert done.returncode == EXIT_OK, done.stderr.decode()
    items = [json.loads(line) for line in done.stdout.decode().splitlines()]
    types = [item["type"] for item in items]
    assert types.count("Completed") == 2
    assert types.count("TaskResult") == 2
    assert "Progress" in types


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_parse(tmp_path: Path, source: str) -> None:
    stream = b": hi\r\nevent: status\r\nid: 7\r\ndata: a\r\ndata: b\r\n\r\ndata: half"
    args = ["parse", "--comments"]
    if source == "file":
        (tmp_path / "s.txt").write_bytes(stream)
        done = run_cli(*args, str(tmp_path / "s.txt"))
    else:
        done = run_cli(*args, stdin=stream)
    assert done.returncode == EXIT_OK
    assert [json.loads(line) for line in done.stdout.decode().splitlines()] == [
        {"comment": "hi"},
        {"event": "status", "data": "a\nb", "id": "7"},
    ]
    assert b"ended in the middle of an event" in done.stderr


def test_usage_and_configuration_errors() -> None:
    env = {"CYBERUN_API_KEY": ""}
    assert run_cli("watch", env=env).returncode == 2  # no task id: argparse's usage error
    missing = run_cli("watch", "t-1", env=env)
    assert missing.returncode == EXIT_AUTH
    assert b"CYBERUN_API_KEY" in missing.stderr
    assert b"Traceback" not in missing.stderr
    bad = run_cli("parse", "/nonexistent/file")
    assert bad.returncode != 0
    assert b"Traceback" not in bad.stderr


@pytest.fixture
def served() -> Iterator[dict[str, str]]:
    """`sseproto serve` in the foreground, as a user starts it; its printed settings."""
    proc = subprocess.Popen([*CLI, "serve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().decode() for _ in range(3)]
        pairs = [line.split(":", 1) for line in lines]
        yield {name.strip(): value.split()[0] for name, value in pairs}
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130  # Ctrl-C stops it cleanly
    assert b"Traceback" not in err


def test_watch_run_and_tail_against_serve(served: dict[str, str]) -> None:
    env = {"CYBERUN_API_KEY": served["token"], "CYBERUN_BASE_URL": served["base URL"]}
    ca = ["--cacert", served["CA file"]]
    done = run_cli("watch", "t-1", *ca, env=env)
    assert done.returncode == EXIT_OK, done.stderr.decode()
    assert done.stdout.decode().strip().endswith("ComfyUI_00001_.png")

    started = run_cli("run", "my-flow@2", "-p", "seed=7", "-p", "prompt=a cat", *ca, env=env)
    assert started.returncode == EXIT_OK, started.stderr.decode()
    task_id = started.stdout.decode().strip()
    assert task_id

    wrong = run_cli("watch", "t-1", *ca, env={**env, "CYBERUN_API_KEY": "sk-wrong"})
    assert wrong.returncode == EXIT_AUTH
    assert b"401" in wrong.stderr
    assert b"sk-wrong" not in wrong.stderr + wrong.stdout

    url = served["base URL"] + "/tasks/t-2/events"
    proc = subprocess.Popen(
        [*CLI, "tail", url, "-H", f"Authorization: Bearer {served['token']}", *ca],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        events = [json.loads(proc.stdout.readline()) for _ in range(8)]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    assert proc.returncode == 130
    assert [e["id"] for e in events] == [str(i) for i in range(1, 9)]
    assert events[-1]["event"] == "completed"


@pytest.mark.parametrize(
    ("task", "code", "message"),
    [
        (
            Task(steps=[status("running"), failed("out of memory", delay=1)]),
            EXIT_FAILED,
            "out of memory",
        ),
        (Task(steps=[status("running"), cancelled(delay=1)]), EXIT_CANCELLED, "cancelled"),
    ],
)
async def test_watch_exit_codes_of_failed_and_cancelled_tasks(
    autojump_clock: trio.testing.MockClock,
    capsys: pytest.CaptureFixture[str],
    task: Task,
    code: int,
    message: str,
) -> None:
    async with serve({"t-1": task}) as server:
        got = await _watch_one(
            "t-1",
            as_json=False,
            poll_interval=1.0,
            api_key=server.token,
            base_url=server.base_url,
            ssl_context=server.ssl_context,
        )
    assert got == code
    assert message in capsys.readouterr().err


def test_every_subcommand_has_help() -> None:
    for command in ("demo", "watch", "run", "tail", "parse", "serve"):
        done = run_cli(command, "--help")
        assert done.returncode == 0
        assert command in done.stdout.decode()
    assert run_cli("--version").stdout.decode().strip() == f"sseproto {sseproto.__version__}"


def test_bench_the_whole_stack_and_an_endpoint(served: dict[str, str]) -> None:
    done = run_cli("bench", "--events", "300", "--json")
    assert done.returncode == EXIT_OK, done.stderr.decode()
    report = json.loads(done.stdout)
    assert report["events"] == 300
    assert report["events_per_s"] > 0
    assert 0 <= report["gap_p50_ms"] <= report["gap_p90_ms"] <= report["gap_p99_ms"]

    url = served["base URL"] + "/tasks/t-9/events"
    auth = f"Authorization: Bearer {served['token']}"
    done = run_cli("bench", url, "-H", auth, "--cacert", served["CA file"], "--duration", "2")
    assert done.returncode == EXIT_OK, done.stderr.decode()
    table = dict(line.split(None, 1) for line in done.stdout.decode().splitlines())
    assert 1 <= int(table["events"]) <= 8  # the default timeline, cut at --duration
    assert set(table) >= {"events_per_s", "data_mb_per_s", "first_event_ms", "gap_p99_ms"}
