"""The network's side of every driver: the environment's proxies, unknown host names.

``_proxy`` (pure) decides which proxy a connection takes; this module hands it the
environment as the standard library reads it, and recognises, behind whatever the
I/O library raised (trio's, httpx's, uvloop's), the resolver's definite "no such
name", which becomes a :class:`~sseproto.NameResolutionError` that is not retried
(``_rules.fails_again``). A temporary resolver failure (``EAI_AGAIN``: no DNS server
answered) is left as it is: a plain connection failure, retried.
"""

from __future__ import annotations

import socket
import sys
from typing import TYPE_CHECKING

from ._errors import NameResolutionError
from ._proxy import FROM_ENVIRONMENT, Proxy, choose

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from ._proxy import ProxySetting
    from ._rules import Origin

__all__ = ["environment_proxies", "name_not_known", "route", "unknown_host"]

#: The resolver's answers that mean "this name does not exist" (not "try later").
_NOT_KNOWN = frozenset(
    code
    for code in (
        getattr(socket, "EAI_NONAME", None),
        getattr(socket, "EAI_NODATA", None),  # glibc: the name has no address
        getattr(socket, "EAI_FAIL", None),  # a non-recoverable failure
    )
    if code is not None
)


def environment_proxies() -> dict[str, str]:
    """The proxy variables (``https``, ``http``, ``all``, ``no``), as
    ``urllib.request.getproxies_environment`` reads them: any case, lower-case
    winning, an empty lower-case value unsetting the other."""
    from urllib.request import getproxies_environment  # loaded by the first connection

    return getproxies_environment()


def route(origin: Origin, setting: ProxySetting) -> Proxy | None:
    """The proxy for a connection to ``origin`` under ``setting`` (``_proxy.choose``)."""
    if setting is None or isinstance(setting, Proxy):
        return setting
    assert setting == FROM_ENVIRONMENT
    return choose(origin, setting, environment_proxies())


def name_not_known(exc: BaseException) -> bool:
    """Whether the resolver's "no such name" is behind ``exc`` (itself, or along its
    causes and contexts, or in an exception group)."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, socket.gaierror) and current.errno in _NOT_KNOWN:
            return True
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return False


def unknown_host(origin: Origin, *, proxy: Proxy | None = None) -> NameResolutionError:
    """Our error for a connection to ``origin`` whose host name (or, through ``proxy``,
    the proxy's) does not resolve."""
    if proxy is not None:
        host = proxy.origin.host
        return NameResolutionError(
            f"could not connect to {origin} through the proxy {proxy}: the proxy's host "
            f"name {host!r} is not known (the resolver has no such name); check the "
            f"proxy URL (proxy=, or $HTTPS_PROXY)",
            host=host,
            proxy=True,
        )
    return NameResolutionError(
        f"could not connect to {origin}: the host name {origin.host!r} is not known (the "
        f"resolver has no such name); check the URL",
        host=origin.host,
    )
