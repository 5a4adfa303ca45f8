"""Watchers at scale: per-event CPU and memory of many established TLS event streams.

A benchmark, not a test (nothing fails on timing or size; a client that loses an
event or a result does fail the run).

What is measured
----------------
Many concurrent, long-lived, mostly idle event streams in one client process (the
"watchers at scale" case: a service following thousands of tasks), over TLS on
loopback. Each client runs in a fresh process of its own (multiprocessing, spawn);
every figure is that process's.

1. **Trickle CPU per event.** ``N`` streams (``--streams``, 1,000 by default) are
   opened, 100 at a time, and each receives its first event. The server then writes
   ``--rounds`` rounds of one event to every stream, round-robin, a round every
   ``--pace`` ms per 100 streams (50: 0.5 s for 1,000 streams; at least 50 ms). A
   round is a steady trickle, not a burst: its events are spread evenly over the
   period (an event every 0.5 ms, written in slices of about a millisecond, each due
   at a fixed time), so that each read of the client carries one event, and every
   client sees the same arrival pattern whatever its speed (a burst would let a slow
   client handle several events per wake-up of its loop, and a fast one pay a
   wake-up for each; ``--arrival burst`` writes each round at once all the same).
   The events are the task API's: about
   190 bytes of ``id:``, ``event: progress`` and a one-line JSON ``data:`` (task id,
   progress, message, timestamp), one HTTP chunk each (chunked,
   ``text/event-stream``); the last of each stream is ``event: completed`` (task id,
   output, completed_at), so that typed streams end. The figure is the client
   process's CPU time (``time.process_time()``) from the moment all ``N`` streams
   have their first event to the moment the last event arrives, over the ``N x
   --rounds`` events of that window: connecting, and closing afterwards, are outside.
   The pacing is the server's and fixed, slow enough that no client is saturated:
   the ``CPU %`` column (the client's CPU over the window's wall time) shows how far
   from it each one is.
2. **Idle memory per established stream**: the client's RSS (``/proc/self/statm``)
   once the ``N`` streams are open and idle (each had its first event), minus its
   RSS before it opened any, over ``N`` (``gc.collect()`` before each reading). Both
   readings come after a warm-up stream, so that imports and first-use caches are
   not counted as the streams'.
3. **Set-up with the default SSL context**: ``--setup`` streams (1,000) opened 100 at
   a time by sseproto without ``ssl_context=`` (the trust coming from
   ``SSL_CERT_FILE``, set for the client process: the system's CA bundle plus the
   benchmark's CA, so that loading it costs what a real default context costs)
   against the same with one explicit shared context: CPU per connection (TCP, TLS,
   the request and the first event) and idle memory per stream. sseproto builds its
   default context once per process and shares it (``sseproto/_tls.py``); a context
   built per connection would show as milliseconds and hundreds of KiB per stream.
   The first stream of each process (its warm-up, which builds that default context)
   is shown apart.
4. **Watchers**: ``--watchers`` (10,000) concurrent ``sseproto.watch(task_id,
   api_key=..., base_url=...)`` calls in one trio process with default settings
   (trust from ``SSL_CERT_FILE``, default timeouts), all started at once. The server
   sends each stream its first event at once, and once every watcher is connected
   (or nobody connected for 30 s), three rounds paced as above (5 s each for 10,000
   watchers): two progress events and the ``completed`` one; each watch then calls
   ``GET /tasks/{id}/result`` (2,000 a second, as the completions come). Shown: the
   client's peak RSS (``ru_maxrss``), its RSS once every watcher is connected and
   idle (when the first progress round reaches one: an ``on_event=`` callback, the
   only argument given besides the task id, key and base URL), wall and CPU time,
   the retries sseproto logged, and the results received,
   which must equal the watchers (a lost result fails the run, loudly). If starting
   them all at once loses results, the run is repeated with the watchers started
   at ``--stagger`` a second, and both lines are shown.
5. **Bulk**: one stream of ``--bulk-events`` events (100,000; 20,000 with
   ``--quick``), the same events as the trickle's, its whole body written at once
   (one ``transport.write``; the server sends it as fast as the client reads), read
   by each client of ``BULK_CLIENTS`` after its warm-up stream. Shown: events a
   second (wall) and client CPU per event from the stream's first event to its last,
   and ``vs httpx``, the row's events a second over the ``httpx`` row's. A stream
   that loses an event fails the run.

The clients (``--only`` takes their names)
------------------------------------------
* ``floor``: a bare trio loop per stream: ``trio.open_tcp_stream`` +
  ``trio.SSLStream``, the GET sent, then ``receive_some`` counting blank lines. No
  HTTP parsing, no timeouts: the least any trio client can do.
* ``stream``: ``sseproto.open_event_stream(url, headers=..., ssl_context=ctx)``.
* ``task_events``: one ``sseproto.Client(api_key, base_url, ssl_context=ctx)``, and
  ``async for event in client.task_events(task_id)`` per stream (typed events).
* ``httpx``: one ``httpx.AsyncClient(verify=ctx, limits=httpx.Limits(
  max_connections=None), timeout=...)`` under ``asyncio.run``, and
  ``aconnect_sse`` + ``aiter_sse()`` + ``json.loads(sse.data)`` per stream (the fair
  equivalent of typed decoding). The ``vs httpx`` column compares with this row.
* ``asyncio``: ``sseproto.asyncio.Client(api_key, base_url, http_client=...)`` with
  the same httpx client as the row above (its own would allow 100 connections), and
  ``task_events`` per stream.
* ``httpx-trio``: the ``httpx`` row's code under ``trio.run`` (httpx's anyio backend).

All of them share one explicit ``ssl.SSLContext`` (trusting the benchmark's CA) in
parts 1, 2 and 5, and the same timeouts where they have any (10 s to connect, 60 s
between reads). ``--only`` also takes ``setup``, ``watch`` and ``bulk`` (parts 3, 4
and 5; ``bulk`` alone runs every client of part 5, ``bulk`` with client names those
of them that are in ``BULK_CLIENTS``).

The server
----------
One process of its own (multiprocessing, spawn): asyncio on uvloop (when installed)
with the standard ``ssl`` module, one ``asyncio.Protocol`` per connection (no thread
per connection), so that it holds 10,000+ TLS connections on 2 CPUs. Every event is
pre-encoded (as its HTTP chunk) when its stream is requested; a round is one
``transport.write`` per stream, and so is a bulk stream's whole body. It plays just
enough of the task API, under ``https://127.0.0.1:PORT/api/v1/r`` (any
``Authorization: Bearer`` accepted):
``GET /tasks/{id}/events`` (resuming after ``Last-Event-ID``), ``GET
/tasks/{id}/result`` and ``GET /tasks/{id}`` (keep-alive JSON). While a watch
session waits for its watchers, it sends each stream a ``: keep-alive`` comment every
15 s (as a real server does; without it, the first watchers would reach their 60 s
read timeout while the last ones connect). The certificates come from trustme (ECDSA).

How to run
----------
::

    python benchmarks/bench_watchers.py                     # N=1,000, 10,000 watchers, best of 3
    python benchmarks/bench_watchers.py --quick             # N=200, 500 watchers (CI smoke)
    python benchmarks/bench_watchers.py --streams 1000,5000 --rounds 10
    python benchmarks/bench_watchers.py --arrival burst       # each round written at once
    python benchmarks/bench_watchers.py --only floor,task_events,httpx --repeat 5
    python benchmarks/bench_watchers.py --watchers 20000 --only watch
    python benchmarks/bench_watchers.py --only bulk --bulk-events 200000
    python benchmarks/bench_watchers.py --json              # machine-readable, on stdout

Progress goes to stderr, results to stdout. ``--repeat`` runs each client that many
times, each in a fresh process, in an order that rotates; the best (least) of each
figure is kept, separately.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import json
import logging
import multiprocessing
import os
import resource
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import bench_drivers
import httpx
import trio
import trustme
from httpx_sse import aconnect_sse

import sseproto
import sseproto.asyncio

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager
    from multiprocessing.connection import Connection

API_PREFIX = "/api/v1/r"
API_KEY = "bench-watchers"
HEADERS = {"Authorization": f"Bearer {API_KEY}"}
#: Streams a client opens at once (it starts the next when one has its first event).
BATCH = 100
#: The shortest time between two rounds of the server.
MIN_PERIOD = 0.05
#: The default ms between two rounds, per 100 streams: 1,000 streams, a round every
#: 0.5 s, an event every 0.5 ms (the slowest client here needs about half of that).
PACE_MS = 50.0
#: Events of the warm-up stream (all sent at once).
WARM_EVENTS = 3
#: The events of a watched task: the first, two progress rounds, the completion.
WATCH_EVENTS = 4
#: A watch session starts its rounds this long after the last new watcher, at worst.
WATCH_STALL = 30.0
HEARTBEAT = 15.0
#: Watchers started per second when starting them all at once lost results.
FALLBACK_STAGGER = 1000.0
OUTPUT_JSON = '{"9": {"images": [{"filename": "ComfyUI_00001_.png", "type": "output"}]}}'
OUTPUT = json.loads(OUTPUT_JSON)
COMPLETED_AT = "2026-01-01T00:00:59.123456Z"

R = TypeVar("R")


# -- the stream ------------------------------------------------------------------------


def task_id(session: int, index: int) -> str:
    """A task id shaped like a UUID, naming its session and its stream."""
    return f"{session:08x}-0000-4000-8000-{index:012x}"


def _session_of(task: str) -> int:
    return int(task[:8], 16)


def event_chunks(task: str, total: int) -> list[bytes]:
    """The ``total`` events of ``task``'s stream as HTTP chunks: progress updates, then
    ``completed`` (whose chunk ends the body)."""
    out: list[bytes] = []
    for j in range(1, total + 1):
        stamp = f"2026-01-01T00:{j // 60 % 60:02d}:{j % 60:02d}.123456Z"
        if j < total:
            data = (
                f'{{"task_id": "{task}", "progress": {j / total:.2f}, '
                f'"message": "KSampler: step {j} of {total}", "timestamp": "{stamp}"}}'
            )
            kind = "progress"
        else:
            data = f'{{"task_id": "{task}", "output": {OUTPUT_JSON}, "completed_at": "{stamp}"}}'
            kind = "completed"
        event = f"id: {j}\nevent: {kind}\ndata: {data}\n\n".encode()
        chunk = b"%x\r\n%s\r\n" % (len(event), event)
        out.append(chunk + b"0\r\n\r\n" if j == total else chunk)
    return out


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Connection: close\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
_COMMENT = b": keep-alive\n\n"
KEEP_ALIVE = b"%x\r\n%s\r\n" % (len(_COMMENT), _COMMENT)


def _json_answer(status: bytes, body: str) -> bytes:
    data = body.encode()
    return b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        status,
        len(data),
        data,
    )


def result_answer(task: str) -> bytes:
    return _json_answer(
        b"200 OK",
        f'{{"id": "{task}", "task_output": {OUTPUT_JSON}, "download_url": null, '
        f'"download_urls": null, "expires_at": null, "task_error": "", '
        f'"completed_at": "{COMPLETED_AT}"}}',
    )


def snapshot_answer(task: str, done: bool) -> bytes:
    status, completed = ("completed", f'"{COMPLETED_AT}"') if done else ("running", "null")
    return _json_answer(
        b"200 OK",
        f'{{"id": "{task}", "workflow_id": "wf-bench", "task_status": "{status}", '
        f'"task_error": "", "created_at": "2026-01-01T00:00:00Z", '
        f'"started_at": "2026-01-01T00:00:01Z", "completed_at": {completed}}}',
    )


NOT_FOUND = _json_answer(b"404 Not Found", '{"error": "not found"}')


# -- the server (its own process) ------------------------------------------------------


class _Session:
    """The streams of one client run, and where the server's rounds have got to."""

    def __init__(
        self,
        sid: int,
        expected: int,
        events: int,
        period: float,
        auto: bool,
        burst: bool,
        now: float,
    ) -> None:
        self.sid = sid
        self.burst = burst  # a round at once, or spread over its period
        # 0: every event at once, when requested (session 0, the warm-ups; a bulk stream)
        self.expected = expected
        self.events = events  # per stream, the first and the completion included
        self.period = period
        self.auto = auto  # start the rounds when every stream is there (watch)
        self.sent = events if expected == 0 else 1  # events every stream has had
        self.live: dict[str, _Conn] = {}
        self.seen: set[str] = set()
        self.started = False
        self.created = now
        self.last_new = now
        self.stats: Counter[str] = Counter()
        self.cpu = _cpu()
        self.tasks: list[asyncio.Task[None]] = []  # its rounds, its watchdog

    @property
    def done(self) -> bool:
        return self.sent >= self.events


class _Conn(asyncio.Protocol):
    """One client connection: requests in, pre-encoded answers out."""

    def __init__(self, state: _ServerState) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.session: _Session | None = None  # set while it carries an event stream
        self.task = ""
        self.chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.session is not None or self.transport is None:
            return  # nothing more is read on an event stream
        self.buffer += data
        while self.session is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > 65536:
                    self.transport.close()
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            self.state.answer(self, head)

    def eof_received(self) -> bool:
        return False  # close

    def connection_lost(self, exc: Exception | None) -> None:
        session = self.session
        if session is not None and session.live.get(self.task) is self:
            del session.live[self.task]
        self.transport = None

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class _ServerState:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.sessions: dict[int, _Session] = {}
        self.connections = 0
        self.peak = 0
        self.add_session(0, 0, WARM_EVENTS, MIN_PERIOD, False, True)

    def add_session(
        self, sid: int, expected: int, events: int, period: float, auto: bool, burst: bool
    ) -> None:
        session = _Session(sid, expected, events, period, auto, burst, self.loop.time())
        self.sessions[sid] = session
        if auto:
            session.tasks.append(self.loop.create_task(self._watchdog(session)))

    def answer(self, conn: _Conn, head: bytes) -> None:
        line, _, rest = head.partition(b"\r\n")
        parts = line.split(b" ")
        path = parts[1].split(b"?", 1)[0].decode("latin-1") if len(parts) == 3 else ""
        prefix = API_PREFIX + "/tasks/"
        pieces = path[len(prefix) :].split("/") if path.startswith(prefix) else []
        session = None
        task = pieces[0] if pieces else ""
        if len(task) == 36:
            with contextlib.suppress(ValueError):
                session = self.sessions.get(_session_of(task))
        if session is None or len(pieces) > 2 or parts[0] != b"GET":
            conn.write(NOT_FOUND)
        elif len(pieces) == 1:
            session.stats["snapshots"] += 1
            conn.write(snapshot_answer(task, session.done))
        elif pieces[1] == "result":
            session.stats["results"] += 1
            conn.write(result_answer(task))
        elif pieces[1] == "events":
            self.stream(conn, session, task, _last_event_id(rest))
        else:
            conn.write(NOT_FOUND)

    def stream(self, conn: _Conn, session: _Session, task: str, last_id: int) -> None:
        """Start an event stream: the events the others have had already, then the
        rounds as they come."""
        session.stats["stream connections"] += 1
        if task in session.seen:
            session.stats["reconnects"] += 1
        else:
            session.seen.add(task)
            session.last_new = self.loop.time()
        chunks = event_chunks(task, session.events)
        start = min(max(last_id, 0), session.sent)
        conn.write(STREAM_HEAD + b"".join(chunks[start : session.sent]))
        if session.done:
            return  # the whole body has been written: the client closes
        conn.session, conn.task, conn.chunks = session, task, chunks
        old = session.live.get(task)
        if old is not None and old.transport is not None:
            old.transport.close()
        session.live[task] = conn
        session.stats["peak live streams"] = max(
            session.stats["peak live streams"], len(session.live)
        )
        if session.auto and not session.started and len(session.seen) >= session.expected:
            self.go(session)

    def go(self, session: _Session) -> None:
        if not session.started:
            session.started = True
            session.stats["started after ms"] = round(1000 * (self.loop.time() - session.created))
            session.tasks.append(self.loop.create_task(self._rounds(session)))

    async def _rounds(self, session: _Session) -> None:
        """One event to every live stream per round, a round every ``period`` seconds
        (the first one period after the start). A round is a steady trickle, not a
        burst: its events are spread evenly over the period, each due at a fixed time
        (written in slices of about a millisecond, the timer's grain), so that every
        client sees the same arrival pattern whatever its speed."""
        start = self.loop.time()
        for r in range(1, session.events):
            conns = list(session.live.values())
            index = session.sent
            begin = start + r * session.period
            step = 0.0 if session.burst else session.period / max(1, len(conns))
            i = 0
            while i < len(conns):
                await asyncio.sleep(max(0.0, begin + i * step - self.loop.time()))
                due = len(conns)
                if step:
                    due = min(due, int((self.loop.time() - begin) / step) + 1)
                for conn in conns[i:due]:
                    conn.write(conn.chunks[index])
                late = self.loop.time() - (begin + (due - 1) * step)
                session.stats["latest write ms"] = max(
                    session.stats["latest write ms"], round(late * 1000)
                )
                i = due
            session.sent += 1
        session.live.clear()  # each client closes its connection after the last event

    async def _watchdog(self, session: _Session) -> None:
        """A watch session: keep-alive comments while it waits, and its start if the
        watchers stopped coming (some failed to connect)."""
        beat = self.loop.time() + HEARTBEAT
        shown = self.loop.time()
        while session.stats["results"] < session.expected:
            await asyncio.sleep(1.0)
            now = self.loop.time()
            if now - shown >= 10:
                shown = now
                print(
                    f"  server: {len(session.seen):,} watchers seen, {len(session.live):,} "
                    f"streams open, {session.stats['results']:,} results sent",
                    file=sys.stderr,
                    flush=True,
                )
            if session.started:
                continue
            if now >= beat:
                beat = now + HEARTBEAT
                for conn in list(session.live.values()):
                    conn.write(KEEP_ALIVE)
            if now - session.last_new > WATCH_STALL:
                session.stats["started without every watcher"] = 1
                self.go(session)

    def command(self, message: tuple[Any, ...]) -> Any:
        what = message[0]
        if what == "session":
            self.add_session(*message[1:])
            return "ok"
        session = self.sessions.get(message[1])
        if session is None:
            return None
        if what == "go":
            self.go(session)
            return "ok"
        if what == "drop":
            del self.sessions[session.sid]
            for task in session.tasks:
                task.cancel()
            for conn in list(session.live.values()):
                if conn.transport is not None:
                    conn.transport.close()
            stats: dict[str, float] = dict(session.stats)
            stats["tasks"] = len(session.seen)
            stats["server CPU s"] = round(_cpu() - session.cpu, 1)
            return stats
        raise ValueError(f"unknown command {what!r}")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _last_event_id(rest: bytes) -> int:
    for line in rest.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"last-event-id":
            try:
                return int(value.strip() or b"0")
            except ValueError:
                return 0
    return 0


def _raise_nofile() -> int:
    """Raise the soft limit of open files to the hard one; the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def _serve(pem: str, tickets: int, pipe: Connection) -> None:
    """The server process: an asyncio (uvloop) TLS server, commands from ``pipe``."""
    _raise_nofile()
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # resets of leaving clients
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        flavour = f"uvloop {metadata.version('uvloop')}"
    except ImportError:
        loop = asyncio.new_event_loop()
        flavour = "asyncio"
    asyncio.set_event_loop(loop)
    loop.set_exception_handler(lambda loop, context: None)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pem)
    context.num_tickets = tickets  # TLS 1.3 session tickets after each handshake
    state = _ServerState(loop)

    def protocol() -> _Conn:
        return _Conn(state)

    server = loop.run_until_complete(
        loop.create_server(
            protocol,
            "127.0.0.1",
            0,
            ssl=context,
            backlog=65535,
            ssl_handshake_timeout=300.0,
        )
    )
    port = server.sockets[0].getsockname()[1]

    async def call(message: tuple[Any, ...]) -> Any:
        return state.command(message)

    def commands() -> None:
        while True:
            try:
                message = pipe.recv()
            except EOFError:
                loop.call_soon_threadsafe(loop.stop)
                return
            try:
                answer = asyncio.run_coroutine_threadsafe(call(message), loop).result()
            except Exception as exc:
                answer = f"error: {exc}"
            pipe.send(answer)

    pipe.send((port, flavour))
    threading.Thread(target=commands, daemon=True).start()
    loop.run_forever()


class Server:
    """The benchmark's TLS server, in another process, and its certificates."""

    def __init__(self, tickets: int) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="bench-watchers-")
        here = self._directory.name
        ca = trustme.CA()
        self.ca_file = os.path.join(here, "ca.pem")
        pem = os.path.join(here, "server.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(pem)
        # What SSL_CERT_FILE names for the default-context clients: a real CA bundle
        # (what a default context loads) with our CA at its end.
        self.bundle_file = os.path.join(here, "bundle.pem")
        system = _system_bundle()
        with open(self.bundle_file, "wb") as out:
            if system is not None:
                with open(system, "rb") as f:
                    out.write(f.read().rstrip() + b"\n")
            out.write(ca.cert_pem.bytes())
        self.bundle_certs = _count_certs(self.bundle_file)
        spawn = multiprocessing.get_context("spawn")  # no inherited event loop or locks
        self._pipe, child = spawn.Pipe()
        self.process = spawn.Process(target=_serve, args=(pem, tickets, child), daemon=True)
        self.process.start()
        child.close()
        if not self._pipe.poll(60):
            self.stop()
            raise SystemExit("the server process did not start")
        port, self.flavour = self._pipe.recv()
        self.origin = f"https://127.0.0.1:{port}"
        self.base_url = self.origin + API_PREFIX
        self._next = 1

    def call(self, *message: Any) -> Any:
        self._pipe.send(message)
        if not self._pipe.poll(120):
            raise RuntimeError(f"the server did not answer {message[0]!r}")
        answer = self._pipe.recv()
        if isinstance(answer, str) and answer.startswith("error"):
            raise RuntimeError(f"the server: {answer}")
        return answer

    def session(
        self, expected: int, events: int, period: float, *, auto: bool = False, burst: bool = False
    ) -> int:
        sid, self._next = self._next, self._next + 1
        self.call("session", sid, expected, events, period, auto, burst)
        return sid

    def stop(self) -> None:
        self.process.terminate()
        self.process.join()
        self._directory.cleanup()


def _system_bundle() -> str | None:
    paths = ssl.get_default_verify_paths()
    for path in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if path and os.path.isfile(path):
            return path
    try:
        import certifi
    except ImportError:
        return None
    return certifi.where()


def _count_certs(path: str) -> int:
    with open(path, "rb") as f:
        return f.read().count(b"-----BEGIN CERTIFICATE-----")


# -- the clients (fresh processes) -----------------------------------------------------


class EventLike(Protocol):
    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self) -> Awaitable[object]: ...


class SemaphoreLike(Protocol):
    def acquire(self) -> Awaitable[object]: ...
    def release(self) -> None: ...


Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]


@dataclass(frozen=True)
class Loop:
    """What the harness needs of an event loop (the readers use the libraries)."""

    name: str
    event: Callable[[], EventLike]
    semaphore: Callable[[int], SemaphoreLike]
    tasks: Callable[[], AbstractAsyncContextManager[Spawn]]


@contextlib.asynccontextmanager
async def _trio_tasks() -> AsyncIterator[Spawn]:
    async with trio.open_nursery() as nursery:
        yield nursery.start_soon


@contextlib.asynccontextmanager
async def _asyncio_tasks() -> AsyncIterator[Spawn]:
    tasks: list[asyncio.Future[None]] = []

    def spawn(fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        tasks.append(asyncio.ensure_future(fn()))

    try:
        yield spawn
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    await asyncio.gather(*tasks)


TRIO = Loop("trio", trio.Event, trio.Semaphore, _trio_tasks)
ASYNCIO = Loop("asyncio", asyncio.Event, asyncio.Semaphore, _asyncio_tasks)


def run_in(loop: Loop, main: Callable[[], Coroutine[Any, Any, R]]) -> R:
    if loop is TRIO:
        return trio.run(main)
    return asyncio.run(main())


class Tracker:
    """What the streams of a run report: first events, last events, failures."""

    def __init__(self, loop: Loop, streams: int, events: int, batch: int) -> None:
        self.streams = streams
        self.events = events  # per stream
        self.gate = loop.semaphore(batch)
        self.established = 0
        self.finished = 0
        self.received = 0
        self.ready = loop.event()  # every stream has its first event
        self.done = loop.event()  # every stream has its last event
        self.release = loop.event()  # the streams may close
        self.cpu_ready = self.cpu_done = 0.0
        self.wall_ready = self.wall_done = 0.0
        self.errors: Counter[str] = Counter()

    def on_first(self) -> None:
        self.established += 1
        if self.established == self.streams:
            self.cpu_ready, self.wall_ready = time.process_time(), time.perf_counter()
            self.ready.set()

    def on_last(self, count: int) -> None:
        self.received += count
        if count != self.events:
            self.errors[f"a stream read {count} events, not {self.events}"] += 1
        self.finished += 1
        if self.finished == self.streams:
            self.cpu_done, self.wall_done = time.process_time(), time.perf_counter()
            self.done.set()


class Probe:
    """One stream's line to its :class:`Tracker` (called twice a stream, not per event)."""

    __slots__ = ("expected", "first_seen", "holding", "last_seen", "tracker")

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.expected = tracker.events
        self.holding = self.first_seen = self.last_seen = False

    def first(self) -> None:
        """The stream's first event: it is established (the next one may connect)."""
        self.first_seen = True
        if self.holding:
            self.holding = False
            self.tracker.gate.release()
        self.tracker.on_first()

    async def last(self, count: int) -> None:
        """The stream's last event (``count`` in all); returns when it may close."""
        self.last_seen = True
        self.tracker.on_last(count)
        await self.tracker.release.wait()


Reader = Callable[[str, Probe], Coroutine[Any, Any, None]]


async def run_one(read: Reader, task: str, tracker: Tracker) -> None:
    probe = Probe(tracker)
    await tracker.gate.acquire()
    probe.holding = True
    try:
        await read(task, probe)
        if not probe.last_seen:
            raise RuntimeError("the stream ended before its completed event")
    except Exception as exc:
        tracker.errors[f"{type(exc).__name__}: {str(exc)[:200]}"] += 1
        if not probe.first_seen:
            probe.first()
        if not probe.last_seen:
            tracker.on_last(0)
    finally:
        if probe.holding:
            probe.holding = False
            tracker.gate.release()


@dataclass(frozen=True)
class Target:
    origin: str
    base_url: str
    ssl_context: ssl.SSLContext | None

    def events_url(self, task: str) -> str:
        return f"{self.base_url}/tasks/{task}/events"


ReaderFactory = Callable[[Target], "AbstractAsyncContextManager[Reader]"]


@contextlib.asynccontextmanager
async def floor_reader(t: Target) -> AsyncIterator[Reader]:
    """trio + ssl, the GET sent by hand, blank lines counted: no HTTP, no timeouts."""
    host, port = "127.0.0.1", int(t.origin.rsplit(":", 1)[1])
    context = t.ssl_context
    assert context is not None

    async def read(task: str, p: Probe) -> None:
        request = (
            f"GET {API_PREFIX}/tasks/{task}/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {API_KEY}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        tcp = await trio.open_tcp_stream(host, port)
        tls = trio.SSLStream(tcp, context, server_hostname=host, https_compatible=True)
        try:
            await tls.send_all(request)
            count, expected, nl = 0, p.expected, False
            while count < expected:
                data = await tls.receive_some(65536)
                if not data:
                    break
                # A read of many events (bulk) may end between a blank line's two "\n".
                found = data.count(b"\n\n") + (nl and data.startswith(b"\n"))
                nl = data.endswith(b"\n")
                if found and not count:
                    p.first()
                count += found
            await p.last(count)
        finally:
            await trio.aclose_forcefully(tls)

    yield read


@contextlib.asynccontextmanager
async def floor_bio_reader(t: Target) -> AsyncIterator[Reader]:
    """A trio socket and an ``ssl.SSLObject`` between memory BIOs, one task, no lock
    (what sseproto's own TLS stream does), the GET sent by hand, blank lines counted."""
    host, port = "127.0.0.1", int(t.origin.rsplit(":", 1)[1])
    context = t.ssl_context
    assert context is not None

    async def read(task: str, p: Probe) -> None:
        request = (
            f"GET {API_PREFIX}/tasks/{task}/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {API_KEY}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        sock = trio.socket.socket()
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_hostname=host)
        with sock:
            await sock.connect((host, port))
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    if outgoing.pending:
                        await sock.send(outgoing.read())
                    incoming.write(await sock.recv(65536))
            tls.write(request)
            await sock.send(outgoing.read())
            count, expected, nl = 0, p.expected, False
            while count < expected:
                try:
                    data = tls.read(65536)
                except ssl.SSLWantReadError:
                    raw = await sock.recv(65536)
                    if not raw:
                        break
                    incoming.write(raw)
                    continue
                found = data.count(b"\n\n") + (nl and data.startswith(b"\n"))
                nl = data.endswith(b"\n")
                if found and not count:
                    p.first()
                count += found
            await p.last(count)

    yield read


@contextlib.asynccontextmanager
async def stream_reader(t: Target) -> AsyncIterator[Reader]:
    """``sseproto.open_event_stream``, events iterated."""

    async def read(task: str, p: Probe) -> None:
        count = 0
        async with sseproto.open_event_stream(
            t.events_url(task), headers=HEADERS, ssl_context=t.ssl_context
        ) as stream:
            async for event in stream:
                count += 1
                if count == 1:
                    p.first()
                if event.event == "completed":
                    await p.last(count)
                    break

    yield read


@contextlib.asynccontextmanager
async def task_events_reader(t: Target) -> AsyncIterator[Reader]:
    """One ``sseproto.Client``; ``task_events`` per stream, typed events."""
    async with sseproto.Client(API_KEY, t.base_url, ssl_context=t.ssl_context) as client:

        async def read(task: str, p: Probe) -> None:
            count = 0
            async for event in client.task_events(task):
                if isinstance(event, sseproto.TaskEventError):
                    raise event
                count += 1
                if count == 1:
                    p.first()
                if event.is_terminal:
                    await p.last(count)

        yield read


def _httpx_client(t: Target) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=t.ssl_context if t.ssl_context is not None else True,
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
        timeout=httpx.Timeout(60.0, connect=10.0),
    )


@contextlib.asynccontextmanager
async def httpx_reader(t: Target) -> AsyncIterator[Reader]:
    """One ``httpx.AsyncClient``; ``aconnect_sse`` + ``aiter_sse`` + ``json.loads``."""
    async with _httpx_client(t) as client:

        async def read(task: str, p: Probe) -> None:
            count = 0
            async with aconnect_sse(client, "GET", t.events_url(task), headers=HEADERS) as source:
                async for sse in source.aiter_sse():
                    json.loads(sse.data)
                    count += 1
                    if count == 1:
                        p.first()
                    if sse.event == "completed":
                        await p.last(count)
                        break

        yield read


@contextlib.asynccontextmanager
async def asyncio_task_events_reader(t: Target) -> AsyncIterator[Reader]:
    """``sseproto.asyncio.Client`` on the ``httpx`` row's client; ``task_events``."""
    async with (
        _httpx_client(t) as http,
        sseproto.asyncio.Client(API_KEY, t.base_url, http_client=http) as client,
    ):

        async def read(task: str, p: Probe) -> None:
            count = 0
            async for event in client.task_events(task):
                if isinstance(event, sseproto.TaskEventError):
                    raise event
                count += 1
                if count == 1:
                    p.first()
                if event.is_terminal:
                    await p.last(count)

        yield read


@dataclass(frozen=True)
class ClientKind:
    name: str  # for --only
    label: str
    loop: Loop
    reader: ReaderFactory


CLIENTS: dict[str, ClientKind] = {
    k.name: k
    for k in (
        ClientKind("floor", "floor: trio SSLStream, no HTTP", TRIO, floor_reader),
        ClientKind("floor-bio", "floor: trio socket + SSLObject", TRIO, floor_bio_reader),
        ClientKind("stream", "sseproto open_event_stream", TRIO, stream_reader),
        ClientKind("task_events", "sseproto Client.task_events", TRIO, task_events_reader),
        ClientKind("httpx", "httpx + httpx-sse, asyncio", ASYNCIO, httpx_reader),
        ClientKind("asyncio", "sseproto.asyncio task_events", ASYNCIO, asyncio_task_events_reader),
        ClientKind("httpx-trio", "httpx + httpx-sse, trio", TRIO, httpx_reader),
    )
}
SECTIONS = ("setup", "watch", "bulk")
#: The clients of the bulk part (5).
BULK_CLIENTS = ("floor", "stream", "task_events", "httpx", "asyncio")
#: The set-up comparison: (client, explicit context?).
SETUP_VARIANTS = (
    ("stream", True),
    ("stream", False),
    ("task_events", True),
    ("task_events", False),
)


@dataclass(frozen=True)
class Job:
    """What one client process does."""

    mode: str  # "streams", "watch" or "bulk"
    client: str
    base_url: str
    ca_file: str
    session: int
    streams: int
    events: int  # per stream
    explicit: bool  # one explicit shared context, or sseproto's default
    env: dict[str, str] = field(default_factory=dict)
    stagger: float = 0.0  # watchers started per second (0: all at once)
    deadline: float = 900.0


def _rss() -> int:
    """The resident set size of this process, in bytes."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the peak, the best there is
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _top(errors: Counter[str]) -> list[str]:
    return [f"{n} x {text}" for text, n in errors.most_common(5)]


def _target(job: Job) -> Target:
    context = ssl.create_default_context(cafile=job.ca_file) if job.explicit else None
    return Target(job.base_url.removesuffix(API_PREFIX), job.base_url, context)


async def _warm_up(kind: ClientKind, read: Reader) -> float:
    """The process's first stream (its one-time costs), then ``gc.collect()``; its CPU."""
    warm = Tracker(kind.loop, 1, WARM_EVENTS, 1)
    warm.release.set()
    cpu = time.process_time()
    await run_one(read, task_id(0, os.getpid()), warm)
    cpu = time.process_time() - cpu
    if warm.errors:
        raise RuntimeError(f"the warm-up stream failed: {_top(warm.errors)}")
    gc.collect()
    return cpu


async def streams_main(job: Job, pipe: Connection) -> dict[str, Any]:
    """Parts 1 to 3 in a client process: open, idle, then read the rounds."""
    kind = CLIENTS[job.client]
    out: dict[str, Any] = {}
    async with kind.reader(_target(job)) as read:
        out["first_stream_cpu"] = await _warm_up(kind, read)
        rss0 = _rss()
        tracker = Tracker(kind.loop, job.streams, job.events, BATCH)
        try:
            async with kind.loop.tasks() as spawn:
                cpu0, wall0 = time.process_time(), time.perf_counter()
                for i in range(job.streams):
                    spawn(functools.partial(run_one, read, task_id(job.session, i), tracker))
                await tracker.ready.wait()
                out["setup_cpu"] = tracker.cpu_ready - cpu0
                out["setup_wall"] = tracker.wall_ready - wall0
                gc.collect()
                out["idle_bytes"] = _rss() - rss0
                # The loop stands still until the server has been told to start.
                pipe.send(("ready", None))
                pipe.recv()
                cpu1, wall1 = time.process_time(), time.perf_counter()
                await tracker.done.wait()
                out["window_cpu"] = tracker.cpu_done - cpu1
                out["window_wall"] = tracker.wall_done - wall1
                tracker.release.set()
        finally:
            tracker.release.set()
    out["window_events"] = tracker.received - tracker.streams  # the first ones before
    out["expected_events"] = job.streams * (job.events - 1)
    out["errors"] = _top(tracker.errors)
    return out


async def bulk_main(job: Job, pipe: Connection) -> dict[str, Any]:
    """Part 5 in a client process: one stream of ``job.events`` events, all written at
    once, timed from its first event to its last."""
    kind = CLIENTS[job.client]
    async with kind.reader(_target(job)) as read:
        await _warm_up(kind, read)
        tracker = Tracker(kind.loop, 1, job.events, 1)
        tracker.release.set()
        await run_one(read, task_id(job.session, 0), tracker)
    return {
        "window_cpu": tracker.cpu_done - tracker.cpu_ready,
        "window_wall": tracker.wall_done - tracker.wall_ready,
        "window_events": tracker.received - 1,  # the first one starts the window
        "expected_events": job.events - 1,
        "errors": _top(tracker.errors),
    }


async def watch_main(job: Job, pipe: Connection) -> dict[str, Any]:
    """Part 4 in a client process: ``job.streams`` concurrent ``sseproto.watch()``."""
    results = 0
    errors: Counter[str] = Counter()

    done = trio.Event()
    idle_rss: list[int] = []

    def on_event(item: object) -> None:
        # The first progress round reaches a watcher only once every watcher is
        # connected (the server waits for them): the RSS of them all, idle.
        if not idle_rss and getattr(item, "progress", None) is not None:
            sse = getattr(item, "sse", None)
            if sse is not None and sse.id == "2":
                idle_rss.append(_rss())

    async def one(task: str) -> None:
        nonlocal results
        try:
            result = await sseproto.watch(
                task, api_key=API_KEY, base_url=job.base_url, on_event=on_event
            )
        except Exception as exc:
            errors[f"{type(exc).__name__}: {str(exc)[:200]}"] += 1
        else:
            if result.id == task and result.output == OUTPUT:
                results += 1
            else:
                errors[f"a wrong result: {result!r:.200}"] += 1
        if results + errors.total() == job.streams:
            done.set()

    async def report() -> None:
        while True:
            await trio.sleep(10)
            _log(
                f"  {time.perf_counter() - wall0:.0f} s: {results:,} results, "
                f"{errors.total():,} errors, RSS {_rss() / 2**20:.0f} MiB"
            )

    retries = _RetryCounter()
    logger = logging.getLogger("sseproto")
    logger.addHandler(retries)
    logger.setLevel(logging.INFO)  # its retries are logged at INFO: counted, not shown
    logger.propagate = False
    gc.collect()
    rss0 = _rss()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with trio.move_on_after(job.deadline) as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report)
            for i in range(job.streams):
                nursery.start_soon(one, task_id(job.session, i))
                if job.stagger and (i + 1) % 100 == 0:
                    await trio.sleep(100 / job.stagger)
            await done.wait()
            nursery.cancel_scope.cancel()  # the reporter
    if scope.cancelled_caught:
        errors[f"no result within {job.deadline:.0f} s"] += job.streams - results - errors.total()
    return {
        "results": results,
        "lost": job.streams - results,
        "errors": _top(errors),
        "wall": time.perf_counter() - wall0,
        "cpu": time.process_time() - cpu0,
        "baseline_rss": rss0,
        "peak_rss": _peak_rss(),
        "idle_rss": idle_rss[0] if idle_rss else None,
        "retries": dict(retries.counts.most_common()),
    }


class _RetryCounter(logging.Handler):
    """Counts what sseproto logs about retries (stream reconnections, calls tried
    again, falls back to polling), by what failed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        template = str(record.msg)
        args = record.args if isinstance(record.args, tuple) else ()
        errors = [type(a).__name__ for a in args if isinstance(a, BaseException)]
        cause = errors[0] if errors else ""
        if "trying again in" in template and template.startswith("%s; "):
            what = "stream connections retried"
        elif "trying again in" in template:
            what = "calls retried"
        elif "resuming in" in template:
            what = "streams resumed"
            cause = cause or "ended"
        elif "polling" in template:
            what = "fell back to polling"
        else:
            what = template.split("%")[0].strip() or template[:40]
        self.counts[f"{what} ({cause})" if cause else what] += 1


def _client(job: Job, pipe: Connection) -> None:
    """A client process's main."""
    try:
        os.environ.update(job.env)  # before any TLS: SSL_CERT_FILE for the defaults
        limit = _raise_nofile()
        if limit < job.streams + 100:
            raise RuntimeError(f"{job.streams:,} streams need more open files than {limit:,}")
        if job.mode == "watch":
            out = trio.run(watch_main, job, pipe)
        else:
            main = bulk_main if job.mode == "bulk" else streams_main
            out = run_in(CLIENTS[job.client].loop, functools.partial(main, job, pipe))
        pipe.send(("result", out))
    except BaseException as exc:
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        pipe.send(("error", text[-2000:]))


def run_job(job: Job, server: Server, timeout: float) -> dict[str, Any]:
    """Run ``job`` in a fresh process; its figures (or ``{"error": ...}``)."""
    spawn = multiprocessing.get_context("spawn")
    parent, child = spawn.Pipe()
    process = spawn.Process(target=_client, args=(job, child), daemon=True)
    process.start()
    child.close()
    out: dict[str, Any]
    try:
        while True:
            if not parent.poll(timeout):
                out = {"error": f"no answer from the client process within {timeout:.0f} s"}
                break
            kind, payload = parent.recv()
            if kind == "ready":
                server.call("go", job.session)
                parent.send("go")
                continue
            out = payload if kind == "result" else {"error": payload}
            break
    except EOFError:
        out = {"error": f"the client process died (exit status {process.exitcode})"}
    finally:
        stats = server.call("drop", job.session)
        if process.is_alive():
            process.join(10)
        if process.is_alive():
            process.kill()
            process.join()
    out["server"] = stats
    return out


# -- results ---------------------------------------------------------------------------


@dataclass
class Row:
    """One client's figures at one N (the best of each over the repeats)."""

    client: str
    label: str
    streams: int
    runs: int = 0
    us_per_event: float | None = None
    cpu_percent: float | None = None  # of the run with the least CPU per event
    idle_kib: float | None = None
    setup_ms: float | None = None  # CPU per connection, explicit shared context
    first_stream_ms: float | None = None
    x_floor: float | None = None
    vs_httpx: float | None = None  # httpx's µs/event over this row's
    idle_x_floor: float | None = None
    error: str | None = None

    def add(self, sample: dict[str, Any]) -> None:
        error = _failure(sample)
        if error is not None:
            self.error = error
            return
        self.runs += 1
        us = 1e6 * sample["window_cpu"] / sample["window_events"]
        if self.us_per_event is None or us < self.us_per_event:
            self.us_per_event = us
            self.cpu_percent = 100 * sample["window_cpu"] / sample["window_wall"]
        self.idle_kib = _least(self.idle_kib, sample["idle_bytes"] / 1024 / self.streams)
        self.setup_ms = _least(self.setup_ms, 1000 * sample["setup_cpu"] / self.streams)
        self.first_stream_ms = _least(self.first_stream_ms, 1000 * sample["first_stream_cpu"])


def _failure(sample: dict[str, Any]) -> str | None:
    """Why a run of parts 1, 2 or 5 failed (events lost included), or None."""
    if "error" in sample or sample.get("errors"):
        return str(sample.get("error") or "; ".join(sample["errors"]))
    if sample["window_events"] != sample["expected_events"]:
        return (
            f"{sample['window_events']:,} events in the window, not {sample['expected_events']:,}"
        )
    return None


def _least(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


def finish_rows(rows: Sequence[Row]) -> None:
    floor = next((r for r in rows if r.client == "floor" and r.us_per_event), None)
    base = next((r for r in rows if r.client == "httpx" and r.us_per_event), None)
    for r in rows:
        if r.us_per_event is None:
            continue
        if floor is not None and floor.us_per_event:
            r.x_floor = r.us_per_event / floor.us_per_event
            if r.idle_kib is not None and floor.idle_kib:
                r.idle_x_floor = r.idle_kib / floor.idle_kib
        if base is not None and base.us_per_event:
            r.vs_httpx = base.us_per_event / r.us_per_event


@dataclass
class BulkRow:
    """One client's figures on one bulk stream (the best of each over the repeats)."""

    client: str
    label: str
    events: int  # in the stream, the first included
    runs: int = 0
    events_per_s: float | None = None  # wall, the first event to the last
    us_per_event: float | None = None  # client CPU
    cpu_percent: float | None = None  # of the run with the most events a second
    vs_httpx: float | None = None  # this row's events a second over httpx's
    error: str | None = None

    def add(self, sample: dict[str, Any]) -> None:
        error = _failure(sample)
        if error is not None:
            self.error = error
            return
        self.runs += 1
        rate = sample["window_events"] / sample["window_wall"]
        if self.events_per_s is None or rate > self.events_per_s:
            self.events_per_s = rate
            self.cpu_percent = 100 * sample["window_cpu"] / sample["window_wall"]
        self.us_per_event = _least(
            self.us_per_event, 1e6 * sample["window_cpu"] / sample["window_events"]
        )


def finish_bulk(rows: Sequence[BulkRow]) -> None:
    base = next((r for r in rows if r.client == "httpx" and r.events_per_s), None)
    for r in rows:
        if base is not None and base.events_per_s and r.events_per_s is not None:
            r.vs_httpx = r.events_per_s / base.events_per_s


@dataclass
class SetupRow:
    client: str
    label: str
    context: str  # "explicit shared" or "default"
    streams: int
    runs: int = 0
    setup_ms: float | None = None
    idle_kib: float | None = None
    first_stream_ms: float | None = None
    cpu_vs_explicit: float | None = None
    kib_vs_explicit: float | None = None
    error: str | None = None


@dataclass
class WatchRun:
    watchers: int
    stagger: float
    results: int = 0
    lost: int = 0
    wall_s: float | None = None
    cpu_s: float | None = None
    peak_rss_mib: float | None = None
    baseline_rss_mib: float | None = None
    idle_rss_mib: float | None = None  # every watcher connected, before the rounds
    errors: list[str] = field(default_factory=list)
    retries: dict[str, int] = field(default_factory=dict)  # what sseproto logged
    server: dict[str, Any] = field(default_factory=dict)

    @property
    def how(self) -> str:
        return "all started at once" if not self.stagger else f"started {self.stagger:,.0f}/s"


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    """``value`` formatted, ``-`` when unknown; right-aligned to the width in ``spec``
    (its digits before the point), the suffix included."""
    width = int(spec.split(".")[0] or 0)
    text = "-" if value is None else f"{value:.{spec.split('.')[1]}}{suffix}"
    return f"{text:>{width}}"


def print_trickle(rows: Sequence[Row], rounds: int, period: float, arrival: str) -> None:
    n = rows[0].streams
    how = (
        "each round written at once"
        if arrival == "burst"
        else f"spread evenly: an event every {period / n * 1e6:.0f} µs"
    )
    print(
        f"\ntrickle: {n:,} established TLS streams, {rounds} events each in the window "
        f"({n * rounds:,} events, one a read), a round every {period * 1000:.0f} ms, {how}"
    )
    head = (
        f"{'client':<31}{'µs/event':>9}{'x floor':>8}{'vs httpx':>9}{'CPU %':>7}"
        f"{'KiB/stream':>11}{'x floor':>8}{'set-up ms':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        if r.error is not None:
            print(f"{r.label:<31}  FAILED: {r.error}")
            continue
        print(
            f"{r.label:<31}{_fmt(r.us_per_event, '9.1f')}{_fmt(r.x_floor, '8.2f', 'x')}"
            f"{_fmt(r.vs_httpx, '9.2f', 'x')}{_fmt(r.cpu_percent, '7.0f')}"
            f"{_fmt(r.idle_kib, '11.1f')}{_fmt(r.idle_x_floor, '8.2f', 'x')}"
            f"{_fmt(r.setup_ms, '10.2f')}"
        )


def print_bulk(rows: Sequence[BulkRow]) -> None:
    if not rows:
        return
    print(
        f"\nbulk: one TLS stream, {rows[0].events:,} events written at once "
        f"(pre-encoded, ~190 B each), timed from its first event to its last"
    )
    head = f"{'client':<31}{'events/s':>10}{'vs httpx':>9}{'µs CPU/event':>13}{'CPU %':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        if r.error is not None:
            print(f"{r.label:<31}  FAILED: {r.error}")
            continue
        print(
            f"{r.label:<31}{_fmt(r.events_per_s, '10.0f')}{_fmt(r.vs_httpx, '9.2f', 'x')}"
            f"{_fmt(r.us_per_event, '13.2f')}{_fmt(r.cpu_percent, '7.0f')}"
        )


def print_setup(rows: Sequence[SetupRow], bundle: int) -> None:
    if not rows:
        return
    n = rows[0].streams
    print(
        f"\nset-up: {n:,} streams opened {BATCH} at a time (TCP + TLS + GET + first event), "
        f"then idle; default = no ssl_context=, SSL_CERT_FILE a bundle of {bundle} CAs"
    )
    head = (
        f"{'client':<29}{'context':<17}{'CPU ms/conn':>12}{'vs explicit':>12}"
        f"{'KiB/stream':>11}{'vs explicit':>12}{'1st stream ms':>14}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        if r.error is not None:
            print(f"{r.label:<29}{r.context:<17}  FAILED: {r.error}")
            continue
        print(
            f"{r.label:<29}{r.context:<17}{_fmt(r.setup_ms, '12.3f')}"
            f"{_fmt(r.cpu_vs_explicit, '12.2f', 'x')}{_fmt(r.idle_kib, '11.1f')}"
            f"{_fmt(r.kib_vs_explicit, '12.2f', 'x')}{_fmt(r.first_stream_ms, '14.1f')}"
        )


def print_watch(run: WatchRun) -> None:
    per = (
        (run.peak_rss_mib - run.baseline_rss_mib) * 1024 / run.watchers
        if run.peak_rss_mib is not None and run.baseline_rss_mib is not None
        else None
    )
    print(
        f"\nwatchers: {run.watchers:,} concurrent sseproto.watch() in one trio process, "
        f"default settings, {run.how}:"
    )
    print(
        f"  {run.results:,}/{run.watchers:,} results, wall {_fmt(run.wall_s, '.1f')} s, "
        f"client CPU {_fmt(run.cpu_s, '.1f')} s, peak RSS {_fmt(run.peak_rss_mib, '.1f')} MiB "
        f"(at the start {_fmt(run.baseline_rss_mib, '.1f')} MiB; "
        f"{_fmt(per, '.1f')} KiB a watcher)"
    )
    print(
        f"  RSS once every watcher was connected, idle: {_fmt(run.idle_rss_mib, '.1f')} MiB "
        f"(a higher peak comes later: {run.watchers:,} result calls)"
    )
    retried = ", ".join(f"{k}: {v:,}" for k, v in run.retries.items()) or "none"
    print(f"  sseproto's retries (its log): {retried}")
    if run.server:
        shown = ", ".join(f"{k} {v:,}" for k, v in sorted(run.server.items()))
        print(f"  server: {shown}")
    if run.lost:
        print(f"  !!! {run.lost:,} RESULT(S) LOST !!!")
    for line in run.errors:
        print(f"  !!! {line}")


@dataclass
class Goal:
    name: str
    value: str
    met: bool | None  # None: not measured


def targets(
    rows: Sequence[Row],
    setup: Sequence[SetupRow],
    watch: WatchRun | None,
    bulk: Sequence[BulkRow],
) -> list[Goal]:
    goals: list[Goal] = []
    n = rows[0].streams if rows else 0
    by = {r.client: r for r in rows}
    te, st = by.get("task_events"), by.get("stream")
    at = f"(N={n:,})" if rows else "(N=1,000)"
    x = te.x_floor if te is not None else None
    goals.append(
        Goal(
            f"trickle Client.task_events <= 1.5x floor {at}",
            _fmt(x, ".2f", "x"),
            None if x is None else x <= 1.5,
        )
    )
    v = te.vs_httpx if te is not None else None
    goals.append(
        Goal(
            f"trickle Client.task_events >= 1.6x better than httpx + httpx-sse asyncio {at}",
            _fmt(v, ".2f", "x"),
            None if v is None else v >= 1.6,
        )
    )
    m = st.idle_x_floor if st is not None else None
    goals.append(
        Goal(
            f"idle memory per stream, open_event_stream <= 1.25x floor {at}",
            _fmt(m, ".2f", "x"),
            None if m is None else m <= 1.25,
        )
    )
    b = next((r.vs_httpx for r in bulk if r.client == "task_events"), None)
    goals.append(
        Goal(
            "bulk Client.task_events >= 1.5x httpx + httpx-sse + json.loads (events/s)",
            _fmt(b, ".2f", "x"),
            None if b is None else b >= 1.5,
        )
    )
    for what, attr in (("set-up CPU", "cpu_vs_explicit"), ("idle memory", "kib_vs_explicit")):
        values = [getattr(r, attr) for r in setup if r.context == "default"]
        if setup and all(value is not None for value in values):
            worst = max(abs(value - 1) for value in values)
            shown = ", ".join(
                f"{r.client} {getattr(r, attr):.2f}x" for r in setup if r.context == "default"
            )
            goals.append(
                Goal(f"default context {what} within 20 % of explicit", shown, worst <= 0.2)
            )
        else:
            goals.append(Goal(f"default context {what} within 20 % of explicit", "-", None))
    if watch is not None:
        w = f"{watch.watchers:,} watch()"
        peak = watch.peak_rss_mib
        goals.append(
            Goal(
                f"{w}: peak RSS < 700 MiB",
                _fmt(peak, ".1f", " MiB"),
                None if peak is None else peak < 700,
            )
        )
        goals.append(Goal(f"{w}: no lost result", f"{watch.lost:,} lost", watch.lost == 0))
    else:
        goals.append(Goal("watch(): peak RSS < 700 MiB, no lost result", "-", None))
    return goals


def print_targets(goals: Sequence[Goal]) -> None:
    print("\ntargets")
    width = max(len(g.name) for g in goals) + 2
    for g in goals:
        verdict = "not measured" if g.met is None else "met" if g.met else "NOT met"
        print(f"  {g.name:<{width}}{g.value:>26}  {verdict}")


def versions() -> dict[str, str]:
    out = bench_drivers.versions()  # python, sseproto, the HTTP stack, the parser core
    out["sseproto tree"] = _tree()
    out["openssl"] = ssl.OPENSSL_VERSION
    return out


def _tree() -> str:
    """The commit of the sseproto checkout in use, and whether it has local changes."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(sseproto.__file__)))
    try:
        commit = subprocess.run(
            ["git", "-C", here, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", here, "status", "--porcelain", "--", "sseproto"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "-"
    return commit + (" + uncommitted changes" if changes else "")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _period(streams: int, pace_ms: float) -> float:
    return max(MIN_PERIOD, streams / 100 * pace_ms / 1000)


def _ints(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="N=200, 500 watchers (a CI smoke run)")
    ap.add_argument("--streams", metavar="N1,N2", help="established streams (1000)")
    ap.add_argument("--rounds", type=int, metavar="R", help="events per stream in the window (10)")
    ap.add_argument("--watchers", type=int, metavar="W", help="concurrent watch() (10000)")
    ap.add_argument("--setup", type=int, metavar="N", help="streams of the set-up part (1000)")
    ap.add_argument("--repeat", type=int, metavar="K", help="best of K runs (3; 1 with --quick)")
    ap.add_argument(
        "--bulk-events",
        type=int,
        metavar="E",
        help="events of the bulk stream (100000; 20000 with --quick)",
    )
    ap.add_argument(
        "--pace",
        type=float,
        default=PACE_MS,
        metavar="MS",
        help=f"ms per round per 100 streams ({PACE_MS:g})",
    )
    ap.add_argument(
        "--stagger",
        type=float,
        default=0.0,
        metavar="RATE",
        help="start the watchers at RATE a second (default: all at once)",
    )
    ap.add_argument(
        "--arrival",
        choices=("even", "burst"),
        default="even",
        help="a round's events spread evenly over its period (default), or written at once",
    )
    ap.add_argument(
        "--tickets",
        type=int,
        default=2,
        metavar="T",
        help="TLS 1.3 session tickets the server sends a connection (2, OpenSSL's default)",
    )
    names = ",".join([*CLIENTS, *SECTIONS])
    ap.add_argument("--only", metavar="A,B", help=f"clients and parts, comma-separated ({names})")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the tables")
    args = ap.parse_args(argv)
    streams = _ints(args.streams) if args.streams else [200 if args.quick else 1000]
    rounds = args.rounds or (5 if args.quick else 10)
    watchers = args.watchers if args.watchers is not None else 500 if args.quick else 10_000
    setup_n = args.setup or (200 if args.quick else 1000)
    repeat = args.repeat or (1 if args.quick else 3)
    bulk_events = args.bulk_events or (20_000 if args.quick else 100_000)
    if any(n < 1 for n in streams) or rounds < 1 or repeat < 1 or setup_n < 1 or watchers < 0:
        ap.error("--streams, --rounds, --setup and --repeat must be at least 1")
    if bulk_events < 2:
        ap.error("--bulk-events must be at least 2")
    chosen = list(CLIENTS) + list(SECTIONS)
    if args.only:
        chosen = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(chosen) - set(CLIENTS) - set(SECTIONS))
        if unknown:
            ap.error(f"unknown name(s) {', '.join(unknown)}; choose from {names}")
    clients = [CLIENTS[name] for name in CLIENTS if name in chosen]
    bulk_clients: list[str] = []
    if "bulk" in chosen:  # alone, every client of the part; with client names, those
        named = [name for name in chosen if name in CLIENTS]
        bulk_clients = [name for name in BULK_CLIENTS if name in named or not named]
    need = max([*streams, setup_n, watchers]) + 200
    limit = _raise_nofile()
    if limit < need:
        ap.error(f"{need:,} open files are needed and the hard limit is {limit:,} (ulimit -Hn)")

    _log("starting the server ...")
    server = Server(args.tickets)
    started = time.perf_counter()
    all_rows: list[list[Row]] = []
    setup_rows: list[SetupRow] = []
    watch_runs: list[WatchRun] = []
    bulk_rows = [BulkRow(name, CLIENTS[name].label, bulk_events) for name in bulk_clients]
    failed = False
    try:
        for n in streams:
            period = _period(n, args.pace)
            rows = [Row(k.name, k.label, n) for k in clients]
            timeout = 120 + n * 0.05 + rounds * period * 2
            for i in range(repeat):
                shift = i % max(1, len(rows))
                for row in rows[shift:] + rows[:shift]:
                    _log(f"N={n:,} round {i + 1}/{repeat}: {row.label} ...")
                    sid = server.session(n, rounds + 1, period, burst=args.arrival == "burst")
                    job = Job(
                        "streams",
                        row.client,
                        server.base_url,
                        server.ca_file,
                        sid,
                        n,
                        rounds + 1,
                        True,
                    )
                    sample = run_job(job, server, timeout)
                    row.add(sample)
                    if row.error is not None:
                        _log(f"  FAILED: {row.error}")
                    else:
                        _log(
                            f"  {1e6 * sample['window_cpu'] / max(1, sample['window_events']):.1f} "
                            f"µs/event, {sample['idle_bytes'] / 1024 / n:.1f} KiB/stream"
                        )
            finish_rows(rows)
            all_rows.append(rows)

        timeout = 120 + bulk_events * 0.001
        for i in range(repeat if bulk_rows else 0):
            shift = i % len(bulk_rows)
            for brow in bulk_rows[shift:] + bulk_rows[:shift]:
                _log(f"bulk round {i + 1}/{repeat}: {brow.label} ...")
                sid = server.session(0, bulk_events, MIN_PERIOD)  # 0: written at once
                job = Job(
                    "bulk", brow.client, server.base_url, server.ca_file, sid, 1, bulk_events, True
                )
                sample = run_job(job, server, timeout)
                brow.add(sample)
                if brow.error is not None:
                    _log(f"  FAILED: {brow.error}")
                else:
                    _log(
                        f"  {sample['window_events'] / sample['window_wall']:,.0f} events/s, "
                        f"{1e6 * sample['window_cpu'] / sample['window_events']:.2f} µs/event"
                    )
        finish_bulk(bulk_rows)

        if "setup" in chosen:
            for client, explicit in SETUP_VARIANTS:
                setup_rows.append(
                    SetupRow(
                        client,
                        CLIENTS[client].label,
                        "explicit shared" if explicit else "default",
                        setup_n,
                    )
                )
            timeout = 120 + setup_n * 0.05
            for i in range(repeat):
                shift = i % len(setup_rows)
                for srow in setup_rows[shift:] + setup_rows[:shift]:
                    explicit = srow.context != "default"
                    _log(f"set-up round {i + 1}/{repeat}: {srow.label}, {srow.context} context ...")
                    sid = server.session(setup_n, 2, MIN_PERIOD)
                    env = {} if explicit else {"SSL_CERT_FILE": server.bundle_file}
                    job = Job(
                        "streams",
                        srow.client,
                        server.base_url,
                        server.ca_file,
                        sid,
                        setup_n,
                        2,
                        explicit,
                        env,
                    )
                    sample = run_job(job, server, timeout)
                    if "error" in sample or sample.get("errors"):
                        srow.error = sample.get("error") or "; ".join(sample["errors"])
                        _log(f"  FAILED: {srow.error}")
                        continue
                    srow.runs += 1
                    srow.setup_ms = _least(srow.setup_ms, 1000 * sample["setup_cpu"] / setup_n)
                    srow.idle_kib = _least(srow.idle_kib, sample["idle_bytes"] / 1024 / setup_n)
                    srow.first_stream_ms = _least(
                        srow.first_stream_ms, 1000 * sample["first_stream_cpu"]
                    )
                    _log(
                        f"  {1000 * sample['setup_cpu'] / setup_n:.3f} ms/conn, "
                        f"{sample['idle_bytes'] / 1024 / setup_n:.1f} KiB/stream"
                    )
            for srow in setup_rows:
                base = next(
                    (r for r in setup_rows if r.client == srow.client and r.context != "default"),
                    None,
                )
                if base is not None and base.setup_ms and srow.setup_ms is not None:
                    srow.cpu_vs_explicit = srow.setup_ms / base.setup_ms
                if base is not None and base.idle_kib and srow.idle_kib is not None:
                    srow.kib_vs_explicit = srow.idle_kib / base.idle_kib

        if "watch" in chosen and watchers:
            stagger = args.stagger
            while True:
                run = watch(server, watchers, args.pace, stagger, args.arrival == "burst")
                watch_runs.append(run)
                if not run.lost or stagger:
                    break
                _log(
                    f"!!! {run.lost:,} results lost with every watcher started at once; "
                    f"again at {FALLBACK_STAGGER:,.0f} a second"
                )
                stagger = FALLBACK_STAGGER
    finally:
        server.stop()
    elapsed = time.perf_counter() - started

    for rows in all_rows:
        failed |= any(r.error is not None for r in rows)
    failed |= any(r.error is not None for r in setup_rows)
    failed |= any(r.error is not None for r in bulk_rows)
    failed |= any(run.lost for run in watch_runs)
    first_rows = next((rows for rows in all_rows if rows and rows[0].streams == 1000), None)
    first_rows = first_rows or (all_rows[0] if all_rows else [])
    goals = targets(first_rows, setup_rows, watch_runs[0] if watch_runs else None, bulk_rows)
    info = versions()
    if args.json:
        report = {
            "versions": info,
            "server": server.flavour,
            "rounds": rounds,
            "pace_ms": args.pace,
            "arrival": args.arrival,
            "tickets": args.tickets,
            "repeat": repeat,
            "seconds": round(elapsed, 1),
            "trickle": [[asdict(r) for r in rows] for rows in all_rows],
            "bulk": [asdict(r) for r in bulk_rows],
            "setup": [asdict(r) for r in setup_rows],
            "watchers": [asdict(run) for run in watch_runs],
            "targets": [asdict(g) for g in goals],
        }
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(", ".join(f"{k} {v}" for k, v in info.items()))
        print(
            f"server: {server.flavour} + ssl in its own process, TLS 1.3 with {args.tickets} "
            f"session ticket(s) a connection; clients each in a fresh process; best of "
            f"{repeat}; CPU is the client process's; {elapsed:.0f} s in all"
        )
        for rows in all_rows:
            if rows:
                print_trickle(rows, rounds, _period(rows[0].streams, args.pace), args.arrival)
        print_bulk(bulk_rows)
        print_setup(setup_rows, server.bundle_certs)
        for run in watch_runs:
            print_watch(run)
        print_targets(goals)
        if failed:
            print("\nFAILED: see above (a client that lost events or results)")
    return 1 if failed else 0


def watch(server: Server, watchers: int, pace_ms: float, stagger: float, burst: bool) -> WatchRun:
    how = "all at once" if not stagger else f"{stagger:,.0f}/s"
    _log(f"{watchers:,} concurrent watch(), started {how} ...")
    period = _period(watchers, pace_ms)
    sid = server.session(watchers, WATCH_EVENTS, period, auto=True, burst=burst)
    env = {"SSL_CERT_FILE": server.bundle_file}
    job = Job(
        "watch",
        "watch",
        server.base_url,
        server.ca_file,
        sid,
        watchers,
        WATCH_EVENTS,
        False,
        env,
        stagger,
    )
    sample = run_job(job, server, job.deadline + 120)
    run = WatchRun(watchers, stagger, server=sample.get("server") or {})
    if "error" in sample:
        run.lost = watchers
        run.errors = [sample["error"]]
        return run
    run.results, run.lost, run.errors = sample["results"], sample["lost"], sample["errors"]
    run.retries = sample["retries"]
    run.wall_s, run.cpu_s = sample["wall"], sample["cpu"]
    run.peak_rss_mib = sample["peak_rss"] / 2**20
    run.baseline_rss_mib = sample["baseline_rss"] / 2**20
    if sample["idle_rss"] is not None:
        run.idle_rss_mib = sample["idle_rss"] / 2**20
    _log(f"  {run.results:,} results, peak RSS {run.peak_rss_mib:.1f} MiB, {run.wall_s:.1f} s")
    return run


if __name__ == "__main__":
    sys.exit(main())
