"""One HTTP/1.1 connection: trio + ssl + h11.

Theory of operation: :class:`Connection` owns a TCP stream (wrapped in TLS for
``https``) and an ``h11.Connection``. A request is sent whole; the response head is
read, then the body one network read at a time (no extra copies, no buffering), each
read under the caller's idle ``read_timeout``. After a response that was read to its
end and allows keep-alive, the connection can carry the next request (the polling
client reuses it); after anything else it must be closed. Everything the layers below
raise (OSError, ssl.SSLError, trio's broken-stream errors, h11's ProtocolError, trio's
TooSlowError) is translated here into sseproto's own exceptions; nothing leaks.

Safety: certificate and hostname verification are always on (the default context is
``_tls.default_ssl_context()``, shared); plain ``http`` is refused for any host that
is not loopback (``_rules.parse_url``). What a server sends is bounded: informational
answers (``MAX_INFORMATIONAL``), the size of a JSON body, the time of every read. A
TLS handshake that fails is a :class:`~sseproto.TLSHandshakeError`
(``_tls.handshake_error``), which nobody retries.
"""

from __future__ import annotations

import os
import select
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import h11
import trio

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from ._errors import ConnectError, ConnectTimeout, ProxyError, ReadTimeout, RemoteProtocolError
from ._framing import BodyFraming, FramingError
from ._net import name_not_known, unknown_host
from ._rules import (
    MAX_CONNECTING,
    MAX_INFORMATIONAL,
    Origin,
    check_headers,
    joined,
    parse_url,
)
from ._tls import default_ssl_context, find_ssl_error, handshake_error
from ._tlsstream import TLSStream

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterable, Mapping, Sequence

    from ._proxy import Proxy

__all__ = ["Connection", "Origin", "Response", "parse_url"]

_READ_SIZE = 65536
#: What a connection holds instead of its h11.Connection once ``own_framing`` took
#: over (never used: ``request`` refuses, ``reusable`` is False).
_SPENT = h11.Connection(h11.CLIENT)
#: The connections of this trio run being set up (``_rules.MAX_CONNECTING`` at once).
_CONNECTING: trio.lowlevel.RunVar[trio.Semaphore] = trio.lowlevel.RunVar("sseproto_connecting")


def _connecting() -> trio.Semaphore:
    """This trio run's turn-taker for connection set-ups."""
    try:
        return _CONNECTING.get()
    except LookupError:
        turns = trio.Semaphore(MAX_CONNECTING)
        _CONNECTING.set(turns)
        return turns


@dataclass
class Response:
    """A response head; its body is read with :meth:`Connection.receive_body`."""

    status_code: int
    reason: str
    #: As received: (name, value) bytes pairs, repeats kept (for the machines).
    fields: list[tuple[bytes, bytes]]

    @property
    def headers(self) -> dict[str, str]:
        """Names lower-cased, repeated headers joined with ", "."""
        return joined([(k.decode("ascii").lower(), v.decode("latin-1")) for k, v in self.fields])


class Connection:
    """One HTTP/1.1 connection to one origin. Use ``async with`` or :meth:`aclose`."""

    def __init__(self, origin: Origin, stream: trio.abc.Stream) -> None:
        self.origin = origin
        self._stream = stream
        self._h11 = h11.Connection(h11.CLIENT)
        self._broken = False
        self._method = ""
        # Set by own_framing: the body is then read by _framing, not h11.
        self._framing: BodyFraming | None = None
        self._pending = b""  # body bytes h11 had read past the head
        #: True once a byte of the answer to the last request arrived (after that,
        #: the request must not be sent again: the server may have acted on it).
        self.answer_started = False

    def __repr__(self) -> str:
        state = "broken" if self._broken else "open"
        return f"<sseproto Connection to {self.origin} ({state})>"

    @classmethod
    async def connect(
        cls,
        origin: Origin,
        *,
        ssl_context: ssl.SSLContext | None,
        connect_timeout: float,
        proxy: Proxy | None = None,
    ) -> Connection:
        """Open a connection (TCP, then TLS for https with SNI and verification), through
        ``proxy``'s ``CONNECT`` tunnel if one is given (the TLS is then the server's,
        end to end: the proxy sees neither the requests nor the events).

        A trio run sets up at most ``_rules.MAX_CONNECTING`` connections at once; the
        next ones wait for their turn, and ``connect_timeout`` counts from it.

        Raises:
            ConnectTimeout: It took longer than ``connect_timeout`` seconds.
            NameResolutionError: The server's host name (or the proxy's) is not known.
            ProxyError: The proxy would not open the tunnel (``_proxy.Proxy.refused``).
            ConnectError: Refused, unreachable, or the TLS handshake failed.
        """
        via = f" through the proxy {proxy}" if proxy is not None else ""
        async with _connecting():  # the timeout starts with our turn
            return await cls._connect(origin, ssl_context, connect_timeout, proxy, via)

    @classmethod
    async def _connect(
        cls,
        origin: Origin,
        ssl_context: ssl.SSLContext | None,
        connect_timeout: float,
        proxy: Proxy | None,
        via: str,
    ) -> Connection:
        tcp: trio.SocketStream | None = None
        try:
            with trio.fail_after(connect_timeout):
                peer = proxy.origin if proxy is not None else origin
                try:
                    tcp = await trio.open_tcp_stream(peer.host, peer.port)
                except OSError as exc:
                    if name_not_known(exc):
                        raise unknown_host(origin, proxy=proxy) from None
                    if proxy is not None:
                        raise ConnectError(
                            f"could not connect to the proxy {proxy} (for {origin}): {_reason(exc)}"
                        ) from None
                    raise
                stream: trio.abc.Stream = tcp
                if proxy is not None:
                    await _open_tunnel(tcp, proxy, origin)
                if origin.scheme == "https":
                    context = ssl_context or default_ssl_context()
                    tls = TLSStream(tcp, context, server_hostname=origin.host)
                    stream = tls
                    await tls.do_handshake()
        except trio.TooSlowError:
            if tcp is not None:
                await trio.aclose_forcefully(tcp)
            raise ConnectTimeout(
                f"connecting to {origin}{via} took longer than {connect_timeout} s"
            ) from None
        except (OSError, trio.BrokenResourceError) as exc:
            if tcp is not None:
                await trio.aclose_forcefully(tcp)
            cause = find_ssl_error(exc)
            if cause is not None:  # SSLEOFError too: a handshake broken off
                raise handshake_error(origin, cause) from None
            raise ConnectError(f"could not connect to {origin}{via}: {_reason(exc)}") from None
        except BaseException:
            if tcp is not None:
                await trio.aclose_forcefully(tcp)
            raise
        return cls(origin, stream)

    @property
    def reusable(self) -> bool:
        """True if the last response was read to its end, the server keeps alive, and
        it has sent nothing since (neither bytes no request asked for, nor a close):
        asked again just before a reuse, as an idle connection can change."""
        return (
            not self._broken
            and self._framing is None
            and self._h11.our_state is h11.DONE
            and self._h11.their_state is h11.DONE
            and not self._h11.trailing_data[0]
            and not self._socket_readable()
        )

    def _socket_readable(self) -> bool:
        """Whether the socket under the stream has bytes or an end of file waiting: on
        an idle connection, either means it cannot carry the next request."""
        stream = self._stream
        if isinstance(stream, TLSStream):
            stream = stream.transport_stream
        if not isinstance(stream, trio.SocketStream):
            return False  # a test's in-memory stream: nothing to ask
        try:
            fd = stream.socket.fileno()
        except OSError:
            return True
        if fd < 0:
            return True
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([fd], [], [], 0)[0])  # pragma: no cover (Windows)

    async def request(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]] | Mapping[str, str],
        body: bytes = b"",
        *,
        read_timeout: float,
        body_chunks: AsyncIterable[bytes] | None = None,
        content_length: int = 0,
    ) -> Response:
        """Send a request and read the response head. A large body (an upload) comes
        as ``body_chunks`` of ``content_length`` bytes in all, sent as they come.

        Raises:
            ReadTimeout: No bytes for ``read_timeout`` seconds.
            RemoteProtocolError: The server closed the connection or broke HTTP, or
                sent more than ``MAX_INFORMATIONAL`` 1xx answers.
            ConfigurationError: A header HTTP cannot carry (``_rules.check_headers``;
                the machines and the client check theirs before they get here).
        """
        if self._framing is not None:
            raise RuntimeError("a request on a connection whose body was read by _framing")
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
        self.answer_started = False
        self._method = method
        items = [(b"Host", self.origin.authority.encode("ascii"))]
        items += [
            (name.encode("ascii"), value.encode("utf-8"))
            for name, value in check_headers(headers, from_caller=False)
        ]
        if body_chunks is None:
            content_length = len(body)
        if content_length or body_chunks is not None:
            items.append((b"Content-Length", str(content_length).encode("ascii")))
        request = h11.Request(method=method, target=target, headers=items)
        await self._send(request)
        if body:
            await self._send(h11.Data(data=body))
        if body_chunks is not None:
            async for chunk in body_chunks:
                if chunk:
                    await self._send(h11.Data(data=chunk))
        await self._send(h11.EndOfMessage())
        informational = 0
        while True:
            event = await self._next_event(read_timeout)
            if isinstance(event, h11.InformationalResponse):
                informational += 1  # 1xx: the real answer follows, after a few at most
                if informational > MAX_INFORMATIONAL:
                    raise self._protocol_error(
                        f"{self.origin} sent more than {MAX_INFORMATIONAL} informational "
                        f"(1xx) answers before its response"
                    )
                continue
            if isinstance(event, h11.Response):
                return Response(
                    event.status_code, event.reason.decode("latin-1"), list(event.headers)
                )
            raise self._protocol_error(f"unexpected {type(event).__name__} before a response")

    def own_framing(self, response: Response) -> None:
        """Read the rest of ``response``'s body with ``_framing`` instead of h11 (an
        event stream's body: the hot path, a read per event, for hours). The
        connection is not reused after it."""
        self._framing = BodyFraming.of(self._method, response.status_code, response.fields)
        self._pending = self._h11.trailing_data[0]
        self._h11 = _SPENT  # its buffers freed: a kilobyte a stream, for hours

    async def receive_body(self, *, read_timeout: float) -> bytes:
        """The next piece of the response body as it arrives; ``b""`` at its end.

        Raises:
            ReadTimeout: No bytes for ``read_timeout`` seconds.
            RemoteProtocolError: The connection closed before the body's end, or
                the body's framing is broken.
        """
        framing = self._framing
        if framing is not None:
            try:
                if self._pending:
                    data, self._pending = self._pending, b""
                    body = framing.feed(data)
                    if body:
                        return body
                while not framing.done:
                    data = await self._receive_some(read_timeout)
                    if not data:
                        framing.eof()
                        break
                    body = framing.feed(data)
                    if body:
                        return body
            except FramingError as exc:
                raise self._protocol_error(f"{self.origin} broke HTTP/1.1: {exc}") from None
            return b""
        while True:
            event = await self._next_event(read_timeout)
            if isinstance(event, h11.Data):
                if event.data:
                    return bytes(event.data)
                continue
            if isinstance(event, h11.EndOfMessage):
                return b""
            raise self._protocol_error(f"unexpected {type(event).__name__} in a body")

    async def read_body(
        self, *, read_timeout: float, limit: int = 16 * 1024 * 1024, truncate: bool = False
    ) -> bytes:
        """The whole response body (for JSON answers), bounded by ``limit`` bytes: past
        it, a RemoteProtocolError, or with ``truncate`` its first ``limit`` bytes (for
        an error's body, which is only shown)."""
        pieces: list[bytes] = []
        size = 0
        while chunk := await self.receive_body(read_timeout=read_timeout):
            size += len(chunk)
            if size > limit:
                self._broken = True
                if truncate:
                    pieces.append(chunk)
                    return b"".join(pieces)[:limit]
                raise RemoteProtocolError(f"response body larger than {limit} bytes")
            pieces.append(chunk)
        return b"".join(pieces)

    async def aclose(self) -> None:
        """Close at once (no graceful TLS shutdown to wait for)."""
        self._broken = True
        await trio.aclose_forcefully(self._stream)

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- internals -----------------------------------------------------------------

    async def _send(self, event: h11.Event) -> None:
        try:
            data = self._h11.send(event)
            if data:
                await self._stream.send_all(data)
        except h11.LocalProtocolError:  # a bug of ours, never the server's
            self._broken = True
            # No details: h11's message could quote a header value, such as a token.
            raise RuntimeError("sseproto built an invalid HTTP request") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._broken = True
            raise RemoteProtocolError(
                f"the connection to {self.origin} broke while sending: {_reason(exc)}"
            ) from None

    async def _next_event(self, read_timeout: float) -> h11.Event:
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise self._protocol_error(_remote_message(self.origin, exc)) from None
            if event is h11.NEED_DATA:
                data = await self._receive_some(read_timeout)
                try:
                    self._h11.receive_data(data)
                except h11.RemoteProtocolError as exc:
                    raise self._protocol_error(_remote_message(self.origin, exc)) from None
                continue
            if isinstance(event, h11.ConnectionClosed):
                raise self._protocol_error(f"{self.origin} closed the connection")
            if not isinstance(event, h11.Event):  # PAUSED: we never pipeline requests
                raise self._protocol_error("the server answered more than was asked")
            return event

    async def _receive_some(self, read_timeout: float) -> bytes:
        """One network read (``b""``: the server closed), within ``read_timeout``."""
        stream = self._stream
        try:
            if isinstance(stream, TLSStream):  # the hot path: a cancel scope only to wait
                data = await stream.receive_within(read_timeout)
            else:  # plain TCP (loopback), or a test's in-memory stream
                with trio.fail_after(read_timeout):
                    data = bytes(await stream.receive_some(_READ_SIZE))
        except trio.TooSlowError:
            raise self._read_timeout(read_timeout) from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise self._protocol_error(
                f"the connection to {self.origin} broke: {_reason(exc)}"
            ) from None
        if data:
            self.answer_started = True
        return data

    def _read_timeout(self, read_timeout: float) -> ReadTimeout:
        self._broken = True
        return ReadTimeout(
            f"no data from {self.origin} for {read_timeout} s (the idle read "
            f"timeout): the connection is presumed dead"
        )

    def _protocol_error(self, message: str) -> RemoteProtocolError:
        self._broken = True
        return RemoteProtocolError(message)


async def _open_tunnel(tcp: trio.SocketStream, proxy: Proxy, origin: Origin) -> None:
    """``CONNECT`` through ``proxy`` to ``origin``; on a 2xx the socket is the tunnel.

    Bounded like every answer: the proxy's head by h11's size limit, its 1xx answers
    by ``MAX_INFORMATIONAL``, its time by the caller's connect timeout.

    Raises:
        ProxyError: A non-2xx answer, a close before one, or broken HTTP.
    """
    conn = h11.Connection(h11.CLIENT)
    target, headers = proxy.connect_request(origin)
    try:
        request = conn.send(h11.Request(method="CONNECT", target=target, headers=headers))
    except h11.LocalProtocolError:  # a bug of ours; h11's text could quote a credential
        raise RuntimeError("sseproto built an invalid CONNECT request") from None
    await tcp.send_all((request or b"") + (conn.send(h11.EndOfMessage()) or b""))
    what = f"the proxy {proxy}"
    informational = 0
    while True:
        try:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = bytes(await tcp.receive_some(_READ_SIZE))
                if not data:
                    break  # closed before (the end of) an answer
                conn.receive_data(data)
                continue
        except h11.RemoteProtocolError as exc:
            detail = str(exc)[:200]  # h11 quotes (as a repr) what the proxy sent
            raise ProxyError(
                f"{what} broke HTTP/1.1 answering CONNECT {origin}: {detail}"
            ) from None
        if isinstance(event, h11.InformationalResponse):
            informational += 1
            if informational > MAX_INFORMATIONAL:
                raise ProxyError(f"{what} sent too many 1xx answers to CONNECT {origin}")
            continue
        if isinstance(event, h11.Response):
            if not 200 <= event.status_code < 300:
                raise proxy.refused(origin, event.status_code, event.reason.decode("latin-1"))
            if conn.trailing_data[0]:  # the server speaks first only after our TLS hello
                raise ProxyError(f"{what} sent bytes of its own into the tunnel to {origin}")
            return
        break  # anything else before an answer: none will come
    raise ProxyError(
        f"{what} closed the connection without answering CONNECT {origin} (it may not "
        f"reach the server, or refuse it without saying so)"
    )


def _remote_message(origin: Origin, exc: h11.RemoteProtocolError) -> str:
    if "peer closed connection" in str(exc):
        return f"{origin} closed the connection in the middle of a response"
    return f"{origin} broke HTTP/1.1: {exc}"


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    text = str(exc) or type(exc).__name__
    if isinstance(cause, BaseExceptionGroup):  # trio's happy eyeballs: one per address
        leaves = [
            os.strerror(e.errno) if isinstance(e, OSError) and e.errno else str(e)
            for e in _leaves(cause)
        ]
        return "; ".join(dict.fromkeys(leaves))  # "Connection refused"
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({cause})"
    return text


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out
