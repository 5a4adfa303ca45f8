"""The command line, run as a subprocess (as a user runs it) against `sseproto serve`."""

from __future__ import annotations

import http.server
import json
import logging
import os
import re
import signal
import socket
import subprocess
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

import sseproto
from sseproto import _cli
from sseproto._cli import (
    EXIT_AUTH,
    EXIT_BROKEN_PIPE,
    EXIT_CANCELLED,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    _Display,
    _printable,
    main,
)

from .cli_helpers import CLI, api_env, run_cli, serving

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def test_demo_runs_to_completion_quickly() -> None:
    done = run_cli("demo")
    assert done.returncode == EXIT_OK, done.stderr.decode()
    links = done.stdout.decode().split()
    assert len(links) == 2
    assert all(link.startswith("https://127.0.0.1:") for link in links)
    assert b"resuming in 0.2 s with Last-Event-ID '4'" in done.stderr  # the scripted drop


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


def test_parse_into_a_reader_that_goes_away(tmp_path: Path) -> None:
    """`sseproto parse big | head -1` ends quietly (exit 141, as SIGPIPE reports)."""
    (tmp_path / "big.txt").write_bytes(b"data: x\n\n" * 200_000)
    proc = subprocess.Popen(
        [*CLI, "parse", str(tmp_path / "big.txt")], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    with proc.stdout, proc.stderr:
        assert json.loads(proc.stdout.readline()) == {"event": "message", "data": "x", "id": ""}
        proc.stdout.close()
        err = proc.stderr.read()
    assert proc.wait(timeout=30) == EXIT_BROKEN_PIPE
    assert err == b""


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
    with serving() as settings:
        yield settings


def json_lines(output: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.decode().splitlines()]


def test_watch_run_and_tail_against_serve(served: dict[str, str]) -> None:
    env = {"CYBERUN_API_KEY": served["token"], "CYBERUN_BASE_URL": served["base URL"]}
    ca = ["--cacert", served["CA file"]]
    done = run_cli("watch", "t-1", *ca, env=env)
    assert done.returncode == EXIT_OK, done.stderr.decode()
    assert urlsplit(done.stdout.decode().strip()).path.endswith("/ComfyUI_00001_.png")

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


SCENARIOS = ["--interval", "0.05"] + [
    arg
    for pair in (
        "t-fail=failed",
        "t-cancel=cancelled",
        "t-flaky=flaky",
        "t-poll=polling",
        "t-flaky-tail=flaky",  # a task's faults are played once, so tail has its own
        "t-comfy=comfyui",
        "t-nerf=nerfstudio",
    )
    for arg in ("--task", pair)
]


@pytest.fixture(scope="module")
def scenarios() -> Iterator[dict[str, str]]:
    with serving(*SCENARIOS[2:], *SCENARIOS[:2]) as settings:
        yield settings


@pytest.mark.parametrize(
    ("task_id", "code", "message"),
    [
        ("t-fail", EXIT_FAILED, b"task t-fail failed: CUDA out of memory"),
        ("t-cancel", EXIT_CANCELLED, b"task t-cancel was cancelled"),
    ],
)
@pytest.mark.parametrize("as_json", [False, True], ids=["display", "json"])
def test_watch_exit_codes_of_failed_and_cancelled_tasks(
    scenarios: dict[str, str], task_id: str, code: int, message: bytes, as_json: bool
) -> None:
    done = run_cli("watch", task_id, *(["--json"] if as_json else []), env=api_env(scenarios))
    assert done.returncode == code, done.stderr.decode()
    assert message in done.stderr
    assert b"Traceback" not in done.stderr
    if as_json:  # the events up to the terminal one, then the error, and no result
        *events, error = json_lines(done.stdout)
        assert events[-1]["type"] == ("Failed" if code == EXIT_FAILED else "Cancelled")
        assert events[-1]["event"] == ("failed" if code == EXIT_FAILED else "cancelled")
        assert error["task_id"] == task_id
        assert error["error"]["type"] == ("TaskFailed" if code == EXIT_FAILED else "TaskCancelled")
    else:
        assert done.stdout == b""


def test_watch_progress_lines_where_stderr_is_not_a_terminal(scenarios: dict[str, str]) -> None:
    """In a log or CI, a line per event: status, share, steps, node, stage, message."""
    comfy = run_cli("watch", "t-comfy", env=api_env(scenarios))
    assert comfy.returncode == EXIT_OK, comfy.stderr.decode()
    assert urlsplit(comfy.stdout.decode().strip()).path.endswith("/ComfyUI_00001_.png")
    assert comfy.stderr.decode().splitlines() == [
        "task t-comfy: pending",
        "task t-comfy: queued",
        "task t-comfy: running",
        *(f"task t-comfy: {i * 25:3d}% step {i}/4 · node 3" for i in range(1, 5)),
        "task t-comfy: 100% completed",
    ]
    nerf = run_cli("watch", "t-nerf", env=api_env(scenarios))
    assert nerf.returncode == EXIT_OK, nerf.stderr.decode()
    assert "task t-nerf:  60% train · train done" in nerf.stderr.decode().splitlines()


def test_watch_draws_a_progress_bar_on_a_terminal(scenarios: dict[str, str]) -> None:
    env = {**api_env(scenarios), "TTY_INTERACTIVE": "1", "TTY_COMPATIBLE": "1"}  # rich's
    done = run_cli("watch", "t-comfy", env=env)
    assert done.returncode == EXIT_OK, done.stderr.decode()
    err = done.stderr.decode()
    assert "\x1b[" in err  # drawn, not printed line by line
    assert "task t-comfy: " not in err
    assert "100%" in err
    assert "completed" in err


def test_a_jwt_needs_the_team_id() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln"
    with serving("--token", jwt) as settings:
        env = api_env(settings)
        without = run_cli("watch", "t-1", env=env)
        team = "8c1d6c0e-0000-4000-8000-000000000001"
        with_flag = run_cli("watch", "t-1", "--team-id", team, "--json", env=env)
    assert without.returncode == EXIT_ERROR
    hint = "a JWT needs the team too (--team-id or $CYBERUN_TEAM_ID)"
    last = without.stderr.decode().splitlines()[-1]
    assert last.endswith(f"answered HTTP 400 Bad Request; {hint}")
    assert jwt not in without.stderr.decode()
    assert with_flag.returncode == EXIT_OK, with_flag.stderr.decode()
    assert json_lines(with_flag.stdout)[-1]["type"] == "TaskResult"


def test_watch_json_lines_through_a_stream_that_drops_twice(scenarios: dict[str, str]) -> None:
    done = run_cli("watch", "t-flaky", "--json", env=api_env(scenarios))
    assert done.returncode == EXIT_OK, done.stderr.decode()
    items = json_lines(done.stdout)
    types = [item["type"] for item in items]
    assert types == ["StatusChanged"] * 3 + ["Progress"] * 4 + ["Completed", "TaskResult"]
    assert [i["step_current"] for i in items if i["type"] == "Progress"] == [1, 2, 3, 4]
    assert items[-1]["download_urls"]
    assert done.stderr.count(b"resuming in") == 2  # the log says what happened
    assert b"Traceback" not in done.stderr


def test_watch_polls_where_there_is_no_stream(scenarios: dict[str, str]) -> None:
    done = run_cli("watch", "t-poll", "--json", "--poll-interval", "0.05", env=api_env(scenarios))
    assert done.returncode == EXIT_OK, done.stderr.decode()
    items = json_lines(done.stdout)
    assert {item["type"] for item in items[:-1]} == {"TaskSnapshot"}
    assert len(items) >= 3  # polled more than once, 0.05 s apart
    assert items[-2]["status"] == "completed"
    assert items[-1]["type"] == "TaskResult"
    assert b"polling" in done.stderr


def test_run_and_watch(scenarios: dict[str, str]) -> None:
    done = run_cli("run", "my-flow", "-p", "seed=7", "--watch", "--json", env=api_env(scenarios))
    assert done.returncode == EXIT_OK, done.stderr.decode()
    items = json_lines(done.stdout)
    task_id = items[0]["task_id"]
    assert task_id
    assert items[-2]["type"] == "Completed"
    assert items[-1] == {**items[-1], "type": "TaskResult", "id": task_id}


def test_tail_resumes_a_stream_that_drops(scenarios: dict[str, str]) -> None:
    url = scenarios["base URL"] + "/tasks/t-flaky-tail/events"
    auth = f"Authorization: Bearer {scenarios['token']}"
    done = run_cli("tail", url, "-H", auth, "-n", "8", env=api_env(scenarios))
    assert done.returncode == EXIT_OK, done.stderr.decode()
    events = json_lines(done.stdout)
    assert [e["id"] for e in events] == [str(i) for i in range(1, 9)]  # none lost, none twice
    assert events[-1]["event"] == "completed"
    assert b"Last-Event-ID '2'" in done.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["tail", "{base}/nope", "-H", "{auth}"], EXIT_ERROR, "404 Not Found; check the URL"),
        (["tail", "{base}/tasks/t-1/events"], EXIT_AUTH, "401 Unauthorized; pass credentials"),
        (["tail", "{base}/tasks/t-1/events", "-H", "Authorization"], EXIT_USAGE, "-H takes"),
        (["tail", "{base}/tasks/t-1/events", "-H", "Bearer {token}"], EXIT_USAGE, "-H takes"),
        (["tail", "{base}/tasks/t-1/events", "-H", "X Y: z"], EXIT_USAGE, "-H: 'X Y' is not"),
        (["tail", "{base}/tasks/t-1/events", "-H", "{auth}\x01"], EXIT_USAGE, "is not shown"),
        (["tail", "{base}/tasks/t-1/events", "-H", "Last-Event-ID: 1"], EXIT_USAGE, "--last-"),
        (["bench", "{base}/tasks/t-1/events", "-H", "Host: x"], EXIT_USAGE, "cannot be given"),
        (["bench", "{base}/tasks/t-1/events", "--duration", "5"], EXIT_AUTH, "401 Unauthorized"),
        (["run", "wf", "-p", "seed"], EXIT_USAGE, "-p takes key=value"),
        (["serve", "--task", "t-1=exploding"], EXIT_USAGE, "failed, cancelled, flaky, polling"),
        (["watch", "t-1", "--timeout", "0.5"], EXIT_ERROR, "gave up after --timeout 0.5 s"),
    ],
    ids=[
        "404",
        "401",
        "bad_header",
        "header_without_name",
        "header_name",
        "header_value",
        "header_last_event_id",
        "bench_header_host",
        "bench_401",
        "bad_param",
        "bad_scenario",
        "timeout",
    ],
)
def test_errors_are_one_line_that_says_what_to_do(
    served: dict[str, str], args: list[str], code: int, message: str
) -> None:
    base, auth = served["base URL"], f"Authorization: Bearer {served['token']}"
    formatted = (a.format(base=base, auth=auth, token=served["token"]) for a in args)
    done = run_cli(*formatted, env=api_env(served))
    assert done.returncode == code, done.stderr.decode()
    last = done.stderr.decode().splitlines()[-1]
    assert last.startswith("sseproto: ")
    assert message in last
    assert served["token"] not in done.stderr.decode()
    assert b"Traceback" not in done.stderr


def test_watch_gives_up_on_an_unreachable_server_only_at_the_timeout() -> None:
    """Connection refused is retried (a restart of the API should not kill a watch),
    each retry said on stderr, until --timeout."""
    env = {"CYBERUN_API_KEY": "sk-x", "CYBERUN_BASE_URL": "https://127.0.0.1:1/api/v1/r"}
    done = run_cli("watch", "t-1", "--timeout", "4", env=env)
    assert done.returncode == EXIT_ERROR
    err = done.stderr.decode()
    assert "could not connect to https://127.0.0.1:1: Connection refused; trying again" in err
    assert err.splitlines()[-1] == "sseproto: gave up after --timeout 4.0 s"


@pytest.mark.parametrize("cancel", [False, True], ids=["interrupt", "cancel_on_interrupt"])
def test_ctrl_c_stops_watch_and_can_cancel_the_task(served: dict[str, str], cancel: bool) -> None:
    env = api_env(served)
    flags = ["--cancel-on-interrupt"] if cancel else []
    proc = subprocess.Popen(
        [*CLI, "watch", "t-7", "--json", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())  # the task is under way
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert first["type"] == "StatusChanged"
    assert proc.returncode == EXIT_INTERRUPTED
    assert b"Traceback" not in err
    assert (b"cancelled task t-7 on the server" in err) == cancel
    again = run_cli("watch", "t-7", "--json", env=env)  # the task went on, or not
    assert again.returncode == (EXIT_CANCELLED if cancel else EXIT_OK), again.stderr.decode()


def test_every_subcommand_has_help() -> None:
    for command in ("demo", "watch", "run", "tail", "parse", "serve"):
        done = run_cli(command, "--help")
        assert done.returncode == 0
        assert command in done.stdout.decode()
    assert run_cli("--version").stdout.decode().strip() == f"sseproto {sseproto.__version__}"
    documented = run_cli("watch", "--help").stdout.decode().split("exit status:")[1]
    codes = {int(line.split()[0]) for line in documented.splitlines() if line.strip()}
    assert codes == {
        EXIT_OK,
        EXIT_FAILED,
        EXIT_USAGE,
        EXIT_CANCELLED,
        EXIT_AUTH,
        EXIT_ERROR,
        EXIT_INTERRUPTED,
    }


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


# -- server text is printed literally --------------------------------------------------

EVIL = {
    "markup": "[link=https://evil.example]click[/link]",
    "broken_markup": "[/oops] [bold",
    "controls": "\x1b[2J\x1b]0;title\x07 \x9b31m \x7f\x08 \u202eevil\u2028x\r\nforged line",
}
#: What a terminal acts on (rich's own styling aside): none of it may come from a server.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def without_rich_styling(text: str) -> str:
    """The display's output without the SGR and cursor sequences rich writes itself."""
    return re.sub(r"\x1b\[[0-9;?]*[mlhK]|\r", "", text)


@pytest.mark.parametrize("text", EVIL.values(), ids=EVIL.keys())
def test_the_progress_bar_draws_server_text_literally(
    text: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rich markup in a server's message is text: no link, no crash of the display."""
    monkeypatch.setenv("TTY_INTERACTIVE", "1")  # rich's: draw the bar into the capture
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", "300")
    with _Display({"t-1": "[red]task t-1"}) as display:
        display.update(
            "t-1", sseproto.Progress(task_id="t-1", progress=0.5, stage="[i]train", message=text)
        )
    err = without_rich_styling(capsys.readouterr().err)
    assert "\x1b]8;" not in err  # no hyperlink
    assert "\x1b" not in err  # nor any other sequence than rich's own styling
    assert not UNSAFE.search(err)
    assert "[red]task t-1" in err  # the label (the user's task id) is literal too
    assert f"[i]train · {_printable(text)}" in err


@contextmanager
def plain_http_server(body: bytes) -> Iterator[str]:
    """A server on loopback (plain http: allowed there) whose every answer is this
    event stream; yields the base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v1/r"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def evil_stream() -> bytes:
    def event(kind: str, **fields: Any) -> bytes:
        return sseproto.encode_event(json.dumps({"task_id": "t", **fields}), event=kind)

    return b"".join(
        [
            event("status", status="running\x1b[2J"),
            *(event("progress", progress=0.5, message=text) for text in EVIL.values()),
            event("failed", status="failed", error="boom \x1b[31mred\x7f\nsseproto: forged"),
        ]
    )


def test_watch_prints_server_text_literally() -> None:
    with plain_http_server(evil_stream()) as base_url:
        env = {"CYBERUN_API_KEY": "sk-x", "CYBERUN_BASE_URL": base_url}
        lines = run_cli("watch", "t", env=env)
        as_json = run_cli("watch", "t", "--json", env=env)
    err = lines.stderr.decode()
    assert lines.returncode == EXIT_FAILED, err
    assert not UNSAFE.search(err)
    assert err.splitlines() == [
        "task t: running\\u001b[2j",  # (a status is read in lower case)
        *(f"task t:  50% {_printable(text)}" for text in EVIL.values()),
        "task t: failed: boom \\u001b[31mred\\u007f\\u000asseproto: forged",
        "task t failed: boom \\u001b[31mred\\u007f\\u000asseproto: forged",
    ]
    assert "task t:  50% [link=https://evil.example]click[/link]" in err.splitlines()

    assert as_json.returncode == EXIT_FAILED, as_json.stderr.decode()
    out = as_json.stdout.decode()
    assert not UNSAFE.search(out)
    items = json_lines(as_json.stdout)  # escaped, yet the same strings
    assert [i["message"] for i in items[:-1] if i["type"] == "Progress"] == list(EVIL.values())
    assert items[-2]["error"] == "boom \x1b[31mred\x7f\nsseproto: forged"  # the event
    assert items[-1]["error"]["reason"] == "boom \x1b[31mred\x7f\nsseproto: forged"


@pytest.fixture
def sseproto_logger() -> Iterator[logging.Logger]:
    """main() sets up the "sseproto" logger for a terminal; put it back afterwards."""
    log = logging.getLogger("sseproto")
    saved = log.handlers[:], log.level, log.propagate
    yield log
    log.handlers[:] = saved[0]
    log.setLevel(saved[1])
    log.propagate = saved[2]


@pytest.mark.parametrize(
    "error",
    [
        sseproto.SSEProtoError("bad \x1b[2J\x9b text\nsseproto: forged"),
        sseproto.HTTPStatusError("bad \x1b[2J\x9b text\nsseproto: forged", status_code=418),
        sseproto.ConfigurationError("bad \x1b[2J\x9b text\nsseproto: forged"),
    ],
    ids=["SSEProtoError", "HTTPStatusError", "ConfigurationError"],
)
def test_error_and_log_lines_escape_server_text(
    error: Exception,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    sseproto_logger: logging.Logger,
) -> None:
    def fails(args: object) -> int:
        sseproto_logger.info("the server said %s", "\x1b]8;;https://evil.example\x07")
        raise error

    monkeypatch.setattr(_cli, "cmd_parse", fails)
    code = main(["parse", "-"])
    assert code in (EXIT_ERROR, EXIT_AUTH)
    assert capsys.readouterr().err.splitlines() == [
        "  the server said \\u001b]8;;https://evil.example\\u0007",
        "sseproto: bad \\u001b[2J\\u009b text\\u000asseproto: forged",
    ]


# -- user errors are one line; bugs are not hidden ---------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["watch", "t", "--cacert", "{tmp}/nope.pem"], EXIT_USAGE, "give the path of a PEM CA"),
        (["tail", "https://127.0.0.1:1/", "--cacert", "{tmp}"], EXIT_USAGE, "Is a directory"),
        (["watch", "t", "--cacert", "{tmp}/not.pem"], EXIT_USAGE, "is not a PEM CA file"),
        (["parse", "{tmp}/nope.txt"], EXIT_USAGE, "No such file or directory; give a file"),
        (["parse", "{tmp}"], EXIT_USAGE, "'{tmp}': Is a directory; give a file, or -"),
        (["watch", "t", "--base-url", "http://example.com/api"], EXIT_AUTH, "use https"),
        (["tail", "ftp://example.com/"], EXIT_AUTH, "not an http(s) URL"),
        (["run", "wf", "-p", "x=" + "[" * 50_000], EXIT_USAGE, "-p x: the JSON value is nested"),
    ],
    ids=[
        "no_cacert",
        "cacert_dir",
        "cacert_not_pem",
        "no_file",
        "parse_dir",
        "plain_http",
        "not_http",
        "deep_param",
    ],
)
def test_user_errors_are_one_line_with_a_hint(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    (tmp_path / "not.pem").write_text("not a certificate\n")
    env = {"CYBERUN_API_KEY": "sk-x", "CYBERUN_BASE_URL": "https://127.0.0.1:1/api/v1/r"}
    done = run_cli(*(a.replace("{tmp}", str(tmp_path)) for a in args), env=env)
    assert done.returncode == code, done.stderr.decode()
    assert b"Traceback" not in done.stderr
    (line,) = done.stderr.decode().splitlines()  # one line
    assert line.startswith("sseproto: ")
    assert message.replace("{tmp}", str(tmp_path)) in line


@pytest.mark.parametrize(
    "args",
    [
        ["watch", "t", "--timeout", "-1"],
        ["watch", "t", "--timeout", "nan"],
        ["watch", "t", "--poll-interval", "0"],
        ["tail", "https://127.0.0.1:1/", "-n", "0"],
        ["serve", "--port", "65536"],
        ["bench", "--events", "-5"],
    ],
    ids=["timeout", "timeout_nan", "poll_interval", "count", "port", "events"],
)
def test_numbers_out_of_range_are_usage_errors(args: list[str]) -> None:
    done = run_cli(*args, env={"CYBERUN_API_KEY": "sk-x"})
    assert done.returncode == EXIT_USAGE
    assert b"Traceback" not in done.stderr
    assert f"argument {args[-2]}".encode() in done.stderr


def test_serve_on_a_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli("serve", "--port", str(port))
    assert done.returncode == EXIT_ERROR
    assert done.stderr.decode().splitlines() == [
        f"sseproto: cannot listen on 127.0.0.1 port {port}: Address already in use; "
        f"choose another --port (0: any free one)"
    ]


@pytest.mark.parametrize(
    "bug",
    [ValueError("a bug"), OSError("a bug"), KeyError("a bug")],
    ids=lambda bug: type(bug).__name__,
)
def test_a_bug_is_not_hidden_as_an_error_line(
    bug: Exception, monkeypatch: pytest.MonkeyPatch, sseproto_logger: logging.Logger
) -> None:
    """Only the library's errors and the command line's own are caught: anything else
    is a bug, and keeps its traceback."""

    def fails(args: object) -> int:
        raise bug

    monkeypatch.setattr(_cli, "cmd_parse", fails)
    with pytest.raises(type(bug)) as caught:
        main(["parse", "-"])
    assert caught.value is bug
