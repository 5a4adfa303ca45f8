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
``ssl.create_default_context()``, which honours ``SSL_CERT_FILE``); plain ``http`` is
refused for any host that is not loopback.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import sys
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import h11
import trio

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from ._errors import (
    CertificateError,
    ConnectError,
    ConnectTimeout,
    ReadTimeout,
    RemoteProtocolError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["Connection", "Origin", "Response", "parse_retry_after", "parse_url", "redirect_target"]

_READ_SIZE = 65536


@dataclass(frozen=True)
class Origin:
    """Where a request goes: scheme, host and port (what a connection is for)."""

    scheme: str
    host: str
    port: int

    @property
    def authority(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.authority}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_url(url: str) -> tuple[Origin, str]:
    """Split a URL into its origin and request target; refuse what we must not send to.

    Raises:
        ValueError: Not an http(s) URL, or plain ``http`` to a host that is not loopback
            (a token must never cross a network in the clear).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    host = parts.hostname
    if scheme == "http" and not _is_loopback(host):
        raise ValueError(
            f"refusing plain http to {host!r}: use https (plain http is allowed only to "
            f"loopback addresses, for local testing)"
        )
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"bad port in URL: {url!r}") from None
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Origin(scheme, host, port), target


def redirect_target(origin: Origin, location: str) -> str | None:
    """The request target a redirect's ``Location`` points to on the same origin, or
    None when it points elsewhere (credentials must never follow it there)."""
    if location.startswith("/") and not location.startswith("//"):
        return location
    try:
        other, target = parse_url(location)
    except ValueError:
        return None
    return target if other == origin else None


def parse_retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds, or None (absent, or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit() and len(value) <= 9:
        return float(value)
    return None  # an HTTP date: not worth a clock here; the backoff applies


@dataclass
class Response:
    """A response head; its body is read with :meth:`Connection.receive_body`."""

    status_code: int
    reason: str
    headers: dict[str, str]  # names lower-cased; repeated headers joined with ", "

    @property
    def content_type(self) -> str:
        """The media type, lower-cased, without parameters."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


class Connection:
    """One HTTP/1.1 connection to one origin. Use ``async with`` or :meth:`aclose`."""

    def __init__(self, origin: Origin, stream: trio.abc.Stream) -> None:
        self.origin = origin
        self._stream = stream
        self._h11 = h11.Connection(h11.CLIENT)
        self._broken = False

    def __repr__(self) -> str:
        state = "broken" if self._broken else "open"
        return f"<sseproto Connection to {self.origin} ({state})>"

    @classmethod
    async def connect(
        cls, origin: Origin, *, ssl_context: ssl.SSLContext | None, connect_timeout: float
    ) -> Connection:
        """Open a connection (TCP, then TLS for https with SNI and verification).

        Raises:
            ConnectTimeout: It took longer than ``connect_timeout`` seconds.
            ConnectError: Refused, unreachable, or the TLS handshake failed.
        """
        tcp: trio.SocketStream | None = None
        try:
            with trio.fail_after(connect_timeout):
                tcp = await trio.open_tcp_stream(origin.host, origin.port)
                stream: trio.abc.Stream = tcp
                if origin.scheme == "https":
                    context = ssl_context or ssl.create_default_context()
                    tls = trio.SSLStream(
                        tcp, context, server_hostname=origin.host, https_compatible=True
                    )
                    stream = tls
                    await tls.do_handshake()
        except trio.TooSlowError:
            if tcp is not None:
                await trio.aclose_forcefully(tcp)
            raise ConnectTimeout(
                f"connecting to {origin} took longer than {connect_timeout} s"
            ) from None
        except (OSError, trio.BrokenResourceError) as exc:
            if tcp is not None:
                await trio.aclose_forcefully(tcp)
            cause = exc.__cause__ or exc.__context__ or exc
            error = (
                CertificateError
                if isinstance(cause, ssl.SSLCertVerificationError)
                else ConnectError
            )
            raise error(_connect_message(origin, exc)) from None
        except BaseException:
            if tcp is not None:
                await trio.aclose_forcefully(tcp)
            raise
        return cls(origin, stream)

    @property
    def reusable(self) -> bool:
        """True if the last response was read to its end and the server keeps alive."""
        return (
            not self._broken
            and self._h11.our_state is h11.DONE
            and self._h11.their_state is h11.DONE
        )

    async def request(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]] | Mapping[str, str],
        body: bytes = b"",
        *,
        read_timeout: float,
    ) -> Response:
        """Send a request and read the response head.

        Raises:
            ReadTimeout: No bytes for ``read_timeout`` seconds.
            RemoteProtocolError: The server closed the connection or broke HTTP.
        """
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
        items = list(headers.items()) if hasattr(headers, "items") else list(headers)
        for name, value in items:
            if not all(c == "\t" or " " <= c <= "~" for c in value):
                # Never echo the value: it may be a token.
                raise ValueError(
                    f"the {name} header has a value HTTP cannot carry (a control "
                    f"character or non-ASCII text)"
                )
        items = [("Host", self.origin.authority), *items]
        if body:
            items.append(("Content-Length", str(len(body))))
        request = h11.Request(method=method, target=target, headers=items)
        await self._send(request)
        if body:
            await self._send(h11.Data(data=body))
        await self._send(h11.EndOfMessage())
        while True:
            event = await self._next_event(read_timeout)
            if isinstance(event, h11.InformationalResponse):
                continue  # 1xx: the real answer follows
            if isinstance(event, h11.Response):
                headers_out: dict[str, str] = {}
                for name, value in event.headers:
                    key = name.decode("ascii").lower()
                    text = value.decode("latin-1")
                    headers_out[key] = f"{headers_out[key]}, {text}" if key in headers_out else text
                return Response(event.status_code, event.reason.decode("latin-1"), headers_out)
            raise self._protocol_error(f"unexpected {type(event).__name__} before a response")

    async def receive_body(self, *, read_timeout: float) -> bytes:
        """The next piece of the response body as it arrives; ``b""`` at its end.

        Raises:
            ReadTimeout: No bytes for ``read_timeout`` seconds.
            RemoteProtocolError: The connection closed before the body's end.
        """
        while True:
            event = await self._next_event(read_timeout)
            if isinstance(event, h11.Data):
                if event.data:
                    return bytes(event.data)
                continue
            if isinstance(event, h11.EndOfMessage):
                return b""
            raise self._protocol_error(f"unexpected {type(event).__name__} in a body")

    async def read_body(self, *, read_timeout: float, limit: int = 16 * 1024 * 1024) -> bytes:
        """The whole response body (for JSON answers), bounded by ``limit`` bytes."""
        pieces: list[bytes] = []
        size = 0
        while chunk := await self.receive_body(read_timeout=read_timeout):
            size += len(chunk)
            if size > limit:
                self._broken = True
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
                data = b""
                with trio.move_on_after(read_timeout) as idle:
                    try:
                        data = bytes(await self._stream.receive_some(_READ_SIZE))
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                        raise self._protocol_error(
                            f"the connection to {self.origin} broke: {_reason(exc)}"
                        ) from None
                if idle.cancelled_caught:
                    self._broken = True
                    raise ReadTimeout(
                        f"no data from {self.origin} for {read_timeout} s (the idle read "
                        f"timeout): the connection is presumed dead"
                    )
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

    def _protocol_error(self, message: str) -> RemoteProtocolError:
        self._broken = True
        return RemoteProtocolError(message)


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


def _connect_message(origin: Origin, exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__ or exc
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (
            f"the certificate of {origin} could not be verified ({cause.verify_message}); "
            f"if it is signed by a private CA, pass ssl_context= or set SSL_CERT_FILE"
        )
    if isinstance(cause, ssl.SSLError):
        return f"the TLS handshake with {origin} failed: {cause}"
    return f"could not connect to {origin}: {_reason(exc)}"


def refused(what: str, status: int, reason: str = "") -> str:
    """``GET https://… answered HTTP 404 Not Found`` (the standard phrase where the
    server sent none, as HTTP/2 proxies do)."""
    if not reason:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    return f"{what} answered HTTP {status} {reason}".rstrip()
