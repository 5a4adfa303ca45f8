"""``open_event_stream``: any SSE endpoint, reconnecting, the EventSource model.

Theory of operation: :class:`EventStream` is pulled by its consumer (``async for``);
it runs no background task, so nothing outlives the ``async with`` and cancelling the
consumer closes the socket at once. Each pull reads one network chunk into the parser,
or, with no connection, (re)connects first:

* 200 with ``text/event-stream`` (parameters ignored) is a stream. A normal end of its
  body, a dropped connection or an idle one (nothing for ``read_timeout``; comments
  count) is followed by a reconnect with ``Last-Event-ID``, after the server's
  ``retry`` delay (3 s if it sent none).
* A reconnect that fails (network error, 408/429/5xx) is retried with exponential
  backoff and full jitter, capped, honouring ``Retry-After``; ``max_attempts`` failures
  in a row end the stream with :class:`~sseproto.ReconnectError`. The count resets once
  events flow again.
* 204 ends the stream for good; 401/403/404 and the other statuses fail at once, and
  so does a 200 that is not an event stream.
* Redirects are followed to the same origin only (the Authorization header must never
  reach another host).
* A connection that delivers no event counts as a failed attempt even when its body
  ends cleanly (a server that keeps answering empty streams meets ``max_attempts``).
* After a resume, events the server replays (the same id, type and data as one this
  stream delivered) are dropped until the first new one, so no event is delivered
  twice. The stream cannot recognise the replay of an event it never saw (the one a
  caller-given ``last_event_id`` names): deduplicate across sessions yourself.
* A certificate that fails verification is not retried: it will not get better.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from ._errors import (
    CertificateError,
    ContentTypeError,
    HTTPStatusError,
    ReconnectError,
    RemoteProtocolError,
    TransportError,
)
from ._http import Connection, parse_retry_after, parse_url, redirect_target, refused
from ._parser import EventStreamParser, ServerSentEvent
from ._version import __version__

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterator, Callable, Mapping

log = logging.getLogger("sseproto")

__all__ = ["EventStream", "open_event_stream"]

DEFAULT_RETRY = 3.0  # seconds, when the server sent no retry:
MAX_BACKOFF = 60.0
RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
_SEEN_IDS = 1024  # how many recent events are remembered to drop replays
USER_AGENT = f"sseproto/{__version__}"


class EventStream:
    """An open event stream that reconnects by itself. ``async for event in stream``.

    Attributes:
        last_event_id: The id to resume from (sent as ``Last-Event-ID``).
        retry: The server's last ``retry:`` in milliseconds, or None.
        connections: How many connections have delivered a stream so far.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None,
        ssl_context: ssl.SSLContext | None,
        last_event_id: str,
        connect_timeout: float,
        read_timeout: float,
        max_attempts: int,
        max_backoff: float,
        rng: random.Random | None,
        reconnect_after: Callable[[ServerSentEvent | None], bool] | None = None,
    ) -> None:
        self._origin, self._target = parse_url(url)
        # Whether a body that ended cleanly after this event (None: no event on that
        # connection) is followed by a reconnect; by default always, as EventSource.
        self._reconnect_after = reconnect_after
        self._last_event: ServerSentEvent | None = None
        self._headers = dict(headers or {})
        self._ssl_context = ssl_context
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_attempts = max_attempts
        self._max_backoff = max_backoff
        self._rng = rng or random.Random()
        self.last_event_id = last_event_id
        self.retry: int | None = None
        self.connections = 0
        self._conn: Connection | None = None
        self._parser: EventStreamParser[ServerSentEvent] | None = None
        self._ready: deque[ServerSentEvent] = deque()
        # Recent events with an id, to recognise the ones a server replays after a
        # resume: the same id, type and data (an event without its own id line
        # carries the sticky id, so the id alone would drop new events).
        self._seen: deque[tuple[str, str, int]] = deque(maxlen=_SEEN_IDS)
        self._skipping_replay = False
        self._failures = 0  # consecutive failed attempts
        self._reconnect_at = 0.0  # trio time of the next connection attempt
        self._delivered_since_connect = False
        self._done = False

    def __repr__(self) -> str:
        return f"<sseproto EventStream {self._origin}{self._target.split('?')[0]}>"

    def __str__(self) -> str:  # for messages: "GET https://host/path answered ..."
        return f"GET {self._origin}{self._target.split('?')[0]}"

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> ServerSentEvent:
        while not self._ready:
            if self._done:
                raise StopAsyncIteration
            if self._conn is None:
                await self._connect()
            else:
                await self._read()
        return self._ready.popleft()

    async def aclose(self) -> None:
        """Close the connection now; the stream delivers nothing more."""
        self._done = True
        await self._drop_connection()

    # -- reading -------------------------------------------------------------------

    async def _read(self) -> None:
        assert self._conn is not None
        assert self._parser is not None
        try:
            chunk = await self._conn.receive_body(read_timeout=self._read_timeout)
        except TransportError as exc:
            await self._lost(exc)
            return
        if not chunk:  # the server ended the body: reconnect, as EventSource does
            await self._lost(None)
            return
        for event in self._parser.feed(chunk):
            self._deliver(event)
        if self._parser.retry is not None:
            self.retry = self._parser.retry
        self.last_event_id = self._parser.last_event_id

    def _deliver(self, event: ServerSentEvent) -> None:
        # A fingerprint, not the event: 1024 large events must not stay in memory.
        fingerprint = (event.id, event.event, hash(event.data))
        if self._skipping_replay:
            if event.id and fingerprint in self._seen:
                return  # the server replays what we had before the resume
            self._skipping_replay = False
        if event.id:
            self._seen.append(fingerprint)
        self._ready.append(event)
        self._last_event = event
        self._delivered_since_connect = True
        self._failures = 0  # events flow again: the backoff starts over

    async def _lost(self, error: TransportError | None) -> None:
        """The stream ended or broke: plan the reconnect."""
        assert self._parser is not None
        self._parser.close()  # a half-received event is discarded
        await self._drop_connection()
        last = self._last_event if self._delivered_since_connect else None
        if error is None and self._reconnect_after is not None and not self._reconnect_after(last):
            self._done = True  # the caller's signal: a clean end here means stop
            return
        if not self._delivered_since_connect:
            # A connection that delivered nothing is a failed attempt, even if its
            # body ended cleanly: a server that keeps answering empty streams must
            # meet max_attempts too (a clean end still waits only the retry delay).
            ended = RemoteProtocolError(f"{self} ended without an event")
            self._failed(error or ended, None, backoff=error is not None)
            return
        delay = self._base_delay()
        self._reconnect_at = trio.current_time() + delay
        log.info(
            "%s: %s; resuming in %.1f s with Last-Event-ID %r",
            self,
            error or "ended",
            delay,
            self.last_event_id,
        )

    # -- connecting ----------------------------------------------------------------

    def _base_delay(self) -> float:
        return self.retry / 1000 if self.retry is not None else DEFAULT_RETRY

    def _failed(
        self, error: BaseException, retry_after: float | None, *, backoff: bool = True
    ) -> None:
        self._failures += 1
        # max_attempts counts reconnections: before any connection has succeeded,
        # the first attempt of the streak is the initial one, not a reconnection.
        reconnects = self._failures - (1 if self.connections == 0 else 0)
        if reconnects >= self._max_attempts:
            self._done = True
            raise ReconnectError(
                f"gave up on {self}: {reconnects} reconnection attempts in a row failed "
                f"({self._failures} attempts in all); the last one: {error}",
                attempts=reconnects,
                last_error=error,
            ) from error
        base = self._base_delay()
        if self._failures == 1 or not backoff:  # a clean end waits the retry delay
            delay = base
        else:  # exponential backoff with full jitter, capped
            delay = self._rng.uniform(0, min(self._max_backoff, base * 2 ** (self._failures - 1)))
        wait = max(delay, retry_after or 0.0)
        self._reconnect_at = trio.current_time() + wait
        log.info("%s; trying again in %.1f s (attempt %d)", error, wait, self._failures + 1)

    async def _connect(self) -> None:
        # An absolute time: a pull cancelled during the wait resumes it, not restarts.
        await trio.sleep_until(self._reconnect_at)
        target = self._target
        for _ in range(MAX_REDIRECTS + 1):
            try:
                conn = await Connection.connect(
                    self._origin,
                    ssl_context=self._ssl_context,
                    connect_timeout=self._connect_timeout,
                )
            except CertificateError:
                self._done = True
                raise
            except TransportError as exc:
                self._failed(exc, None)
                return
            try:
                response = await conn.request(
                    "GET", target, self._request_headers(), read_timeout=self._read_timeout
                )
            except TransportError as exc:
                await conn.aclose()
                self._failed(exc, None)
                return
            except BaseException:
                await conn.aclose()
                raise
            status = response.status_code
            if status == 200 and response.content_type == "text/event-stream":
                self._start(conn)
                return
            body = b""
            try:  # keep the body of an error answer for the caller to inspect
                body = await conn.read_body(read_timeout=self._read_timeout, limit=65536)
            except TransportError:
                pass
            finally:
                await conn.aclose()
            if status in REDIRECTS:
                target = self._same_origin_redirect(response.headers.get("location", ""), status)
                continue
            error_args = {
                "status_code": status,
                "body": body,
                "headers": response.headers,
                "retry_after": parse_retry_after(response.headers.get("retry-after")),
            }
            if status == 204:
                self._done = True  # the server says: stop reconnecting
                return
            if status == 200:
                self._done = True
                raise ContentTypeError(
                    f"{self} answered 200 with Content-Type "
                    f"{response.headers.get('content-type')!r}, not text/event-stream",
                    **error_args,  # type: ignore[arg-type]
                )
            error = HTTPStatusError(
                refused(str(self), status, response.reason),
                **error_args,  # type: ignore[arg-type]
            )
            if status in RETRYABLE:
                self._failed(error, error.retry_after)
                return
            self._done = True
            raise error
        self._done = True
        raise HTTPStatusError(
            f"{self}: more than {MAX_REDIRECTS} redirects in a row", status_code=status
        )

    def _same_origin_redirect(self, location: str, status: int) -> str:
        target = redirect_target(self._origin, location)
        if target is None:
            self._done = True
            raise HTTPStatusError(
                f"{self} redirected to another origin; not followed, so that the "
                f"Authorization header never reaches another host",
                status_code=status,
            )
        return target

    def _request_headers(self) -> list[tuple[str, str]]:
        headers = [
            ("Accept", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            ("User-Agent", USER_AGENT),
        ]
        if self.last_event_id:
            headers.append(("Last-Event-ID", self.last_event_id))
        return headers + list(self._headers.items())

    def _start(self, conn: Connection) -> None:
        self._conn = conn
        self._parser = EventStreamParser(last_event_id=self.last_event_id)
        self._skipping_replay = bool(self.last_event_id)
        self._delivered_since_connect = False
        self.connections += 1

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.aclose()


@asynccontextmanager
async def open_event_stream(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    last_event_id: str = "",
    connect_timeout: float = 10.0,
    read_timeout: float = 60.0,
    max_attempts: int = 8,
    max_backoff: float = MAX_BACKOFF,
    rng: random.Random | None = None,
    reconnect_after: Callable[[ServerSentEvent | None], bool] | None = None,
) -> AsyncIterator[EventStream]:
    """Open any SSE endpoint as a reconnecting stream of events.

    ::

        async with open_event_stream(url, headers={"Authorization": ...}) as stream:
            async for event in stream:
                ...

    Args:
        url: An ``https`` URL (plain ``http`` only to loopback).
        headers: Extra request headers (such as Authorization), sent on every attempt.
        ssl_context: The TLS trust to use; default ``ssl.create_default_context()``,
            which honours ``SSL_CERT_FILE``. Verification is always on.
        last_event_id: Resume from this id (sent as ``Last-Event-ID``).
        connect_timeout: Seconds for TCP and TLS to connect.
        read_timeout: Seconds without a byte before the connection is presumed dead
            and replaced (heartbeat comments count as bytes).
        max_attempts: Failed reconnection attempts in a row before giving up.
        max_backoff: The cap of the exponential backoff, in seconds.
        rng: The random source of the backoff's jitter (for reproducible tests).
        reconnect_after: Decides, when the server ends a body cleanly, whether to
            reconnect, given the last event of that connection (None if it sent
            none). Default: always, as EventSource does. The task client uses it to
            stop after an ``error`` event followed by a close (the API's signal).

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
    )
    try:
        yield stream
    finally:
        await stream.aclose()
