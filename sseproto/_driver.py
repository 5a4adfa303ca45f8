"""What every driver's ``EventStream`` shares (trio, asyncio, blocking), without I/O.

A driver's stream owns an :class:`~sseproto.EventSource` and a queue of events ready
for its consumer; this base holds them, the attributes callers read
(``last_event_id``, ``retry``, ``connections``, ``source``), and what happens to a
chunk of the body. A subclass only moves bytes: it connects when the machine says
Connect, reads the body into :meth:`EventStreamBase._receive`, and reports the end or
failure of each connection.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from ._errors import EventStreamError
from ._eventsource import EventSource
from ._parser import DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_LINE_BYTES
from ._proxy import FROM_ENVIRONMENT, proxy_setting
from ._rules import seconds

if TYPE_CHECKING:
    import random
    from collections.abc import Callable

    from ._eventsource import HeaderSource
    from ._parser import ServerSentEvent

__all__ = ["EventStreamBase"]


class EventStreamBase:
    """An open event stream that reconnects by itself.

    Attributes:
        source: The :class:`~sseproto.EventSource` that decides (its ``url`` is the
            one after redirects).
        last_event_id: The id to resume from (sent as ``Last-Event-ID``).
        retry: The server's last ``retry:`` in milliseconds, or None.
        connections: How many connections have delivered a stream so far.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: HeaderSource,
        last_event_id: str,
        connect_timeout: float,
        read_timeout: float,
        max_attempts: int,
        max_backoff: float,
        rng: random.Random | None,
        reconnect_after: Callable[[ServerSentEvent | None], bool] | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        proxy: str | None = FROM_ENVIRONMENT,
    ) -> None:
        self._proxy = proxy_setting(proxy)
        self.source = EventSource(
            url,
            headers=headers,
            last_event_id=last_event_id,
            max_attempts=max_attempts,
            max_backoff=max_backoff,
            rng=rng,
            reconnect_after=reconnect_after,
            max_line_bytes=max_line_bytes,
            max_event_bytes=max_event_bytes,
        )
        self._what = self.source._what
        self._connect_timeout = seconds("connect_timeout", connect_timeout, positive=True)
        self._read_timeout = seconds("read_timeout", read_timeout, positive=True)
        self._ready: deque[ServerSentEvent] = deque()
        self._done = False

    def __repr__(self) -> str:
        return f"<sseproto EventStream {self._what[4:]}>"

    def __str__(self) -> str:  # for messages: "GET https://host/path answered ..."
        return self._what

    @property
    def last_event_id(self) -> str:
        return self.source.last_event_id

    @property
    def retry(self) -> int | None:
        return self.source.server_retry

    @property
    def connections(self) -> int:
        return self.source.connections

    def _receive(self, chunk: bytes) -> bool:
        """A chunk of the body to the machine, its events to the queue; False when
        the connection must be dropped (a parser limit: the events complete before
        it are queued first, and the machine then says ``Stop(error)``)."""
        try:
            self._ready.extend(self.source.receive_data(chunk))
        except EventStreamError as exc:
            self._ready.extend(exc.events)
            return False
        return True
