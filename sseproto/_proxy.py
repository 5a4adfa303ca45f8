"""HTTP proxies: which one a connection goes through, and what its answer means.

Theory of operation: a proxy setting is what a caller passes as ``proxy=``: a URL
(every connection goes through that proxy), None (never a proxy, whatever the
environment says), or :data:`FROM_ENVIRONMENT`, the default: the variables curl,
requests and httpx read. The driver reads the environment
(``urllib.request.getproxies_environment``: ``https_proxy`` / ``HTTPS_PROXY``,
``all_proxy``, ``no_proxy``, the lower-case name winning, as curl does) and
:func:`choose` decides, for one origin, which proxy to use, if any.

Where the standard library's reading is not used: its ``proxy_bypass_environment``
matches ``NO_PROXY`` entries as text suffixes, so an entry ``0.1`` bypasses the host
``10.0.0.1``, and it knows no address ranges (``10.0.0.0/8``, which curl accepts) and
treats ``*`` only as the whole value. :func:`bypassed` is curl's rule: names match
themselves and their subdomains (``example.com``, ``.example.com`` and
``*.example.com`` alike), IP addresses and CIDR ranges match addresses, an entry may
name a port, ``*`` anywhere means every host. As Go's net/http does, loopback hosts
(``localhost``, ``127.0.0.0/8``, ``::1``) never go through a proxy taken from the
environment (a local test server behind a corporate ``HTTPS_PROXY`` stays reachable);
an explicit ``proxy=`` applies to every host.

Only ``http://`` proxies are spoken to, with ``CONNECT host:port`` and then TLS to
the server through the tunnel (so the proxy sees neither the token nor the events).
Credentials in the proxy URL's userinfo become a Basic ``Proxy-Authorization``, sent to
the proxy only, and shown nowhere: a :class:`Proxy` prints as its origin alone.

Pure: no I/O; the drivers call it.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, Union
from urllib.parse import unquote, urlsplit

from ._errors import ConfigurationError, ProxyError
from ._rules import Origin, _host, _is_loopback, refused

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "FROM_ENVIRONMENT",
    "Proxy",
    "ProxySetting",
    "bypassed",
    "choose",
    "parse_proxy",
    "proxy_setting",
]

#: The default ``proxy=``: take the proxy from the environment, as curl does.
FROM_ENVIRONMENT: Final = "environment"

#: What ``proxy=`` becomes once checked: a proxy, none, or the environment's.
ProxySetting = Union["Proxy", None, Literal["environment"]]

_SEPARATORS = re.compile(r"[,\s]+")


@dataclass(frozen=True)
class Proxy:
    """An ``http://`` proxy: where it is, and its credentials (never shown)."""

    origin: Origin
    #: The ``Proxy-Authorization`` value, from the URL's ``user:password``, or None.
    authorization: str | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:  # for messages: never the credentials
        return str(self.origin)

    def __repr__(self) -> str:
        credentials = " (with credentials)" if self.authorization else ""
        return f"<sseproto Proxy {self.origin}{credentials}>"

    def connect_request(self, origin: Origin) -> tuple[str, list[tuple[str, str]]]:
        """The ``CONNECT`` request that opens a tunnel to ``origin``: its target
        (``host:port``, always with the port) and its headers."""
        host = f"[{origin.host}]" if ":" in origin.host else origin.host
        target = f"{host}:{origin.port}"
        headers = [("Host", target)]
        if self.authorization is not None:
            headers.append(("Proxy-Authorization", self.authorization))
        return target, headers

    def refused(self, origin: Origin, status: int, reason: str) -> ProxyError:
        """Our error for the proxy's non-2xx answer to ``CONNECT`` (``reason`` is the
        proxy's text: shown only if it is short, printable ASCII)."""
        answer = refused(f"the proxy {self}", status, reason)
        if status == 407:
            if self.authorization is None:
                advice = (
                    "it wants credentials: put them in the proxy URL, "
                    "http://user:password@host:port"
                )
            else:
                advice = "check the user and password in the proxy URL"
            return ProxyError(f"{answer} to CONNECT {origin}: {advice}", status_code=status)
        if 400 <= status < 500:
            advice = "the proxy does not allow a tunnel to this server; ask its administrator"
        else:
            advice = "it could not reach the server"
        return ProxyError(f"{answer} to CONNECT {origin}: {advice}", status_code=status)


def parse_proxy(url: str, *, source: str) -> Proxy:
    """A proxy URL: ``http://[user[:password]@]host[:port]``. Without a scheme,
    ``http://`` is meant (as curl reads it); without a port, 80. A path is ignored.

    ``source`` names where the URL came from, for messages (``proxy=``,
    ``$HTTPS_PROXY``); a message never quotes the URL, which may hold a password.

    Raises:
        ConfigurationError: Not a URL, no host, a bad port, or a scheme other than
            ``http`` (``https://`` and ``socks5://`` proxies are not spoken to).
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"{source} takes a URL (str) or None, not {type(url).__name__}")
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
        if port == 0:  # no server listens there: not "the default port"
            raise ValueError("port 0")
    except ValueError:
        raise ConfigurationError(
            f"{source} is not a proxy URL sseproto can read (a bad port or host); "
            f"give http://host:port"
        ) from None
    scheme = parts.scheme.lower()
    if scheme != "http":
        raise ConfigurationError(
            f"{source} names a {scheme or '(missing)'}:// proxy; sseproto speaks to "
            f"http:// proxies (CONNECT) only: give one, or none (proxy=None; on the "
            f"command line, --no-proxy)"
        )
    shown_url = f"http://{parts.hostname or ''}"  # for messages: no userinfo
    host = _host(parts.hostname, shown_url)
    authorization = None
    if parts.username is not None or parts.password is not None:
        user = unquote(parts.username or "")
        password = unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        authorization = f"Basic {token}"
    return Proxy(Origin("http", host, 80 if port is None else port), authorization)


def proxy_setting(value: object, *, source: str = "proxy=") -> ProxySetting:
    """A caller's ``proxy=`` checked (before anything is sent): a URL becomes a
    :class:`Proxy`; None and :data:`FROM_ENVIRONMENT` stay as they are."""
    if value is None or value == FROM_ENVIRONMENT:
        return None if value is None else FROM_ENVIRONMENT
    if isinstance(value, Proxy):
        return value
    if not isinstance(value, str):
        raise ConfigurationError(f"{source} takes a URL (str) or None, not {type(value).__name__}")
    return parse_proxy(value, source=source)


def choose(origin: Origin, setting: ProxySetting, environment: Mapping[str, str]) -> Proxy | None:
    """The proxy for a connection to ``origin``, or None to connect directly.

    ``environment`` is the mapping of ``urllib.request.getproxies_environment()``
    (``{"https": url, "all": url, "no": "host,..."}``), read only with
    :data:`FROM_ENVIRONMENT`.

    Raises:
        ConfigurationError: The environment's proxy URL cannot be used (a
            ``socks5://`` proxy, say): sseproto does not silently connect directly.
    """
    if setting is None or isinstance(setting, Proxy):
        return setting
    url = environment.get(origin.scheme)
    name = f"{origin.scheme}_proxy"
    if not url:
        url, name = environment.get("all"), "all_proxy"
    if not url or _is_loopback(origin.host) or bypassed(origin, environment.get("no", "")):
        return None
    return parse_proxy(
        url,
        source=f"${name.upper()} (or ${name}, from the environment)",
    )


def bypassed(origin: Origin, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` (a comma-separated list) exempts ``origin`` from the proxy:
    curl's rule (see the module's docstring)."""
    host = origin.host.rstrip(".")
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in _SEPARATORS.split(no_proxy.lower()):
        if entry == "*":
            return True
        name, port = _split_port(entry)
        if not name or (port is not None and port != origin.port):
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                continue  # a name never matches an address
        else:
            name = name.lstrip("*").lstrip(".").rstrip(".")
            if name and (host == name or host.endswith("." + name)):
                return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    """``host:port``, ``[v6]:port``, or a bare name, address or range."""
    if entry.startswith("["):
        address, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return address, int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        return name, int(port) if port.isdigit() else -1  # -1: a port that never matches
    return entry, None
