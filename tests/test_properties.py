"""Property tests of the parser and encoder (hypothesis).

* chunk invariance: any split of a stream gives what the whole stream gives;
* differential: the parser agrees with ``tests/reference.py`` (the standard's
  algorithm on the whole stream), after every ``feed``, with and without a seed
  and comments;
* robustness and limits: arbitrary bytes under small limits give events or
  ``EventStreamError``; the error comes from the ``feed`` that brings the byte
  crossing a limit, and nothing completed before it is lost; the same with lines
  of 16 KiB that arrive in pieces;
* the encoder: what ``encode_event`` / ``encode_comment`` write parses back.

Run with ``--hypothesis-show-statistics`` to see how often the limit tests meet
each kind of fault.
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING, Any, NamedTuple

import hypothesis
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import sseproto
from sseproto._parser import _pure_core, compiled
from tests._chunking import CHUNKINGS, Splitter, parse
from tests.reference import MAX_RETRY, Item, Result, interpret

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

SETTINGS = settings(max_examples=250, deadline=None)
BOM = b"\xef\xbb\xbf"


# -- strategies ---------------------------------------------------------------

#: Bytes that are not (or not only) valid UTF-8, BOMs, NUL, whitespace that is not
#: U+0020, and characters that other splitters take for line ends.
ODD_PIECES = [
    *(b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf"),
    *(BOM, b"\xef\xbb", b"\xef", b"\xff\xfe"),
    *(b"\0", b" ", b"  ", b"\t", b":", b"\x0b", b"\x0c", b"\xc2\x85", b"\xe2\x80\xa8"),
]
#: Text without line ends: ASCII, non-ASCII, astral; no lone surrogates.
line_text = st.text(
    alphabet=st.one_of(
        st.sampled_from("ab: \t\0é€😀\ufeff"),
        st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"),
    ),
    max_size=12,
)
values = st.lists(
    st.one_of(line_text.map(str.encode), st.sampled_from(ODD_PIECES)), max_size=4
).map(b"".join)
#: ``id`` values, often with a NUL (which makes the field ignored).
id_values = values | st.builds(lambda a, b: a + b"\0" + b, values, values)
#: ``retry`` values: empty, valid, too big, or not only ASCII digits.
retry_values = st.one_of(
    st.just(b""),
    st.integers(0, 2**70).map(lambda n: str(n).encode()),
    st.sampled_from(
        [
            *(b"0", b"007", b"18446744073709551615", b"18446744073709551616", b"0" * 30 + b"1"),
            *(b"+5", b" 7", b"7 ", b"1_000", b"1.5", b"-1", "\u0663".encode(), "²".encode()),
        ]
    ),
)
unknown_names = st.sampled_from(
    [b"Data", b"ID", b"data ", b" data", BOM + b"data", b"dat", b"x", b"\xff", "é".encode()]
)
#: What follows a field name: nothing, a colon, with or without whitespace.
separators = st.sampled_from([b"", b":", b":", b": ", b": ", b":  ", b":\t"])
line_ends = st.sampled_from([b"\n", b"\r", b"\r\n"])


def field(name: bytes, value: st.SearchStrategy[bytes] = values) -> st.SearchStrategy[bytes]:
    """A line of the named field, without its line end (an empty separator with a
    non-empty value makes a longer, unknown name)."""
    return st.builds(lambda sep, v: name + sep + v, separators, value)


lines = st.one_of(
    field(b"data"),
    field(b"data"),
    field(b"event"),
    field(b"id", id_values),
    field(b"retry", retry_values),
    unknown_names.flatmap(field),
    values.map(lambda v: b":" + v),  # a comment
    st.just(b""),  # blank lines dispatch
    st.just(b""),
)


@st.composite
def plausible_streams(draw: st.DrawFn) -> bytes:
    """A stream that looks like one: lines, mixed line ends, odd bytes, BOMs."""
    start = draw(st.sampled_from([b"", b"", BOM, BOM + BOM, b"\xef\xbb", b"\xef"]))
    body = b"".join(line + draw(line_ends) for line in draw(st.lists(lines, max_size=25)))
    unterminated = draw(st.one_of(st.just(b""), lines))
    return start + body + unterminated


streams = st.one_of(plausible_streams(), plausible_streams(), st.binary(max_size=200))


@st.composite
def chunked(draw: st.DrawFn, source: st.SearchStrategy[bytes] = streams) -> list[bytes]:
    """A stream cut at arbitrary points, empty chunks included; cuts right after a CR,
    inside a UTF-8 sequence (or BOM) or in the middle of a line are made likely."""
    stream = draw(source)
    positions = st.integers(0, len(stream))
    tricky = [i for i in range(1, len(stream)) if stream[i - 1] == 13 or stream[i] >> 6 == 2]
    tricky += [(m.start() + m.end()) // 2 for m in re.finditer(rb"[^\r\n]{2,}", stream)]
    if tricky:
        positions = st.sampled_from(tricky) | positions
    cuts = sorted(draw(st.lists(positions, max_size=20)))
    bounds = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


#: What a resumed stream starts from: a value an ``id`` line could have set.
seeds = st.one_of(st.just(""), line_text.filter(lambda s: "\0" not in s))
limits = st.integers(1, 64)


# -- running the parser -------------------------------------------------------


def as_items(out: Iterable[sseproto.ServerSentEvent | sseproto.Comment]) -> list[Item]:
    """The parser's output in the reference's terms."""
    return [
        (x.event, x.data, x.id) if isinstance(x, sseproto.ServerSentEvent) else x.text for x in out
    ]


def new_parser(**parser_args: Any) -> sseproto.EventStreamParser[Any]:
    return sseproto.EventStreamParser(**parser_args)


def run(chunks: Iterable[bytes], **parser_args: Any) -> Result:
    """Feed every chunk, then close; the parser's result in the reference's terms."""
    parser = new_parser(**parser_args)
    events = [item for chunk in chunks for item in as_items(parser.feed(chunk))]
    return Result(events, parser.last_event_id, parser.retry, parser.close())


class Run(NamedTuple):
    """How a parser with limits took a chunked stream."""

    #: Everything delivered: what ``feed`` returned, then the error's ``events``.
    delivered: list[Item]
    error: sseproto.EventStreamError | None
    #: The index of the chunk whose ``feed`` raised.
    failed_at: int | None


def run_with_limits(chunks: Sequence[bytes], max_line: int, max_event: int) -> Run:
    parser = new_parser(max_line_bytes=max_line, max_event_bytes=max_event)
    delivered: list[Item] = []
    fed = 0  # the chunks fed without an error
    try:
        for chunk in chunks:
            delivered += as_items(parser.feed(chunk))
            fed += 1
    except sseproto.EventStreamError as err:
        delivered += as_items(err.events)
        assert parser.close() is False
        with pytest.raises(sseproto.EventStreamError, match="failed earlier"):
            parser.feed(b"data: more\n\n")
        return Run(delivered, err, fed)
    parser.close()
    return Run(delivered, None, None)


class Line(NamedTuple):
    """A line of a stream, as the limits see it."""

    #: The index of its first byte (after the BOM) and of its line end
    #: (``len(stream)`` if it has none).
    start: int
    end: int
    #: The event's data bytes once this line is processed: each ``data`` value after
    #: the one space, plus one LF each, since the last blank line.
    data_size: int


def measure_lines(stream: bytes) -> Iterator[Line]:
    """Every line of the stream, the unterminated last one included."""
    pos = len(BOM) if stream.startswith(BOM) else 0
    data_size = 0
    while pos < len(stream):
        end = pos
        while end < len(stream) and stream[end] not in b"\r\n":
            end += 1
        name, _, value = stream[pos:end].partition(b":")
        if pos == end:
            data_size = 0  # a blank line dispatches
        elif name == b"data":
            data_size += len(value[1:] if value.startswith(b" ") else value) + 1
        yield Line(pos, end, data_size)
        pos = end + (2 if stream[end : end + 2] == b"\r\n" else 1)


class Fault(NamedTuple):
    #: The index of the byte whose arrival crosses the limit.
    position: int
    #: The name of the limit crossed.
    limit: str


def expected_fault(stream: bytes, max_line: int, max_event: int) -> Fault | None:
    """Where the documented limits must stop this stream, if anywhere.

    A line (after the BOM, without its line end, terminated or not) may not be
    longer than ``max_line``; the data of one event may not exceed ``max_event``,
    checked when the data line is complete. Up to two bytes that could still start a
    BOM are not known to be line bytes until the byte that settles it arrives (or
    never, if the stream ends first): a first line cannot fail before that byte.
    """
    if len(stream) < len(BOM) and BOM.startswith(stream):
        return None  # a BOM prefix at the end of the stream: never known to be a line
    settled = 0  # the index of the byte that tells whether the stream starts with a BOM
    while settled < len(BOM) - 1 and stream[settled] == BOM[settled]:
        settled += 1
    for line in measure_lines(stream):
        if line.end - line.start > max_line:
            return Fault(max(line.start + max_line, settled), "max_line_bytes")
        if line.end == len(stream):
            return None  # an unterminated line within the limit is never processed
        if line.data_size > max_event:
            return Fault(line.end, "max_event_bytes")
    return None


# -- the reference itself -----------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "events"),
    [
        (b"data: YHOO\ndata: +2\ndata: 10\n\n", [("message", "YHOO\n+2\n10", "")]),
        (
            b": test stream\n\ndata: first event\nid: 1\n\n"
            b"data:second event\nid\n\ndata:  third event\n\n",
            [
                ("message", "first event", "1"),
                ("message", "second event", ""),
                ("message", " third event", ""),
            ],
        ),
        (b"data\n\ndata\ndata\n\ndata:", [("message", "", ""), ("message", "\n", "")]),
        (b"data:test\r\n\r\ndata: test\r\r", [("message", "test", "")] * 2),
        (BOM + BOM + b"data: x\n\n" + BOM + b"data: y\n\n", []),
        (b"event: a\n\nid: 7\ndata\xed\xa0\x80\n\ndata: \xc3\n\n", [("message", "\ufffd", "7")]),
        (b"event: e\nid: 1\0\ndata: x\nid: 2\n\n", [("e", "x", "2")]),
    ],
)
def test_reference_follows_the_spec_examples(stream: bytes, events: list[Item]) -> None:
    assert interpret(stream).events == events


def test_reference_retry_last_event_id_and_end_of_stream() -> None:
    stream = b"retry: 5\nretry:\nretry: x\nretry: 18446744073709551616\nid: a\n\nid: b\ndata"
    assert interpret(stream) == Result([], "a", 5, discarded=True)
    assert interpret(b"data: x\nid: 1\r", last_event_id="s") == Result([], "s", None, True)
    assert interpret(b": c\n:  d\n", comments=True).events == ["c", " d"]


# -- chunk invariance and the reference ---------------------------------------


@SETTINGS
@given(chunked())
def test_chunking_changes_nothing(chunks: list[bytes]) -> None:
    assert run(chunks, comments=True) == run([b"".join(chunks)], comments=True)


@SETTINGS
@given(streams, seeds, st.booleans())
def test_whole_stream_matches_reference(stream: bytes, seed: str, comments: bool) -> None:
    expected = interpret(stream, last_event_id=seed, comments=comments)
    assert run([stream], last_event_id=seed, comments=comments) == expected


@SETTINGS
@given(chunked(), seeds, st.booleans())
def test_every_feed_matches_reference_on_the_prefix(
    chunks: list[bytes], seed: str, comments: bool
) -> None:
    """After each ``feed``, the parser has returned exactly the events the stream so
    far completes, and its ``last_event_id`` and ``retry`` are up to date."""
    parser = new_parser(last_event_id=seed, comments=comments)
    events: list[Item] = []
    prefix = b""
    for chunk in chunks:
        events += as_items(parser.feed(chunk))
        prefix += chunk
        expected = interpret(prefix, last_event_id=seed, comments=comments)
        assert (events, parser.last_event_id, parser.retry) == expected[:3]
    assert parser.close() == interpret(prefix).discarded


# -- robustness and limits ----------------------------------------------------

raw_or_plausible_chunks = st.one_of(chunked(), st.lists(st.binary(max_size=64), max_size=10))


@SETTINGS
@given(raw_or_plausible_chunks, limits, limits)
def test_small_limits_give_events_or_stream_error(
    chunks: list[bytes], max_line: int, max_event: int
) -> None:
    """Nothing but events or EventStreamError, and nothing complete is lost: what
    came out before the error is a prefix of the stream's events."""
    delivered, error, _ = run_with_limits(chunks, max_line, max_event)
    everything = interpret(b"".join(chunks)).events
    if error is None:
        assert delivered == everything
    else:
        assert delivered == everything[: len(delivered)]


#: A chunked stream, ``max_line_bytes`` and ``max_event_bytes``.
Case = tuple[list[bytes], int, int]
#: A limit that no generated stream reaches.
HUGE = 2**20


@st.composite
def limit_cases(draw: st.DrawFn, source: st.SearchStrategy[bytes] = streams) -> Case:
    """A chunked stream with limits at, just under or just over the length of one of
    its lines or the data size of one of its events (the longest and the largest
    made likely), or small; often only one of the two limits is in play."""
    chunks = draw(chunked(source))
    lines = list(measure_lines(b"".join(chunks)))

    def around(sizes: list[int]) -> int:
        if not sizes:
            return draw(limits)
        size = draw(st.one_of(st.just(max(sizes)), st.sampled_from(sizes)))
        near = sorted({max(1, n) for n in (size - 1, size, size + 1)})
        return draw(st.one_of(st.sampled_from(near), limits))

    in_play = draw(st.sampled_from(["event", "both", "line"]))
    max_line, max_event = HUGE, HUGE
    if in_play != "event":
        max_line = around([line.end - line.start for line in lines])
    if in_play != "line":
        max_event = around([line.data_size for line in lines if line.data_size])
    return chunks, max_line, max_event


@SETTINGS
@given(limit_cases())
def test_limits_do_not_depend_on_chunking(case: Case) -> None:
    def outcome(result: Run) -> tuple[list[Item], str | None]:
        return result.delivered, None if result.error is None else _limit_named(result.error)

    chunks, max_line, max_event = case
    whole = run_with_limits([b"".join(chunks)], max_line, max_event)
    assert outcome(run_with_limits(chunks, max_line, max_event)) == outcome(whole)


@SETTINGS
@given(limit_cases())
@example(case=([b"\xef\xbb"], 1, 1))  # a BOM prefix that the stream never settles
@example(case=([b"\xef", b"\xbb", b"X"], 1, 1))  # settled, so failed, by the third byte
def test_limits_stop_the_stream_where_documented(case: Case) -> None:
    check_limits(*case)


def check_limits(chunks: list[bytes], max_line: int, max_event: int) -> None:
    """The error comes from the ``feed`` that brings the byte crossing a limit,
    names that limit, and delivers every event completed before that byte; without
    a fault, the parser gives what the reference gives."""
    stream = b"".join(chunks)
    fault = expected_fault(stream, max_line, max_event)
    delivered, error, failed_at = run_with_limits(chunks, max_line, max_event)
    hypothesis.event("fault", fault.limit if fault else "none")
    hypothesis.event("events delivered", min(len(delivered), 2))
    if fault is None:
        assert error is None
        assert delivered == interpret(stream).events
        return
    assert error is not None, f"expected {fault}"
    assert failed_at is not None
    assert _limit_named(error) == fault.limit
    fed_before = sum(map(len, chunks[:failed_at]))
    assert fed_before <= fault.position < fed_before + len(chunks[failed_at])
    assert delivered == interpret(stream[: fault.position]).events


def _limit_named(error: sseproto.EventStreamError) -> str:
    names: set[str] = set(re.findall(r"max_\w+_bytes", str(error)))
    (name,) = names
    return name


# -- long lines ------------------------------------------------------------------

LONG = 16 * 1024


@st.composite
def long_line_streams(draw: st.DrawFn) -> bytes:
    """A plausible stream with one line of about 16 KiB in the middle (a parser may
    well take another path for a line that arrives in many pieces)."""
    start = draw(st.sampled_from([b"data: "] * 5 + [b"data:", b"data:  ", b": ", b"id: ", b"x: "]))
    piece = draw(st.sampled_from([b"x", "é".encode(), b"\0", b"\xff"]))
    body = piece * (draw(st.integers(LONG - 8, LONG + 64)) // len(piece))
    before = draw(plausible_streams()) + draw(st.sampled_from([b"\n", b"\n\n", b"\r\n"]))
    after = draw(st.sampled_from([b"", b"\n", b"\r\n"])) + draw(plausible_streams())
    return before + start + body + draw(line_ends) + after


long_settings = settings(SETTINGS, max_examples=100)


@long_settings
@given(chunked(long_line_streams()))
def test_long_lines_match_reference(chunks: list[bytes]) -> None:
    stream = b"".join(chunks)
    assert run(chunks, comments=True) == interpret(stream, comments=True)


@long_settings
@given(limit_cases(long_line_streams()))
def test_long_lines_stop_where_documented(case: Case) -> None:
    check_limits(*case)


# -- the encoder ---------------------------------------------------------------

no_surrogates = st.characters(exclude_categories=["Cs"])
#: Any text, with the characters that matter to the format made likely.
any_text = st.text(alphabet=st.one_of(no_surrogates, st.sampled_from("\r\n\0 :")))
event_types = st.none() | st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n")
)
event_ids = st.none() | st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\0\r\n")
)
#: Every reconnection time a client accepts (the encoder refuses the others).
retries = st.none() | st.integers(0, MAX_RETRY)


def one_lf(text: str) -> str:
    """``text`` with every line end as the parser reports it: LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


@SETTINGS
@given(any_text, event_types, event_ids, retries, st.sampled_from(CHUNKINGS))
@example("", None, None, 0, CHUNKINGS[0])
@example("x", "", "", MAX_RETRY, CHUNKINGS[0])
def test_encode_event_round_trip(
    data: str, event: str | None, id: str | None, retry: int | None, split: Splitter
) -> None:
    encoded = sseproto.encode_event(data, event=event, id=id, retry=retry)
    events, parser = parse(encoded, split)
    assert events == [sseproto.ServerSentEvent(event or "message", one_lf(data), id or "")]
    assert parser.retry == retry
    assert parser.last_event_id == (id or "")


class EventArgs(NamedTuple):
    data: str | None
    event: str | None
    id: str | None
    retry: int | None


pieces = st.lists(
    st.one_of(
        st.builds(EventArgs, st.none() | any_text, event_types, event_ids, retries),
        any_text,  # a comment
    ),
    max_size=8,
)


@SETTINGS
@given(pieces, st.sampled_from(CHUNKINGS))
def test_encoded_sequence_round_trip(pieces: list[EventArgs | str], split: Splitter) -> None:
    """Events and comments come back in order; an event without an ``id`` reports
    the last one sent; ``data=None`` sets ``id`` and ``retry`` but dispatches nothing."""
    stream = b""
    expected: list[Item] = []
    last_id, retry = "", None
    for piece in pieces:
        if isinstance(piece, str):
            stream += sseproto.encode_comment(piece)
            expected += one_lf(piece).split("\n")
            continue
        data, event, id, piece_retry = piece
        stream += sseproto.encode_event(data, event=event, id=id, retry=piece_retry)
        last_id = last_id if id is None else id
        retry = retry if piece_retry is None else piece_retry
        if data is not None:
            expected.append((event or "message", one_lf(data), last_id))
    events, parser = parse(stream, split, comments=True)
    assert as_items(events) == expected
    assert (parser.last_event_id, parser.retry) == (last_id, retry)


# -- the compiled core and the pure-Python one --------------------------------


@pytest.mark.skipif(not compiled, reason="the parser core is not compiled in this install")
@settings(max_examples=500, deadline=None)
@given(chunks=chunked())
def test_compiled_core_agrees_with_pure_python(chunks: list[bytes]) -> None:
    """mypyc must not change a thing: same events, state and close() on any input."""
    assert str(_pure_core().__file__).endswith(".py")
    pure = _pure_core().ParserCore(comments=True)
    fast = sseproto.EventStreamParser(comments=True)
    assert [pure.feed(c) for c in chunks] == [fast.feed(c) for c in chunks]
    assert (pure.last_event_id, pure.retry) == (fast.last_event_id, fast.retry)
    assert pure.close() == fast.close()
