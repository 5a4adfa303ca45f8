"""Driver benchmark: sseproto's asyncio, blocking and trio drivers against httpx + httpx-sse.

A benchmark, not a test (nothing fails on timing; a client that reads the wrong events
does fail the run).

What is measured
----------------
The whole client stack, from TLS on a loopback socket to the body of the caller's
``for`` loop: one GET of an event stream of ``--events`` events, each client counting
the events and adding up the length of their data until the last one (its type is
``completed``), then leaving the block, as a caller would. The clients come in pairs,
each sseproto driver against httpx + httpx-sse under the same runner:

* ``asyncio``: ``sseproto.asyncio.open_event_stream(url, headers=..., ssl_context=...)``
  against ``httpx.AsyncClient(verify=ctx)`` + ``aconnect_sse(client, "GET", url,
  headers=...)`` + ``aiter_sse()``, each under ``asyncio.run``;
* ``uvloop``: the same two under ``uvloop.run`` (when uvloop is installed);
* ``sync``: ``sseproto.sync.open_event_stream`` against ``httpx.Client(verify=ctx)`` +
  ``connect_sse`` + ``iter_sse()``;
* ``trio``: ``sseproto.open_event_stream`` (trio + h11, no httpx) against httpx +
  httpx-sse under ``trio.run`` (httpx's anyio backend), a reference pair.

Under asyncio, uvloop and sync, a third row, the **floor** (``httpx raw body``), reads
the same response with ``client.stream(...)`` + ``aiter_raw()`` / ``iter_raw()`` and
only counts blank lines: what ``sseproto.asyncio`` and ``sseproto.sync`` get from httpx
before any SSE work. Its ratio is the ceiling of any SSE client built on httpx's raw
body, so the distance between it and the sseproto row is all the driver's own code
could still gain (``--no-floor`` leaves it out).

Each client creates its own HTTP client inside the clock (as sseproto's drivers do
when given no ``http_client=``), so the TLS handshake is counted; over 100,000 events
it is amortised (about 0.1 % of a run). A client whose module cannot be imported (a
tree without ``sseproto.asyncio``, no uvloop) is left out, with a note.

The server
----------
A dedicated TLS server (stdlib ``ssl`` + ``socket``, a thread per connection) runs in
a process of its own (multiprocessing, spawn), so every figure is the client's. It
answers ``GET /events`` with the same pre-encoded bytes for every client:
``text/event-stream``, ``Connection: close``, chunked with one HTTP chunk per event (as
an ASGI server frames a stream; ``--framing close`` sends a close-delimited body
instead), written in 256 KiB writes. Each event is about 150 bytes, like the task
stream's progress events: ``id: N``, ``event: progress`` and a one-line JSON
``data:``; the last is ``event: completed``. The certificates come from trustme; the
clients trust its CA through ``ssl.create_default_context(cafile=...)``.

sseproto's own test server (``sseproto.testing.serve``: trio + h11, one TLS write per
event) is not used: it peaks at about 12,000 events/s on a 2-CPU VM, slower than every
client here, so the wall-clock figures would all read the server's speed.

The figures
-----------
Client CPU time (``time.process_time()`` in the client process, which runs no other
thread) per event is the figure that compares clients: **events per CPU-second**. Wall
events/s is shown for information: with a server this fast, the client is the
bottleneck, and on an idle machine the two agree within a few percent; when other
processes compete for the CPUs, wall time grows much more than CPU time (which still
varies: by up to ±30 % between identical runs on a shared VM). Each client first reads a
200-event warm-up stream (imports, first-use caches), then the clients run
interleaved, ``--repeat`` rounds, the order rotated each round to spread drift; the
best (least) wall and CPU times of each client are kept, separately. ``gc.collect()``
runs before each run, outside the clock.

The ratio is the sseproto driver's events per CPU-second over its httpx-sse
counterpart's, under the same runner; above 1 means sseproto is faster.

Checks: each client must read exactly ``--events`` events, and their data must add up
to the length the server sent (the floor counts events only). A client that fails (a
mismatch or an exception) is shown as failed, runs no more, and the exit status is 1.

How to run
----------
::

    python benchmarks/bench_drivers.py                    # 100,000 events, best of 3
    python benchmarks/bench_drivers.py --quick            # 5,000 events (CI smoke)
    python benchmarks/bench_drivers.py --only asyncio,sync --repeat 5
    python benchmarks/bench_drivers.py --json             # machine-readable, on stdout
    python benchmarks/bench_drivers.py --framing close    # one HTTP chunk per TLS read
    python benchmarks/bench_drivers.py --profile asyncio/sseproto   # cProfile, one run

``--profile RUNNER/KIND`` (kind: ``sseproto``, ``httpx-sse`` or ``floor``) runs one
client once under cProfile instead, and prints its top functions by own time and by
cumulative time.

Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib
import io
import json
import multiprocessing
import os
import platform
import pstats
import random
import socket
import ssl
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

import httpx
import trio
import trustme
from httpx_sse import aconnect_sse, connect_sse

import sseproto
from sseproto._parser import compiled

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

#: The server's socket writes; TLS cuts them into 16 KiB records.
WRITE_BYTES = 256 * 1024
WARMUP_EVENTS = 200
#: The kinds of client: the baseline, sseproto's driver, and the floor of httpx.
BASELINE, SSEPROTO, FLOOR = "httpx-sse", "sseproto", "floor"
HTTPX_SSE = "httpx + httpx-sse"
RAW = "httpx raw body (floor)"
GROUPS = ("asyncio", "uvloop", "sync", "trio")
#: (events, total length of their data) as a client counted them.
Tally = tuple[int, int]


# -- the stream ------------------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    """An event stream as the server sends it, and what a client must count."""

    events: int
    data_length: int  # the sum of len(event.data): ASCII, so bytes = characters
    body: bytes  # the event-stream bytes, before HTTP framing


def build_stream(n: int, seed: int = 0) -> Stream:
    """``n`` events: ``n - 1`` progress updates, then the completion."""
    rng = random.Random(seed)
    task_id = uuid.UUID(int=rng.getrandbits(128), version=4)
    parts: list[str] = []
    data_length = 0
    for i in range(1, n + 1):
        if i < n:
            total = rng.randint(10, 50)
            step = rng.randint(1, total)
            node = rng.randint(1, 12)
            event = "progress"
            data = (
                f'{{"task_id":"{task_id}","progress":{round(step / total, 2)},'
                f'"current_node":"{node}","step_current":{step},"step_total":{total}}}'
            )
        else:
            event = "completed"
            data = f'{{"task_id":"{task_id}","result":{{"ok":true}}}}'
        data_length += len(data)
        parts.append(f"id: {i}\nevent: {event}\ndata: {data}\n\n")
    return Stream(n, data_length, "".join(parts).encode())


def http_response(stream: Stream, framing: str) -> bytes:
    """The whole HTTP response: head and (framed) body."""
    head = [
        "HTTP/1.1 200 OK",
        "Content-Type: text/event-stream; charset=utf-8",
        "Cache-Control: no-cache",
        "Connection: close",
    ]
    if framing == "close":
        return ("\r\n".join(head) + "\r\n\r\n").encode() + stream.body
    head.append("Transfer-Encoding: chunked")
    out = [("\r\n".join(head) + "\r\n\r\n").encode()]
    for block in stream.body.split(b"\n\n")[:-1]:  # one HTTP chunk per event
        event = block + b"\n\n"
        out.append(b"%x\r\n%s\r\n" % (len(event), event))
    out.append(b"0\r\n\r\n")
    return b"".join(out)


# -- the server (its own process) ------------------------------------------------------


def _serve(files: dict[bytes, str], pem: str, pipe: Connection) -> None:
    """The server process: answers each connection in a thread of its own."""
    responses: dict[bytes, bytes] = {}
    for target, path in files.items():
        with open(path, "rb") as f:
            responses[target] = f.read()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pem)
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    pipe.send(listener.getsockname()[1])
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=_answer, args=(context, sock, responses), daemon=True).start()


def _answer(context: ssl.SSLContext, sock: socket.socket, responses: dict[bytes, bytes]) -> None:
    try:
        with context.wrap_socket(sock, server_side=True) as tls:
            request = b""
            while b"\r\n\r\n" not in request:
                data = tls.recv(65536)
                if not data:
                    return
                request += data
            target = request.split(b" ", 2)[1]
            response = responses.get(target)
            if response is None:
                tls.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                return
            view = memoryview(response)
            for i in range(0, len(view), WRITE_BYTES):
                tls.sendall(view[i : i + WRITE_BYTES])
            tls.settimeout(5)
            tls.unwrap()  # close_notify: a close-delimited body ends cleanly
    except OSError:  # the client left first (it stops at the last event)
        pass


class Server:
    """The benchmark's TLS server, in another process."""

    def __init__(self, responses: dict[bytes, bytes]) -> None:
        """Serve each of ``responses`` (whole HTTP responses) at its request target."""
        self._directory = tempfile.TemporaryDirectory(prefix="bench-drivers-")
        here = self._directory.name
        ca = trustme.CA()
        ca_path, pem = os.path.join(here, "ca.pem"), os.path.join(here, "server.pem")
        ca.cert_pem.write_to_path(ca_path)
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(pem)
        self.ssl_context = ssl.create_default_context(cafile=ca_path)
        files: dict[bytes, str] = {}  # files, not arguments: the spawn pipe stays small
        for n, (target, response) in enumerate(responses.items()):
            files[target] = os.path.join(here, f"response-{n}")
            with open(files[target], "wb") as f:
                f.write(response)
        spawn = multiprocessing.get_context("spawn")  # no inherited event loop or locks
        parent, child = spawn.Pipe()
        self.process = spawn.Process(target=_serve, args=(files, pem, child), daemon=True)
        self.process.start()
        if not parent.poll(60):
            self.stop()
            raise SystemExit("the server process did not start")
        self.origin = f"https://127.0.0.1:{parent.recv()}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.join()
        self._directory.cleanup()


# -- the clients -----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    url: str
    ssl_context: ssl.SSLContext
    headers: dict[str, str]


@dataclass(frozen=True)
class Run:
    events: int
    data_length: int
    wall: float
    cpu: float


async def httpx_sse_async(t: Target) -> Tally:
    count = length = 0
    async with (
        httpx.AsyncClient(verify=t.ssl_context) as client,
        aconnect_sse(client, "GET", t.url, headers=t.headers) as source,
    ):
        async for sse in source.aiter_sse():
            count += 1
            length += len(sse.data)
            if sse.event == "completed":
                break
    return count, length


def httpx_sse_sync(t: Target) -> Tally:
    count = length = 0
    with (
        httpx.Client(verify=t.ssl_context) as client,
        connect_sse(client, "GET", t.url, headers=t.headers) as source,
    ):
        for sse in source.iter_sse():
            count += 1
            length += len(sse.data)
            if sse.event == "completed":
                break
    return count, length


def _blank_lines(chunk: bytes, newline: bool) -> int:
    """The events that end in ``chunk`` (one blank line each; none is split across
    chunks unseen: ``newline`` says whether the previous chunk ended in LF)."""
    return chunk.count(b"\n\n") + (newline and chunk[:1] == b"\n")


async def httpx_floor_async(t: Target) -> Tally:
    """httpx's raw body and nothing else: what ``sseproto.asyncio`` reads."""
    count, newline = 0, False
    async with (
        httpx.AsyncClient(verify=t.ssl_context) as client,
        client.stream("GET", t.url, headers=t.headers) as response,
    ):
        async for chunk in response.aiter_raw():
            count += _blank_lines(chunk, newline)
            newline = chunk[-1:] == b"\n"
    return count, -1


def httpx_floor_sync(t: Target) -> Tally:
    """httpx's raw body and nothing else: what ``sseproto.sync`` reads."""
    count, newline = 0, False
    with (
        httpx.Client(verify=t.ssl_context) as client,
        client.stream("GET", t.url, headers=t.headers) as response,
    ):
        for chunk in response.iter_raw():
            count += _blank_lines(chunk, newline)
            newline = chunk[-1:] == b"\n"
    return count, -1


def sseproto_async(module: Any) -> Callable[[Target], Coroutine[Any, Any, Tally]]:
    """A reader on ``module.open_event_stream`` (sseproto.asyncio, or sseproto for trio)."""

    async def read(t: Target) -> Tally:
        count = length = 0
        async with module.open_event_stream(
            t.url, headers=t.headers, ssl_context=t.ssl_context
        ) as stream:
            async for event in stream:
                count += 1
                length += len(event.data)
                if event.event == "completed":
                    break
        return count, length

    return read


def sseproto_sync(module: Any) -> Callable[[Target], Tally]:
    def read(t: Target) -> Tally:
        count = length = 0
        with module.open_event_stream(
            t.url, headers=t.headers, ssl_context=t.ssl_context
        ) as stream:
            for event in stream:
                count += 1
                length += len(event.data)
                if event.event == "completed":
                    break
        return count, length

    return read


def _clock() -> tuple[float, float]:
    gc.collect()
    return time.perf_counter(), time.process_time()


def _run(tally: Tally, started: tuple[float, float]) -> Run:
    wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
    return Run(tally[0], tally[1], wall, cpu)


Runner = Callable[[Target], Run]
AsyncStart = Callable[[Callable[[], Coroutine[Any, Any, Run]]], Run]


def in_loop(start: AsyncStart, read: Callable[[Target], Coroutine[Any, Any, Tally]]) -> Runner:
    """A runner that starts an event loop and times ``read`` inside it (the loop's own
    start and teardown are not counted)."""

    def run(t: Target) -> Run:
        async def timed() -> Run:
            started = _clock()
            return _run(await read(t), started)

        return start(timed)

    return run


def blocking(read: Callable[[Target], Tally]) -> Runner:
    def run(t: Target) -> Run:
        started = _clock()
        return _run(read(t), started)

    return run


def start_asyncio(main: Callable[[], Coroutine[Any, Any, Run]]) -> Run:
    return asyncio.run(main())


def start_trio(main: Callable[[], Coroutine[Any, Any, Run]]) -> Run:
    return trio.run(main)


@dataclass
class Client:
    group: str  # the runner: asyncio, uvloop, sync, trio
    kind: str  # BASELINE, SSEPROTO or FLOOR
    name: str
    run: Runner
    runs: list[Run] = field(default_factory=list)
    error: str | None = None

    @property
    def key(self) -> str:
        return f"{self.group}/{self.kind}"


def build_clients(groups: Sequence[str], floor: bool) -> tuple[list[Client], list[str]]:
    """The clients of ``groups`` that can run here, and notes about those that cannot."""
    clients: list[Client] = []
    notes: list[str] = []

    def optional(module: str) -> Any:
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            notes.append(f"{module} not available ({exc}): its rows are left out")
            return None

    uvloop = optional("uvloop") if "uvloop" in groups else None
    sse_asyncio = optional("sseproto.asyncio") if {"asyncio", "uvloop"} & set(groups) else None
    sse_sync = optional("sseproto.sync") if "sync" in groups else None

    def pair(group: str, start: AsyncStart, module: Any, name: str) -> None:
        clients.append(Client(group, BASELINE, HTTPX_SSE, in_loop(start, httpx_sse_async)))
        if module is not None:
            read = sseproto_async(module)
            clients.append(Client(group, SSEPROTO, name, in_loop(start, read)))
        if floor and group != "trio":  # sseproto's trio driver does not use httpx
            clients.append(Client(group, FLOOR, RAW, in_loop(start, httpx_floor_async)))

    for group in groups:
        if group == "asyncio":
            pair(group, start_asyncio, sse_asyncio, "sseproto.asyncio")
        elif group == "uvloop" and uvloop is not None:

            def start_uvloop(main: Callable[[], Coroutine[Any, Any, Run]]) -> Run:
                result: Run = uvloop.run(main())
                return result

            pair(group, start_uvloop, sse_asyncio, "sseproto.asyncio")
        elif group == "sync":
            clients.append(Client(group, BASELINE, HTTPX_SSE, blocking(httpx_sse_sync)))
            if sse_sync is not None:
                read_sync = sseproto_sync(sse_sync)
                clients.append(Client(group, SSEPROTO, "sseproto.sync", blocking(read_sync)))
            if floor:
                clients.append(Client(group, FLOOR, RAW, blocking(httpx_floor_sync)))
        elif group == "trio":
            pair(group, start_trio, sseproto, "sseproto (trio + h11)")
    return clients, notes


def attempt(client: Client, target: Target, expected: Stream) -> Run | None:
    """One run of ``client``, checked; on failure, its error is set and None returned."""
    try:
        run = client.run(target)
    except Exception as exc:
        client.error = f"{type(exc).__name__}: {exc}"
        return None
    length = expected.data_length if run.data_length < 0 else run.data_length  # a floor
    if (run.events, length) != (expected.events, expected.data_length):
        client.error = (
            f"read {run.events:,} events with {run.data_length:,} characters of data, "
            f"not {expected.events:,} with {expected.data_length:,}"
        )
        return None
    return run


# -- results ---------------------------------------------------------------------------


@dataclass
class Row:
    runner: str
    kind: str  # httpx-sse (the baseline), sseproto or floor
    client: str
    events: int
    runs: int
    wall_s: float | None
    cpu_s: float | None
    events_per_s: float | None
    events_per_cpu_s: float | None
    ratio: float | None  # events per CPU-s over the runner's httpx-sse
    ratio_wall: float | None  # events/s (wall) over the runner's httpx-sse
    error: str | None


def rows_of(clients: Sequence[Client], events: int) -> list[Row]:
    rows: list[Row] = []
    for c in clients:
        wall = min((r.wall for r in c.runs), default=None)
        cpu = min((r.cpu for r in c.runs), default=None)
        rows.append(
            Row(
                c.group,
                c.kind,
                c.name,
                events,
                len(c.runs),
                wall,
                cpu,
                events / wall if wall else None,
                events / cpu if cpu else None,
                None,
                None,
                c.error,
            )
        )
    base = {r.runner: r for r in rows if r.kind == BASELINE and r.error is None}
    for r in rows:
        b = base.get(r.runner)
        if r.kind != BASELINE and b is not None and r.error is None:
            if r.events_per_cpu_s and b.events_per_cpu_s:
                r.ratio = r.events_per_cpu_s / b.events_per_cpu_s
            if r.events_per_s and b.events_per_s:
                r.ratio_wall = r.events_per_s / b.events_per_s
    return rows


def print_table(rows: Sequence[Row]) -> None:
    head = (
        f"{'runner':<9}{'client':<24}{'events':>9}{'wall s':>8}{'CPU s':>8}"
        f"{'events/s':>10}{'events/CPU-s':>14}{'ratio':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        if r.error is not None or r.wall_s is None or r.cpu_s is None:
            print(f"{r.runner:<9}{r.client:<24}  FAILED: {r.error}")
            continue
        ratio = "1" if r.kind == BASELINE else f"{r.ratio:.2f}x" if r.ratio else "-"
        print(
            f"{r.runner:<9}{r.client:<24}{r.events:>9,}{r.wall_s:>8.3f}{r.cpu_s:>8.3f}"
            f"{r.events_per_s or 0:>10,.0f}{r.events_per_cpu_s or 0:>14,.0f}{ratio:>7}"
        )


def print_summary(rows: Sequence[Row]) -> None:
    if not any(r.kind == SSEPROTO and r.ratio for r in rows):
        return
    print("\nsseproto's events per CPU-second over httpx + httpx-sse's, same runner:")
    floors = {r.runner: r for r in rows if r.kind == FLOOR and r.ratio}
    for r in rows:
        if r.kind == SSEPROTO and r.ratio:
            line = f"  {r.runner:<8} {r.client:<22} {r.ratio:.2f}x"
            if r.ratio_wall:
                line += f" (wall events/s: {r.ratio_wall:.2f}x)"
            floor = floors.get(r.runner)
            if floor is not None and floor.ratio:
                line += f"; the httpx floor: {floor.ratio:.2f}x"
            print(line)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def versions() -> dict[str, str]:
    out = {"python": f"{platform.python_implementation()} {platform.python_version()}"}
    for dist in ("sseproto", "httpx", "httpx-sse", "httpcore", "h11", "anyio", "trio", "uvloop"):
        out[dist] = _version(dist)
    out["sseproto parser"] = "compiled (mypyc)" if compiled else "pure Python"
    return out


def profile(client: Client, target: Target, expected: Stream, top: int) -> int:
    """One run of ``client`` under cProfile; the top functions on stdout."""
    profiler = cProfile.Profile()
    profiler.enable()
    run = attempt(client, target, expected)
    profiler.disable()
    if run is None:
        print(f"{client.key} FAILED: {client.error}")
        return 1
    print(
        f"{client.key} ({client.name}) under cProfile: {run.events:,} events, "
        f"{run.cpu:.3f} CPU s (profiling inflates it)\n"
    )
    for order in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).strip_dirs().sort_stats(order).print_stats(top)
        print(text.getvalue().split("\n", 3)[3] if order == "tottime" else text.getvalue())
    return 0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--events", type=int, default=100_000, metavar="N", help="(100,000)")
    ap.add_argument("--quick", action="store_true", help="5,000 events (a CI smoke run)")
    ap.add_argument("--repeat", type=int, default=3, metavar="N", help="best of N runs (3)")
    ap.add_argument("--only", metavar="G1,G2", help=f"comma-separated runners ({','.join(GROUPS)})")
    ap.add_argument(
        "--framing",
        choices=("chunked", "close"),
        default="chunked",
        help="the body: chunked, one chunk per event (default), or close-delimited",
    )
    ap.add_argument(
        "--no-floor", action="store_true", help="leave out the httpx raw-body floor rows"
    )
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument(
        "--profile",
        metavar="RUNNER/CLIENT",
        help="instead: one cProfile'd run of e.g. asyncio/sseproto, sync/httpx-sse, sync/floor",
    )
    ap.add_argument("--top", type=int, default=30, help="functions shown by --profile (30)")
    args = ap.parse_args(argv)
    events = 5_000 if args.quick else args.events
    if events < 2:
        ap.error("--events must be at least 2")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    groups: list[str] = list(GROUPS)
    if args.only:
        groups = [g.strip() for g in args.only.split(",") if g.strip()]
        unknown = sorted(set(groups) - set(GROUPS))
        if unknown:
            ap.error(f"unknown runner(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    if args.profile:
        groups = [args.profile.partition("/")[0]]
        if groups[0] not in GROUPS:
            ap.error(f"--profile: the runner is one of {', '.join(GROUPS)}")

    clients, notes = build_clients(groups, floor=not args.no_floor)
    for note in notes:
        _log(f"note: {note}")
    if args.profile:
        clients = [c for c in clients if c.key == args.profile]
        if not clients:
            ap.error(f"--profile: no client {args.profile} here (e.g. asyncio/sseproto)")

    _log(f"building {events:,} events ...")
    stream = build_stream(events)
    warmup = build_stream(WARMUP_EVENTS)
    responses = {
        b"/events": http_response(stream, args.framing),
        b"/warmup": http_response(warmup, args.framing),
    }
    server = Server(responses)
    headers = {"Authorization": "Bearer bench-drivers"}
    target = Target(f"{server.origin}/events", server.ssl_context, headers)
    warm = Target(f"{server.origin}/warmup", server.ssl_context, headers)
    try:
        for c in clients:
            _log(f"warm-up {c.group} {c.name} ...")
            attempt(c, warm, warmup)
        if args.profile:
            return profile(clients[0], target, stream, args.top)
        for i in range(args.repeat):
            shift = i % len(clients)
            for c in clients[shift:] + clients[:shift]:
                if c.error is not None:
                    continue
                _log(f"round {i + 1}/{args.repeat}: {c.group} {c.name} ...")
                run = attempt(c, target, stream)
                if run is not None:
                    c.runs.append(run)
                    _log(f"  {run.wall:.3f} s wall, {run.cpu:.3f} s CPU")
    finally:
        server.stop()

    rows = rows_of(clients, events)
    info = versions()
    size = len(responses[b"/events"])
    framing = "chunked, one chunk per event" if args.framing == "chunked" else "close-delimited"
    if args.json:
        report = {
            "versions": info,
            "events": events,
            "response_bytes": size,
            "framing": args.framing,
            "repeat": args.repeat,
            "notes": notes,
            "rows": [asdict(r) for r in rows],
        }
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(", ".join(f"{k} {v}" for k, v in info.items()))
        print(
            f"{events:,} events ({size / 1e6:.1f} MB, {len(stream.body) / events:.0f} bytes "
            f"an event, {framing}) over TLS on loopback; best of {args.repeat}, "
            f"wall and CPU separately; ratio: events per CPU-s over the runner's httpx-sse"
        )
        for note in notes:
            print(f"note: {note}")
        print()
        print_table(rows)
        print_summary(rows)
    return 1 if any(c.error is not None for c in clients) else 0


if __name__ == "__main__":
    sys.exit(main())
