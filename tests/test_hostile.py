"""The trio driver against hostile servers, end to end on loopback.

Each test plays one finding of an attacker-style review of the trio + h11 transport
(``open_event_stream``, ``Client``, ``watch``): a server that sends what HTTP allows
but a careless client mishandles (redirects to odd targets, ids HTTP cannot carry,
half answers, ``retry: 0`` with a close, years of ``Retry-After``, floods of 1xx,
compressed streams, a line past the limit in the same read as good events, replays,
TLS that cannot be agreed on), and a caller who passes a header HTTP cannot carry.

The servers here are small raw ones (plain TCP, or TLS from trustme certificates)
bound to 127.0.0.1, written so that they can misbehave byte by byte; each records
the requests it read, raw. Every test runs on trio's ``MockClock`` (autojump), and
the autouse ``client_sockets`` fixture checks that every socket the client opened is
closed at the end.
"""

from __future__ import annotations

import gzip
import itertools
import json
import logging
import os
import random
import ssl
import traceback
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing
import trustme

import sseproto
import sseproto._stream
from sseproto import (
    CertificateError,
    Client,
    ConfigurationError,
    ContentTypeError,
    EventStreamError,
    HTTPStatusError,
    RemoteProtocolError,
    ServerSentEvent,
    SSEProtoError,
    TaskResult,
    TLSHandshakeError,
    open_event_stream,
    watch,
)
from sseproto._rules import MAX_INFORMATIONAL, MIN_CONNECT_INTERVAL

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
    from pathlib import Path

    from sseproto import EventStream

    Handler = Callable[["Peer"], Awaitable[None]]

SECRET = "sk-secret-123"
API_KEY = "sk-hostile-test"


# -- a raw loopback server -------------------------------------------------------------


@dataclass
class Request:
    """A request a raw server read: its request line and header fields as received."""

    line: bytes
    fields: list[tuple[bytes, bytes]]
    body: bytes
    connection: int  # which accepted connection (0, 1, ...) carried it
    time: float  # trio time when its head was read

    @property
    def method(self) -> bytes:
        return self.line.split(b" ")[0]

    @property
    def target(self) -> bytes:
        return self.line.split(b" ")[1]

    def header(self, name: str) -> bytes | None:
        """The raw value of the header ``name`` (case-insensitive); None if absent."""
        values = self.headers(name)
        return values[0] if values else None

    def headers(self, name: str) -> list[bytes]:
        return [v for k, v in self.fields if k.lower() == name.lower().encode()]


@dataclass
class Server:
    """What a raw server saw: its connections (and when), its requests."""

    port: int = 0
    scheme: str = "http"
    accepted: list[float] = field(default_factory=list)
    handshakes_failed: int = 0
    requests: list[Request] = field(default_factory=list)

    @property
    def connections(self) -> int:
        return len(self.accepted)

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def requests_for(self, method: bytes) -> list[Request]:
        return [r for r in self.requests if r.method == method]


class Peer:
    """The server's side of one accepted connection: read requests, send raw bytes."""

    def __init__(self, stream: trio.abc.Stream, server: Server, index: int) -> None:
        self.stream = stream
        self.server = server
        self.index = index
        self._buffer = b""

    async def request(self) -> Request | None:
        """The next request (head and Content-Length body); None when the client closed."""
        while b"\r\n\r\n" not in self._buffer:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                return None
            self._buffer += chunk
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        line, *lines = head.split(b"\r\n")
        fields = []
        for raw in lines:
            name, _, value = raw.partition(b":")
            fields.append((name, value.strip(b" \t")))
        request = Request(line, fields, b"", self.index, trio.current_time())
        size = int(request.header("content-length") or b"0")
        while len(self._buffer) < size:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                return None
            self._buffer += chunk
        request.body, self._buffer = self._buffer[:size], self._buffer[size:]
        self.server.requests.append(request)
        return request

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def wait_for_eof(self) -> None:
        """Read (and drop) until the client closes the connection."""
        while await self.stream.receive_some(65536):
            pass


@asynccontextmanager
async def serve(handler: Handler, *, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    """Serve ``handler`` on 127.0.0.1 (plain TCP, or TLS with ``tls``) for the block.

    A connection is closed when its handler returns; a client that breaks the
    connection ends its handler quietly.
    """
    server = Server(scheme="http" if tls is None else "https")

    async def on_connection(tcp: trio.SocketStream) -> None:
        index = server.connections
        server.accepted.append(trio.current_time())
        stream: trio.abc.Stream = tcp
        try:
            if tls is not None:
                tls_stream = trio.SSLStream(tcp, tls, server_side=True)
                try:
                    await tls_stream.do_handshake()
                except trio.BrokenResourceError:
                    server.handshakes_failed += 1
                    return
                stream = tls_stream
            await handler(Peer(stream, server, index))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client closed or reset the connection

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, on_connection, 0, host="127.0.0.1"))
        server.port = listeners[0].socket.getsockname()[1]
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


def response(
    status: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    close: bool = False,
) -> bytes:
    """A whole HTTP/1.1 response with a Content-Length (keep-alive unless ``close``)."""
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers or []]
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def json_response(payload: Any, *, close: bool = False) -> bytes:
    body = json.dumps(payload).encode()
    return response("200 OK", [("Content-Type", "application/json")], body, close=close)


#: The head of an event stream whose body runs to the close of the connection.
STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"


def snapshot(status: str = "running") -> dict[str, Any]:
    return {"id": "t-1", "task_status": status, "task_error": ""}


async def pull(stream: EventStream, *, within: float = 300.0) -> ServerSentEvent:
    """The next event, or what the stream raises (TooSlowError rather than a hang)."""
    with trio.fail_after(within):
        return await stream.__anext__()


async def take(stream: EventStream, n: int, *, within: float = 300.0) -> list[ServerSentEvent]:
    """Up to ``n`` events; fewer if the stream ends or ``within`` mock seconds pass."""
    got: list[ServerSentEvent] = []
    with trio.move_on_after(within):
        async for event in stream:
            got.append(event)
            if len(got) == n:
                break
    return got


async def collect(stream: EventStream, got: list[ServerSentEvent]) -> None:
    """Every event of the stream into ``got``, as it arrives (kept if the stream raises)."""
    async for event in stream:
        got.append(event)  # noqa: PERF401 (what arrived before an error must be kept)


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def everything_said(exc: BaseException) -> str:
    """The exception's whole traceback as text, causes and contexts included."""
    return "".join(traceback.format_exception(exc))


@pytest.fixture(autouse=True)
def client_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[trio.SocketStream]]:
    """Every TCP stream the client opens; the test fails if one is left open."""
    opened: list[trio.SocketStream] = []
    open_tcp_stream = trio.open_tcp_stream

    async def tracking(*args: Any, **kwargs: Any) -> trio.SocketStream:
        stream = await open_tcp_stream(*args, **kwargs)
        opened.append(stream)
        return stream

    monkeypatch.setattr(trio, "open_tcp_stream", tracking)
    yield opened
    leaked = [s for s in opened if s.socket.fileno() != -1]
    for stream in leaked:  # so that the leak fails this test, not a later one at gc
        os.close(stream.socket.detach())
    assert leaked == [], "a client socket was left open"


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("CYBERUN_API_KEY", "CYBERUN_BASE_URL", "CYBERUN_TEAM_ID"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# -- TLS -------------------------------------------------------------------------------


@dataclass
class Certificates:
    ca: trustme.CA
    server: ssl.SSLContext  # serves a certificate for 127.0.0.1 signed by ``ca``
    client: ssl.SSLContext  # trusts ``ca``
    ca_path: str  # ``ca``'s PEM, for SSL_CERT_FILE


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    ca = trustme.CA()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client)
    ca_path = str(tmp_path / "ca.pem")
    ca.cert_pem.write_to_path(ca_path)
    return Certificates(ca, server, client, ca_path)


# == 1. Server-controlled redirect targets =================================================


def redirect_then_stream(location: bytes | Callable[[Server], bytes]) -> Handler:
    """``/start`` redirects (302) to ``location`` (raw bytes); any other target is an
    event stream of one event, ``arrived``."""

    async def handler(peer: Peer) -> None:
        request = await peer.request()
        if request is None:
            return
        if request.target == b"/start":
            raw = location(peer.server) if callable(location) else location
            await peer.send(
                b"HTTP/1.1 302 Found\r\nLocation: " + raw + b"\r\nContent-Length: 0\r\n"
                b"Connection: close\r\n\r\n"
            )
        else:
            await peer.send(STREAM_HEAD + b"data: arrived\n\n")

    return handler


FOLLOWED_REDIRECTS = [
    pytest.param(b"/a b", b"/a%20b", id="space"),
    pytest.param("/é".encode(), b"/%C3%A9", id="utf8"),
    pytest.param(b"/\xe9", b"/%C3%A9", id="latin1"),
    pytest.param(b"/a\tb", b"/ab", id="tab"),
]


@pytest.mark.parametrize(("location", "target"), FOLLOWED_REDIRECTS)
async def test_stream_follows_a_same_origin_redirect_percent_encoded(
    autojump_clock: trio.testing.MockClock, location: bytes, target: bytes
) -> None:
    async with (
        serve(redirect_then_stream(location)) as server,
        open_event_stream(server.url("/start")) as stream,
    ):
        event = await pull(stream)
    assert event.data == "arrived"
    assert [r.line for r in server.requests] == [
        b"GET /start HTTP/1.1",
        b"GET " + target + b" HTTP/1.1",
    ]


async def test_stream_follows_an_absolute_same_origin_redirect_percent_encoded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def location(server: Server) -> bytes:
        return server.url("/a b/é").encode()

    async with (
        serve(redirect_then_stream(location)) as server,
        open_event_stream(server.url("/start")) as stream,
    ):
        event = await pull(stream)
    assert event.data == "arrived"
    assert server.requests[1].line == b"GET /a%20b/%C3%A9 HTTP/1.1"


UNUSABLE_REDIRECTS = [
    pytest.param(b"/x\r\nLocation: /y", id="two_locations"),
    pytest.param(b"/a b\r\nLocation: /c d", id="two_locations_with_spaces"),
    pytest.param(b"http://127.0.0.1:99999/x", id="bad_port"),
    pytest.param(b"ftp://127.0.0.1/x", id="not_http"),
]


@pytest.mark.parametrize("location", UNUSABLE_REDIRECTS)
async def test_stream_refuses_an_unusable_redirect_with_an_http_status_error(
    autojump_clock: trio.testing.MockClock, location: bytes
) -> None:
    async with serve(redirect_then_stream(location)) as server:
        with pytest.raises(HTTPStatusError) as info:
            async with open_event_stream(server.url("/start")) as stream:
                await pull(stream)
    assert info.value.status_code == 302
    assert [r.target for r in server.requests] == [b"/start"]  # not followed, not retried


def keep_alive(route: Callable[[Request], bytes]) -> Handler:
    """Answer every request of the connection with ``route(request)`` (raw bytes);
    the connection ends when the client closes it or an answer says close."""

    async def handler(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            answer = route(request)
            await peer.send(answer)
            if b"\r\nConnection: close\r\n" in answer.split(b"\r\n\r\n")[0] + b"\r\n":
                return

    return handler


def redirecting_api(location: bytes) -> Callable[[Request], bytes]:
    """The task API: ``GET /api/tasks/t-1`` redirects to ``location``; any other target
    answers a running task."""

    def route(request: Request) -> bytes:
        if request.target == b"/api/tasks/t-1":
            return b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"
        return json_response(snapshot("running"))

    return route


@pytest.mark.parametrize(
    ("location", "target"),
    [
        pytest.param(b"/api/a b", b"/api/a%20b", id="space"),
        pytest.param("/api/é".encode(), b"/api/%C3%A9", id="utf8"),
    ],
)
async def test_client_call_follows_a_same_origin_redirect_percent_encoded(
    autojump_clock: trio.testing.MockClock,
    no_env: pytest.MonkeyPatch,
    location: bytes,
    target: bytes,
) -> None:
    async with (
        serve(keep_alive(redirecting_api(location))) as server,
        Client(api_key=API_KEY, base_url=server.url("/api")) as client,
    ):
        task = await client.get_task("t-1")
    assert task.status == "running"
    assert [r.line for r in server.requests] == [
        b"GET /api/tasks/t-1 HTTP/1.1",
        b"GET " + target + b" HTTP/1.1",
    ]


@pytest.mark.parametrize("location", UNUSABLE_REDIRECTS)
async def test_client_call_refuses_an_unusable_redirect_with_an_http_status_error(
    autojump_clock: trio.testing.MockClock, no_env: pytest.MonkeyPatch, location: bytes
) -> None:
    async with (
        serve(keep_alive(redirecting_api(location))) as server,
        Client(api_key=API_KEY, base_url=server.url("/api")) as client,
    ):
        with pytest.raises(HTTPStatusError) as info:
            await client.get_task("t-1")
    assert info.value.status_code == 302
    assert [r.target for r in server.requests] == [b"/api/tasks/t-1"]


COMPLETED = (
    b'event: completed\ndata: {"task_id": "t-1", "status": "completed", '
    b'"output": {"9": "done"}}\n\n'
)


def watched_api(location: bytes) -> Handler:
    """The task API for ``watch("t-1")``: its events endpoint redirects (302) to
    ``location``; any other ``.../events...`` target streams the completed event; the
    result and the task answer JSON."""

    def route(request: Request) -> bytes:
        target = request.target
        if target == b"/api/tasks/t-1/events":
            return b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"
        if target.startswith(b"/api/tasks/t-1/") and b"events" in target:
            return STREAM_HEAD + COMPLETED
        if target == b"/api/tasks/t-1/result":
            return json_response({"id": "t-1", "task_output": {"9": "done"}, "task_error": ""})
        return json_response(snapshot("completed"))

    return keep_alive(route)


@pytest.mark.parametrize(
    ("location", "target"),
    [
        pytest.param(b"/api/tasks/t-1/new events", b"/api/tasks/t-1/new%20events", id="space"),
        pytest.param("/api/tasks/t-1/évents".encode(), b"/api/tasks/t-1/%C3%A9vents", id="utf8"),
    ],
)
async def test_watch_follows_a_redirect_of_the_events_endpoint_percent_encoded(
    autojump_clock: trio.testing.MockClock,
    no_env: pytest.MonkeyPatch,
    location: bytes,
    target: bytes,
) -> None:
    async with serve(watched_api(location)) as server:
        result = await watch("t-1", api_key=API_KEY, base_url=server.url("/api"))
    assert isinstance(result, TaskResult)
    assert result.output == {"9": "done"}
    assert b"GET " + target + b" HTTP/1.1" in [r.line for r in server.requests]


@pytest.mark.parametrize("location", UNUSABLE_REDIRECTS)
async def test_watch_with_an_unusable_redirect_raises_our_error(
    autojump_clock: trio.testing.MockClock, no_env: pytest.MonkeyPatch, location: bytes
) -> None:
    async with serve(watched_api(location)) as server:
        with pytest.raises(SSEProtoError) as info:
            await watch("t-1", api_key=API_KEY, base_url=server.url("/api"))
    # The events endpoint's refusal is final (a 302 is no "no stream here" status).
    assert isinstance(info.value, HTTPStatusError)
    assert info.value.status_code == 302


# == 2. A server-sent id that HTTP cannot carry as a header ===============================


def two_connections(first: bytes, second: bytes) -> Handler:
    """Connection 0 streams ``first``, any later one ``second``; each then closes."""

    async def handler(peer: Peer) -> None:
        if await peer.request() is None:
            return
        await peer.send(STREAM_HEAD + (first if peer.index == 0 else second))

    return handler


@pytest.mark.parametrize(
    "raw_id",
    [
        pytest.param(b"7 ", id="trailing_space"),
        pytest.param(b" 7", id="leading_space"),
        pytest.param(b"7\x01", id="control"),
    ],
)
async def test_an_unsendable_id_resumes_without_last_event_id(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, raw_id: bytes
) -> None:
    caplog.set_level(logging.WARNING, logger="sseproto")
    handler = two_connections(b"id: " + raw_id + b"\ndata: a\n\n", b"data: b\n\ndata: c\n\n")
    async with serve(handler) as server, open_event_stream(server.url("/s")) as stream:
        got = await take(stream, 3)
    assert [e.data for e in got] == ["a", "b", "c"]
    assert got[0].id == raw_id.decode()
    assert server.connections == 2
    assert server.requests[1].header("last-event-id") is None
    assert any("Last-Event-ID" in r.getMessage() for r in caplog.records)


async def test_a_non_ascii_id_is_sent_back_as_utf8(autojump_clock: trio.testing.MockClock) -> None:
    handler = two_connections("id: é\ndata: a\n\n".encode(), b"data: b\n\n")
    async with serve(handler) as server, open_event_stream(server.url("/s")) as stream:
        got = await take(stream, 2)
    assert [(e.id, e.data) for e in got] == [("é", "a"), ("é", "b")]
    assert server.requests[1].headers("last-event-id") == [b"\xc3\xa9"]


# == 3. A caller's header value that HTTP cannot carry ======================================


async def count_only(peer: Peer) -> None:
    """Read and drop until the client closes (a server that only counts)."""
    await peer.wait_for_eof()


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Authorization": f"Bearer {SECRET} "}, id="trailing_space"),
        pytest.param({"Authorization": f" Bearer {SECRET}"}, id="leading_space"),
        pytest.param({"X-A": "v\n"}, id="line_feed"),
        pytest.param({"X-A": f"{SECRET}\r\nX-Injected: 1"}, id="crlf_injection"),
    ],
)
async def test_a_header_value_http_cannot_carry_is_a_configuration_error(
    autojump_clock: trio.testing.MockClock, headers: dict[str, str]
) -> None:
    async with serve(count_only) as server:
        with pytest.raises(ConfigurationError) as info:
            async with open_event_stream(server.url("/s"), headers=headers):
                pytest.fail("the stream opened")  # refused when opening, not at a connect
        await trio.testing.wait_all_tasks_blocked()
        assert server.connections == 0  # nothing was sent
    name = next(iter(headers))
    assert name in str(info.value)
    assert SECRET not in everything_said(info.value)
    assert SECRET not in repr(info.value)


async def test_client_strips_the_api_key(
    autojump_clock: trio.testing.MockClock, no_env: pytest.MonkeyPatch
) -> None:
    route = keep_alive(lambda request: json_response(snapshot()))
    async with (
        serve(route) as server,
        Client(api_key=f" {SECRET} ", base_url=server.url("/api")) as client,
    ):
        await client.get_task("t-1")
    assert server.requests[0].headers("authorization") == [f"Bearer {SECRET}".encode()]


@pytest.mark.parametrize("key", ["sk-secret\n-123", "sk-secr\x01et", "sk-sécret", "sk-se cret"])
def test_client_refuses_a_key_http_cannot_carry_without_showing_it(
    no_env: pytest.MonkeyPatch, key: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        Client(api_key=key, base_url="http://127.0.0.1:9/api")
    assert key.strip() not in everything_said(info.value)


# == 4. A POST must never be sent twice =================================================

CALLS: list[Any] = [
    pytest.param(lambda client: client.cancel_task("t-1"), b"/api/tasks/t-1/cancel", id="cancel"),
    pytest.param(
        lambda client: client.run_workflow("my-flow", {"seed": 1}),
        b"/api/workflows/slug/my-flow/run",
        id="run_workflow",
    ),
]


def post_answer(request: Request) -> bytes:
    if request.method == b"POST" and request.target.endswith(b"/run"):
        return response(
            "202 Accepted", [("Content-Type", "application/json")], b'{"task_id": "t-9"}'
        )
    if request.method == b"POST":
        return json_response({})
    return json_response(snapshot())


@pytest.mark.parametrize(
    "partial_answer",
    [
        pytest.param(b"HTTP/1.1 20", id="half_status_line"),
        pytest.param(b"HTTP/1.1 202 Accepted\r\nContent-Type: appl", id="half_headers"),
        pytest.param(b"HTTP/1.1 202 Accepted\r\nContent-Length: 20\r\n\r\n{", id="half_body"),
    ],
)
@pytest.mark.parametrize(("call", "path"), CALLS)
async def test_a_post_is_not_resent_once_part_of_its_answer_arrived(
    autojump_clock: trio.testing.MockClock,
    no_env: pytest.MonkeyPatch,
    partial_answer: bytes,
    call: Callable[[Client], Awaitable[Any]],
    path: bytes,
) -> None:
    async def handler(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            if peer.index == 0 and request.method == b"POST":
                await peer.send(partial_answer)  # ... and the connection breaks
                return
            await peer.send(post_answer(request))

    async with (
        serve(handler) as server,
        Client(api_key=API_KEY, base_url=server.url("/api")) as client,
    ):
        await client.get_task("t-1")  # opens the keep-alive connection
        with pytest.raises(RemoteProtocolError):
            await call(client)
    posts = server.requests_for(b"POST")
    assert [(r.target, r.connection) for r in posts] == [(path, 0)]  # once, on the reused one


@pytest.mark.parametrize(
    "when", ["closes_before_the_request_arrives", "closes_after_reading_the_request"]
)
@pytest.mark.parametrize(("call", "path"), CALLS)
async def test_a_post_is_resent_when_the_idle_connection_closed_before_any_answer(
    autojump_clock: trio.testing.MockClock,
    no_env: pytest.MonkeyPatch,
    when: str,
    call: Callable[[Client], Awaitable[Any]],
    path: bytes,
) -> None:
    async def handler(peer: Peer) -> None:
        if peer.index == 0:
            request = await peer.request()
            assert request is not None
            await peer.send(post_answer(request))  # keep-alive, then an idle close:
            if when == "closes_after_reading_the_request":
                await peer.request()
            return
        await keep_alive(post_answer)(peer)

    async with (
        serve(handler) as server,
        Client(api_key=API_KEY, base_url=server.url("/api")) as client,
    ):
        await client.get_task("t-1")
        answer = await call(client)
    assert answer == ("t-9" if path.endswith(b"/run") else None)
    assert server.connections == 2
    posts = server.requests_for(b"POST")
    # The new connection got it; the old one had read it at most (and answered nothing).
    expected = [0, 1] if when == "closes_after_reading_the_request" else [1]
    assert [(r.target, r.connection) for r in posts] == [(path, n) for n in expected]


@pytest.mark.parametrize(
    "when",
    [
        pytest.param("same_write", id="in_the_same_write"),
        pytest.param("while_idle", id="while_the_connection_is_idle"),
    ],
)
async def test_a_connection_with_bytes_after_the_response_is_not_reused(
    autojump_clock: trio.testing.MockClock, no_env: pytest.MonkeyPatch, when: str
) -> None:
    # Connection 0 answers, then sends a second, unasked-for answer after the first
    # one's body (in the same write, or a second later while the connection is idle):
    # reusing the connection would take it for the next call's answer.
    smuggled = json_response(snapshot("failed"))

    async def handler(peer: Peer) -> None:
        request = await peer.request()
        if request is None:
            return
        if peer.index == 0:
            if when == "same_write":
                await peer.send(json_response(snapshot("running")) + smuggled)
            else:
                await peer.send(json_response(snapshot("running")))
                await trio.sleep(1.0)
                await peer.send(smuggled)
            await peer.wait_for_eof()
            return
        await peer.send(json_response(snapshot("queued")))
        await keep_alive(lambda request: json_response(snapshot("queued")))(peer)

    async with (
        serve(handler) as server,
        Client(api_key=API_KEY, base_url=server.url("/api")) as client,
    ):
        first = await client.get_task("t-1")
        await trio.sleep(5.0)  # idle: the extra bytes have arrived by the next call
        second = await client.get_task("t-1")
    assert (first.status, second.status) == ("running", "queued")
    assert server.connections == 2  # the next call opened a new connection
    assert [r.connection for r in server.requests] == [0, 1]


# == 5. Servers that ask for reconnects too fast, or for waits of years ====================


async def test_retry_zero_and_a_close_cannot_make_the_client_reconnect_at_speed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def handler(peer: Peer) -> None:
        if await peer.request() is None:
            return
        n = peer.index + 1
        await peer.send(STREAM_HEAD + f"retry: 0\nid: {n}\ndata: tick {n}\n\n".encode())

    got: list[ServerSentEvent] = []
    async with serve(handler) as server:
        start = trio.current_time()
        async with open_event_stream(server.url("/s"), rng=random.Random(7)) as stream:
            with trio.move_on_after(60.0):
                async for event in stream:
                    got.append(event)
                    if len(got) >= 200:  # the old client's pace: give up counting
                        break
        times = [t - start for t in server.accepted]
    assert [e.data for e in got] == [f"tick {n}" for n in range(1, len(got) + 1)]
    assert 3 <= len(times) < 40, times
    between = gaps(times)
    assert min(between) >= MIN_CONNECT_INTERVAL - 1e-9, between
    # The waits grow: the last few are far longer than the first few.
    half = len(between) // 2
    assert sum(between[half:]) > 10 * sum(between[:half]), between
    assert max(between) > 5.0, between


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(STREAM_HEAD + b"retry: 99999999999\nid: 1\ndata: a\n\n", id="retry_field"),
        pytest.param(
            response("503 Service Unavailable", [("Retry-After", "999999999")], close=True),
            id="retry_after_503",
        ),
    ],
)
async def test_a_server_cannot_make_the_client_wait_years(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, first: bytes
) -> None:
    caplog.set_level(logging.WARNING, logger="sseproto")

    async def handler(peer: Peer) -> None:
        if await peer.request() is None:
            return
        await peer.send(first if peer.index == 0 else STREAM_HEAD + b"id: 2\ndata: b\n\n")

    async with serve(handler) as server:
        async with open_event_stream(server.url("/s"), max_backoff=10.0) as stream:
            got = await take(stream, 2 if b"data: a" in first else 1, within=100.0)
        times = [r.time for r in server.requests]
    assert got[-1].data == "b"
    assert len(times) == 2
    assert times[1] - times[0] <= 10.0
    capped = [
        r
        for r in caplog.records
        if r.name == "sseproto" and r.levelno == logging.WARNING and "max_backoff" in r.getMessage()
    ]
    assert capped, [r.getMessage() for r in caplog.records]


async def test_watch_polling_caps_a_retry_after_of_years(
    autojump_clock: trio.testing.MockClock,
    no_env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sseproto")
    polls: list[float] = []

    def route(request: Request) -> bytes:
        if request.target.endswith(b"/events"):
            return response("404 Not Found", [("Content-Type", "application/json")], b"{}")
        if request.target.endswith(b"/result"):
            return json_response({"id": "t-1", "task_output": {"9": "done"}, "task_error": ""})
        polls.append(request.time)
        if len(polls) == 1:
            return response("503 Service Unavailable", [("Retry-After", "999999999")])
        return json_response(snapshot("completed"))

    async with serve(keep_alive(route)) as server:
        with trio.fail_after(3600):
            result = await watch("t-1", api_key=API_KEY, base_url=server.url("/api"))
    assert result.output == {"9": "done"}
    assert len(polls) == 2
    assert polls[1] - polls[0] <= 60.0  # the default cap of every wait
    assert any(
        r.levelno == logging.WARNING and "Retry-After" in r.getMessage() for r in caplog.records
    ), [r.getMessage() for r in caplog.records]


# == 6. A flood of informational answers ====================================================

EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"


async def test_a_flood_of_1xx_answers_is_a_remote_protocol_error(
    autojump_clock: trio.testing.MockClock, no_env: pytest.MonkeyPatch
) -> None:
    async def handler(peer: Peer) -> None:
        if await peer.request() is None:
            return
        await peer.send(EARLY_HINTS * 100 + json_response(snapshot(), close=True))
        await peer.wait_for_eof()

    async with (
        serve(handler) as server,
        Client(api_key=API_KEY, base_url=server.url("/api")) as client,
    ):
        with pytest.raises(RemoteProtocolError) as info:
            await client.get_task("t-1")
    assert "informational" in str(info.value)
    assert server.connections == 1  # an answer had started: not sent again


async def test_a_few_1xx_answers_are_skipped(
    autojump_clock: trio.testing.MockClock, no_env: pytest.MonkeyPatch
) -> None:
    async def handler(peer: Peer) -> None:
        if await peer.request() is None:
            return
        await peer.send(EARLY_HINTS * MAX_INFORMATIONAL + json_response(snapshot(), close=True))

    async with (
        serve(handler) as server,
        Client(api_key=API_KEY, base_url=server.url("/api")) as client,
    ):
        task = await client.get_task("t-1")
    assert task.status == "running"


async def test_a_stream_takes_a_1xx_flood_for_a_failed_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def handler(peer: Peer) -> None:
        if await peer.request() is None:
            return
        if peer.index == 0:
            await peer.send(EARLY_HINTS * 100 + STREAM_HEAD + b"data: from 0\n\n")
            await peer.wait_for_eof()
        else:
            await peer.send(EARLY_HINTS * 2 + STREAM_HEAD + b"data: from 1\n\n")

    async with serve(handler) as server, open_event_stream(server.url("/s")) as stream:
        event = await pull(stream)
    assert event.data == "from 1"
    assert server.connections == 2


# == 7. TLS that cannot be agreed on ========================================================


@pytest.fixture
def tls13_only(certs: Certificates) -> Certificates:
    """The server accepts TLS 1.3 only; the client offers TLS 1.2 at most."""
    certs.server.minimum_version = ssl.TLSVersion.TLSv1_3
    certs.client.maximum_version = ssl.TLSVersion.TLSv1_2
    return certs


async def test_a_tls_version_mismatch_is_a_handshake_error_at_once(
    autojump_clock: trio.testing.MockClock, tls13_only: Certificates
) -> None:
    async with serve(count_only, tls=tls13_only.server) as server:
        with pytest.raises(TLSHandshakeError) as info:
            async with open_event_stream(server.url("/s"), ssl_context=tls13_only.client) as stream:
                await pull(stream)
        await trio.sleep(600)  # nothing tries again behind the caller's back
        assert server.connections == 1
        assert server.handshakes_failed == 1
    assert "TLS handshake" in str(info.value)
    assert isinstance(info.value, sseproto.ConnectError)


async def test_client_and_watch_do_not_retry_a_tls_version_mismatch(
    autojump_clock: trio.testing.MockClock, no_env: pytest.MonkeyPatch, tls13_only: Certificates
) -> None:
    async with serve(count_only, tls=tls13_only.server) as server:
        async with Client(
            api_key=API_KEY, base_url=server.url("/api"), ssl_context=tls13_only.client
        ) as client:
            with pytest.raises(TLSHandshakeError):
                await client.get_task("t-1")
        assert server.connections == 1
        with pytest.raises(TLSHandshakeError) as info:
            await watch(
                "t-1", api_key=API_KEY, base_url=server.url("/api"), ssl_context=tls13_only.client
            )
        assert server.connections == 2  # the events stream once; no polling after it
    assert "TLS handshake" in str(info.value)


async def test_a_certificate_error_is_not_retried(
    autojump_clock: trio.testing.MockClock, no_env: pytest.MonkeyPatch, certs: Certificates
) -> None:
    stranger = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    trustme.CA().configure_trust(stranger)  # trusts another CA than the server's
    async with serve(count_only, tls=certs.server) as server:
        with pytest.raises(CertificateError) as info:
            async with open_event_stream(server.url("/s"), ssl_context=stranger) as stream:
                await pull(stream)
        assert server.connections == 1
        with pytest.raises(TLSHandshakeError):  # CertificateError is one
            await watch("t-1", api_key=API_KEY, base_url=server.url("/api"), ssl_context=stranger)
        assert server.connections == 2
    assert isinstance(info.value, TLSHandshakeError)


# == 8. Content-Encoding ====================================================================


async def test_a_compressed_event_stream_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    body = gzip.compress(b"data: hello\n\n" * 10)

    async def handler(peer: Peer) -> None:
        if await peer.request() is None:
            return
        await peer.send(
            response(
                "200 OK",
                [("Content-Type", "text/event-stream"), ("Content-Encoding", "gzip")],
                body,
                close=True,
            )
        )

    async with serve(handler) as server:
        with pytest.raises(ContentTypeError) as info:
            async with open_event_stream(server.url("/s")) as stream:
                await pull(stream)
        await trio.sleep(600)
        assert server.connections == 1  # not retried
    assert server.requests[0].headers("accept-encoding") == [b"identity"]
    assert "gzip" in str(info.value)


async def test_a_compressed_json_answer_is_refused(
    autojump_clock: trio.testing.MockClock, no_env: pytest.MonkeyPatch
) -> None:
    # The JSON calls ask for identity too; a gzip body is our clear error, not a
    # misleading "did not answer JSON" from decoding compressed bytes.
    body = gzip.compress(json.dumps(snapshot()).encode())

    async def handler(peer: Peer) -> None:
        if await peer.request() is None:
            return
        headers = [("Content-Type", "application/json"), ("Content-Encoding", "gzip")]
        await peer.send(response("200 OK", headers, body, close=True))

    async with (
        serve(handler) as server,
        Client(api_key=API_KEY, base_url=server.url("/api")) as client,
    ):
        with pytest.raises(ContentTypeError, match="gzip") as info:
            await client.get_task("t-1")
    assert server.requests[0].headers("accept-encoding") == [b"identity"]
    assert info.value.status_code == 200


# == 9. Events completed before a parser limit was hit ======================================


async def test_events_before_a_line_past_the_limit_are_delivered_then_the_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    body = b"data: a\n\ndata: b\n\ndata: " + b"x" * 200 + b"\n\n"

    async def handler(peer: Peer) -> None:
        if await peer.request() is None:
            return
        await peer.send(STREAM_HEAD + body)  # one write: one read of the client
        await peer.wait_for_eof()

    got: list[ServerSentEvent] = []
    async with (
        serve(handler) as server,
        open_event_stream(server.url("/s"), max_line_bytes=64) as stream,
    ):
        with pytest.raises(EventStreamError):
            await collect(stream, got)
        assert server.connections == 1
    assert [e.data for e in got] == ["a", "b"]


# == 10. Replays after a resume =============================================================


async def test_a_new_event_without_an_id_line_is_not_taken_for_a_replay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    handler = two_connections(
        b"id: 1\ndata: x\n\ndata: tick\n\n", b"data: tick\n\nid: 2\ndata: y\n\n"
    )
    async with serve(handler) as server, open_event_stream(server.url("/s")) as stream:
        got = await take(stream, 4)
    assert [(e.id, e.data) for e in got] == [("1", "x"), ("1", "tick"), ("1", "tick"), ("2", "y")]
    assert server.requests[1].headers("last-event-id") == [b"1"]


async def test_a_true_replay_is_dropped(autojump_clock: trio.testing.MockClock) -> None:
    handler = two_connections(
        b"id: 1\ndata: x\n\ndata: tick\n\n", b"id: 1\ndata: x\n\nid: 2\ndata: y\n\n"
    )
    async with serve(handler) as server, open_event_stream(server.url("/s")) as stream:
        got = await take(stream, 3)
    assert [(e.id, e.data) for e in got] == [("1", "x"), ("1", "tick"), ("2", "y")]
    assert server.requests[1].headers("last-event-id") == [b"1"]


# == 14. The default TLS context is built once ==============================================


async def test_the_default_ssl_context_is_built_once_and_rebuilt_when_trust_changes(
    autojump_clock: trio.testing.MockClock,
    no_env: pytest.MonkeyPatch,
    monkeypatch: pytest.MonkeyPatch,
    certs: Certificates,
    tmp_path: Path,
) -> None:
    built: list[tuple[Any, ...]] = []
    create_default_context = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        built.append(args)
        return create_default_context(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counting)
    monkeypatch.setenv("SSL_CERT_FILE", certs.ca_path)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)

    def route(request: Request) -> bytes:
        if request.target.endswith(b"/events"):
            return STREAM_HEAD + b"data: hello\n\n"
        return json_response(snapshot(), close=True)

    async with serve(keep_alive(route), tls=certs.server) as server:
        for _ in range(3):
            async with open_event_stream(server.url("/api/tasks/t-1/events")) as stream:
                assert (await pull(stream)).data == "hello"
        async with Client(api_key=API_KEY, base_url=server.url("/api")) as client:
            for _ in range(2):
                await client.get_task("t-1")
        assert server.connections == 5
        assert len(built) == 1

        other = tmp_path / "other-ca.pem"
        certs.ca.cert_pem.write_to_path(str(other))
        monkeypatch.setenv("SSL_CERT_FILE", str(other))
        for _ in range(2):
            async with open_event_stream(server.url("/api/tasks/t-1/events")) as stream:
                assert (await pull(stream)).data == "hello"
        assert server.connections == 7
        assert len(built) == 2
