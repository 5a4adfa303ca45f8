"""The sans-IO event-stream parser: bytes in, events out.

Theory of operation
-------------------

The WHATWG standard ("Server-sent events", 9.2.6) defines the format on the whole
decoded stream: UTF-8 decode (one leading BOM stripped), split into lines at CRLF, LF
or CR, then interpret each line. This parser gets the same result from chunks of any
size, without ever looking at a byte twice:

* **Lines are split on bytes, then decoded.** CR, LF and ``:`` are ASCII, and UTF-8
  never uses an ASCII byte inside a multi-byte sequence, so splitting bytes gives the
  same lines as splitting the decoded text. Decoding each field value on its own with
  the ``"replace"`` handler gives the same U+FFFD as decoding the whole stream, and a
  character split across chunks is never decoded until its line is whole.

* **Line ends.** Each new chunk has its CRLFs and lone CRs turned into LF with two
  C-speed ``replace`` calls, then one ``split(b"\\n")``. The only line end that can
  straddle two chunks is CRLF, with the CR at the end of one chunk: that CR ends its
  line at once (so an event whose blank line is a CR comes out of the ``feed`` that
  brought the CR, never later) and a flag swallows an LF at the start of the next chunk.

* **Partial lines.** The unterminated tail of a chunk is kept as a list of pieces and
  joined once, when its line end arrives. Line ends are searched for only in the new
  bytes, so the total work is linear in the input whatever the chunking.

* **Limits** are checked as bytes arrive. The pending partial line may never exceed
  ``max_line_bytes``; an event's data may never exceed ``max_event_bytes``. The exact
  per-line accounting only runs in the rare ``feed`` calls that could cross a limit
  (a cheap upper bound decides), so the common path pays nothing for it.

* **The BOM.** The first three bytes of the stream are held back until it is known
  whether they are ``EF BB BF``, so a BOM split across chunks is stripped too, and
  only at the very start of the stream.

The interpretation itself (fields, dispatch, ``id``, ``retry``) follows the standard
literally; see ``../shared/reference/sse-spec.md`` for the rules and their traps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, overload

from ._errors import EventStreamError

__all__ = ["Comment", "EventStreamParser", "ServerSentEvent"]

_BOM = b"\xef\xbb\xbf"
#: Large enough for any legitimate stream (base64 images included), small enough
#: that a server which never sends a line end cannot exhaust memory.
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024
# A retry value with more digits than this overflows uint64 and is ignored, as in
# Chromium (and it keeps int() away from its quadratic path on huge digit strings).
_MAX_RETRY_DIGITS = 20
_MAX_RETRY = 2**64 - 1
_CLOSED = "feed() after close(): the stream has ended; use a new parser for a new stream"


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event, as the standard's ``MessageEvent`` describes it.

    Args:
        event: The event type: the last ``event:`` field of the block, or
            ``"message"`` when there was none (or it was empty).
        data: The ``data:`` lines of the block joined with LF.
        id: The last event ID at dispatch time: sticky, carried over from earlier
            events until an ``id:`` field changes it (the standard's ``lastEventId``).

    Raises:
        TypeError: If a field is not a ``str``.
        ValueError: If ``id`` contains NUL, CR or LF, or ``event`` contains CR or LF
            (values that no event stream can carry).
    """

    event: str = "message"
    data: str = ""
    id: str = ""

    def __post_init__(self) -> None:
        for name in ("event", "data", "id"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"ServerSentEvent.{name} must be a str")
        if "\r" in self.event or "\n" in self.event:
            raise ValueError("ServerSentEvent.event cannot contain CR or LF")
        if "\r" in self.id or "\n" in self.id or "\0" in self.id:
            raise ValueError("ServerSentEvent.id cannot contain NUL, CR or LF")

    def json(self) -> Any:
        """Decode :attr:`data` as JSON (``json.loads``)."""
        import json

        return json.loads(self.data)


@dataclass(frozen=True, slots=True)
class Comment:
    """A comment line (``:`` and text), returned only by ``comments=True`` parsers.

    ``text`` is what follows the colon, with one leading U+0020 removed, the same
    rule as for field values (so ``: ping`` gives ``"ping"``). Servers send comments
    as heartbeats; they never touch the event being built.
    """

    text: str = ""


# The parser's fast path builds events without re-validating what the grammar
# already guarantees: object.__new__ plus the slots' own setters (a frozen
# dataclass's __init__ is about twice as slow).
_new = object.__new__
_set_event = ServerSentEvent.__dict__["event"].__set__
_set_data = ServerSentEvent.__dict__["data"].__set__
_set_id = ServerSentEvent.__dict__["id"].__set__
_set_text = Comment.__dict__["text"].__set__


def _make_event(event: str, data: str, id: str) -> ServerSentEvent:
    ev: ServerSentEvent = _new(ServerSentEvent)
    _set_event(ev, event)
    _set_data(ev, data)
    _set_id(ev, id)
    return ev


def _make_comment(text: bytes) -> Comment:
    c: Comment = _new(Comment)
    _set_text(c, text.decode("utf-8", "replace"))
    return c


def _parse_retry(value: bytes) -> int | None:
    """The reconnection time of a ``retry`` value, or None if it must be ignored.

    Only ASCII digits count (``bytes.isdigit`` is ASCII-only, unlike
    ``str.isdigit``); an empty value is ignored, as eventsource-parser does.
    """
    if not value.isdigit():
        return None
    digits = value.lstrip(b"0") or b"0"
    if len(digits) > _MAX_RETRY_DIGITS:
        return None
    n = int(digits)
    return n if n <= _MAX_RETRY else None


T = TypeVar("T", ServerSentEvent, "ServerSentEvent | Comment")


class EventStreamParser(Generic[T]):
    """A sans-IO parser for ``text/event-stream``: feed it bytes, get events back.

    ::

        parser = EventStreamParser()
        for chunk in chunks:                 # any chunking, down to one byte
            for event in parser.feed(chunk):
                handle(event)
        parser.close()                       # end of stream

    Args:
        last_event_id: The last event ID to start from. A fresh stream starts from
            ``""``; a stream resumed with ``Last-Event-ID`` starts from the id that was
            sent, so its first events report it (as browsers and the WPT suite do).
        max_line_bytes: The longest line accepted, in bytes without its line end.
            A server that never sends a line end costs at most this much memory.
        max_event_bytes: The most data one event may carry, in bytes as received
            (its ``data:`` values plus one LF each).
        comments: If true, ``feed`` also returns a :class:`Comment` for every comment
            line, in stream order among the events (for heartbeat logging). Callers
            who leave it false pay nothing for comments.

    Attributes:
        last_event_id: The last event ID as of the last blank line: what a client
            sends as ``Last-Event-ID`` when it reconnects. An ``id:`` line of an event
            whose blank line has not arrived yet is not in it.
        retry: The last valid ``retry:`` value, in milliseconds, or None if the
            stream has sent none. It takes effect as soon as its line is read.
    """

    __slots__ = (
        "_bom",
        "_comments",
        "_data",
        "_data_bytes",
        "_event_type",
        "_id_buffer",
        "_max_event",
        "_max_line",
        "_pending",
        "_pending_bytes",
        "_skip_lf",
        "_stop",
        "last_event_id",
        "retry",
    )

    @overload
    def __init__(
        self: EventStreamParser[ServerSentEvent],
        *,
        last_event_id: str = "",
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        comments: Literal[False] = False,
    ) -> None: ...

    @overload
    def __init__(
        self: EventStreamParser[ServerSentEvent | Comment],
        *,
        last_event_id: str = "",
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        comments: Literal[True],
    ) -> None: ...

    def __init__(
        self,
        *,
        last_event_id: str = "",
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        comments: bool = False,
    ) -> None:
        if not isinstance(last_event_id, str):
            raise TypeError("last_event_id must be a str")
        if "\0" in last_event_id or "\r" in last_event_id or "\n" in last_event_id:
            raise ValueError("last_event_id cannot contain NUL, CR or LF")
        for name, limit in (
            ("max_line_bytes", max_line_bytes),
            ("max_event_bytes", max_event_bytes),
        ):
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ValueError(f"{name} must be a positive int, not {limit!r}")
        self.last_event_id: str = last_event_id
        self.retry: int | None = None
        self._id_buffer = last_event_id
        self._event_type = ""
        self._data: list[bytes] = []
        self._data_bytes = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._skip_lf = False
        self._bom: bytes | None = b""  # None once the start of the stream is past
        self._max_line = max_line_bytes
        self._max_event = max_event_bytes
        self._comments = comments
        # Why feed() refuses input (closed, or failed earlier), or None while open.
        self._stop: str | None = None

    def __repr__(self) -> str:
        state = "open" if self._stop is None else "closed" if self._stop is _CLOSED else "dead"
        return (
            f"<EventStreamParser {state} last_event_id={self.last_event_id!r} "
            f"retry={self.retry!r} buffered={self._pending_bytes + self._data_bytes}>"
        )

    def feed(self, chunk: bytes) -> list[T]:
        """Parse the next chunk of the stream.

        Args:
            chunk: The next bytes of the response body, of any size. ``b""`` is a
                no-op (end of stream is :meth:`close`).

        Returns:
            Every event whose blank line this chunk completed, in order (and the
            comments, for a ``comments=True`` parser).

        Raises:
            EventStreamError: A line or an event exceeds its limit, or the parser
                was closed or failed earlier. Its ``events`` attribute holds the events
                this call completed before the fault. The parser is dead afterwards.
        """
        if type(chunk) is not bytes:
            chunk = _as_bytes(chunk)
        if self._stop is not None:
            raise EventStreamError(self._stop)
        if not chunk:
            return []
        if self._bom is not None:
            chunk = self._strip_bom(chunk)
            if not chunk:
                return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 10:  # the LF of a CRLF split across chunks
                chunk = chunk[1:]
                if not chunk:
                    return []
        if b"\r" in chunk:
            # bytes.splitlines splits at CRLF, CR and LF only: exactly the standard's
            # line ends. A trailing CR ends its line now; an LF opening the next chunk
            # is its pair and is skipped.
            lines = chunk.splitlines()
            last = chunk[-1]
            self._skip_lf = last == 13
            tail = b"" if last == 13 or last == 10 else lines.pop()
        else:
            lines = chunk.split(b"\n")
            tail = lines.pop()  # the unterminated rest (b"" when the chunk ends a line)
        pending = self._pending
        if not lines:  # no line end in this chunk: the line goes on
            pending.append(tail)
            self._pending_bytes += len(tail)
            if self._pending_bytes > self._max_line:
                raise self._fail(self._line_too_long(self._pending_bytes), [])
            return []
        if pending:
            pending.append(lines[0])
            lines[0] = b"".join(pending)
            pending.clear()

        # Exact limit checks run only when this chunk could cross a limit.
        budget = len(chunk) + self._pending_bytes
        too_long = len(tail) if len(tail) > self._max_line else 0
        if budget > self._max_line:
            lengths = list(map(len, lines))
            if max(lengths) > self._max_line:
                bad = next(i for i, n in enumerate(lengths) if n > self._max_line)
                too_long = lengths[bad]
                del lines[bad:]  # the lines before it still take effect
        if tail:
            pending.append(tail)
        self._pending_bytes = len(tail)
        check_event = self._data_bytes + budget > self._max_event

        out: list[Any] = []
        append = out.append
        data = self._data
        add_data = data.append
        start = len(data)  # data lines before this index were counted in _data_bytes
        size = self._data_bytes
        event_type = self._event_type
        id_buffer = self._id_buffer
        last_event_id = self.last_event_id
        comments = self._comments
        for line in lines:
            if not line:  # blank line: dispatch
                last_event_id = id_buffer
                if data:
                    ev = _new(ServerSentEvent)
                    _set_event(ev, event_type or "message")
                    _set_data(
                        ev,
                        (data[0] if len(data) == 1 else b"\n".join(data)).decode(
                            "utf-8", "replace"
                        ),
                    )
                    _set_id(ev, id_buffer)
                    append(ev)
                    data.clear()
                    start = size = 0
                event_type = ""
                continue
            # The three common lines of real streams take a short path: a slice
            # compare is cheaper than partition() plus the space check.
            if line[:6] == b"data: ":
                value = line[6:]
            elif line[:7] == b"event: ":
                event_type = line[7:].decode("utf-8", "replace")
                continue
            elif line[:4] == b"id: ":
                if b"\0" not in line:
                    id_buffer = line[4:].decode("utf-8", "replace")
                continue
            else:
                name, _, value = line.partition(b":")
                if value[:1] == b" ":
                    value = value[1:]
                if name != b"data":
                    if name == b"event":
                        event_type = value.decode("utf-8", "replace")
                    elif name == b"id":
                        if b"\0" not in value:
                            id_buffer = value.decode("utf-8", "replace")
                    elif name == b"retry":
                        retry = _parse_retry(value)
                        if retry is not None:
                            self.retry = retry
                    elif not name and comments:
                        append(_make_comment(value))
                    continue
            add_data(value)
            if check_event:
                size += len(value) + 1
                if size > self._max_event:
                    self._event_type = event_type
                    self._id_buffer = id_buffer
                    self.last_event_id = last_event_id
                    raise self._fail(
                        f"event too large: its data grew past max_event_bytes="
                        f"{self._max_event}; if the server's events are really this "
                        f"large, create the parser with a larger max_event_bytes",
                        out,
                    )
        self._event_type = event_type
        self._id_buffer = id_buffer
        self.last_event_id = last_event_id
        if check_event or not data:
            self._data_bytes = size if data else 0
        else:  # count the data lines this call added
            self._data_bytes = size + sum(map(len, data[start:])) + len(data) - start
        if too_long:
            raise self._fail(self._line_too_long(too_long), out)
        return out

    def close(self) -> bool:
        """End the stream: a half-received event is discarded, as the standard says.

        Call it when the response body ends. Closing twice, or after an error, is a
        no-op.

        Returns:
            True if something was discarded (an unterminated line, or data lines
            whose blank line never came), so the caller can report that the stream
            ended mid-event; False if the stream ended cleanly between events.
        """
        if self._stop is not None:
            return False
        self._stop = _CLOSED
        discarded = bool(self._pending_bytes or self._data or self._bom)
        self._pending.clear()
        self._pending_bytes = 0
        self._data.clear()
        self._data_bytes = 0
        self._event_type = ""
        self._bom = None
        return discarded

    # -- the rare paths -----------------------------------------------------

    def _strip_bom(self, chunk: bytes) -> bytes:
        held = self._bom + chunk if self._bom else chunk
        if len(held) < 3 and _BOM.startswith(held):
            self._bom = held  # could still be a BOM: wait for more bytes
            return b""
        self._bom = None
        return held[3:] if held.startswith(_BOM) else held

    def _line_too_long(self, size: int) -> str:
        return (
            f"line too long: a line reached {size} bytes, past max_line_bytes="
            f"{self._max_line}; if the server really sends lines this long, create the "
            f"parser with a larger max_line_bytes"
        )

    def _fail(self, message: str, events: list[Any]) -> EventStreamError:
        self._stop = (
            f"the parser failed earlier ({message}) and accepts no more input; "
            f"start a new stream with a new parser"
        )
        self._pending.clear()
        self._pending_bytes = 0
        self._data.clear()
        self._data_bytes = 0
        return EventStreamError(message, events)


def _as_bytes(chunk: object) -> bytes:
    if isinstance(chunk, (bytearray, memoryview)):
        return bytes(chunk)
    raise TypeError(f"feed() takes bytes, not {type(chunk).__name__}")
