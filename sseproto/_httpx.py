"""What the asyncio and blocking drivers share: httpx at the boundary.

Theory of operation: ``sseproto.asyncio`` and ``sseproto.sync`` do their I/O with
httpx (``httpx.AsyncClient``, ``httpx.Client``): HTTP/2, proxies from the
environment, pooling and auth come with it. Everything else is ours, as in the trio
driver: the machines decide (``EventSource``, ``_api.Call``, the watch policy), and
this module holds the driver-side rules both httpx drivers follow:

* every request is sent with ``follow_redirects=False`` (redirects are the machines'
  to follow, same origin only, so credentials never reach another origin), with our
  headers as UTF-8 bytes, and a per-request :func:`timeout` (``connect_timeout`` for
  TCP, TLS and the pool; ``read_timeout`` for each read and write);
* every httpx exception is translated by :func:`translate` into the class the trio
  transport raises for the same failure; the message names the origin, never a
  header;
* the client is the caller's (``http_client=``, never closed by us) or our own
  (:func:`own_client_options`: verification with the shared default context or the
  caller's ``ssl_context=``, closed when the stream or client closes);
* bodies are read raw (no decoding: the machines refuse a Content-Encoding they did
  not ask for) and bounded (:class:`Collector`);
* a request to a presigned link (an upload's PUT, an output's GET) carries exactly
  the headers ``_transfer`` names (:func:`presigned_request`): none of the client's
  defaults, cookies or auth, never our API key.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

try:
    import httpx
except ImportError:  # pragma: no cover (tested in a subprocess without httpx)
    raise ImportError(
        "sseproto.asyncio and sseproto.sync run on httpx, which is not installed: "
        "pip install 'sseproto[httpx]'"
    ) from None

from ._errors import (
    ConfigurationError,
    ConnectError,
    ConnectTimeout,
    HTTPStatusError,
    ProxyError,
    ReadTimeout,
    RemoteProtocolError,
    SSEProtoError,
    TransportError,
)
from ._net import name_not_known, unknown_host
from ._proxy import FROM_ENVIRONMENT
from ._rules import Origin, header_fields, joined, parse_url, refused
from ._tls import default_ssl_context, find_ssl_error, handshake_error

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence

    from ._proxy import Proxy
    from ._rules import HeaderFields

__all__ = [
    "Attempt",
    "Collector",
    "aiter_body",
    "answer_of",
    "astream_body",
    "check_client",
    "fields_of",
    "httpx",
    "iter_body",
    "own_client_options",
    "presigned_request",
    "request_headers",
    "resumable",
    "stream_body",
    "timeout",
    "translate",
]


def check_client(
    http_client: object,
    ssl_context: ssl.SSLContext | None,
    kind: type,
    proxy: object = FROM_ENVIRONMENT,
) -> None:
    """Refuse an ``http_client=`` of the wrong kind, or one given with ``ssl_context=``
    or ``proxy=`` (the client's own settings are its trust and its proxy).

    Raises:
        ConfigurationError: Either of those.
    """
    if http_client is None:
        return
    if not isinstance(http_client, kind):
        raise ConfigurationError(
            f"http_client must be an {kind.__module__}.{kind.__qualname__}, "
            f"not {type(http_client).__name__}"
        )
    if ssl_context is not None:
        raise ConfigurationError(
            "pass ssl_context= or http_client=, not both: the TLS trust of your own "
            "client is its verify= setting"
        )
    if proxy != FROM_ENVIRONMENT:
        raise ConfigurationError(
            "pass proxy= or http_client=, not both: the proxy of your own client is its "
            "proxy= (or mounts=) setting"
        )


def own_client_options(ssl_context: ssl.SSLContext | None, proxy: Proxy | None) -> dict[str, Any]:
    """The options of the client a driver creates when given none (no limit on its
    connections: each stream holds one); ``proxy`` is the one
    ``_net.route`` chose for its origin (the machines follow redirects to the same
    origin only), so the environment is read by our rules (``_proxy``), as the trio
    transport reads it, and not again by httpx (``trust_env=False``; the trust is
    ``verify=`` either way)."""
    return {
        "verify": ssl_context or default_ssl_context(),  # verification always on
        "follow_redirects": False,
        "trust_env": False,
        "proxy": None if proxy is None else _httpx_proxy(proxy),
        # A stream holds its connection for its life: httpx's default pool (100
        # connections) would make the 101st stream of a client wait, silently.
        "limits": httpx.Limits(max_connections=None, max_keepalive_connections=20),
    }


def _httpx_proxy(proxy: Proxy) -> httpx.Proxy:
    headers = {}
    if proxy.authorization is not None:  # to the proxy only, never into the tunnel
        headers["Proxy-Authorization"] = proxy.authorization
    return httpx.Proxy(str(proxy.origin), headers=headers)


def timeout(connect_timeout: float, read_timeout: float) -> httpx.Timeout:
    """One request's timeouts: connecting (TCP, TLS, waiting for a pooled connection)
    within ``connect_timeout``; no read or write idle longer than ``read_timeout``."""
    return httpx.Timeout(
        connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
    )


def request_headers(headers: Sequence[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Our (already checked) headers for httpx: values as UTF-8 (httpx would encode a
    str as ASCII, and a server's ``id:`` sent back as Last-Event-ID may be anything)."""
    return [(name.encode("ascii"), value.encode("utf-8")) for name, value in headers]


def presigned_request(
    method: str,
    url: str,
    headers: Sequence[tuple[str, str]],
    request_timeout: httpx.Timeout,
    content: bytes | Iterable[bytes] | AsyncIterable[bytes] | None = None,
) -> httpx.Request:
    """A request to a presigned link (``_transfer``: an upload's PUT, an output's
    GET), to send with ``follow_redirects=False`` and ``auth=None``: ``Host`` and
    exactly ``headers`` (a body's ``Content-Length`` among them: then no chunked
    encoding), as the trio transport sends it. Built by hand, not by the client: no
    default header, cookie or auth of the client (a caller's may carry a key) goes
    to the storage; the signature in the link is the credential."""
    request: httpx.Request = httpx.Request(
        method,
        url,
        headers=request_headers(headers),
        content=content,
        extensions={"timeout": request_timeout.as_dict()},
    )
    return request


def resumable(error: BaseException) -> bool:
    """Whether a download's failure (translated) is a dropped connection, resumed from
    the part file: a transport failure once connected (a read that broke or timed
    out, a pooled connection the server had closed), not a refusal
    (``HTTPStatusError``) nor a connection that could not be made (``ConnectError``:
    the trio driver connects outside its retry, and raises it at once too)."""
    return isinstance(error, TransportError) and not isinstance(
        error, (HTTPStatusError, ConnectError)
    )


def answer_of(exc: Exception) -> httpx.Response | None:
    """The response behind a caller's response hook that raised (``raise_for_status``):
    the machines judge it, as any answer (a 401 is final, a 503 retried)."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response
    return None


def iter_body(response: httpx.Response) -> Iterator[bytes]:
    """The body's bytes as received (raw); or, when something (a response hook, a
    mock's ``content=``) already read it, what was read; nothing when httpx closed it
    unread (a response hook that raised)."""
    if response.is_stream_consumed:
        return iter([response.content] if response.content else [])
    if response.is_closed:
        return iter([])
    raw: Iterator[bytes] = response.iter_raw()  # typed even where httpx is not (a build)
    return raw


def aiter_body(response: httpx.Response) -> AsyncIterator[bytes]:
    """:func:`iter_body` for an async response."""
    if response.is_stream_consumed:
        return _once(response.content)
    if response.is_closed:
        return _once(b"")
    raw: AsyncIterator[bytes] = response.aiter_raw()
    return raw


def stream_body(response: httpx.Response) -> Iterator[bytes]:
    """An event stream's body, raw, for the hot loop: the transport's stream itself
    (``iter_raw`` adds a generator, a chunker and a context manager per chunk, which
    on a stream of one chunk per event is a sixth of the cost of an event)."""
    stream = response.stream
    if response.is_stream_consumed or response.is_closed:
        return iter_body(response)
    raw: Iterator[bytes]
    if isinstance(stream, httpx.SyncByteStream):
        response.is_stream_consumed = True  # nobody else reads it
        raw = iter(stream)
    else:  # pragma: no cover (an httpx.Client has sync streams)
        raw = response.iter_raw()
    return raw


def astream_body(response: httpx.Response) -> AsyncIterator[bytes]:
    """:func:`stream_body` for an async response."""
    stream = response.stream
    if response.is_stream_consumed or response.is_closed:
        return aiter_body(response)
    raw: AsyncIterator[bytes]
    if isinstance(stream, httpx.AsyncByteStream):
        response.is_stream_consumed = True
        raw = stream.__aiter__()
    else:  # pragma: no cover (an AsyncClient has async streams)
        raw = response.aiter_raw()
    return raw


async def _once(content: bytes) -> AsyncIterator[bytes]:
    if content:
        yield content


def fields_of(response: httpx.Response) -> HeaderFields:
    """The response headers as the machines take them (lower-case names, repeats kept)."""
    return header_fields(response.headers.raw)


def origin_of(url: str) -> Origin:
    """The origin a message names (the URL is one the machines built: it parses)."""
    return parse_url(url)[0]


def translate(
    exc: BaseException,
    url: str,
    *,
    connect_timeout: float,
    read_timeout: float,
    proxy: Proxy | None = None,
) -> SSEProtoError | None:
    """Our exception for an httpx failure of a request to ``url``, as the trio transport
    raises for the same failure; None if ``exc`` is not an httpx failure. ``proxy`` is
    the one our own client goes through (None: none, or a caller's client).

    Messages name the origin and what happened, never a header (a token) or the query.
    """
    if isinstance(exc, SSEProtoError):
        return exc
    origin = origin_of(url)
    if isinstance(exc, httpx.HTTPStatusError):  # a hook's raise_for_status: no query shown
        status = exc.response.status_code
        return HTTPStatusError(
            refused(f"{exc.request.method} {origin}{exc.request.url.path}", status),
            status_code=status,
            headers=joined(fields_of(exc.response)),
        )
    if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)):
        return ConnectTimeout(f"connecting to {origin} took longer than {connect_timeout} s")
    if isinstance(exc, httpx.ReadTimeout):
        return ReadTimeout(
            f"no data from {origin} for {read_timeout} s (the idle read timeout): the "
            f"connection is presumed dead"
        )
    if isinstance(exc, httpx.WriteTimeout):
        return ReadTimeout(
            f"{origin} accepted no data for {read_timeout} s while a request was sent"
        )
    if isinstance(exc, httpx.LocalProtocolError):
        # A bug of ours, never the server's; h11's message could quote a header value.
        return SSEProtoError("sseproto built an invalid HTTP request (please report it)")
    if isinstance(exc, httpx.ProxyError):
        return _proxy_error(exc, origin, proxy)
    if isinstance(exc, httpx.ConnectError):
        cause = find_ssl_error(exc)
        if cause is not None:
            return handshake_error(origin, cause)
        if name_not_known(exc):  # through a proxy, only the proxy's name is looked up
            return unknown_host(origin, proxy=proxy)
        if proxy is not None:
            return ConnectError(
                f"could not connect to {origin} through the proxy {proxy}: {_reason(exc)}"
            )
        return ConnectError(f"could not connect to {origin}: {_reason(exc)}")
    if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.CloseError)):
        cause = find_ssl_error(exc)
        if cause is not None and not isinstance(cause, ssl.SSLEOFError):
            return RemoteProtocolError(f"the TLS connection to {origin} broke: {cause}")
        return RemoteProtocolError(f"the connection to {origin} broke: {_reason(exc)}")
    if isinstance(exc, httpx.RemoteProtocolError):
        if "peer closed connection" in str(exc) or "incomplete" in str(exc):
            return RemoteProtocolError(
                f"{origin} closed the connection in the middle of a response"
            )
        return RemoteProtocolError(f"{origin} broke HTTP: {_reason(exc)}")
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return ConfigurationError(f"httpx cannot send a request to {origin}: {exc}")
    if isinstance(exc, httpx.TransportError):  # DecodingError cannot happen (raw reads)
        return TransportError(f"the connection to {origin} failed: {_reason(exc)}")
    if isinstance(exc, (httpx.HTTPError, httpx.StreamError)):
        return TransportError(f"{type(exc).__name__} on a request to {origin}: {_reason(exc)}")
    return None


def _proxy_error(exc: httpx.ProxyError, origin: Origin, proxy: Proxy | None) -> ProxyError:
    """httpcore's ``ProxyError("407 Proxy Authentication Required")``, ours."""
    status_text, _, reason = str(exc).partition(" ")
    if status_text.isdigit() and len(status_text) == 3:
        status = int(status_text)
        if proxy is not None:
            return proxy.refused(origin, status, reason)
        return ProxyError(
            f"{refused('the proxy', status, reason)} to CONNECT {origin} (check the proxy "
            f"settings of your httpx client)",
            status_code=status,
        )
    what = f"the proxy {proxy}" if proxy is not None else "the proxy"
    return ProxyError(f"{what} failed to open a tunnel to {origin}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"


class Attempt:
    """One try of a JSON call, watched through httpcore's ``trace`` extension: did it
    open a new connection, and did the answer's head arrive?

    httpx drops an idle connection the server visibly closed, but a close that
    crosses the request on the wire (the server's idle timeout) fails the call on a
    reused connection before any answer. Then, as the trio client does
    (``_rules.may_resend``), the call is sent again once, on a new connection: the
    server never saw it. Never once an answer started, nor after a timeout.
    """

    def __init__(self) -> None:
        self.reused = True
        self.answered = False

    def trace(self, name: str, info: object) -> None:
        if ".connect_tcp." in name or ".connect_unix_socket." in name:
            self.reused = False
        elif name.endswith("receive_response_headers.complete"):
            self.answered = True

    async def atrace(self, name: str, info: object) -> None:
        self.trace(name, info)

    def may_resend(self, exc: BaseException) -> bool:
        """Whether a call that failed with httpx's ``exc`` may be sent again."""
        if not self.reused or self.answered:
            return False
        if isinstance(exc, httpx.RemoteProtocolError):  # closed before a byte arrived
            return "without sending a response" in str(exc)
        return isinstance(exc, (httpx.ReadError, httpx.WriteError))  # reset by the close


class Collector:
    """A response body gathered piece by piece, bounded by ``limit`` bytes: past it,
    a RemoteProtocolError, or with ``truncate`` its first ``limit`` bytes and done
    (for an error's body, which is only shown)."""

    def __init__(self, limit: int, *, truncate: bool = False) -> None:
        self._pieces: list[bytes] = []
        self._size = 0
        self._limit = limit
        self._truncate = truncate
        self.full = False

    def add(self, chunk: bytes) -> None:
        """One more piece (check :attr:`full` after: then stop reading)."""
        self._size += len(chunk)
        self._pieces.append(chunk)
        if self._size > self._limit:
            if not self._truncate:
                raise RemoteProtocolError(f"response body larger than {self._limit} bytes")
            self.full = True

    @property
    def body(self) -> bytes:
        return b"".join(self._pieces)[: self._limit]
