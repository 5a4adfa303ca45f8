"""What is particular to the drivers on httpx (``sseproto.asyncio``, ``sseproto.sync``)
and to ``sseproto.testing.serve_in_thread``.

The behaviour every driver shares (drops, stalls, Retry-After, 204, polling, failed and
cancelled tasks) is ``test_drivers``'; here: the import without httpx, the translation
of httpx's exceptions (unit by unit, then through real sockets), ``http_client=`` (a
caller's client is used and never closed, sseproto's own is always closed, redirects
stay sseproto's), the request headers as httpx sends them, bounded and raw bodies,
Ctrl-C in blocking code and cancellation under asyncio and uvloop (no socket left
open), secrets kept out of every repr, message and log record, and the threaded test
server itself.

Scripted answers come from ``httpx.MockTransport`` where no real server is needed; the
rest runs against ``serve_in_thread`` on loopback, on the real clock, with timelines of
hundredths of a second. The autouse ``no_leaks`` fixture fails a test that leaves a
socket open, a thread running, or a ResourceWarning for the garbage collector to find;
``sockets_to(port)`` finds the client's side of the connections to a local server
(Linux ``/proc``), to check that a stream closed its own at once. Tests of library
bugs are marked ``xfail(strict=True)`` with the bug in their reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import gzip
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest

import sseproto
import sseproto.asyncio as async_sse
import sseproto.sync as sync_sse
from sseproto import _api, _httpx
from sseproto._rules import ERROR_BODY_LIMIT
from sseproto.testing import Fault, Task, TestServer, completed, serve_in_thread, status
from tests._leaks import (
    HAS_PROC,
    accepting,
    alarm,
    clear_environment,
    leak_check,
    open_sockets,
    run_asyncio,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from types import FrameType

#: The httpx drivers: blocking, asyncio, asyncio on uvloop.
DRIVERS = ["sync", "asyncio", "uvloop"]
LOOPS = ["asyncio", "uvloop"]
#: What sseproto sends as User-Agent.
USER_AGENT = f"sseproto/{sseproto.__version__}"
needs_proc = pytest.mark.skipif(not HAS_PROC, reason="counts sockets through Linux's /proc")
needs_alarm = pytest.mark.skipif(
    not hasattr(signal, "setitimer"), reason="delivers Ctrl-C with signal.setitimer"
)

#: A task done in a few hundredths of a second; its stream sends ``retry: 50``.
QUICK = Task(
    steps=[status("pending"), status("running", delay=0.01), completed({"n": 1}, delay=0.01)],
    retry=50,
)
QUICK_LABELS = ["status:pending", "status:running", "completed:completed"]
#: The same, whose first stream sends one event, then nothing, with the connection open.
STALLS = Task(steps=QUICK.steps, faults=[Fault("stall", after=1)], retry=50)
#: A task that runs for a minute (its stream idle after two events).
LONG = Task(steps=[status("pending"), status("running"), completed(delay=60.0)], retry=50)


# -- leaks -------------------------------------------------------------------------------


def _tcp_ports() -> dict[str, tuple[int, int]]:
    """inode -> (local port, remote port) of the host's TCP sockets."""
    table: dict[str, tuple[int, int]] = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as file:
                lines = file.read().splitlines()[1:]
        except OSError:  # pragma: no cover (no IPv6)
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            table[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16))
    return table


def sockets_to(port: int) -> set[str]:
    """This process's sockets connected to local ``port``: the client's side of the
    connections to a server in a thread (the server's own side is left out)."""
    ports = _tcp_ports()
    return {inode for inode in open_sockets() if ports.get(inode, (0, 0))[1] == port}


def sockets_of(port: int) -> set[str]:
    """This process's sockets on local ``port``: a server's listener and connections."""
    ports = _tcp_ports()
    return {inode for inode in open_sockets() if ports.get(inode, (0, 0))[0] == port}


@pytest.fixture(autouse=True)
def no_leaks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test ends with no new socket open (closed at once, not by the garbage
    collector), no new thread, no ResourceWarning (and runs without the environment's
    CYBERUN_*, SSL_CERT_* and proxy settings)."""
    clear_environment(monkeypatch)
    with leak_check(at_once=True):
        yield


@pytest.fixture
def own_clients(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Client | httpx.AsyncClient]:
    """Every httpx client created during the test (sseproto's own, when the test makes
    none itself), for checking that each was closed."""
    made: list[httpx.Client | httpx.AsyncClient] = []

    class Client(httpx.Client):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            made.append(self)

    class AsyncClient(httpx.AsyncClient):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            made.append(self)

    monkeypatch.setattr(httpx, "Client", Client)
    monkeypatch.setattr(httpx, "AsyncClient", AsyncClient)
    return made


# -- running things ----------------------------------------------------------------------


@contextlib.contextmanager
def ctrl_c() -> Iterator[Callable[[float], None]]:
    """``arm(seconds)``: a KeyboardInterrupt in the main thread ``seconds`` later, raised
    by a signal handler wherever the thread is (in a blocking read too), as Ctrl-C."""

    def ring(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    def arm(seconds: float) -> None:
        signal.setitimer(signal.ITIMER_REAL, seconds)

    previous = signal.signal(signal.SIGALRM, ring)
    try:
        yield arm
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def events_url(srv: TestServer, task_id: str = "t-1") -> str:
    return f"{srv.base_url}/tasks/{task_id}/events"


def label(event: sseproto.ServerSentEvent) -> str:
    return f"{event.event}:{json.loads(event.data)['status']}"


def event_requests(srv: TestServer, task_id: str = "t-1") -> list[sseproto.testing.RecordedRequest]:
    return [r for r in srv.requests if r.path.endswith(f"/tasks/{task_id}/events")]


@dataclass
class Streamed:
    """What ``open_event_stream`` gave: its events, its error, and sseproto's own
    httpx client as it was while the stream was open (None: the stream had none)."""

    events: list[sseproto.ServerSentEvent] = field(default_factory=list)
    error: BaseException | None = None
    own: httpx.Client | httpx.AsyncClient | None = None


def stream_with(driver: str, url: str, *, stop_after: int | None = None, **kwargs: Any) -> Streamed:
    """Read ``url`` with ``driver``'s ``open_event_stream(url, **kwargs)`` to its end, or
    ``stop_after`` events; an SSEProtoError (or an httpx error that escaped) is kept in
    the record."""
    out = Streamed()

    def take(event: sseproto.ServerSentEvent) -> bool:
        out.events.append(event)
        return stop_after is not None and len(out.events) >= stop_after

    if driver == "sync":
        with alarm():
            try:
                with sync_sse.open_event_stream(url, **kwargs) as stream:
                    try:
                        for event in stream:
                            if take(event):
                                break
                    finally:
                        out.own = stream._own
            except (sseproto.SSEProtoError, httpx.HTTPError) as exc:  # (httpx's: a bug)
                out.error = exc
        return out

    async def main() -> None:
        try:
            async with async_sse.open_event_stream(url, **kwargs) as stream:
                try:
                    async for event in stream:
                        if take(event):
                            break
                finally:
                    out.own = stream._own
        except (sseproto.SSEProtoError, httpx.HTTPError) as exc:
            out.error = exc

    run_asyncio(main, driver)
    return out


def call(driver: str, method: str, *args: Any, **settings: Any) -> Any:
    """One call of ``driver``'s ``Client(**settings)``: its value or its SSEProtoError."""
    try:
        if driver == "sync":
            with alarm(), sync_sse.Client(**settings) as client:
                return getattr(client, method)(*args)

        async def main() -> Any:
            async with async_sse.Client(**settings) as client:
                return await getattr(client, method)(*args)

        return run_asyncio(main, driver)
    except sseproto.SSEProtoError as exc:
        return exc


def watch(driver: str, task_id: str, **kwargs: Any) -> Any:
    """``driver``'s ``watch(task_id, **kwargs)``: the result or its SSEProtoError."""
    kwargs.setdefault("poll_interval", 0.05)
    try:
        if driver == "sync":
            with alarm():
                return sync_sse.watch(task_id, **kwargs)

        async def main() -> Any:
            return await async_sse.watch(task_id, **kwargs)

        return run_asyncio(main, driver)
    except sseproto.SSEProtoError as exc:
        return exc


def mock_client(
    driver: str, handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any
) -> Any:
    """An httpx client of the kind ``driver`` takes, answering with ``handler``."""
    kind = httpx.Client if driver == "sync" else httpx.AsyncClient
    return kind(transport=httpx.MockTransport(handler), **kwargs)


@contextlib.contextmanager
def closing(client: Any) -> Iterator[Any]:
    """``client`` (an httpx.Client or AsyncClient on a mock transport), closed at the end
    of the block (an AsyncClient on an event loop of its own)."""
    try:
        yield client
    finally:
        if isinstance(client, httpx.Client):
            client.close()
        else:
            asyncio.run(client.aclose())


def sse_response(body: bytes, **headers: str) -> httpx.Response:
    """An event stream's answer. (Not ``content=body``: httpx reads such a body at
    once, and the drivers' raw reads then find it consumed; see below.)"""
    return httpx.Response(
        200, headers={"content-type": "text/event-stream", **headers}, stream=Body(body, 1)
    )


def answer(status_code: int, body: bytes = b"", **headers: str) -> httpx.Response:
    """A scripted answer whose body the drivers can read raw (see sse_response)."""
    return httpx.Response(status_code, headers=headers, stream=Body(body, 1))


def json_response(value: Any, status_code: int = 200) -> httpx.Response:
    body = json.dumps(value).encode()
    return httpx.Response(
        status_code, headers={"content-type": "application/json"}, stream=Body(body, 1)
    )


class Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body made as it is read, ``count`` times ``chunk``: it records how
    many bytes were handed out and whether it was closed."""

    def __init__(self, chunk: bytes, count: int) -> None:
        self.chunk = chunk
        self.count = count
        self.sent = 0
        self.closed = False

    @property
    def whole(self) -> bytes:
        return self.chunk * self.count

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.count):
            self.sent += len(self.chunk)
            yield self.chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self:
            yield chunk

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class Listener:
    """A TCP listener on loopback (see ``silent_listener``)."""

    port: int
    accepted: threading.Event = field(default_factory=threading.Event)


@contextlib.contextmanager
def silent_listener() -> Iterator[Listener]:
    """A TCP listener on loopback that accepts connections and never says a byte (no
    TLS handshake, no HTTP answer); ``accepted`` is set at its first connection."""
    listener = Listener(0)
    with accepting("silent-listener", lambda conn: listener.accepted.set()) as port:
        listener.port = port
        yield listener


def closed_port() -> int:
    """A loopback port nothing listens on (it was bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# == 1. without httpx ====================================================================

BLOCK_HTTPX = textwrap.dedent(
    """
    import importlib
    import importlib.abc
    import sys

    class WithoutHttpx(importlib.abc.MetaPathFinder):
        # As if httpx (and httpcore under it) were not installed.
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in ("httpx", "httpcore"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, WithoutHttpx())
    HINT = "pip install 'sseproto[httpx]'"
    """
)

WITHOUT_HTTPX = BLOCK_HTTPX + textwrap.dedent(
    """
    import sseproto
    import sseproto.testing

    loaded = sorted(m for m in ("httpx", "httpcore") if m in sys.modules)
    assert not loaded, f"import sseproto loaded {loaded}"

    # Each import fails the same way, the second time too (nothing half-imported).
    for name in ("sseproto.asyncio", "sseproto.sync") * 2:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            assert type(exc) is ImportError, repr(exc)
            assert HINT in str(exc), str(exc)
            assert exc.__cause__ is None, repr(exc.__cause__)
            assert exc.__suppress_context__, name
            assert name not in sys.modules, name
        else:
            raise AssertionError(f"{name} imported without httpx")
    for attribute in ("asyncio", "sync"):  # sseproto.asyncio after a plain import sseproto
        try:
            getattr(sseproto, attribute)
        except ImportError as exc:
            assert HINT in str(exc), str(exc)
        else:
            raise AssertionError(f"sseproto.{attribute} without httpx")
    assert "httpx" not in sys.modules
    print("ok")
    """
)


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_httpx_the_drivers_say_what_to_install() -> None:
    done = python(WITHOUT_HTTPX)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"


@pytest.mark.parametrize("module", ["asyncio", "sync"])
def test_without_httpx_the_import_error_is_one_traceback(module: str) -> None:
    done = python(BLOCK_HTTPX + f"import sseproto.{module}\n")
    assert done.returncode == 1
    assert done.stderr.count("Traceback (most recent call last)") == 1, done.stderr
    assert "During handling of the above exception" not in done.stderr
    assert "direct cause" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: "), last
    assert "pip install 'sseproto[httpx]'" in last


# == 2. httpx's exceptions, translated ===================================================

URL = "https://api.example:8443/v1/tasks/t-1/events?key=QUERYSECRET"
ORIGIN = "https://api.example:8443"
HEADER_SECRET = "HEADERSECRET"


def request() -> httpx.Request:
    """A request carrying secrets in its headers and query."""
    return httpx.Request(
        "GET", URL, headers={"Authorization": f"Bearer {HEADER_SECRET}", "X-Key": HEADER_SECRET}
    )


def ssl_error(kind: type[ssl.SSLError], reason: str) -> ssl.SSLError:
    """An SSLError as the ssl module makes it (attributes included)."""
    exc = kind(1, f"[SSL: {reason}] {reason.lower().replace('_', ' ')}")
    exc.reason = reason
    exc.library = "SSL"
    if isinstance(exc, ssl.SSLCertVerificationError):
        exc.verify_code = 19
        exc.verify_message = "self-signed certificate in certificate chain"
    return exc


def because(exc: BaseException, cause: BaseException, *, implicit: bool = False) -> BaseException:
    """``exc`` raised from ``cause`` (``implicit``: while handling it, as __context__)."""
    if implicit:
        exc.__context__ = cause
    else:
        exc.__cause__ = cause
    return exc


#: (id, httpx's exception, our class (exactly), a piece of our message)
TRANSLATIONS: list[tuple[str, Callable[[], BaseException], type[sseproto.SSEProtoError], str]] = [
    (
        "ConnectTimeout",
        lambda: httpx.ConnectTimeout("timed out", request=request()),
        sseproto.ConnectTimeout,
        "took longer than 1.5 s",
    ),
    (
        "PoolTimeout",
        lambda: httpx.PoolTimeout("timed out", request=request()),
        sseproto.ConnectTimeout,
        "took longer than 1.5 s",
    ),
    (
        "ReadTimeout",
        lambda: httpx.ReadTimeout("timed out", request=request()),
        sseproto.ReadTimeout,
        "for 2.5 s",
    ),
    (
        "WriteTimeout",
        lambda: httpx.WriteTimeout("timed out", request=request()),
        sseproto.ReadTimeout,
        "for 2.5 s",
    ),
    (
        "ConnectError",
        lambda: httpx.ConnectError("[Errno 111] Connection refused", request=request()),
        sseproto.ConnectError,
        "Connection refused",
    ),
    (
        "ConnectError-certificate",
        lambda: because(
            httpx.ConnectError("certificate verify failed", request=request()),
            ssl_error(ssl.SSLCertVerificationError, "CERTIFICATE_VERIFY_FAILED"),
        ),
        sseproto.CertificateError,
        "self-signed certificate",
    ),
    (
        "ConnectError-certificate-implicit",
        lambda: because(
            httpx.ConnectError("certificate verify failed", request=request()),
            ssl_error(ssl.SSLCertVerificationError, "CERTIFICATE_VERIFY_FAILED"),
            implicit=True,
        ),
        sseproto.CertificateError,
        "ssl_context=",
    ),
    (
        "ConnectError-deep-certificate",  # httpx's error from httpcore's from ssl's
        lambda: because(
            httpx.ConnectError("certificate verify failed", request=request()),
            because(
                OSError("wrapped"),
                ssl_error(ssl.SSLCertVerificationError, "CERTIFICATE_VERIFY_FAILED"),
            ),
        ),
        sseproto.CertificateError,
        "SSL_CERT_FILE",
    ),
    (
        "ConnectError-tls",
        lambda: because(
            httpx.ConnectError("alert", request=request()),
            ssl_error(ssl.SSLError, "TLSV1_ALERT_PROTOCOL_VERSION"),
        ),
        sseproto.TLSHandshakeError,
        "TLSV1_ALERT_PROTOCOL_VERSION",
    ),
    (
        "ConnectError-tls-eof",
        lambda: because(
            httpx.ConnectError("EOF", request=request()),
            ssl_error(ssl.SSLEOFError, "UNEXPECTED_EOF_WHILE_READING"),
        ),
        sseproto.TLSHandshakeError,
        "during the handshake",
    ),
    (
        "ProxyError",  # httpcore's text for a CONNECT answered with a non-2xx
        lambda: httpx.ProxyError("502 Bad Gateway", request=request()),
        sseproto.ProxyError,
        "the proxy answered HTTP 502 Bad Gateway to CONNECT",
    ),
    (
        "ProxyError-407",
        lambda: httpx.ProxyError("407 Proxy Authentication Required", request=request()),
        sseproto.ProxyError,
        "HTTP 407 Proxy Authentication Required",
    ),
    (
        "ProxyError-no-status",
        lambda: httpx.ProxyError("Server disconnected", request=request()),
        sseproto.ProxyError,
        "failed to open a tunnel",
    ),
    (
        "ConnectError-name-not-known",  # httpx's from httpcore's from the resolver's
        lambda: because(
            httpx.ConnectError("[Errno -2] Name or service not known", request=request()),
            because(OSError("wrapped"), socket.gaierror(socket.EAI_NONAME, "Name not known")),
        ),
        sseproto.NameResolutionError,
        "is not known",
    ),
    (
        "ConnectError-name-later",  # EAI_AGAIN: no answer from DNS yet, retried
        lambda: because(
            httpx.ConnectError("[Errno -3] Temporary failure", request=request()),
            socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
        ),
        sseproto.ConnectError,
        "Temporary failure",
    ),
    (
        "ReadError",
        lambda: httpx.ReadError("[Errno 104] Connection reset by peer", request=request()),
        sseproto.RemoteProtocolError,
        "broke: [Errno 104]",
    ),
    (
        "ReadError-tls",
        lambda: because(
            httpx.ReadError("bad record", request=request()),
            ssl_error(ssl.SSLError, "DECRYPTION_FAILED_OR_BAD_RECORD_MAC"),
        ),
        sseproto.RemoteProtocolError,
        "the TLS connection",
    ),
    (
        "ReadError-tls-eof",
        lambda: because(
            httpx.ReadError("EOF", request=request()),
            ssl_error(ssl.SSLEOFError, "UNEXPECTED_EOF_WHILE_READING"),
        ),
        sseproto.RemoteProtocolError,
        "the connection to",
    ),
    (
        "WriteError",
        lambda: httpx.WriteError("[Errno 32] Broken pipe", request=request()),
        sseproto.RemoteProtocolError,
        "Broken pipe",
    ),
    (
        "CloseError",
        lambda: httpx.CloseError("[Errno 9] Bad file descriptor", request=request()),
        sseproto.RemoteProtocolError,
        "broke",
    ),
    (
        "RemoteProtocolError-mid-body",
        lambda: httpx.RemoteProtocolError(
            "peer closed connection without sending complete message body "
            "(incomplete chunked read)",
            request=request(),
        ),
        sseproto.RemoteProtocolError,
        "in the middle of a response",
    ),
    (
        "RemoteProtocolError",
        lambda: httpx.RemoteProtocolError("illegal status line", request=request()),
        sseproto.RemoteProtocolError,
        "broke HTTP: illegal status line",
    ),
    (
        "LocalProtocolError",  # h11's message may quote a header value: not shown
        lambda: httpx.LocalProtocolError(
            f"Illegal header value b'Bearer {HEADER_SECRET} '", request=request()
        ),
        sseproto.SSEProtoError,
        "please report it",
    ),
    (
        "UnsupportedProtocol",
        lambda: httpx.UnsupportedProtocol(
            "Request URL has an unsupported protocol 'ftp://'.", request=request()
        ),
        sseproto.ConfigurationError,
        "unsupported protocol",
    ),
    (
        "InvalidURL",
        lambda: httpx.InvalidURL("Invalid port: 'x'"),
        sseproto.ConfigurationError,
        "Invalid port",
    ),
    (
        "DecodingError",
        lambda: httpx.DecodingError("bad gzip", request=request()),
        sseproto.TransportError,
        "bad gzip",
    ),
    (
        "TooManyRedirects",
        lambda: httpx.TooManyRedirects("Exceeded maximum allowed redirects.", request=request()),
        sseproto.TransportError,
        "TooManyRedirects",
    ),
    (
        "StreamClosed",
        httpx.StreamClosed,
        sseproto.TransportError,
        "StreamClosed",
    ),
]


def translate(exc: BaseException, url: str = URL) -> sseproto.SSEProtoError | None:
    return _httpx.translate(exc, url, connect_timeout=1.5, read_timeout=2.5)


@pytest.mark.parametrize(
    ("make", "expected", "says"),
    [case[1:] for case in TRANSLATIONS],
    ids=[case[0] for case in TRANSLATIONS],
)
def test_translate_each_httpx_failure(
    make: Callable[[], BaseException], expected: type[sseproto.SSEProtoError], says: str
) -> None:
    exc = make()
    ours = translate(exc)
    assert type(ours) is expected
    assert isinstance(ours, sseproto.SSEProtoError)
    message = str(ours)
    assert says in message
    if expected is not sseproto.SSEProtoError:  # (a request we built wrong names none)
        assert ORIGIN in message
    # Nothing of the request's headers, path or query: only the origin.
    for secret in (HEADER_SECRET, "QUERYSECRET", "/v1/tasks", "key="):
        assert secret not in message
        assert secret not in repr(ours)


def test_translate_uses_the_default_port_in_the_origin() -> None:
    ours = translate(httpx.ConnectError("refused"), "https://api.example/v1/x?key=QUERYSECRET")
    assert str(ours) == "could not connect to https://api.example: refused"


def test_translate_shortens_a_long_reason() -> None:
    ours = translate(httpx.ReadError("x" * 10_000))
    assert ours is not None
    assert len(str(ours)) < 300


def test_translate_keeps_ours_and_leaves_the_rest() -> None:
    mine = sseproto.ReadTimeout("already ours")
    assert translate(mine) is mine
    for other in (ValueError("x"), KeyboardInterrupt(), asyncio.CancelledError(), OSError(5, "x")):
        assert translate(other) is None


def test_translate_hides_the_query_of_an_httpx_status_error() -> None:
    response = httpx.Response(401, request=request())
    with pytest.raises(httpx.HTTPStatusError) as caught:
        response.raise_for_status()
    ours = translate(caught.value)
    assert isinstance(ours, sseproto.HTTPStatusError)
    assert ours.status_code == 401
    assert ORIGIN in str(ours)
    assert "QUERYSECRET" not in str(ours)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_refusal_raised_by_the_callers_hook_is_not_retried(driver: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(401, b"{}", **{"content-type": "application/json"})

    if driver == "sync":

        def hook(response: httpx.Response) -> None:
            response.raise_for_status()

        hooks: dict[str, list[Callable[[httpx.Response], Any]]] = {"response": [hook]}
    else:

        async def ahook(response: httpx.Response) -> None:
            response.raise_for_status()

        hooks = {"response": [ahook]}
    with closing(mock_client(driver, handler, event_hooks=hooks)) as mine:
        got = stream_with(
            driver,
            "https://api.example/events?key=QUERYSECRET",
            http_client=mine,
            max_attempts=2,
            max_backoff=0.05,
        )
    # The machine judged the answer the hook raised for: ours, final, and secret-free.
    assert isinstance(got.error, sseproto.HTTPStatusError)
    assert got.error.status_code == 401
    assert len(seen) == 1
    assert "QUERYSECRET" not in str(got.error)


# -- through real sockets ----------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_refused_connection_is_a_connect_error(driver: str) -> None:
    port = closed_port()
    url = f"https://127.0.0.1:{port}/events?key=QUERYSECRET"
    got = stream_with(driver, url, max_attempts=0)
    # max_attempts=0: the first failure ends the stream, as ReconnectError (the
    # machine's rule, every driver's), whose last_error is the translated one.
    assert isinstance(got.error, sseproto.ReconnectError)
    assert type(got.error.last_error) is sseproto.ConnectError
    assert got.error.__cause__ is got.error.last_error
    assert f"could not connect to https://127.0.0.1:{port}" in str(got.error.last_error)
    assert "QUERYSECRET" not in str(got.error)

    error = call(driver, "get_task", "t-1", api_key="sk-x", base_url=f"https://127.0.0.1:{port}")
    assert type(error) is sseproto.ConnectError
    assert f"https://127.0.0.1:{port}" in str(error)
    assert error.__cause__ is None
    assert error.__suppress_context__


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_server_that_never_speaks_tls_is_a_connect_timeout(driver: str) -> None:
    with silent_listener() as listener:
        port = listener.port
        started = time.monotonic()
        got = stream_with(
            driver, f"https://127.0.0.1:{port}/events", connect_timeout=0.3, max_attempts=0
        )
        assert isinstance(got.error, sseproto.ReconnectError)
        assert type(got.error.last_error) is sseproto.ConnectTimeout
        assert "took longer than 0.3 s" in str(got.error.last_error)
        error = call(
            driver,
            "get_task",
            "t-1",
            api_key="sk-x",
            base_url=f"https://127.0.0.1:{port}",
            connect_timeout=0.3,
        )
        assert type(error) is sseproto.ConnectTimeout
        assert time.monotonic() - started < 3.0  # two connect timeouts, not the defaults


@pytest.mark.parametrize("driver", DRIVERS)
def test_an_untrusted_certificate_is_a_certificate_error(driver: str) -> None:
    with serve_in_thread({"t-1": QUICK}) as srv:  # a private CA, not given
        got = stream_with(driver, events_url(srv), headers=auth(srv.token))
        error = call(driver, "get_task", "t-1", api_key=srv.token, base_url=srv.base_url)
        watched = watch(driver, "t-1", api_key=srv.token, base_url=srv.base_url)
        assert srv.requests == []  # no request got past the handshake
    for exc in (got.error, error, watched):
        assert type(exc) is sseproto.CertificateError  # not retried: the same every time
        assert f"the certificate of {srv.origin} could not be verified" in str(exc)
        assert "ssl_context=" in str(exc)
        assert "SSL_CERT_FILE" in str(exc)


@pytest.mark.parametrize("driver", DRIVERS)
def test_ssl_cert_file_is_the_default_trust(driver: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve_in_thread({"t-1": QUICK}) as srv:
        monkeypatch.setenv("SSL_CERT_FILE", srv.ca_path)
        got = stream_with(driver, events_url(srv), headers=auth(srv.token), stop_after=3)
        snapshot = call(driver, "get_task", "t-1", api_key=srv.token, base_url=srv.base_url)
    assert got.error is None
    assert [label(e) for e in got.events] == QUICK_LABELS
    assert isinstance(snapshot, sseproto.TaskSnapshot)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_stalled_body_is_a_read_timeout_then_a_resume(
    driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sseproto")
    with serve_in_thread({"t-1": STALLS}) as srv:
        got = stream_with(
            driver,
            events_url(srv),
            headers=auth(srv.token),
            ssl_context=srv.ssl_context,
            read_timeout=0.3,
            stop_after=3,
        )
        resumed = [r.headers.get("last-event-id") for r in event_requests(srv)]
    assert got.error is None
    assert [label(e) for e in got.events] == QUICK_LABELS
    assert [e.id for e in got.events] == ["1", "2", "3"]
    assert resumed == [None, "1"]
    said = [r.getMessage() for r in caplog.records if r.name == "sseproto"]
    expected = f"no data from {srv.origin} for 0.3 s (the idle read timeout)"
    assert any(expected in message for message in said), said


# == 3. http_client= ======================================================================


def tour_sync(srv: TestServer, mine: httpx.Client) -> list[str]:
    """watch, open_event_stream and Client with the caller's client; it stays open."""
    result = sync_sse.watch("t-1", api_key=srv.token, base_url=srv.base_url, http_client=mine)
    assert result.output == {"n": 1}
    assert not mine.is_closed
    with sync_sse.open_event_stream(
        events_url(srv), headers=auth(srv.token), http_client=mine
    ) as stream:
        labels = [label(next(stream)) for _ in range(3)]
        assert stream._own is None
    assert not mine.is_closed
    with sync_sse.Client(srv.token, srv.base_url, http_client=mine) as client:
        assert client.http_client is mine
        assert client.get_task("t-1").status == "completed"
    assert not mine.is_closed
    # Still usable: sseproto closed nothing of it.
    assert mine.get(f"{srv.base_url}/tasks/t-1", headers=auth(srv.token)).status_code == 200
    return labels


async def tour_async(srv: TestServer, mine: httpx.AsyncClient) -> list[str]:
    result = await async_sse.watch(
        "t-1", api_key=srv.token, base_url=srv.base_url, http_client=mine
    )
    assert result.output == {"n": 1}
    assert not mine.is_closed
    async with async_sse.open_event_stream(
        events_url(srv), headers=auth(srv.token), http_client=mine
    ) as stream:
        labels = [label(await stream.__anext__()) for _ in range(3)]
        assert stream._own is None
    assert not mine.is_closed
    async with async_sse.Client(srv.token, srv.base_url, http_client=mine) as client:
        assert client.http_client is mine
        assert (await client.get_task("t-1")).status == "completed"
    assert not mine.is_closed
    response = await mine.get(f"{srv.base_url}/tasks/t-1", headers=auth(srv.token))
    assert response.status_code == 200
    return labels


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_callers_client_is_used_and_left_open(driver: str) -> None:
    seen: list[str] = []
    with serve_in_thread({"t-1": QUICK}) as srv:
        if driver == "sync":

            def hook(request: httpx.Request) -> None:
                seen.append(f"{request.method} {request.url.path}")

            with (
                alarm(),
                httpx.Client(verify=srv.ssl_context, event_hooks={"request": [hook]}) as mine,
            ):
                labels = tour_sync(srv, mine)
        else:

            async def ahook(request: httpx.Request) -> None:
                seen.append(f"{request.method} {request.url.path}")

            async def main() -> list[str]:
                hooks = {"request": [ahook]}
                async with httpx.AsyncClient(verify=srv.ssl_context, event_hooks=hooks) as mine:
                    return await tour_async(srv, mine)

            labels = run_asyncio(main, driver)
        received = [f"{r.method} {r.path}" for r in srv.requests]
    assert labels == QUICK_LABELS
    assert seen == received  # every request went through the caller's client
    assert "GET /api/v1/r/tasks/t-1/events" in seen
    assert "GET /api/v1/r/tasks/t-1/result" in seen


@pytest.mark.parametrize("driver", DRIVERS)
def test_sseproto_closes_its_own_client(
    driver: str, own_clients: list[httpx.Client | httpx.AsyncClient]
) -> None:
    kind = httpx.Client if driver == "sync" else httpx.AsyncClient
    with serve_in_thread({"t-1": QUICK}) as srv:
        settings = {"api_key": srv.token, "base_url": srv.base_url, "ssl_context": srv.ssl_context}
        got = stream_with(
            driver,
            events_url(srv),
            headers=auth(srv.token),
            ssl_context=srv.ssl_context,
            stop_after=1,
        )
        assert isinstance(got.own, kind)  # the stream's own, seen while it was open
        assert got.own.is_closed
        assert isinstance(call(driver, "get_task", "t-1", **settings), sseproto.TaskSnapshot)
        assert isinstance(watch(driver, "t-1", **settings), sseproto.TaskResult)
        assert sockets_to(srv.port) == set()  # at once, not when the server goes
    assert len(own_clients) == 3  # one per stream, Client and watch
    assert all(isinstance(c, kind) and c.is_closed for c in own_clients)


def refused_everywhere(driver: str, options: dict[str, Any], says: str) -> None:
    """``open_event_stream``, ``Client`` and ``watch`` each refuse ``options``."""
    url = "https://api.example/events"

    def stream() -> None:
        with sync_sse.open_event_stream(url, **options):
            pass  # pragma: no cover

    async def astream() -> None:
        async with async_sse.open_event_stream(url, **options):
            pass  # pragma: no cover

    if driver == "sync":
        with pytest.raises(sseproto.ConfigurationError, match=says):
            stream()
        with pytest.raises(sseproto.ConfigurationError, match=says):
            sync_sse.Client("sk-x", **options)
        with pytest.raises(sseproto.ConfigurationError, match=says):
            sync_sse.watch("t-1", api_key="sk-x", **options)
        return

    async def main() -> None:
        with pytest.raises(sseproto.ConfigurationError, match=says):
            await astream()
        with pytest.raises(sseproto.ConfigurationError, match=says):
            async_sse.Client("sk-x", **options)
        with pytest.raises(sseproto.ConfigurationError, match=says):
            await async_sse.watch("t-1", api_key="sk-x", **options)

    run_asyncio(main, driver)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_client_of_the_wrong_kind_is_refused(driver: str) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:  # pragma: no cover (never)
        sent.append(request)
        return answer(204)

    wrong = mock_client("asyncio" if driver == "sync" else "sync", handler)
    right = mock_client(driver, handler)
    refused_everywhere(driver, {"http_client": wrong}, "http_client must be an httpx.")
    options = {"http_client": right, "ssl_context": ssl.create_default_context()}
    refused_everywhere(driver, options, "not both")
    assert sent == []
    for client in (wrong, right):
        with closing(client):
            pass


def redirecting(
    location: str, seen: list[httpx.Request]
) -> Callable[[httpx.Request], httpx.Response]:
    """api.example answers 307 to ``location`` for every path but /moved; anything
    else (/moved, another host) answers an event stream or JSON."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "api.example" and request.url.path != "/moved":
            return answer(307, location=location)
        if request.headers.get("accept") == "application/json":
            return json_response({"id": "t-1", "task_status": "running"})
        return sse_response(b"data: followed\n\n")

    return handler


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_callers_client_does_not_follow_a_redirect_to_another_origin(driver: str) -> None:
    seen: list[httpx.Request] = []
    handler = redirecting("https://other.example/steal", seen)
    settings = {"api_key": "sk-KEYSECRET", "base_url": "https://api.example/api"}
    with closing(mock_client(driver, handler, follow_redirects=True)) as mine:
        got = stream_with(
            driver, "https://api.example/events", headers=auth("sk-KEYSECRET"), http_client=mine
        )
        error = call(driver, "get_task", "t-1", http_client=mine, **settings)
        watched = watch(driver, "t-1", http_client=mine, **settings)
    for exc in (got.error, error, watched):
        assert isinstance(exc, sseproto.HTTPStatusError)
        assert exc.status_code == 307
        assert "to another origin (https://other.example); not followed" in str(exc)
    assert got.events == []
    assert seen, "the transport saw no request"
    assert {r.url.host for r in seen} == {"api.example"}  # never other.example
    assert all(r.headers["authorization"] == "Bearer sk-KEYSECRET" for r in seen)


@pytest.mark.parametrize("follow_redirects", [True, False])
@pytest.mark.parametrize("driver", DRIVERS)
def test_a_redirect_on_the_same_origin_is_sseprotos_to_follow(
    driver: str, follow_redirects: bool
) -> None:
    seen: list[httpx.Request] = []
    handler = redirecting("/moved", seen)
    with closing(mock_client(driver, handler, follow_redirects=follow_redirects)) as mine:
        got = stream_with(
            driver,
            "https://api.example/events",
            headers=auth("sk-KEYSECRET"),
            http_client=mine,
            stop_after=1,
        )
        snapshot = call(
            driver,
            "get_task",
            "t-1",
            api_key="sk-KEYSECRET",
            base_url="https://api.example/api",
            http_client=mine,
        )
    assert got.error is None
    assert [e.data for e in got.events] == ["followed"]
    assert isinstance(snapshot, sseproto.TaskSnapshot)
    assert [r.url.path for r in seen] == ["/events", "/moved", "/api/tasks/t-1", "/moved"]
    # The redirected requests are sseproto's own, with every header of the first.
    assert all(r.headers["authorization"] == "Bearer sk-KEYSECRET" for r in seen)
    assert all(r.headers["accept-encoding"] == "identity" for r in seen)


# == 4. request headers ===================================================================


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_stream_request_carries_our_headers_and_the_callers(driver: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(204)  # stop: no reconnecting

    # A client whose own defaults would ask for gzip, and name itself.
    defaults = {"Accept-Encoding": "gzip, br", "User-Agent": "mine/1.0", "Accept": "*/*"}
    with closing(mock_client(driver, handler, headers=defaults)) as mine:
        got = stream_with(
            driver,
            "https://api.example/events",
            headers={"Authorization": "Bearer sk-x", "X-Trace": "abc"},
            last_event_id="41",
            http_client=mine,
        )
        plain = stream_with(driver, "https://api.example/events", http_client=mine)
    assert got.error is None
    assert plain.error is None
    assert got.events == []
    assert plain.events == []
    first, second = seen
    for sent in (first, second):
        headers = sent.headers
        assert headers.get_list("accept") == ["text/event-stream"]
        assert headers.get_list("cache-control") == ["no-cache"]
        assert headers.get_list("accept-encoding") == ["identity"]
        assert headers.get_list("user-agent") == [USER_AGENT]
        assert sent.method == "GET"
        assert sent.url == "https://api.example/events"
    assert first.headers["authorization"] == "Bearer sk-x"
    assert first.headers["x-trace"] == "abc"
    assert first.headers.get_list("last-event-id") == ["41"]
    assert "last-event-id" not in second.headers
    assert "authorization" not in second.headers


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_client_requests_carry_our_headers(driver: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return json_response({"id": "t-1", "task_status": "running"})

    with closing(mock_client(driver, handler, headers={"Accept-Encoding": "gzip"})) as mine:
        settings = {
            "api_key": "sk-x",
            "base_url": "https://api.example/api/v1/r",
            "team_id": "team-1",
            "http_client": mine,
        }
        assert call(driver, "get_task", "t-1", **settings).status == "running"
        assert call(driver, "cancel_task", "t-1", **settings) is None
    get, post = seen
    assert (get.method, get.url.path) == ("GET", "/api/v1/r/tasks/t-1")
    assert (post.method, post.url.path) == ("POST", "/api/v1/r/tasks/t-1/cancel")
    for sent in (get, post):
        assert sent.headers.get_list("authorization") == ["Bearer sk-x"]
        assert sent.headers.get_list("x-team-id") == ["team-1"]
        assert sent.headers.get_list("accept") == ["application/json"]
        assert sent.headers.get_list("accept-encoding") == ["identity"]
        assert sent.headers.get_list("user-agent") == [USER_AGENT]
    assert post.headers["content-type"] == "application/json"
    assert json.loads(post.content) == {}
    assert get.content == b""


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_non_ascii_last_event_id_is_sent_as_utf8(driver: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:  # an id with an é, then the end of the body: a resume
            return sse_response("retry: 0\nid: é1\ndata: x\n\n".encode())
        return answer(204)

    with closing(mock_client(driver, handler)) as mine:
        got = stream_with(
            driver, "https://api.example/events", http_client=mine, last_event_id="ü0"
        )
    assert got.error is None  # httpx would have raised UnicodeEncodeError on a str
    assert [(e.id, e.data) for e in got.events] == [("é1", "x")]
    sent = [[v for k, v in r.headers.raw if k.lower() == b"last-event-id"] for r in seen]
    assert sent == [["ü0".encode()], ["é1".encode()]]


# == 5. bounded, raw bodies ==============================================================


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_json_answer_past_the_limit_is_refused(
    driver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_api, "JSON_BODY_LIMIT", 1000)
    exact = json.dumps({"id": "t-1", "task_status": "running", "pad": ""}).encode()
    exact = exact[:-2] + b"x" * (1000 - len(exact)) + exact[-2:]
    assert len(exact) == 1000
    bodies = [Body(exact, 1), Body(b" " * 100, 1000)]  # the limit exactly, then 100 kB

    def handler(request: httpx.Request) -> httpx.Response:
        body = bodies[0] if request.url.path.endswith("t-1") else bodies[1]
        return httpx.Response(200, headers={"content-type": "application/json"}, stream=body)

    with closing(mock_client(driver, handler)) as mine:
        settings = {"api_key": "sk-x", "base_url": "https://api.example/api", "http_client": mine}
        snapshot = call(driver, "get_task", "t-1", **settings)
        error = call(driver, "get_task", "t-2", **settings)
    assert isinstance(snapshot, sseproto.TaskSnapshot)  # the limit itself is allowed
    assert bodies[0].closed
    assert type(error) is sseproto.RemoteProtocolError
    assert "larger than 1000 bytes" in str(error)
    assert bodies[1].sent <= 1100  # reading stopped past the limit
    assert bodies[1].closed


@pytest.mark.parametrize("driver", DRIVERS)
def test_an_error_body_is_kept_up_to_its_limit(driver: str) -> None:
    chunk = bytes(range(256)) * 16  # 4 KiB, no two alike in a row
    bodies = {"stream": Body(chunk, 1024), "call": Body(chunk, 64)}  # 4 MiB, 256 KiB

    def handler(request: httpx.Request) -> httpx.Response:
        body = bodies["stream" if request.url.path == "/events" else "call"]
        return httpx.Response(403, headers={"content-type": "text/plain"}, stream=body)

    with closing(mock_client(driver, handler)) as mine:
        got = stream_with(driver, "https://api.example/events", http_client=mine)
        error = call(
            driver,
            "get_task",
            "t-1",
            api_key="sk-x",
            base_url="https://api.example",
            http_client=mine,
        )
    for exc, body in ((got.error, bodies["stream"]), (error, bodies["call"])):
        assert type(exc) is sseproto.HTTPStatusError
        assert exc.status_code == 403
        assert len(exc.body) == ERROR_BODY_LIMIT
        assert exc.body == body.whole[:ERROR_BODY_LIMIT]
        assert body.closed
    # The stream's error body is read no further than needed.
    assert bodies["stream"].sent <= ERROR_BODY_LIMIT + len(chunk)


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_compressed_answer_is_refused_not_decoded(driver: str) -> None:
    stream_body = gzip.compress(b"data: hidden\n\n")
    json_body = gzip.compress(b'{"id": "t-1", "task_status": "running"}')
    error_body = gzip.compress(b"forbidden, in gzip")

    def handler(request: httpx.Request) -> httpx.Response:
        gz = {"content-encoding": "gzip"}
        if request.url.path == "/events":
            return sse_response(stream_body, **gz)
        if request.url.path == "/refused":
            return httpx.Response(403, headers=gz, stream=Body(error_body, 1))
        return httpx.Response(
            200, headers={"content-type": "application/json", **gz}, stream=Body(json_body, 1)
        )

    with closing(mock_client(driver, handler)) as mine:
        got = stream_with(driver, "https://api.example/events", http_client=mine)
        refused = stream_with(driver, "https://api.example/refused", http_client=mine)
        error = call(
            driver,
            "get_task",
            "t-1",
            api_key="sk-x",
            base_url="https://api.example",
            http_client=mine,
        )
    assert got.events == []
    assert type(got.error) is sseproto.ContentTypeError
    assert "Content-Encoding 'gzip'" in str(got.error)
    assert type(error) is sseproto.ContentTypeError
    assert error.body == json_body  # as received: httpx decoded nothing
    assert type(refused.error) is sseproto.HTTPStatusError
    assert refused.error.body == error_body


@pytest.mark.parametrize("driver", DRIVERS)
def test_an_answer_read_before_sseproto_sees_it_still_counts(driver: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/events":
            headers = {"content-type": "text/event-stream"}
            return httpx.Response(200, headers=headers, content=b"data: x\n\n")
        return httpx.Response(200, json={"id": "t-1", "task_status": "running"})

    with closing(mock_client(driver, handler)) as mine:
        got = stream_with(
            driver, "https://api.example/events", http_client=mine, stop_after=1, max_attempts=0
        )
        snapshot = call(
            driver,
            "get_task",
            "t-1",
            api_key="sk-x",
            base_url="https://api.example",
            http_client=mine,
        )
    assert got.error is None
    assert [e.data for e in got.events] == ["x"]
    assert isinstance(snapshot, sseproto.TaskSnapshot)


# == 6. Ctrl-C in blocking code ==========================================================


@needs_proc
@needs_alarm
@pytest.mark.parametrize("where", ["loop_body", "blocked_in_a_read"])
@pytest.mark.parametrize("client", ["own", "given"])
def test_ctrl_c_in_a_blocking_stream_leaves_no_socket_open(where: str, client: str) -> None:
    with (
        serve_in_thread({"t-1": STALLS}) as srv,
        httpx.Client(verify=srv.ssl_context) as mine,
        ctrl_c() as arm,
    ):
        options: dict[str, Any] = (
            {"http_client": mine} if client == "given" else {"ssl_context": srv.ssl_context}
        )
        events: list[sseproto.ServerSentEvent] = []
        open_during: list[set[str]] = []
        own: list[httpx.Client | None] = []
        kept: list[sync_sse.EventStream] = []  # alive: only its close() can close it

        def consume() -> None:
            with sync_sse.open_event_stream(
                events_url(srv), headers=auth(srv.token), read_timeout=10.0, **options
            ) as stream:
                kept.append(stream)
                for event in stream:
                    events.append(event)
                    own.append(stream._own)
                    open_during.append(sockets_to(srv.port))
                    if where == "loop_body":
                        raise KeyboardInterrupt
                    arm(0.1)  # the next read waits on the stalled server

        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            consume()
        assert time.monotonic() - started < 5.0  # the interrupt, not the read timeout
        assert len(events) == 1
        assert [len(s) for s in open_during] == [1]  # the stream's connection, while open
        assert sockets_to(srv.port) == set()  # and none after
        assert not mine.is_closed
        if client == "own":
            assert own[0] is not None
            assert own[0].is_closed
        else:
            assert own == [None]


@needs_proc
@needs_alarm
@pytest.mark.parametrize("where", ["on_event", "blocked_in_a_read"])
@pytest.mark.parametrize("client", ["own", "given"])
def test_ctrl_c_in_a_blocking_watch_leaves_no_socket_open(
    where: str, client: str, own_clients: list[httpx.Client | httpx.AsyncClient]
) -> None:
    with serve_in_thread({"t-1": STALLS}) as srv, ctrl_c() as arm:
        mine = httpx.Client(verify=srv.ssl_context) if client == "given" else None
        options: dict[str, Any] = (
            {"http_client": mine} if mine is not None else {"ssl_context": srv.ssl_context}
        )
        items: list[Any] = []
        open_during: list[set[str]] = []

        def on_event(item: Any) -> None:
            items.append(item)
            open_during.append(sockets_to(srv.port))
            if where == "on_event":
                raise KeyboardInterrupt
            arm(0.1)

        with pytest.raises(KeyboardInterrupt) as caught:
            sync_sse.watch(
                "t-1",
                api_key=srv.token,
                base_url=srv.base_url,
                on_event=on_event,
                read_timeout=10.0,
                **options,
            )
        assert len(items) == 1
        assert [len(s) for s in open_during] == [1]  # the stream's connection
        # (The traceback keeps every frame alive: the garbage collector closed nothing.)
        assert sockets_to(srv.port) == set()
        del caught
        if mine is not None:
            assert not mine.is_closed
            mine.close()
    assert len(own_clients) == 1  # sseproto's own (closed by it), or the caller's (by us)
    assert own_clients[0].is_closed


@needs_proc
@needs_alarm
@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="upstream (httpcore 1.0): Ctrl-C during the TLS handshake leaves the socket "
    "open (httpcore's start_tls closes it on Exception only, ssl's wrap_socket on "
    "OSError only) until the traceback is collected, with a ResourceWarning then",
)
def test_ctrl_c_during_the_tls_handshake_leaves_no_socket_open() -> None:
    with silent_listener() as listener, ctrl_c() as arm:
        url = f"https://127.0.0.1:{listener.port}/"

        def consume() -> None:
            with sync_sse.open_event_stream(url, connect_timeout=10) as stream:
                for _ in stream:
                    pass  # pragma: no cover

        arm(0.3)
        with pytest.raises(KeyboardInterrupt) as caught:
            consume()
        assert listener.accepted.is_set()  # it was in the handshake
        left = sockets_to(listener.port)
        # The traceback holds what was left open: let it go here, where no later test
        # sees the ResourceWarning of its collection.
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            del caught
            gc.collect()
    assert left == set()
    assert [w for w in warned if issubclass(w.category, ResourceWarning)] == []


# == 7. asyncio cancellation =============================================================


@needs_proc
@pytest.mark.parametrize("loop", LOOPS)
def test_a_cancelled_watch_leaves_no_socket_open(
    loop: str, own_clients: list[httpx.Client | httpx.AsyncClient]
) -> None:
    with serve_in_thread({"t-1": LONG}) as srv:
        open_during: list[set[str]] = []

        def on_event(item: Any) -> None:
            open_during.append(sockets_to(srv.port))

        async def main() -> None:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(
                    async_sse.watch(
                        "t-1",
                        api_key=srv.token,
                        base_url=srv.base_url,
                        ssl_context=srv.ssl_context,
                        on_event=on_event,
                    ),
                    0.5,
                )
            assert sockets_to(srv.port) == set()  # at once, the loop still running

        run_asyncio(main, loop)
        # Each event (pending, running: then a long wait) came while the stream's
        # connection, and only it, was open.
        assert open_during
        assert all(len(s) == 1 for s in open_during)
    assert len(own_clients) == 1
    assert own_clients[0].is_closed


@needs_proc
@pytest.mark.parametrize("where", ["in_a_read", "in_the_loop_body"])
@pytest.mark.parametrize("loop", LOOPS)
def test_a_cancelled_stream_closes_its_connection_not_the_callers_client(
    loop: str, where: str
) -> None:
    with serve_in_thread({"t-1": LONG}) as srv:
        events: list[sseproto.ServerSentEvent] = []
        open_during: list[set[str]] = []
        kept: list[async_sse.EventStream] = []  # alive: only its aclose() can close it

        wanted = 1 if where == "in_the_loop_body" else 2  # (then the stream is idle)

        async def consume(mine: httpx.AsyncClient, ready: asyncio.Event) -> None:
            async with async_sse.open_event_stream(
                events_url(srv), headers=auth(srv.token), http_client=mine
            ) as stream:
                kept.append(stream)
                async for event in stream:
                    events.append(event)
                    open_during.append(sockets_to(srv.port))
                    if len(events) == wanted:
                        ready.set()
                    if where == "in_the_loop_body":
                        await asyncio.sleep(60)  # cancelled here, between two reads

        async def main() -> None:
            async with httpx.AsyncClient(verify=srv.ssl_context) as mine:
                ready = asyncio.Event()
                task = asyncio.ensure_future(consume(mine, ready))
                await ready.wait()
                await asyncio.sleep(0.02)  # waiting in the next read, or in the body
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert sockets_to(srv.port) == set()
                assert not mine.is_closed
                response = await mine.get(f"{srv.base_url}/tasks/t-1", headers=auth(srv.token))
                assert response.status_code == 200

        run_asyncio(main, loop)
    expected = ["status:pending", "status:running"][:wanted]
    assert [label(e) for e in events] == expected
    assert [len(s) for s in open_during] == [1] * len(expected)


@needs_proc
@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="upstream (httpcore 1.0): a cancellation during the TLS handshake leaves the "
    "connection open (httpcore's AnyIOStream.start_tls closes it on Exception only, and "
    "CancelledError is not one) until it is collected, with a ResourceWarning then "
    "(asyncio: the socket stays open after the cancellation; uvloop: 'unclosed "
    "resource <TCPTransport>')",
)
def test_a_cancellation_during_the_tls_handshake_leaves_no_socket_open(loop: str) -> None:
    left: set[str] = set()
    with silent_listener() as listener:

        async def consume() -> None:
            async with async_sse.open_event_stream(
                f"https://127.0.0.1:{listener.port}/", connect_timeout=10
            ) as stream:
                async for _ in stream:
                    pass  # pragma: no cover

        async def main() -> None:
            nonlocal left
            task = asyncio.ensure_future(consume())
            while not listener.accepted.is_set():
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.05)  # in the handshake, waiting for the server's hello
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            left = sockets_to(listener.port)

        # What is left is closed when collected (at once on uvloop, which warns; at the
        # loop's close or later on asyncio): let that happen here, where no later test
        # sees the ResourceWarning.
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            run_asyncio(main, loop)
            gc.collect()
    assert left == set()
    assert [str(w.message) for w in warned if issubclass(w.category, ResourceWarning)] == []


# == 8. secrets ==========================================================================

KEY = "sk-test-" + "5ec2e7" * 6  # the client's key (the server expects another)


def shown_text(exc: BaseException) -> str:
    """Everything an exception shows: its message, repr, args, the whole formatted
    traceback with its causes, and an HTTPStatusError's body and headers."""
    parts = [str(exc), repr(exc), repr(exc.args), *traceback.format_exception(exc)]
    if isinstance(exc, sseproto.HTTPStatusError):
        parts += [repr(exc.body), repr(exc.headers)]
    return "\n".join(parts)


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_key_never_shows(driver: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # sseproto's, httpx's and httpcore's records
    shown: list[str] = []
    failures: list[Any] = []
    with serve_in_thread({"t-1": QUICK}, token="sk-test-the-server-wants-this") as srv:
        trusted: dict[str, Any] = {
            "api_key": KEY,
            "base_url": srv.base_url,
            "ssl_context": srv.ssl_context,
        }
        # 401: the server refuses the key.
        got = stream_with(driver, events_url(srv), headers=auth(KEY), ssl_context=srv.ssl_context)
        failures += [
            got.error,
            call(driver, "get_task", "t-1", **trusted),
            watch(driver, "t-1", **trusted),
        ]
        # The certificate of a private CA, not trusted.
        failures += [
            stream_with(driver, events_url(srv), headers=auth(KEY)).error,
            call(driver, "get_task", "t-1", api_key=KEY, base_url=srv.base_url),
        ]
        # The reprs, while open.
        if driver == "sync":
            with (
                sync_sse.Client(**trusted) as client,
                sync_sse.open_event_stream(events_url(srv), headers=auth(KEY)) as stream,
            ):
                shown += [repr(client), str(client), repr(stream), str(stream)]
        else:

            async def main() -> None:
                async with (
                    async_sse.Client(**trusted) as client,
                    async_sse.open_event_stream(events_url(srv), headers=auth(KEY)) as stream,
                ):
                    shown.extend([repr(client), str(client), repr(stream), str(stream)])

            run_asyncio(main, driver)
    # A refused connection (the stream tries twice, logging the first failure).
    refused = f"https://127.0.0.1:{closed_port()}"
    failures += [
        stream_with(
            driver, refused + "/events", headers=auth(KEY), max_attempts=1, max_backoff=0.05
        ).error,
        call(driver, "get_task", "t-1", api_key=KEY, base_url=refused),
    ]
    kinds = [type(exc) for exc in failures]
    assert kinds == [sseproto.HTTPStatusError] * 3 + [sseproto.CertificateError] * 2 + [
        sseproto.ReconnectError,
        sseproto.ConnectError,
    ]
    assert [exc.status_code for exc in failures[:3]] == [401] * 3
    shown += [shown_text(exc) for exc in failures]
    records = caplog.records
    assert {r.name.split(".")[0] for r in records} >= {"sseproto", "httpx", "httpcore"}
    for record in records:
        shown.append(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            shown.append(shown_text(record.exc_info[1]))
    assert shown
    for text in shown:
        assert KEY not in text
        assert "5ec2e7" not in text


# == 9. serve_in_thread ==================================================================


def server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sseproto-test-server"]


def test_serve_in_thread_serves_blocking_code() -> None:
    with serve_in_thread({"t-1": QUICK}, token="sk-test-given") as srv:
        assert server_threads()
        assert server_threads()[0].is_alive()
        assert threading.current_thread() is threading.main_thread()
        assert srv.token == "sk-test-given"
        assert srv.origin == f"https://127.0.0.1:{srv.port}"
        assert srv.base_url == srv.origin + "/api/v1/r"
        with httpx.Client(verify=srv.ssl_context) as client:
            task = client.get(f"{srv.base_url}/tasks/t-1", headers=auth(srv.token))
            run_ = client.post(
                f"{srv.base_url}/workflows/wf-1/run",
                headers=auth(srv.token),
                json={"parameters": {"a": 1}},
            )
            refused = client.get(f"{srv.base_url}/tasks/t-1", headers=auth("sk-wrong"))
        with httpx.Client(verify=ssl.create_default_context(cafile=srv.ca_path)) as client:
            again = client.get(f"{srv.base_url}/tasks/t-1", headers=auth(srv.token))
        port = srv.port
        assert sockets_of(port)  # its listener
        requests = list(srv.requests)
    assert task.status_code == 200
    assert task.json()["id"] == "t-1"
    assert run_.status_code == 202
    assert run_.json()["task_id"]
    assert refused.status_code == 401
    assert again.status_code == 200  # the CA file trusts it too
    assert [(r.method, r.path) for r in requests] == [
        ("GET", "/api/v1/r/tasks/t-1"),
        ("POST", "/api/v1/r/workflows/wf-1/run"),
        ("GET", "/api/v1/r/tasks/t-1"),
        ("GET", "/api/v1/r/tasks/t-1"),
    ]
    assert requests[0].headers["authorization"] == "Bearer sk-test-given"
    assert requests[0].headers["host"] == f"127.0.0.1:{port}"
    assert json.loads(requests[1].body) == {"parameters": {"a": 1}}
    assert requests[0].body == b""
    times = [r.time for r in requests]
    assert times == sorted(times)
    # Stopped: the thread is gone, the port refuses connections, the CA file is gone.
    assert server_threads() == []
    assert sockets_of(port) == set()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2.0).close()
    assert not os.path.exists(srv.ca_path)


def test_serve_in_thread_stops_when_the_block_raises() -> None:
    ports: list[int] = []

    def fail() -> None:
        with serve_in_thread() as srv:
            ports.append(srv.port)
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail()
    [port] = ports
    assert server_threads() == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2.0).close()


@pytest.mark.parametrize("port", [-1, 65536])
def test_serve_in_thread_raises_a_bad_port_in_the_callers_thread(port: int) -> None:
    with (
        pytest.raises(sseproto.ConfigurationError, match="port must be an int"),
        serve_in_thread(port=port),
    ):
        pass  # pragma: no cover
    assert server_threads() == []


def test_serve_in_thread_raises_a_port_in_use_in_the_callers_thread() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        # The OSError itself, not trio's ExceptionGroup around it: the caller is not trio.
        with pytest.raises(OSError, match="in use") as caught, serve_in_thread(port=port):
            pass  # pragma: no cover
    assert caught.value.errno == errno.EADDRINUSE
    assert server_threads() == []


# == 10. on_event ========================================================================


def test_the_blocking_watch_refuses_an_async_on_event(
    own_clients: list[httpx.Client | httpx.AsyncClient],
) -> None:
    called: list[Any] = []

    async def on_event(item: Any) -> None:  # pragma: no cover (never awaited)
        called.append(item)

    with serve_in_thread({"t-1": QUICK}) as srv, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with alarm(), pytest.raises(TypeError, match=r"sseproto\.asyncio\.watch"):
            sync_sse.watch(
                "t-1",
                api_key=srv.token,
                base_url=srv.base_url,
                ssl_context=srv.ssl_context,
                on_event=on_event,  # type: ignore[arg-type]
            )
        gc.collect()
    assert called == []
    assert [str(w.message) for w in caught] == []  # no "coroutine ... was never awaited"
    assert len(own_clients) == 1
    assert own_clients[0].is_closed


@pytest.mark.parametrize("loop", LOOPS)
def test_the_asyncio_watch_awaits_an_async_on_event(loop: str) -> None:
    seen: list[str] = []

    async def on_event(item: Any) -> None:
        await asyncio.sleep(0)
        seen.append(type(item).__name__)

    with serve_in_thread({"t-1": QUICK}) as srv:

        async def main() -> sseproto.TaskResult:
            return await async_sse.watch(
                "t-1",
                api_key=srv.token,
                base_url=srv.base_url,
                ssl_context=srv.ssl_context,
                on_event=on_event,
            )

        result = run_asyncio(main, loop)
    assert result.output == {"n": 1}
    assert seen == ["StatusChanged", "StatusChanged", "Completed"]


# -- many streams on one client ------------------------------------------------------


def test_one_asyncio_client_carries_more_streams_than_httpxs_default_pool() -> None:
    """httpx's default pool stops at 100 connections, and a stream holds one for its
    life: the client sseproto makes has no such limit (the 101st stream waited
    silently before)."""
    streams = 110
    slow = Task(steps=[status("running"), completed({"ok": True}, delay=30.0)])
    with serve_in_thread({f"t-{i}": slow for i in range(streams)}) as srv:

        async def main() -> int:
            started = 0
            all_started = asyncio.Event()
            async with async_sse.Client(
                srv.token, srv.base_url, ssl_context=srv.ssl_context
            ) as client:

                async def follow(task_id: str) -> None:
                    nonlocal started
                    events = client.task_events(task_id)
                    try:
                        await events.__anext__()
                        started += 1
                        if started == streams:
                            all_started.set()
                        await all_started.wait()  # every stream open at once
                    finally:
                        await events.aclose()

                await asyncio.wait_for(
                    asyncio.gather(*(follow(f"t-{i}") for i in range(streams))), 20
                )
            return started

        assert run_asyncio(main) == streams
