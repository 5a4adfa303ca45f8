"""Every driver, one behaviour: trio, asyncio (also under uvloop) and blocking.

Each test is a plain function of a ``driver`` (``trio``: ``sseproto`` itself,
``asyncio`` and ``uvloop``: ``sseproto.asyncio``, ``sync``: ``sseproto.sync``) that
runs one scenario of :mod:`sseproto.testing`'s server (in a thread of its own, on the
real clock, via ``serve_in_thread``) through a small adapter, and gets back a plain
record: the events or the items ``on_event`` saw, and the result or the exception.
The expectations are written once, from the script, and are the same for every
driver: each event exactly once and in order, the same outcome (result fields, or
the exception's class and status), the same requests on the wire.

The adapters run a scenario with ``trio.run``, ``asyncio.run`` (``asyncio.Runner``
with uvloop's loop) or a direct call, each under a deadline so that a hang fails the
test instead of the run. Timelines are a few hundredths of a second and the server
sends ``retry: 50``, so reconnects are quick; only the Retry-After scenarios wait
(a second). What that server cannot play, below HTTP (a refused connection, a TLS
handshake never answered or hung up, a kept-alive connection closed under a request),
comes from ``raw_listener``, a bare socket served by a thread.

The autouse ``no_leaks`` fixture fails a test that leaves a socket open, a thread
running, or a ResourceWarning for the garbage collector to find. A difference between
the drivers that is a known bug is a strict xfail of the drivers concerned, its reason
naming it: when it is fixed, the test says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import importlib.util
import json
import math
import secrets
import socket
import ssl
import threading
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import pytest
import trio

import sseproto
from sseproto import (
    CertificateError,
    ConfigurationError,
    ConnectError,
    ConnectTimeout,
    ContentTypeError,
    HTTPStatusError,
    ReadTimeout,
    ReconnectError,
    RemoteProtocolError,
    ServerSentEvent,
    SSEProtoError,
    StreamUnavailable,
    TaskCancelled,
    TaskEventError,
    TaskFailed,
    TaskResult,
    TaskSnapshot,
    TLSHandshakeError,
)
from sseproto.testing import (
    Fault,
    RecordedRequest,
    Step,
    Task,
    TestServer,
    cancelled,
    comfyui_timeline,
    failed,
    progress,
    serve_in_thread,
    status,
)
from tests._leaks import (
    LIMIT,
    accepting,
    alarm,
    check_leaks,
    clear_environment,
    leak_check,
    open_sockets,
    run_asyncio,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

T = TypeVar("T")

API = "/api/v1/r"
#: Seconds between the steps of a scripted task.
INTERVAL = 0.01
#: The ``retry:`` (ms) every scripted stream sends, so that reconnects are quick.
RETRY_MS = 50
#: Seconds between polls in the watch scenarios.
POLL = 0.05
#: The read timeout of the stall scenarios (the only ones that rely on it).
STALL_READ_TIMEOUT = 0.2
#: Seconds after which the interruption scenarios interrupt (the first events are in).
INTERRUPT = 0.3
#: connect_timeout and read_timeout against the listeners that never answer.
NEVER = 0.1
#: A JWT-looking token (the server then requires X-Team-ID), and a team.
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkcml2ZXJzIn0.c2lnbmF0dXJlLWRyaXZlcnM"
TEAM = "6f1d2c3b-4a59-4e8f-9a0b-1c2d3e4f5a6b"

#: The class decode_task_event makes of each event type.
CLASS = {
    "status": "StatusChanged",
    "progress": "Progress",
    "completed": "Completed",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "error": "StreamError",
}
TERMINAL = frozenset({"completed", "failed", "cancelled"})

#: The modules of each driver.
MODULES = {
    "trio": "sseproto",
    "asyncio": "sseproto.asyncio",
    "uvloop": "sseproto.asyncio",
    "sync": "sseproto.sync",
}
ALL_DRIVERS = ["trio", "asyncio", "uvloop", "sync"]
ASYNC_DRIVERS = ["trio", "asyncio", "uvloop"]
HTTPX_DRIVERS = ["asyncio", "uvloop", "sync"]


# -- drivers -----------------------------------------------------------------------------


class Interrupt(BaseException):
    """What a signal handler raises in a blocking scenario (as Ctrl-C would)."""


@dataclass(frozen=True)
class Driver:
    """One driver: its name and its module (``open_event_stream``, ``Client``, ``watch``)."""

    name: str
    module: Any

    def __repr__(self) -> str:
        return f"<driver {self.name}>"

    @property
    def is_async(self) -> bool:
        return self.name != "sync"

    def run(self, main: Callable[[], Awaitable[T]]) -> T:
        """Run an async scenario on this driver's event loop, under LIMIT."""
        if self.name == "trio":

            async def guarded() -> T:
                with trio.fail_after(LIMIT):
                    return await main()

            return trio.run(guarded)

        return run_asyncio(main, self.name)

    def call(self, main: Callable[[], T]) -> T:
        """Run a blocking scenario, under LIMIT."""
        assert self.name == "sync"
        with alarm(LIMIT):
            return main()

    def drive(self, main: Callable[[], Awaitable[None]], blocking: Callable[[], None]) -> None:
        """Run ``main`` (async drivers) or ``blocking`` (sync), under LIMIT."""
        if self.is_async:
            self.run(main)
        else:
            self.call(blocking)

    def interrupted(
        self,
        after: float,
        main: Callable[[], Awaitable[None]] | None = None,
        blocking: Callable[[], None] | None = None,
    ) -> bool:
        """Run ``main`` (async drivers) or ``blocking`` (sync) and stop it after
        ``after`` seconds: a cancellation (trio's, asyncio's), or an exception raised
        by a signal handler (as Ctrl-C). True if it was stopped, False if it ended."""
        if not self.is_async:
            assert blocking is not None
            try:
                with alarm(after, Interrupt):
                    blocking()
            except Interrupt:
                return True
            return False
        assert main is not None
        if self.name == "trio":

            async def for_a_while() -> bool:
                assert main is not None
                with trio.move_on_after(after) as scope:
                    await main()
                return scope.cancelled_caught

        else:

            async def for_a_while() -> bool:
                assert main is not None
                try:
                    await asyncio.wait_for(main(), after)
                except asyncio.TimeoutError:
                    return True
                return False

        return self.run(for_a_while)

    async def sleep0(self) -> None:
        """A checkpoint of this driver's event loop (for async ``on_event``)."""
        if self.name == "trio":
            await trio.sleep(0)
        else:
            await asyncio.sleep(0)


def load_driver(name: str) -> Driver:
    if name == "uvloop":
        pytest.importorskip("uvloop")
    if name != "trio":
        pytest.importorskip("httpx")  # the asyncio and blocking drivers run on it
    module = MODULES[name]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} does not exist (yet)")
    return Driver(name, importlib.import_module(module))  # an ImportError fails


@pytest.fixture(params=ALL_DRIVERS)
def driver(request: pytest.FixtureRequest) -> Driver:
    name: str = request.param
    return load_driver(name)


#: For the scenarios where uvloop's loop adds nothing to asyncio's (HTTP-level
#: outcomes, the same code on the same transport as a scenario that runs on it).
without_uvloop = pytest.mark.parametrize("driver", ["trio", "asyncio", "sync"], indirect=True)


#: For the tests that only make sense with an event loop (an async on_event).
async_only = pytest.mark.parametrize("driver", ASYNC_DRIVERS, indirect=True)
#: For the tests of ``http_client=`` (the drivers on httpx).
httpx_only = pytest.mark.parametrize("driver", HTTPX_DRIVERS, indirect=True)


# -- leaks -------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def frozen_heap() -> Iterator[None]:
    """What exists before these tests is left out of every collection: a collection
    per test then costs microseconds, not tens of milliseconds."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture(autouse=True)
def no_leaks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test ends with no new socket open, no new thread, no ResourceWarning (and
    runs without the environment's CYBERUN_*, SSL_CERT_* and proxy settings)."""
    clear_environment(monkeypatch)
    with leak_check():
        yield


# -- scripts and expectations ----------------------------------------------------------


def quick(steps: list[Step] | None = None, **kwargs: Any) -> Task:
    """A fast task (ComfyUI-like by default: 6 events) whose stream sends ``retry: 50``."""
    kwargs.setdefault("retry", RETRY_MS)
    return Task(steps=steps or comfyui_timeline(2, interval=INTERVAL), **kwargs)


QUICK = quick()
COMFY_OUTPUT = QUICK.timeline[-1][1].data["output"]
FAILING = [
    status("running"),
    progress(0.5, delay=INTERVAL),
    failed("CUDA out of memory", delay=INTERVAL),
]
CANCELLED = [status("running"), progress(0.5, delay=INTERVAL), cancelled(delay=INTERVAL)]
#: A task that sends two events, then nothing for a minute.
SLOW = [status("pending"), status("running", delay=INTERVAL), progress(0.5, delay=60.0)]


def sse_labels(script: Task, first: int = 1, last: int | None = None) -> list[str]:
    """``event#id`` of the script's events ``first`` to ``last`` (ids are 1-based)."""
    steps = script.timeline[first - 1 : last]
    return [f"{step.event}#{n}" for n, (_, step) in enumerate(steps, first)]


def typed_labels(script: Task, first: int = 1, last: int | None = None) -> list[str]:
    """What ``on_event`` / ``task_events`` give for those events: ``Progress#4``."""
    steps = script.timeline[first - 1 : last]
    return [f"{CLASS[step.event]}#{n}" for n, (_, step) in enumerate(steps, first)]


def label(item: Any) -> str:
    """A short name for a task item: ``Progress#4``, ``TaskSnapshot:running``."""
    if isinstance(item, TaskSnapshot):
        return f"TaskSnapshot:{item.status}"
    if isinstance(item, TaskEventError):
        return f"TaskEventError#{item.event.id if item.event is not None else '?'}"
    return f"{type(item).__name__}#{item.sse.id}"


def polled_statuses(script: Task) -> list[str]:
    """The statuses ``GET /tasks/{id}`` reports along the timeline, in order, once each."""
    out: list[str] = ["pending"]
    for _, step in script.timeline:
        if step.event == "status":
            out.append(step.data["status"])
        elif step.is_terminal:
            out.append(step.event)
    return list(dict.fromkeys(out))


def check_polled(items: list[Any], script: Task, *, final: str) -> None:
    """``items`` are polling snapshots, in timeline order, the last one ``final``."""
    assert items, "no polling snapshot"
    assert all(isinstance(item, TaskSnapshot) for item in items), [label(i) for i in items]
    order = polled_statuses(script)
    seen = [str(item.status) for item in items]
    assert set(seen) <= set(order), seen
    positions = [order.index(s) for s in seen]
    assert positions == sorted(positions), seen  # never back in time
    assert seen[-1] == final
    assert seen.count(final) == 1  # a terminal snapshot ends the polling


def check_comfy_result(result: TaskResult | None, task_id: str = "t-1") -> None:
    assert isinstance(result, TaskResult)
    assert result.id == task_id
    assert result.output == COMFY_OUTPUT
    assert result.error is None
    assert result.download_url is None
    assert list(result.download_urls) == ["9.images.0"]
    assert urlsplit(result.download_urls["9.images.0"]).path.endswith("/ComfyUI_00001_.png")


def exception_text(exc: BaseException) -> str:
    """Everything an exception shows: str, repr and the whole traceback, chain included."""
    return f"{exc}\n{exc!r}\n" + "".join(traceback.format_exception(exc))


def check_secret_free(exc: BaseException, *hidden: str) -> None:
    """None of the ``hidden`` strings shows anywhere in ``exc`` (see ``exception_text``)."""
    text = exception_text(exc)
    for secret in hidden:
        assert secret not in text


def check_step_data(events: list[ServerSentEvent], script: Task, task_id: str) -> None:
    """Each event's data is the step's JSON (one line or several), whole."""
    for event, (_, step) in zip(events, script.timeline, strict=True):
        payload = json.loads(event.data)
        payload.pop("timestamp", None)
        payload.pop("completed_at", None)
        assert payload == {"task_id": task_id, **step.data}


# -- the server --------------------------------------------------------------------------


@contextlib.contextmanager
def server(
    tasks: dict[str, Task] | None = None, *, token: str | None = None, **options: Any
) -> Iterator[TestServer]:
    with serve_in_thread(tasks, token=token, **options) as srv:
        yield srv


def events_url(srv: TestServer, task_id: str = "t-1") -> str:
    return f"{srv.base_url}/tasks/{task_id}/events"


def auth(srv: TestServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {srv.token}"}


def requests_to(srv: TestServer, path: str, method: str = "GET") -> list[RecordedRequest]:
    """The requests the server recorded for a path under the base URL."""
    return [r for r in list(srv.requests) if r.method == method and r.path == API + path]


def resumed_from(srv: TestServer, task_id: str = "t-1") -> list[str | None]:
    """The Last-Event-ID of each request to the task's events endpoint."""
    return [r.headers.get("last-event-id") for r in requests_to(srv, f"/tasks/{task_id}/events")]


@dataclass
class Listener:
    """A bare TCP listener on loopback that misbehaves below HTTP (see ``raw_listener``)."""

    port: int
    accepted: int = 0


SNAPSHOT_BODY = json.dumps({"id": "t-1", "task_status": "running"}).encode()
SNAPSHOT_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(SNAPSHOT_BODY)}\r\n\r\n".encode()
    + SNAPSHOT_BODY
)


def read_request(conn: socket.socket) -> bytes:
    """One request head (the tests here send no body with GET), or b"" at EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    return data


@contextlib.contextmanager
def raw_listener(answer: str) -> Iterator[Listener]:
    """A TCP listener on loopback whose connections get ``answer``:

    * ``refused``: nothing listens on the port (it was bound, then closed);
    * ``silent``: accepted, then never a byte (no TLS handshake, no HTTP answer);
    * ``hangup``: accepted, the first bytes read (a ClientHello, or a request), closed;
    * ``answer-once``: plain HTTP, kept alive: the first request of a connection is
      answered (a task snapshot), the second read and left unanswered, the connection
      closed (as a server whose idle timeout strikes as the request arrives).
    """
    if answer == "refused":
        with socket.create_server(("127.0.0.1", 0)) as sock:
            port = sock.getsockname()[1]
        yield Listener(port)
        return
    listener = Listener(0)

    def handle(conn: socket.socket) -> None:
        listener.accepted += 1
        if answer == "hangup":
            conn.settimeout(2.0)
            with contextlib.suppress(OSError):
                conn.recv(65536)
            conn.close()
        elif answer == "answer-once":
            conn.settimeout(2.0)
            with contextlib.suppress(OSError):
                if read_request(conn):
                    conn.sendall(SNAPSHOT_ANSWER)
                    read_request(conn)
            conn.close()

    with accepting("raw-listener", handle) as port:
        listener.port = port
        yield listener


# -- adapters: one scenario, any driver, a plain record ----------------------------------


@dataclass
class Streamed:
    """What ``open_event_stream`` gave: events, the error, the stream's state at the end."""

    events: list[ServerSentEvent] = field(default_factory=list)
    error: BaseException | None = None
    last_event_id: str | None = None
    retry: int | None = None
    connections: int | None = None

    @property
    def labels(self) -> list[str]:
        return [f"{e.event}#{e.id}" for e in self.events]

    def note(self, stream: Any) -> None:
        self.last_event_id = stream.last_event_id
        self.retry = stream.retry
        self.connections = stream.connections


def collect_stream(
    driver: Driver,
    url: str,
    *,
    stop: Callable[[list[ServerSentEvent]], bool] | None = None,
    **kwargs: Any,
) -> Streamed:
    """Read ``open_event_stream(url, **kwargs)`` until a terminal event, ``stop``, its
    end or an error (an SSEProtoError is recorded, anything else raised)."""

    def done(events: list[ServerSentEvent]) -> bool:
        if stop is not None:
            return stop(events)
        return events[-1].event in TERMINAL

    out = Streamed()
    m = driver.module

    async def main() -> None:
        stream = None
        try:
            async with m.open_event_stream(url, **kwargs) as stream:
                async for event in stream:
                    out.events.append(event)
                    if done(out.events):
                        break
        except SSEProtoError as exc:
            out.error = exc
        if stream is not None:
            out.note(stream)

    def blocking() -> None:
        stream = None
        try:
            with m.open_event_stream(url, **kwargs) as stream:
                for event in stream:
                    out.events.append(event)
                    if done(out.events):
                        break
        except SSEProtoError as exc:
            out.error = exc
        if stream is not None:
            out.note(stream)

    driver.drive(main, blocking)
    return out


def stream(driver: Driver, srv: TestServer, task_id: str = "t-1", **kwargs: Any) -> Streamed:
    """The task's events endpoint as a plain SSE stream, with the server's token and trust."""
    settings: dict[str, Any] = {
        "headers": auth(srv),
        "ssl_context": srv.ssl_context,
        "max_backoff": 1.0,
        **kwargs,
    }
    return collect_stream(driver, events_url(srv, task_id), **settings)


@dataclass
class Watched:
    """What ``watch`` did: the items ``on_event`` saw, and its result or exception."""

    items: list[Any] = field(default_factory=list)
    result: TaskResult | None = None
    error: BaseException | None = None

    @property
    def labels(self) -> list[str]:
        return [label(item) for item in self.items]

    @property
    def snapshots(self) -> list[TaskSnapshot]:
        return [i for i in self.items if isinstance(i, TaskSnapshot)]


def check_watched_whole(got: Watched, script: Task) -> None:
    """``watch`` handed on_event each of the script's events once, in order, and
    returned the ComfyUI result."""
    assert got.error is None
    assert got.labels == typed_labels(script)
    check_comfy_result(got.result)


def run_watch(
    driver: Driver,
    srv: TestServer,
    task_id: str = "t-1",
    *,
    async_on_event: bool = False,
    raise_on: int | None = None,
    **kwargs: Any,
) -> Watched:
    """``watch(task_id)`` with the server's key, base URL and trust, recording.

    ``async_on_event``: an ``async def`` on_event (async drivers only). ``raise_on``:
    on_event raises ``RuntimeError`` when it is handed item number ``raise_on`` (1-based).
    """
    out = Watched()

    def record(item: Any) -> None:
        out.items.append(item)
        if raise_on is not None and len(out.items) == raise_on:
            raise RuntimeError(f"on_event refuses item {raise_on}")

    async def record_async(item: Any) -> None:
        await driver.sleep0()
        record(item)

    assert driver.is_async or not async_on_event
    on_event = record_async if async_on_event else record
    settings = client_settings(srv, on_event=on_event, poll_interval=POLL) | kwargs
    m = driver.module

    async def main() -> None:
        try:
            out.result = await m.watch(task_id, **settings)
        except (SSEProtoError, RuntimeError) as exc:
            out.error = exc

    def blocking() -> None:
        try:
            out.result = m.watch(task_id, **settings)
        except (SSEProtoError, RuntimeError) as exc:
            out.error = exc

    driver.drive(main, blocking)
    return out


def client_settings(srv: TestServer, **kwargs: Any) -> dict[str, Any]:
    return {
        "api_key": srv.token,
        "base_url": srv.base_url,
        "ssl_context": srv.ssl_context,
        **kwargs,
    }


@dataclass
class Followed:
    """What ``Client.task_events`` gave: its items, and how it ended."""

    items: list[Any] = field(default_factory=list)
    error: BaseException | None = None

    @property
    def labels(self) -> list[str]:
        return [label(item) for item in self.items]


def follow(driver: Driver, srv: TestServer, task_id: str = "t-1", **kwargs: Any) -> Followed:
    """``Client(...).task_events(task_id, **kwargs)`` read to its end."""
    out = Followed()
    m = driver.module
    settings = client_settings(srv)

    async def main() -> None:
        async with m.Client(**settings) as client:
            try:
                async for item in client.task_events(task_id, **kwargs):
                    out.items.append(item)
            except SSEProtoError as exc:
                out.error = exc

    def blocking() -> None:
        with m.Client(**settings) as client:
            try:
                for item in client.task_events(task_id, **kwargs):
                    out.items.append(item)
            except SSEProtoError as exc:
                out.error = exc

    driver.drive(main, blocking)
    return out


@dataclass
class Tour:
    """One session of every Client method (see ``client_tour``)."""

    run_id: str = ""
    fresh: TaskSnapshot | None = None
    unfinished: BaseException | None = None
    cancel_answer: object = "not called"
    cancelled_events: list[str] = field(default_factory=list)
    cancelled_result: TaskResult | None = None
    listed: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    done: TaskSnapshot | None = None
    result: TaskResult | None = None
    completed_only: list[str] = field(default_factory=list)


def client_tour(driver: Driver, srv: TestServer) -> Tour:
    """In one Client: run a workflow, look at it, cancel it, follow it; follow the
    scripted ``t-1`` to its end; list the tasks; fetch the results."""
    out = Tour()
    m = driver.module
    settings = client_settings(srv)

    async def main() -> None:
        async with m.Client(**settings) as client:
            out.run_id = await client.run_workflow("comfy-demo@2", {"seed": 7})
            out.fresh = await client.get_task(out.run_id)
            try:
                await client.get_result(out.run_id)
            except HTTPStatusError as exc:
                out.unfinished = exc
            out.cancel_answer = await client.cancel_task(out.run_id)
            async for item in client.task_events(out.run_id):
                out.cancelled_events.append(label(item))
            out.cancelled_result = await client.get_result(out.run_id)
            async for item in client.task_events("t-1"):
                out.events.append(label(item))
            out.done = await client.get_task("t-1")
            out.result = await client.get_result("t-1")
            tasks, out.meta = await client.list_tasks()
            out.listed = sorted(str(t.id) for t in tasks)
            completed, _ = await client.list_tasks(status="completed")
            out.completed_only = [str(t.id) for t in completed]

    def blocking() -> None:
        with m.Client(**settings) as client:
            out.run_id = client.run_workflow("comfy-demo@2", {"seed": 7})
            out.fresh = client.get_task(out.run_id)
            try:
                client.get_result(out.run_id)
            except HTTPStatusError as exc:
                out.unfinished = exc
            out.cancel_answer = client.cancel_task(out.run_id)
            for item in client.task_events(out.run_id):
                out.cancelled_events.append(label(item))
            out.cancelled_result = client.get_result(out.run_id)
            for item in client.task_events("t-1"):
                out.events.append(label(item))
            out.done = client.get_task("t-1")
            out.result = client.get_result("t-1")
            tasks, out.meta = client.list_tasks()
            out.listed = sorted(str(t.id) for t in tasks)
            completed, _ = client.list_tasks(status="completed")
            out.completed_only = [str(t.id) for t in completed]

    driver.drive(main, blocking)
    return out


def client_error(driver: Driver, method: str, *args: Any, **settings: Any) -> BaseException:
    """The SSEProtoError that one Client call raises (it must raise one)."""
    m = driver.module
    caught: list[BaseException] = []

    async def main() -> None:
        async with m.Client(**settings) as client:
            try:
                await getattr(client, method)(*args)
            except SSEProtoError as exc:
                caught.append(exc)

    def blocking() -> None:
        with m.Client(**settings) as client:
            try:
                getattr(client, method)(*args)
            except SSEProtoError as exc:
                caught.append(exc)

    driver.drive(main, blocking)
    assert caught, f"Client.{method} raised nothing"
    return caught[0]


def client_calls(driver: Driver, calls: list[tuple[str, str]], **settings: Any) -> list[Any]:
    """Client calls in one session, one after the other: what each returned."""
    m = driver.module
    out: list[Any] = []

    async def main() -> None:
        async with m.Client(**settings) as client:
            for method, arg in calls:
                out.append(await getattr(client, method)(arg))

    def blocking() -> None:
        with m.Client(**settings) as client:
            out.extend(getattr(client, method)(arg) for method, arg in calls)

    driver.drive(main, blocking)
    return out


# == open_event_stream ===================================================================


def test_stream_clean_run(driver: Driver) -> None:
    with server({"t-1": QUICK}) as srv:
        got = stream(driver, srv)
    assert got.error is None
    assert got.labels == sse_labels(QUICK)
    check_step_data(got.events, QUICK, "t-1")
    assert (got.last_event_id, got.retry, got.connections) == ("6", RETRY_MS, 1)
    [request] = requests_to(srv, "/tasks/t-1/events")
    headers = request.headers
    assert headers["accept"] == "text/event-stream"
    assert headers["accept-encoding"] == "identity"
    assert headers["cache-control"] == "no-cache"
    assert headers["user-agent"] == f"sseproto/{sseproto.__version__}"
    assert headers["authorization"] == f"Bearer {srv.token}"
    assert "last-event-id" not in headers


@without_uvloop
@pytest.mark.parametrize(
    ("fault", "resumed"),
    [
        pytest.param(Fault("drop_mid_event", after=2), "2", id="drop_mid_event"),
        pytest.param(Fault("drop_between", after=3), "3", id="drop_between"),
        pytest.param(Fault("drop_mid_event", after=0), "", id="drop_mid_first_event"),
    ],
)
def test_stream_resumes_after_a_drop(driver: Driver, fault: Fault, resumed: str) -> None:
    script = quick(faults=[fault])
    with server({"t-1": script}) as srv:
        got = stream(driver, srv)
    assert got.error is None
    assert got.labels == sse_labels(script)  # each once, in order
    check_step_data(got.events, script, "t-1")
    assert resumed_from(srv) == [None, resumed or None]
    assert got.connections == 2


@without_uvloop
def test_stream_resumes_after_drops_in_a_row(driver: Driver) -> None:
    faults = [Fault("drop_mid_event", after=1), Fault("drop_between", after=1)]
    faults += [Fault("drop_mid_event", after=2)]
    script = quick(faults=faults)
    with server({"t-1": script}) as srv:
        got = stream(driver, srv)
    assert got.error is None
    assert got.labels == sse_labels(script)
    assert resumed_from(srv) == [None, "1", "2", "4"]


def test_stream_replaces_a_stalled_connection(driver: Driver) -> None:
    script = quick(faults=[Fault("stall", after=2)])
    with server({"t-1": script}) as srv:
        got = stream(driver, srv, read_timeout=STALL_READ_TIMEOUT)
    assert got.error is None
    assert got.labels == sse_labels(script)
    assert resumed_from(srv) == [None, "2"]


@without_uvloop
def test_stream_heartbeats_keep_an_idle_connection(driver: Driver) -> None:
    # 0.5 s of silence between two events, heartbeats every 0.05 s, read_timeout 0.2 s:
    # the comments count as bytes, so the one connection lives.
    steps = [status("running"), progress(0.5, delay=0.5), *comfyui_timeline(1, interval=0)[-1:]]
    script = quick(steps, heartbeat=0.05)
    with server({"t-1": script}) as srv:
        got = stream(driver, srv, read_timeout=STALL_READ_TIMEOUT)
    assert got.error is None
    assert got.labels == ["status#1", "progress#2", "completed#3"]
    assert resumed_from(srv) == [None]


@without_uvloop
def test_stream_delivers_the_error_event_once(driver: Driver) -> None:
    # A plain SSE stream knows nothing of the task API: an error event is an event, and
    # the close after it is followed by a resume.
    script = quick(faults=[Fault("error_then_close", after=2)])
    with server({"t-1": script}) as srv:
        got = stream(driver, srv)
    assert got.error is None
    assert got.labels == [*sse_labels(script, 1, 2), "error#2", *sse_labels(script, 3)]
    error_event = got.events[2]
    assert json.loads(error_event.data) == {"message": "simulated: failed to read the task state"}
    assert resumed_from(srv) == [None, "2"]


@without_uvloop
def test_stream_honours_retry_after(driver: Driver) -> None:
    # The 503 comes after a stream that set retry: 50, so only Retry-After explains a
    # wait of a second.
    script = quick(
        faults=[Fault("drop_between", after=2), Fault("status", code=503, retry_after=1)]
    )
    with server({"t-1": script}) as srv:
        got = stream(driver, srv)
    assert got.error is None
    assert got.labels == sse_labels(script)
    _, refused, resumed = requests_to(srv, "/tasks/t-1/events")
    assert refused.headers.get("last-event-id") == "2"
    assert resumed.headers.get("last-event-id") == "2"
    assert resumed.time - refused.time >= 0.9


@without_uvloop
def test_stream_gives_up_after_max_attempts(driver: Driver) -> None:
    faults: list[Fault | None] = [Fault("drop_between", after=1)]
    faults += [Fault("status", code=503)] * 4
    script = quick(faults=faults)
    with server({"t-1": script}) as srv:
        got = stream(driver, srv, max_attempts=2, max_backoff=0.2)
    assert got.labels == ["status#1"]
    assert type(got.error) is ReconnectError
    assert got.error.attempts == 2
    assert type(got.error.last_error) is HTTPStatusError
    assert got.error.last_error.status_code == 503
    assert resumed_from(srv) == [None, "1", "1"]


@without_uvloop
def test_stream_stops_cleanly_on_204(driver: Driver) -> None:
    script = quick(faults=[Fault("drop_between", after=2), Fault("no_content")])
    with server({"t-1": script}) as srv:
        got = stream(driver, srv)
    assert (got.labels, got.error) == (["status#1", "status#2"], None)
    assert resumed_from(srv) == [None, "2"]


@without_uvloop
def test_stream_204_at_once_is_a_clean_end(driver: Driver) -> None:
    with server({"t-1": quick(faults=[Fault("no_content")])}) as srv:
        got = stream(driver, srv)
    assert (got.labels, got.error) == ([], None)
    assert resumed_from(srv) == [None]


@without_uvloop
def test_stream_refuses_the_wrong_content_type(driver: Driver) -> None:
    with server({"t-1": quick(faults=[Fault("wrong_content_type")])}) as srv:
        got = stream(driver, srv)
    assert got.events == []
    assert type(got.error) is ContentTypeError
    assert got.error.status_code == 200
    assert resumed_from(srv) == [None]  # not retried


@pytest.mark.parametrize("code", [401, 403, 404])
@without_uvloop
def test_stream_refusals_are_final(driver: Driver, code: int) -> None:
    with server({"t-1": quick(faults=[Fault("status", code=code)])}) as srv:
        got = stream(driver, srv)
    assert got.events == []
    assert type(got.error) is HTTPStatusError
    assert got.error.status_code == code
    assert f"simulated HTTP {code}".encode() in got.error.body
    assert resumed_from(srv) == [None]


@without_uvloop
def test_stream_bad_token_is_401_and_secret_free(driver: Driver) -> None:
    wrong = f"sk-wrong-{secrets.token_hex(8)}"
    with server({"t-1": QUICK}) as srv:
        got = stream(driver, srv, headers={"Authorization": f"Bearer {wrong}"})
    assert got.events == []
    assert type(got.error) is HTTPStatusError
    assert got.error.status_code == 401
    assert b"invalid or missing token" in got.error.body
    check_secret_free(got.error, wrong, srv.token)


@without_uvloop
@pytest.mark.parametrize("trust", ["default", "fresh"])
def test_stream_untrusted_certificate(driver: Driver, trust: str) -> None:
    context = None if trust == "default" else ssl.create_default_context()
    with server({"t-1": QUICK}) as srv:
        got = stream(driver, srv, ssl_context=context)
    assert got.events == []
    assert type(got.error) is CertificateError
    assert srv.requests == []  # the handshake failed: no request, and no retry


def test_stream_drops_replays_after_a_resume(driver: Driver) -> None:
    script = quick(faults=[Fault("drop_between", after=4)], replay=3)
    with server({"t-1": script}) as srv:
        got = stream(driver, srv)
    assert got.error is None
    assert got.labels == sse_labels(script)  # 2, 3 and 4 were sent again, not delivered
    assert resumed_from(srv) == [None, "4"]
    assert got.last_event_id == "6"


@without_uvloop
def test_stream_drops_replays_after_a_mid_event_drop(driver: Driver) -> None:
    faults = [Fault("drop_mid_event", after=3), Fault("drop_mid_event", after=3)]
    script = quick(faults=faults, replay=2)
    with server({"t-1": script}) as srv:
        got = stream(driver, srv)
    assert got.error is None
    assert got.labels == sse_labels(script)
    assert resumed_from(srv) == [None, "3", "4"]


@without_uvloop
def test_stream_resumes_from_a_given_last_event_id(driver: Driver) -> None:
    # The server replays 2 events before id 4; this stream never delivered them, so
    # they are not replays to it: delivered (deduplicating across sessions is the
    # caller's).
    script = quick(replay=2)
    with server({"t-1": script}) as srv:
        got = stream(driver, srv, last_event_id="4")
    assert got.error is None
    assert got.labels == sse_labels(script, 3)
    assert resumed_from(srv) == ["4"]


#: (line end, one byte per write, JSON over several data: lines); uvloop's transport
#: matters where the bytes arrive one by one.
FORMATS = [
    ("\r\n", False, False, "crlf"),
    ("\r", False, True, "cr-multiline"),
    ("\n", False, True, "lf-multiline"),
    ("\n", True, False, "lf-trickle"),
    ("\r\n", True, True, "crlf-trickle-multiline"),
    ("\r", True, True, "cr-trickle-multiline"),
]


@pytest.mark.parametrize(
    ("driver", "line_ending", "trickle", "multiline"),
    [
        pytest.param(name, eol, trickle, multiline, id=f"{name}-{fmt}")
        for eol, trickle, multiline, fmt in FORMATS
        for name in ALL_DRIVERS
        if trickle or name != "uvloop"
    ],
    indirect=["driver"],
)
def test_stream_wire_formats(
    driver: Driver, line_ending: str, trickle: bool, multiline: bool
) -> None:
    script = quick(line_ending=line_ending, trickle=trickle, multiline_data=multiline)
    with server({"t-1": script}) as srv:
        got = stream(driver, srv)
    assert got.error is None
    assert got.labels == sse_labels(script)
    check_step_data(got.events, script, "t-1")
    assert (got.last_event_id, got.retry, got.connections) == ("6", RETRY_MS, 1)


@without_uvloop
def test_stream_trickled_with_drops(driver: Driver) -> None:
    faults = [Fault("drop_mid_event", after=1), Fault("drop_between", after=2)]
    script = quick(faults=faults, trickle=True, line_ending="\r", replay=1)
    with server({"t-1": script}) as srv:
        got = stream(driver, srv)
    assert got.error is None
    assert got.labels == sse_labels(script)
    check_step_data(got.events, script, "t-1")
    assert resumed_from(srv) == [None, "1", "2"]


def test_stream_left_early_closes_at_once(driver: Driver) -> None:
    # The third event is a minute away: leaving the block must not wait for it.
    with server({"t-1": quick([*SLOW, *comfyui_timeline(1)[-1:]])}) as srv:
        got = stream(driver, srv, stop=lambda events: len(events) == 2)
    assert (got.labels, got.error) == (["status#1", "status#2"], None)


@without_uvloop
def test_stream_gives_up_with_the_last_refusal(driver: Driver) -> None:
    faults = [Fault("drop_between", after=1), Fault("status", code=503, retry_after=1)]
    with server({"t-1": quick(faults=faults)}) as srv:
        got = stream(driver, srv, max_attempts=1)
    assert got.labels == ["status#1"]
    assert type(got.error) is ReconnectError
    assert got.error.attempts == 1
    last = got.error.last_error
    assert type(last) is HTTPStatusError
    assert (last.status_code, last.retry_after) == (503, 1.0)
    assert b"simulated HTTP 503" in last.body
    assert resumed_from(srv) == [None, "1"]


@pytest.mark.parametrize("moment", ["reading", "heartbeats", "waiting", "connecting"])
def test_stream_interrupted_closes_its_connection(
    driver: Driver, moment: str, request: pytest.FixtureRequest
) -> None:
    # A cancellation (trio, asyncio) or an exception from a signal handler (blocking,
    # as Ctrl-C) while the stream waits for bytes (with and without heartbeats), for
    # its reconnection time, or for a TLS handshake: it leaves through the block, and
    # nothing is left open.
    if moment == "connecting" and driver.name != "trio":
        request.applymarker(
            pytest.mark.xfail(
                reason="httpcore 1.0's start_tls closes the socket on Exception only: a "
                "cancellation or an interrupt during the TLS handshake leaves it open",
                strict=True,
            )
        )
    sockets, threads = open_sockets(), set(threading.enumerate())
    events: list[ServerSentEvent] = []
    m = driver.module
    scripts = {
        "reading": quick(SLOW),
        "heartbeats": quick(SLOW, heartbeat=0.05),
        "waiting": quick(retry=10_000, faults=[Fault("drop_between", after=2)]),
        "connecting": QUICK,
    }
    with server({"t-1": scripts[moment]}) as srv, raw_listener("silent") as silent:
        url = events_url(srv)
        if moment == "connecting":
            url = f"https://127.0.0.1:{silent.port}/events"
        settings: dict[str, Any] = {"headers": auth(srv), "ssl_context": srv.ssl_context}

        async def main() -> None:
            async with m.open_event_stream(url, **settings) as stream:
                async for event in stream:
                    events.append(event)  # noqa: PERF401 (kept as they come)

        def blocking() -> None:
            with m.open_event_stream(url, **settings) as stream:
                for event in stream:
                    events.append(event)  # noqa: PERF402 (kept as they come)

        stopped = driver.interrupted(INTERRUPT, main, blocking)
    assert stopped
    expected = [] if moment == "connecting" else ["status#1", "status#2"]
    assert [f"{e.event}#{e.id}" for e in events] == expected
    assert resumed_from(srv) == ([] if moment == "connecting" else [None])
    check_leaks(sockets, threads)  # here, so that a leak fails the test, not its teardown


@without_uvloop
@pytest.mark.parametrize(
    ("limit", "trickle"),
    [
        pytest.param("max_event_bytes", False, id="event"),
        pytest.param("max_line_bytes", False, id="line"),
        pytest.param("max_line_bytes", True, id="line-trickle"),
    ],
)
def test_stream_past_a_parser_limit(driver: Driver, limit: str, trickle: bool) -> None:
    # The status events carry ~85 bytes of data, the progress ones ~135: with a limit
    # of 110, the three status events are delivered, then the error; no reconnection.
    script = quick(trickle=trickle)
    with server({"t-1": script}) as srv:
        limits: dict[str, Any] = {limit: 110}
        got = stream(driver, srv, **limits)
    assert got.labels == sse_labels(script, 1, 3)
    assert type(got.error) is sseproto.EventStreamError
    assert resumed_from(srv) == [None]


IMPOSSIBLE_TIMEOUTS = [
    pytest.param({"connect_timeout": -1.0}, id="connect_timeout-negative"),
    pytest.param({"connect_timeout": math.nan}, id="connect_timeout-nan"),
    pytest.param({"read_timeout": -1.0}, id="read_timeout-negative"),
    pytest.param({"read_timeout": math.nan}, id="read_timeout-nan"),
]


@without_uvloop
@pytest.mark.parametrize("setting", IMPOSSIBLE_TIMEOUTS)
def test_stream_refuses_impossible_timeouts(driver: Driver, setting: dict[str, Any]) -> None:
    # As an impossible max_backoff is: a ConfigurationError on entering the block,
    # before anything is sent.
    m = driver.module
    url = "https://127.0.0.1:9/events"
    refused: list[ConfigurationError] = []

    async def main() -> None:
        try:
            async with m.open_event_stream(url, **setting):
                pass
        except ConfigurationError as exc:
            refused.append(exc)

    def blocking() -> None:
        try:
            with m.open_event_stream(url, **setting):
                pass
        except ConfigurationError as exc:
            refused.append(exc)

    driver.drive(main, blocking)
    assert len(refused) == 1


@without_uvloop
@pytest.mark.parametrize("setting", IMPOSSIBLE_TIMEOUTS)
def test_client_refuses_impossible_timeouts(driver: Driver, setting: dict[str, Any]) -> None:
    # As watch's impossible poll_interval is: a ConfigurationError, before anything is sent.
    with pytest.raises(ConfigurationError):
        driver.module.Client(api_key="sk-x", base_url="https://127.0.0.1:9/api", **setting)


#: (scheme, what the listener does, the exception, whether it is retried)
NETWORK_FAULTS = [
    pytest.param("https", "refused", ConnectError, True, id="refused"),
    pytest.param("https", "silent", ConnectTimeout, True, id="tls-never-answered"),
    pytest.param("https", "hangup", TLSHandshakeError, False, id="tls-hangup"),
    pytest.param("http", "hangup", RemoteProtocolError, True, id="http-hangup"),
    pytest.param("http", "silent", ReadTimeout, True, id="http-never-answered"),
]


@pytest.mark.parametrize(("scheme", "answer", "expected", "retried"), NETWORK_FAULTS)
def test_stream_network_faults(
    driver: Driver, scheme: str, answer: str, expected: type[Exception], retried: bool
) -> None:
    with raw_listener(answer) as listener:
        got = collect_stream(
            driver,
            f"{scheme}://127.0.0.1:{listener.port}/events",
            connect_timeout=NEVER,
            read_timeout=NEVER,
            max_attempts=1,
            max_backoff=0.05,
        )
    assert got.events == []
    if retried:  # the first attempt and one reconnection failed: given up
        assert type(got.error) is ReconnectError
        assert got.error.attempts == 1
        assert type(got.error.last_error) is expected
        if answer != "refused":
            assert listener.accepted == 2
    else:
        assert type(got.error) is expected
        assert listener.accepted == 1


# == watch ===============================================================================


def test_watch_clean_run(driver: Driver) -> None:
    with server({"t-1": QUICK}) as srv:
        got = run_watch(driver, srv)
    check_watched_whole(got, QUICK)
    [request] = requests_to(srv, "/tasks/t-1/events")
    assert request.headers["authorization"] == f"Bearer {srv.token}"
    assert request.headers["accept"] == "text/event-stream"
    assert requests_to(srv, "/tasks/t-1") == []  # the stream was enough: no polling
    [fetched] = requests_to(srv, "/tasks/t-1/result")
    assert fetched.headers["accept"] == "application/json"
    assert fetched.headers["accept-encoding"] == "identity"
    assert fetched.headers["user-agent"] == f"sseproto/{sseproto.__version__}"


@pytest.mark.parametrize(
    ("faults", "resumed"),
    [
        pytest.param([Fault("drop_mid_event", after=2)], ["2"], id="drop_mid_event"),
        pytest.param([Fault("drop_between", after=3)], ["3"], id="drop_between"),
        pytest.param(
            [Fault("drop_mid_event", after=1), Fault("drop_between", after=2)],
            ["1", "3"],
            id="two_drops",
        ),
    ],
)
def test_watch_resumes_after_drops(driver: Driver, faults: list[Fault], resumed: list[str]) -> None:
    script = quick(faults=faults)
    with server({"t-1": script}) as srv:
        got = run_watch(driver, srv)
    check_watched_whole(got, script)
    assert resumed_from(srv) == [None, *resumed]


def test_watch_replaces_a_stalled_connection(driver: Driver) -> None:
    script = quick(faults=[Fault("stall", after=2)])
    with server({"t-1": script}) as srv:
        got = run_watch(driver, srv, read_timeout=STALL_READ_TIMEOUT)
    check_watched_whole(got, script)
    assert resumed_from(srv) == [None, "2"]


def test_watch_drops_replays(driver: Driver) -> None:
    script = quick(faults=[Fault("drop_between", after=4)], replay=3)
    with server({"t-1": script}) as srv:
        got = run_watch(driver, srv)
    check_watched_whole(got, script)
    assert resumed_from(srv) == [None, "4"]


def test_watch_honours_retry_after(driver: Driver) -> None:
    script = quick(
        faults=[Fault("drop_between", after=2), Fault("status", code=503, retry_after=1)]
    )
    with server({"t-1": script}) as srv:
        got = run_watch(driver, srv)
    check_watched_whole(got, script)
    _, refused, resumed = requests_to(srv, "/tasks/t-1/events")
    assert resumed.headers.get("last-event-id") == "2"
    assert resumed.time - refused.time >= 0.9


def test_watch_polls_after_an_error_event(driver: Driver) -> None:
    script = quick(faults=[Fault("error_then_close", after=2)])
    with server({"t-1": script}) as srv:
        got = run_watch(driver, srv)
    assert got.error is None
    before = [*typed_labels(script, 1, 2), "StreamError#2"]
    assert got.labels[:3] == before  # the error event once, then polling
    check_polled(got.items[3:], script, final="completed")
    check_comfy_result(got.result)
    assert resumed_from(srv) == [None]  # no resume after an error event and a close


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Fault("no_content"), id="204"),
        pytest.param(Fault("wrong_content_type"), id="wrong_content_type"),
        pytest.param(Fault("status", code=404), id="404"),
        pytest.param(Fault("status", code=501), id="501"),
    ],
)
def test_watch_polls_when_there_is_no_stream(driver: Driver, fault: Fault) -> None:
    script = quick(faults=[fault])
    with server({"t-1": script}) as srv:
        got = run_watch(driver, srv)
    assert got.error is None
    check_polled(got.items, script, final="completed")
    check_comfy_result(got.result)
    assert resumed_from(srv) == [None]
    polls = requests_to(srv, "/tasks/t-1")
    assert len(polls) == len(got.items)
    assert all(p.headers["accept"] == "application/json" for p in polls)


def test_watch_polls_to_a_failure(driver: Driver) -> None:
    script = quick(FAILING, faults=[Fault("wrong_content_type")])
    with server({"t-1": script}) as srv:
        got = run_watch(driver, srv)
    check_polled(got.items, script, final="failed")
    assert type(got.error) is TaskFailed
    assert (got.error.task_id, got.error.error) == ("t-1", "CUDA out of memory")
    assert isinstance(got.error.snapshot, TaskSnapshot)
    assert requests_to(srv, "/tasks/t-1/result") == []


def test_watch_failed_task(driver: Driver) -> None:
    script = quick(FAILING, faults=[Fault("drop_mid_event", after=1)])
    with server({"t-1": script}) as srv:
        got = run_watch(driver, srv)
    assert got.labels == ["StatusChanged#1", "Progress#2", "Failed#3"]
    assert type(got.error) is TaskFailed
    assert (got.error.task_id, got.error.error) == ("t-1", "CUDA out of memory")
    assert label(got.error.snapshot) == "Failed#3"
    assert got.result is None


def test_watch_cancelled_task(driver: Driver) -> None:
    with server({"t-1": quick(CANCELLED)}) as srv:
        got = run_watch(driver, srv)
    assert got.labels == ["StatusChanged#1", "Progress#2", "Cancelled#3"]
    assert type(got.error) is TaskCancelled
    assert got.error.task_id == "t-1"
    assert got.result is None


@without_uvloop
def test_watch_polls_to_a_cancellation(driver: Driver) -> None:
    script = quick(CANCELLED, faults=[Fault("no_content")])
    with server({"t-1": script}) as srv:
        got = run_watch(driver, srv)
    check_polled(got.items, script, final="cancelled")
    assert type(got.error) is TaskCancelled


def test_watch_bad_token_is_401_and_secret_free(driver: Driver) -> None:
    wrong = f"sk-wrong-{secrets.token_hex(8)}"
    with server({"t-1": QUICK}) as srv:
        got = run_watch(driver, srv, api_key=wrong)
    assert got.items == []
    assert type(got.error) is HTTPStatusError
    assert got.error.status_code == 401
    check_secret_free(got.error, wrong, srv.token)
    assert requests_to(srv, "/tasks/t-1") == []  # a refusal is final: no polling


@without_uvloop
def test_watch_forbidden_stream_is_final(driver: Driver) -> None:
    with server({"t-1": quick(faults=[Fault("status", code=403)])}) as srv:
        got = run_watch(driver, srv)
    assert got.items == []
    assert type(got.error) is HTTPStatusError
    assert got.error.status_code == 403
    assert requests_to(srv, "/tasks/t-1") == []


@pytest.mark.parametrize("trust", ["default", "fresh"])
def test_watch_untrusted_certificate(driver: Driver, trust: str) -> None:
    context = None if trust == "default" else ssl.create_default_context()
    with server({"t-1": QUICK}) as srv:
        got = run_watch(driver, srv, ssl_context=context)
    assert got.items == []
    assert type(got.error) is CertificateError
    assert srv.requests == []


@pytest.mark.parametrize(
    ("line_ending", "trickle", "multiline"),
    [
        pytest.param("\r\n", False, True, id="crlf-multiline"),
        pytest.param("\r", True, False, id="cr-trickle"),
        pytest.param("\n", True, True, id="lf-trickle-multiline"),
    ],
)
def test_watch_wire_formats(
    driver: Driver, line_ending: str, trickle: bool, multiline: bool
) -> None:
    script = quick(line_ending=line_ending, trickle=trickle, multiline_data=multiline)
    with server({"t-1": script}) as srv:
        got = run_watch(driver, srv)
    check_watched_whole(got, script)


@without_uvloop
def test_watch_with_a_jwt_sends_the_team(driver: Driver) -> None:
    script = quick(faults=[Fault("wrong_content_type")])  # the stream, then polling
    with server({"t-1": script}, token=JWT) as srv:
        got = run_watch(driver, srv, team_id=TEAM)
        refused = run_watch(driver, srv, "t-2")  # no team: the server says 400
    assert got.error is None
    check_comfy_result(got.result)
    teams = {r.headers.get("x-team-id") for r in srv.requests if "/t-1" in r.path}
    assert teams == {TEAM}
    assert type(refused.error) is HTTPStatusError
    assert refused.error.status_code == 400
    assert JWT not in exception_text(refused.error)


@async_only
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_watch_on_event_sync_or_async(driver: Driver, kind: str) -> None:
    faults = [Fault("drop_mid_event", after=2), Fault("error_then_close", after=1)]
    script = quick(faults=faults)
    with server({"t-1": script}) as srv:
        got = run_watch(driver, srv, async_on_event=kind == "async")
    assert got.error is None
    assert got.labels[:4] == [*typed_labels(script, 1, 3), "StreamError#3"]
    check_polled(got.items[4:], script, final="completed")
    check_comfy_result(got.result)
    assert resumed_from(srv) == [None, "2"]


def test_watch_on_event_exception_propagates(driver: Driver) -> None:
    with server({"t-1": QUICK}) as srv:
        got = run_watch(driver, srv, raise_on=3)
    assert got.labels == typed_labels(QUICK, 1, 3)
    assert type(got.error) is RuntimeError
    assert str(got.error) == "on_event refuses item 3"
    assert requests_to(srv, "/tasks/t-1/result") == []


def test_watch_interrupted_closes_its_connections(driver: Driver) -> None:
    seen: list[str] = []
    m = driver.module
    with server({"t-1": quick(SLOW)}) as srv:
        settings = {**client_settings(srv), "on_event": lambda item: seen.append(label(item))}

        async def main() -> None:
            await m.watch("t-1", **settings)

        def blocking() -> None:
            m.watch("t-1", **settings)

        stopped = driver.interrupted(INTERRUPT, main, blocking)
    assert stopped
    assert seen == ["StatusChanged#1", "StatusChanged#2"]


@pytest.mark.parametrize("driver", ["sync"], indirect=True)
def test_watch_blocking_refuses_an_async_on_event(driver: Driver) -> None:
    async def on_event(item: Any) -> None:
        pass  # pragma: no cover (never awaited)

    def blocking() -> None:
        driver.module.watch("t-1", **client_settings(srv), on_event=on_event)

    with server({"t-1": QUICK}) as srv, pytest.raises(TypeError, match="on_event"):
        driver.call(blocking)


# == Client ==============================================================================


def test_client_tour(driver: Driver) -> None:
    script = quick(faults=[Fault("drop_mid_event", after=3)], replay=1)
    with server({"t-1": script}, result_conflict=True) as srv:
        tour = client_tour(driver, srv)
    # run_workflow, get_task, get_result before the end, cancel_task
    assert tour.fresh is not None
    assert tour.fresh.id == tour.run_id
    assert tour.fresh.workflow_id == "comfy-demo@2"
    assert not tour.fresh.is_terminal
    assert type(tour.unfinished) is HTTPStatusError
    assert tour.unfinished.status_code == 409
    assert b"the task has not finished" in tour.unfinished.body
    assert tour.cancel_answer is None
    [run] = requests_to(srv, "/workflows/slug/comfy-demo@2/run", "POST")
    assert json.loads(run.body) == {"parameters": {"seed": 7}}
    # the cancelled task's stream, and its result
    *before, last = tour.cancelled_events
    assert last.startswith("Cancelled#")
    assert before == [f"StatusChanged#{n}" for n in range(1, len(before) + 1)]
    assert last == f"Cancelled#{len(before) + 1}"
    assert tour.cancelled_result is not None
    assert tour.cancelled_result.output is None
    # the scripted task, followed through a drop
    assert tour.events == typed_labels(script)
    assert tour.done is not None
    assert str(tour.done.status) == "completed"
    check_comfy_result(tour.result)
    assert tour.listed == sorted(["t-1", tour.run_id])
    assert tour.meta["total_count"] == 2
    assert tour.completed_only == ["t-1"]
    assert resumed_from(srv) == [None, "3"]


@without_uvloop
def test_client_task_events_end_after_an_error_event(driver: Driver) -> None:
    script = quick(faults=[Fault("error_then_close", after=2)])
    with server({"t-1": script}) as srv:
        got = follow(driver, srv)
    assert got.labels == [*typed_labels(script, 1, 2), "StreamError#2"]
    assert type(got.error) is StreamUnavailable
    assert resumed_from(srv) == [None]


@without_uvloop
def test_client_task_events_204_is_unavailable(driver: Driver) -> None:
    with server({"t-1": quick(faults=[Fault("no_content")])}) as srv:
        got = follow(driver, srv)
    assert got.items == []
    assert type(got.error) is StreamUnavailable


@without_uvloop
def test_client_task_events_from_a_last_event_id(driver: Driver) -> None:
    with server({"t-1": QUICK}) as srv:
        got = follow(driver, srv, last_event_id="3")
    assert got.error is None
    assert got.labels == typed_labels(QUICK, 4)
    assert resumed_from(srv) == ["3"]


@without_uvloop
def test_client_bad_token_is_401_and_secret_free(driver: Driver) -> None:
    wrong = f"sk-wrong-{secrets.token_hex(8)}"
    with server({"t-1": QUICK}) as srv:
        exc = client_error(driver, "get_task", "t-1", **client_settings(srv, api_key=wrong))
    assert type(exc) is HTTPStatusError
    assert exc.status_code == 401
    assert b"invalid or missing token" in exc.body
    check_secret_free(exc, wrong, srv.token)


def test_client_untrusted_certificate(driver: Driver) -> None:
    with server({"t-1": QUICK}) as srv:
        exc = client_error(driver, "get_task", "t-1", **client_settings(srv, ssl_context=None))
    assert type(exc) is CertificateError
    assert srv.requests == []


@pytest.mark.parametrize(("scheme", "answer", "expected", "retried"), NETWORK_FAULTS)
def test_client_network_faults(
    driver: Driver, scheme: str, answer: str, expected: type[Exception], retried: bool
) -> None:
    with raw_listener(answer) as listener:
        settings = {
            "api_key": "sk-network",
            "base_url": f"{scheme}://127.0.0.1:{listener.port}/api",
            "connect_timeout": NEVER,
            "read_timeout": NEVER,
        }
        exc = client_error(driver, "get_task", "t-1", **settings)
    assert type(exc) is expected
    if answer != "refused":
        assert listener.accepted == 1  # a JSON call is not sent again on a new connection
    assert "sk-network" not in exception_text(exc)


def test_client_sends_again_when_the_idle_connection_was_closed(driver: Driver) -> None:
    # The server answers a first call on a kept-alive connection, and closes that
    # connection when the second call arrives on it, without answering (its idle
    # timeout struck): the call was never seen, so it is sent again on a new
    # connection, once (_rules.may_resend, "the server had closed the idle connection").
    with raw_listener("answer-once") as listener:
        settings = {"api_key": "sk-keepalive", "base_url": f"http://127.0.0.1:{listener.port}/api"}
        got = client_calls(driver, [("get_task", "t-1"), ("get_task", "t-1")], **settings)
    assert [label(item) for item in got] == ["TaskSnapshot:running"] * 2
    assert listener.accepted == 2


def test_client_task_events_left_early(driver: Driver) -> None:
    # Leaving task_events after two items (closing it, as its docstring says): the
    # client goes on (a JSON call), and nothing is left open.
    m = driver.module
    seen: list[str] = []
    snapshot: list[TaskSnapshot] = []
    with server({"t-1": quick(SLOW)}) as srv:
        settings = client_settings(srv)

        async def main() -> None:
            async with m.Client(**settings) as client:
                async with contextlib.aclosing(client.task_events("t-1")) as items:
                    async for item in items:
                        seen.append(label(item))
                        if len(seen) == 2:
                            break
                snapshot.append(await client.get_task("t-1"))

        def blocking() -> None:
            with m.Client(**settings) as client:
                with contextlib.closing(client.task_events("t-1")) as items:
                    for item in items:
                        seen.append(label(item))
                        if len(seen) == 2:
                            break
                snapshot.append(client.get_task("t-1"))

        driver.drive(main, blocking)
    assert seen == ["StatusChanged#1", "StatusChanged#2"]
    assert [str(s.status) for s in snapshot] == ["running"]


# == http_client= (the httpx drivers) ==================================================


@httpx_only
def test_http_client_is_the_callers(driver: Driver) -> None:
    httpx = pytest.importorskip("httpx")
    script = quick(faults=[Fault("drop_mid_event", after=2)])
    polled = quick(faults=[Fault("wrong_content_type")])
    m = driver.module
    got = Streamed()
    watched: list[str] = []
    out: dict[str, Any] = {}
    with server({"t-1": script, "t-2": polled}) as srv:
        url, headers = events_url(srv), auth(srv)
        api = {"api_key": srv.token, "base_url": srv.base_url}

        async def main() -> None:
            async with httpx.AsyncClient(verify=srv.ssl_context) as hc:
                async with m.open_event_stream(url, headers=headers, http_client=hc) as stream:
                    async for event in stream:
                        got.events.append(event)
                        if event.event in TERMINAL:
                            break
                out["result"] = await m.watch(
                    "t-2", **api, http_client=hc, poll_interval=POLL, on_event=on_event
                )
                async with m.Client(**api, http_client=hc) as client:
                    out["snapshot"] = await client.get_task("t-1")
                out["closed"] = hc.is_closed

        def blocking() -> None:
            with httpx.Client(verify=srv.ssl_context) as hc:
                with m.open_event_stream(url, headers=headers, http_client=hc) as stream:
                    for event in stream:
                        got.events.append(event)
                        if event.event in TERMINAL:
                            break
                out["result"] = m.watch(
                    "t-2", **api, http_client=hc, poll_interval=POLL, on_event=on_event
                )
                with m.Client(**api, http_client=hc) as client:
                    out["snapshot"] = client.get_task("t-1")
                out["closed"] = hc.is_closed

        def on_event(item: Any) -> None:
            watched.append(label(item))

        driver.drive(main, blocking)
    assert got.labels == sse_labels(script)
    assert resumed_from(srv) == [None, "2"]
    assert watched
    assert all(w.startswith("TaskSnapshot:") for w in watched)
    assert watched[-1] == "TaskSnapshot:completed"
    check_comfy_result(out["result"], "t-2")
    assert str(out["snapshot"].status) == "completed"
    assert out["closed"] is False  # sseproto never closes the caller's client
    # The caller's client's own defaults do not replace sseproto's headers.
    ua = f"sseproto/{sseproto.__version__}"
    for request in srv.requests:
        assert request.headers["user-agent"] == ua, request
        assert request.headers["accept-encoding"] == "identity", request
    [events_request] = requests_to(srv, "/tasks/t-2/events")
    assert events_request.headers["accept"] == "text/event-stream"
    assert {r.headers["accept"] for r in requests_to(srv, "/tasks/t-2")} == {"application/json"}


@httpx_only
def test_http_client_with_ssl_context_is_refused(driver: Driver) -> None:
    httpx = pytest.importorskip("httpx")
    m = driver.module
    errors: list[str] = []
    url = "https://127.0.0.1:9/events"
    api = {"api_key": "sk-x", "base_url": "https://127.0.0.1:9/api"}
    context = ssl.create_default_context()

    async def main() -> None:
        async with httpx.AsyncClient() as hc:
            with contextlib.suppress(ConfigurationError):
                async with m.open_event_stream(url, ssl_context=context, http_client=hc):
                    pass
                errors.append("open_event_stream")
            with contextlib.suppress(ConfigurationError):
                m.Client(**api, ssl_context=context, http_client=hc)
                errors.append("Client")
            with contextlib.suppress(ConfigurationError):
                await m.watch("t-1", **api, ssl_context=context, http_client=hc)
                errors.append("watch")
            with contextlib.suppress(ConfigurationError), httpx.Client() as blocking_kind:
                m.Client(**api, http_client=blocking_kind)
                errors.append("Client(httpx.Client)")

    def blocking() -> None:
        with httpx.Client() as hc:
            with contextlib.suppress(ConfigurationError):
                with m.open_event_stream(url, ssl_context=context, http_client=hc):
                    pass
                errors.append("open_event_stream")
            with contextlib.suppress(ConfigurationError):
                m.Client(**api, ssl_context=context, http_client=hc)
                errors.append("Client")
            with contextlib.suppress(ConfigurationError):
                m.watch("t-1", **api, ssl_context=context, http_client=hc)
                errors.append("watch")
            with contextlib.suppress(ConfigurationError):
                m.Client(**api, http_client=httpx.AsyncClient())  # the async kind
                errors.append("Client(httpx.AsyncClient)")

    driver.drive(main, blocking)
    assert errors == [], "accepted"


@httpx_only
def test_http_client_that_does_not_trust_the_server(driver: Driver) -> None:
    httpx = pytest.importorskip("httpx")
    m = driver.module
    got = Streamed()
    with server({"t-1": QUICK}) as srv:
        url, headers = events_url(srv), auth(srv)

        async def main() -> None:
            async with httpx.AsyncClient() as hc:
                try:
                    async with m.open_event_stream(url, headers=headers, http_client=hc) as s:
                        async for event in s:
                            got.events.append(event)  # pragma: no cover
                except SSEProtoError as exc:
                    got.error = exc

        def blocking() -> None:
            with httpx.Client() as hc:
                try:
                    with m.open_event_stream(url, headers=headers, http_client=hc) as s:
                        for event in s:
                            got.events.append(event)  # pragma: no cover
                except SSEProtoError as exc:
                    got.error = exc

        driver.drive(main, blocking)
    assert got.events == []
    assert type(got.error) is CertificateError
    assert srv.requests == []
