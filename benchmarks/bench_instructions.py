"""Instruction counts (valgrind's callgrind): a figure that does not move with the load.

Wall-clock figures on a shared machine swing by tens of percent between identical
runs; the number of instructions a piece of work takes does not (with
``PYTHONHASHSEED`` fixed). This script counts them for the current install, so two
trees (before and after a change) compare exactly:

* **parser**: instructions per parse of each ``bench_parser.py`` workload (the quick
  sizes), compiled core and pure core: a run of 4 parses minus a run of 1, over 3, so
  the interpreter's start-up and the workload's construction cancel out.
* **e2e**: client instructions per event of ``Client.task_events`` (trio) over TLS
  on loopback, against httpx + httpx-sse + ``json.loads`` under asyncio on the same
  stream, the test server in its own process (not counted): 6,000 events minus
  2,000, over 4,000.
* **drivers**: the same difference for each client of ``bench_drivers.py`` on its
  stream (one HTTP chunk per event, its server in its own process):
  ``sseproto.asyncio`` and ``sseproto.sync`` against httpx + httpx-sse, with ratios.

Run: ``python benchmarks/bench_instructions.py [--only parser|e2e|drivers]`` (needs valgrind;
a few minutes). A benchmark, not a test: nothing here fails on a figure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOADS = ["w1", "w2", "w3", "w4", "w5"]

_PARSE = """
import sys
sys.path.insert(0, {here!r})
import bench_parser
import sseproto
workload = bench_parser.build_workloads([{name!r}], quick=True)[0]
for _ in range({reps}):
    parser = sseproto.EventStreamParser()
    for chunk in workload.chunks:
        parser.feed(chunk)
"""

_E2E = """
import asyncio
import sys
sys.path.insert(0, {here!r})
import trio
import bench_e2e

if __name__ == "__main__":
    server = bench_e2e.Remote({{"t": bench_e2e.Task(steps=bench_e2e._steps({events}))}})
    try:
        read = bench_e2e.READERS[{reader!r}]
        if {runner!r} == "trio":
            got = trio.run(read, server, "t")
        else:
            got = asyncio.run(read(server, "t"))
        assert got == {events}, got
    finally:
        server.stop()
"""
#: The e2e clients: (label, bench_e2e reader, runner).
E2E_CLIENTS = (
    ("sseproto Client.task_events, trio", "sseproto", "trio"),
    ("httpx + httpx-sse + json.loads, asyncio", "httpx + httpx-sse", "asyncio"),
)


_DRIVER = """
import sys
sys.path.insert(0, {here!r})
import bench_drivers as b

if __name__ == "__main__":
    clients, _ = b.build_clients([{runner!r}], floor=False)
    (client,) = [c for c in clients if c.key == {key!r}]
    # Both streams are built in both runs, so that building them cancels out.
    streams = {{n: b.build_stream(n) for n in (2000, 6000)}}
    responses = {{f"/{{n}}".encode(): b.http_response(s, "chunked") for n, s in streams.items()}}
    server = b.Server(responses)
    try:
        url = f"{{server.origin}}/{events}"
        target = b.Target(url, server.ssl_context, {{"Authorization": "Bearer x"}})
        assert b.attempt(client, target, streams[{events}]) is not None, client.error
    finally:
        server.stop()
"""

#: (runner, sseproto's client, its httpx-sse counterpart) in bench_drivers.py
DRIVER_PAIRS = [
    ("asyncio", "asyncio/sseproto", "asyncio/httpx-sse"),
    ("sync", "sync/sseproto", "sync/httpx-sse"),
]


def instructions(code: str, *, pure: bool = False) -> int:
    """Instructions callgrind counts for ``python -c code`` (children not traced)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if pure:
        env["SSEPROTO_NO_EXTENSIONS"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        script = Path(tmp) / "work.py"
        script.write_text(code)
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--trace-children=no",
                f"--callgrind-out-file={out}",
                sys.executable,
                str(script),
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise SystemExit("callgrind wrote no total")


def parser_figures() -> None:
    print("instructions per parse (bench_parser quick workloads, PYTHONHASHSEED=0)")
    print(f"  {'workload':<10}{'compiled':>16}{'pure':>16}")
    for name in WORKLOADS:
        row = []
        for pure in (False, True):
            one = instructions(_PARSE.format(here=str(HERE), name=name, reps=1), pure=pure)
            four = instructions(_PARSE.format(here=str(HERE), name=name, reps=4), pure=pure)
            row.append((four - one) // 3)
        print(f"  {name:<10}{row[0]:>16,}{row[1]:>16,}", flush=True)


def e2e_figures() -> None:
    print("client instructions per event over TLS on loopback (bench_e2e.py's server)")
    figures = []
    for label, reader, runner in E2E_CLIENTS:
        small, large = (
            instructions(_E2E.format(here=str(HERE), events=n, reader=reader, runner=runner))
            for n in (2000, 6000)
        )
        figures.append((large - small) // 4000)
        print(f"  {label:<42}{figures[-1]:>10,}", flush=True)
    print(f"  ratio (httpx's over sseproto's){figures[1] / figures[0]:>21.2f}x")


def driver_figures() -> None:
    print("client instructions per event, bench_drivers.py's stream (one chunk per event)")
    for runner, ours, theirs in DRIVER_PAIRS:
        per_event = {}
        for key in (ours, theirs):
            small, large = (
                instructions(_DRIVER.format(here=str(HERE), runner=runner, key=key, events=n))
                for n in (2000, 6000)
            )
            per_event[key] = (large - small) // 4000
        ratio = per_event[theirs] / per_event[ours]
        print(
            f"  {runner:<8} sseproto {per_event[ours]:>9,}   httpx-sse {per_event[theirs]:>9,}"
            f"   ratio {ratio:.2f}x",
            flush=True,
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--only", choices=["parser", "e2e", "drivers"], default=None)
    args = ap.parse_args()
    import sseproto._parser

    if not sseproto._parser.compiled:
        print("note: the core is not compiled here; the compiled column is the pure core")
    if args.only in (None, "parser"):
        parser_figures()
    if args.only in (None, "e2e"):
        e2e_figures()
    if args.only in (None, "drivers"):
        driver_figures()
    return 0


if __name__ == "__main__":
    sys.exit(main())
