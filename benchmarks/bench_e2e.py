"""End-to-end benchmarks: the whole stack, from the test server to the caller.

A benchmark, not a test (nothing fails on timing). The test server runs in a process
of its own (multiprocessing, spawn), so the figures are the client's own:

* **throughput**: a task of ``--events`` events, all due at once, read over TLS on
  loopback by ``sseproto`` (``Client.task_events``: trio + h11 + parser + typed
  decoding) and by ``httpx + httpx-sse`` (``aconnect_sse`` / ``aiter_sse`` under trio,
  each event's JSON decoded), best of ``--repeat``. The server is the wall-clock
  bottleneck for both, so client CPU time per event is the figure that compares them.
* **watchers**: ``--watchers`` concurrent ``sseproto.watch`` calls in one process (one
  task each, ``--watcher-events`` events ``--watcher-interval`` seconds apart; all
  started at once, or over ``--ramp`` seconds so that one server process keeps up):
  peak RSS, RSS growth per watcher, client CPU time per event delivered, and how
  many reconnects and retried calls an overloaded server caused.

Run: ``pip install -e '.[bench,cli]'`` then ``python benchmarks/bench_e2e.py``.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import resource
import ssl
import sys
import time
from typing import Any

import httpx
import trio
from httpx_sse import aconnect_sse

import sseproto
from sseproto.testing import Task, completed, progress, serve, status


def _steps(n: int, interval: float = 0.0) -> list[Any]:
    """``n`` events: a status, ``n - 2`` progress updates, the completion."""
    body = [progress(i / n, delay=interval, step_current=i) for i in range(1, n - 1)]
    return [status("running"), *body, completed({"ok": True}, delay=interval)]


def _serve_forever(tasks: dict[str, Task], pipe: Any) -> None:
    async def run() -> None:
        async with serve(tasks) as server:
            pipe.send((server.base_url, server.token, server.ca_path))
            await trio.sleep_forever()

    trio.run(run)


class Remote:
    """A test server running in another process."""

    def __init__(self, tasks: dict[str, Task]) -> None:
        spawn = multiprocessing.get_context("spawn")  # a fork would inherit a trio run
        parent, child = spawn.Pipe()
        self.process = spawn.Process(target=_serve_forever, args=(tasks, child), daemon=True)
        self.process.start()
        if not parent.poll(60):
            self.process.terminate()
            raise SystemExit("the server process did not start")
        self.base_url, self.token, ca_path = parent.recv()
        self.ssl_context = ssl.create_default_context(cafile=ca_path)

    def stop(self) -> None:
        self.process.terminate()
        self.process.join()


async def read_sseproto(server: Remote, task_id: str) -> int:
    count = 0
    async with sseproto.Client(server.token, server.base_url, ssl_context=server.ssl_context) as c:
        async for event in c.task_events(task_id):
            count += 1
            if getattr(event, "is_terminal", False):
                break
    return count


async def read_httpx(server: Remote, task_id: str) -> int:
    count = 0
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(verify=server.ssl_context, headers=headers, timeout=60) as c:
        url = f"{server.base_url}/tasks/{task_id}/events"
        async with aconnect_sse(c, "GET", url) as source:
            async for sse in source.aiter_sse():
                sse.json()
                count += 1
                if sse.event in ("completed", "failed", "cancelled"):
                    break
    return count


READERS = {"sseproto": read_sseproto, "httpx + httpx-sse": read_httpx}


async def throughput(server: Remote, events: int, repeat: int) -> dict[str, dict[str, float]]:
    best: dict[str, dict[str, float]] = {}
    for i in range(repeat):
        for n, (name, read) in enumerate(READERS.items()):
            wall, cpu = time.perf_counter(), time.process_time()
            got = await read(server, f"r{n}-{i}")
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if got != events:
                raise SystemExit(f"{name} read {got} events, not {events}")
            row = {"events_per_s": events / wall, "cpu_us_per_event": cpu / events * 1e6}
            if name not in best or row["cpu_us_per_event"] < best[name]["cpu_us_per_event"]:
                best[name] = row
    return best


async def watchers(server: Remote, n: int, ramp: float) -> dict[str, float]:
    delivered = 0

    def count(_: object) -> None:
        nonlocal delivered
        delivered += 1

    async def one(task_id: str) -> None:
        await sseproto.watch(
            task_id,
            api_key=server.token,
            base_url=server.base_url,
            ssl_context=server.ssl_context,
            on_event=count,
        )

    retries = _RetryCounter()
    logging.getLogger("sseproto").addHandler(retries)
    logging.getLogger("sseproto").setLevel(logging.INFO)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wall, cpu = time.perf_counter(), time.process_time()
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, f"w-{i}")
            if ramp:  # start them over `ramp` seconds, so the one server keeps up
                await trio.sleep(ramp / n)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "watchers": n,
        "events": delivered,
        "seconds": wall,
        "peak_rss_mib": rss_after / 1024,
        "rss_kib_per_watcher": (rss_after - rss_before) / n,
        "cpu_us_per_event": cpu / max(delivered, 1) * 1e6,
        "retries": retries.count,  # reconnects and retried calls (an overloaded server)
    }


class _RetryCounter(logging.Handler):
    """Counts the library's log lines about reconnecting and retrying."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def main() -> int:
    ap = argparse.ArgumentParser(description="sseproto end-to-end benchmarks")
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--watchers", type=int, default=1000)
    ap.add_argument("--watcher-events", type=int, default=10)
    ap.add_argument("--watcher-interval", type=float, default=0.05, metavar="S")
    ap.add_argument("--ramp", type=float, default=0.0, help="start the watchers over S s")
    args = ap.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a socket per watcher
    tasks = {
        f"r{n}-{i}": Task(steps=_steps(args.events)) for n in range(2) for i in range(args.repeat)
    }
    tasks.update(
        {
            f"w-{i}": Task(steps=_steps(args.watcher_events, args.watcher_interval))
            for i in range(args.watchers)
        }
    )
    server = Remote(tasks)
    try:
        rows = trio.run(throughput, server, args.events, args.repeat)
        many = trio.run(watchers, server, args.watchers, args.ramp)
    finally:
        server.stop()
    parser = "compiled (mypyc)" if sseproto._parser.compiled else "pure Python"
    print(f"throughput: {args.events:,} events over TLS on loopback (parser: {parser})")
    print(f"  {'client':<20}{'events/s':>12}{'client CPU us/event':>22}")
    for name, row in rows.items():
        print(f"  {name:<20}{row['events_per_s']:>12,.0f}{row['cpu_us_per_event']:>22.1f}")
    ratio = rows["httpx + httpx-sse"]["cpu_us_per_event"] / rows["sseproto"]["cpu_us_per_event"]
    print(f"  client CPU per event, httpx + httpx-sse / sseproto: {ratio:.2f}")
    print(f"\nwatchers: {args.watchers:,} concurrent watch() calls in one process")
    for key, value in many.items():
        print(f"  {key:<22}{value:>12,.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
