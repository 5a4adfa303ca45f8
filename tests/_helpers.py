"""Helpers shared by the parser tests (on top of ``_chunking``).

``every_chunking`` is the parametrization every parsing test carries. ``feed`` runs
one stretch of the stream through a parser in the chunks a splitter makes;
``feed_each`` keeps fixed chunk boundaries (a BOM or a CRLF split in two, an empty
first chunk) and still refines every piece with the splitter, so the fixed boundary
is tested under every chunking too. ``msg`` builds the expected events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

import sseproto
from tests._chunking import CHUNKING_IDS, CHUNKINGS, parse

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tests._chunking import Splitter

every_chunking = pytest.mark.parametrize("split", CHUNKINGS, ids=CHUNKING_IDS)

#: "name:value" and "name: value" are the same field, but a parser may take different
#: paths for them: tests that take ``colon`` write ``name:value`` and replace the colons.
field_forms = pytest.mark.parametrize("colon", [b":", b": "], ids=["colon", "colon_space"])

#: The three line ends, for tests that run under each.
EOLS = [
    pytest.param(b"\r\n", id="crlf"),
    pytest.param(b"\n", id="lf"),
    pytest.param(b"\r", id="cr"),
]


def msg(data: str, id: str = "", event: str = "message") -> sseproto.ServerSentEvent:
    """The event the parser should return (keyword order of the spec's MessageEvent)."""
    return sseproto.ServerSentEvent(event=event, data=data, id=id)


def events_of(data: bytes, split: Splitter, **parser_args: Any) -> list[Any]:
    """The events of a whole stream (fed, then closed)."""
    return parse(data, split, **parser_args)[0]


def feed(parser: sseproto.EventStreamParser[Any], data: bytes, split: Splitter) -> list[Any]:
    """Feed ``data`` to ``parser`` in the chunks ``split`` makes; what all the calls returned."""
    out: list[Any] = []
    for chunk in split(data):
        out.extend(parser.feed(chunk))
    return out


def feed_each(
    pieces: Sequence[bytes], split: Splitter, **parser_args: Any
) -> tuple[list[list[Any]], sseproto.EventStreamParser[Any]]:
    """Feed ``pieces`` in order, each refined by ``split``; what each piece returned.

    An empty piece is fed as one ``feed(b"")`` call (a splitter yields nothing for it).
    The parser is not closed.
    """
    parser: sseproto.EventStreamParser[Any] = sseproto.EventStreamParser(**parser_args)
    returned = [feed(parser, piece, split) if piece else parser.feed(piece) for piece in pieces]
    return returned, parser
