"""The event-stream encoder: events and comments to bytes.

The inverse of the parser: parsing what ``encode_event`` writes gives back the same
event (CR and CRLF inside ``data`` come back as LF, because every line end is one to
the parser). Values that no event stream can carry raise ``ValueError`` instead of
producing a stream that parses to something else.
"""

from __future__ import annotations

import re

__all__ = ["encode_comment", "encode_event"]

_LINE_END = re.compile(r"\r\n|\r|\n")
_MAX_RETRY = 2**64 - 1  # the parser, like Chromium, ignores larger values


def _field(name: bytes, value: str) -> bytes:
    # One space after the colon, so a value that starts with a space keeps it.
    return name + b": " + value.encode("utf-8") + b"\n" if value else name + b":\n"


def _lines(name: bytes, text: str) -> bytes:
    if "\n" not in text and "\r" not in text:
        return _field(name, text)
    return b"".join(_field(name, line) for line in _LINE_END.split(text))


def encode_event(
    data: str | None,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
) -> bytes:
    """Encode one event as UTF-8 bytes, ending with its blank line.

    Args:
        data: The event's data. Each line (split at CRLF, CR or LF) becomes a
            ``data:`` line. ``None`` writes no data line: the block then sets ``id``
            and ``retry`` without dispatching an event (``""`` dispatches an event
            with empty data).
        event: The event type (``None`` for the default, ``message``).
        id: The event ID (``""`` resets the client's last event ID).
        retry: The reconnection time to ask of the client, in milliseconds.

    Returns:
        The bytes of the event block, LF line ends, blank line included.

    Raises:
        ValueError: ``event`` or ``id`` contains CR or LF, ``id`` contains NUL,
            or ``retry`` is negative or past 2**64-1 (which parsers ignore).
        TypeError: A value has the wrong type.
    """
    out = []
    if retry is not None:
        if isinstance(retry, bool) or not isinstance(retry, int):
            raise TypeError(f"retry must be an int (milliseconds), not {type(retry).__name__}")
        if not 0 <= retry <= _MAX_RETRY:
            raise ValueError(
                f"retry must be between 0 and 2**64-1 milliseconds (clients ignore "
                f"other values), not {retry}"
            )
        out.append(b"retry: %d\n" % retry)
    if id is not None:
        _check_str("id", id)
        if "\0" in id or "\r" in id or "\n" in id:
            raise ValueError(f"an event id cannot contain NUL, CR or LF: {id!r}")
        out.append(_field(b"id", id))
    if event is not None:
        _check_str("event", event)
        if "\r" in event or "\n" in event:
            raise ValueError(f"an event type cannot contain CR or LF: {event!r}")
        out.append(_field(b"event", event))
    if data is not None:
        _check_str("data", data)
        out.append(_lines(b"data", data))
    out.append(b"\n")
    return b"".join(out)


def encode_comment(text: str = "") -> bytes:
    """Encode a comment (a heartbeat, say): one ``:`` line per line of ``text``.

    A comment never dispatches or changes an event; the parser returns it as a
    :class:`~sseproto.Comment` with the same text only when asked for comments.

    Raises:
        TypeError: ``text`` is not a ``str``.
    """
    _check_str("text", text)
    return _lines(b"", text)


def _check_str(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
