"""``Client`` and ``watch()``, end to end over real TLS on loopback.

The tests talk to :mod:`sseproto.testing`'s server (trio + h11 + trustme) in the same
trio run, on trio's ``MockClock`` (autojump): retry delays, read timeouts and the
polling interval are exact, and a timeline of minutes takes no real time. What that
server does not play (plain HTTP to loopback, a server slow to answer, empty event
streams) comes from the plain-HTTP server of ``tests/_servers.py``;
``trio.run(sseproto.watch, ...)`` itself runs against the server in a thread of its own.

The autouse ``net`` fixture (``tests/_servers.py``) counts the TCP connections on both
sides: the client's (every stream ``trio.open_tcp_stream`` opened for sseproto) and the
server's (every connection it accepted, and those still being served). Every test ends
with all the client's sockets closed; tests of keep-alive count the server's
connections; tests of cancellation also wait for the server's side to end.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import ssl
import threading
import traceback
import uuid
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import trio
import trio.testing

import sseproto
from sseproto import (
    Cancelled,
    Client,
    Completed,
    ConfigurationError,
    ConnectError,
    Failed,
    HTTPStatusError,
    Progress,
    ServerSentEvent,
    SSEProtoError,
    StatusChanged,
    StreamError,
    TaskCancelled,
    TaskError,
    TaskEvent,
    TaskEventError,
    TaskFailed,
    TaskResult,
    TaskSnapshot,
    TaskStatus,
    UnknownEvent,
    decode_task_event,
    watch,
)
from sseproto._rules import DEFAULT_RETRY, MAX_ATTEMPTS, TRANSIENT_STATUSES
from sseproto.testing import (
    Fault,
    RecordedRequest,
    Step,
    Task,
    TestServer,
    completed,
    error,
    failed,
    progress,
    serve,
    status,
)
from tests._leaks import clear_environment
from tests._servers import (
    ERROR_MESSAGE,
    Answer,
    Net,
    json_answer,
    plain_server,
    silent_listener,
    tracked_connections,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Iterator

#: What ``watch`` hands its ``on_event``.
Item = TaskEvent | TaskSnapshot | TaskEventError

#: Mock seconds any watch here must end within (the slowest gives up reconnecting first).
WATCH_LIMIT = 600.0
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJl"
TEAM = "6f1d2c3b-4a59-4e8f-9a0b-1c2d3e4f5a6b"

#: The default task (an unscripted id): ComfyUI-like, 8 events, done 3.5 s after its start.
DEFAULT = Task()
DEFAULT_END = DEFAULT.timeline[-1][0]
COMFY_OUTPUT = DEFAULT.timeline[-1][1].data["output"]

FAILING = [status("running"), progress(0.5, delay=1.0), failed("CUDA out of memory", delay=1.0)]


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def net(monkeypatch: pytest.MonkeyPatch) -> Iterator[Net]:
    yield from tracked_connections(monkeypatch)


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No settings (CYBERUN_*, certificates, proxies) from the environment running the
    tests."""
    clear_environment(monkeypatch)
    return monkeypatch


# -- helpers -------------------------------------------------------------------------


def settings(server: TestServer, **kwargs: Any) -> dict[str, Any]:
    """Client's and watch's arguments for the server: its key, base URL and trust,
    unless overridden."""
    return {
        "api_key": server.token,
        "base_url": server.base_url,
        "ssl_context": server.ssl_context,
        **kwargs,
    }


def client_for(server: TestServer, **kwargs: Any) -> Client:
    """A Client of the server (``settings``)."""
    return Client(**settings(server, **kwargs))


def paths(server: TestServer) -> list[str]:
    """The path of every request the server recorded, under the base URL."""
    prefix = urlsplit(server.base_url).path
    return [r.path.removeprefix(prefix) for r in server.requests]


def requests_to(server: TestServer, path: str, method: str = "GET") -> list[RecordedRequest]:
    """The requests the server recorded for a path under the base URL."""
    return [
        r
        for r, under in zip(server.requests, paths(server), strict=True)
        if r.method == method and under == path
    ]


def label(item: Item) -> str:
    """A short name for what on_event saw: ``Progress#4``, ``TaskSnapshot:running``."""
    if isinstance(item, TaskSnapshot):
        return f"TaskSnapshot:{item.status}"
    if isinstance(item, TaskEventError):
        return f"TaskEventError#{item.event.id if item.event is not None else '?'}"
    return f"{type(item).__name__}#{item.sse.id}"


def stream_labels(script: Task, first: int = 1, last: int | None = None) -> list[str]:
    """The labels of the script's events ``first`` to ``last`` (1-based ids): each one
    as ``decode_task_event`` makes it of the event of task "t-1"."""
    steps = script.timeline[first - 1 : last]
    events = (
        ServerSentEvent(
            event=step.event, data=json.dumps({"task_id": "t-1", **step.data}), id=str(n)
        )
        for n, (_, step) in enumerate(steps, first)
    )
    return [label(decode_task_event(event)) for event in events]


async def drain(events: AsyncIterator[Any], into: list[Any]) -> None:
    """Read an async iterator to its end (or error) into a list."""
    async for event in events:
        into.append(event)  # noqa: PERF401 (keeps what came before an error)


async def error_of(call: Awaitable[object]) -> SSEProtoError:
    """The sseproto error that awaiting ``call`` raises (it must raise one)."""
    with pytest.raises(SSEProtoError) as info:
        await call
    return info.value


def secret_free(text: str, *secrets: str) -> bool:
    return not any(secret in text for secret in secrets)


def exception_text(exc: BaseException) -> str:
    """Everything an exception shows: str, repr and the whole traceback, chain included."""
    return f"{exc}\n{exc!r}\n" + "".join(traceback.format_exception(exc))


@dataclass
class Watched:
    """What ``on_event`` saw during a watch, and when (trio time)."""

    items: list[Item] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def record(self, item: Item) -> None:
        self.items.append(item)
        self.times.append(trio.current_time())

    @property
    def labels(self) -> list[str]:
        return [label(item) for item in self.items]

    @property
    def events(self) -> list[TaskEvent]:
        return [i for i in self.items if not isinstance(i, (TaskSnapshot, TaskEventError))]

    async def watch(self, server: TestServer, task_id: str = "t-1", **kwargs: Any) -> TaskResult:
        with trio.fail_after(WATCH_LIMIT):  # fail, not hang, if it never ends
            return await watch(task_id, **settings(server, on_event=self.record, **kwargs))


async def watch_task(server: TestServer, task_id: str = "t-1", **kwargs: Any) -> Watched:
    """Watch a task that completes; what on_event saw."""
    seen = Watched()
    result = await seen.watch(server, task_id, **kwargs)
    assert isinstance(result, TaskResult)
    assert result.id == task_id
    return seen


def check_default_result(result: TaskResult, task_id: str = "t-1") -> None:
    """The result of the default (ComfyUI-like) task: its output and a link to its one
    image (node "9"), named as ``sseproto.testing.Task`` says."""
    assert result.id == task_id
    assert result.output == COMFY_OUTPUT
    assert result.error is None
    assert result.download_url is None
    assert list(result.download_urls) == ["9.images.0"]
    image = COMFY_OUTPUT["9"]["images"][0]["filename"]
    assert urlsplit(result.download_urls["9.images.0"]).path.endswith(f"/{image}")
    assert result.artifact_urls() == list(result.download_urls.values())


# -- settings --------------------------------------------------------------------------


@pytest.mark.parametrize("position", [0, 1, 2])
def test_settings_of_the_wrong_type_are_a_configuration_error(position: int) -> None:
    # Client(key, base_url, ssl_context) puts the context where the team id goes.
    args: list[object] = ["sk-test", "https://example.com/api/v1/r", None]
    args[position] = ssl.create_default_context()
    name = ("api_key", "base_url", "team_id")[position]
    must = f"{name} must be a str" + (" or a function returning one" if position == 0 else "")
    with pytest.raises(ConfigurationError, match=f"{must}, not SSLContext"):
        Client(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [None, "", "   "], ids=["none", "empty", "blank"])
def test_no_api_key_is_a_configuration_error(no_env: pytest.MonkeyPatch, key: str | None) -> None:
    with pytest.raises(ConfigurationError, match="CYBERUN_API_KEY"):
        Client(api_key=key)


def test_watch_without_a_key_is_a_configuration_error(no_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="CYBERUN_API_KEY"):
        trio.run(sseproto.watch, "t-1")


def test_settings_come_from_the_environment(no_env: pytest.MonkeyPatch) -> None:
    no_env.setenv("CYBERUN_API_KEY", "sk-from-env")
    default = Client()
    assert default.base_url == sseproto.DEFAULT_BASE_URL == "https://core.cyberun.cloud/api/v1/r"
    assert default.team_id is None
    assert default.headers()["Authorization"] == "Bearer sk-from-env"
    assert "X-Team-ID" not in default.headers()

    no_env.setenv("CYBERUN_BASE_URL", "https://selfhosted.example/api/v1/r/")
    no_env.setenv("CYBERUN_TEAM_ID", TEAM)
    from_env = Client()
    assert from_env.base_url == "https://selfhosted.example/api/v1/r"
    assert from_env.team_id == TEAM
    assert from_env.headers()["X-Team-ID"] == TEAM

    given = Client("sk-given", "https://other.example/api", "team-given")
    assert given.headers()["Authorization"] == "Bearer sk-given"
    assert given.base_url == "https://other.example/api"
    assert given.team_id == "team-given"


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/api/v1/r",
        "http://core.cyberun.cloud/api/v1/r",
        "HTTP://EXAMPLE.COM/api",
        "http://10.0.0.1:8080/api",
        "ftp://example.com/api",
    ],
)
def test_plain_http_to_another_host_is_refused(no_env: pytest.MonkeyPatch, url: str) -> None:
    with pytest.raises(sseproto.ConfigurationError, match="http"):
        Client(api_key="sk-test", base_url=url)


def test_plain_http_from_the_environment_is_refused(no_env: pytest.MonkeyPatch) -> None:
    no_env.setenv("CYBERUN_API_KEY", "sk-test")
    no_env.setenv("CYBERUN_BASE_URL", "http://example.com/api/v1/r")
    with pytest.raises(sseproto.ConfigurationError, match="http"):
        Client()


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/api", "http://localhost/api", "http://[::1]:9/api"]
)
def test_plain_http_to_loopback_is_allowed(url: str) -> None:
    assert Client(api_key="sk-test", base_url=url).base_url == url


async def test_plain_http_to_loopback_works(autojump_clock: trio.testing.MockClock) -> None:
    snapshot = {"id": "t-1", "task_status": "running"}
    async with (
        plain_server({"/api/tasks/t-1": json_answer(200, snapshot)}) as server,
        Client(api_key="sk-plain", base_url=server.url("/api")) as client,
    ):
        got = await client.get_task("t-1")
    assert got.status is TaskStatus.RUNNING
    request = server.requests[0]
    assert (request.method, request.target) == ("GET", "/api/tasks/t-1")
    assert request.headers["authorization"] == "Bearer sk-plain"


async def test_the_certificate_is_verified(
    autojump_clock: trio.testing.MockClock, no_env: pytest.MonkeyPatch
) -> None:
    async with serve() as server, client_for(server, ssl_context=None) as client:
        with pytest.raises(ConnectError, match="certificate"):
            await client.get_task("t-1")
    assert server.requests == []


# -- the JSON calls ------------------------------------------------------------------


async def test_get_task(autojump_clock: trio.testing.MockClock) -> None:
    script = Task(workflow_id="wf-scripted")
    async with serve({"t-1": script}) as server, client_for(server) as client:
        start = trio.current_time()
        first = await client.get_task("t-1")
        await trio.sleep(1.25)
        running = await client.get_task("t-1")
        await trio.sleep(DEFAULT_END)
        done = await client.get_task("t-1")
    assert isinstance(first, TaskSnapshot)
    assert first.id == "t-1"
    assert first.status is TaskStatus.PENDING
    assert not first.is_terminal
    assert first.error is None  # task_error "" means no error
    assert first.workflow_id == "wf-scripted"
    assert isinstance(first.created_at, datetime)
    assert first.started_at is None
    assert first.completed_at is None
    assert (first.retry_count, first.agent_id) == (0, "agent-test-1")
    assert (first.gpu_type, first.tool_type) == ("RTX 4090", "comfyui")
    assert first.raw["task_status"] == "pending"
    assert running.status is TaskStatus.RUNNING
    assert running.started_at is not None
    assert (running.started_at - first.created_at).total_seconds() == 1.0
    assert done.status is TaskStatus.COMPLETED
    assert done.is_terminal
    assert done.completed_at is not None
    assert (done.completed_at - first.created_at).total_seconds() == DEFAULT_END
    assert trio.current_time() == start + 1.25 + DEFAULT_END


async def test_every_request_carries_the_key(autojump_clock: trio.testing.MockClock) -> None:
    async with serve() as server, client_for(server) as client:
        await client.get_task("t-1")
        await client.cancel_task("t-1")
    get, post = server.requests
    for request in (get, post):
        assert request.headers["authorization"] == f"Bearer {server.token}"
        assert request.headers["user-agent"].startswith("sseproto/")
        assert request.headers["accept"] == "application/json"
        assert "x-team-id" not in request.headers  # an sk- key needs no team
    assert post.headers["content-type"] == "application/json"
    assert json.loads(post.body) == {}


async def test_get_result_of_a_comfyui_task(autojump_clock: trio.testing.MockClock) -> None:
    async with serve() as server, client_for(server) as client:
        await client.get_task("t-1")
        await trio.sleep(DEFAULT_END)
        result = await client.get_result("t-1")
        again = await client.get_result("t-1")
    check_default_result(result)
    assert result.expires_at is not None
    assert result.completed_at is not None
    assert again.artifact_urls() == result.artifact_urls()
    assert result.raw["task_output"] == COMFY_OUTPUT


async def test_get_result_with_one_link(autojump_clock: trio.testing.MockClock) -> None:
    script = Task(steps=[status("running"), completed({"splat": "scene.ply"}, delay=1.0)])
    async with serve({"t-1": script}) as server, client_for(server) as client:
        await client.get_task("t-1")
        await trio.sleep(1.0)
        result = await client.get_result("t-1")
    assert result.output == {"splat": "scene.ply"}
    assert result.download_url is not None
    assert urlsplit(result.download_url).path.endswith("/output")
    assert result.download_urls == {}
    assert result.artifact_urls() == [result.download_url]


async def test_get_result_of_a_failed_task(autojump_clock: trio.testing.MockClock) -> None:
    async with serve({"t-1": Task(steps=FAILING)}) as server, client_for(server) as client:
        await client.get_task("t-1")
        await trio.sleep(2.0)
        result = await client.get_result("t-1")
    assert result.output is None
    assert result.error == "CUDA out of memory"
    assert result.artifact_urls() == []


async def test_result_before_the_end_is_a_409(autojump_clock: trio.testing.MockClock) -> None:
    async with serve(result_conflict=True) as server, client_for(server) as client:
        with pytest.raises(HTTPStatusError) as info:
            await client.get_result("t-1")
        after = await client.get_task("t-1")  # the connection is still good
    assert info.value.status_code == 409
    assert json.loads(info.value.body) == {"error": "the task has not finished"}
    assert info.value.headers["content-type"] == "application/json"
    assert "409" in str(info.value)
    assert "/tasks/t-1/result" in str(info.value)
    assert after.status is TaskStatus.PENDING


async def test_a_wrong_key_is_a_401(autojump_clock: trio.testing.MockClock) -> None:
    wrong = "sk-wrong-0123456789abcdef"
    async with serve() as server, client_for(server, api_key=wrong) as client:
        with pytest.raises(HTTPStatusError) as info:
            await client.get_task("t-1")
    assert info.value.status_code == 401
    assert json.loads(info.value.body) == {"error": "invalid or missing token"}
    assert secret_free(exception_text(info.value), wrong, server.token)


@pytest.mark.parametrize(
    ("workflow", "path"),
    [
        (
            "0b7e4d2a-9c1f-4e3b-8a6d-5f2e1c0b9a87",
            "/workflows/0b7e4d2a-9c1f-4e3b-8a6d-5f2e1c0b9a87/run",
        ),
        ("my-flow", "/workflows/slug/my-flow/run"),
        ("my-flow@3", "/workflows/slug/my-flow@3/run"),
    ],
    ids=["uuid", "slug", "slug_at_version"],
)
async def test_run_workflow(
    autojump_clock: trio.testing.MockClock, workflow: str, path: str
) -> None:
    async with serve() as server, client_for(server) as client:
        task_id = await client.run_workflow(workflow, {"seed": 7, "prompt": "a cat"})
        snapshot = await client.get_task(task_id)
        bare = await client.run_workflow(workflow)
    uuid.UUID(task_id)  # the test server's task ids are UUIDs
    assert bare != task_id
    runs = requests_to(server, path, "POST")
    assert len(runs) == 2
    assert json.loads(runs[0].body) == {"parameters": {"seed": 7, "prompt": "a cat"}}
    assert json.loads(runs[1].body) == {"parameters": {}}
    assert runs[0].headers["content-type"] == "application/json"
    assert snapshot.id == task_id
    assert snapshot.workflow_id == workflow


async def test_list_tasks(autojump_clock: trio.testing.MockClock) -> None:
    scripts = {"b": Task(steps=[status("running")]), "c": Task(steps=FAILING)}
    async with serve(scripts) as server, client_for(server) as client:
        for task_id in ("a", "b", "c"):
            await client.get_task(task_id)
        await trio.sleep(DEFAULT_END)
        everything, meta = await client.list_tasks()
        first, first_meta = await client.list_tasks(per_page=2)
        second, second_meta = await client.list_tasks(page=2, per_page=2)
        done, done_meta = await client.list_tasks(status="completed")
        running, _ = await client.list_tasks(status="running")
        nothing, nothing_meta = await client.list_tasks(status="cancelled")
    assert all(isinstance(t, TaskSnapshot) for t in everything)
    assert [t.id for t in everything] == ["a", "b", "c"]
    assert [t.status for t in everything] == ["completed", "running", "failed"]
    assert everything[2].error == "CUDA out of memory"
    assert meta == {"current_page": 1, "per_page": 20, "total_count": 3}
    assert [t.id for t in first] == ["a", "b"]
    assert first_meta == {"current_page": 1, "per_page": 2, "total_count": 3}
    assert [t.id for t in second] == ["c"]
    assert second_meta["current_page"] == 2
    assert [t.id for t in done] == ["a"]
    assert done_meta["total_count"] == 1
    assert [t.id for t in running] == ["b"]
    assert nothing == []
    assert nothing_meta["total_count"] == 0


async def test_cancel_task(autojump_clock: trio.testing.MockClock) -> None:
    async with serve() as server, client_for(server) as client:
        await client.get_task("t-1")
        await trio.sleep(1.25)
        assert await client.cancel_task("t-1") is None  # type: ignore[func-returns-value]
        cancelled = await client.get_task("t-1")
        await trio.sleep(10)
        still = await client.get_task("t-1")
        result = await client.get_result("t-1")
    assert cancelled.status is TaskStatus.CANCELLED
    assert cancelled.is_terminal
    assert still.status is TaskStatus.CANCELLED  # the timeline stopped there
    assert result.output is None
    assert len(requests_to(server, "/tasks/t-1/cancel", "POST")) == 1


async def test_cancel_a_finished_task_is_a_no_op(autojump_clock: trio.testing.MockClock) -> None:
    async with serve() as server, client_for(server) as client:
        await client.get_task("t-1")
        await trio.sleep(DEFAULT_END)
        await client.cancel_task("t-1")
        snapshot = await client.get_task("t-1")
    assert snapshot.status is TaskStatus.COMPLETED


async def test_a_jwt_needs_a_team_id(
    autojump_clock: trio.testing.MockClock, no_env: pytest.MonkeyPatch
) -> None:
    async with serve(token=JWT) as server:
        async with client_for(server) as without:
            with pytest.raises(HTTPStatusError) as info:
                await without.get_task("t-1")
        async with client_for(server, team_id=TEAM) as given:
            by_argument = await given.get_task("t-1")
        no_env.setenv("CYBERUN_TEAM_ID", TEAM)
        async with client_for(server) as from_env:
            by_env = await from_env.get_task("t-1")
    assert info.value.status_code == 400
    assert b"X-Team-ID" in info.value.body
    assert secret_free(exception_text(info.value), JWT)
    assert by_argument.id == by_env.id == "t-1"
    sent = [r.headers.get("x-team-id") for r in server.requests]
    assert sent == [None, TEAM, TEAM]


# -- keep-alive ----------------------------------------------------------------------


async def test_json_calls_share_one_connection(
    autojump_clock: trio.testing.MockClock, net: Net
) -> None:
    async with serve() as server:
        async with client_for(server) as client:
            for _ in range(3):
                await client.get_task("t-1")
                await trio.sleep(2)
            await client.get_result("t-1")
            await client.list_tasks()
            assert len(net.client) == len(net.accepted) == 1
            assert len(net.live) == 1  # kept alive between calls
        await net.assert_all_closed()  # aclose closed it
    assert len(server.requests) == 5


async def test_keep_alive_recovers_when_the_server_closed_it(
    autojump_clock: trio.testing.MockClock, net: Net
) -> None:
    async with serve() as server, client_for(server) as client:
        first = await client.get_task("t-1")
        await net.close_server_side()
        assert len(net.live) == 0
        second = await client.get_task("t-1")  # on a new connection, transparently
        third = await client.get_task("t-1")
        await net.close_server_side()
        await client.cancel_task("t-1")  # a POST too
    assert first.id == second.id == third.id == "t-1"
    assert len(net.accepted) == 3
    assert [r.method for r in server.requests] == ["GET", "GET", "GET", "POST"]


async def test_concurrent_calls_leave_no_socket_open(
    autojump_clock: trio.testing.MockClock, net: Net
) -> None:
    """Calls made at the same time each need a connection; only one is kept alive, and
    closing the client must close them all (no socket left to the garbage collector)."""
    async with serve() as server:
        async with client_for(server) as client, trio.open_nursery() as nursery:
            for task_id in ("a", "b", "c"):
                nursery.start_soon(client.get_task, task_id)
        assert len(net.client) == 3
        assert net.open_client_sockets() == []
        await net.assert_all_closed()
    assert len(server.requests) == 3


async def test_cancelled_during_a_json_call(
    autojump_clock: trio.testing.MockClock, net: Net
) -> None:
    snapshot = json_answer(200, {"id": "t-1", "task_status": "running"})
    async with (
        plain_server({"/api/tasks/t-1": snapshot}, stall_reused=True) as server,
        Client(api_key="sk-plain", base_url=server.url("/api")) as client,
    ):
        await client.get_task("t-1")
        start = trio.current_time()
        with trio.move_on_after(2.0) as scope:
            await client.get_task("t-1")  # the server does not answer this one
        assert scope.cancelled_caught
        assert trio.current_time() == start + 2.0
        assert net.open_client_sockets() == []  # the half-used connection is gone
        again = await client.get_task("t-1")  # on a new connection
    assert again.status is TaskStatus.RUNNING
    assert len(net.client) == 2


async def test_a_post_is_not_sent_twice_after_a_read_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The keep-alive connection is reopened when the server has closed it. A server
    that received a POST and is slow to answer has not closed anything: sending the
    POST again would start the workflow twice."""
    routes = {
        "/api/tasks/t-1": json_answer(200, {"id": "t-1", "task_status": "running"}),
        "/api/workflows/slug/my-flow/run": None,  # never answered
    }
    async with (
        plain_server(routes) as server,
        Client(api_key="sk-plain", base_url=server.url("/api"), read_timeout=5.0) as c,
    ):
        await c.get_task("t-1")  # a connection kept alive
        start = trio.current_time()
        raised: SSEProtoError | None = None
        try:
            await c.run_workflow("my-flow")
        except SSEProtoError as exc:
            raised = exc
        waited = trio.current_time() - start
    posts = [r.target for r in server.requests if r.method == "POST"]
    assert posts == ["/api/workflows/slug/my-flow/run"]
    assert isinstance(raised, sseproto.ReadTimeout)
    assert waited == 5.0


# -- task_events -----------------------------------------------------------------------

ERRORS_AND_UNKNOWNS = Task(
    steps=[
        status("provisioning"),
        error("cannot read the task state", delay=0.5),
        progress(0.5, delay=0.5, stage="train", message="half way"),
        Step("thumbnail", {"url": "x.png"}, delay=0.25),
        completed({"k": 1}, delay=1.0),
        status("running", delay=1.0),  # after the terminal step: never sent
    ]
)


async def test_task_events(autojump_clock: trio.testing.MockClock, net: Net) -> None:
    async with serve({"t-1": ERRORS_AND_UNKNOWNS}) as server, client_for(server) as client:
        start = trio.current_time()
        events = [event async for event in client.task_events("t-1")]
        end = trio.current_time()
        await net.assert_all_closed()
    kinds = [type(e) for e in events]
    assert kinds == [StatusChanged, StreamError, Progress, UnknownEvent, Completed]
    provisioning, stream_error, half, thumbnail, done = events
    assert isinstance(provisioning, StatusChanged)
    assert provisioning.status == "provisioning"
    assert not provisioning.status.is_known
    assert isinstance(stream_error, StreamError)  # delivered, and the stream goes on
    assert stream_error.message == "cannot read the task state"
    assert isinstance(half, Progress)
    assert (half.progress, half.stage, half.message) == (0.5, "train", "half way")
    assert isinstance(thumbnail, UnknownEvent)
    assert thumbnail.event == "thumbnail"
    assert thumbnail.raw["url"] == "x.png"
    assert isinstance(done, Completed)
    assert done.output == {"k": 1}
    assert [label(e) for e in events] == stream_labels(ERRORS_AND_UNKNOWNS)
    assert end == start + 2.25  # ended right after the terminal event
    assert len(requests_to(server, "/tasks/t-1/events")) == 1


async def test_task_events_resume_without_repeats(autojump_clock: trio.testing.MockClock) -> None:
    script = Task(replay=3, faults=[Fault("drop_between", after=2), Fault("drop_mid_event", 4)])
    async with serve({"t-1": script}) as server, client_for(server) as client:
        events = [event async for event in client.task_events("t-1")]
    assert [label(e) for e in events] == stream_labels(script)
    sent = [r.headers.get("last-event-id") for r in requests_to(server, "/tasks/t-1/events")]
    assert sent == [None, "2", "4"]


async def test_task_events_from_a_last_event_id(autojump_clock: trio.testing.MockClock) -> None:
    async with serve() as server, client_for(server) as client:
        events = [event async for event in client.task_events("t-1", last_event_id="5")]
    assert [label(e) for e in events] == stream_labels(DEFAULT, first=6)
    assert requests_to(server, "/tasks/t-1/events")[0].headers["last-event-id"] == "5"


async def test_task_events_yield_a_malformed_event_as_its_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Task(
        steps=[status("running"), Step("progress", {"progress": "x"}, 1.0), completed(delay=1.0)]
    )
    async with serve({"t-1": script}) as server, client_for(server) as client:
        events = [event async for event in client.task_events("t-1")]
    assert [type(e) for e in events] == [StatusChanged, TaskEventError, Completed]
    bad = events[1]
    assert isinstance(bad, TaskEventError)
    assert bad.field == "progress"
    assert bad.event is not None
    assert (bad.event.event, bad.event.id) == ("progress", "2")


async def test_task_events_stopped_early_close_the_stream(
    autojump_clock: trio.testing.MockClock, net: Net
) -> None:
    async with serve() as server, client_for(server) as client:
        async with aclosing(client.task_events("t-1")) as events:
            got = 0
            async for _ in events:
                got += 1
                if got == 2:
                    break
        assert net.open_client_sockets() == []  # at once, not at garbage collection
        await net.assert_all_closed()
    assert len(requests_to(server, "/tasks/t-1/events")) == 1


@pytest.mark.parametrize(
    "fault",
    [Fault("no_content"), Fault("error_then_close", after=1)],
    ids=["no_content", "error_then_close"],
)
async def test_task_events_that_cannot_end_raise_an_sseproto_error(
    autojump_clock: trio.testing.MockClock, fault: Fault
) -> None:
    """task_events is public: a stream that ends without a terminal event must raise
    one of sseproto's exceptions (the hierarchy's rule), not a private one."""
    async with serve({"t-1": Task(faults=[fault])}) as server, client_for(server) as client:
        seen: list[TaskEvent | TaskEventError] = []
        with pytest.raises(SSEProtoError):
            await drain(client.task_events("t-1"), seen)
    assert len(seen) == (0 if fault.kind == "no_content" else 2)


# -- watch: the stream -----------------------------------------------------------------


async def test_watch_clean(autojump_clock: trio.testing.MockClock, net: Net) -> None:
    async with serve() as server:
        start = trio.current_time()
        seen = Watched()
        result = await seen.watch(server)
        await net.assert_all_closed()
    check_default_result(result)
    assert seen.labels == stream_labels(DEFAULT)
    assert seen.times == [start + at for at, _ in DEFAULT.timeline]  # as they happened
    assert all(getattr(event, "task_id", None) == "t-1" for event in seen.events)
    last = seen.events[-1]
    assert isinstance(last, Completed)
    assert last.output == COMFY_OUTPUT
    assert paths(server) == ["/tasks/t-1/events", "/tasks/t-1/result"]  # no polling
    assert len(net.accepted) == 2


async def test_watch_stream_request(autojump_clock: trio.testing.MockClock) -> None:
    async with serve(token=JWT) as server:
        await watch_task(server, team_id=TEAM)
    request = requests_to(server, "/tasks/t-1/events")[0]
    assert request.headers["authorization"] == f"Bearer {JWT}"
    assert request.headers["x-team-id"] == TEAM
    assert request.headers["accept"] == "text/event-stream"
    assert "last-event-id" not in request.headers


@pytest.mark.parametrize(
    ("script", "resumed_at", "last_event_id"),
    [
        # dropped at 0.5 s, right after event 2; back after the default retry delay
        (Task(faults=[Fault("drop_between", after=2)]), 0.5 + DEFAULT_RETRY, "2"),
        # cut half way through event 3 (at 1 s): the half event is discarded
        (Task(faults=[Fault("drop_mid_event", after=2)]), 1.0 + DEFAULT_RETRY, "2"),
        # the server's retry: 500 ms
        (Task(retry=500, faults=[Fault("drop_between", after=2)]), 1.0, "2"),
        # the server replays the last three events it had sent: not delivered again
        (Task(replay=3, faults=[Fault("drop_mid_event", after=4)]), 2.0 + DEFAULT_RETRY, "4"),
        # multi-line JSON data, CRLF line ends, heartbeats, one byte per write
        (
            Task(
                multiline_data=True,
                line_ending="\r\n",
                heartbeat=0.2,
                trickle=True,
                faults=[Fault("drop_mid_event", after=3)],
            ),
            1.5 + DEFAULT_RETRY,
            "3",
        ),
    ],
    ids=["drop_between", "drop_mid_event", "server_retry", "replay", "multiline_crlf_trickle"],
)
async def test_watch_resumes_after_a_drop(
    autojump_clock: trio.testing.MockClock,
    net: Net,
    script: Task,
    resumed_at: float,
    last_event_id: str,
) -> None:
    async with serve({"t-1": script}) as server:
        start = trio.current_time()
        seen = await watch_task(server)
        await net.assert_all_closed()
    assert seen.labels == stream_labels(script)  # each event once, in order
    first, resumed = requests_to(server, "/tasks/t-1/events")
    assert "last-event-id" not in first.headers
    assert resumed.headers["last-event-id"] == last_event_id
    assert resumed.time == start + resumed_at
    assert requests_to(server, "/tasks/t-1") == []  # no polling


async def test_watch_replaces_a_stalled_stream(autojump_clock: trio.testing.MockClock) -> None:
    script = Task(faults=[Fault("stall", after=2)])
    async with serve({"t-1": script}) as server:
        start = trio.current_time()
        seen = await watch_task(server, read_timeout=5.0)
    assert seen.labels == stream_labels(script)
    _, resumed = requests_to(server, "/tasks/t-1/events")
    # event 2 at 0.5 s, nothing for 5 s (the read timeout), then the retry delay
    assert resumed.time == start + 0.5 + 5.0 + DEFAULT_RETRY
    assert resumed.headers["last-event-id"] == "2"


async def test_watch_heartbeats_keep_a_quiet_stream(autojump_clock: trio.testing.MockClock) -> None:
    script = Task(steps=[status("running"), completed(delay=30.0)], heartbeat=2.0)
    async with serve({"t-1": script}) as server:
        seen = await watch_task(server, read_timeout=5.0)
    assert seen.labels == stream_labels(script)
    assert len(requests_to(server, "/tasks/t-1/events")) == 1  # comments count as bytes


async def test_watch_retries_a_503_after_retry_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    busy = Fault("status", code=503, retry_after=30)  # above any backoff of 3 failures
    script = Task(faults=[busy, busy, busy])
    async with serve({"t-1": script}) as server:
        start = trio.current_time()
        seen = await watch_task(server)
    assert seen.labels == stream_labels(script)
    times = [r.time - start for r in requests_to(server, "/tasks/t-1/events")]
    assert times == [0, 30, 60, 90]
    assert requests_to(server, "/tasks/t-1") == []


@pytest.mark.parametrize("code", sorted(TRANSIENT_STATUSES))
async def test_watch_retries_transient_statuses(
    autojump_clock: trio.testing.MockClock, code: int
) -> None:
    script = Task(faults=[Fault("status", code=code), Fault("status", code=code)])
    async with serve({"t-1": script}) as server:
        start = trio.current_time()
        seen = await watch_task(server)
    assert seen.labels == stream_labels(script)
    times = [r.time - start for r in requests_to(server, "/tasks/t-1/events")]
    assert len(times) == 3
    assert times[1] == DEFAULT_RETRY  # the first retry waits the default delay
    assert times[1] <= times[2] <= times[1] + 2 * DEFAULT_RETRY  # then full jitter up to 2x


@pytest.mark.parametrize("code", [401, 403, 400, 410])
async def test_watch_raises_on_statuses_polling_cannot_get_past(
    autojump_clock: trio.testing.MockClock, net: Net, code: int
) -> None:
    script = Task(faults=[Fault("status", code=code)])
    async with serve({"t-1": script}) as server:
        seen = Watched()
        with pytest.raises(HTTPStatusError) as info:
            await seen.watch(server)
        await net.assert_all_closed()
    assert info.value.status_code == code
    body = {"error": f"simulated HTTP {code}"} | ({"feature": "task_events"} if code == 403 else {})
    assert json.loads(info.value.body) == body  # the 403's feature payload kept
    assert seen.items == []
    assert paths(server) == ["/tasks/t-1/events"]  # no polling
    assert secret_free(exception_text(info.value), server.token)


async def test_watch_with_a_wrong_key_raises_401(autojump_clock: trio.testing.MockClock) -> None:
    wrong = "sk-not-the-right-one-42"
    async with serve() as server:
        with pytest.raises(HTTPStatusError) as info:
            await watch_task(server, api_key=wrong)
    assert info.value.status_code == 401
    assert len(server.requests) == 1
    assert secret_free(exception_text(info.value), wrong, server.token)


# -- watch: the polling fallback -------------------------------------------------------

#: The default task polled every second: its status at 0, 1, 2, 3 and 4 s.
POLLED_EACH_SECOND = [
    "TaskSnapshot:pending",
    "TaskSnapshot:running",
    "TaskSnapshot:running",
    "TaskSnapshot:running",
    "TaskSnapshot:completed",
]


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", code=404),
        Fault("status", code=405),
        Fault("status", code=501),
        Fault("no_content"),
        Fault("wrong_content_type"),
    ],
    ids=["404", "405", "501", "no_content", "wrong_content_type"],
)
async def test_watch_polls_when_the_stream_is_unavailable(
    autojump_clock: trio.testing.MockClock, net: Net, fault: Fault
) -> None:
    async with serve({"t-1": Task(faults=[fault])}) as server:
        start = trio.current_time()
        seen = Watched()
        result = await seen.watch(server, poll_interval=1.0)
        await net.assert_all_closed()
    check_default_result(result)
    assert seen.labels == POLLED_EACH_SECOND
    assert seen.times == [start + n for n in range(5)]
    assert [r.time - start for r in requests_to(server, "/tasks/t-1")] == [0, 1, 2, 3, 4]
    assert len(requests_to(server, "/tasks/t-1/events")) == 1  # not retried
    assert len(requests_to(server, "/tasks/t-1/result")) == 1
    assert len(net.accepted) == 2  # the stream's, then one kept alive for every poll


async def test_watch_polls_every_three_seconds_by_default(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve({"t-1": Task(faults=[Fault("no_content")])}) as server:
        start = trio.current_time()
        seen = await watch_task(server)
    assert [t - start for t in seen.times] == [0, 3, 6]
    assert seen.labels == ["TaskSnapshot:pending", "TaskSnapshot:running", "TaskSnapshot:completed"]


async def test_watch_polls_after_an_error_event_and_a_close(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Task(faults=[Fault("error_then_close", after=2)])
    async with serve({"t-1": script}) as server:
        start = trio.current_time()
        seen = await watch_task(server, poll_interval=1.0)
    assert seen.labels == [
        *stream_labels(script, last=2),
        "StreamError#2",
        "TaskSnapshot:queued",  # at 0.5 s, when the stream closed
        "TaskSnapshot:running",
        "TaskSnapshot:running",
        "TaskSnapshot:completed",
    ]
    error_event = seen.items[2]
    assert isinstance(error_event, StreamError)
    assert error_event.message == ERROR_MESSAGE["message"]
    assert [t - start for t in seen.times[3:]] == [0.5, 1.5, 2.5, 3.5]
    assert len(requests_to(server, "/tasks/t-1/events")) == 1  # not reconnected


async def test_watch_goes_on_after_an_error_event_in_the_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve({"t-1": ERRORS_AND_UNKNOWNS}) as server:
        seen = await watch_task(server)
    assert seen.labels == stream_labels(ERRORS_AND_UNKNOWNS)
    assert paths(server) == ["/tasks/t-1/events", "/tasks/t-1/result"]


@pytest.mark.parametrize(
    "fault",
    [Fault("status", code=503), Fault("drop_between", after=0), Fault("stall", after=0)],
    ids=["503", "closed_before_any_event", "stalled_before_any_event"],
)
async def test_watch_polls_when_reconnecting_keeps_failing(
    autojump_clock: trio.testing.MockClock, net: Net, fault: Fault
) -> None:
    script = Task(faults=[fault] * 30)
    async with serve({"t-1": script}) as server:
        seen = Watched()
        result = await seen.watch(server, read_timeout=5.0)
        if fault.kind != "stall":  # (a stalled server never notices the client left)
            await net.assert_all_closed()
    check_default_result(result)
    attempts = requests_to(server, "/tasks/t-1/events")
    # the first attempt, then open_event_stream's default max_attempts reconnections
    # (whether a first connection that delivered nothing counts is the stream's business)
    assert len(attempts) in (MAX_ATTEMPTS, MAX_ATTEMPTS + 1)
    polls = requests_to(server, "/tasks/t-1")
    assert len(polls) == 1
    # polling starts as soon as the last attempt failed
    assert polls[0].time == attempts[-1].time + (5.0 if fault.kind == "stall" else 0.0)
    assert seen.labels[-1] == "TaskSnapshot:completed"
    assert all(label.startswith("TaskSnapshot:") for label in seen.labels)


async def test_watch_reaches_the_end_when_streams_keep_ending_empty(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A server whose event streams end at once without an event (an empty 200
    text/event-stream; say, for a task that finished long ago): reconnecting will not
    get anywhere, and the task's end must still be reached, by polling."""
    routes: dict[str, Answer] = {
        "/api/tasks/t-1/events": (200, "text/event-stream", b""),
        "/api/tasks/t-1": json_answer(200, {"id": "t-1", "task_status": "completed"}),
        "/api/tasks/t-1/result": json_answer(200, {"id": "t-1", "task_output": {"k": 1}}),
    }
    async with plain_server(routes) as server:
        seen = Watched()
        with trio.move_on_after(WATCH_LIMIT) as scope:
            result = await watch(
                "t-1", api_key="sk-plain", base_url=server.url("/api"), on_event=seen.record
            )
    attempts = [target for target in server.targets if target.endswith("/events")]
    assert not scope.cancelled_caught, f"still reconnecting after {len(attempts)} empty streams"
    assert result.output == {"k": 1}
    assert seen.labels == ["TaskSnapshot:completed"]


async def test_watch_reaches_the_end_by_stream_then_polling(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A drop, a resume, then an error event and a close: the events come once, then
    polling takes over from where the stream was."""
    script = Task(
        faults=[Fault("drop_between", after=1), Fault("error_then_close", after=2)],
        retry=1000,
    )
    async with serve({"t-1": script}) as server:
        seen = await watch_task(server, poll_interval=1.0)
    assert seen.labels[:4] == [*stream_labels(script, last=3), "StreamError#3"]
    assert all(label.startswith("TaskSnapshot:") for label in seen.labels[4:])
    assert seen.labels[-1] == "TaskSnapshot:completed"
    assert len(requests_to(server, "/tasks/t-1/events")) == 2


# -- watch: how tasks end --------------------------------------------------------------


async def test_watch_a_failed_task_raises_task_failed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Task(steps=FAILING)
    async with serve({"t-1": script}) as server:
        seen = Watched()
        with pytest.raises(TaskFailed) as info:
            await seen.watch(server)
    assert info.value.error == "CUDA out of memory"
    assert info.value.task_id == "t-1"
    assert isinstance(info.value.snapshot, Failed)
    assert "CUDA out of memory" in str(info.value)
    assert isinstance(info.value, sseproto.TaskError)
    assert seen.labels == stream_labels(script)


async def test_watch_a_failed_task_by_polling(autojump_clock: trio.testing.MockClock) -> None:
    script = Task(steps=FAILING, faults=[Fault("no_content")])
    async with serve({"t-1": script}) as server:
        seen = Watched()
        with pytest.raises(TaskFailed) as info:
            await seen.watch(server, poll_interval=1.0)
    assert info.value.error == "CUDA out of memory"
    assert isinstance(info.value.snapshot, TaskSnapshot)
    assert seen.labels == ["TaskSnapshot:running", "TaskSnapshot:running", "TaskSnapshot:failed"]


@pytest.mark.parametrize("by_polling", [False, True], ids=["stream", "polling"])
async def test_watch_a_task_cancelled_meanwhile_raises_task_cancelled(
    autojump_clock: trio.testing.MockClock, by_polling: bool
) -> None:
    script = Task(faults=[Fault("no_content")] if by_polling else [])

    async def cancel_later(server: TestServer) -> None:
        await trio.sleep(1.25)
        async with client_for(server) as other:
            await other.cancel_task("t-1")

    async with serve({"t-1": script}) as server, trio.open_nursery() as nursery:
        nursery.start_soon(cancel_later, server)
        seen = Watched()
        with pytest.raises(TaskCancelled) as info:
            await seen.watch(server, poll_interval=1.0)
    assert info.value.task_id == "t-1"
    assert isinstance(info.value, sseproto.TaskError)
    if by_polling:
        assert seen.labels[-1] == "TaskSnapshot:cancelled"
        assert isinstance(info.value.snapshot, TaskSnapshot)
    else:
        assert seen.labels == [*stream_labels(script, last=3), "Cancelled#4"]
        assert isinstance(info.value.snapshot, Cancelled)
        assert seen.times[-1] == 1.25 + seen.times[0]  # as soon as it happened
    assert requests_to(server, "/tasks/t-1/result") == []


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_on_event_sync_or_async(autojump_clock: trio.testing.MockClock, kind: str) -> None:
    seen: list[str] = []

    def sync_record(item: Item) -> None:
        seen.append(label(item))

    async def async_record(item: Item) -> None:
        await trio.sleep(0.01)  # a slow consumer does not reorder anything
        seen.append(label(item))

    script = Task(faults=[Fault("drop_between", after=3), Fault("error_then_close", after=2)])
    async with serve({"t-1": script}) as server:
        on_event = sync_record if kind == "sync" else async_record
        await watch("t-1", **settings(server, on_event=on_event, poll_interval=1.0))
    assert seen[:6] == [*stream_labels(script, last=5), "StreamError#5"]
    assert len(seen) > 6
    assert all(s.startswith("TaskSnapshot:") for s in seen[6:])
    assert seen[-1] == "TaskSnapshot:completed"


async def test_watch_without_on_event(autojump_clock: trio.testing.MockClock) -> None:
    async with serve({"t-1": Task(faults=[Fault("error_then_close", after=1)])}) as server:
        result = await watch("t-1", **settings(server))
    check_default_result(result)


# -- watch: malformed events -----------------------------------------------------------


async def test_watch_skips_a_malformed_event(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    script = Task(
        steps=[
            status("running"),
            Step("progress", {"progress": "x"}, 0.5),  # not a number
            Step("status", {"status": 5}, 0.5),  # not a string
            Step("progress", {"progress": 0.5, "task_id": " "}, 0.5),  # a blank task id
            progress(0.75, delay=0.5),
            completed({"k": 1}, delay=0.5),
        ]
    )
    caplog.set_level(logging.WARNING, logger="sseproto")
    async with serve({"t-1": script}) as server:
        seen = Watched()
        result = await seen.watch(server)
    assert seen.labels == [
        "StatusChanged#1",
        "TaskEventError#2",
        "TaskEventError#3",
        "TaskEventError#4",
        "Progress#5",
        "Completed#6",
    ]
    errors = [item for item in seen.items if isinstance(item, TaskEventError)]
    assert [e.field for e in errors] == ["progress", "status", "task_id"]
    assert result.output == {"k": 1}
    assert requests_to(server, "/tasks/t-1") == []  # never needed polling
    assert len([r for r in caplog.records if "malformed" in r.getMessage()]) == 3


@pytest.mark.parametrize(
    ("step", "outcome"),
    [
        (Step("completed", {"task_id": "", "status": "completed", "output": {"k": 1}}), TaskResult),
        (
            Step("completed", {"task_id": None, "status": "completed", "output": {"k": 1}}),
            TaskResult,
        ),
        (Step("failed", {"task_id": 4.5, "status": "failed", "error": "disk full"}), TaskFailed),
        (Step("cancelled", {"task_id": ["t-1"], "status": "cancelled"}), TaskCancelled),
    ],
    ids=["completed_blank_id", "completed_null_id", "failed_float_id", "cancelled_list_id"],
)
async def test_watch_confirms_a_malformed_terminal_event_by_polling(
    autojump_clock: trio.testing.MockClock, net: Net, step: Step, outcome: type[object]
) -> None:
    script = Task(steps=[status("running"), Step(step.event, step.data, delay=1.0)])
    async with serve({"t-1": script}) as server:
        start = trio.current_time()
        seen = Watched()
        ended: TaskResult | TaskError
        try:
            ended = await seen.watch(server)
        except TaskError as exc:
            ended = exc
        await net.assert_all_closed()
    assert type(ended) is outcome
    assert seen.labels == ["StatusChanged#1", "TaskEventError#2", f"TaskSnapshot:{step.event}"]
    assert seen.times == [start, start + 1.0, start + 1.0]  # polled at once
    assert len(requests_to(server, "/tasks/t-1/events")) == 1
    assert len(requests_to(server, "/tasks/t-1")) == 1
    if isinstance(ended, TaskResult):
        assert ended.output == {"k": 1}
    if isinstance(ended, TaskFailed):
        assert ended.error == "disk full"


# -- the token stays secret ----------------------------------------------------------


async def test_the_token_never_shows(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Not in a repr, a log line (at DEBUG, every logger), an exception or a traceback,
    across a watch that goes through every path: malformed events, an error event and
    a close, polling, a failed task, HTTP errors."""
    caplog.set_level(logging.DEBUG)
    wrong = "sk-wrong-but-still-secret-7f3a"
    script = Task(
        steps=[status("running"), Step("progress", {"progress": "x"}, 0.5), *FAILING[1:]],
        faults=[Fault("status", code=503), Fault("error_then_close", after=2)],
    )
    raised: list[BaseException] = []
    scripts = {"t-1": script, "t-2": Task(faults=[Fault("no_content")])}
    async with serve(scripts, result_conflict=True) as server:
        client = client_for(server)
        shown = [repr(client), str(client)]
        async with client:
            raised.append(await error_of(client.get_result("t-3")))  # 409
        async with client_for(server, api_key=wrong) as stranger:
            raised.append(await error_of(stranger.get_task("t-1")))
        raised.append(await error_of(watch_task(server, "t-1", poll_interval=1.0)))
        raised.append(await error_of(watch_task(server, "t-2", api_key=wrong)))
    assert [type(e) for e in raised] == [
        HTTPStatusError,
        HTTPStatusError,
        TaskFailed,
        HTTPStatusError,
    ]
    shown += [exception_text(exc) for exc in raised]
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    shown += [formatter.format(record) for record in caplog.records]
    assert any("malformed" in line for line in shown)  # something was logged
    for text in shown:
        assert secret_free(text, server.token, wrong), text


@pytest.mark.parametrize(
    "key",
    ["sk-secret\ntail", "sk-secret\r\nX-Evil: 1", "sk-secret\x00tail", "sk-sécret"],
    ids=["lf", "crlf_header_injection", "nul", "non_ascii"],
)
async def test_a_key_that_cannot_be_a_header_is_refused_without_showing_it(
    autojump_clock: trio.testing.MockClock, key: str
) -> None:
    """A key with a line break (from a sloppy copy) must not reach the wire (header
    injection) and the error must be sseproto's and must not quote it."""
    async with serve() as server:
        with pytest.raises(SSEProtoError) as info:
            async with client_for(server, api_key=key) as client:
                await client.get_task("t-1")
    assert secret_free(exception_text(info.value), "secret", "sécret")
    assert server.requests == []


# -- cancellation ----------------------------------------------------------------------


async def test_cancelled_while_connecting(autojump_clock: trio.testing.MockClock, net: Net) -> None:
    # A listener that never accepts: TCP connects (the kernel's backlog), TLS never does.
    async with silent_listener() as port:
        start = trio.current_time()
        with trio.move_on_after(2.0) as scope:
            await watch("t-1", api_key="sk-test", base_url=f"https://127.0.0.1:{port}/api")
        assert scope.cancelled_caught
        assert trio.current_time() == start + 2.0
        assert len(net.client) == 1
        assert net.open_client_sockets() == []


def cancellation_case(where: str) -> tuple[Task, dict[str, Any], float]:
    """A script, watch's arguments and when to cancel, so that watch is waiting at
    ``where`` at that time."""
    if where == "read":  # the stream is open and quiet for 100 s
        return Task(steps=[status("running"), completed(delay=100.0)]), {}, 5.0
    if where == "stalled_read":  # the server sends nothing, ever
        return Task(faults=[Fault("stall", after=1)]), {}, 5.0
    if where == "backoff":  # a 503 at 0 s; the retry would be at 3 s
        return Task(faults=[Fault("status", code=503)] * 5), {}, 2.0
    if where == "poll":  # polled at 0 s; the next poll would be at 10 s
        return Task(faults=[Fault("no_content")]), {"poll_interval": 10.0}, 5.0
    raise AssertionError(where)


@pytest.mark.parametrize("where", ["read", "stalled_read", "backoff", "poll"])
async def test_cancelled_while_waiting(
    autojump_clock: trio.testing.MockClock, net: Net, where: str
) -> None:
    script, kwargs, deadline = cancellation_case(where)
    async with serve({"t-1": script}) as server:
        start = trio.current_time()
        seen = Watched()
        with trio.move_on_after(deadline) as scope:
            await seen.watch(server, **kwargs)
        assert scope.cancelled_caught
        assert trio.current_time() == start + deadline  # promptly
        assert net.open_client_sockets() == []  # at once
        if where != "stalled_read":  # (a stalled server never notices)
            await net.assert_all_closed()
        assert all(r.time <= start + deadline for r in server.requests)  # nothing after
    assert len(net.client) >= 1
    if where == "poll":
        assert seen.labels == ["TaskSnapshot:pending"]


async def test_cancelled_while_on_event_awaits(
    autojump_clock: trio.testing.MockClock, net: Net
) -> None:
    async def slow(item: Item) -> None:
        await trio.sleep(100)

    async with serve() as server:
        with trio.move_on_after(1.0) as scope:
            await watch("t-1", **settings(server, on_event=slow))
        assert scope.cancelled_caught
        await net.assert_all_closed()


# -- trio.run(sseproto.watch, task_id) -------------------------------------------------


@contextmanager
def server_in_a_thread(
    env: pytest.MonkeyPatch, tasks: dict[str, Task] | None = None
) -> Iterator[TestServer]:
    """The test server in its own thread and trio run (on an autojump clock of its own,
    so its timeline takes no time), for a client that calls trio.run itself and finds
    the server's key, base URL and CA in the environment (set through ``env``)."""
    ready: queue.Queue[tuple[TestServer, trio.lowlevel.TrioToken, trio.CancelScope]]
    ready = queue.Queue()

    async def main() -> None:
        with trio.CancelScope() as scope:
            async with serve(tasks) as server:
                ready.put((server, trio.lowlevel.current_trio_token(), scope))
                await trio.sleep_forever()

    clock = trio.testing.MockClock(autojump_threshold=0)
    thread = threading.Thread(target=partial(trio.run, main, clock=clock), daemon=True)
    thread.start()
    server, token, scope = ready.get(timeout=10)
    env.setenv("CYBERUN_API_KEY", server.token)
    env.setenv("CYBERUN_BASE_URL", server.base_url)
    env.setenv("SSL_CERT_FILE", server.ca_path)
    try:
        yield server
    finally:
        trio.from_thread.run_sync(scope.cancel, trio_token=token)
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_trio_run_watch(no_env: pytest.MonkeyPatch) -> None:
    with server_in_a_thread(no_env) as server:
        result = trio.run(sseproto.watch, "t-1")
    check_default_result(result)
    assert paths(server) == ["/tasks/t-1/events", "/tasks/t-1/result"]


def test_trio_run_watch_raises_task_failed(no_env: pytest.MonkeyPatch) -> None:
    with (
        server_in_a_thread(no_env, {"t-1": Task(steps=FAILING)}),
        pytest.raises(TaskFailed, match="CUDA out of memory"),
    ):
        trio.run(sseproto.watch, "t-1")


async def test_watch_polling_rides_out_transient_failures(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A terminal state is always reached: a network error or a 503 while polling is
    retried after the poll interval; a 404 is not."""
    script = Task(faults=[Fault("status", code=404)])  # the stream is unavailable: poll
    real_get_task = Client.get_task
    failures = [
        sseproto.ConnectError("simulated: connection refused"),
        sseproto.HTTPStatusError("simulated 503", status_code=503, retry_after=7.0),
    ]

    async def flaky_get_task(self: Client, task_id: str) -> sseproto.TaskSnapshot:
        if failures:
            raise failures.pop(0)
        return await real_get_task(self, task_id)

    monkeypatch.setattr(Client, "get_task", flaky_get_task)
    async with serve({"t-1": script}) as server:
        start = trio.current_time()
        result = await watch("t-1", **settings(server, poll_interval=1.0))
        polled = [r.time - start for r in server.requests if r.path.endswith("/tasks/t-1")]
    check_default_result(result)
    assert not failures
    assert polled[0] == 1.0 + 7.0  # after the refused poll (1 s) and the 503 (Retry-After 7 s)

    failures[:] = [sseproto.HTTPStatusError("simulated 404", status_code=404)]
    async with serve({"t-1": script}) as server:
        with pytest.raises(sseproto.HTTPStatusError) as info:
            await watch("t-1", **settings(server))
    assert info.value.status_code == 404


async def test_watch_fetches_the_result_through_transient_failures(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A completed task's result is not lost to one refused connection or a 503 at the
    end (seen with 10,000 watchers on one server); a bad certificate is not retried."""
    real_get_result = Client.get_result
    failures: list[Exception] = [
        sseproto.ConnectTimeout("simulated: the server is busy"),
        sseproto.HTTPStatusError("simulated 503", status_code=503, retry_after=5.0),
    ]
    asked: list[float] = []

    async def flaky_get_result(self: Client, task_id: str) -> TaskResult:
        asked.append(trio.current_time())
        if failures:
            raise failures.pop(0)
        return await real_get_result(self, task_id)

    monkeypatch.setattr(Client, "get_result", flaky_get_result)
    async with serve() as server:
        result = await Watched().watch(server, poll_interval=1.0)
    check_default_result(result)
    assert [round(b - a, 3) for a, b in itertools.pairwise(asked)] == [1.0, 5.0]

    failures[:] = [sseproto.CertificateError("simulated: certificate changed")] * 2
    async with serve() as server:
        with pytest.raises(sseproto.CertificateError):
            await Watched().watch(server)
    assert len(failures) == 1  # asked once, not retried


async def test_json_calls_follow_same_origin_redirects_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A same-origin redirect is followed; one to another origin is not, so the
    Authorization header never reaches another host."""
    async with plain_server() as other:
        routes: dict[str, Answer] = {
            "/api/tasks/t-1": (302, "text/plain", b"/api/moved/t-1"),
            "/api/moved/t-1": json_answer(200, {"id": "t-1", "task_status": "running"}),
            "/api/tasks/t-2": (307, "text/plain", other.url("/api/tasks/t-2").encode()),
        }
        async with plain_server(routes) as server, Client("sk-plain", server.url("/api")) as c:
            snapshot = await c.get_task("t-1")
            with pytest.raises(sseproto.HTTPStatusError) as info:
                await c.get_task("t-2")
    assert snapshot.status == "running"
    assert server.targets == [
        "/api/tasks/t-1",
        "/api/moved/t-1",
        "/api/tasks/t-2",
    ]
    assert info.value.status_code == 307
    assert other.requests == []  # the other origin never saw the key
