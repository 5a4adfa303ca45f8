"""The HTTP rules every driver shares, written once: pure code, no I/O, no clock.

What may be requested (URLs, origins, request targets), where a redirect may lead,
which header values HTTP can carry, what a status means, how to read ``Retry-After``,
and the constants of the reconnection and polling policies. The sans-IO machines
(``_eventsource.py``, ``_watching.py``) and every driver take them from here.

Everything a server sends is untrusted: a ``Location`` is resolved, checked against
the origin and percent-encoded before it becomes a request; text that ends up in a
message is shortened and escaped (:func:`shown`). Everything a caller gives is checked
before anything is sent, and a value that may be a secret is never quoted.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from ._errors import (
    ConfigurationError,
    HTTPStatusError,
    NameResolutionError,
    ProxyError,
    RemoteProtocolError,
    TLSHandshakeError,
    TransportError,
)
from ._version import __version__

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "DEFAULT_RETRY",
    "ERROR_BODY_LIMIT",
    "ERROR_BODY_SECONDS",
    "MAX_ATTEMPTS",
    "MAX_BACKOFF",
    "MAX_CONNECTING",
    "MAX_INFORMATIONAL",
    "MAX_POLL_FAILURES",
    "MAX_REDIRECTS",
    "MIN_CONNECT_INTERVAL",
    "REDIRECT_STATUSES",
    "SHORT_CONNECTION",
    "TRANSIENT_STATUSES",
    "USER_AGENT",
    "HeaderFields",
    "Origin",
    "check_headers",
    "count",
    "fails_again",
    "follow_redirect",
    "header_fields",
    "header_value_ok",
    "is_transient",
    "joined",
    "may_resend",
    "media_type",
    "parse_retry_after",
    "parse_url",
    "refused",
    "seconds",
    "shown",
    "unsupported_encoding",
]

# -- the policies' constants (seconds as floats) -------------------------------------

#: The reconnection time when the server sent no ``retry:`` (the standard leaves it
#: to the user agent: "probably in the region of a few seconds").
DEFAULT_RETRY = 3.0
#: The cap of every wait: backoff, ``retry:`` and ``Retry-After`` alike.
MAX_BACKOFF = 60.0
#: Failed reconnection attempts in a row before a stream gives up.
MAX_ATTEMPTS = 8
#: Redirects followed in a row, per connection attempt.
MAX_REDIRECTS = 5
#: The least time between the starts of two connection attempts of one stream,
#: whatever the server says (``retry: 0`` and a close): at most ~10 a second.
MIN_CONNECT_INTERVAL = 0.1
#: A stream whose life plus the reconnection time is shorter than this counts toward
#: the backoff even when it delivered events, so that a server closing at once with
#: ``retry: 0`` cannot keep the client reconnecting at full speed.
SHORT_CONNECTION = 1.0
#: Connections a trio run sets up at once (TCP, a proxy's tunnel, the TLS handshake):
#: the next ones wait for their turn, and their ``connect_timeout`` starts with it.
#: Thousands of handshakes started together share the process's CPU; without a limit
#: each one takes that much longer and they pass their timeout together, to be
#: retried together (a connect storm).
MAX_CONNECTING = 100
#: Informational (1xx) responses accepted before the real one.
MAX_INFORMATIONAL = 5
#: The most of an error response's body kept (``HTTPStatusError.body``) ...
ERROR_BODY_LIMIT = 65536
#: ... and the longest a driver spends reading it.
ERROR_BODY_SECONDS = 10.0
#: Consecutive transient failures of a polling (or result) call before giving up.
MAX_POLL_FAILURES = 10
#: Worth another try later: timeouts, rate limits and the server's temporary failures.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = f"sseproto/{__version__}"


# -- text from the server, in messages -----------------------------------------------


def shown(value: object, limit: int = 80) -> str:
    """A value for a message: its ``repr`` (control characters escaped), shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def refused(what: str, status: int, reason: str = "") -> str:
    """``GET https://… answered HTTP 404 Not Found``: the standard phrase where the
    server sent none (or one that is not plain printable text)."""
    if not (reason.isascii() and reason.isprintable() and len(reason) <= 60):
        reason = ""
    if not reason:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    return f"{what} answered HTTP {status} {reason}".rstrip()


# -- URLs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    """Where a request goes: scheme, host (ASCII, lower case) and port."""

    scheme: str
    host: str
    port: int

    @property
    def authority(self) -> str:
        """The ``Host`` header: the port only when it is not the scheme's default."""
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.authority}"


_HOSTNAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?", re.ASCII)
# What a request target may not carry as is: anything but visible ASCII, and a "%"
# that does not start an escape.
_UNSAFE_IN_TARGET = re.compile(r"[^\x21-\x7e]|%(?![0-9A-Fa-f]{2})")
# The WHATWG URL parser's clean-up of its input: C0 controls and spaces at the ends
# are stripped, tabs and line breaks anywhere removed.
_URL_ENDS = "".join(map(chr, range(0x21)))
_TAB_OR_NEWLINE = re.compile(r"[\t\n\r]")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _percent_encode(text: str) -> str:
    return _UNSAFE_IN_TARGET.sub(
        lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8", "surrogatepass")),
        text,
    )


def _host(raw: str | None, url: str) -> str:
    if not raw:
        raise ConfigurationError(f"not an http(s) URL: {shown(url)}")
    if ":" in raw:  # an IPv6 literal (urlsplit took the brackets off)
        try:
            return str(ipaddress.IPv6Address(raw))
        except ValueError:
            raise ConfigurationError(f"bad IPv6 address in URL: {shown(url)}") from None
    try:
        host = raw.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ConfigurationError(f"bad host name in URL: {shown(url)}") from None
    if not _HOSTNAME.fullmatch(host):
        raise ConfigurationError(f"bad host name in URL: {shown(url)}")
    return host


def parse_url(url: str) -> tuple[Origin, str]:
    """Split a URL into its origin and request target; refuse what must not be sent.

    The host is IDNA-encoded, the target percent-encoded where HTTP needs it (a space,
    non-ASCII text); the fragment is dropped.

    Raises:
        ConfigurationError: Not an http(s) URL, a bad host or port, or plain ``http``
            to a host that is not loopback (a token must never cross a network in the
            clear).
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"a URL is a str, not {type(url).__name__}")
    try:
        parts = urlsplit(url)
        port = parts.port
        if port == 0:  # no server listens there: not "the default port"
            raise ValueError("port 0")
    except ValueError:
        raise ConfigurationError(f"bad port in URL: {shown(url)}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ConfigurationError(f"not an http(s) URL: {shown(url)}")
    host = _host(parts.hostname, url)
    if scheme == "http" and not _is_loopback(host):
        raise ConfigurationError(
            f"refusing plain http to {host!r}: use https (plain http is allowed only to "
            f"loopback addresses, for local testing)"
        )
    target = _percent_encode(parts.path or "/")
    if parts.query:
        target += "?" + _percent_encode(parts.query)
    if port is None:
        port = 443 if scheme == "https" else 80
    return Origin(scheme, host, port), target


def follow_redirect(url: str, status: int, locations: list[str], what: str) -> str:
    """The URL a redirect leads to, when it stays on ``url``'s origin.

    Args:
        url: The URL that was requested.
        status: The redirect's status (for the error).
        locations: Every ``Location`` value the response carried.
        what: The request, for messages (``GET https://host/path``).

    Returns:
        The absolute, percent-encoded URL to request next.

    Raises:
        HTTPStatusError: No ``Location``, several, one that is not a URL we can
            request, or one on another origin (not followed, so that credentials
            never reach another host).
    """

    def error(problem: str) -> HTTPStatusError:
        return HTTPStatusError(f"{what} answered {status} {problem}", status_code=status)

    if not locations:
        raise error("without a Location header")
    if len(locations) > 1:
        raise error(f"with {len(locations)} Location headers; not followed")
    location = _TAB_OR_NEWLINE.sub("", locations[0].strip(_URL_ENDS))
    if not location:
        raise error("with an empty Location header")
    origin, _ = parse_url(url)
    try:
        new_origin, target = parse_url(urljoin(url, location))
    except (ConfigurationError, ValueError):
        raise error(f"to {shown(location)}, which cannot be requested") from None
    if new_origin != origin:
        raise error(
            f"to another origin ({new_origin}); not followed, so that credentials never "
            f"reach another host"
        )
    return f"{origin}{target}"


# -- headers -------------------------------------------------------------------------

_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
# A field value HTTP/1.1 can carry (RFC 9110 field-value, as h11 checks it), sent as
# UTF-8: no control characters, no whitespace at either end.
_FIELD_VALUE = re.compile(r"(?:[^\x00-\x20\x7f]+(?:[\t ]+[^\x00-\x20\x7f]+)*)?")
# Set by the transport or the machines, never by a caller.
_RESERVED = {
    "host": "it is the URL's",
    "content-length": "the transport sets it",
    "transfer-encoding": "the transport sets it",
    "last-event-id": "pass last_event_id= instead",
}

#: Response headers, names lower-cased, in the order received (repeats kept).
HeaderFields = list[tuple[str, str]]


def header_value_ok(value: str) -> bool:
    """True if HTTP/1.1 can carry ``value`` (as UTF-8) in a header."""
    return _FIELD_VALUE.fullmatch(value) is not None


def check_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
    *,
    from_caller: bool = True,
) -> list[tuple[str, str]]:
    """Request headers as a list of pairs, each checked (``from_caller`` False: the
    headers a machine built, which may include the ones a caller may not give).

    Raises:
        ConfigurationError: A name that is not an HTTP token, a name the transport
            owns (Host, Content-Length, Transfer-Encoding, Last-Event-ID), or a value
            HTTP cannot carry (a control character or line break, or whitespace at
            either end). The message names the header, never its value.
    """
    if headers is None:
        return []
    items = list(headers.items()) if hasattr(headers, "items") else list(headers)
    out: list[tuple[str, str]] = []
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise ConfigurationError("headers are a mapping or (name, value) pairs")
        name, value = item
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ConfigurationError(f"{shown(name)} is not a valid HTTP header name")
        why = _RESERVED.get(name.lower()) if from_caller else None
        if why is not None:
            raise ConfigurationError(f"the {name} header cannot be given: {why}")
        if not isinstance(value, str) or not header_value_ok(value):
            # Never show the value: it may be a token.
            raise ConfigurationError(
                f"the {name} header has a value HTTP cannot carry (a line break or "
                f"control character, or a space or tab at its start or end); the value "
                f"is not shown, as it may be a secret"
            )
        out.append((name, value))
    return out


def _text(value: str | bytes) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def header_fields(
    headers: Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]],
) -> HeaderFields:
    """Response headers as (lower-case name, value) pairs, repeats kept; bytes are
    read as UTF-8, or Latin-1 where they are not UTF-8."""
    items = headers.items() if hasattr(headers, "items") else headers
    return [(_text(name).lower(), _text(value)) for name, value in items]


def joined(fields: HeaderFields) -> dict[str, str]:
    """One value per name, repeats joined with ", " (for ``HTTPStatusError.headers``)."""
    out: dict[str, str] = {}
    for name, value in fields:
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def media_type(value: str) -> str:
    """A Content-Type's media type, lower-cased, without parameters."""
    return value.split(";", 1)[0].strip().lower()


def unsupported_encoding(fields: HeaderFields) -> str | None:
    """What is wrong with a body's Content-Encoding (``"Content-Encoding 'gzip'"``),
    or None when it is identity: sseproto asks for identity and decodes nothing else."""
    encodings = [v.strip().lower() for k, v in fields if k == "content-encoding" and v.strip()]
    if any(e != "identity" for e in encodings):
        return f"Content-Encoding {shown(', '.join(encodings))} although identity was asked for"
    return None


def parse_retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds, or None (absent, or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit() and len(value) <= 9:
        return float(value)
    return None  # an HTTP date: not worth a clock here; the backoff applies


_MONTHS = {
    name: number
    for number, name in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1
    )
}
_HTTP_DATES = (
    # IMF-fixdate, what servers send: Sun, 06 Nov 1994 08:49:37 GMT
    re.compile(r"[A-Za-z]{3}, (\d\d) ([A-Za-z]{3}) (\d{4}) (\d\d):(\d\d):(\d\d) GMT", re.ASCII),
    # the obsolete RFC 850 form: Sunday, 06-Nov-94 08:49:37 GMT
    re.compile(r"[A-Za-z]{6,9}, (\d\d)-([A-Za-z]{3})-(\d\d) (\d\d):(\d\d):(\d\d) GMT", re.ASCII),
)
# the obsolete asctime form: Sun Nov  6 08:49:37 1994
_ASCTIME = re.compile(r"[A-Za-z]{3} ([A-Za-z]{3}) ([ \d]\d) (\d\d):(\d\d):(\d\d) (\d{4})", re.ASCII)


def parse_http_date(value: str | None) -> float | None:
    """A ``Date`` header in Unix seconds, or None (absent, or not an HTTP date): the
    server's clock, for comparing the server's own timestamps (a link's
    ``expires_at``) without trusting ours. The three forms of RFC 9110 (5.6.7).
    (Not ``email.utils``: it imports ``socket``.)"""
    if value is None or len(value) > 40:
        return None
    text = value.strip()
    for form in _HTTP_DATES:
        m = form.fullmatch(text)
        if m is not None:
            day, month, year, hour, minute, second = m.groups()
            break
    else:
        m = _ASCTIME.fullmatch(text)
        if m is None:
            return None
        month, day, hour, minute, second, year = m.groups()
    number = _MONTHS.get(month.title())
    if number is None:
        return None
    full_year = int(year)
    if len(year) == 2:  # RFC 850's two digits: the nearest century, as RFC 9110 says
        full_year += 2000 if full_year < 70 else 1900
    try:
        when = datetime(
            full_year, number, int(day), int(hour), int(minute), int(second), tzinfo=timezone.utc
        )
    except ValueError:
        return None
    return when.timestamp()


# -- what a failure means ------------------------------------------------------------


def fails_again(error: BaseException, *, reached: bool) -> bool:
    """Whether a failure to connect would meet every later attempt the same way, so
    that nobody retries it: a TLS handshake that failed (a certificate, no common
    version); a proxy's 4xx to ``CONNECT`` (407: credentials; 403: its policy); a host
    name the resolver does not know, unless the server was ``reached`` before (then
    it is a network blip, such as a laptop waking up, and the backoff applies).

    A refused connection is not among them: a server restarting refuses for a while,
    and that must not end a watch.
    """
    if isinstance(error, TLSHandshakeError):
        return True
    if isinstance(error, ProxyError):
        return error.status_code is not None and 400 <= error.status_code < 500
    if isinstance(error, NameResolutionError):
        return not reached
    return False


def is_transient(error: BaseException) -> bool:
    """Worth another try: network trouble (not what :func:`fails_again`, such as TLS,
    which fails the same way again), 408, 429 and the 5xx of :data:`TRANSIENT_STATUSES`."""
    if isinstance(error, HTTPStatusError):
        return error.status_code in TRANSIENT_STATUSES
    return isinstance(error, TransportError) and not fails_again(error, reached=True)


def may_resend(error: BaseException, *, reused: bool, answer_started: bool) -> bool:
    """Whether a request that failed with ``error`` may be sent again on a new
    connection.

    Only a request sent on a reused keep-alive connection that the server had already
    closed (a RemoteProtocolError before a byte of the answer arrived): the server
    never saw it. Once a byte of the answer arrived, or after a read timeout (the
    server may be working on it), it may have acted on the request, so nothing is
    sent twice (a POST must not run twice).
    """
    return reused and not answer_started and isinstance(error, RemoteProtocolError)


# -- settings --------------------------------------------------------------------------


def seconds(name: str, value: Any, *, positive: bool = False) -> float:
    """A setting in seconds: a finite number, at least 0 (above 0 if ``positive``).

    Raises:
        ConfigurationError: Anything else.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number of seconds, not {value!r}")
    if value < 0 or (positive and value == 0):
        raise ConfigurationError(f"{name} must be {'above' if positive else 'at least'} 0")
    return float(value)


def count(name: str, value: Any) -> int:
    """A setting that counts: an int, at least 0.

    Raises:
        ConfigurationError: Anything else.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{name} must be an int of at least 0, not {value!r}")
    return value
