"""Feed a byte stream to a parser under different chunkings.

The standard defines parsing on the whole stream, so every parser test runs its
input three ways at least: whole, one byte per chunk, and in random splits (several
seeds). ``CHUNKINGS`` is the list to parametrize over; ``parse`` returns the events
and the parser (for its ``last_event_id`` / ``retry``) after the stream has been fed
and, unless ``close=False``, closed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import sseproto

Splitter = Callable[[bytes], Iterator[bytes]]


def whole(data: bytes) -> Iterator[bytes]:
    yield data


def bytewise(data: bytes) -> Iterator[bytes]:
    for i in range(len(data)):
        yield data[i : i + 1]


def random_splits(seed: int) -> Splitter:
    def split(data: bytes) -> Iterator[bytes]:
        rng = random.Random(seed)
        i = 0
        while i < len(data):
            n = rng.randint(0, 9)  # 0 gives empty chunks, which must be no-ops
            yield data[i : i + n]
            i += n

    split.__name__ = f"random{seed}"
    return split


CHUNKINGS: list[Splitter] = [whole, bytewise, *(random_splits(s) for s in range(4))]
CHUNKING_IDS = [c.__name__ for c in CHUNKINGS]


def parse(
    data: bytes,
    split: Splitter = whole,
    *,
    close: bool = True,
    **parser_args: Any,
) -> tuple[list[Any], sseproto.EventStreamParser[Any]]:
    """Feed ``data`` in the chunks ``split`` makes; return (events, parser)."""
    parser: sseproto.EventStreamParser[Any] = sseproto.EventStreamParser(**parser_args)
    events: list[Any] = []
    for chunk in split(data):
        events.extend(parser.feed(chunk))
    if close:
        parser.close()
    return events, parser
