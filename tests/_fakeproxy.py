"""Test doubles for the network around sseproto's trio transport: a scripted HTTP
``CONNECT`` proxy, and a host-name resolver that is told what to answer.

:func:`fake_proxy` runs, in the caller's trio task tree, a TCP server on 127.0.0.1
that plays a proxy: for each connection it records the raw bytes it received before
answering (the client's ``CONNECT`` request, and whatever else came), then does what
its script says for that connection (``script[i]`` for the i-th; :class:`Relay` once
the script is exhausted): answer a status and close (:class:`Refuse`), close without
a word (:class:`Hangup`), or answer ``200`` and relay bytes both ways to the target of
the ``CONNECT`` (:class:`Relay`, optionally after some 1xx answers, or with bytes of
its own right after the 200). A target that is a name is relayed to 127.0.0.1 (the
proxy itself never asks a resolver).

:class:`Resolver` is a ``trio.abc.HostnameResolver`` (install it with
``trio.socket.set_custom_hostname_resolver``): for each host name it answers from a
list of outcomes (an address, or a ``socket.gaierror`` code), call by call, the last
outcome repeating, and it counts the calls. Numeric hosts never reach it (trio
resolves them itself).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence


@dataclass(frozen=True)
class Refuse:
    """Answer ``status`` (with this raw reason phrase), then close."""

    status: int
    reason: bytes = b"Refused"


@dataclass(frozen=True)
class Hangup:
    """Close the connection without answering."""


@dataclass(frozen=True)
class Relay:
    """Answer ``informational`` 1xx answers, then ``200`` (followed, in the same write,
    by ``extra`` bytes of the proxy's own), then relay bytes both ways."""

    informational: int = 0
    extra: bytes = b""


Behaviour = Refuse | Hangup | Relay


@dataclass
class Seen:
    """One connection to the proxy: what it received before answering, the target of
    its CONNECT, and the first bytes the client sent into the tunnel."""

    head: bytes = b""
    target: str = ""
    tunnel: bytes = b""


@dataclass
class FakeProxy:
    script: Sequence[Behaviour] = ()
    port: int = 0
    connections: list[Seen] = field(default_factory=list)

    def url(self, credentials: str = "") -> str:
        """``http://[credentials@]127.0.0.1:PORT``."""
        userinfo = f"{credentials}@" if credentials else ""
        return f"http://{userinfo}127.0.0.1:{self.port}"

    async def _handle(self, client: trio.SocketStream) -> None:
        index = len(self.connections)
        seen = Seen()
        self.connections.append(seen)
        behaviour = self.script[index] if index < len(self.script) else Relay()
        try:
            while b"\r\n\r\n" not in seen.head:
                data = await client.receive_some(65536)
                if not data:
                    return
                seen.head += data
            request_line = seen.head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split(" ")
            seen.target = parts[1] if len(parts) == 3 else ""
            if isinstance(behaviour, Hangup):
                return
            if isinstance(behaviour, Refuse):
                await client.send_all(
                    b"HTTP/1.1 %d %s\r\nContent-Length: 0\r\n\r\n"
                    % (behaviour.status, behaviour.reason)
                )
                return
            host, _, port = seen.target.rpartition(":")
            host = host.strip("[]")
            try:
                address = str(ipaddress.ip_address(host))
            except ValueError:
                address = "127.0.0.1"  # a name: the test server, on loopback
            try:
                upstream = await trio.open_tcp_stream(address, int(port))
            except (OSError, ValueError):
                await client.send_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            async with upstream:
                await client.send_all(
                    b"HTTP/1.1 100 Continue\r\n\r\n" * behaviour.informational
                    + b"HTTP/1.1 200 Connection established\r\n\r\n"
                    + behaviour.extra
                )
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_pump, client, upstream, seen, nursery.cancel_scope)
                    nursery.start_soon(_pump, upstream, client, None, nursery.cancel_scope)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            await trio.aclose_forcefully(client)


async def _pump(
    source: trio.SocketStream,
    sink: trio.SocketStream,
    seen: Seen | None,
    done: trio.CancelScope,
) -> None:
    """Copy ``source`` to ``sink`` until either ends; then end the relay."""
    try:
        while data := await source.receive_some(65536):
            if seen is not None and not seen.tunnel:
                seen.tunnel = bytes(data)
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        done.cancel()


@asynccontextmanager
async def fake_proxy(script: Sequence[Behaviour] = ()) -> AsyncIterator[FakeProxy]:
    """Run a :class:`FakeProxy` on 127.0.0.1 for the duration of the ``async with``."""
    proxy = FakeProxy(script=list(script))
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, proxy._handle, 0, host="127.0.0.1")
        )
        proxy.port = listeners[0].socket.getsockname()[1]
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()


async def closed_port() -> tuple[trio.socket.SocketType, int]:
    """A loopback port nothing listens on (the socket is bound, not listening: keep it
    until the test ends, so that nobody else takes the port)."""
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


#: What a :class:`Resolver` answers for a name: an IPv4 address, or a gaierror code.
Outcome = str | int


class Resolver(trio.abc.HostnameResolver):
    """Answers each name from its list of outcomes, one per call (the last repeats);
    a name it was not told of is not known (``EAI_NONAME``). ``calls`` counts the
    lookups of each name."""

    def __init__(self, answers: dict[str, Sequence[Outcome]]) -> None:
        self.answers = {name: list(outcomes) for name, outcomes in answers.items()}
        self.calls: dict[str, int] = {}

    async def getaddrinfo(
        self,
        host: bytes | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[Any]:
        name = (host or b"").decode("ascii")
        n = self.calls.get(name, 0)
        self.calls[name] = n + 1
        outcomes = self.answers.get(name, [socket.EAI_NONAME])
        outcome = outcomes[min(n, len(outcomes) - 1)]
        if isinstance(outcome, int):
            raise socket.gaierror(outcome, f"simulated resolver failure for {name}")
        port_number = int(port) if port is not None else 0
        return [
            (
                socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
                "",
                (outcome, port_number),
            )
        ]

    async def getnameinfo(
        self, sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int
    ) -> tuple[str, str]:  # pragma: no cover (sseproto never asks)
        raise NotImplementedError


@contextmanager
def resolving(answers: dict[str, Sequence[Outcome]]) -> Iterator[Resolver]:
    """A :class:`Resolver` installed for the current trio run, for the block."""
    resolver = Resolver(answers)
    previous = trio.socket.set_custom_hostname_resolver(resolver)
    try:
        yield resolver
    finally:
        trio.socket.set_custom_hostname_resolver(previous)
