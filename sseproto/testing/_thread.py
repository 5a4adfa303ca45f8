"""``serve_in_thread``: the test server for asyncio and blocking code.

The server of :func:`~sseproto.testing.serve` lives in a trio task tree; code that is
not trio (an ``asyncio`` test, a blocking one, a notebook) cannot open one. This runs
the very same server on its own ``trio.run`` in a background thread, on the real
clock, and hands back the same :class:`~sseproto.testing.TestServer`. Leaving the
``with`` block stops it and joins the thread: no thread, socket or temporary file
outlives the block.

The server's attributes (``base_url``, ``token``, ``ssl_context``, ``ca_path``,
``requests``, ``uploads``) are safe to read from the caller's thread; its methods that need trio
(``task()``) are not: talk to it over HTTP, as a client would.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import trio

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from ._server import LINK_SECONDS, MAX_UPLOAD_BYTES, TestServer, UnknownTasks, serve

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from ._script import Task

__all__ = ["serve_in_thread"]

#: How long the server may take to start or to stop before the caller hears of it.
_START_SECONDS = 30.0


@contextmanager
def serve_in_thread(
    tasks: Mapping[str, Task] | None = None,
    *,
    token: str | None = None,
    port: int = 0,
    names: Sequence[str] = (),
    unknown: UnknownTasks = "timeline",
    link_seconds: float = LINK_SECONDS,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    result_conflict: bool = False,
) -> Iterator[TestServer]:
    """Run the test server in a thread of its own for the duration of the ``with``.

    ::

        with sseproto.testing.serve_in_thread({"t-1": scenario("flaky")}) as srv:
            result = asyncio.run(sseproto.asyncio.watch(
                "t-1", api_key=srv.token, base_url=srv.base_url,
                ssl_context=srv.ssl_context))

    Args:
        tasks, token, port, names, unknown, link_seconds, max_upload_bytes,
        result_conflict: As for :func:`~sseproto.testing.serve`.

    Yields:
        The running :class:`~sseproto.testing.TestServer`.

    Raises:
        Whatever starting the server raised (a port in use, trustme missing), in the
        caller's thread.
    """
    started = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        stop = trio.Event()
        box["stop"] = stop
        box["token"] = trio.lowlevel.current_trio_token()
        async with serve(
            tasks,
            token=token,
            port=port,
            names=names,
            unknown=unknown,
            link_seconds=link_seconds,
            max_upload_bytes=max_upload_bytes,
            result_conflict=result_conflict,
        ) as server:
            box["server"] = server
            started.set()
            await stop.wait()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # handed to the caller's thread
            # trio's nursery wraps a lone failure (a port in use): the caller is not
            # trio code, and expects the OSError itself.
            while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
                exc = exc.exceptions[0]
            box["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=run, name="sseproto-test-server", daemon=True)
    thread.start()
    if not started.wait(_START_SECONDS):  # pragma: no cover (a machine that hangs)
        raise RuntimeError(f"the test server did not start within {_START_SECONDS:.0f} s")
    if "server" not in box:
        thread.join()
        raise box["error"]
    try:
        yield box["server"]
    finally:
        # (RunFinishedError: the server's loop already ended, it crashed.)
        with contextlib.suppress(trio.RunFinishedError):
            trio.from_thread.run_sync(box["stop"].set, trio_token=box["token"])
        thread.join(_START_SECONDS)
    if "error" in box:
        raise box["error"]
