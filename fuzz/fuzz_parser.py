"""Coverage-guided fuzzing of the event-stream parser with atheris.

One invariant, checked three ways on every input: feeding arbitrary bytes gives
events or sseproto's own ``EventStreamError``, never any other exception, never a
hang. The first byte of the input picks small limits and the chunking, so limits,
CRs split from their LFs and BOMs split across chunks are all explored. Each input
is also checked for chunk invariance: the same bytes fed whole and in the chosen
chunks give the same events, the same ``last_event_id`` and ``retry``, and (when a
limit is hit) the same events before the error.

Run it (see fuzz/README.md)::

    python fuzz/fuzz_parser.py fuzz/corpus -runs=100000
"""

from __future__ import annotations

import sys
from typing import Any

import sseproto


def run(data: bytes, chunk_size: int, limit: int) -> tuple[list[Any], str, int | None, bool]:
    """Feed ``data`` in chunks of ``chunk_size``; return what came out."""
    parser = sseproto.EventStreamParser(max_line_bytes=limit, max_event_bytes=limit)
    events: list[Any] = []
    failed = False
    try:
        for i in range(0, len(data), chunk_size):
            events.extend(parser.feed(data[i : i + chunk_size]))
        parser.close()
    except sseproto.EventStreamError as exc:
        events.extend(exc.events)
        failed = True
        try:
            parser.feed(b"x")
        except sseproto.EventStreamError:
            pass
        else:
            raise AssertionError("a failed parser accepted more input") from None
    return events, parser.last_event_id, parser.retry, failed


def test_one_input(data: bytes) -> None:
    if not data:
        return
    control, body = data[0], data[1:]
    chunk_size = (control & 0x0F) + 1  # 1..16 bytes
    limit = 1 << 30 if control & 0x80 else ((control >> 4) & 0x07) * 8 + 4  # huge, or 4..60
    whole = run(body, max(len(body), 1), limit)
    chunked = run(body, chunk_size, limit)
    if whole[3] or chunked[3]:
        # With limits, the error comes at the same point of the stream (same events
        # before it); the dead parser's state after it is not compared.
        assert (whole[0], whole[3]) == (chunked[0], chunked[3]), (whole, chunked)
    else:
        assert whole == chunked, (whole, chunked)


def main() -> None:
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
