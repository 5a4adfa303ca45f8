"""pproxy (PyPI), a real HTTP proxy that is not ours, run as a subprocess.

``running_pproxy()`` starts this file as a script: it makes pproxy start under the
test venv and resolve :data:`PROXY_ONLY_HOST` (a name nobody else can resolve) to
127.0.0.1, then runs it with ``-v`` (a line per tunnel, ``http 127.0.0.1:P ->
host:port``, into a log file) and ``--auth 0`` (else pproxy trusts a client address
for 30 days once it authenticated, and lets later requests without credentials
through). The block gets a :class:`RunningProxy`: its port, its URL (with the
credentials, if any) and its log so far.

As a script (``python -W ignore tests/_pproxy.py <pproxy's arguments>``):

* uvloop is hidden from pproxy (with it installed, pproxy installs it and then
  crashes at start: "There is no current event loop"), and an asyncio loop is set;
* ``socket.getaddrinfo`` answers :data:`PROXY_ONLY_HOST` with 127.0.0.1 and passes
  every other name to the real resolver.

Only the standard library is imported here at the top: the test process imports this
module for :func:`running_pproxy`, the proxy process runs it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

#: A host name only the proxy resolves (to 127.0.0.1): ``.test`` is reserved (RFC
#: 2606), so the test process's resolver says it does not exist.
PROXY_ONLY_HOST = "api.only-the-proxy.test"

#: Seconds the proxy has to start accepting connections.
START_SECONDS = 15.0


@dataclass
class RunningProxy:
    """A pproxy process: where it listens, and what it logged."""

    port: int
    log_path: str
    user: str | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        """``http://[user:password@]127.0.0.1:port``."""
        credentials = f"{self.user}:{self.password}@" if self.user is not None else ""
        return f"http://{credentials}127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        """The proxy's URL with other credentials."""
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    @property
    def bare_url(self) -> str:
        """The proxy's URL without credentials."""
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def tunnels_to(self, host: str, port: int | None = None) -> int:
        """How many tunnels (CONNECTs) to ``host`` (``host:port``) the proxy opened,
        as its log says so far (``http 127.0.0.1:37540 -> host:port``)."""
        target = f"-> {host}:{port}" if port is not None else f"-> {host}:"
        return sum(1 for line in self.log().splitlines() if target in line)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on (just now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def running_pproxy(user: str | None = None, password: str | None = None) -> Iterator[RunningProxy]:
    """pproxy on 127.0.0.1 (an HTTP proxy; with ``user`` and ``password``, Basic auth),
    for the duration of the block; terminated at its end."""
    with tempfile.TemporaryDirectory(prefix="sseproto-pproxy-") as tmp:
        log_path = os.path.join(tmp, "pproxy.log")
        port = free_port()
        listen = f"http://127.0.0.1:{port}"
        if user is not None:
            listen += f"#{user}:{password}"
        command = [sys.executable, "-W", "ignore", __file__, "-l", listen, "--auth", "0", "-v"]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        try:
            proxy = RunningProxy(port, log_path, user, password)
            deadline = time.monotonic() + START_SECONDS
            while not _accepts(port):
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"pproxy exited at start ({proc.returncode}):\n{proxy.log()}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pproxy did not listen within {START_SECONDS} s")
                time.sleep(0.02)
            yield proxy
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                proc.kill()
                proc.wait()


# -- the proxy's process -----------------------------------------------------------------


def _patch_resolver() -> None:
    """``PROXY_ONLY_HOST`` resolves to 127.0.0.1 in this process (pproxy's asyncio
    loop resolves with ``socket.getaddrinfo``, looked up at each call)."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, bytes):
            host = host.decode("ascii")
        if isinstance(host, str) and host.rstrip(".").lower() == PROXY_ONLY_HOST:
            host = "127.0.0.1"
        return real(host, port, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo


def _serve(argv: list[str]) -> None:  # pragma: no cover (runs in the proxy's process)
    import asyncio

    sys.modules["uvloop"] = None  # type: ignore[assignment]  # pproxy's import fails: asyncio's loop
    asyncio.set_event_loop(asyncio.new_event_loop())
    _patch_resolver()
    from pproxy.server import main  # type: ignore[import-untyped]

    main(argv)


if __name__ == "__main__":  # pragma: no cover
    _serve(sys.argv[1:])
