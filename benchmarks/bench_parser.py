"""Parser benchmark: sseproto against the parsing layers of other Python SSE clients.

What is measured
----------------
Only parsing: bytes of a ``text/event-stream`` body in, events out. No sockets, no
HTTP. Every implementation gets the same pre-split, in-memory chunks (split before
any clock starts) and is consumed the same way: iterate its events, count them and
add up ``len(event.data)``. The implementations are:

* ``sseproto``: ``EventStreamParser().feed(chunk)`` per chunk, then ``close()``.
* ``httpx-sse``: what ``EventSource.iter_sse()`` does to a body: httpx's
  ``iter_text()`` (an incremental UTF-8 decoder with ``errors="replace"``, empty
  strings dropped), then ``SSELineDecoder`` (with its final ``flush()``), then
  ``SSEDecoder.decode(line.rstrip("\\n"))`` per line.
* ``sseclient-py``: ``sseclient.SSEClient(chunks).events()``; the library takes any
  iterable of byte chunks as its event source.
* ``ld-eventsource``: ``_SSEReader(_BufferedLineReader.lines_from(chunks))``, keeping
  only ``Event`` items, which is what ``SSEClient.events`` does with the chunks its
  HTTP layer (``urllib3`` ``response.stream()``) yields.
* ``floor``: ``sum(chunk.count(b"\\n") for chunk in chunks)``, the least any parser
  can do (touch every byte once, at C speed). It produces no events; its events/s
  uses the workload's event count.

Each (implementation, workload) pair is timed with ``time.perf_counter`` and the best
of ``--repeat`` runs is kept (gc stays enabled; a ``gc.collect()`` runs before each
run, outside the clock). A run that takes longer than ``SLOW_RUN_S`` seconds is not
repeated, and one that takes longer than ``--timeout-per-run`` is interrupted
(SIGALRM, where available) and reported as a lower bound.

Correctness cross-check (outside the clock): each peer's event count and total data
length must equal sseproto's, and, when its run was not slow, a SHA-256 over every
event's type, data and last event ID too. Differences are printed as warnings: they
are findings about the peer, not something this script corrects.

sseproto's peak memory on ``w3`` (1 MiB events) is measured separately with
``tracemalloc``, which slows Python down too much to share a run with the timings.

How to run
----------
::

    python benchmarks/bench_parser.py                 # everything, a minute or two
    python benchmarks/bench_parser.py --quick         # 10x smaller workloads (CI smoke)
    python benchmarks/bench_parser.py --only w1,w3 --repeat 5
    python benchmarks/bench_parser.py --json          # machine-readable, on stdout

Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import base64
import codecs
import functools
import gc
import hashlib
import json
import platform
import random
import signal
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

import sseclient
from httpx_sse._decoders import SSEDecoder, SSELineDecoder
from ld_eventsource.actions import Event as LDEvent
from ld_eventsource.reader import _BufferedLineReader, _SSEReader

import sseproto
from sseproto._parser import _pure_core, compiled

Chunks = Sequence[bytes]
PURE = "sseproto-pure"
#: (events, total length of their data) as one run counted them.
Tally = tuple[int, int]

#: A first run slower than this is not repeated (and not fingerprinted).
SLOW_RUN_S = 5.0
DEFAULT_TIMEOUT_S = 20.0
MIB = 1024 * 1024
#: The data of one big event in w3 and w5: base64 of 768 KiB is exactly 1 MiB.
BIG_DATA_BYTES = MIB


# -- adapters: each turns the chunks into that library's event objects ---------------


def sseproto_events(
    chunks: Chunks, parser_class: Callable[[], Any] = sseproto.EventStreamParser
) -> Iterator[sseproto.ServerSentEvent]:
    parser = parser_class()
    feed = parser.feed
    for chunk in chunks:
        events = feed(chunk)
        if events:  # most small chunks complete no event: skip the empty list
            yield from events
    parser.close()


def httpx_sse_events(chunks: Chunks) -> Iterator[Any]:
    """``httpx_sse.EventSource.iter_sse`` over ``httpx.Response.iter_text``."""

    def iter_text() -> Iterator[str]:  # httpx: TextDecoder + TextChunker(None)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for chunk in chunks:
            text = decoder.decode(chunk)
            if text:
                yield text
        text = decoder.decode(b"", True)
        if text:
            yield text

    def iter_sse_lines() -> Iterator[str]:  # httpx_sse._api._iter_sse_lines
        line_decoder = SSELineDecoder()
        for text in iter_text():
            yield from line_decoder.decode(text)
        yield from line_decoder.flush()

    decoder = SSEDecoder()  # httpx_sse._api.EventSource.iter_sse
    for line in iter_sse_lines():
        sse = decoder.decode(line.rstrip("\n"))
        if sse is not None:
            yield sse


def sseclient_events(chunks: Chunks) -> Iterator[Any]:
    # Its stub types event_source as Iterator[bytes]; the code just loops over it.
    events: Iterator[Any] = sseclient.SSEClient(iter(chunks)).events()
    return events


def ld_eventsource_events(chunks: Chunks) -> Iterator[Any]:
    """``ld_eventsource.SSEClient.events`` minus the connection management."""
    reader = _SSEReader(_BufferedLineReader.lines_from(chunks), None, None)
    for item in reader.events_and_comments():
        if isinstance(item, LDEvent):
            yield item


def floor(chunks: Chunks) -> Tally:
    return sum(chunk.count(b"\n") for chunk in chunks), 0


# -- implementations ------------------------------------------------------------------


@dataclass(frozen=True)
class Impl:
    name: str
    run: Callable[[Chunks], Tally]
    #: A digest of every event (type, data, last event ID); None for the floor.
    fingerprint: Callable[[Chunks], str] | None
    is_peer: bool


def _consume(events: Iterable[Any]) -> Tally:
    n = 0
    size = 0
    for event in events:
        n += 1
        size += len(event.data)
    return n, size


def _event_impl(
    name: str,
    events: Callable[[Chunks], Iterable[Any]],
    last_event_id: Callable[[Any], str | None],
    *,
    is_peer: bool = True,
) -> Impl:
    def run(chunks: Chunks) -> Tally:
        return _consume(events(chunks))

    def fingerprint(chunks: Chunks) -> str:
        digest = hashlib.sha256()
        for event in events(chunks):
            for value in (event.event, last_event_id(event) or "", event.data):
                encoded = value.encode("utf-8", "surrogatepass")
                digest.update(len(encoded).to_bytes(8, "little"))
                digest.update(encoded)
        return digest.hexdigest()

    return Impl(name, run, fingerprint, is_peer)


IMPLS: list[Impl] = [
    _event_impl("sseproto", sseproto_events, lambda e: e.id, is_peer=False),
    # Where the build compiled the core with mypyc, the pure-Python core runs beside it.
    *(
        [
            _event_impl(
                PURE,
                functools.partial(sseproto_events, parser_class=_pure_core().ParserCore),
                lambda e: e.id,
                is_peer=False,
            )
        ]
        if compiled
        else []
    ),
    _event_impl("httpx-sse", httpx_sse_events, lambda e: e.id),
    # sseclient-py's id is per event (never carried over); ld's sticky one is last_event_id.
    _event_impl("sseclient-py", sseclient_events, lambda e: e.id),
    _event_impl("ld-eventsource", ld_eventsource_events, lambda e: e.last_event_id),
    Impl("floor", floor, None, is_peer=False),
]
REFERENCE = "sseproto"


# -- workloads ------------------------------------------------------------------------


@dataclass
class Workload:
    name: str
    description: str
    events: int  # events in the input
    size: int  # bytes in the input
    chunk_size: int
    chunks: list[bytes] = field(repr=False)


def _split(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def _progress_body(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    parts = []
    for _ in range(n):
        task_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        total = rng.randint(10, 50)
        step = rng.randint(1, total)
        node = rng.randint(1, 12)
        parts.append(
            f'event: progress\ndata: {{"task_id":"{task_id}","progress":{round(step / total, 2)}'
            f',"current_node":"{node}","step_current":{step},"step_total":{total}}}\n\n'
        )
    return "".join(parts).encode()


def _big_body(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    raw = BIG_DATA_BYTES * 3 // 4
    return b"".join(b"data: " + base64.b64encode(rng.randbytes(raw)) + b"\n\n" for _ in range(n))


def build_workloads(names: Sequence[str], quick: bool) -> list[Workload]:
    scale = 10 if quick else 1
    n_small, n_big, n_huge = 100_000 // scale, 100 // scale, 10 // scale
    cache: dict[str, bytes] = {}

    def body(key: str) -> bytes:
        if key not in cache:
            if key == "lf":
                cache[key] = _progress_body(n_small, seed=1)
            elif key == "crlf":
                cache[key] = body("lf").replace(b"\n", b"\r\n")
            elif key == "big":
                cache[key] = _big_body(n_big, seed=3)
            else:
                cache[key] = _big_body(n_huge, seed=5)
        return cache[key]

    def count(n: int, what: str) -> str:
        return f"{n:,} {what}" if n == 1 else f"{n:,} {what.replace('event', 'events')}"

    specs: dict[str, tuple[str, str, int, int]] = {
        "w1": ("lf", count(n_small, "progress event, LF"), n_small, 4096),
        "w2": ("lf", count(n_small, "progress event, LF"), n_small, 7),
        "w3": ("big", count(n_big, "event of 1 MiB data"), n_big, 64 * 1024),
        "w4": ("crlf", count(n_small, "progress event, CRLF"), n_small, 4096),
        "w5": ("huge", count(n_huge, "event of 1 MiB data"), n_huge, 1460),
    }
    out = []
    for name in names:
        key, what, events, chunk_size = specs[name]
        data = body(key)
        desc = f"{what}, {len(data) / 1e6:.1f} MB in {chunk_size:,}-byte chunks"
        out.append(Workload(name, desc, events, len(data), chunk_size, _split(data, chunk_size)))
    return out


ALL_WORKLOADS = ["w1", "w2", "w3", "w4", "w5"]


# -- timing ---------------------------------------------------------------------------


class _Timeout(Exception):
    pass


def _on_alarm(signum: int, frame: object) -> None:
    raise _Timeout


def timed(
    run: Callable[[Chunks], Tally], chunks: Chunks, timeout: float
) -> tuple[float, Tally | None]:
    """One run: (seconds, tally), or (seconds so far, None) if it hit the timeout."""
    gc.collect()
    alarm = timeout > 0 and hasattr(signal, "setitimer")
    if alarm:
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    start = time.perf_counter()
    try:
        tally = run(chunks)
    except _Timeout:
        return time.perf_counter() - start, None
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    return time.perf_counter() - start, tally


@dataclass
class Result:
    impl: str
    seconds: float  # best run; a lower bound if timed_out
    runs: int
    timed_out: bool
    events_per_s: float  # the workload's event count / seconds
    mb_per_s: float  # input bytes / 1e6 / seconds
    events: int | None  # as this implementation counted them
    data_chars: int | None
    fingerprint: str | None
    check: str = ""


def measure(impl: Impl, wl: Workload, repeat: int, timeout: float) -> Result:
    seconds, tally = timed(impl.run, wl.chunks, timeout)
    runs = 1
    if tally is not None and seconds <= SLOW_RUN_S:
        for _ in range(repeat - 1):
            again, again_tally = timed(impl.run, wl.chunks, timeout)
            runs += 1
            if again_tally is not None:
                seconds = min(seconds, again)
    fingerprint = None
    if tally is not None and impl.fingerprint is not None and seconds <= SLOW_RUN_S:
        fingerprint = impl.fingerprint(wl.chunks)
    return Result(
        impl=impl.name,
        seconds=seconds,
        runs=runs,
        timed_out=tally is None,
        events_per_s=wl.events / seconds,
        mb_per_s=wl.size / 1e6 / seconds,
        events=tally[0] if tally is not None else None,
        data_chars=tally[1] if tally is not None else None,
        fingerprint=fingerprint,
    )


def cross_check(wl: Workload, results: list[Result]) -> list[str]:
    """Fill in each result's ``check`` column; return the warnings."""
    warnings = []
    ref = next(r for r in results if r.impl == REFERENCE)
    if ref.events is not None and ref.events != wl.events:
        warnings.append(
            f"{wl.name}: {REFERENCE} counted {ref.events:,} events, input has {wl.events:,}"
        )
    for r in results:
        if r.impl == "floor":
            r.check = "-"
        elif r is ref:
            r.check = "reference"
        elif r.timed_out or ref.events is None:
            r.check = "unchecked (timeout)"
        elif r.events != ref.events:
            r.check = f"DIFF: {r.events:,} events"
            warnings.append(
                f"{wl.name}: {r.impl} produced {r.events:,} events, {REFERENCE} {ref.events:,}"
            )
        elif r.data_chars != ref.data_chars:
            r.check = "DIFF: data size"
            warnings.append(
                f"{wl.name}: {r.impl} produced {r.data_chars:,} characters of data, "
                f"{REFERENCE} {ref.data_chars:,}"
            )
        elif r.fingerprint is None or ref.fingerprint is None:
            r.check = "ok (count+size)"
        elif r.fingerprint != ref.fingerprint:
            r.check = "DIFF: content"
            warnings.append(
                f"{wl.name}: {r.impl} has the same event count and data size as "
                f"{REFERENCE} but different event types, data or ids"
            )
        else:
            r.check = "ok"
    return warnings


@dataclass
class Comparison:
    fastest_peer: str | None
    peer_events_per_s: float | None
    #: peer's best seconds / sseproto's best seconds; > 1 means sseproto is faster.
    ratio: float | None
    #: True if the fastest peer timed out, so the ratio is a lower bound.
    lower_bound: bool


def compare(results: list[Result], reference: str = REFERENCE) -> Comparison:
    peer_names = {i.name for i in IMPLS if i.is_peer}
    ref = next(r for r in results if r.impl == reference)
    peers = sorted((r for r in results if r.impl in peer_names), key=lambda r: r.seconds)
    if not peers or ref.timed_out:
        return Comparison(None, None, None, False)
    best = next((r for r in peers if not r.timed_out), peers[-1])
    return Comparison(best.impl, best.events_per_s, best.seconds / ref.seconds, best.timed_out)


# -- memory ---------------------------------------------------------------------------


def sseproto_peak_memory(wl: Workload) -> int:
    """Peak bytes allocated while sseproto parses ``wl`` (the chunks not included).

    Each ``feed``'s events are dropped before the next ``feed``, so the figure is the
    parser's own working set plus the events of one call, not what a consumer keeps
    (a ``for event in ...`` loop variable alone would keep one more event alive).
    """
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        parser = sseproto.EventStreamParser()
        events = 0
        for chunk in wl.chunks:
            events += len(parser.feed(chunk))
        parser.close()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- output ---------------------------------------------------------------------------


def _fmt_seconds(r: Result) -> str:
    text = f"{r.seconds:.4f}" if r.seconds < 10 else f"{r.seconds:.2f}"
    return f">{text}" if r.timed_out else text


def _ratio_text(c: Comparison) -> str:
    if c.ratio is None or c.fastest_peer is None:
        return "n/a"
    bound = ">" if c.lower_bound else ""
    return f"{bound}{c.ratio:.2f}x"


def print_table(
    wl: Workload, results: list[Result], comps: dict[str, Comparison], warnings: list[str]
) -> None:
    print(f"\n{wl.name}: {wl.description}")
    header = f"  {'implementation':<16}{'seconds':>10}{'events/s':>14}{'MB/s':>10}"
    header += f"{'runs':>6}  check"
    print(header)
    print("  " + "-" * (len(header) - 2 + 18))
    for r in results:
        print(
            f"  {r.impl:<16}{_fmt_seconds(r):>10}{r.events_per_s:>14,.0f}"
            f"{r.mb_per_s:>10,.1f}{r.runs:>6}  {r.check}"
        )
    for name, comp in comps.items():
        if comp.fastest_peer is not None:
            print(f"  {name}: {_ratio_text(comp)} fastest peer ({comp.fastest_peer})")
    for w in warnings:
        print(f"  WARNING {w}")


def print_summary(rows: list[tuple[Workload, list[Result], dict[str, Comparison]]]) -> None:
    print("\nSummary (events/s, best run; ratio = fastest peer's time / sseproto's)")
    header = f"  {'workload':<10}{'sseproto ev/s':>15}  {'fastest peer':<16}"
    header += f"{'peer ev/s':>13}{'ratio':>9}"
    if compiled:
        header += f"{'pure-Python ratio':>19}"
    print(header)
    print("  " + "-" * (len(header) - 2))
    for wl, results, comps in rows:
        comp = comps[REFERENCE]
        ref = next(r for r in results if r.impl == REFERENCE)
        peer_eps = f"{comp.peer_events_per_s:,.0f}" if comp.peer_events_per_s else "n/a"
        line = (
            f"  {wl.name:<10}{ref.events_per_s:>15,.0f}  {comp.fastest_peer or 'n/a':<16}"
            f"{peer_eps:>13}{_ratio_text(comp):>9}"
        )
        if PURE in comps:
            line += f"{_ratio_text(comps[PURE]):>19}"
        print(line)


def _ran(name: str) -> bool:
    return any(i.name == name for i in IMPLS)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def _versions() -> dict[str, str]:
    out = {"python": f"{platform.python_implementation()} {platform.python_version()}"}
    for dist in ("sseproto", "httpx-sse", "httpx", "sseclient-py", "launchdarkly-eventsource"):
        out[dist] = _version(dist)
    out["sseproto parser"] = "compiled (mypyc)" if compiled else "pure Python"
    return out


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="10x smaller workloads")
    ap.add_argument("--repeat", type=int, default=3, metavar="N", help="best of N runs (3)")
    ap.add_argument("--only", metavar="W1,W2", help="comma-separated workloads (w1..w5)")
    ap.add_argument(
        "--timeout-per-run",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"interrupt a run after S seconds, 0 for never ({DEFAULT_TIMEOUT_S:g})",
    )
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = ap.parse_args(argv)
    names = ALL_WORKLOADS
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(names) - set(ALL_WORKLOADS))
        if unknown:
            ap.error(f"unknown workload(s) {', '.join(unknown)}; choose from {ALL_WORKLOADS}")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")

    versions = _versions()
    _log("building workloads ...")
    workloads = build_workloads(names, args.quick)
    if not args.json:
        print(", ".join(f"{k} {v}" for k, v in versions.items()))
        print(
            f"best of {args.repeat} run(s); runs over {SLOW_RUN_S:g} s are not repeated, "
            f"runs over {args.timeout_per_run:g} s are interrupted"
        )

    rows: list[tuple[Workload, list[Result], dict[str, Comparison]]] = []
    report: dict[str, Any] = {
        "versions": versions,
        "quick": args.quick,
        "repeat": args.repeat,
        "timeout_per_run": args.timeout_per_run,
        "workloads": [],
    }
    for wl in workloads:
        results = []
        for impl in IMPLS:
            _log(f"{wl.name} {impl.name} ...")
            results.append(measure(impl, wl, args.repeat, args.timeout_per_run))
        warnings = cross_check(wl, results)
        comps = {name: compare(results, name) for name in (REFERENCE, PURE) if _ran(name)}
        rows.append((wl, results, comps))
        if not args.json:
            print_table(wl, results, comps, warnings)
        report["workloads"].append(
            {
                "name": wl.name,
                "description": wl.description,
                "events": wl.events,
                "bytes": wl.size,
                "chunk_size": wl.chunk_size,
                "chunks": len(wl.chunks),
                "results": [asdict(r) for r in results],
                "comparison": {name: asdict(c) for name, c in comps.items()},
                "warnings": warnings,
            }
        )

    memory: dict[str, Any] | None = None
    big = next((wl for wl in workloads if wl.name == "w3"), None)
    if big is not None:
        _log("w3 sseproto peak memory (tracemalloc) ...")
        peak = sseproto_peak_memory(big)
        memory = {"workload": "w3", "peak_bytes": peak, "event_bytes": BIG_DATA_BYTES}
    report["sseproto_memory"] = memory

    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0
    print_summary(rows)
    if memory is not None:
        peak = memory["peak_bytes"]
        print(
            f"\nsseproto peak memory on w3 (tracemalloc): {peak:,} bytes = {peak / MIB:.1f} MiB "
            f"= {peak / BIG_DATA_BYTES:.1f}x one event"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
