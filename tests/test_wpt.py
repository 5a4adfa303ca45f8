"""The parsing cases of the web-platform-tests ``eventsource/`` suite.

One test per WPT test (numbered in the order of the suite's files, named in each test's
docstring), with the exact
bytes its server resource sends and the events it expects. ``message`` rebuilds what
``resources/message.py`` sends. Where a WPT test reconnects, the reconnection is
modelled at the parser level, as a client does it: each new connection gets a new parser
seeded with the previous parser's ``last_event_id``, and sends that as ``Last-Event-ID``
when it is not empty (the standard's reconnection: tests/test_eventsource.py).

Not parser concerns, so not here: the MIME type checks (25, 26 and the Content-Type
of 23), HTTP statuses, redirects and request headers (27-31), and the reconnection
delays that the retry tests measure (only the ``retry`` value the parser reports is).

Every test runs under every chunking of ``_chunking.CHUNKINGS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from tests._chunking import Splitter, parse
from tests._helpers import events_of, every_chunking, feed_each, msg

if TYPE_CHECKING:
    import sseproto

BOM = b"\xef\xbb\xbf"
ELLIPSIS = "\u2026"  # last-event-id.py's default id, E2 80 A6

Server = Callable[[str | None], bytes]
"""A server resource: the Last-Event-ID header of the request (None if not sent) -> body."""


def message(body: bytes, *, newline: bool = True) -> bytes:
    """What resources/message.py sends: body + "\\n\\n" (unless newline=none) + "\\n"."""
    return body + (b"\n\n" if newline else b"") + b"\n"


def last_event_id_py(idvalue: bytes = ELLIPSIS.encode()) -> Server:
    """resources/last-event-id.py: echoes a non-empty Last-Event-ID, else sends an id."""

    def respond(last_event_id: str | None) -> bytes:
        if last_event_id:
            return b"data: " + last_event_id.encode() + b"\n\n"
        return b"id: " + idvalue + b"\nretry: 200\ndata: hello\n\n"

    return respond


@dataclass(frozen=True)
class Connection:
    """One response of a reconnecting client: what it sent, what its parser gave."""

    sent_last_event_id: str | None
    events: list[Any]
    parser: sseproto.EventStreamParser[Any]


def connect(server: Server, times: int, split: Splitter) -> list[Connection]:
    """Connect ``times`` times, each response body parsed and ended (then a reconnect)."""
    last_event_id = ""  # the EventSource's last event ID string (C1)
    connections = []
    for _ in range(times):
        header = last_event_id or None  # C4 5.2: sent only when not empty
        events, parser = parse(server(header), split, last_event_id=last_event_id)
        connections.append(Connection(header, events, parser))
        last_event_id = parser.last_event_id
    return connections


# -- 1-4: BOM ---------------------------------------------------------------------------


@every_chunking
def test_format_bom(split: Splitter) -> None:
    """WPT 1 format-bom: a BOM that is not at the start makes '\\ufeffdata', so no "2"."""
    data = message(BOM + b"data:1\n\n" + BOM + b"data:2\n\ndata:3")
    assert events_of(data, split) == [msg("1"), msg("3")]


@every_chunking
def test_format_bom_2(split: Splitter) -> None:
    """WPT 2 format-bom-2: of two leading BOMs only one is stripped, so no "1"."""
    data = message(BOM + BOM + b"data:1\n\ndata:2\n\ndata:3")
    assert events_of(data, split) == [msg("2"), msg("3")]


@every_chunking
def test_format_bom_split(split: Splitter) -> None:
    """WPT 3 format-bom-split: chunks EF | BB BF data:1...: the split BOM is stripped."""
    returned, _ = feed_each([b"\xef", b"\xbb\xbfdata:1\n\ndata:2\n\n"], split)
    assert returned == [[], [msg("1"), msg("2")]]


@every_chunking
@pytest.mark.parametrize("bom", [b"\xff\xfe", b"\xfe\xff"], ids=["FF_FE", "FE_FF"])
def test_format_bom_utf_16(split: Splitter, bom: bytes) -> None:
    """WPT 4 format-bom-utf-16: a UTF-16 BOM is two U+FFFD: the first message is "2"."""
    assert events_of(message(bom + b"data:1\n\ndata:2"), split) == [msg("2")]


# -- 5-9: comments, data, event -----------------------------------------------------------


@every_chunking
def test_format_comments(split: Splitter) -> None:
    """WPT 5 format-comments: comments ended by CR, LF, CRLF, with NUL, long, data-like."""
    long = b"x" * 2048
    body = b"data:1\r:\0\n:\r\ndata:2\n:" + long + b"\rdata:3\n:data:fail\r:" + long
    data = message(body + b"\ndata:4\n", newline=False)
    assert events_of(data, split) == [msg("1\n2\n3\n4")]


@every_chunking
def test_format_data_before_final_empty_line(split: Splitter) -> None:
    """WPT 6: the block without blank line is discarded; its id never reaches lastEventId."""
    body = message(b"retry:1000\ndata:test1\n\nid:test\ndata:test2", newline=False)
    first, second = connect(lambda _: body, 2, split)
    assert first.events == [msg("test1")]
    assert (first.parser.retry, first.parser.last_event_id) == (1000, "")
    # The reconnect (after first.parser.retry ms) sends no Last-Event-ID.
    assert second.sent_last_event_id is None
    assert second.events == [msg("test1")]  # the message the WPT checks: lastEventId ""


@every_chunking
def test_format_field_data(split: Splitter) -> None:
    """WPT 7 format-field-data: "", "\\n" (two bare data lines), "test"."""
    data = message(b"data:\n\ndata\ndata\n\ndata:test")
    assert events_of(data, split) == [msg(""), msg("\n"), msg("test")]


@every_chunking
def test_format_field_event(split: Splitter) -> None:
    """WPT 8 format-field-event: type "test", then "message": the type resets."""
    data = message(b"event:test\ndata:x\n\ndata:x")
    assert events_of(data, split) == [msg("x", event="test"), msg("x")]


@every_chunking
def test_format_field_event_empty(split: Splitter) -> None:
    """WPT 9 format-field-event-empty: 'event: ' is the empty type, so "message"."""
    assert events_of(message(b"event: \ndata:data"), split) == [msg("data")]


# -- 10-13: id --------------------------------------------------------------------------


@every_chunking
def test_format_field_id(split: Splitter) -> None:
    """WPT 10 format-field-id: the id carries over to the reconnected stream (D1)."""
    first, second = connect(last_event_id_py(), 2, split)
    assert first.events == [msg("hello", ELLIPSIS)]
    assert first.parser.retry == 200
    assert second.sent_last_event_id == ELLIPSIS  # sent as UTF-8: E2 80 A6
    assert second.events == [msg(ELLIPSIS, ELLIPSIS)]


@every_chunking
def test_format_field_id_2(split: Splitter) -> None:
    """WPT 11 format-field-id-2: two reconnects, each sending Last-Event-ID '\\u2026'."""
    connections = connect(last_event_id_py(), 3, split)
    assert [c.sent_last_event_id for c in connections] == [None, ELLIPSIS, ELLIPSIS]
    assert [c.events for c in connections] == [
        [msg("hello", ELLIPSIS)],
        [msg(ELLIPSIS, ELLIPSIS)],
        [msg(ELLIPSIS, ELLIPSIS)],
    ]


@every_chunking
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            b"id: 1\ndata: 1\n\ndata: 2\n\nid: 2\ndata:3\n\ndata:4\n\n",
            [("1", "1"), ("2", "1"), ("3", "2"), ("4", "2")],
            id="persists",
        ),
        pytest.param(
            b"id: 1\ndata: 1\n\nid:\ndata:2\n\ndata:3\n\n",
            [("1", "1"), ("2", ""), ("3", "")],
            id="resets",
        ),
        pytest.param(
            b"id: 1\ndata: 1\n\nid\ndata:2\n\ndata:3\n\n",
            [("1", "1"), ("2", ""), ("3", "")],
            id="resets_id_without_colon",
        ),
    ],
)
def test_format_field_id_3(split: Splitter, body: bytes, expected: list[tuple[str, str]]) -> None:
    """WPT 12 format-field-id-3 (last-event-id2.py): the id persists, 'id:'/'id' reset it."""
    assert events_of(body, split) == [msg(data, id) for data, id in expected]


@every_chunking
@pytest.mark.parametrize(
    "idvalue", [b"\0\0", b"x\0", b"\0x", b"x\0x", b" \0"], ids=["NN", "xN", "Nx", "xNx", "sN"]
)
def test_format_field_id_null(split: Splitter, idvalue: bytes) -> None:
    """WPT 13 format-field-id-null: an id with NUL is ignored; no Last-Event-ID is sent."""
    first, second = connect(last_event_id_py(idvalue), 2, split)
    assert second.sent_last_event_id is None
    assert [first.events, second.events] == [[msg("hello")], [msg("hello")]]
    assert second.parser.last_event_id == ""


# -- 14-23: field parsing, retry, unknown fields, spaces, newlines, NUL, UTF-8 ------------


@every_chunking
def test_format_field_parsing(split: Splitter) -> None:
    """WPT 14 format-field-parsing: NUL kept, one space removed, unknown names, all EOLs."""
    body = (
        b"data:\0\ndata:  2\rData:1\ndata\0:2\ndata:1\r\0data:4\nda-ta:3\rdata_5\n"
        b"data:3\rdata:\r\n data:32\ndata:4\n"
    )
    assert events_of(message(body, newline=False), split) == [msg("\0\n 2\n1\n3\n\n4")]


# 15-18 measure the reconnection delay (timing, the transport's business); the parser's
# part is the retry value it reports.


@every_chunking
def test_format_field_retry(split: Splitter) -> None:
    """WPT 15 format-field-retry: 'retry:03000' is decimal 3000, not octal."""
    events, parser = parse(message(b"retry:03000\ndata:x"), split)
    assert (events, parser.retry) == ([msg("x")], 3000)


@every_chunking
def test_format_field_retry_bogus(split: Splitter) -> None:
    """WPT 16 format-field-retry-bogus: 'retry:1000x' is ignored; 3000 stays."""
    events, parser = parse(message(b"retry:3000\nretry:1000x\ndata:x"), split)
    assert (events, parser.retry) == ([msg("x")], 3000)


@every_chunking
def test_format_field_retry_bogus_2(split: Splitter) -> None:
    """WPT 17 format-field-retry-bogus-2: 'retry:5000x' is ignored; 1000 stays."""
    events, parser = parse(message(b"retry:1000\nretry:5000x\ndata:x"), split)
    assert (events, parser.retry) == ([msg("x")], 1000)


@every_chunking
def test_format_field_retry_empty(split: Splitter) -> None:
    """WPT 18 format-field-retry-empty: the message after a bare 'retry' still arrives."""
    events, parser = parse(message(b"retry\ndata:test"), split)
    assert events == [msg("test")]
    # The WPT does not check this; sseproto ignores an empty retry (B8.4 in test_spec.py).
    assert parser.retry is None


@every_chunking
def test_format_field_unknown(split: Splitter) -> None:
    """WPT 19 format-field-unknown: ' data' and other names ignored, bare 'data' adds a line."""
    body = b"data:test\n data\ndata\nfoobar:xxx\njustsometext\n:thisisacommentyay\ndata:test"
    assert events_of(message(body), split) == [msg("test\n\ntest")]


@every_chunking
def test_format_leading_space(split: Splitter) -> None:
    """WPT 20 format-leading-space: a tab is kept, 'data: ' is empty, CR ends a line."""
    data = message(b"data:\ttest\rdata: \ndata:test")
    assert events_of(data, split) == [msg("\ttest\n\ntest")]


@every_chunking
def test_format_newlines(split: Splitter) -> None:
    """WPT 21 format-newlines: CRLF line ends; the final CR and the helper's LF are one."""
    data = message(b"data:test\r\ndata\ndata:test\r\n\r", newline=False)
    assert data.endswith(b"\r\n\r\n")
    assert events_of(data, split) == [msg("test\n\ntest")]


@every_chunking
def test_format_null_character(split: Splitter) -> None:
    """WPT 22 format-null-character: data '\\x00', and no error."""
    assert events_of(message(b"data:\0\n\n"), split) == [msg("\0")]


@every_chunking
def test_format_utf_8(split: Splitter) -> None:
    """WPT 23 format-utf-8: decoded as UTF-8 (the charset=windows-1252 is the transport's)."""
    assert events_of(message(b"data:ok\xe2\x80\xa6"), split) == [msg("ok" + ELLIPSIS)]


# -- 24: event-data ---------------------------------------------------------------------

MESSAGE2_LOOP = [
    b"data:msg\ndata: msg\n\n",
    b":\n",
    b"falsefield:msg\n\n",
    b"falsefield:msg\nData:data\n\n",
    b"data\n\n",
    b"data:end\n\n",
]
"""One loop of resources/message2.py, one item per write."""


@every_chunking
def test_event_data(split: Splitter) -> None:
    """WPT 24 event-data: "msg\\nmsg", "", "end" per loop; the other blocks dispatch nothing."""
    returned, parser = feed_each(MESSAGE2_LOOP * 2, split)  # the connection stays open
    loop = [[msg("msg\nmsg")], [], [], [], [msg("")], [msg("end")]]
    assert returned == loop * 2
    assert parser.close() is False
