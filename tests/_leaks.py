"""What the driver tests (``test_drivers``, ``test_httpx_drivers``) share to run a
scenario on the real network and the real clock, and to leave nothing behind.

``clear_environment`` removes the settings a driver would read from the environment;
``open_sockets``, ``check_leaks`` and ``leak_check`` find a socket left open, a thread
left running, or a ResourceWarning for the garbage collector to find; ``accepting`` is
a bare TCP listener served by a thread, that leaves nothing open behind it. ``alarm``
(a blocking scenario) and ``run_asyncio`` (an async one, on asyncio's loop or uvloop's)
end a scenario that outlives LIMIT, so that a hang fails the test, not the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
import threading
import warnings
from typing import TYPE_CHECKING, TypeVar

import pytest

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from types import FrameType

T = TypeVar("T")

#: Seconds any one scenario must end within: a hang fails the test, not the run.
LIMIT = 20.0

#: Settings from the environment that would change what a driver does (httpx honours
#: the proxy variables, in either case): none of them, for every test.
ENVIRONMENT = (
    "CYBERUN_API_KEY",
    "CYBERUN_BASE_URL",
    "CYBERUN_TEAM_ID",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
)


def clear_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every ENVIRONMENT variable, upper and lower case, for this test."""
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


# -- leaks -------------------------------------------------------------------------------

#: Whether the sockets can be counted (Linux's /proc).
HAS_PROC = os.path.isdir("/proc/self/fd") and os.path.exists("/proc/net/tcp")


def open_sockets() -> set[str]:
    """The inodes of this process's open sockets (Linux; empty elsewhere)."""
    out: set[str] = set()
    if not HAS_PROC:  # pragma: no cover
        return out
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                out.add(target[len("socket:[") : -1])
    return out


def check_leaks(
    sockets: set[str], threads: set[threading.Thread], *, at_once: bool = False
) -> None:
    """No socket open and no thread running that were not there before (``sockets``,
    ``threads``), and no ResourceWarning from the garbage collector.

    ``at_once``: the sockets are counted before the garbage collection, so that one
    only the collector would close counts as left open too (else after it)."""
    still_open = open_sockets() - sockets if at_once else set()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    if not at_once:
        still_open = open_sockets() - sockets
    resource = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    left = [t.name for t in threading.enumerate() if t not in threads and t.is_alive()]
    assert still_open == set(), "sockets left open"
    assert resource == [], "ResourceWarning at garbage collection"
    assert left == [], "threads left running"


@contextlib.contextmanager
def leak_check(*, at_once: bool = False) -> Iterator[None]:
    """``check_leaks`` at the end of the block, against what was open at its start (not
    when the block raises: its exception is the failure)."""
    sockets = open_sockets()
    threads = set(threading.enumerate())
    yield
    check_leaks(sockets, threads, at_once=at_once)


@contextlib.contextmanager
def accepting(name: str, handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A TCP listener on loopback, served by a thread (``name``) that hands each
    connection it accepts to ``handle``; the block gets its port. At the end of the
    block the thread is stopped, and every connection and the listener are closed."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.02)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            held.append(conn)
            handle(conn)

    thread = threading.Thread(target=serve, name=name, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        sock.close()


# -- running things ----------------------------------------------------------------------


class Hung(BaseException):
    """A blocking scenario outlived LIMIT (a BaseException, so no driver swallows it)."""


@contextlib.contextmanager
def alarm(seconds: float = LIMIT, exc: type[BaseException] = Hung) -> Iterator[None]:
    """Raise ``exc`` in the main thread after ``seconds`` (where SIGALRM exists)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not (
        threading.main_thread()
    ):  # pragma: no cover
        yield
        return

    def ring(signum: int, frame: FrameType | None) -> None:
        raise exc(f"the scenario did not end within {seconds} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_asyncio(main: Callable[[], Awaitable[T]], loop: str = "asyncio") -> T:
    """Run ``main()`` under asyncio (``loop="uvloop"``: on uvloop's loop), within LIMIT."""

    async def guarded() -> T:
        return await asyncio.wait_for(main(), LIMIT)

    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        if sys.version_info >= (3, 11):
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(guarded())
        result: T = uvloop.run(guarded())  # pragma: no cover (3.10)
        return result  # pragma: no cover
    assert loop == "asyncio"
    return asyncio.run(guarded())
