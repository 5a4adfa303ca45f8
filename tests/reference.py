"""A reference interpreter of ``text/event-stream``, for differential tests.

It follows the WHATWG standard ("Server-sent events", 9.2.6) step by step on the
*whole* stream at once, written for clarity and nothing else: decode every byte
(one leading BOM stripped), split the text into lines one character at a time,
then run each line through the standard's steps. It shares no code and no approach
with ``sseproto`` (which splits bytes per chunk and decodes per line); the two agree
because CR, LF and ``:`` are ASCII, so they mean the same before and after decoding.

Where the standard leaves a choice, this follows sseproto's documented one: an empty
``retry`` value is ignored, and so is one that overflows uint64 (as in Chromium).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["MAX_RETRY", "Event", "Item", "Result", "interpret"]

#: The largest reconnection time accepted; bigger values overflow uint64.
MAX_RETRY = 2**64 - 1

#: A dispatched event as ``(event type, data, last event ID)``.
Event = tuple[str, str, str]
#: An event, or the text of a comment (only when comments are asked for).
Item = Event | str


class Result(NamedTuple):
    """What interpreting a whole stream gives."""

    #: The dispatched events in order, and the comments among them if asked for.
    events: list[Item]
    #: The last event ID string as of the last blank line (what a client would send).
    last_event_id: str
    #: The reconnection time set by the last valid ``retry`` field, if any.
    retry: int | None
    #: True if the end of the stream discarded something: an unterminated line, or
    #: a data buffer whose blank line never came.
    discarded: bool


def interpret(stream: bytes, *, last_event_id: str = "", comments: bool = False) -> Result:
    """Interpret a whole event stream as the standard says.

    Args:
        stream: Every byte of the response body.
        last_event_id: The last event ID that a resumed stream starts from.
        comments: If true, put the text of each comment among the events, in order
            (what follows the colon, with one leading U+0020 removed).
    """
    # UTF-8 decode: strip one leading BOM, replace every invalid sequence with U+FFFD.
    if stream.startswith(b"\xef\xbb\xbf"):
        stream = stream[3:]
    text = stream.decode("utf-8", "replace")
    lines, unterminated = _split_lines(text)

    events: list[Item] = []
    data_buffer = ""
    event_type_buffer = ""
    last_event_id_buffer = last_event_id
    last_event_id_string = last_event_id
    retry: int | None = None

    for line in lines:
        if line == "":
            # Dispatch. Step 1 runs on every blank line, even one dispatching nothing.
            last_event_id_string = last_event_id_buffer
            if data_buffer == "":
                event_type_buffer = ""
                continue
            if data_buffer.endswith("\n"):
                data_buffer = data_buffer[:-1]
            event_type = event_type_buffer if event_type_buffer != "" else "message"
            events.append((event_type, data_buffer, last_event_id_string))
            data_buffer = ""
            event_type_buffer = ""
            continue
        if line.startswith(":"):
            if comments:
                events.append(_without_one_space(line[1:]))
            continue
        if ":" in line:
            colon = line.index(":")
            name, value = line[:colon], _without_one_space(line[colon + 1 :])
        else:
            name, value = line, ""
        if name == "event":
            event_type_buffer = value
        elif name == "data":
            data_buffer += value + "\n"
        elif name == "id":
            if "\0" not in value:
                last_event_id_buffer = value
        elif name == "retry":
            reconnection_time = _reconnection_time(value)
            if reconnection_time is not None:
                retry = reconnection_time
        # Any other field name is ignored.

    # End of stream: the unterminated line and any pending data are discarded.
    discarded = unterminated != "" or data_buffer != ""
    return Result(events, last_event_id_string, retry, discarded)


def _split_lines(text: str) -> tuple[list[str], str]:
    """Split at CRLF, lone CR and lone LF; return the lines and the unterminated rest."""
    lines: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\r" or char == "\n":
            lines.append("".join(current))
            current = []
            if char == "\r" and i + 1 < len(text) and text[i + 1] == "\n":
                i += 1  # CRLF is one line end
        else:
            current.append(char)
        i += 1
    return lines, "".join(current)


def _without_one_space(value: str) -> str:
    return value[1:] if value.startswith(" ") else value


def _reconnection_time(value: str) -> int | None:
    """The value of a ``retry`` field, or None if the field must be ignored.

    Only a non-empty string of ASCII digits counts, and only up to ``MAX_RETRY``;
    it is read digit by digit, so a huge value never reaches ``int()``'s digit limit.
    """
    if value == "" or not all("0" <= char <= "9" for char in value):
        return None
    number = 0
    for char in value:
        number = number * 10 + (ord(char) - ord("0"))
        if number > MAX_RETRY:
            return None
    return number
