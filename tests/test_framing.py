"""``_framing.BodyFraming``: an event stream's body, unframed without h11.

Every case runs whole, one byte per feed, and in random splits; a differential
property checks it against h11 itself (the reader it replaces on the hot path) on
generated chunked bodies and on arbitrary bytes: the same body bytes, the same end,
and an error exactly where h11 has one.
"""

from __future__ import annotations

import random
import re

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sseproto._framing import MAX_LINE_BYTES, BodyFraming, FramingError

CHUNKED = [(b"transfer-encoding", b"chunked")]


def splits(data: bytes, seed: int) -> list[list[bytes]]:
    """``data`` whole, a byte at a time, and in three random splits."""
    rng = random.Random(seed)
    out = [[data], [data[i : i + 1] for i in range(len(data))]]
    for _ in range(3):
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, 5))) if data else []
        out.append([data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)])
    return out


def run(framing: BodyFraming, pieces: list[bytes], eof: bool = False) -> bytes:
    body = b"".join(framing.feed(p) for p in pieces)
    if eof:
        framing.eof()
    return body


@pytest.mark.parametrize(
    ("wire", "body", "extra"),
    [
        (b"5\r\nhello\r\n0\r\n\r\n", b"hello", b""),
        (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world", b""),
        (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", b""),
        (b"a;name=value\r\nabcdefghij\r\n0\r\n\r\n", b"abcdefghij", b""),  # an extension
        (b"3  \t\r\nabc\r\n0\r\n\r\n", b"abc", b""),  # spaces before the CRLF
        (b"00003\r\nabc\r\n0\r\n\r\n", b"abc", b""),
        (b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n", b"abc", b""),  # trailers
        (b"3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200", b"abc", b"HTTP/1.1 200"),  # more after it
        (b"3\r\na\r\n\r\n0\r\n\r\n", b"a\r\n", b""),  # CRLF inside the data
    ],
)
def test_chunked_bodies(wire: bytes, body: bytes, extra: bytes) -> None:
    for seed, pieces in enumerate(splits(wire, 1)):
        framing = BodyFraming("chunked")
        assert run(framing, pieces) == body, seed
        assert framing.done
        assert framing.extra == extra


@pytest.mark.parametrize(
    "wire",
    [
        b"x\r\nabc\r\n",  # not hex
        b"0x3\r\nabc\r\n",  # int() would take it
        b"+3\r\nabc\r\n",
        b"3_0\r\n",
        b" 3\r\nabc\r\n",  # space before the size
        b"3 ;x\r\nabc\r\n",  # space before the extension
        b"\r\n",  # no size
        b"3\nabc\r\n",  # a bare LF ends the size line
        b"3\r\nabcXY0\r\n\r\n",  # no CRLF after the data
        b"3\r\nabc\rX",
        b"1" * 21 + b"\r\n",  # more than 20 digits
    ],
)
def test_broken_chunked_framing_is_an_error(wire: bytes) -> None:
    for pieces in splits(wire, 2):
        framing = BodyFraming("chunked")
        with pytest.raises(FramingError):
            run(framing, pieces)


def test_framing_errors_quote_a_few_bytes_only() -> None:
    with pytest.raises(FramingError) as caught:
        BodyFraming("chunked").feed(b"z" * 5000 + b"\r\n")
    assert len(str(caught.value)) < 120


@pytest.mark.parametrize("what", ["size", "trailer"])
def test_lines_without_end_are_bounded(what: str) -> None:
    framing = BodyFraming("chunked")
    if what == "trailer":
        framing.feed(b"0\r\n")
    piece = b"X-Long: " + b"a" * 992 if what == "trailer" else b"0" * 1000
    for _ in range(MAX_LINE_BYTES // 1000):
        framing.feed(piece)
    with pytest.raises(FramingError, match="longer than"):
        framing.feed(piece * 2)


def test_a_close_before_the_end_is_an_error_but_ends_a_close_delimited_body() -> None:
    framing = BodyFraming("chunked")
    framing.feed(b"5\r\nhel")
    with pytest.raises(FramingError, match="in the middle of a response"):
        framing.eof()
    framing = BodyFraming("length", 10)
    assert framing.feed(b"hello") == b"hello"
    with pytest.raises(FramingError):
        framing.eof()
    framing = BodyFraming("close")
    assert run(framing, [b"a", b"bc"], eof=True) == b"abc"
    assert framing.done


def test_content_length() -> None:
    for pieces in splits(b"0123456789rest", 3):
        framing = BodyFraming("length", 10)
        assert run(framing, pieces) == b"0123456789"
        assert framing.done
        assert framing.extra == b"rest"


@pytest.mark.parametrize(
    ("method", "status", "fields", "kind"),
    [
        ("GET", 200, CHUNKED, "chunked"),
        ("GET", 200, [(b"content-length", b"12")], "length"),
        ("GET", 200, [*CHUNKED, (b"content-length", b"12")], "chunked"),
        ("GET", 200, [(b"content-type", b"text/event-stream")], "close"),
        ("HEAD", 200, CHUNKED, "length"),
        ("GET", 204, [], "length"),
        ("GET", 304, CHUNKED, "length"),
    ],
)
def test_the_framing_of_a_head(
    method: str, status: int, fields: list[tuple[bytes, bytes]], kind: str
) -> None:
    framing = BodyFraming.of(method, status, fields)
    assert framing.kind == kind
    if kind == "length" and not any(n == b"content-length" for n, _ in fields):
        assert framing.done  # no body


# -- against h11 ---------------------------------------------------------------------


def h11_body(wire: bytes, pieces: list[bytes]) -> tuple[bytes, bool, bool]:
    """What h11 makes of a chunked body sent as ``pieces``: (body, ended, error)."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert isinstance(conn.next_event(), h11.Response)
    body = b""
    try:
        for piece in pieces:
            conn.receive_data(piece)
            while True:
                event = conn.next_event()
                if isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    return body, True, False
                else:
                    break
    except h11.RemoteProtocolError:
        return body, False, True
    return body, False, False


def ours(pieces: list[bytes]) -> tuple[bytes, bool, bool]:
    framing = BodyFraming("chunked")
    body = b""
    try:
        for piece in pieces:
            body += framing.feed(piece)
            if framing.done:
                return body, True, False
    except FramingError:
        return body, False, True
    return body, False, False


size_lines = st.one_of(
    st.builds(lambda n: f"{n:x}", st.integers(0, 300)),
    st.builds(lambda n: f"{n:X}", st.integers(1, 300)),
    st.builds(lambda n, z: "0" * z + f"{n:x}", st.integers(1, 300), st.integers(1, 5)),
    st.text("0123456789abcdefxX+_ ;\t-", min_size=0, max_size=6),
)


@st.composite
def chunked_wires(draw: st.DrawFn) -> bytes:
    """Chunked bodies, mostly valid, with extensions, whitespace, trailers and damage."""
    wire = b""
    for _ in range(draw(st.integers(0, 4))):
        data = draw(st.binary(min_size=1, max_size=40))
        size = f"{len(data):x}"
        ext = draw(st.sampled_from(["", ";a=b", ";x", " ", "\t ", ';q="1" ']))
        wire += (
            f"{size}{ext}\r\n".encode()
            + data
            + draw(st.sampled_from([b"\r\n"] * 6 + [b"\n", b"XX"]))
        )
    if draw(st.booleans()):  # a size line with no data after it (never a last chunk:
        # what follows would be read as its trailer section, which h11 parses and we skip)
        wire += draw(size_lines.filter(lambda t: not re.fullmatch(r"0+(;.*)?[ \t]*", t))).encode()
        wire += b"\r\n"
    wire += b"0\r\n"
    wire += b"".join(draw(st.lists(st.sampled_from([b"X-T: 1\r\n", b"Y: 2\n"]), max_size=2)))
    wire += draw(st.sampled_from([b"\r\n", b"\n", b""]))
    return wire


@settings(max_examples=400, deadline=None)
@given(chunked_wires(), st.randoms(use_true_random=False))
def test_agrees_with_h11_on_chunked_bodies(wire: bytes, rng: random.Random) -> None:
    cuts = sorted(rng.sample(range(1, len(wire)), min(len(wire) - 1, 4))) if len(wire) > 1 else []
    pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    theirs = h11_body(wire, pieces)
    mine = ours(pieces)
    if mine[2] and not theirs[1] and not theirs[2]:
        # We refuse a size line as soon as it ends in a bare LF; h11 waits for a CRLF
        # and refuses it then.
        theirs = h11_body(wire, [*pieces, b"\r\n\r\n"])
    if theirs[2] or mine[2]:  # an error: both see it (the body before it may differ:
        # h11 hands out each piece, a feed that fails hands out none)
        assert mine[2] == theirs[2]
        return
    assert mine == theirs


def test_trailer_fields_are_skipped_unread() -> None:
    # h11 parses a trailer section as header fields and refuses a line that is not
    # one; the events do not need it, so it is skipped (bounded in size).
    framing = BodyFraming("chunked")
    assert framing.feed(b"3\r\nabc\r\n0\r\nnot a field\r\n\r\n") == b"abc"
    assert framing.done


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=60))
def test_arbitrary_bytes_give_body_bytes_or_our_error(data: bytes) -> None:
    framing = BodyFraming("chunked")
    try:
        body = framing.feed(data)
    except FramingError:
        return
    assert isinstance(body, bytes)
    assert len(body) <= len(data)


def test_streams_share_one_jitter_source() -> None:
    # A random.Random is 2.5 KiB: one per stream was a twentieth of a stream's memory.
    from sseproto import EventSource

    assert EventSource("https://a.example/e")._rng is EventSource("https://b.example/e")._rng
