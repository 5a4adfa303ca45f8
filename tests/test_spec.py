"""The parsing rules of the WHATWG HTML standard, "Server-sent events" (section 9.2:
the event stream format, and 9.2.6 "Interpreting an event stream"), one test (or small
group) per rule.

The rule labels are this suite's own, and the section comments below name each group:
A the wire format, B1-B12 decoding, lines, fields and dispatch, D the subtle points
that parsers get wrong. C (the EventSource object: connection, reconnection) belongs
to the transport (tests/test_eventsource.py): nothing in it applies to the parser. Its
parser-facing inputs are tested here under their own rules: the reconnection time is
``retry`` (B8.4), the ``Last-Event-ID`` a reconnection sends is ``last_event_id``
(B8.3, D1, D2). A1 (the MIME type) is a transport check as well. The last group tests
the parser's own contract (docstrings).

Every test runs under every chunking of ``_chunking.CHUNKINGS``.
"""

from __future__ import annotations

import pytest

import sseproto
from sseproto import Comment, EventStreamParser
from tests._chunking import Splitter, parse
from tests._helpers import EOLS, events_of, every_chunking, feed, feed_each, field_forms, msg

BOM = b"\xef\xbb\xbf"
ELLIPSIS = "\u2026"  # E2 80 A6


# -- A. Wire format -----------------------------------------------------------------


@every_chunking
def test_a2_stream_built_from_the_grammar_parses_as_authored(split: Splitter) -> None:
    """A2: bom, comment, fields with and without colon or space, all end-of-line forms."""
    data = BOM + b": hi\r\nevent: add\rdata: 1\ndata\r\nid: 7\r\r\ndata:x\n\n"
    assert events_of(data, split) == [msg("1\n", id="7", event="add"), msg("x", id="7")]


@every_chunking
def test_a3_stream_is_always_utf8(split: Splitter) -> None:
    """A3: E2 80 A6 is U+2026 and a Latin-1 byte is U+FFFD, never another encoding."""
    data = b"data:\xe2\x80\xa6\n\ndata:caf\xe9\n\n"
    assert events_of(data, split) == [msg(ELLIPSIS), msg("caf\ufffd")]


@every_chunking
@pytest.mark.parametrize("eol", EOLS)
def test_a4_lines_separated_by_crlf_lf_or_cr(split: Splitter, eol: bytes) -> None:
    """A4: CRLF, LF and CR each separate lines, so each can end the blank line too."""
    data = b"data:a" + eol + b"data:b" + eol + eol + b"event:e" + eol + b"data:c" + eol + eol
    assert events_of(data, split) == [msg("a\nb"), msg("c", event="e")]


@every_chunking
def test_a4_line_ends_may_be_mixed(split: Splitter) -> None:
    """A4: one stream may mix CRLF, CR and LF."""
    data = b"data:a\r\ndata:b\rdata:c\n\r\ndata:d\n\r"
    assert events_of(data, split) == [msg("a\nb\nc"), msg("d")]


# -- B1. Decoding -----------------------------------------------------------------------

B1_CASES = [
    pytest.param(b"\xef\xbbd", "\ufffdd", id="EF_BB_d"),
    pytest.param(b"\xed\xa0\x80", "\ufffd" * 3, id="ED_A0_80"),
    pytest.param(b"\xf4\x90\x80\x80", "\ufffd" * 4, id="F4_90_80_80"),
    pytest.param(b"\xc0\xaf", "\ufffd" * 2, id="C0_AF"),
    pytest.param(b"\x80x\xff", "\ufffdx\ufffd", id="lone_bytes"),
    pytest.param(b"\xe2\x82\xac\xf0\x9f\x98\x80", "\u20ac\U0001f600", id="valid"),
]


@every_chunking
@pytest.mark.parametrize(("raw", "text"), B1_CASES)
def test_b1_invalid_utf8_decodes_to_replacement_characters(
    split: Splitter, raw: bytes, text: str
) -> None:
    """B1: UTF-8 decode with replacement, maximal subparts, in data, event type and id."""
    data = b"event:" + raw + b"\nid:" + raw + b"\ndata:" + raw + b"\n\n"
    assert events_of(data, split) == [msg(text, id=text, event=text)]


@every_chunking
@pytest.mark.parametrize("eol", EOLS)
def test_b1_truncated_sequence_before_line_end_still_ends_the_line(
    split: Splitter, eol: bytes
) -> None:
    """B1: the byte that breaks a sequence is processed on its own: LF or CR ends the line."""
    data = b"data:\xe2\x82" + eol + b"id:\xf0\x9f\x98" + eol + b"data:x" + eol + eol
    assert events_of(data, split) == [msg("\ufffd\nx", id="\ufffd")]


# -- B2. BOM ----------------------------------------------------------------------------


@every_chunking
def test_b2_leading_bom_stripped(split: Splitter) -> None:
    """B2: EF BB BF at the very start of the stream is removed."""
    assert events_of(BOM + b"data:1\n\n", split) == [msg("1")]


@every_chunking
def test_b2_bom_stripped_only_once(split: Splitter) -> None:
    """B2: a second BOM is U+FEFF, so the first field name is '\\ufeffdata', unknown."""
    assert events_of(BOM + BOM + b"data:1\n\ndata:2\n\n", split) == [msg("2")]


@every_chunking
def test_b2_bom_later_in_the_stream_is_ordinary(split: Splitter) -> None:
    """B2: a BOM after the start is an ordinary character (unknown name, or kept in data)."""
    data = b"data:1\n\n" + BOM + b"data:2\n\ndata:" + BOM + b"3\n\n"
    assert events_of(data, split) == [msg("1"), msg("\ufeff3")]


@every_chunking
@pytest.mark.parametrize("cut", [1, 2], ids=["EF|BBBF", "EFBB|BF"])
def test_b2_bom_split_across_chunks_stripped(split: Splitter, cut: int) -> None:
    """B2: a BOM split across network chunks is still stripped."""
    returned, _ = feed_each([BOM[:cut], BOM[cut:] + b"data:1\n\n"], split)
    assert returned == [[], [msg("1")]]


@every_chunking
def test_b2_empty_first_chunk_does_not_use_up_the_bom_check(split: Splitter) -> None:
    """B2: feed(b"") first, then a BOM: the BOM is still at the start and is stripped."""
    returned, _ = feed_each([b"", b"", BOM + b"data:1\n\n"], split)
    assert returned == [[], [], [msg("1")]]


@every_chunking
def test_b2_partial_bom_is_not_stripped(split: Splitter) -> None:
    """B2/B1: EF BB then 'd' is U+FFFD + 'data', an unknown field, not a BOM."""
    assert events_of(b"\xef\xbbdata:1\n\ndata:2\n\n", split) == [msg("2")]


@every_chunking
@pytest.mark.parametrize("bom", [b"\xff\xfe", b"\xfe\xff"], ids=["FF_FE", "FE_FF"])
def test_b2_utf16_bom_not_recognised(split: Splitter, bom: bytes) -> None:
    """B2: FF FE / FE FF decode to U+FFFD U+FFFD, so the first field name is unknown."""
    assert events_of(bom + b"data:1\n\ndata:2\n\n", split) == [msg("2")]


# -- B3. Lines --------------------------------------------------------------------------


@every_chunking
def test_b3_crlf_pair_is_one_line_end(split: Splitter) -> None:
    """B3: CRLF is one line end (no blank line between the two data lines)."""
    assert events_of(b"data:a\r\ndata:b\r\n\r\n", split) == [msg("a\nb")]


@every_chunking
def test_b3_lf_alone_ends_a_line(split: Splitter) -> None:
    """B3: an LF not preceded by CR ends a line."""
    assert events_of(b"data:a\ndata:b\n\n", split) == [msg("a\nb")]


@every_chunking
def test_b3_cr_alone_ends_a_line(split: Splitter) -> None:
    """B3: a CR not followed by LF ends a line."""
    assert events_of(b"data:a\rdata:b\r\r", split) == [msg("a\nb")]


@every_chunking
def test_b3_cr_cr_lf_lf_is_three_line_ends(split: Splitter) -> None:
    """B3: \\r\\r\\n\\n is CR, CRLF, LF: CR then CRLF already make a blank line."""
    assert events_of(b"data:a\r\r\ndata:b\n\n", split) == [msg("a"), msg("b")]
    assert events_of(b"data:a\r\r\n\ndata:b\n\n", split) == [msg("a"), msg("b")]
    assert events_of(b"event:t\r\r\n\ndata:b\n\n", split) == [msg("b")]


@every_chunking
def test_b3_lf_cr_is_two_line_ends(split: Splitter) -> None:
    """B3: \\n\\r is two line ends, so it makes a blank line and dispatches."""
    assert events_of(b"data:a\n\rdata:b\n\n", split) == [msg("a"), msg("b")]


@every_chunking
def test_b3_crlf_split_across_chunks_is_one_line_end(split: Splitter) -> None:
    """B3: CR at the end of one chunk and LF at the start of the next end one line, not two."""
    returned, _ = feed_each([b"data:a\r", b"\ndata:b\r", b"\n\r", b"\ndata:c\n\n"], split)
    assert returned == [[], [], [msg("a\nb")], [msg("c")]]


@every_chunking
def test_b3_cr_at_chunk_end_followed_by_other_text_ends_the_line(split: Splitter) -> None:
    """B3: a CR that ends a chunk and is followed by anything but LF is a complete line end."""
    returned, _ = feed_each([b"data:a\r", b"data:b\r", b"\r", b"data:c\r", b"\r"], split)
    assert returned == [[], [], [msg("a\nb")], [], [msg("c")]]


@every_chunking
def test_b3_cr_as_last_byte_of_the_stream_ends_the_line(split: Splitter) -> None:
    """B3 (sseproto): a CR that is the very last character of the stream is a line end."""
    events, parser = parse(b"data:a\n\r", split, close=False)
    assert events == [msg("a")]
    assert parser.close() is False


@every_chunking
@pytest.mark.parametrize("eol", EOLS)
@pytest.mark.parametrize(
    "char",
    ["\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"],
    ids=["VT", "FF", "1C", "1D", "1E", "U+0085", "U+2028", "U+2029"],
)
def test_b3_only_cr_and_lf_end_lines(split: Splitter, char: str, eol: bytes) -> None:
    """B3: VT, FF, U+001C-U+001E, U+0085, U+2028, U+2029 are ordinary characters."""
    c = char.encode()
    data = b"event:x" + c + b"y\ndata:a" + c + b"b\ndata" + c + b":z\n\n"
    data = data.replace(b"\n", eol)
    assert events_of(data, split) == [msg(f"a{char}b", event=f"x{char}y")]


# -- B4-B7. State and lines ---------------------------------------------------------------


@every_chunking
def test_b4_buffers_start_empty(split: Splitter) -> None:
    """B4: data, event type and last event ID buffers all start as the empty string."""
    events, parser = parse(b"data:x\n\n", split)
    assert events == [msg("x", id="", event="message")]
    assert parser.last_event_id == ""
    assert EventStreamParser().last_event_id == ""


@every_chunking
@field_forms
def test_b5_empty_line_dispatches(split: Splitter, colon: bytes) -> None:
    """B5: an empty line dispatches; before it, nothing is returned."""
    returned, _ = feed_each([b"data:x\n".replace(b":", colon), b"\n"], split)
    assert returned == [[], [msg("x")]]


@every_chunking
@field_forms
def test_b6_comment_lines_are_ignored_and_do_not_end_the_event(
    split: Splitter, colon: bytes
) -> None:
    """B6: ':', ': x' and ':data: y' are comments; they touch no buffer."""
    data = b"event:t\ndata:a\n:\n: x\n:data: y\nid:1\n:id:2\ndata:b\n\n".replace(b":", colon)
    assert events_of(data, split) == [msg("a\nb", id="1", event="t")]


B7_CASES = [
    pytest.param(b"data:a:b", "a:b", id="first_colon_only"),
    pytest.param(b"data: x", "x", id="one_space_removed"),
    pytest.param(b"data:  x", " x", id="only_one_space"),
    pytest.param(b"data:\tx", "\tx", id="tab_kept"),
    pytest.param(b"data:x  ", "x  ", id="end_not_trimmed"),
    pytest.param(b"data: ", "", id="single_space_is_empty"),
    pytest.param(b"data::", ":", id="colon_value"),
]


@every_chunking
@pytest.mark.parametrize(("line", "value"), B7_CASES)
def test_b7_name_before_first_colon_value_after_minus_one_space(
    split: Splitter, line: bytes, value: str
) -> None:
    """B7: name is before the first colon; value after it, minus exactly one leading U+0020."""
    assert events_of(line + b"\n\n", split) == [msg(value)]


@every_chunking
def test_b7a_line_without_colon_is_a_name_with_empty_value(split: Splitter) -> None:
    """B7a: 'data' appends an empty line, 'event' sets the empty (default) type."""
    data = b"data\n\nevent:t\nevent\ndata\ndata\n\n"
    assert events_of(data, split) == [msg(""), msg("\n")]


@every_chunking
@field_forms
def test_b7b_end_of_stream_discards_the_undispatched_event(split: Splitter, colon: bytes) -> None:
    """B7b: an event whose blank line never arrived is not dispatched; close() says so."""
    events, parser = parse(b"data:a\n\ndata:b\n".replace(b":", colon), split, close=False)
    assert events == [msg("a")]
    assert parser.close() is True


@every_chunking
@field_forms
def test_b7b_final_unterminated_line_is_never_processed(split: Splitter, colon: bytes) -> None:
    """B7b: a last line without line end is dropped: its retry/id never take effect."""
    events, parser = parse(b"data:a\n\nretry:500".replace(b":", colon), split)
    assert (events, parser.retry) == ([msg("a")], None)
    events, parser = parse(b"id:1\ndata:a\n\nid:2".replace(b":", colon), split)
    assert (events, parser.last_event_id) == ([msg("a", id="1")], "1")


@every_chunking
@field_forms
def test_b7b_complete_lines_of_the_undispatched_event_took_effect(
    split: Splitter, colon: bytes
) -> None:
    """B7b: retry of the undispatched block applies; last_event_id stays committed (D2)."""
    events, parser = parse(b"data:a\n\nretry:700\nid:9\ndata:b\n".replace(b":", colon), split)
    assert events == [msg("a")]
    assert parser.retry == 700
    assert parser.last_event_id == ""


# -- B8. Fields -------------------------------------------------------------------------


@every_chunking
@field_forms
def test_b8_1_event_sets_the_type_empty_means_message(split: Splitter, colon: bytes) -> None:
    """B8.1: event sets the type buffer (last one wins); an empty value gives 'message'."""
    data = b"event:a\nevent:add\ndata:1\n\nevent:\ndata:2\n\nevent:x\nevent\ndata:3\n\n".replace(
        b":", colon
    )
    assert events_of(data, split) == [msg("1", event="add"), msg("2"), msg("3")]


@every_chunking
@field_forms
def test_b8_2_data_appends_value_and_lf(split: Splitter, colon: bytes) -> None:
    """B8.2: each data line appends its value and one LF (the last LF removed at dispatch)."""
    data = b"data:a\ndata:\ndata:b\ndata\n\n".replace(b":", colon)
    assert events_of(data, split) == [msg("a\n\nb\n")]


@every_chunking
@field_forms
def test_b8_3_id_sets_the_last_event_id(split: Splitter, colon: bytes) -> None:
    """B8.3: id sets the buffer; 'id:' and a bare 'id' reset it to ''."""
    data = b"id:1\ndata:a\n\nid:\ndata:b\n\nid:2\ndata:c\n\nid\ndata:d\n\n".replace(b":", colon)
    assert events_of(data, split) == [msg("a", "1"), msg("b"), msg("c", "2"), msg("d")]


@every_chunking
@pytest.mark.parametrize("value", [b"\0", b"a\0", b"\0a", b"a\0b", b" \0"])
def test_b8_3_id_containing_nul_is_ignored(split: Splitter, value: bytes) -> None:
    """B8.3: an id value containing U+0000 anywhere is ignored; the previous id stays."""
    events, parser = parse(b"id:1\ndata:a\n\nid: " + value + b"\ndata:b\n\n", split)
    assert events == [msg("a", "1"), msg("b", "1")]
    assert parser.last_event_id == "1"


@every_chunking
@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (b"03000", 3000),
        (b"0", 0),
        (b"7", 7),
        (b"0" * 40 + b"5", 5),
        (b"18446744073709551615", 2**64 - 1),
    ],
    ids=["leading_zero", "zero", "seven", "many_zeros", "uint64_max"],
)
def test_b8_4_retry_of_ascii_digits_is_decimal(split: Splitter, value: bytes, ms: int) -> None:
    """B8.4: a value of only ASCII digits is a base-ten integer ('03000' is 3000, not octal)."""
    events, parser = parse(b"retry:" + value + b"\ndata:x\n\n", split)
    assert (events, parser.retry) == ([msg("x")], ms)


@every_chunking
@pytest.mark.parametrize(
    "value",
    [b"-1", b"3.5", b"1000x", b"x1000", b"1e3", b"0x10", b"18446744073709551616", b"9" * 1000],
    ids=["minus", "dot", "suffix", "prefix", "exponent", "hex", "uint64_overflow", "huge"],
)
def test_b8_4_retry_not_only_digits_is_ignored(split: Splitter, value: bytes) -> None:
    """B8.4: any other value is ignored (and does not reset an earlier retry)."""
    events, parser = parse(b"retry:1234\nretry:" + value + b"\ndata:x\n\n", split)
    assert (events, parser.retry) == ([msg("x")], 1234)
    assert parse(b"retry:" + value + b"\n", split)[1].retry is None


@every_chunking
@pytest.mark.parametrize("line", [b"retry", b"retry:", b"retry: "], ids=["bare", "colon", "space"])
def test_b8_4_empty_retry_is_ignored(split: Splitter, line: bytes) -> None:
    """B8.4: an empty retry value is ignored, keeping the previous one (sseproto's choice)."""
    events, parser = parse(b"retry:1234\n" + line + b"\ndata:x\n\n", split)
    assert (events, parser.retry) == ([msg("x")], 1234)
    assert parse(line + b"\n", split)[1].retry is None


@every_chunking
def test_b8_4_retry_takes_effect_immediately(split: Splitter) -> None:
    """B8.4: retry applies when its line is read, before (and without) any dispatch."""
    returned, parser = feed_each([b"retry:500\n", b"retry:600\ndata:x\n"], split)
    assert returned == [[], []]
    assert parser.retry == 600
    parser = EventStreamParser()
    assert feed(parser, b"data:x\nretry:500\n", split) == []
    assert parser.retry == 500


@every_chunking
@pytest.mark.parametrize(
    "name",
    [b"Data", b"DATA", b"data ", b" data", b"\xef\xbb\xbfdata", b"Event", b"ID", b"Retry", b"foo"],
    ids=[
        "Data",
        "DATA",
        "space_before_colon",
        "leading_space",
        "bom",
        "Event",
        "ID",
        "Retry",
        "foo",
    ],
)
def test_b8_5_unknown_field_names_are_ignored(split: Splitter, name: bytes) -> None:
    """B8.5: names are compared literally; any other name (case, spaces) is ignored."""
    events, parser = parse(b"data:ok\n" + name + b":5\n\n" + name + b"\n\n", split)
    assert events == [msg("ok")]
    assert (parser.retry, parser.last_event_id) == (None, "")


# -- B9-B12. Dispatch -------------------------------------------------------------------


@every_chunking
@field_forms
def test_b9_empty_data_buffer_dispatches_nothing_and_resets_the_type(
    split: Splitter, colon: bytes
) -> None:
    """B9.2: no data line -> no event, and the event type set in that block is dropped."""
    assert events_of(b"event:t\n\ndata:x\n\n".replace(b":", colon), split) == [msg("x")]


@every_chunking
@field_forms
def test_b9_one_trailing_lf_removed(split: Splitter, colon: bytes) -> None:
    """B9.3: 'data\\ndata\\n\\n' gives '\\n'; 'data:\\n\\n' gives '', which is dispatched."""
    assert events_of(b"data\ndata\n\ndata:\n\n".replace(b":", colon), split) == [msg("\n"), msg("")]


@every_chunking
@field_forms
def test_b9_last_event_id_committed_on_every_blank_line(split: Splitter, colon: bytes) -> None:
    """B9.1: the ID is committed at each blank line, even one that dispatches nothing."""
    returned, parser = feed_each([b"id:5\n".replace(b":", colon), b"\n"], split)
    assert returned == [[], []]
    assert parser.last_event_id == "5"
    returned, parser = feed_each([b"id:5\ndata:x\n\nid:6\n".replace(b":", colon), b"\n"], split)
    assert returned == [[msg("x", "5")], []]
    assert parser.last_event_id == "6"


@every_chunking
@field_forms
def test_b9_type_defaults_to_message_and_resets_after_dispatch(
    split: Splitter, colon: bytes
) -> None:
    """B9.6-7: the type buffer names the event, then it and the data buffer are reset."""
    data = b"event:t\ndata:a\n\ndata:b\n\n".replace(b":", colon)
    assert events_of(data, split) == [msg("a", event="t"), msg("b")]


@every_chunking
@field_forms
def test_b10_id_after_data_in_the_same_block_applies(split: Splitter, colon: bytes) -> None:
    """B10: the ID is read at dispatch, so an id line after the data lines applies."""
    data = b"data:x\nid:7\n\ndata:y\n\n".replace(b":", colon)
    assert events_of(data, split) == [msg("x", "7"), msg("y", "7")]


@every_chunking
@field_forms
def test_b11_data_and_type_buffers_reset_at_dispatch(split: Splitter, colon: bytes) -> None:
    """B11: at a minimum, dispatch resets the data and event type buffers."""
    data = b"event:t\ndata:a\n\ndata:b\n\nevent:u\n\ndata:c\n\n".replace(b":", colon)
    assert events_of(data, split) == [msg("a", event="t"), msg("b"), msg("c")]


@every_chunking
@pytest.mark.parametrize("eol", EOLS)
def test_b12_spec_examples(split: Splitter, eol: bytes) -> None:
    """B12: the spec's four examples give exactly the events it lists."""

    def lines(*ls: bytes) -> bytes:
        return b"".join(line + eol for line in ls)

    stock = lines(b"data: YHOO", b"data: +2", b"data: 10", b"")
    assert events_of(stock, split) == [msg("YHOO\n+2\n10")]

    ids = lines(b": test stream", b"", b"data: first event", b"id: 1", b"")
    ids += lines(b"data:second event", b"id", b"", b"data:  third event", b"")
    events, parser = parse(ids, split)
    assert events == [msg("first event", "1"), msg("second event"), msg(" third event")]
    assert parser.last_event_id == ""

    events, parser = parse(
        lines(b"data", b"", b"data", b"data", b"") + b"data:", split, close=False
    )
    assert events == [msg(""), msg("\n")]
    assert parser.close() is True

    assert events_of(lines(b"data:test", b"", b"data: test", b""), split) == [msg("test")] * 2


# -- D. Subtle points -------------------------------------------------------------------


@every_chunking
@field_forms
def test_d1_seeded_last_event_id_carries_over(split: Splitter, colon: bytes) -> None:
    """D1: a parser seeded with last_event_id='x' reports 'x' until an id field changes it."""
    data = b"data:a\n\nid:y\ndata:b\n\ndata:c\n\n".replace(b":", colon)
    events, parser = parse(data, split, last_event_id="x")
    assert events == [msg("a", "x"), msg("b", "y"), msg("c", "y")]
    assert parser.last_event_id == "y"
    events, parser = parse(b"id:\ndata:a\n\n".replace(b":", colon), split, last_event_id="x")
    assert (events, parser.last_event_id) == ([msg("a")], "")
    assert EventStreamParser(last_event_id="x").last_event_id == "x"


@every_chunking
@field_forms
def test_d2_last_event_id_changes_only_at_the_blank_line(split: Splitter, colon: bytes) -> None:
    """D2: last_event_id is the committed ID: an id line counts only once its block ends."""
    parser = EventStreamParser(last_event_id="0")
    assert feed(parser, b"data:a\nid:1\n".replace(b":", colon), split) == []
    assert parser.last_event_id == "0"
    assert feed(parser, b"\nid:2\ndata:b\n".replace(b":", colon), split) == [msg("a", "1")]
    assert parser.last_event_id == "1"
    parser.close()
    assert parser.last_event_id == "1"


@every_chunking
@field_forms
def test_d3_event_id_is_sticky(split: Splitter, colon: bytes) -> None:
    """D3: each event reports the last event ID at dispatch, carried over from earlier ones."""
    data = b"id:1\ndata:a\n\ndata:b\n\nid:2\ndata:c\n\ndata:d\n\n".replace(b":", colon)
    assert events_of(data, split) == [msg("a", "1"), msg("b", "1"), msg("c", "2"), msg("d", "2")]


@every_chunking
@field_forms
def test_d4_empty_data_dispatches_but_no_data_line_does_not(split: Splitter, colon: bytes) -> None:
    """D4: 'data:' or 'data' dispatch empty data; a block without a data line dispatches none."""
    data = b"event:a\n\nid:1\n\n:c\n\ndata:\n\nretry:9\n\ndata\n\n".replace(b":", colon)
    assert events_of(data, split) == [msg("", "1"), msg("", "1")]


@every_chunking
def test_d5_only_one_leading_u0020_removed(split: Splitter) -> None:
    """D5: only one U+0020 is removed: no tab, no NBSP, no second space, nothing at the end."""
    data = b"event:  t \nid:  1\ndata:\tx\ndata:\xc2\xa0y\ndata: \tz \n\n"
    assert events_of(data, split) == [msg("\tx\n\u00a0y\n\tz ", id=" 1", event=" t ")]


@every_chunking
@pytest.mark.parametrize(
    "value",
    [" 7", "7 ", "+5", "1_000", "\u0663", "\u00b2", "\uff17", "7\t"],
    ids=[
        "leading_space",
        "trailing_space",
        "plus",
        "underscore",
        "arabic_indic_3",
        "sup2",
        "fullwidth_7",
        "trailing_tab",
    ],
)
def test_d6_retry_python_int_and_isdigit_traps_are_ignored(split: Splitter, value: str) -> None:
    """D6: values int() or str.isdigit() accept but that are not only ASCII digits are ignored."""
    data = b"retry:100\nretry: " + value.encode() + b"\ndata:x\n\n"
    events, parser = parse(data, split)
    assert (events, parser.retry) == ([msg("x")], 100)


@every_chunking
def test_d7_character_split_across_chunks_decodes_whole(split: Splitter) -> None:
    """D7: a multi-byte character split across chunks is decoded whole, not as U+FFFD."""
    pieces = [b"event:caf\xc3", b"\xa9\nid:\xe2\x80", b"\xa6\ndata:\xf0", b"\x9f\x98", b"\x80\n\n"]
    returned, _ = feed_each(pieces, split)
    assert returned == [[], [], [], [], [msg("\U0001f600", id=ELLIPSIS, event="caf\u00e9")]]


@every_chunking
def test_d8_nul_is_ordinary_except_in_id(split: Splitter) -> None:
    """D8: NUL is kept in data and event type and makes a different field name."""
    data = b"event:a\0b\ndata:\0\ndata\0:x\n\0data:y\nid:\0\ndata:c\0\n\n"
    assert events_of(data, split) == [msg("\0\nc\0", event="a\0b")]


@every_chunking
def test_d9_no_flush_of_the_last_event_at_end_of_stream(split: Splitter) -> None:
    """D9: an unterminated last line (with an incomplete UTF-8 sequence) is dropped."""
    for tail in (b"data:b", b"data:b\n", b"data:\xe2\x82", b"data:b\ndata:\xf0\x9f"):
        events, parser = parse(b"data:a\n\n" + tail, split, close=False)
        assert events == [msg("a")]
        assert parser.close() is True


MIXED_STREAM = (
    BOM + b": hello\r\nretry:1500\rid:\xe2\x80\xa6\nevent:up\r\ndata:caf\xc3\xa9\r"
    b"data\n\r\n:x\n\ndata:\xf0\x9f\x98\x80\r\rid\ndata:z\r\n\r\ndata:lost"
)


@every_chunking
def test_d10_chunking_never_changes_the_result(split: Splitter) -> None:
    """D10: events and state are identical, whole or in any chunks."""
    events, parser = parse(MIXED_STREAM, split, close=False)
    assert events == [
        msg("caf\u00e9\n", ELLIPSIS, "up"),
        msg("\U0001f600", ELLIPSIS),
        msg("z"),
    ]
    assert (parser.last_event_id, parser.retry, parser.close()) == ("", 1500, True)


LONG = 20_000  # past any small-line fast path a parser may have


@every_chunking
def test_d10_long_lines_under_any_chunking(split: Splitter) -> None:
    """D10: lines far longer than any chunk give the same events, whatever the chunking."""
    c, e, i, a, b = (x * LONG for x in (b"c", b"e", b"i", b"a", b"b"))
    data = b": " + c + b"\nevent: " + e + b"\rid: " + i + b"\r\ndata: " + a + b"\ndata:" + b
    data += b"\r\n\r\ndata: \xe2\x80\xa6\ndata: \xe2\x80\xa6\n\n"
    events, parser = parse(data, split, comments=True)
    assert events == [
        Comment("c" * LONG),
        msg("a" * LONG + "\n" + "b" * LONG, "i" * LONG, "e" * LONG),
        msg(ELLIPSIS + "\n" + ELLIPSIS, "i" * LONG),
    ]
    assert parser.last_event_id == "i" * LONG
    # Long data lines that start a chunk (with larger chunks than bytewise).
    pieces = [b"data: " + a[:100], a[100:] + b"\ndata: " + b, b"\r\n", b"\n"]
    returned, _ = feed_each(pieces, split)
    assert returned == [[], [], [], [msg("a" * LONG + "\n" + "b" * LONG)]]


# -- The parser's own contract (docstrings of EventStreamParser) ---------------------------


@every_chunking
def test_eager_dispatch_event_comes_out_of_the_feed_that_brings_the_cr(split: Splitter) -> None:
    """Contract: with CR line ends, the feed bringing the blank line's CR returns the event."""
    pieces = [b"data:a\r", b"\r", b"\n", b"data:b\r\r", b"\ndata:c\n", b"\r"]
    returned, parser = feed_each(pieces, split)
    assert returned == [[], [msg("a")], [], [msg("b")], [], [msg("c")]]
    assert parser.close() is False


@every_chunking
def test_eager_dispatch_event_position_under_any_chunking(split: Splitter) -> None:
    """Contract: each event comes out of the feed call whose chunk holds its blank line's CR."""
    data = b"data:a\r\rdata:b\r\r\ndata:c\r\n\r"
    parser = EventStreamParser()
    got: list[tuple[sseproto.ServerSentEvent, range]] = []
    start = 0
    for chunk in split(data):
        got.extend((ev, range(start, start + len(chunk))) for ev in parser.feed(chunk))
        start += len(chunk)
    blank_line_crs = [7, 15, 25]
    assert [ev for ev, _ in got] == [msg("a"), msg("b"), msg("c")]
    assert [cr in span for (_, span), cr in zip(got, blank_line_crs, strict=True)] == [True] * 3


@every_chunking
def test_feed_empty_bytes_is_a_noop(split: Splitter) -> None:
    """Contract: feed(b"") returns [] and changes nothing, even between a CR and its LF."""
    pieces = [b"", b"id:1\ndata:a\r", b"", b"\ndata:b", b"", b"\n\r", b"", b"\n"]
    returned, parser = feed_each(pieces, split)
    assert returned == [[], [], [], [], [], [msg("a\nb", "1")], [], []]
    assert (parser.last_event_id, parser.close()) == ("1", False)


@every_chunking
@pytest.mark.parametrize(
    ("data", "discarded"),
    [
        (b"", False),
        (b"data:a\n\n", False),
        (b"data:a\n\nid:1\nretry:5\n\n:ping\n", False),
        (b"data:a\n", True),
        (b"data:a\n\ndata:b", True),
        (b"data:a", True),
    ],
    ids=["empty", "clean", "clean_no_event", "no_blank_line", "unterminated", "only_partial"],
)
def test_close_reports_whether_it_discarded_a_half_received_event(
    split: Splitter, data: bytes, discarded: bool
) -> None:
    """Contract: close() is True when it discarded a half-received event, else False."""
    _, parser = parse(data, split, close=False)
    assert parser.close() is discarded
    assert parser.close() is False  # closing twice is a no-op


@every_chunking
def test_feed_after_close_raises(split: Splitter) -> None:
    """Contract: feed after close raises sseproto.EventStreamError."""
    _, parser = parse(b"data:a\n\n", split)
    with pytest.raises(sseproto.EventStreamError):
        parser.feed(b"data:b\n\n")


@every_chunking
def test_comments_returned_in_stream_order_only_when_asked(split: Splitter) -> None:
    """Contract: comments=True returns Comment(text minus one space) among the events."""
    data = b": ping\ndata:a\n:x\r\n\r:  two\r:\n:\xff\n"
    events, _ = parse(data, split, comments=True)
    assert events == [
        Comment("ping"),
        Comment("x"),
        msg("a"),
        Comment(" two"),
        Comment(""),
        Comment("\ufffd"),
    ]
    assert events_of(data, split) == [msg("a")]


@every_chunking
def test_retry_is_none_until_a_valid_retry_arrives(split: Splitter) -> None:
    """Contract: retry is None on a new parser and stays None until a valid value."""
    parser = EventStreamParser()
    assert parser.retry is None
    assert feed(parser, b"retry:x\nretry\ndata:a\n\n", split) == [msg("a")]
    assert parser.retry is None
    feed(parser, b"retry:42\n", split)
    assert parser.retry == 42
