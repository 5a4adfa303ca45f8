"""The exception tree of sseproto.

Every exception sseproto raises on purpose derives from :class:`SSEProtoError`, so
``except sseproto.SSEProtoError`` catches all of them and nothing else. Lower layers'
exceptions (h11's, ssl's, trio's) are translated into these at the boundary where
they happen; they never leak. Messages say what went wrong and what to do about it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "CertificateError",
    "ConfigurationError",
    "ConnectError",
    "ConnectTimeout",
    "ContentTypeError",
    "EventStreamError",
    "HTTPStatusError",
    "NameResolutionError",
    "ProxyError",
    "ReadTimeout",
    "ReconnectError",
    "RemoteProtocolError",
    "SSEProtoError",
    "StreamUnavailable",
    "TLSHandshakeError",
    "TaskCancelled",
    "TaskError",
    "TaskEventError",
    "TaskFailed",
    "TransportError",
    "UsageError",
    "WebhookSignatureError",
]


class SSEProtoError(Exception):
    """The root of every exception sseproto raises on purpose."""


class EventStreamError(SSEProtoError):
    """The event stream broke a limit or the parser was used after it ended.

    Attributes:
        events: The events (and comments, if requested) that the failing ``feed``
            call had already completed before the fault, in order. Nothing that was
            complete is lost: deliver these, then handle the error.
    """

    def __init__(self, message: str, events: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.events: list[Any] = list(events)


class TaskEventError(SSEProtoError):
    """A task payload could not be decoded: not a JSON object, or a field it cannot
    be without is missing or of the wrong type. Extra or unknown fields never cause it.

    Attributes:
        event: The :class:`~sseproto.ServerSentEvent` at fault (None for the polling
            and webhook payloads).
        field: The name of the field at fault, or None when the whole payload is.
        payload: The decoded JSON object, when there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        event: Any = None,
        field: str | None = None,
        payload: Any = None,
    ) -> None:
        super().__init__(message)
        self.event = event
        self.field = field
        self.payload = payload


class WebhookSignatureError(SSEProtoError):
    """A webhook delivery's signature is missing, malformed or wrong: reject the request."""


class TransportError(SSEProtoError):
    """Talking to the server failed: connecting, TLS, HTTP, or the response."""


class ConnectError(TransportError):
    """The connection could not be made (DNS, refused, TLS handshake or certificate).

    A certificate error means the server is not who it claims to be, or is not trusted
    by the SSL context in use: pass ``ssl_context=`` (or set ``SSL_CERT_FILE``) for a
    private CA. Verification is never turned off.
    """


class NameResolutionError(ConnectError):
    """The host name is not known: the resolver (DNS, ``/etc/hosts``) answered that it
    does not exist. Not retried before a first connection (a typo fails the same way
    every time); check the URL. A temporary resolver failure (``EAI_AGAIN``) is a plain
    :class:`ConnectError`, retried.

    Attributes:
        host: The name that did not resolve.
        proxy: True if it is the proxy's host (check the proxy URL), False if the
            server's (check the URL or base URL).
    """

    def __init__(self, message: str, *, host: str, proxy: bool = False) -> None:
        super().__init__(message)
        self.host = host
        self.proxy = proxy


class ProxyError(ConnectError):
    """The HTTP proxy would not open a tunnel to the server (its answer to ``CONNECT``
    was not a 2xx), or broke HTTP while answering.

    A 407 (the proxy wants credentials, or refused those given) and the other 4xx
    answers (the proxy's policy forbids the server) fail the same way again: not
    retried; check the proxy URL and its ``user:password``. A 5xx (the proxy could not
    reach the server) is retried like a refused connection.

    Attributes:
        status_code: The proxy's status, or None when it sent no usable answer.
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class TLSHandshakeError(ConnectError):
    """The TLS handshake failed: no TLS version or cipher both sides accept, or the
    server broke off the handshake. Not retried: it fails the same way every time. The
    message gives the reason; check the server's TLS settings (or the SSL context's)."""


class CertificateError(TLSHandshakeError):
    """The server's certificate failed verification (untrusted CA, wrong host name,
    expired). Pass ``ssl_context=`` or set ``SSL_CERT_FILE`` for a private CA."""


class ConnectTimeout(ConnectError):
    """The connection (TCP and TLS handshake) took longer than ``connect_timeout``."""


class ReadTimeout(TransportError):
    """No bytes arrived for ``read_timeout`` seconds (heartbeat comments count as bytes)."""


class RemoteProtocolError(TransportError):
    """The server broke HTTP/1.1, or closed the connection in the middle of a response."""


class HTTPStatusError(TransportError):
    """The server answered with a status the call cannot use.

    Attributes:
        status_code: The HTTP status.
        body: The raw response body (up to a bound), for the caller to inspect.
        headers: The response headers, names lower-cased.
        retry_after: The server's ``Retry-After``, in seconds, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body
        self.headers = headers or {}
        self.retry_after = retry_after


class ContentTypeError(HTTPStatusError):
    """The server answered with a body sseproto cannot read: a 200 that is not
    ``text/event-stream`` where a stream was asked for, or a body in a
    ``Content-Encoding`` other than the identity that was asked for. Not retried."""


class ReconnectError(TransportError):
    """Reconnecting kept failing: the stream gave up after a bounded number of attempts.

    Attributes:
        attempts: How many consecutive attempts failed.
        last_error: The error of the last attempt.
    """

    def __init__(self, message: str, *, attempts: int, last_error: BaseException) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.last_error = last_error


class ConfigurationError(SSEProtoError):
    """A setting is missing or invalid (no API key, a URL or header that cannot be
    sent): fix the configuration. Raised before anything is sent."""


class UsageError(SSEProtoError):
    """A sans-IO machine was called out of order (such as ``receive_data`` with no
    connection open): a bug in the code that drives it, not in the server."""


class TaskError(SSEProtoError):
    """The watched task did not complete.

    Attributes:
        task_id: The task.
        snapshot: The last state seen (a TaskSnapshot, or the terminal TaskEvent).
    """

    def __init__(self, message: str, *, task_id: str, snapshot: Any = None) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.snapshot = snapshot


class TaskFailed(TaskError):
    """The task failed. ``error`` is the server's reason (``""`` if it gave none)."""

    def __init__(self, message: str, *, task_id: str, error: str, snapshot: Any = None) -> None:
        super().__init__(message, task_id=task_id, snapshot=snapshot)
        self.error = error


class TaskCancelled(TaskError):
    """The task was cancelled."""


class StreamUnavailable(TransportError):
    """The events endpoint ended without the task's terminal event (a 204, or a close
    right after an ``error`` event): poll the task instead, as :func:`~sseproto.watch`
    does."""
