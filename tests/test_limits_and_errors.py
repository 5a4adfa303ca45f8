"""Limits, errors and the public surface.

``max_line_bytes`` and ``max_event_bytes`` bound a stream's memory; crossing one
raises ``EventStreamError`` from the ``feed`` that crossed it, with the events
completed before the fault, and the parser is dead afterwards. Then: argument
checking, the exception tree, ``__all__`` and ``ServerSentEvent``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

import sseproto
from sseproto import EventStreamError, EventStreamParser, ServerSentEvent
from tests._chunking import Splitter, parse
from tests._helpers import EOLS, every_chunking

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

#: A value of a type that no argument takes (typed Any to get it past mypy).
WRONG_TYPE: Any = b"x"


class Failure(NamedTuple):
    """How a parser stopped."""

    #: Everything that came out: what ``feed`` returned, then the error's ``events``.
    delivered: list[Any]
    error: EventStreamError
    #: The positions in the stream of the chunk whose ``feed`` raised.
    chunk: range


def feed_until_error(parser: EventStreamParser[Any], chunks: Iterable[bytes]) -> Failure:
    delivered: list[Any] = []
    fed = 0
    try:
        for chunk in chunks:
            delivered += parser.feed(chunk)
            fed += len(chunk)
    except EventStreamError as err:
        return Failure([*delivered, *err.events], err, range(fed, fed + len(chunk)))
    pytest.fail("the parser accepted the whole stream")


def assert_dead(parser: EventStreamParser[Any]) -> None:
    """A failed parser keeps nothing and refuses everything, saying why."""
    assert "dead" in repr(parser)
    assert "buffered=0" in repr(parser)
    for chunk in (b"data: x\n\n", b""):
        with pytest.raises(EventStreamError, match="failed earlier"):
            parser.feed(chunk)
    assert parser.close() is False


# -- max_line_bytes -----------------------------------------------------------


def test_endless_line_fails_at_the_feed_that_crosses_the_limit() -> None:
    """A server that never sends a line end: 1 KiB at a time, limit 4 KiB."""
    parser = EventStreamParser(max_line_bytes=4096)
    for _ in range(4):
        assert parser.feed(b"x" * 1024) == []  # 4096 bytes: exactly the limit
    with pytest.raises(EventStreamError, match="max_line_bytes=4096") as info:
        parser.feed(b"x" * 1024)
    assert info.value.events == []
    assert_dead(parser)


@every_chunking
def test_endless_line_fails_at_the_byte_past_the_limit(split: Splitter) -> None:
    stream = b"data: before\n\n" + b"data: " + b"x" * 10 * 1024
    parser = EventStreamParser(max_line_bytes=4096)
    failure = feed_until_error(parser, split(stream))
    assert len(b"data: before\n\n") + 4096 in failure.chunk  # the line's 4097th byte
    assert failure.delivered == [ServerSentEvent(data="before")]
    assert "max_line_bytes=4096" in str(failure.error)
    assert_dead(parser)


@every_chunking
def test_complete_line_over_the_limit_fails(split: Splitter) -> None:
    stream = b"data: a\n\n" + b"data: " + b"y" * 100 + b"\n\ndata: after\n\n"
    parser = EventStreamParser(max_line_bytes=50)
    failure = feed_until_error(parser, split(stream))
    assert len(b"data: a\n\n") + 50 in failure.chunk
    assert failure.delivered == [ServerSentEvent(data="a")]
    assert "max_line_bytes=50" in str(failure.error)
    assert_dead(parser)


@every_chunking
@pytest.mark.parametrize("eol", EOLS)
def test_line_of_exactly_the_limit_is_accepted(split: Splitter, eol: bytes) -> None:
    line = b"data: " + b"z" * 44  # 50 bytes; the line end does not count
    events, parser = parse(line + eol + eol, split, close=False, max_line_bytes=50)
    assert events == [ServerSentEvent(data="z" * 44)]
    assert parser.close() is False


@every_chunking
def test_unterminated_line_of_exactly_the_limit_is_accepted(split: Splitter) -> None:
    events, parser = parse(b"data: ok\n\n" + b"w" * 50, split, close=False, max_line_bytes=50)
    assert events == [ServerSentEvent(data="ok")]
    assert parser.close() is True  # the unterminated line is discarded


@every_chunking
def test_bom_does_not_count_towards_the_first_line(split: Splitter) -> None:
    events, _ = parse(b"\xef\xbb\xbfdata: 12\n\n", split, max_line_bytes=8)
    assert events == [ServerSentEvent(data="12")]


# -- max_event_bytes ----------------------------------------------------------

TEN_LINES = b"data: 0123456789\n" * 10  # 10 values of 10 bytes, + 1 LF each: 110


@every_chunking
def test_event_of_exactly_the_limit_is_accepted(split: Splitter) -> None:
    stream = TEN_LINES + b"\n" + TEN_LINES + b"\n"  # the count restarts at dispatch
    events, _ = parse(stream, split, max_event_bytes=110)
    assert events == [ServerSentEvent(data="\n".join(["0123456789"] * 10))] * 2


@every_chunking
def test_event_over_the_limit_fails_and_keeps_earlier_events(split: Splitter) -> None:
    stream = b"data: a\n\ndata: b\r\r" + TEN_LINES + b"\n"
    parser = EventStreamParser(max_event_bytes=109)
    failure = feed_until_error(parser, split(stream))
    assert len(stream) - 2 in failure.chunk  # the LF that completes the tenth line
    assert failure.delivered == [ServerSentEvent(data="a"), ServerSentEvent(data="b")]
    assert "max_event_bytes=109" in str(failure.error)
    assert_dead(parser)


LONG_VALUE = "é" * 10_000  # 20,000 bytes: a line that arrives in many pieces
LONG_EVENT = b"data: a\ndata: " + LONG_VALUE.encode() + b"\n"  # data: 2 + 20,001 bytes
LONG_LINE = len(LONG_EVENT) - len(b"data: a\n") - 1  # 20,006 bytes without its LF


@every_chunking
@pytest.mark.parametrize("surplus", [0, 1])
def test_long_line_in_pieces_at_the_limits_is_accepted(split: Splitter, surplus: int) -> None:
    stream = b"data: x\n\n" + LONG_EVENT + b"\n"
    limits: dict[str, Any] = {
        "max_line_bytes": LONG_LINE + surplus,
        "max_event_bytes": 20_003 + surplus,
    }
    events, _ = parse(stream, split, **limits)
    assert events == [ServerSentEvent(data="x"), ServerSentEvent(data="a\n" + LONG_VALUE)]


@every_chunking
@pytest.mark.parametrize(
    "limits",
    [{"max_line_bytes": LONG_LINE - 1}, {"max_event_bytes": 20_002}],
    ids=["line", "event"],
)
def test_long_line_in_pieces_over_the_limits_fails(split: Splitter, limits: dict[str, Any]) -> None:
    parser = EventStreamParser(**limits)
    failure = feed_until_error(parser, split(b"data: x\n\n" + LONG_EVENT + b"\n"))
    assert failure.delivered == [ServerSentEvent(data="x")]
    assert next(iter(limits)) in str(failure.error)
    assert_dead(parser)


def test_events_completed_in_the_failing_feed_are_in_the_error() -> None:
    parser = EventStreamParser(comments=True, max_event_bytes=4)
    with pytest.raises(EventStreamError) as info:
        parser.feed(b"data: a\n\n: hi\ndata: b\n\ndata: 12345\n\ndata: never\n\n")
    assert info.value.events == [
        ServerSentEvent(data="a"),
        sseproto.Comment("hi"),
        ServerSentEvent(data="b"),
    ]


@every_chunking
def test_event_bytes_count_values_after_the_one_space(split: Splitter) -> None:
    events, _ = parse(b"data:  x\n\n", split, max_event_bytes=3)  # " x" + LF
    assert events == [ServerSentEvent(data=" x")]
    with pytest.raises(EventStreamError, match="max_event_bytes=3"):
        parse(b"data:   x\n\n", split, max_event_bytes=3)


@every_chunking
def test_only_data_counts_towards_max_event_bytes(split: Splitter) -> None:
    stream = b"event: " + b"e" * 50 + b"\nid: " + b"i" * 50 + b"\n: " + b"c" * 50 + b"\ndata\n\n"
    events, _ = parse(stream, split, max_event_bytes=1)
    assert events == [ServerSentEvent(event="e" * 50, data="", id="i" * 50)]


# -- the parser's life cycle and arguments ------------------------------------


def test_close_after_error_is_a_noop() -> None:
    parser = EventStreamParser(max_line_bytes=1)
    with pytest.raises(EventStreamError):
        parser.feed(b"data: half an event\n")
    assert parser.close() is False
    assert parser.close() is False


def test_feed_after_close_raises() -> None:
    parser = EventStreamParser()
    parser.close()
    with pytest.raises(EventStreamError, match="close"):
        parser.feed(b"data: x\n\n")


@pytest.mark.parametrize("limit", ["max_line_bytes", "max_event_bytes"])
@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_limits_refused(limit: str, value: int) -> None:
    args: dict[str, Any] = {limit: value}
    with pytest.raises(ValueError, match=limit):
        EventStreamParser(**args)


@pytest.mark.parametrize("limit", ["max_line_bytes", "max_event_bytes"])
@pytest.mark.parametrize("value", [True, 1.5, "100", None])
def test_limits_of_the_wrong_type_refused(limit: str, value: object) -> None:
    args: dict[str, Any] = {limit: value}
    with pytest.raises((TypeError, ValueError), match=limit):
        EventStreamParser(**args)


@pytest.mark.parametrize("seed", ["a\0", "a\r", "a\nb"])
def test_last_event_id_that_no_stream_can_set_refused(seed: str) -> None:
    with pytest.raises(ValueError, match="last_event_id"):
        EventStreamParser(last_event_id=seed)


def test_last_event_id_must_be_a_str() -> None:
    with pytest.raises(TypeError, match="last_event_id"):
        EventStreamParser(last_event_id=WRONG_TYPE)


@pytest.mark.parametrize("chunk", ["data: x\n\n", 1, None, [10]], ids=repr)
def test_feed_takes_bytes_only(chunk: Any) -> None:
    parser = EventStreamParser()
    with pytest.raises(TypeError, match="bytes"):
        parser.feed(chunk)


@every_chunking
@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_bytearray_and_memoryview_accepted(split: Splitter, kind: Any) -> None:
    parser = EventStreamParser()
    events = [ev for chunk in split(b"data: \xc3\xa9\r\n\r\n") for ev in parser.feed(kind(chunk))]
    assert events == [ServerSentEvent(data="é")]


# -- exceptions and exports ---------------------------------------------------


def test_event_stream_error_is_an_sseproto_error() -> None:
    assert issubclass(EventStreamError, sseproto.SSEProtoError)
    assert issubclass(sseproto.SSEProtoError, Exception)
    assert EventStreamError("message").events == []


def test_every_public_name_exported_once() -> None:
    names = sseproto.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(sseproto, name), name
    for module in (
        sseproto._parser,
        sseproto._events,
        sseproto._encoder,
        sseproto._errors,
        sseproto._eventsource,
        sseproto.tasks,
    ):
        for name in module.__all__:
            assert name in names, f"{module.__name__}.{name} not re-exported"
            assert getattr(sseproto, name) is getattr(module, name)


def test_star_import_gives_the_public_names() -> None:
    namespace: dict[str, Any] = {}
    exec("from sseproto import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(sseproto.__all__)


# -- ServerSentEvent -----------------------------------------------------------


def test_server_sent_event_defaults() -> None:
    assert ServerSentEvent() == ServerSentEvent(event="message", data="", id="")
    ev = ServerSentEvent()
    assert (ev.event, ev.data, ev.id) == ("message", "", "")


@pytest.mark.parametrize("field", ["event", "data", "id"])
def test_server_sent_event_is_immutable(field: str) -> None:
    ev = ServerSentEvent(data="x")
    # A frozen dataclass raises FrozenInstanceError, a named tuple AttributeError:
    # the former is a subclass of the latter.
    with pytest.raises(AttributeError):
        setattr(ev, field, "y")
    assert ev == ServerSentEvent(data="x")


@pytest.mark.parametrize(
    ("derive", "error"),
    [
        pytest.param(lambda: ServerSentEvent()._replace(id="a\nb"), ValueError, id="replace-id"),
        pytest.param(lambda: ServerSentEvent()._replace(event="a\r"), ValueError, id="replace-ev"),
        pytest.param(
            lambda: ServerSentEvent()._replace(data=WRONG_TYPE), TypeError, id="replace-data"
        ),
        pytest.param(lambda: ServerSentEvent._make(["message", "", "\0"]), ValueError, id="make"),
    ],
)
def test_server_sent_event_derived_events_validate_too(
    derive: Callable[[], object], error: type[Exception]
) -> None:
    """The named tuple's other constructors check what the constructor checks: an
    event only ever holds what a stream can carry."""
    with pytest.raises(error):
        derive()


@pytest.mark.parametrize("field", ["event", "data", "id"])
@pytest.mark.parametrize("value", [b"x", 1, None], ids=repr)
def test_server_sent_event_fields_must_be_str(field: str, value: object) -> None:
    args: dict[str, Any] = {field: value}
    with pytest.raises(TypeError, match=field):
        ServerSentEvent(**args)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"event": "a\rb"}, "event"),
        ({"event": "a\nb"}, "event"),
        ({"id": "a\0"}, "id"),
        ({"id": "a\r"}, "id"),
        ({"id": "a\n"}, "id"),
    ],
)
def test_server_sent_event_refuses_what_no_stream_carries(args: dict[str, str], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ServerSentEvent(**args)


def test_server_sent_event_data_may_hold_anything() -> None:
    assert ServerSentEvent(data="a\r\nb\0").data == "a\r\nb\0"


def test_parsed_events_equal_and_hash_like_constructed_ones() -> None:
    (parsed,) = EventStreamParser().feed(b"event: e\nid: 1\ndata: x\n\n")
    built = ServerSentEvent(event="e", data="x", id="1")
    assert parsed == built
    assert hash(parsed) == hash(built)
    assert repr(parsed) == repr(built)


def test_json_decodes_data() -> None:
    ev = ServerSentEvent(event="progress", data='{"progress": 0.5,\n"steps": [1, 2]}')
    assert ev.json() == {"progress": 0.5, "steps": [1, 2]}
    with pytest.raises(json.JSONDecodeError):
        ServerSentEvent(data="not json").json()
