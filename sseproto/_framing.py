"""The framing of an HTTP/1.1 response body, sans-IO: where its bytes are, where it ends.

Theory of operation: h11 reads every response head, and the bodies of JSON calls;
an event stream's body, read for hours a network read at a time, is unframed here
instead, at a cost of one ``find`` and one slice per read where h11 makes several
calls per read (measured before: h11 was about a fifth of the trio transport's CPU
per event on a trickling stream). :class:`BodyFraming` is told the head
(:meth:`BodyFraming.of`), then fed what the connection reads; it answers the body's
bytes in them and knows the end: ``chunked`` (the size lines, the CRLF after each
chunk's data, the trailer section), ``Content-Length``, or the connection's close
(HTTP/1.0 style).

It is as strict as h11 (the same chunk-size grammar: 1 to 20 hex digits, an
extension after ``;`` ignored, spaces or tabs before the CRLF) and bounded: a size
line or a trailer section longer than :data:`MAX_LINE_BYTES` is an error, never a
buffer that grows. Malformed framing raises :class:`FramingError` (the connection
makes it a ``RemoteProtocolError`` that names the server).
"""

from __future__ import annotations

__all__ = ["MAX_LINE_BYTES", "BodyFraming", "FramingError"]

#: The longest chunk-size line, and the largest trailer section (h11's bound for a
#: head, 16 KiB).
MAX_LINE_BYTES = 16 * 1024
_HEX_DIGITS = b"0123456789abcdefABCDEF"

# Where a chunked body is.
_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class FramingError(ValueError):
    """The body's framing is broken (the message quotes at most a few bytes, as a repr)."""


def _shown(data: bytes) -> str:
    return repr(data[:40]) + ("..." if len(data) > 40 else "")


class BodyFraming:
    """One response body's framing. Feed it the bytes read after the head."""

    __slots__ = ("_buffer", "_remaining", "_state", "done", "extra", "kind")

    def __init__(self, kind: str, length: int = 0) -> None:
        if kind not in ("chunked", "length", "close"):
            raise ValueError(f"unknown framing {kind!r}")
        #: ``"chunked"``, ``"length"`` or ``"close"``.
        self.kind = kind
        #: True once the body ended (for ``"close"``: once :meth:`eof` was called).
        self.done = kind == "length" and length == 0
        #: Bytes after the body's end (the server sent more than the response).
        self.extra = b""
        self._remaining = length
        self._state = _SIZE if kind == "chunked" else _DATA
        self._buffer = b""  # an incomplete size line, CRLF or trailer section

    @classmethod
    def of(cls, method: str, status: int, fields: list[tuple[bytes, bytes]]) -> BodyFraming:
        """The framing of a response h11 has accepted (so its Transfer-Encoding is
        ``chunked`` alone, and its Content-Length a single valid number), by RFC 9112
        6.3: no body for HEAD, 204 and 304; chunked beats Content-Length; else the
        body lasts until the server closes."""
        if method == "HEAD" or status in (204, 304):
            return cls("length", 0)
        length: int | None = None
        for name, value in fields:
            lowered = name.lower()
            if lowered == b"transfer-encoding":
                return cls("chunked")
            if lowered == b"content-length":
                length = int(value.split(b",")[0])
        return cls("close") if length is None else cls("length", length)

    def feed(self, data: bytes) -> bytes:
        """The body's bytes in ``data`` (``b""`` if it held only framing).

        Raises:
            FramingError: Broken framing (a bad size line, no CRLF after a chunk's
                data, a size line or trailer section past ``MAX_LINE_BYTES``).
        """
        if self.done:
            self.extra += data
            return b""
        if self.kind != "chunked":
            if self.kind == "close":
                return data
            if len(data) < self._remaining:
                self._remaining -= len(data)
                return data
            body, self.extra = data[: self._remaining], data[self._remaining :]
            self._remaining = 0
            self.done = True
            return body
        if self._buffer:
            data, self._buffer = self._buffer + data, b""
        pieces: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, end - pos)
                pieces.append(data[pos : pos + take])
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _DATA_END
            elif state == _SIZE:
                newline = data.find(b"\n", pos)
                if newline < 0:
                    pos = self._keep(data, pos, "chunk-size line")
                    break
                self._size_line(data[pos : newline + 1])
                pos = newline + 1
            elif state == _DATA_END:
                if end - pos < 2:
                    if data[pos:end] != b"\r":
                        raise FramingError(f"no CRLF after a chunk's data: {_shown(data[pos:])}")
                    pos = self._keep(data, pos, "chunk end")
                    break
                if data[pos : pos + 2] != b"\r\n":
                    raise FramingError(f"no CRLF after a chunk's data: {_shown(data[pos:])}")
                pos += 2
                self._state = _SIZE
            else:  # _TRAILER: lines until an empty one
                newline = data.find(b"\n", pos)
                if newline < 0:
                    pos = self._keep(data, pos, "trailer section")
                    break
                line = data[pos:newline]
                pos = newline + 1
                if line in (b"", b"\r"):
                    self._state = _DONE
                    self.done = True
                    self.extra = data[pos:]
                    break
                self._remaining += len(line)  # the trailer section's size so far
                if self._remaining > MAX_LINE_BYTES:
                    raise FramingError(f"a trailer section longer than {MAX_LINE_BYTES} bytes")
        if len(pieces) == 1:
            return pieces[0]
        return b"".join(pieces)

    def eof(self) -> None:
        """The server closed the connection.

        Raises:
            FramingError: The body had not ended (only a ``close``-framed body ends so).
        """
        if self.kind == "close":
            self.done = True
        elif not self.done:
            raise FramingError("the server closed the connection in the middle of a response")

    def _keep(self, data: bytes, pos: int, what: str) -> int:
        """Keep ``data[pos:]`` for the next feed (bounded); the new position."""
        rest = data[pos:]
        if len(rest) > MAX_LINE_BYTES:
            raise FramingError(f"a {what} longer than {MAX_LINE_BYTES} bytes")
        self._buffer = rest
        return len(data)

    def _size_line(self, line: bytes) -> None:
        """A chunk-size line, with its newline: ``1f;ext=1  \\r\\n`` (h11's grammar)."""
        if len(line) > MAX_LINE_BYTES:
            raise FramingError(f"a chunk-size line longer than {MAX_LINE_BYTES} bytes")
        if not line.endswith(b"\r\n"):
            raise FramingError(f"illegal chunk header: {_shown(line)}")
        size, _, _ = line[:-2].partition(b";")
        if b";" not in line:
            size = size.rstrip(b" \t")
        if not 1 <= len(size) <= 20 or size.translate(None, _HEX_DIGITS):
            raise FramingError(f"illegal chunk header: {_shown(line)}")
        self._remaining = int(size, 16)
        self._state = _DATA if self._remaining else _TRAILER
