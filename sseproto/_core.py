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
  replacement gives the same U+FFFD as decoding the whole stream, and a character
  split across chunks is never decoded until its line is whole. Values are decoded
  strictly first (faster, and the same text whenever it succeeds) and with
  ``"replace"`` only when that fails.

* **Line ends.** A chunk without CR is split with ``split(b"\n")``; one with CR with
  ``bytes.splitlines()``, which splits at exactly CRLF, CR and LF (``str.splitlines``
  would also split at U+2028 and friends). The only line end that can straddle two
  chunks is CRLF, with the CR at the end of one chunk: that CR ends its line at once
  (so an event whose blank line is a CR comes out of the ``feed`` that brought the CR,
  never later) and a flag swallows an LF at the start of the next chunk.

* **Partial lines.** The unterminated tail of a chunk is kept as a list of pieces and
  joined once, when its line end arrives. Line ends are searched for only in the new
  bytes, so the total work is linear in the input whatever the chunking. A chunk with
  no line end at all (small network reads of a long line) takes a short path: two
  ``in`` tests (with int needles: ``10 in chunk`` skips the exception CPython raises
  and clears for a bytes needle) and an append. A long ``data:`` line that arrived in pieces has its
  prefix cut from the first piece before the join, so the value is built by one copy.

* **Events are named tuples** (``_events.py``), built here with ``tuple.__new__``
  directly: about three times cheaper than a frozen dataclass.

* **Compiled where possible.** The build compiles this module with mypyc (see
  ``setup.py``); ``_parser.py`` falls back to it as plain Python. Hence arguments that
  need checking are typed ``object`` (compiled code would reject a wrong type with its
  own TypeError first), and the class allows interpreted subclasses (the public,
  generic ``EventStreamParser`` is one).

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

from typing import Any

from ._errors import EventStreamError
from ._events import Comment, ServerSentEvent

try:
    from mypy_extensions import mypyc_attr
except ImportError:  # the decorator only matters to mypyc, at build time

    def mypyc_attr(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
        return lambda cls: cls


__all__ = ["DEFAULT_MAX_EVENT_BYTES", "DEFAULT_MAX_LINE_BYTES", "ParserCore"]

_BOM = b"\xef\xbb\xbf"
#: Large enough for any legitimate stream (base64 images included), small enough
#: that a server which never sends a line end cannot exhaust memory.
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024
# A retry value with more digits than this overflows uint64 and is ignored, as in
# Chromium (and it keeps int() away from its quadratic path on huge digit strings).
_MAX_RETRY_DIGITS = 20
_MAX_RETRY = 2**64 - 1
# A data line longer than this that arrives in pieces is joined without its prefix.
_LONG_LINE = 16 * 1024
# The parser's fast path builds events with tuple.__new__ directly: the grammar
# already guarantees what ServerSentEvent.__new__ validates.
_new = tuple.__new__
_CLOSED = "feed() after close(): the stream has ended; use a new parser for a new stream"


def _decode(raw: bytes) -> str:
    """UTF-8 decode with U+FFFD for invalid sequences, as the standard's decoder."""
    return raw.decode("utf-8", "replace")


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


@mypyc_attr(allow_interpreted_subclasses=True)
class ParserCore:
    """The parser's state machine; :class:`sseproto.EventStreamParser` is its public,
    typed face (see its docstring). Compiled with mypyc where the build could."""

    __slots__ = (
        "_bom",
        "_comments",
        "_data",
        "_data_bytes",
        "_event_type",
        "_fast",
        "_had_id",
        "_id_buffer",
        "_max_event",
        "_max_line",
        "_own_ids",
        "_pending",
        "_pending_bytes",
        "_skip_lf",
        "_stop",
        "last_event_id",
        "retry",
    )

    # Arguments are typed `object` and checked here: compiled code would otherwise
    # reject a wrong type with mypyc's TypeError before our clearer message.
    def __init__(
        self,
        *,
        last_event_id: object = "",
        max_line_bytes: object = DEFAULT_MAX_LINE_BYTES,
        max_event_bytes: object = DEFAULT_MAX_EVENT_BYTES,
        comments: object = False,
    ) -> None:
        if not isinstance(last_event_id, str):
            raise TypeError("last_event_id must be a str")
        if "\0" in last_event_id or "\r" in last_event_id or "\n" in last_event_id:
            raise ValueError("last_event_id cannot contain NUL, CR or LF")
        max_line_bytes = _positive("max_line_bytes", max_line_bytes)
        max_event_bytes = _positive("max_event_bytes", max_event_bytes)
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
        # True while feed() may skip _start_chunk: open, past the BOM, no CR pending.
        self._fast = False
        self._max_line = max_line_bytes
        self._max_event = max_event_bytes
        self._comments = bool(comments)
        # Why feed() refuses input (closed, or failed earlier), or None while open.
        self._stop: str | None = None
        # For the replay filter of EventSource (private): when a list, feed() puts in
        # it the index (in what it returns) of each event whose block had an id field
        # of its own (a sticky id alone does not make an event recognisable as a
        # replay). Marked at the id line, so events pay nothing; None costs nothing.
        self._own_ids: list[int] | None = None
        # An id field seen in a block that a later feed() will complete.
        self._had_id = False

    def __repr__(self) -> str:
        state = "open" if self._stop is None else "closed" if self._stop is _CLOSED else "dead"
        return (
            f"<EventStreamParser {state} last_event_id={self.last_event_id!r} "
            f"retry={self.retry!r} buffered={self._pending_bytes + self._data_bytes}>"
        )

    def feed(self, chunk: object) -> list[Any]:
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
            return self.feed(_as_bytes(chunk))
        if not self._fast:
            chunk = self._start_chunk(chunk)
        if 10 not in chunk and 13 not in chunk:  # int membership: cheaper than b"\n"
            # The short path: no line end, so the pending line just grows.
            if chunk:
                n = self._pending_bytes + len(chunk)
                if n > self._max_line:
                    raise self._fail(self._line_too_long(n), [])
                self._pending_bytes = n
                self._pending.append(chunk)
            return []
        if 13 in chunk:  # CR
            # bytes.splitlines splits at CRLF, CR and LF only: exactly the standard's
            # line ends. A trailing CR ends its line now; an LF opening the next chunk
            # is its pair and is skipped (see _start_chunk).
            lines: list[bytes] = chunk.splitlines()
            last = chunk[-1]
            if last == 13:
                self._skip_lf = True
                self._fast = False
                tail = b""
            else:
                tail = b"" if last == 10 else lines.pop()
        else:
            lines = chunk.split(b"\n")
            tail = lines.pop()  # the unterminated rest (b"" when the chunk ends a line)
        pending = self._pending
        budget = len(chunk) + self._pending_bytes  # bounds the bytes this call adds
        long_value = None
        if pending:
            pending.append(lines[0])
            if (
                budget > _LONG_LINE
                and pending[0][:6] == b"data: "
                and self._pending_bytes + len(lines[0]) <= self._max_line
            ):
                # A long data line completed: cut the prefix off its first piece so
                # one join builds the value (join-then-slice would copy it twice).
                pending[0] = pending[0][6:]
                long_value = b"".join(pending)
                del lines[0]
            else:
                lines[0] = b"".join(pending)
            pending.clear()

        # Exact limit checks run only when this chunk could cross a limit.
        n = len(tail)
        too_long = 0
        if budget > self._max_line:
            lengths = [*map(len, lines), n]
            if max(lengths) > self._max_line:
                bad = next(i for i, k in enumerate(lengths) if k > self._max_line)
                too_long = lengths[bad]
                del lines[bad:]  # the lines before it still take effect
        if n:
            pending.append(tail)
        self._pending_bytes = n
        check_event = self._data_bytes + budget > self._max_event

        out: list[Any] = []
        data = self._data
        start = len(data)  # data lines before this index are counted in _data_bytes
        size = self._data_bytes
        event_type = self._event_type
        id_buffer = self._id_buffer
        last_event_id = self.last_event_id
        own_ids = self._own_ids
        if own_ids is not None and self._had_id:
            own_ids.append(0)  # the block's id line came in an earlier chunk
            self._had_id = False
        if long_value is not None:
            data.append(long_value)
            if check_event:
                size += len(long_value) + 1
                if size > self._max_event:
                    raise self._event_too_large(out, event_type, id_buffer, last_event_id)
        for line in lines:
            if not line:  # blank line: dispatch
                last_event_id = id_buffer
                if data:
                    raw = b"\n".join(data)  # one item: returned as is, no copy
                    # Strict decoding is faster than "replace" and gives the same
                    # text whenever it succeeds; only invalid UTF-8 pays twice.
                    try:
                        text = raw.decode()
                    except UnicodeDecodeError:
                        text = raw.decode("utf-8", "replace")
                    out.append(_new(ServerSentEvent, (event_type or "message", text, id_buffer)))
                    data.clear()
                    start = size = 0
                elif own_ids and own_ids[-1] == len(out):
                    own_ids.pop()  # the id line of a block that dispatched nothing
                event_type = ""
                continue
            # The three common lines of real streams take a short path: a slice
            # compare is cheaper than partition() plus the space check.
            if line[:6] == b"data: ":
                value = line[6:]
            elif line[:7] == b"event: ":
                try:
                    event_type = line[7:].decode()
                except UnicodeDecodeError:
                    event_type = _decode(line[7:])
                continue
            elif line[:4] == b"id: ":
                if 0 not in line:
                    try:
                        id_buffer = line[4:].decode()
                    except UnicodeDecodeError:
                        id_buffer = _decode(line[4:])
                    if own_ids is not None:
                        _mark(own_ids, len(out))
                continue
            else:
                name, _, value = line.partition(b":")
                if value[:1] == b" ":
                    value = value[1:]
                if name != b"data":
                    if name == b"event":
                        event_type = _decode(value)
                    elif name == b"id":
                        if 0 not in value:
                            id_buffer = _decode(value)
                            if own_ids is not None:
                                _mark(own_ids, len(out))
                    elif name == b"retry":
                        retry = _parse_retry(value)
                        if retry is not None:
                            self.retry = retry
                    elif not name and self._comments:
                        out.append(_new(Comment, (_decode(value),)))
                    continue
            data.append(value)
            if check_event:
                size += len(value) + 1
                if size > self._max_event:
                    raise self._event_too_large(out, event_type, id_buffer, last_event_id)
        self._event_type = event_type
        self._id_buffer = id_buffer
        if own_ids and own_ids[-1] == len(out):  # for an event a later feed() completes
            own_ids.pop()
            self._had_id = True
        self.last_event_id = last_event_id
        if not data:
            self._data_bytes = 0
        elif check_event:
            self._data_bytes = size
        else:  # count the data lines this call added
            added = len(data) - start
            self._data_bytes = size + (
                len(data[-1]) + 1 if added == 1 else sum(map(len, data[start:])) + added
            )
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
        self._fast = False
        discarded = bool(self._pending_bytes or self._data or self._bom)
        self._pending.clear()
        self._pending_bytes = 0
        self._data.clear()
        self._data_bytes = 0
        self._event_type = ""
        self._bom = None
        return discarded

    # -- the rare paths -----------------------------------------------------

    def _start_chunk(self, chunk: bytes) -> bytes:
        """The checks that only the first chunks, a chunk after a CR, or a closed
        or failed parser need; returns what is left of the chunk to parse."""
        if self._stop is not None:
            raise EventStreamError(self._stop)
        if self._bom is not None:
            held = self._bom + chunk
            if len(held) < 3 and _BOM.startswith(held):
                self._bom = held  # could still be a BOM: wait for more bytes
                return b""
            self._bom = None
            chunk = held[3:] if held.startswith(_BOM) else held
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[0] == 10:  # the LF of a CRLF split across chunks
                chunk = chunk[1:]
        self._fast = self._bom is None and not self._skip_lf
        return chunk

    def _event_too_large(
        self, events: list[Any], event_type: str, id_buffer: str, last_event_id: str
    ) -> EventStreamError:
        # The lines before the fault took effect: keep their state, then fail.
        self._event_type = event_type
        self._id_buffer = id_buffer
        self.last_event_id = last_event_id
        return self._fail(
            f"event too large: its data grew past max_event_bytes={self._max_event}; if "
            f"the server's events are really this large, create the parser with a "
            f"larger max_event_bytes",
            events,
        )

    def _line_too_long(self, size: int) -> str:
        return (
            f"line too long: a line reached {size} bytes, past max_line_bytes="
            f"{self._max_line}; if the server really sends lines this long, create the "
            f"parser with a larger max_line_bytes"
        )

    def _fail(self, message: str, events: list[Any]) -> EventStreamError:
        self._fast = False
        self._stop = (
            f"the parser failed earlier ({message}) and accepts no more input; "
            f"start a new stream with a new parser"
        )
        self._pending.clear()
        self._pending_bytes = 0
        self._data.clear()
        self._data_bytes = 0
        return EventStreamError(message, events)


def _mark(own_ids: list[int], index: int) -> None:
    """Note that the event ``index`` will be one with an id field of its own."""
    if not own_ids or own_ids[-1] != index:
        own_ids.append(index)


def _positive(name: str, limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"{name} must be a positive int, not {limit!r}")
    return limit


def _as_bytes(chunk: object) -> bytes:
    if isinstance(chunk, (bytearray, memoryview)):
        return bytes(chunk)
    raise TypeError(f"feed() takes bytes, not {type(chunk).__name__}")
