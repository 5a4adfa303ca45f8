"""``sseproto._http``: one HTTP/1.1 connection over TLS, and the URL rules.

Against ``sseproto.testing``'s server on loopback (and, for the handshake failures it
cannot play, a bare TLS or TCP listener): keep-alive reuse, the idle read timeout, a
body cut short, connect errors. Where the socket and TLS are not the subject (the body
limit, the framings of a body, the repr), the connection runs over an in-memory stream
to a server of ``tests/_servers.py``. And ``parse_url``. Timing runs on trio's
``MockClock`` (autojump).
"""

from __future__ import annotations

import json
import ssl
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing
import trustme

import sseproto._http
from sseproto import (
    ConfigurationError,
    ConnectError,
    ConnectTimeout,
    ReadTimeout,
    RemoteProtocolError,
)
from sseproto._http import Connection, Origin, Response, parse_url
from sseproto._rules import media_type
from sseproto.testing import Fault, Task, TestServer, serve
from tests._servers import (
    STEPS,
    Net,
    PlainServer,
    closed_port,
    in_memory,
    json_answer,
    serving,
    silent_listener,
    tracked_connections,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence

TIMEOUT = 30.0  # mock seconds: longer than anything here takes
#: The origin of the in-memory connections (no socket: any would do).
MEMORY = Origin("http", "127.0.0.1", 8080)


@pytest.fixture
def net(monkeypatch: pytest.MonkeyPatch) -> Iterator[Net]:
    yield from tracked_connections(monkeypatch)


def api(server: TestServer, path: str) -> str:
    """The request target of an API path."""
    return parse_url(server.base_url + path)[1]


def auth(server: TestServer) -> Sequence[tuple[str, str]]:
    return [("Authorization", f"Bearer {server.token}"), ("Accept", "application/json")]


async def connect(server: TestServer) -> Connection:
    origin, _ = parse_url(server.base_url)
    return await Connection.connect(origin, ssl_context=server.ssl_context, connect_timeout=TIMEOUT)


def reusable(conn: Connection) -> bool:
    """``conn.reusable`` (a call, so that mypy does not narrow it between checks)."""
    return conn.reusable


async def read_to_end(conn: Connection) -> tuple[list[bytes], BaseException | None]:
    """The body's pieces until its end, or until the error that cut it."""
    pieces: list[bytes] = []
    try:
        while piece := await conn.receive_body(read_timeout=TIMEOUT):
            pieces.append(piece)
    except RemoteProtocolError as exc:
        return pieces, exc
    return pieces, None


# -- keep-alive ----------------------------------------------------------------------


async def test_keep_alive_reuses_the_connection(
    autojump_clock: trio.testing.MockClock, net: Net
) -> None:
    async with serve(result_conflict=True) as server:
        async with await connect(server) as conn:
            first = await conn.request(
                "GET", api(server, "/tasks/t-1"), auth(server), read_timeout=5
            )
            assert not reusable(conn)  # its body is still to be read
            snapshot = json.loads(await conn.read_body(read_timeout=5))
            assert reusable(conn)
            second = await conn.request(
                "GET", api(server, "/tasks/t-1/result"), auth(server), read_timeout=5
            )
            result = json.loads(await conn.read_body(read_timeout=5))
            assert reusable(conn)
            assert len(net.accepted) == len(net.live) == 1  # both on one connection
        assert not reusable(conn)  # closed
        await trio.sleep(0.1)
        assert not net.live  # the server saw it close
    assert (first.status_code, second.status_code) == (200, 409)
    assert media_type(first.headers["content-type"]) == "application/json"
    assert first.headers["content-length"] == str(len(json.dumps(snapshot)))
    assert snapshot["id"] == "t-1"
    assert "error" in result
    assert [(r.method, r.path) for r in server.requests] == [
        ("GET", "/api/v1/r/tasks/t-1"),
        ("GET", "/api/v1/r/tasks/t-1/result"),
    ]
    assert server.requests[0].headers["host"] == f"127.0.0.1:{server.port}"


async def test_an_event_stream_is_not_reusable(autojump_clock: trio.testing.MockClock) -> None:
    async with serve({"t-1": Task(steps=STEPS)}) as server, await connect(server) as conn:
        response = await conn.request(
            "GET", api(server, "/tasks/t-1/events"), auth(server), read_timeout=5
        )
        pieces, error = await read_to_end(conn)
        assert not reusable(conn)  # the server closes a stream's connection after it
    assert response.status_code == 200
    assert media_type(response.headers["content-type"]) == "text/event-stream"
    assert error is None
    assert b"".join(pieces).count(b"\n\n") == len(STEPS)


# -- bodies --------------------------------------------------------------------------


async def test_read_body_limit(autojump_clock: trio.testing.MockClock) -> None:
    server = PlainServer({"/nowhere": json_answer(404, {"error": "not found"})})
    async with in_memory(server.handle) as stream, Connection(MEMORY, stream) as conn:
        await conn.request("GET", "/nowhere", [], read_timeout=5)
        body = await conn.read_body(read_timeout=5)
        await conn.request("GET", "/nowhere", [], read_timeout=5)
        assert await conn.read_body(read_timeout=5, limit=len(body)) == body  # just fits
        await conn.request("GET", "/nowhere", [], read_timeout=5)
        with pytest.raises(RemoteProtocolError, match=f"larger than {len(body) - 1} bytes"):
            await conn.read_body(read_timeout=5, limit=len(body) - 1)
        assert not reusable(conn)
    assert server.targets == ["/nowhere"] * 3  # all on the one connection


@pytest.mark.parametrize("after", [0, 2])
async def test_read_timeout_on_a_stall(autojump_clock: trio.testing.MockClock, after: int) -> None:
    task = Task(steps=STEPS, faults=[Fault("stall", after=after)])
    async with serve({"t-1": task}) as server, await connect(server) as conn:
        await conn.request("GET", api(server, "/tasks/t-1/events"), auth(server), read_timeout=5)
        body = b""
        while body.count(b"\n\n") < after:
            body += await conn.receive_body(read_timeout=5.0)
        last = trio.current_time()
        with pytest.raises(ReadTimeout) as info:
            await conn.receive_body(read_timeout=5.0)
        assert trio.current_time() - last == pytest.approx(5.0)
        assert not reusable(conn)
    assert body.count(b"\n\n") == after
    assert "5.0 s" in str(info.value)


@pytest.mark.parametrize("kind", ["drop_between", "drop_mid_event"])
async def test_a_body_cut_short_is_a_protocol_error(
    autojump_clock: trio.testing.MockClock, kind: str
) -> None:
    task = Task(steps=STEPS, faults=[Fault(kind, after=2)])  # type: ignore[arg-type]
    async with serve({"t-1": task}) as server, await connect(server) as conn:
        await conn.request("GET", api(server, "/tasks/t-1/events"), auth(server), read_timeout=5)
        pieces, error = await read_to_end(conn)
        assert not reusable(conn)
    assert isinstance(error, RemoteProtocolError)
    assert "closed" in str(error)
    body = b"".join(pieces)
    assert body.count(b"\n\n") == 2
    assert body.endswith(b"\n\n") == (kind == "drop_between")


# -- connecting ----------------------------------------------------------------------


async def test_connect_refused(autojump_clock: trio.testing.MockClock) -> None:
    origin = Origin("https", "127.0.0.1", closed_port())
    with pytest.raises(ConnectError) as info:
        await Connection.connect(origin, ssl_context=None, connect_timeout=TIMEOUT)
    assert type(info.value) is ConnectError
    assert str(origin) in str(info.value)


async def test_connect_to_an_untrusted_server(autojump_clock: trio.testing.MockClock) -> None:
    async with serve() as server:
        origin, _ = parse_url(server.base_url)
        with pytest.raises(ConnectError) as info:
            await Connection.connect(
                origin, ssl_context=ssl.create_default_context(), connect_timeout=TIMEOUT
            )
    assert "certificate" in str(info.value)
    assert "ssl_context" in str(info.value)  # what to do about it
    assert server.requests == []


async def test_connect_checks_the_host_name(autojump_clock: trio.testing.MockClock) -> None:
    # A certificate the client trusts, but for another name than the one dialled.
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("other.example").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async def handler(tcp: trio.SocketStream) -> None:
        tls = trio.SSLStream(tcp, server_context, server_side=True)
        try:
            await tls.do_handshake()
        except trio.BrokenResourceError:
            pass
        finally:
            await trio.aclose_forcefully(tls)

    async with serving(handler) as port:
        origin = Origin("https", "127.0.0.1", port)
        with pytest.raises(ConnectError) as info:
            await Connection.connect(origin, ssl_context=client_context, connect_timeout=TIMEOUT)
    assert "certificate" in str(info.value)
    assert "127.0.0.1" in str(info.value)


async def test_connect_timeout(autojump_clock: trio.testing.MockClock) -> None:
    # The kernel completes the TCP handshake, but nobody ever answers the TLS one.
    async with silent_listener() as port:
        origin = Origin("https", "127.0.0.1", port)
        start = trio.current_time()
        with pytest.raises(ConnectTimeout) as info:
            await Connection.connect(origin, ssl_context=None, connect_timeout=7.0)
        assert trio.current_time() - start == pytest.approx(7.0)
    assert isinstance(info.value, ConnectError)
    assert "7.0 s" in str(info.value)


async def test_connections_take_turns_and_their_timeout_starts_with_the_turn(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Five set-ups at once, two at a time, against a server that never answers TLS:
    # each times out 7 s after its turn came, so in pairs, 7 s apart.
    monkeypatch.setattr(sseproto._http, "MAX_CONNECTING", 2)
    ended: list[float] = []

    async def one(origin: Origin) -> None:
        with pytest.raises(ConnectTimeout, match=r"7\.0 s"):
            await Connection.connect(origin, ssl_context=None, connect_timeout=7.0)
        ended.append(trio.current_time() - start)

    async with silent_listener(backlog=16) as port:
        origin = Origin("https", "127.0.0.1", port)
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(one, origin)
    assert ended == pytest.approx([7.0, 7.0, 14.0, 14.0, 21.0])


async def test_repr_names_the_origin_and_state(autojump_clock: trio.testing.MockClock) -> None:
    async with in_memory(PlainServer({}).handle) as stream:
        conn = Connection(Origin("https", "127.0.0.1", 8443), stream)
        assert repr(conn) == "<sseproto Connection to https://127.0.0.1:8443 (open)>"
        await conn.aclose()
        assert repr(conn).endswith("(broken)>")


def test_media_type() -> None:
    assert media_type("Text/Event-Stream ; charset=utf-8") == "text/event-stream"
    assert media_type("") == ""


def test_response_headers_join_repeats() -> None:
    fields = [(b"Content-Type", b"text/plain"), (b"Vary", b"a"), (b"vary", b"b")]
    assert Response(200, "OK", fields).headers == {"content-type": "text/plain", "vary": "a, b"}


# -- parse_url -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "origin", "target", "authority"),
    [
        ("https://example.com/api?x=1&y=2", ("https", "example.com", 443), "/api?x=1&y=2", None),
        ("https://example.com", ("https", "example.com", 443), "/", "example.com"),
        ("HTTPS://Example.COM:8443/a", ("https", "example.com", 8443), "/a", "example.com:8443"),
        ("https://[::1]:8443/e", ("https", "::1", 8443), "/e", "[::1]:8443"),
        ("http://[::1]/e", ("http", "::1", 80), "/e", "[::1]"),
        ("http://localhost:8000/e", ("http", "localhost", 8000), "/e", "localhost:8000"),
        ("http://127.0.0.1/e", ("http", "127.0.0.1", 80), "/e", "127.0.0.1"),
        ("http://127.8.9.10:81/", ("http", "127.8.9.10", 81), "/", "127.8.9.10:81"),
        ("https://user:pw@example.com/e", ("https", "example.com", 443), "/e", "example.com"),
        ("https://example.com/e#frag", ("https", "example.com", 443), "/e", "example.com"),
    ],
)
def test_parse_url_accepts(
    url: str, origin: tuple[str, str, int], target: str, authority: str | None
) -> None:
    parsed, parsed_target = parse_url(url)
    assert (parsed.scheme, parsed.host, parsed.port) == origin
    assert parsed_target == target
    if authority is not None:
        assert parsed.authority == authority
        assert str(parsed) == f"{origin[0]}://{authority}"


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("http://example.com/e", "refusing plain http"),
        ("http://10.0.0.1/e", "refusing plain http"),
        ("http://[2001:db8::1]/e", "refusing plain http"),
        ("http://localhost.example.com/e", "refusing plain http"),
        ("http://127.0.0.1.example.com/e", "refusing plain http"),
        ("ftp://127.0.0.1/e", "not an http"),
        ("ws://127.0.0.1/e", "not an http"),
        ("example.com/e", "not an http"),
        ("https:///e", "not an http"),
        ("", "not an http"),
        ("https://example.com:99999/e", "bad port"),
        ("https://example.com:http/e", "bad port"),
        ("https://example.com:-1/e", "bad port"),
        ("https://example.com:0/e", "bad port"),  # port 0 is not the default port
    ],
)
def test_parse_url_refuses(url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        parse_url(url)


@asynccontextmanager
async def answered_with(wire: bytes) -> AsyncIterator[tuple[Connection, Response]]:
    """An in-memory connection to a server that answers ``wire`` to the first request
    and closes; the response head to a GET."""

    async def answer(stream: trio.abc.Stream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(wire)
        await stream.aclose()

    async with in_memory(answer) as stream, Connection(MEMORY, stream) as conn:
        yield conn, await conn.request("GET", "/", [], read_timeout=TIMEOUT)


@pytest.mark.parametrize(
    ("framing", "body"),
    [
        ("close_delimited", b"data: a\n\ndata: b\n\n"),
        ("content_length", b"Content-Length: 18\r\n\r\ndata: a\n\ndata: b\n\n"),
        (
            "chunked",
            b"Transfer-Encoding: chunked\r\n\r\n9\r\ndata: a\n\n\r\n9\r\ndata: b\n\n\r\n0\r\n\r\n",
        ),
    ],
)
@pytest.mark.parametrize("own", [False, True], ids=["h11", "own_framing"])
async def test_every_body_framing_streams_to_its_end(
    autojump_clock: trio.testing.MockClock, framing: str, body: bytes, own: bool
) -> None:
    """Close-delimited, Content-Length and chunked bodies all arrive whole, then b"",
    read by h11 (JSON calls) or by ``_framing`` (event streams)."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    wire = head + (b"Connection: close\r\n\r\n" + body if framing == "close_delimited" else body)
    async with answered_with(wire) as (conn, response):
        if own:
            conn.own_framing(response)
        received = b""
        while chunk := await conn.receive_body(read_timeout=TIMEOUT):
            received += chunk
        if own:
            assert not conn.reusable  # a stream's connection is never reused
            with pytest.raises(RuntimeError):
                await conn.request("GET", "/", [], read_timeout=TIMEOUT)
    assert media_type(response.headers["content-type"]) == "text/event-stream"
    assert received == b"data: a\n\ndata: b\n\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"Transfer-Encoding: chunked\r\n\r\n9\r\ndata: a\n\nXX", "broke HTTP/1.1: no CRLF"),
        (b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", "broke HTTP/1.1: illegal chunk header"),
        (b"Transfer-Encoding: chunked\r\n\r\n9\r\ndata", "in the middle of a response"),
        (b"Content-Length: 100\r\n\r\ndata: a\n\n", "in the middle of a response"),
    ],
)
async def test_broken_framing_of_a_stream_is_a_protocol_error(
    autojump_clock: trio.testing.MockClock, body: bytes, message: str
) -> None:
    wire = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" + body
    async with answered_with(wire) as (conn, response):
        conn.own_framing(response)

        async def drain() -> None:
            while await conn.receive_body(read_timeout=TIMEOUT):
                pass

        with pytest.raises(RemoteProtocolError, match=message) as caught:
            await drain()
    assert str(MEMORY) in str(caught.value)
