"""The task API from the command line, as a user runs it against `sseproto serve`:
``tasks``, ``status``, ``cancel``, ``result``, ``watch`` of several tasks at once,
``--last-event-id``, ``--api-key``, and ``run --watch`` with ``--timeout`` and
``--cancel-on-interrupt``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest

from sseproto._cli import (
    EXIT_AUTH,
    EXIT_CANCELLED,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
)

from .cli_helpers import CLI, api_env, run_cli, serving

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TASKS = {
    "c-ok": "comfyui",
    "c-ok2": "comfyui",
    "c-fail": "failed",
    "c-cancel": "cancelled",
    "c-json": "comfyui",
    "c-resume": "comfyui",
    "c-status": "comfyui",
    "c-cancel-me": "comfyui",
    "c-403": "forbidden",
}


@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, str]]:
    args = [a for task_id, name in TASKS.items() for a in ("--task", f"{task_id}={name}")]
    with serving(*args, "--interval", "0.02") as settings:
        yield settings


def json_lines(output: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.decode().splitlines()]


def test_watch_several_tasks_at_once_exits_with_the_worst_outcome(
    served: dict[str, str],
) -> None:
    env = api_env(served)
    both = run_cli("watch", "c-ok", "c-ok2", env=env)
    assert both.returncode == EXIT_OK, both.stderr.decode()
    links = both.stdout.decode().splitlines()
    assert len(links) == 2  # a result for each, in the order given
    assert links[0] != links[1]
    err = both.stderr.decode()
    assert "task c-ok: 100% completed" in err
    assert "task c-ok2: 100% completed" in err

    mixed = run_cli("watch", "c-ok", "c-cancel", "c-fail", env=env)
    assert mixed.returncode == EXIT_FAILED  # failed is worse than cancelled and ok
    assert b"task c-fail failed" in mixed.stderr
    assert b"task c-cancel was cancelled" in mixed.stderr
    assert len(mixed.stdout.decode().splitlines()) == 1  # only c-ok has a result

    cancelled = run_cli("watch", "c-ok", "c-cancel", env=env)
    assert cancelled.returncode == EXIT_CANCELLED


def test_watch_several_tasks_one_refused_key_is_that_tasks_line(served: dict[str, str]) -> None:
    env = {**api_env(served), "CYBERUN_API_KEY": "sk-wrong"}
    done = run_cli("watch", "c-ok", "c-ok2", env=env)
    assert done.returncode == EXIT_AUTH
    err = done.stderr.decode()
    assert "task c-ok: " in err
    assert "task c-ok2: " in err
    assert "401" in err
    assert "sk-wrong" not in err


def test_watch_json_lines_name_the_api_event_the_id_and_the_payload(
    served: dict[str, str],
) -> None:
    done = run_cli("watch", "c-json", "c-fail", "--json", env=api_env(served))
    assert done.returncode == EXIT_FAILED, done.stderr.decode()
    items = json_lines(done.stdout)
    mine = [i for i in items if i["task_id"] == "c-json"]
    events = mine[:-1]
    assert [e["event"] for e in events][:3] == ["status", "status", "status"]
    assert "progress" in [e["event"] for e in events]
    assert events[-1]["event"] == "completed"
    assert [e["id"] for e in events] == [str(i) for i in range(1, len(events) + 1)]
    first = events[0]
    assert first["data"] == {
        "task_id": "c-json",
        "status": first["status"],
        "timestamp": first["data"]["timestamp"],
    }
    assert first["type"] == "StatusChanged"  # then the typed fields
    assert list(first)[:4] == ["task_id", "event", "id", "data"]
    assert mine[-1]["type"] == "TaskResult"  # the result, last
    failed = [i for i in items if i["task_id"] == "c-fail"]
    assert failed[-2]["event"] == "failed"
    assert failed[-1]["error"]["type"] == "TaskFailed"
    assert failed[-1]["error"]["reason"] == "CUDA out of memory"


def test_watch_resumes_from_last_event_id(served: dict[str, str]) -> None:
    done = run_cli("watch", "c-resume", "--json", "--last-event-id", "3", env=api_env(served))
    assert done.returncode == EXIT_OK, done.stderr.decode()
    ids = [i["id"] for i in json_lines(done.stdout)[:-1]]
    assert ids
    assert int(ids[0]) == 4  # events 1 to 3 were not sent again
    two = run_cli("watch", "c-ok", "c-ok2", "--last-event-id", "3", env=api_env(served))
    assert two.returncode == EXIT_USAGE
    assert b"one task" in two.stderr


def test_tasks_lists_a_table_and_json(served: dict[str, str]) -> None:
    env = api_env(served)
    assert run_cli("watch", "c-ok", env=env).returncode == EXIT_OK
    table = run_cli("tasks", env=env)
    assert table.returncode == EXIT_OK, table.stderr.decode()
    lines = table.stdout.decode().splitlines()
    assert lines[0].split() == ["ID", "STATUS", "WORKFLOW", "CREATED", "ERROR"]
    row = next(line for line in lines if line.startswith("c-ok "))
    assert "completed" in row.split()
    as_json = run_cli("tasks", "--json", "--per-page", "50", env=env)
    page = json.loads(as_json.stdout)
    assert {"tasks", "page_meta"} <= set(page)
    assert "c-ok" in [t["id"] for t in page["tasks"]]
    running = run_cli("tasks", "--status", "completed", "--json", env=env)
    assert {t["status"] for t in json.loads(running.stdout)["tasks"]} <= {"completed"}
    assert run_cli("tasks", "--page", "0", env=env).returncode == EXIT_USAGE


def test_status_shows_every_field(served: dict[str, str]) -> None:
    env = api_env(served)
    assert run_cli("watch", "c-status", env=env).returncode == EXIT_OK
    done = run_cli("status", "c-status", env=env)
    assert done.returncode == EXIT_OK, done.stderr.decode()
    fields = dict(line.split(":", 1) for line in done.stdout.decode().splitlines())
    assert fields["status"].strip() == "completed"
    assert fields["id"].strip() == "c-status"
    assert {"workflow_id", "created_at", "gpu_type", "tool_type"} <= set(fields)
    as_json = json.loads(run_cli("status", "c-status", "--json", env=env).stdout)
    assert as_json["type"] == "TaskSnapshot"
    assert as_json["status"] == "completed"


def test_result_shows_outputs_and_links(served: dict[str, str]) -> None:
    env = api_env(served)
    assert run_cli("watch", "c-ok", env=env).returncode == EXIT_OK
    done = run_cli("result", "c-ok", env=env)
    assert done.returncode == EXIT_OK, done.stderr.decode()
    out = done.stdout.decode()
    assert "9.images.0  https://" in out
    assert "ComfyUI_00001_.png" in out
    as_json = json.loads(run_cli("result", "c-ok", "--json", env=env).stdout)
    assert as_json["type"] == "TaskResult"
    assert as_json["download_urls"]


def test_cancel_several_tasks(served: dict[str, str]) -> None:
    env = api_env(served)
    done = run_cli("cancel", "c-cancel-me", "c-ok", "--json", env=env)
    assert done.returncode == EXIT_OK, done.stderr.decode()
    assert json_lines(done.stdout) == [
        {"task_id": "c-cancel-me", "cancelled": True},
        {"task_id": "c-ok", "cancelled": True},  # finished: a no-op success
    ]
    assert run_cli("watch", "c-cancel-me", env=env).returncode == EXIT_CANCELLED


def test_api_key_option_and_its_messages(served: dict[str, str]) -> None:
    env = {k: v for k, v in api_env(served).items() if k != "CYBERUN_API_KEY"}
    env["CYBERUN_API_KEY"] = ""
    missing = run_cli("status", "c-ok", env=env)
    assert missing.returncode == EXIT_AUTH
    given = run_cli("status", "c-ok", "--api-key", served["token"], env=env)
    assert given.returncode == EXIT_OK, given.stderr.decode()


def test_run_watch_takes_timeout(served: dict[str, str]) -> None:
    started = time.monotonic()
    done = run_cli(
        "run", "slow-flow", "--watch", "--timeout", "0.5", "--poll-interval", "0.1",
        env=api_env(served),
    )  # fmt: skip
    assert done.returncode == EXIT_ERROR
    assert b"--timeout" in done.stderr
    assert time.monotonic() - started < 30


def test_the_demo_without_the_cli_extra_says_what_to_install() -> None:
    code = "import sys; sys.modules['trustme'] = None; from sseproto._cli import run; run()"
    done = subprocess.run(
        [sys.executable, "-c", code, "demo"], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == EXIT_USAGE
    assert done.stderr.decode().splitlines() == [
        "sseproto: the demo runs the embedded test server, which needs the cli extra: "
        "pip install 'sseproto[cli]'"
    ]


def test_messages_name_the_options_of_the_command_line(served: dict[str, str]) -> None:
    env = {k: v for k, v in api_env(served).items() if k != "SSL_CERT_FILE"}
    untrusted = run_cli("status", "c-ok", env=env)  # the server's CA is not trusted
    assert untrusted.returncode == EXIT_ERROR
    assert b"--cacert" in untrusted.stderr
    assert b"ssl_context" not in untrusted.stderr
    no_key = run_cli("status", "c-ok", env={**api_env(served), "CYBERUN_API_KEY": ""})
    assert b"--api-key" in no_key.stderr
    assert b"api_key=" not in no_key.stderr


def test_a_403_names_the_feature_the_body_names(served: dict[str, str]) -> None:
    done = run_cli("watch", "c-403", env=api_env(served))
    assert done.returncode == EXIT_AUTH
    assert b"the feature 'task_events' is not enabled" in done.stderr


def test_download_every_output_and_skip_them_the_second_time(
    served: dict[str, str], tmp_path: Path
) -> None:
    env = api_env(served)
    assert run_cli("watch", "c-ok", env=env).returncode == EXIT_OK
    done = run_cli("download", "c-ok", "-o", str(tmp_path / "out"), env=env)
    assert done.returncode == EXIT_OK, done.stderr.decode()
    files = sorted((tmp_path / "out").iterdir())
    assert [f.name for f in files] == ["ComfyUI_00001_.png"]
    assert done.stdout.decode().splitlines() == [str(files[0])]
    assert files[0].stat().st_size > 0
    again = run_cli("download", "c-ok", "-o", str(tmp_path / "out"), "--json", env=env)
    assert again.returncode == EXIT_OK
    assert json_lines(again.stdout) == [{"task_id": "c-ok", "file": str(files[0])}]


def test_watch_then_download_several_tasks(served: dict[str, str], tmp_path: Path) -> None:
    done = run_cli(
        "watch", "c-ok", "c-ok2", "--download", str(tmp_path), env=api_env(served)
    )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr.decode()
    assert (tmp_path / "c-ok" / "ComfyUI_00001_.png").is_file()
    assert (tmp_path / "c-ok2" / "ComfyUI_00001_.png").is_file()


def test_run_uploads_a_file_parameter_then_watches_and_downloads(
    served: dict[str, str], tmp_path: Path
) -> None:
    image = tmp_path / "input.png"
    image.write_bytes(b"\x89PNG" + bytes(50_000))
    done = run_cli(
        "run", "img2img", "-p", f"image=@{image}", "-p", "steps=4", "--watch",
        "--download", str(tmp_path / "out"), "--json", env=api_env(served),
    )  # fmt: skip
    assert done.returncode == EXIT_OK, done.stderr.decode()
    lines = json_lines(done.stdout)
    assert "task_id" in lines[0]
    assert lines[-1]["file"].endswith("ComfyUI_00001_.png")
    missing = run_cli("run", "img2img", "-p", "image=@/no/such/file", env=api_env(served))
    assert missing.returncode == EXIT_USAGE
    assert b"no such file" in missing.stderr


def test_serve_can_answer_404_for_unknown_tasks() -> None:
    with serving("--unknown", "404", "--task", "known=comfyui", "--interval", "0.01") as settings:
        env = api_env(settings)
        unknown = run_cli("status", "nobody", env=env)
        assert unknown.returncode == EXIT_ERROR
        assert b"404" in unknown.stderr
        assert b"check the task or workflow id" in unknown.stderr
        assert run_cli("watch", "known", env=env).returncode == EXIT_OK


def test_transfers_draw_a_bar_per_file_and_one_in_total(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sseproto._cli import _Transfers

    monkeypatch.setenv("TTY_INTERACTIVE", "1")  # rich's: draw into the capture
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", "200")
    with _Transfers() as display:
        display.update("a.png", 500, 1000)
        display.update("b\x1b[31m.png", 250, 250)
        display.update("a.png", 1000, 1000)
    err = capsys.readouterr().err
    assert "a.png" in err
    assert "b\\u001b[31m.png" in err  # a server's name, escaped
    assert "total" in err
    assert "1.2 kB" in err or "1.3 kB" in err or "1,250" in err  # the total of both


def test_tasks_pages_through_the_list(served: dict[str, str]) -> None:
    env = api_env(served)
    for n in range(5):  # enough tasks for three pages of two
        assert run_cli("run", f"page-flow-{n}", env=env).returncode == EXIT_OK
    everything = json.loads(run_cli("tasks", "--json", "--per-page", "100", env=env).stdout)
    ids = [t["id"] for t in everything["tasks"]]
    assert everything["page_meta"]["total_count"] == len(ids) >= 5
    second = json.loads(
        run_cli("tasks", "--json", "--page", "2", "--per-page", "2", env=env).stdout
    )
    assert second["page_meta"] == {"current_page": 2, "per_page": 2, "total_count": len(ids)}
    assert [t["id"] for t in second["tasks"]] == ids[2:4]
    table = run_cli("tasks", "--page", "2", "--per-page", "2", env=env)
    rows = table.stdout.decode().splitlines()[1:]
    assert [row.split()[0] for row in rows] == ids[2:4]
    assert f"page 2, 2 tasks of {len(ids)}" in table.stderr.decode()
    past = run_cli("tasks", "--page", "999", "--per-page", "2", env=env)
    assert past.returncode == EXIT_OK
    assert past.stdout.decode().splitlines()[1:] == []  # the header only


@pytest.mark.parametrize("cancel", [False, True], ids=["interrupt", "cancel_on_interrupt"])
def test_ctrl_c_stops_run_watch_and_can_cancel_the_task(
    served: dict[str, str], cancel: bool
) -> None:
    env = api_env(served)
    flags = ["--cancel-on-interrupt"] if cancel else []
    proc = subprocess.Popen(
        [*CLI, "run", "interrupted-flow", "--watch", "--json", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
    )
    try:
        assert proc.stdout is not None
        started = json.loads(proc.stdout.readline())  # {"task_id": ...}
        first = json.loads(proc.stdout.readline())  # the task is under way
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    task_id = started["task_id"]
    assert first["task_id"] == task_id
    assert first["event"] == "status"
    assert proc.returncode == EXIT_INTERRUPTED
    assert b"Traceback" not in err
    assert (f"cancelled task {task_id} on the server".encode() in err) == cancel
    status = json.loads(run_cli("status", task_id, "--json", env=env).stdout)
    if cancel:
        assert status["status"] == "cancelled"
    else:  # the task went on
        assert status["status"] != "cancelled"
        assert run_cli("watch", task_id, env=env).returncode == EXIT_OK
