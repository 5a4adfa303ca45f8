"""``EventSource``: the reconnection model of the standard, as a sans-IO state machine.

Theory of operation
-------------------

The machine is told what happened and the time, and answers what to do next. It
reads no clock, sleeps never and does no I/O, so the same rules drive any transport
(trio, asyncio, a blocking socket) and are tested without one. A driver is a loop::

    es = EventSource(url)
    while True:
        action = es.next_action(now())
        if isinstance(action, Stop):      # done: None, or the error to raise
            ...
        elif isinstance(action, Wait):    # sleep until action.until, then ask again
            ...
        else:                             # Connect: send GET action.url, action.headers
            ...                           # and report: receive_response, then
                                          # receive_data per chunk, connection_closed

The rules (part C of the standard, plus what a client that must not be knocked over
needs):

* A 200 answer with ``text/event-stream`` (parameters ignored) is a stream; anything
  in a ``Content-Encoding`` other than identity is refused (``Accept-Encoding:
  identity`` is sent). A normal end of its body, a broken connection or an idle one is
  followed by a reconnect with ``Last-Event-ID`` after the reconnection time (the
  server's ``retry:``, else ``retry=``).
* A failed attempt (a network error, a connection that delivered no event, 408, 429
  or the 5xx of ``TRANSIENT_STATUSES``) is retried with exponential backoff and full
  jitter, capped, honouring ``Retry-After``; ``max_attempts`` failed reconnections in
  a row end the stream with :class:`~sseproto.ReconnectError`. A connection that
  delivers events resets that count.
* Every wait is at most ``max_backoff``, a server-given one included (a capped wait is
  logged); two connection attempts start at least ``MIN_CONNECT_INTERVAL`` apart, and a
  stream that delivered events counts toward the backoff when it lasted so little
  that, with the reconnection time, the next attempt would come within
  ``SHORT_CONNECTION`` (``retry: 0`` and a close): no server can make the client
  reconnect at speed.
* 204 stops for good, without an error. 401, 403, 404 and every other status fail at
  once (:class:`~sseproto.HTTPStatusError`), and so does a 200 that is not an event
  stream (:class:`~sseproto.ContentTypeError`). Nor are the connection failures that
  would meet every attempt the same way (``_rules.fails_again``): a TLS handshake that
  fails (a bad certificate, no common version or cipher), a proxy's 4xx to ``CONNECT``
  (a 407: its credentials), and a host name the resolver does not know, until the
  server has answered once (after that, a blip the backoff rides out). A refused
  connection is retried: a server restarting refuses for a while.
* Redirects are followed to the same origin only, ``max_redirects`` in a row; each new
  attempt starts at the original URL, as the browser's EventSource does.
* After a resume, the events the server replays (its own ``id:`` field, and the same
  id, type and data as an event this machine delivered) are dropped until the first
  new one: no event is delivered twice. An event whose block has no ``id:`` field is
  never taken for a replay; nor is the replay of an event this machine never
  delivered (the one a caller-given ``last_event_id`` names: deduplicate across
  sessions yourself). Replays do not move the resume point back.
* ``Last-Event-ID`` is sent only when HTTP can carry the id (as UTF-8, no control
  characters, no space at either end); otherwise the machine reconnects without it
  (the replay filter then drops what the server sends again) and logs why.

The machine logs its decisions (reconnects, waits, a capped wait) on the ``sseproto``
logger, once for every driver.
"""

from __future__ import annotations

import logging
import math
import random
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Union

from ._errors import (
    ConfigurationError,
    ContentTypeError,
    EventStreamError,
    HTTPStatusError,
    ReconnectError,
    RemoteProtocolError,
    SSEProtoError,
    TransportError,
    UsageError,
)
from ._parser import DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_LINE_BYTES, EventStreamParser
from ._rules import (
    DEFAULT_RETRY,
    ERROR_BODY_LIMIT,
    MAX_ATTEMPTS,
    MAX_BACKOFF,
    MAX_REDIRECTS,
    MIN_CONNECT_INTERVAL,
    REDIRECT_STATUSES,
    SHORT_CONNECTION,
    TRANSIENT_STATUSES,
    USER_AGENT,
    check_headers,
    count,
    fails_again,
    follow_redirect,
    header_fields,
    header_value_ok,
    joined,
    media_type,
    parse_retry_after,
    parse_url,
    refused,
    seconds,
    shown,
    unsupported_encoding,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from ._parser import ServerSentEvent

__all__ = ["Connect", "EventSource", "Stop", "Wait"]

log = logging.getLogger("sseproto")

#: Request headers: a mapping, ``(name, value)`` pairs, or a function returning either.
HeaderSource = Union[
    "Mapping[str, str]",
    "Iterable[tuple[str, str]]",
    "Callable[[], Mapping[str, str] | Iterable[tuple[str, str]]]",
    None,
]


def _with_defaults(
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
) -> list[tuple[str, str]]:
    """The caller's headers, checked, after the defaults they do not replace."""
    defaults = {
        "accept": ("Accept", "text/event-stream"),
        "accept-encoding": ("Accept-Encoding", "identity"),
        "cache-control": ("Cache-Control", "no-cache"),
        "user-agent": ("User-Agent", USER_AGENT),
    }
    extra = []
    for name, value in check_headers(headers):
        if name.lower() in defaults:
            defaults[name.lower()] = (name, value)
        else:
            extra.append((name, value))
    return [*defaults.values(), *extra]


#: How many recent events are remembered to recognise replays.
_SEEN_EVENTS: Final = 1024


class _Recent:
    """The last ``size`` event fingerprints, 8 bytes each: a ring in an ``array``
    (a deque of Python ints held 36 bytes each, 36 KiB for a long-lived stream)."""

    __slots__ = ("_items", "_next", "_size")

    def __init__(self, size: int) -> None:
        self._items = array("q")
        self._next = 0
        self._size = size

    def append(self, fingerprint: int) -> None:
        if len(self._items) < self._size:
            self._items.append(fingerprint)
        else:
            self._items[self._next] = fingerprint
            self._next = (self._next + 1) % self._size

    def __contains__(self, fingerprint: object) -> bool:
        return fingerprint in self._items

    def __len__(self) -> int:
        return len(self._items)


#: The backoff's jitter when no ``rng`` is given: shared, seeded by the OS.
_JITTER: Final = random.Random()


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a connection and send ``GET url`` with exactly these headers.

    ``headers`` are ``(name, value)`` str pairs (send the values as UTF-8; the driver
    adds ``Host`` and nothing else that changes the meaning). Then report the answer
    with :meth:`EventSource.receive_response`, or a failure to connect or to get an
    answer with :meth:`EventSource.connection_closed`.
    """

    url: str
    headers: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Wait:
    """Do nothing until the clock reads ``until`` (always later than the ``now`` that
    was given), then ask :meth:`EventSource.next_action` again."""

    until: float


@dataclass(frozen=True, slots=True)
class Stop:
    """The stream is over: ``error`` is None for a normal end (204, the caller's stop
    rule, :meth:`EventSource.close`), otherwise the :class:`~sseproto.SSEProtoError`
    to raise. Asked again, the machine answers the same."""

    error: SSEProtoError | None = None


# The machine's states. WAITING: no connection, the next attempt at self._at (None:
# now). CONNECTING: a Connect was handed out, its answer is awaited. OPEN: reading an
# event stream. CLOSED: every later next_action() is self._stop.
_WAITING, _CONNECTING, _OPEN, _CLOSED = "waiting", "connecting", "open", "closed"


class EventSource:
    """The EventSource reconnection model, sans-IO: told what happened, says what next.

    Args:
        url: An ``https`` URL (plain ``http`` only to loopback).
        headers: Extra request headers (a mapping or ``(name, value)`` pairs), sent on
            every attempt; one named like a default (Accept, Cache-Control,
            User-Agent) replaces it. Or a function returning them, called for each
            connection (a token that rotates, a short-lived JWT): what it raises, or
            the ConfigurationError of a header it returns that cannot be sent, comes
            out of :meth:`next_action`.
        last_event_id: Resume from this id (sent as ``Last-Event-ID``).
        retry: The reconnection time in seconds until the server sends ``retry:``.
        max_attempts: Failed reconnection attempts in a row before giving up.
        max_backoff: The cap of every wait, in seconds (backoff, ``retry:``,
            ``Retry-After``).
        max_redirects: Redirects followed in a row.
        rng: The random source of the backoff's jitter (for reproducible tests).
        max_line_bytes: The parser's bound on one line (see ``EventStreamParser``).
        max_event_bytes: The parser's bound on one event's data.
        reconnect_after: When the server ends a body cleanly, whether to reconnect,
            given the last event of that connection (None if it sent none). Default:
            always, as EventSource does. Returning False stops with ``Stop(None)``.

    Attributes:
        url: The URL of the current (or last) connection, after redirects.
        last_event_id: The id to resume from: the last one committed by a blank line.
        retry: The reconnection time in seconds (the server's ``retry:`` once sent).
        server_retry: The server's last ``retry:`` as sent, in milliseconds, or None.
        connections: How many connections have become event streams.
        wants_error_body: True right after :meth:`receive_response` refused an answer
            whose body belongs in the error (see :meth:`receive_error_body`).

    Raises:
        ConfigurationError: A URL, header or setting that cannot work.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: HeaderSource = (),
        last_event_id: str = "",
        retry: float = DEFAULT_RETRY,
        max_attempts: int = MAX_ATTEMPTS,
        max_backoff: float = MAX_BACKOFF,
        max_redirects: int = MAX_REDIRECTS,
        rng: random.Random | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        reconnect_after: Callable[[ServerSentEvent | None], bool] | None = None,
    ) -> None:
        origin, target = parse_url(url)
        self._start_url = self.url = f"{origin}{target}"
        # Where the messages say a request went: never the query (it may hold a key).
        self._what = f"GET {origin}{target.split('?', 1)[0]}"
        if not isinstance(last_event_id, str) or any(c in last_event_id for c in "\0\r\n"):
            raise ConfigurationError("last_event_id is a str without NUL, CR or LF")
        self._max_backoff = seconds("max_backoff", max_backoff, positive=True)
        self._retry = seconds("retry", retry)
        self._max_attempts = count("max_attempts", max_attempts)
        self._max_redirects = count("max_redirects", max_redirects)
        self._max_line_bytes = max_line_bytes
        self._max_event_bytes = max_event_bytes
        self._new_parser()  # checks the limits now, not at a connect
        self._header_source = headers if callable(headers) else None
        self._headers = [] if callable(headers) else _with_defaults(headers)
        self._rng = rng or _JITTER  # one per process: a Random is 2.5 KiB a stream
        self._reconnect_after = reconnect_after
        self._floor = min(MIN_CONNECT_INTERVAL, self._max_backoff)

        self.last_event_id = last_event_id
        self.server_retry: int | None = None
        self.connections = 0
        self._reached = False  # whether any attempt got an answer (the host resolved)
        self.wants_error_body = False
        self._state = _WAITING
        self._stop = Stop()
        self._at: float | None = None  # when the next attempt may start; None: now
        self._next_url = self._start_url
        self._redirects = 0  # in a row, in this attempt
        self._attempt_started = -math.inf
        self._failures = 0  # failed attempts in a row (for giving up)
        self._streak = 0  # failures and short streams in a row (for the backoff)
        self._body_error: HTTPStatusError | None = None
        self._unsendable_id: str | None = None  # the last id logged as not sendable
        # The connection being read.
        self._parser: EventStreamParser[ServerSentEvent] | None = None
        self._opened_at = 0.0
        self._delivered = False
        self._last_event: ServerSentEvent | None = None
        self._replaying = False
        # Fingerprints of recent events with an id, to recognise replays: the hash of
        # the whole event (type, data, id; 64 bits, computed in C), where the event
        # itself would keep up to 1024 large payloads in memory.
        self._seen = _Recent(_SEEN_EVENTS)

    def __repr__(self) -> str:
        return f"<sseproto EventSource {self._what[4:]} {self._state}>"

    @property
    def retry(self) -> float:
        """The reconnection time in seconds (before the cap of ``max_backoff``)."""
        return self._retry if self.server_retry is None else self.server_retry / 1000

    # -- what to do next ---------------------------------------------------------

    def next_action(self, now: float) -> Connect | Wait | Stop:
        """What the driver should do now.

        Args:
            now: The driver's monotonic clock, in seconds (any origin).

        Returns:
            :class:`Connect`, :class:`Wait` (until a time later than ``now``, at most
            ``max_backoff`` away) or :class:`Stop`.

        Raises:
            UsageError: A connection is still being answered or read: report its
                end first (:meth:`connection_closed`).
        """
        state = self._state
        if state is _CLOSED:
            return self._stop
        if state is not _WAITING:
            raise UsageError(
                f"next_action() while a connection is {state}: report its answer or its "
                f"end first (receive_response / connection_closed)"
            )
        if self._at is not None and now < self._at:
            return Wait(min(self._at, now + self._max_backoff))
        self._state = _CONNECTING
        self._attempt_started = now
        self.url = self._next_url
        self._next_url = self._start_url
        self.wants_error_body = False
        self._body_error = None
        return Connect(self.url, self._request_headers())

    def _request_headers(self) -> list[tuple[str, str]]:
        source = self._header_source
        headers = list(self._headers) if source is None else _with_defaults(source())
        last_id = self.last_event_id
        if last_id:
            if header_value_ok(last_id):
                headers.append(("Last-Event-ID", last_id))
            elif last_id != self._unsendable_id:
                self._unsendable_id = last_id
                log.warning(
                    "%s: the server's last event id %s cannot be sent as a header (a "
                    "control character, or a space at its start or end); resuming "
                    "without Last-Event-ID, dropping the events the server sends again",
                    self._what,
                    shown(last_id),
                )
        return headers

    # -- what happened ----------------------------------------------------------

    def receive_response(
        self,
        status: int,
        headers: Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]],
        now: float,
    ) -> bool:
        """The answer to the last :class:`Connect` arrived (its status and headers).

        Args:
            status: The final status (not a 1xx).
            headers: The response headers: a mapping, or ``(name, value)`` pairs with
                repeats kept (str, or bytes as received).
            now: The driver's clock.

        Returns:
            True: read the body, handing each chunk to :meth:`receive_data`. False:
            close the connection (after reading the body for :meth:`receive_error_body`
            if :attr:`wants_error_body`) and ask :meth:`next_action`.

        Raises:
            UsageError: No Connect is waiting for an answer.
        """
        if self._state is not _CONNECTING:
            raise UsageError(f"receive_response() while {self._state}: no request is waiting")
        self._reached = True
        fields = header_fields(headers)
        content_type = media_type(next((v for k, v in fields if k == "content-type"), ""))
        if status == 200 and content_type == "text/event-stream":
            unreadable = unsupported_encoding(fields)
            if unreadable is not None:
                self._close(
                    ContentTypeError(
                        f"{self._what} answered an event stream in {unreadable}; sseproto "
                        f"reads only uncompressed streams (check the server, or a proxy "
                        f"that compresses)",
                        status_code=status,
                        headers=joined(fields),
                    )
                )
                return False
            self._open(now)
            return True
        if status in REDIRECT_STATUSES:
            self._redirects += 1
            locations = [v for k, v in fields if k == "location"]
            try:
                if self._redirects > self._max_redirects:
                    raise HTTPStatusError(
                        f"{self._what}: more than {self._max_redirects} redirects in a row",
                        status_code=status,
                    )
                self._next_url = follow_redirect(self.url, status, locations, self._what)
            except HTTPStatusError as exc:
                self._close(exc)
                return False
            self._state = _WAITING
            self._at = None  # a redirect is followed at once
            return False
        self._redirects = 0
        if status == 204:  # the server says: stop reconnecting
            self._close(None)
            return False
        values = joined(fields)
        retry_after = parse_retry_after(values.get("retry-after"))
        if status == 200:
            error: HTTPStatusError = ContentTypeError(
                f"{self._what} answered 200 with Content-Type "
                f"{shown(values.get('content-type', ''))}, not text/event-stream",
                status_code=status,
                headers=values,
            )
        else:
            error = HTTPStatusError(
                refused(self._what, status),
                status_code=status,
                headers=values,
                retry_after=retry_after,
            )
        self._body_error = error
        self.wants_error_body = True
        if status in TRANSIENT_STATUSES:
            self._failed(now, error, retry_after=retry_after)
        else:
            self._close(error)
        return False

    def receive_error_body(self, body: bytes) -> None:
        """The body of the answer :meth:`receive_response` refused (optional): kept as
        the error's ``body`` (up to ``ERROR_BODY_LIMIT`` bytes) for the caller."""
        if self._body_error is not None:
            self._body_error.body = bytes(body[:ERROR_BODY_LIMIT])
        self.wants_error_body = False

    def receive_data(self, chunk: bytes) -> list[ServerSentEvent]:
        """The next piece of the event stream's body, as it arrived.

        Returns:
            The events it completed, without the ones the server replayed after a
            resume.

        Raises:
            EventStreamError: A line or an event past its limit. Its ``events`` are the
                events completed before the fault (replays left out): deliver them,
                then raise. The machine is stopped: :meth:`next_action` says
                ``Stop(that error)``.
            UsageError: No event stream is open.
        """
        parser = self._parser
        if parser is None:
            raise UsageError(f"receive_data() while {self._state}: no event stream is open")
        error: EventStreamError | None = None
        try:
            events = parser.feed(chunk)
        except EventStreamError as exc:  # the events complete before it still count
            events, error = exc.events, exc
        if parser.retry is not None:
            self.server_retry = parser.retry
        if events:
            if self._replaying:
                events = self._drop_replays(events)
            if events:
                seen = self._seen
                for event in events:
                    if event.id:
                        seen.append(hash(event))
                self._last_event = events[-1]
                if not self._delivered:  # events flow again: a failure starts a new count
                    self._delivered = True
                    self._failures = 0
        if not self._replaying:  # replays do not move the resume point back
            self.last_event_id = parser.last_event_id
        if error is not None:
            error.events = events
            self._close(error)
            raise error
        return events

    def _drop_replays(self, events: list[ServerSentEvent]) -> list[ServerSentEvent]:
        assert self._parser is not None
        own_ids = self._parser._own_ids  # the events (by index) with their own id field
        assert own_ids is not None
        seen = self._seen
        for i, event in enumerate(events):
            if not (i in own_ids and hash(event) in seen):
                self._replaying = False  # the first new event: no more replays
                self._parser._own_ids = None
                return events[i:]
        own_ids.clear()
        return []

    def connection_closed(self, now: float, error: BaseException | None = None) -> None:
        """The connection ended: the body's normal end (``error`` None), or a failure
        to connect, to get an answer, or to read (the error: ours, such as
        ``ConnectError``, ``ReadTimeout`` or ``RemoteProtocolError``).

        Harmless when there is no connection (after a refused answer, after a stop).
        """
        state = self._state
        if state is _CONNECTING:
            failure = _ours(error) or RemoteProtocolError(
                f"{self._what}: the connection closed before an answer"
            )
            if fails_again(failure, reached=self._reached):
                self._close(failure)  # a certificate, a proxy's 407, an unknown host
            else:
                self._failed(now, failure)
        elif state is _OPEN:
            self._end_stream(now, _ours(error))

    def close(self) -> None:
        """Stop now (the caller's ``close()``): :meth:`next_action` says ``Stop(None)``."""
        if self._state is not _CLOSED:
            self._close(None)

    # -- the rules -------------------------------------------------------------------

    def _open(self, now: float) -> None:
        self._state = _OPEN
        self._opened_at = now
        self._redirects = 0
        self.connections += 1
        parser = self._new_parser(self.last_event_id)
        self._replaying = bool(self.last_event_id)
        if self._replaying:
            parser._own_ids = []
        self._parser = parser
        self._delivered = False

    def _new_parser(self, last_event_id: str = "") -> EventStreamParser[ServerSentEvent]:
        try:
            return EventStreamParser(
                last_event_id=last_event_id,
                max_line_bytes=self._max_line_bytes,
                max_event_bytes=self._max_event_bytes,
            )
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(str(exc)) from None

    def _end_stream(self, now: float, error: SSEProtoError | None) -> None:
        assert self._parser is not None
        self._parser.close()  # a half-received event is discarded
        self._parser = None
        last = self._last_event if self._delivered else None
        if error is None and self._reconnect_after is not None and not self._reconnect_after(last):
            self._close(None)  # the caller's rule: a clean end here means stop
            return
        base = self._base_delay()
        # The stream ended at once and the server wants it back at once (retry: 0):
        # that cycle must not run at full speed.
        short = now - self._opened_at + base < SHORT_CONNECTION
        if not self._delivered:
            # A connection that delivered nothing is a failed attempt, even if its
            # body ended cleanly: a server that keeps answering empty streams meets
            # max_attempts too (a clean end waits only the reconnection time, unless
            # that cycle is short).
            ended = RemoteProtocolError(f"{self._what} ended without an event")
            self._failed(now, error or ended, backoff=error is not None or short)
            return
        if short:
            self._streak += 1  # events, but back off all the same
        else:
            self._streak = 0
        delay = self._delay(base)
        self._schedule(now, delay)
        log.info(
            "%s: %s; resuming in %.1f s with Last-Event-ID %s",
            self._what,
            error or "ended",
            delay,
            shown(self.last_event_id),
        )

    def _failed(
        self,
        now: float,
        error: SSEProtoError,
        *,
        retry_after: float | None = None,
        backoff: bool = True,
    ) -> None:
        self._state = _WAITING
        self._failures += 1
        self._streak += 1
        # max_attempts counts reconnections: until an event has arrived, the first
        # attempt of the streak is the initial one (an empty stream is a failure too).
        reconnects = self._failures - (1 if self._last_event is None else 0)
        if reconnects >= self._max_attempts:
            gave_up = ReconnectError(
                f"gave up on {self._what}: {reconnects} reconnection attempts in a row "
                f"failed ({self._failures} attempts in all); the last one: {error}",
                attempts=reconnects,
                last_error=error,
            )
            gave_up.__cause__ = error
            self._close(gave_up)
            return
        base = self._base_delay()
        delay = self._delay(base) if backoff else base
        if retry_after is not None:
            if retry_after > self._max_backoff:
                log.warning(
                    "%s: the server asked to wait %.0f s (Retry-After); waiting at most "
                    "max_backoff=%.0f s",
                    self._what,
                    retry_after,
                    self._max_backoff,
                )
            delay = max(delay, min(retry_after, self._max_backoff))
        self._schedule(now, delay)
        log.info("%s; trying again in %.1f s (attempt %d)", error, delay, self._failures + 1)

    def _base_delay(self) -> float:
        retry = self.retry
        if retry > self._max_backoff:
            log.warning(
                "%s: the reconnection time (retry:) of %.0f s is above max_backoff; waiting %.0f s",
                self._what,
                retry,
                self._max_backoff,
            )
            return self._max_backoff
        return retry

    def _delay(self, base: float) -> float:
        """The reconnection time (``base``) for the first failure of a streak; then
        exponential backoff with full jitter, capped at max_backoff."""
        if self._streak <= 1:
            return base
        growth = 2.0 ** min(self._streak - 1, 64)
        return self._rng.uniform(0, min(self._max_backoff, max(base, self._floor) * growth))

    def _schedule(self, now: float, delay: float) -> None:
        self._state = _WAITING
        self._redirects = 0
        # Never two attempts closer than the floor, whatever the delay.
        self._at = max(now + delay, self._attempt_started + self._floor)

    def _close(self, error: SSEProtoError | None) -> None:
        self._state = _CLOSED
        self._stop = Stop(error)
        if self._parser is not None:
            self._parser.close()
            self._parser = None


def _ours(error: BaseException | None) -> SSEProtoError | None:
    if error is None or isinstance(error, SSEProtoError):
        return error
    wrapped = TransportError(f"{type(error).__name__}: {error}")
    wrapped.__cause__ = error
    return wrapped
