"""``open_event_stream``: any SSE endpoint, reconnecting: the trio driver of EventSource.

Theory of operation: :class:`EventStream` is a thin loop around the sans-IO
:class:`~sseproto.EventSource` (``_eventsource.py``), which holds every rule: when to
reconnect, which headers, what a status means, backoff, redirects, replays, giving up.
The driver does what it says, with trio and one HTTP/1.1 connection at a time
(``_http.py``), and reports what happened.

It is pulled by its consumer (``async for``) and runs no background task, so nothing
outlives the ``async with``, and cancelling the consumer closes the socket at once.
Each pull reads one network chunk into the machine, or, with no connection, asks the
machine what to do (connect, wait, stop). Events the machine completed before a
parser limit was hit are delivered before its error is raised.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from ._driver import EventStreamBase
from ._errors import TransportError
from ._eventsource import Connect, Stop, Wait
from ._http import Connection, parse_url
from ._net import route
from ._parser import DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_LINE_BYTES
from ._proxy import FROM_ENVIRONMENT
from ._rules import ERROR_BODY_LIMIT, ERROR_BODY_SECONDS, MAX_ATTEMPTS, MAX_BACKOFF

if TYPE_CHECKING:
    import random
    import ssl
    from collections.abc import AsyncIterator, Callable

    from ._eventsource import HeaderSource
    from ._parser import ServerSentEvent

__all__ = ["EventStream", "open_event_stream"]


class EventStream(EventStreamBase):
    """An open event stream that reconnects by itself. ``async for event in stream``.

    Its attributes (``source``, ``last_event_id``, ``retry``, ``connections``) are
    those of every driver's stream (``_driver.EventStreamBase``).
    """

    def __init__(
        self,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None,
        **options: Any,
    ) -> None:
        super().__init__(url, **options)
        self._ssl_context = ssl_context
        self._conn: Connection | None = None

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> ServerSentEvent:
        while not self._ready:
            if self._conn is not None:
                await self._read()
            elif self._done:
                raise StopAsyncIteration
            else:
                await self._next()
        return self._ready.popleft()

    async def aclose(self) -> None:
        """Close the connection now; the stream delivers nothing more."""
        self._done = True
        self.source.close()
        await self._drop_connection()

    async def _next(self) -> None:
        action = self.source.next_action(trio.current_time())
        if isinstance(action, Stop):
            self._done = True
            if action.error is not None:
                raise action.error
        elif isinstance(action, Wait):
            # An absolute time: a pull cancelled during the wait resumes it.
            await trio.sleep_until(action.until)
        else:
            await self._connect(action)

    async def _connect(self, action: Connect) -> None:
        source = self.source
        origin, target = parse_url(action.url)
        try:
            conn = await Connection.connect(
                origin,
                ssl_context=self._ssl_context,
                connect_timeout=self._connect_timeout,
                proxy=route(origin, self._proxy),
            )
        except TransportError as exc:
            source.connection_closed(trio.current_time(), exc)
            return
        stream = False
        try:
            response = await conn.request(
                "GET", target, action.headers, read_timeout=self._read_timeout
            )
            now = trio.current_time()
            stream = source.receive_response(response.status_code, response.fields, now)
            if stream:
                conn.own_framing(response)  # the hot path: no h11 per read
                self._conn = conn
            elif source.wants_error_body:  # for the error: bounded in size and time
                body = b""
                with trio.move_on_after(ERROR_BODY_SECONDS):
                    body = await conn.read_body(
                        read_timeout=self._read_timeout, limit=ERROR_BODY_LIMIT, truncate=True
                    )
                source.receive_error_body(body)
        except TransportError as exc:
            source.connection_closed(trio.current_time(), exc)
        finally:
            if not stream:
                await conn.aclose()

    async def _read(self) -> None:
        conn = self._conn
        assert conn is not None
        try:
            chunk = await conn.receive_body(read_timeout=self._read_timeout)
        except TransportError as exc:
            await self._drop_connection()
            self.source.connection_closed(trio.current_time(), exc)
            return
        if not chunk:  # the server ended the body: the machine says what next
            await self._drop_connection()
            self.source.connection_closed(trio.current_time())
            return
        if not self._receive(chunk):  # a parser limit: the machine says Stop next
            await self._drop_connection()

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.aclose()


@asynccontextmanager
async def open_event_stream(
    url: str,
    *,
    headers: HeaderSource = None,
    ssl_context: ssl.SSLContext | None = None,
    last_event_id: str = "",
    connect_timeout: float = 10.0,
    read_timeout: float = 60.0,
    max_attempts: int = MAX_ATTEMPTS,
    max_backoff: float = MAX_BACKOFF,
    rng: random.Random | None = None,
    reconnect_after: Callable[[ServerSentEvent | None], bool] | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    proxy: str | None = FROM_ENVIRONMENT,
) -> AsyncIterator[EventStream]:
    """Open any SSE endpoint as a reconnecting stream of events.

    ::

        async with open_event_stream(url, headers={"Authorization": ...}) as stream:
            async for event in stream:
                ...

    Args:
        url: An ``https`` URL (plain ``http`` only to loopback).
        headers: Extra request headers (such as Authorization), sent on every attempt;
            or a function returning them, called for each connection (a rotating
            token).
        ssl_context: The TLS trust to use; default ``ssl.create_default_context()``
            (built once, shared), which honours ``SSL_CERT_FILE``. Verification is
            always on.
        last_event_id: Resume from this id (sent as ``Last-Event-ID``).
        connect_timeout: Seconds for TCP and TLS to connect.
        read_timeout: Seconds without a byte before the connection is presumed dead
            and replaced (heartbeat comments count as bytes).
        max_attempts: Failed reconnection attempts in a row before giving up.
        max_backoff: The cap of every wait, in seconds: the backoff, and the server's
            ``retry:`` and ``Retry-After`` too.
        rng: The random source of the backoff's jitter (for reproducible tests).
        reconnect_after: Decides, when the server ends a body cleanly, whether to
            reconnect, given the last event of that connection (None if it sent
            none). Default: always, as EventSource does. The task client uses it to
            stop after an ``error`` event followed by a close (the API's signal).
        max_line_bytes: The longest line accepted (16 MiB by default); past it, the
            events already complete are delivered, then an ``EventStreamError``.
        max_event_bytes: The most data one event may carry (16 MiB by default).
        proxy: An ``http://[user:password@]host:port`` proxy for every connection
            (``CONNECT``, then TLS to the server through it), or None for none. By
            default the environment's (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``,
            as curl reads them; never for loopback hosts).

    An overall deadline is the caller's: wrap the block in ``trio.move_on_after``.
    Leaving the block, an exception or a cancellation closes the connection at once.
    """
    stream = EventStream(
        url,
        headers=headers,
        ssl_context=ssl_context,
        last_event_id=last_event_id,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_attempts=max_attempts,
        max_backoff=max_backoff,
        rng=rng,
        reconnect_after=reconnect_after,
        max_line_bytes=max_line_bytes,
        max_event_bytes=max_event_bytes,
        proxy=proxy,
    )
    try:
        yield stream
    finally:
        await stream.aclose()
