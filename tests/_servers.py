"""The servers of the HTTP and stream tests (``test_client``, ``test_stream``,
``test_http``), for what :mod:`sseproto.testing`'s server does not play, and what
they share around it.

- Where to connect: :func:`closed_port` (nothing listens), :func:`silent_listener`
  (TCP connects, in the kernel's backlog, and nothing ever answers), :func:`serving`
  (a handler of our own on a loopback port) and :func:`in_memory` (a handler of our
  own at the other end of an in-memory stream, for the tests whose subject is not the
  socket or TLS: ``sseproto._http.Connection`` takes any ``trio.abc.Stream``).
- :class:`PlainServer`, a plain-HTTP/1.1 server (h11, keep-alive) that answers each
  request target from a table of routes and records every request; loopback is the
  one place sseproto allows plain http (:func:`plain_server`), and it serves an
  in-memory stream as well. :func:`read_head` and :func:`wait_for_eof` are for a
  handler that must misbehave in ways a table cannot say.
- :class:`Net` (:func:`tracked_connections`, for a fixture): the TCP connections of a
  test on both sides, the client's and ``sseproto.testing``'s server's.
- :data:`STEPS`, a task of six events a second apart, and :data:`ERROR_MESSAGE`,
  what the test server's ``error_then_close`` fault sends.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeAlias

import h11
import trio
import trio.testing

from sseproto.testing import TestServer, completed, progress, status

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

    import pytest

#: What serves the server's end of a connection: a loopback socket, or any stream.
SocketHandler: TypeAlias = "Callable[[trio.SocketStream], Awaitable[None]]"
StreamHandler: TypeAlias = "Callable[[trio.abc.Stream], Awaitable[None]]"

#: Six events, one a second (ids "1".."6" at 0..5 s after the task starts).
STEPS = [
    status("pending"),
    status("running", delay=1.0),
    progress(0.25, delay=1.0, step_current=1, step_total=3, current_node="3"),
    progress(0.5, delay=1.0, step_current=2, step_total=3, current_node="3"),
    progress(1.0, delay=1.0, step_current=3, step_total=3, current_node="9"),
    completed({"9": {"images": [{"filename": "out.png"}]}}, delay=1.0),
]

#: The data of the error event the test server's error_then_close fault sends.
ERROR_MESSAGE = {"message": "simulated: failed to read the task state"}


# -- where to connect ----------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@asynccontextmanager
async def silent_listener(backlog: int | None = None) -> AsyncIterator[int]:
    """A loopback port that never accepts, for the block: TCP connects (the kernel's
    backlog), and nothing ever answers (a TLS handshake never ends)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1", backlog=backlog)
    async with listeners[0]:
        yield listeners[0].socket.getsockname()[1]


@asynccontextmanager
async def serving(handler: SocketHandler) -> AsyncIterator[int]:
    """Serve ``handler`` on a loopback port (plain TCP) for the block; yields the port."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        try:
            yield listeners[0].socket.getsockname()[1]
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def in_memory(handler: StreamHandler) -> AsyncIterator[trio.abc.Stream]:
    """The client's end of an in-memory stream whose other end ``handler`` serves,
    for the block (no socket, no TLS)."""
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handler, server)
        try:
            yield client
        finally:
            nursery.cancel_scope.cancel()


async def read_head(stream: trio.abc.Stream) -> bytes:
    """A request's head (up to the blank line)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        data += chunk
    return data


async def wait_for_eof(stream: trio.abc.Stream) -> None:
    """Read until the client closes the connection."""
    try:
        while await stream.receive_some(65536):
            pass
    except trio.BrokenResourceError:
        pass


# -- a plain HTTP/1.1 server ---------------------------------------------------------

#: What the plain server answers to a request target: status, content type, body
#: (a redirect's body is its Location); None: it never answers.
Answer = tuple[int, str, bytes] | None

#: One event, id "1", data "hello".
ONE_EVENT: Answer = (200, "text/event-stream", b"id: 1\ndata: hello\n\n")


def json_answer(status: int, payload: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(payload).encode()


@dataclass
class Received:
    """A request the plain server received (header names lower-cased, as h11 gives them)."""

    method: str
    target: str
    headers: dict[str, str]
    http_version: str


@dataclass
class PlainServer:
    """Answers each request target from ``routes`` (404 otherwise) with a
    Content-Length body, and keeps the connection alive; with ``stall_reused``, it
    leaves a connection's second request unanswered, as a slow server does."""

    routes: dict[str, Answer]
    stall_reused: bool = False
    #: ``http://127.0.0.1:<port>`` once :func:`plain_server` listens.
    origin: str = ""
    requests: list[Received] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.origin + path

    @property
    def targets(self) -> list[str]:
        return [request.target for request in self.requests]

    async def handle(self, stream: trio.abc.Stream) -> None:
        """Serve one connection until the client closes (or resets) it."""
        with suppress(trio.BrokenResourceError):
            await self._serve(stream)

    async def _serve(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER)
        served = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some(65536)))
            elif isinstance(event, h11.Request):
                headers = {k.decode(): v.decode() for k, v in event.headers}
                version = event.http_version.decode()
                received = Received(event.method.decode(), event.target.decode(), headers, version)
                self.requests.append(received)
            elif isinstance(event, h11.EndOfMessage):
                if served and self.stall_reused:
                    await trio.sleep_forever()
                answer = self.routes.get(self.requests[-1].target, json_answer(404, {}))
                if answer is None:
                    await trio.sleep_forever()
                status, content_type, body = answer
                head = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
                if 300 <= status < 400:
                    head.append(("Location", body.decode()))
                response = h11.Response(status_code=status, headers=head)
                for part in (response, h11.Data(data=body), h11.EndOfMessage()):
                    await stream.send_all(conn.send(part) or b"")
                conn.start_next_cycle()
                served += 1
            elif isinstance(event, h11.ConnectionClosed):
                return


@asynccontextmanager
async def plain_server(
    routes: dict[str, Answer] | None = None, *, stall_reused: bool = False
) -> AsyncIterator[PlainServer]:
    """A :class:`PlainServer` on a loopback port, for the block."""
    server = PlainServer({} if routes is None else routes, stall_reused)
    async with serving(server.handle) as port:
        server.origin = f"http://127.0.0.1:{port}"
        yield server


# -- connections, on both sides ------------------------------------------------------


@dataclass
class Net:
    """The TCP connections of a test: the client's (every stream
    ``trio.open_tcp_stream`` opened), and those ``sseproto.testing``'s server accepted
    (``accepted``) and still serves (``live``)."""

    client: list[trio.SocketStream] = field(default_factory=list)
    accepted: list[trio.SocketStream] = field(default_factory=list)
    live: set[trio.SocketStream] = field(default_factory=set)

    def open_client_sockets(self) -> list[trio.SocketStream]:
        return [s for s in self.client if s.socket.fileno() != -1]

    async def close_server_side(self) -> None:
        """The server closes every connection it holds (as after its idle timeout)."""
        for tcp in list(self.live):
            await tcp.aclose()
        await trio.testing.wait_all_tasks_blocked()

    async def assert_all_closed(self, *, within: float = 300.0) -> None:
        """No client socket is open, and the server's connections end (mock seconds)."""
        assert self.open_client_sockets() == []
        with trio.fail_after(within):
            while self.live:
                await trio.sleep(0.5)


def tracked_connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[Net]:
    """A fixture's body: count the connections of the test (before any server starts)
    and, after it, fail it if it left a client socket open."""
    tracked = Net()
    open_tcp_stream = trio.open_tcp_stream

    async def counting_open(*args: Any, **kwargs: Any) -> trio.SocketStream:
        stream = await open_tcp_stream(*args, **kwargs)
        tracked.client.append(stream)
        return stream

    serve_connection = TestServer._serve_connection

    async def counting_serve(self: TestServer, tcp: trio.SocketStream) -> None:
        tracked.accepted.append(tcp)
        tracked.live.add(tcp)
        try:
            await serve_connection(self, tcp)
        finally:
            tracked.live.discard(tcp)

    monkeypatch.setattr(trio, "open_tcp_stream", counting_open)
    monkeypatch.setattr(TestServer, "_serve_connection", counting_serve)
    yield tracked
    leaked = tracked.open_client_sockets()
    for stream in leaked:  # so that the leak fails this test, not a later one at gc
        os.close(stream.socket.detach())
    assert leaked == [], "a client socket was left open"
