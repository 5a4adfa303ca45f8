"""Proxies and unknown host names: the rules (``_proxy``, ``_net``, ``_rules``), the
machines' use of them (``EventSource``, ``WatchPolicy``), and the transports.

* ``_proxy`` on its own: proxy URLs (credentials become a Basic
  ``Proxy-Authorization`` shown nowhere), the ``CONNECT`` request, the messages of a
  refusal, curl's ``NO_PROXY`` rule (a table, and a hypothesis property: on plain
  names it is the standard library's), and the choice of a proxy from ``proxy=`` and
  the environment (monkeypatched; loopback never proxied from the environment).
* Which failures are never retried (``fails_again``, ``is_transient``), and what the
  sans-IO machines do with them: an unknown host stops at once until the server has
  answered once; a proxy's 4xx stops; its 5xx, or no answer, is retried like a refused
  connection, counted the same.
* The trio transport through a scripted proxy (``tests._fakeproxy``: a TCP server on
  127.0.0.1 that records what it receives, then refuses, hangs up, or answers 200
  and relays to the real TLS test server), and trio's resolver replaced by one that
  is told what to answer (``trio.socket.set_custom_hostname_resolver``): no real DNS,
  no internet, on trio's MockClock (autojump).
* The httpx drivers (asyncio, blocking): an unknown host through ``socket.getaddrinfo``
  (monkeypatched), ``proxy=`` with ``http_client=``, and the reprs.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import random
import socket
import string
import sys
import time
import traceback
import urllib.request
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import sseproto
import sseproto.asyncio as async_sse
import sseproto.sync as sync_sse
from sseproto import (
    CertificateError,
    ConfigurationError,
    Connect,
    ConnectError,
    ConnectTimeout,
    EventSource,
    HTTPStatusError,
    NameResolutionError,
    ProxyError,
    ReadTimeout,
    ReconnectError,
    RemoteProtocolError,
    Stop,
    TLSHandshakeError,
    TransportError,
    Wait,
    open_event_stream,
)
from sseproto import _httpx as httpx_rules
from sseproto._http import Connection
from sseproto._net import environment_proxies, name_not_known, route
from sseproto._proxy import FROM_ENVIRONMENT, Proxy, bypassed, choose, parse_proxy, proxy_setting
from sseproto._rules import MAX_INFORMATIONAL, Origin, fails_again, is_transient
from sseproto._watching import FetchTask, Finish, FollowStream, WatchPolicy
from sseproto.testing import Fault, Task, TestServer, serve
from tests._fakeproxy import Hangup, Refuse, Relay, closed_port, fake_proxy, resolving
from tests._leaks import clear_environment

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup

if TYPE_CHECKING:
    from collections.abc import Callable

SECRET = "s3cret-pw"
#: The Basic token of alice:SECRET (must never be shown either).
TOKEN = base64.b64encode(f"alice:{SECRET}".encode()).decode()
ORIGIN = Origin("https", "api.example.com", 443)


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")


def shows_no_secret(exc: BaseException) -> None:
    """Neither the password nor its Basic token in the message, nor anywhere in the
    printed traceback (chained exceptions included)."""
    printed = "".join(traceback.format_exception(exc))
    for text in (str(exc), repr(exc), printed):
        assert SECRET not in text
        assert TOKEN not in text


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy (nor CYBERUN_*, SSL_CERT_*) from the environment running the tests."""
    clear_environment(monkeypatch)
    monkeypatch.delenv("REQUEST_METHOD", raising=False)  # urllib's CGI rule


# == 1. proxy URLs, the CONNECT request, refusals =======================================


@pytest.mark.parametrize(
    ("url", "origin", "credentials"),
    [
        ("127.0.0.1:3128", Origin("http", "127.0.0.1", 3128), None),
        ("proxy.example", Origin("http", "proxy.example", 80), None),
        ("http://proxy.example", Origin("http", "proxy.example", 80), None),
        ("HTTP://Proxy.Example:8080/a/path", Origin("http", "proxy.example", 8080), None),
        ("  http://proxy.example:3128\n", Origin("http", "proxy.example", 3128), None),
        ("http://[::1]:3128", Origin("http", "::1", 3128), None),
        ("http://alice:pw@proxy.example:3128", Origin("http", "proxy.example", 3128), "alice:pw"),
        ("alice:pw@proxy.example:3128", Origin("http", "proxy.example", 3128), "alice:pw"),
        ("http://al%40ice:p%3Aw%20x%25@proxy.example", Origin("http", "proxy.example", 80),
         "al@ice:p:w x%"),
        ("http://alice:p%C3%A4ss@proxy.example", Origin("http", "proxy.example", 80), "alice:päss"),
        ("http://alice@proxy.example:3128", Origin("http", "proxy.example", 3128), "alice:"),
        ("http://alice:@proxy.example:3128", Origin("http", "proxy.example", 3128), "alice:"),
    ],
)  # fmt: skip
def test_parse_proxy(url: str, origin: Origin, credentials: str | None) -> None:
    proxy = parse_proxy(url, source="proxy=")
    assert proxy.origin == origin
    expected = None if credentials is None else basic(credentials)
    assert proxy.authorization == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"https://alice:{SECRET}@proxy.example:3128", "https://"),
        (f"socks5://alice:{SECRET}@proxy.example:1080", "socks5://"),
        (f"socks5h://alice:{SECRET}@proxy.example:1080", "socks5h://"),
        (f"http://alice:{SECRET}@proxy.example:99999", "port"),
        (f"http://alice:{SECRET}@proxy.example:abc", "port"),
        (f"http://alice:{SECRET}@[::1", "proxy URL"),
        (f"http://alice:{SECRET}@", "URL"),
        ("http://", "URL"),
        (f"http://alice:{SECRET}@bad_host!:3128", "host"),
    ],
)
def test_parse_proxy_refuses_without_showing_the_password(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_proxy(url, source="proxy=")
    assert problem in str(info.value)
    shows_no_secret(info.value)


def test_parse_proxy_refuses_port_zero() -> None:  # not "no port", so not port 80
    with pytest.raises(ConfigurationError, match="port"):
        parse_proxy(f"http://alice:{SECRET}@proxy.example:0", source="proxy=")


@pytest.mark.parametrize("scheme", ["https", "socks5"])
def test_parse_proxy_names_the_source_of_the_url(scheme: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_proxy(f"{scheme}://alice:{SECRET}@proxy.example:3128", source="$HTTPS_PROXY")
    assert "$HTTPS_PROXY" in str(info.value)
    shows_no_secret(info.value)


@pytest.mark.parametrize("value", [b"http://proxy.example:3128", 3128, ["http://p"]])
def test_proxy_setting_takes_a_str_or_none(value: object) -> None:
    with pytest.raises(ConfigurationError, match="takes a URL"):
        proxy_setting(value)


def test_proxy_setting_keeps_none_and_the_environment() -> None:
    assert proxy_setting(None) is None
    assert proxy_setting(FROM_ENVIRONMENT) == FROM_ENVIRONMENT
    given = parse_proxy("http://proxy.example:3128", source="proxy=")
    assert proxy_setting(given) is given
    assert proxy_setting("proxy.example:3128") == given


def test_a_proxy_prints_as_its_origin_alone() -> None:
    proxy = parse_proxy(f"http://alice:{SECRET}@proxy.example:3128", source="proxy=")
    assert proxy.authorization == f"Basic {TOKEN}"
    assert str(proxy) == "http://proxy.example:3128"
    assert f"{proxy}" == "http://proxy.example:3128"
    texts = [str(proxy), repr(proxy), f"{proxy!r}", repr([proxy]), str({"p": proxy})]
    for text in texts:
        assert SECRET not in text
        assert TOKEN not in text
        assert "alice" not in text
    assert "with credentials" in repr(proxy)
    bare = parse_proxy("http://proxy.example:3128", source="proxy=")
    assert "credentials" not in repr(bare)
    assert "proxy.example:3128" in repr(bare)


@pytest.mark.parametrize(
    ("origin", "target"),
    [
        (Origin("https", "example.com", 443), "example.com:443"),
        (Origin("https", "example.com", 8443), "example.com:8443"),
        (Origin("http", "127.0.0.1", 80), "127.0.0.1:80"),
        (Origin("https", "::1", 443), "[::1]:443"),
        (Origin("https", "2001:db8::1", 8443), "[2001:db8::1]:8443"),
    ],
)
def test_connect_request(origin: Origin, target: str) -> None:
    bare = parse_proxy("http://proxy.example:3128", source="proxy=")
    assert bare.connect_request(origin) == (target, [("Host", target)])
    with_credentials = parse_proxy(f"http://alice:{SECRET}@proxy.example:3128", source="proxy=")
    assert with_credentials.connect_request(origin) == (
        target,
        [("Host", target), ("Proxy-Authorization", f"Basic {TOKEN}")],
    )


def test_refused_407_without_credentials_asks_for_them() -> None:
    proxy = parse_proxy("http://proxy.example:3128", source="proxy=")
    error = proxy.refused(ORIGIN, 407, "Proxy Authentication Required")
    assert isinstance(error, ProxyError)
    assert isinstance(error, ConnectError)
    assert error.status_code == 407
    text = str(error)
    assert "http://proxy.example:3128" in text
    assert "407 Proxy Authentication Required" in text
    assert "CONNECT https://api.example.com" in text
    assert "user:password@" in text  # where the credentials go


def test_refused_407_with_credentials_says_they_are_wrong() -> None:
    proxy = parse_proxy(f"http://alice:{SECRET}@proxy.example:3128", source="proxy=")
    error = proxy.refused(ORIGIN, 407, "Proxy Authentication Required")
    assert error.status_code == 407
    assert "check the user and password" in str(error)
    bare = parse_proxy("http://proxy.example:3128", source="proxy=")
    assert str(error) != str(bare.refused(ORIGIN, 407, "Proxy Authentication Required"))
    shows_no_secret(error)
    assert "alice" not in str(error)


@pytest.mark.parametrize(
    ("status", "reason", "shown", "advice"),
    [
        (403, "Forbidden", "403 Forbidden", "administrator"),
        (400, "Bad Request", "400 Bad Request", "administrator"),
        (502, "Bad Gateway", "502 Bad Gateway", "could not reach"),
        (503, "", "503 Service Unavailable", "could not reach"),
        (403, "Go Away", "403 Go Away", "administrator"),  # a plain reason is shown
    ],
)
def test_refused_other_statuses(status: int, reason: str, shown: str, advice: str) -> None:
    proxy = parse_proxy(f"http://alice:{SECRET}@proxy.example:3128", source="proxy=")
    error = proxy.refused(ORIGIN, status, reason)
    assert error.status_code == status
    assert shown in str(error)
    assert advice in str(error)
    shows_no_secret(error)


@pytest.mark.parametrize(
    "reason",
    [
        "Denied\r\nSet-Cookie: evil=1",
        "\x1b[31mred alert\x1b[0m",
        "nul\x00byte",
        "x" * 200,
        "verweigert \u00fc",
    ],
    ids=["crlf", "ansi", "nul", "long", "non-ascii"],
)
def test_refused_never_shows_a_hostile_reason(reason: str) -> None:
    proxy = parse_proxy("http://proxy.example:3128", source="proxy=")
    error = proxy.refused(ORIGIN, 407, reason)
    text = str(error)
    assert reason not in text
    assert all(c.isprintable() for c in text)
    assert "407 Proxy Authentication Required" in text  # the standard phrase instead
    assert "Set-Cookie" not in text
    assert "xxxxxxxxxx" not in text


# == 2. NO_PROXY =========================================================================


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "expected"),
    [
        ("example.com", 443, "example.com", True),
        ("api.example.com", 443, "example.com", True),
        ("a.b.example.com", 443, "example.com", True),
        ("badexample.com", 443, "example.com", False),
        ("example.com.evil", 443, "example.com", False),
        ("example.com", 443, ".example.com", True),
        ("api.example.com", 443, ".example.com", True),
        ("badexample.com", 443, ".example.com", False),
        ("api.example.com", 443, "*.example.com", True),
        ("example.com", 443, "*.example.com", True),
        ("badexample.com", 443, "*.example.com", False),
        ("anything.org", 443, "*", True),
        ("10.1.2.3", 443, "*", True),
        ("anything.org", 443, "a.com,*", True),
        ("anything.org", 443, "a.com, *", True),
        ("anything.org", 443, "a.com,b.com", False),
        ("example.com", 443, "foo.org example.com", True),
        ("example.com", 443, "foo.org\texample.com", True),
        ("example.com", 443, " foo.org ,  example.com ", True),
        ("example.com", 443, "", False),
        ("example.com", 443, ", ,,", False),
        ("example.com", 443, "example.com:443", True),
        ("example.com", 8443, "example.com:443", False),
        ("api.example.com", 8443, "example.com:8443", True),
        ("example.com", 443, "example.com:https", False),
        ("10.0.0.1", 443, "10.0.0.1", True),
        ("10.0.0.2", 443, "10.0.0.1", False),
        ("10.0.0.1", 443, "10.0.0.1:443", True),
        ("10.0.0.1", 80, "10.0.0.1:443", False),
        ("10.1.2.3", 443, "10.0.0.0/8", True),
        ("11.0.0.1", 443, "10.0.0.0/8", False),
        ("192.168.1.200", 443, "192.168.1.0/24", True),
        ("10.0.0.1", 443, "0.1", False),  # the standard library's suffix match says True
        ("10.0.0.1", 443, ".0.0.1", False),
        ("10.0.0.1", 443, "localhost", False),  # a name never matches an address
        ("::1", 443, "::1", True),
        ("::1", 8443, "[::1]:8443", True),
        ("::1", 443, "[::1]:8443", False),
        ("::1", 443, "[::1]", True),
        ("2001:db8::5", 443, "2001:db8::/32", True),
        ("2001:db9::5", 443, "2001:db8::/32", False),
        ("2001:db8::5", 443, "2001:DB8::5", True),
        ("example.com", 443, "EXAMPLE.COM", True),
        ("api.example.com", 443, "*.Example.Com", True),
        ("example.com.", 443, "example.com", True),  # a trailing dot in the host
        ("api.example.com.", 443, ".example.com", True),
        ("example.com", 443, "example.com.", True),
    ],
)
def test_bypassed(host: str, port: int, no_proxy: str, expected: bool) -> None:
    assert bypassed(Origin("https", host, port), no_proxy) is expected


def test_the_standard_librarys_suffix_rule_differs_on_addresses() -> None:
    # Why _proxy does not use proxy_bypass_environment: "0.1" would bypass 10.0.0.1.
    assert urllib.request.proxy_bypass_environment("10.0.0.1", {"no": "0.1"})  # type: ignore[attr-defined]
    assert not bypassed(Origin("https", "10.0.0.1", 443), "0.1")


_LABEL = st.text(string.ascii_lowercase + string.digits + "-", min_size=1, max_size=6)
_NAME = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)


@st.composite
def _host_and_no_proxy(draw: st.DrawFn) -> tuple[str, str]:
    host = draw(_NAME)
    labels = host.split(".")
    suffixes = [".".join(labels[i:]) for i in range(len(labels))]
    entry = st.one_of(st.sampled_from(suffixes), _NAME, st.sampled_from([".", ".."]))
    entries = draw(
        st.lists(
            st.tuples(entry, st.booleans(), st.booleans(), st.sampled_from([",", ", ", " ,"])),
            max_size=4,
        )
    )
    parts = []
    for name, dot, upper, separator in entries:
        text = ("." if dot else "") + name
        parts.append((text.upper() if upper else text) + separator)
    return host, "".join(parts)


@given(_host_and_no_proxy())
def test_bypassed_is_the_standard_librarys_rule_on_plain_names(case: tuple[str, str]) -> None:
    host, no_proxy = case
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:  # pragma: no cover (four numeric labels: an address, where the rules differ)
        return
    stdlib = bool(urllib.request.proxy_bypass_environment(host, {"no": no_proxy}))  # type: ignore[attr-defined]
    assert bypassed(Origin("https", host, 443), no_proxy) is stdlib


# == 3. which proxy: proxy= and the environment ==========================================

HTTPS_ORIGIN = Origin("https", "api.example.com", 443)


def test_no_environment_no_proxy() -> None:
    assert environment_proxies() == {}
    assert route(HTTPS_ORIGIN, FROM_ENVIRONMENT) is None


def test_https_proxy_for_https_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://alice:{SECRET}@proxy.example:3128")
    chosen = route(HTTPS_ORIGIN, FROM_ENVIRONMENT)
    assert chosen is not None
    assert chosen.origin == Origin("http", "proxy.example", 3128)
    assert chosen.authorization == f"Basic {TOKEN}"


def test_http_proxy_is_not_for_https_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://plain.example:3128")
    assert environment_proxies() == {"http": "http://plain.example:3128"}
    assert route(HTTPS_ORIGIN, FROM_ENVIRONMENT) is None
    plain = choose(Origin("http", "api.example.com", 80), FROM_ENVIRONMENT, environment_proxies())
    assert plain is not None
    assert plain.origin.host == "plain.example"


def test_all_proxy_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", "http://all.example:3128")
    chosen = route(HTTPS_ORIGIN, FROM_ENVIRONMENT)
    assert chosen is not None
    assert chosen.origin.host == "all.example"
    monkeypatch.setenv("HTTPS_PROXY", "http://https.example:3128")
    chosen = route(HTTPS_ORIGIN, FROM_ENVIRONMENT)
    assert chosen is not None
    assert chosen.origin.host == "https.example"


def test_the_lower_case_variable_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://upper.example:3128")
    monkeypatch.setenv("https_proxy", "http://lower.example:3128")
    assert environment_proxies()["https"] == "http://lower.example:3128"
    chosen = route(HTTPS_ORIGIN, FROM_ENVIRONMENT)
    assert chosen is not None
    assert chosen.origin.host == "lower.example"


def test_an_empty_lower_case_variable_unsets_the_upper_case_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://upper.example:3128")
    monkeypatch.setenv("https_proxy", "")
    assert route(HTTPS_ORIGIN, FROM_ENVIRONMENT) is None


@pytest.mark.parametrize("variable", ["NO_PROXY", "no_proxy"])
def test_no_proxy_bypasses(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv(variable, "localhost, .internal.example,10.0.0.0/8")
    assert route(Origin("https", "svc.internal.example", 443), FROM_ENVIRONMENT) is None
    assert route(Origin("https", "10.9.8.7", 443), FROM_ENVIRONMENT) is None
    assert route(HTTPS_ORIGIN, FROM_ENVIRONMENT) is not None


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.4.5", "localhost", "::1"])
def test_loopback_is_never_proxied_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("ALL_PROXY", "http://proxy.example:3128")
    loopback = Origin("https", host, 8443)
    assert route(loopback, FROM_ENVIRONMENT) is None
    explicit = proxy_setting("http://proxy.example:3128")
    assert isinstance(explicit, Proxy)
    assert route(loopback, explicit) is explicit  # an explicit proxy: every host


def test_proxy_none_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("ALL_PROXY", "http://proxy.example:3128")
    assert route(HTTPS_ORIGIN, proxy_setting(None)) is None
    assert choose(HTTPS_ORIGIN, None, environment_proxies()) is None


@pytest.mark.parametrize(
    ("variable", "named"),
    [("HTTPS_PROXY", "$HTTPS_PROXY"), ("https_proxy", "$HTTPS_PROXY"), ("ALL_PROXY", "$ALL_PROXY")],
)
def test_a_socks_proxy_in_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, named: str
) -> None:
    monkeypatch.setenv(variable, f"socks5://alice:{SECRET}@proxy.example:1080")
    with pytest.raises(ConfigurationError) as info:
        route(HTTPS_ORIGIN, FROM_ENVIRONMENT)
    assert named in str(info.value)
    assert "socks5://" in str(info.value)
    shows_no_secret(info.value)


async def test_a_socks_proxy_in_the_environment_stops_the_stream_before_any_lookup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"socks5://alice:{SECRET}@proxy.example:1080")
    with (
        resolving({}) as resolver,
        pytest.raises(ConfigurationError, match=r"\$HTTPS_PROXY") as info,
    ):
        await drain("https://api.example.com/events")
    assert resolver.calls == {}
    shows_no_secret(info.value)


def test_a_bad_proxy_argument_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(ConfigurationError) as info:
        sseproto.Client(api_key="sk-x", proxy=f"socks5://alice:{SECRET}@proxy.example:1080")
    assert "proxy=" in str(info.value)
    shows_no_secret(info.value)


# == 4. what is never retried, and the machines =========================================


def _name_error() -> NameResolutionError:
    return NameResolutionError("unknown", host="api.example.com")


@pytest.mark.parametrize(
    ("error", "first", "later", "transient"),
    [
        pytest.param(TLSHandshakeError("no common version"), True, True, False, id="tls"),
        pytest.param(CertificateError("untrusted"), True, True, False, id="certificate"),
        pytest.param(ProxyError("407", status_code=407), True, True, False, id="proxy-407"),
        pytest.param(ProxyError("403", status_code=403), True, True, False, id="proxy-403"),
        pytest.param(ProxyError("400", status_code=400), True, True, False, id="proxy-400"),
        pytest.param(ProxyError("502", status_code=502), False, False, True, id="proxy-502"),
        pytest.param(ProxyError("503", status_code=503), False, False, True, id="proxy-503"),
        pytest.param(ProxyError("closed"), False, False, True, id="proxy-silent"),
        pytest.param(_name_error(), True, False, True, id="unknown-host"),
        pytest.param(
            NameResolutionError("x", host="p", proxy=True), True, False, True, id="unknown-proxy"
        ),
        pytest.param(ConnectError("refused"), False, False, True, id="refused"),
        pytest.param(ConnectTimeout("slow"), False, False, True, id="connect-timeout"),
        pytest.param(ReadTimeout("idle"), False, False, True, id="read-timeout"),
        pytest.param(RemoteProtocolError("closed"), False, False, True, id="protocol"),
        pytest.param(HTTPStatusError("503", status_code=503), False, False, True, id="http-503"),
        pytest.param(HTTPStatusError("404", status_code=404), False, False, False, id="http-404"),
        pytest.param(ConfigurationError("bad"), False, False, False, id="configuration"),
        pytest.param(OSError("raw"), False, False, False, id="not-ours"),
    ],
)
def test_fails_again_and_is_transient(
    error: BaseException, first: bool, later: bool, transient: bool
) -> None:
    assert fails_again(error, reached=False) is first
    assert fails_again(error, reached=True) is later
    assert is_transient(error) is transient


def test_the_new_errors_are_connect_errors() -> None:
    name = NameResolutionError("m", host="h")
    assert isinstance(name, ConnectError)
    assert isinstance(name, TransportError)
    assert (name.host, name.proxy) == ("h", False)
    proxy = NameResolutionError("m", host="p", proxy=True)
    assert proxy.proxy is True
    assert isinstance(ProxyError("m"), ConnectError)
    assert ProxyError("m").status_code is None


URL = "https://api.example.com/events"
STREAM = [("Content-Type", "text/event-stream")]


def machine(**options: Any) -> EventSource:
    return EventSource(URL, rng=random.Random(7), **options)


def first_attempt(error: BaseException) -> tuple[EventSource, Connect | Wait | Stop]:
    es = machine()
    assert isinstance(es.next_action(0.0), Connect)
    es.connection_closed(0.0, error)
    return es, es.next_action(0.0)


def after_a_stream(es: EventSource, *, status: int = 200) -> float:
    """Answer the first Connect (a stream that delivers one event and ends, or an
    error status), and take the machine to its next Connect; returns the time."""
    assert isinstance(es.next_action(0.0), Connect)
    if status == 200:
        assert es.receive_response(200, STREAM, 0.0)
        es.receive_data(b"id: 1\ndata: one\n\n")
        es.connection_closed(10.0)
    else:
        assert not es.receive_response(status, [], 0.0)
    now = 10.0
    action = es.next_action(now)
    while isinstance(action, Wait):
        now = action.until
        action = es.next_action(now)
    assert isinstance(action, Connect)
    return now


@pytest.mark.parametrize(
    "error",
    [
        _name_error(),
        NameResolutionError("proxy unknown", host="proxy.example", proxy=True),
        ProxyError("407", status_code=407),
        ProxyError("403", status_code=403),
        TLSHandshakeError("no common version"),
    ],
    ids=["unknown-host", "unknown-proxy", "proxy-407", "proxy-403", "tls"],
)
def test_eventsource_stops_at_once_on_the_first_connection(error: ConnectError) -> None:
    es, action = first_attempt(error)
    assert isinstance(action, Stop)
    assert action.error is error
    assert es.next_action(100.0) == Stop(error)  # and says so again


@pytest.mark.parametrize(
    "error",
    [ProxyError("502", status_code=502), ProxyError("no answer"), ConnectError("refused")],
    ids=["proxy-502", "proxy-silent", "refused"],
)
def test_eventsource_retries_a_proxys_5xx_or_silence(error: ConnectError) -> None:
    _, action = first_attempt(error)
    assert isinstance(action, Wait)


@pytest.mark.parametrize("status", [200, 503], ids=["after-a-stream", "after-a-503"])
def test_eventsource_retries_an_unknown_host_once_the_server_answered(status: int) -> None:
    es = machine()
    now = after_a_stream(es, status=status)
    es.connection_closed(now, _name_error())
    assert isinstance(es.next_action(now), Wait)


@pytest.mark.parametrize(
    "error",
    [ProxyError("407", status_code=407), ProxyError("403", status_code=403)],
    ids=["407", "403"],
)
def test_eventsource_stops_on_a_proxys_4xx_even_after_a_stream(error: ProxyError) -> None:
    es = machine()
    now = after_a_stream(es)
    es.connection_closed(now, error)
    assert es.next_action(now) == Stop(error)


def _fail_until_stop(
    es: EventSource, make: Callable[[], BaseException], now: float
) -> tuple[list[float], Stop]:
    """Fail every Connect with ``make()``; the times of the Connects, and the Stop."""
    connects: list[float] = []
    for _ in range(100):
        action = es.next_action(now)
        if isinstance(action, Stop):
            return connects, action
        if isinstance(action, Wait):
            now = action.until
            continue
        connects.append(now)
        es.connection_closed(now, make())
    raise AssertionError("the machine never stopped")


@pytest.mark.parametrize("reached", [False, True], ids=["first", "after-a-stream"])
def test_retried_failures_count_as_a_refused_connection(reached: bool) -> None:
    """A proxy's 502, its silence, and (once the server answered) an unknown host meet
    the same schedule and the same give-up as a refused connection."""
    kinds: dict[str, Callable[[], BaseException]] = {
        "refused": lambda: ConnectError("refused"),
        "proxy-502": lambda: ProxyError("502", status_code=502),
        "proxy-silent": lambda: ProxyError("closed without answering"),
    }
    if reached:
        kinds["unknown-host"] = _name_error
    schedules = {}
    for kind, make in kinds.items():
        es = machine(max_attempts=4)
        earlier: list[float] = []
        now = 0.0
        if reached:
            now = after_a_stream(es)
            earlier.append(now)
            es.connection_closed(now, make())
        connects, stop = _fail_until_stop(es, make, now)
        connects = earlier + connects
        assert isinstance(stop.error, ReconnectError), kind
        assert stop.error.attempts == 4
        assert type(stop.error.last_error) is type(make())
        schedules[kind] = connects
    first = schedules["refused"]
    assert len(first) == (4 if reached else 5)  # max_attempts reconnections (+ the first)
    assert all(connects == first for connects in schedules.values()), schedules


def test_watch_policy_finishes_with_an_unknown_host() -> None:
    policy = WatchPolicy("t-1", poll_interval=1.0)
    assert isinstance(policy.next_action(0.0), FollowStream)
    error = _name_error()
    policy.stream_ended(error)
    action = policy.next_action(0.0)
    assert isinstance(action, Finish)
    assert action.error is error
    assert policy.next_action(100.0) == action  # no polling, ever


def test_watch_policy_finishes_with_a_proxys_407() -> None:
    policy = WatchPolicy("t-1", poll_interval=1.0)
    assert isinstance(policy.next_action(0.0), FollowStream)
    error = ProxyError("407", status_code=407)
    policy.stream_ended(error)
    assert policy.next_action(0.0) == Finish(error=error)


def test_watch_policy_polls_after_giving_up_on_a_proxys_502() -> None:
    policy = WatchPolicy("t-1", poll_interval=1.0)
    assert isinstance(policy.next_action(0.0), FollowStream)
    last = ProxyError("502", status_code=502)
    policy.stream_ended(ReconnectError("gave up", attempts=8, last_error=last))
    assert isinstance(policy.next_action(0.0), FetchTask)


# == 5. the trio transport through a proxy ===============================================


def auth(srv: TestServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {srv.token}"}


def events_url(srv: TestServer, task_id: str = "t-1") -> str:
    return f"{srv.base_url}/tasks/{task_id}/events"


def head_of(raw: bytes) -> tuple[str, dict[str, str]]:
    """The request line and headers (names lower-cased, each once) of one request that
    ends the bytes exactly."""
    assert raw.endswith(b"\r\n\r\n")
    assert raw.count(b"\r\n\r\n") == 1  # one request, and nothing after it
    lines = raw[:-4].decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        assert name.lower() not in headers
        headers[name.lower()] = value.strip()
    return lines[0], headers


async def read_to_completion(stream: sseproto.EventStream) -> list[str]:
    """The event types up to the task's terminal one."""
    seen = []
    async for event in stream:
        seen.append(event.event)
        if event.event in ("completed", "failed", "cancelled"):
            break
    return seen


EXPECTED_TYPES = ["status"] * 3 + ["progress"] * 4 + ["completed"]


async def drain(url: str, **options: Any) -> None:
    """Read ``open_event_stream(url, **options)`` until it stops (it raises, here)."""
    async with open_event_stream(url, **options) as stream:
        async for _ in stream:
            pass  # pragma: no cover


async def test_watch_through_a_proxy_sends_only_connect_in_the_clear(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve() as srv, fake_proxy() as proxy:
        result = await sseproto.watch(
            "t-1",
            api_key=srv.token,
            base_url=srv.base_url,
            ssl_context=srv.ssl_context,
            proxy=proxy.url(f"alice:{SECRET}"),
        )
    assert result.id == "t-1"
    assert len(proxy.connections) >= 2  # the stream, then the result call
    # Every request reached the server, through the proxy's tunnels.
    assert {r.path for r in srv.requests} >= {
        "/api/v1/r/tasks/t-1/events",
        "/api/v1/r/tasks/t-1/result",
    }
    for seen in proxy.connections:
        line, headers = head_of(seen.head)
        assert line == f"CONNECT 127.0.0.1:{srv.port} HTTP/1.1"
        assert headers == {
            "host": f"127.0.0.1:{srv.port}",
            "proxy-authorization": f"Basic {TOKEN}",
        }
        assert srv.token.encode() not in seen.head
        assert b"authorization: bearer" not in seen.head.lower()
        assert seen.tunnel[:1] == b"\x16"  # a TLS handshake record: the server's TLS
        assert seen.tunnel[1:2] == b"\x03"
        assert srv.token.encode() not in seen.tunnel


async def test_connect_without_credentials_has_no_proxy_authorization(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        serve() as srv,
        fake_proxy() as proxy,
        open_event_stream(
            events_url(srv), headers=auth(srv), ssl_context=srv.ssl_context, proxy=proxy.url()
        ) as stream,
    ):
        assert await read_to_completion(stream) == EXPECTED_TYPES
    assert len(proxy.connections) == 1
    line, headers = head_of(proxy.connections[0].head)
    assert line == f"CONNECT 127.0.0.1:{srv.port} HTTP/1.1"
    assert headers == {"host": f"127.0.0.1:{srv.port}"}


@pytest.mark.parametrize(
    ("status", "reason"),
    [(407, b"Proxy Authentication Required"), (403, b"Forbidden"), (400, b"Bad Request")],
)
@pytest.mark.parametrize("credentials", [f"alice:{SECRET}", ""], ids=["credentials", "none"])
async def test_a_proxys_4xx_is_raised_after_one_connect(
    autojump_clock: trio.testing.MockClock, status: int, reason: bytes, credentials: str
) -> None:
    async with serve() as srv, fake_proxy([Refuse(status, reason)] * 5) as proxy:
        start = trio.current_time()
        with pytest.raises(ProxyError) as info:
            await drain(
                events_url(srv),
                headers=auth(srv),
                ssl_context=srv.ssl_context,
                proxy=proxy.url(credentials),
            )
        assert trio.current_time() == start  # no wait: not retried
    assert info.value.status_code == status
    assert len(proxy.connections) == 1
    assert srv.requests == []
    assert f"127.0.0.1:{proxy.port}" in str(info.value)
    shows_no_secret(info.value)


@pytest.mark.parametrize(
    "first",
    [
        Refuse(502, b"Bad Gateway"),
        Refuse(503, b"Service Unavailable"),
        Hangup(),
        Relay(informational=MAX_INFORMATIONAL + 1),
        Relay(extra=b"HELLO"),
    ],
    ids=["502", "503", "hangup", "too-many-1xx", "bytes-after-200"],
)
async def test_a_proxys_5xx_or_broken_answer_is_retried(
    autojump_clock: trio.testing.MockClock, first: Refuse | Hangup | Relay
) -> None:
    async with (
        serve() as srv,
        fake_proxy([first, first]) as proxy,
        open_event_stream(
            events_url(srv),
            headers=auth(srv),
            ssl_context=srv.ssl_context,
            proxy=proxy.url(f"alice:{SECRET}"),
        ) as stream,
    ):
        assert await read_to_completion(stream) == EXPECTED_TYPES
        assert stream.connections == 1
    assert len(proxy.connections) == 3  # two failed, the third relayed


async def test_a_proxys_502_every_time_ends_in_reconnect_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve() as srv, fake_proxy([Refuse(502, b"Bad Gateway")] * 20) as proxy:
        with pytest.raises(ReconnectError) as info:
            await drain(
                events_url(srv),
                headers=auth(srv),
                ssl_context=srv.ssl_context,
                proxy=proxy.url(f"alice:{SECRET}"),
                max_attempts=3,
            )
    assert info.value.attempts == 3
    last = info.value.last_error
    assert isinstance(last, ProxyError)
    assert last.status_code == 502
    assert len(proxy.connections) == 4
    shows_no_secret(info.value)


async def connect_through(
    proxy_url: str, srv: TestServer, *, connect_timeout: float = 10.0
) -> Connection:
    proxy = proxy_setting(proxy_url)
    assert isinstance(proxy, Proxy)
    return await Connection.connect(
        Origin("https", "127.0.0.1", srv.port),
        ssl_context=srv.ssl_context,
        connect_timeout=connect_timeout,
        proxy=proxy,
    )


async def tunnel_fails(
    proxy_url: str, srv: TestServer, *, connect_timeout: float = 10.0
) -> ConnectError:
    """The error of :func:`connect_through` (a connection made after all is closed
    at once, so that a failing test leaves no socket for the garbage collector)."""
    try:
        conn = await connect_through(proxy_url, srv, connect_timeout=connect_timeout)
    except ConnectError as exc:
        return exc
    await conn.aclose()
    pytest.fail("the connection was made")


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        (Hangup(), "closed the connection without answering"),
        (Relay(informational=MAX_INFORMATIONAL + 1), "1xx"),
        (Relay(extra=b"\x16\x03\x03 not a server hello"), "bytes of its own"),
        (Relay(extra=b"X"), "bytes of its own"),
    ],
    ids=["hangup", "too-many-1xx", "bytes-after-200", "one-byte-after-200"],
)
async def test_a_broken_answer_to_connect_is_a_proxy_error_without_status(
    autojump_clock: trio.testing.MockClock, behaviour: Refuse | Hangup | Relay, message: str
) -> None:
    async with serve() as srv, fake_proxy([behaviour]) as proxy:
        error = await tunnel_fails(proxy.url(f"alice:{SECRET}"), srv)
    assert isinstance(error, ProxyError)
    assert error.status_code is None
    assert message in str(error)
    assert f"127.0.0.1:{proxy.port}" in str(error)
    shows_no_secret(error)


async def test_a_proxy_that_hangs_up_is_a_proxy_error_without_status(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve() as srv, fake_proxy([Hangup()]) as proxy:
        error = await tunnel_fails(proxy.url(f"alice:{SECRET}"), srv)
    assert isinstance(error, ProxyError)
    assert error.status_code is None
    assert f"127.0.0.1:{proxy.port}" in str(error)
    assert len(proxy.connections) == 1
    assert srv.requests == []
    shows_no_secret(error)


async def test_a_few_1xx_before_the_200_are_fine(autojump_clock: trio.testing.MockClock) -> None:
    async with serve() as srv, fake_proxy([Relay(informational=MAX_INFORMATIONAL)]) as proxy:
        conn = await connect_through(proxy.url(), srv)
        async with conn:
            response = await conn.request(
                "GET", "/api/v1/r/tasks/t-1", auth(srv), read_timeout=10.0
            )
            assert response.status_code == 200
            assert await conn.read_body(read_timeout=10.0)
    assert len(proxy.connections) == 1


async def test_a_proxy_that_never_answers_is_a_connect_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    release = trio.Event()

    async def silent(stream: trio.SocketStream) -> None:
        async with stream:
            await release.wait()

    async with serve() as srv, trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, silent, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        start = trio.current_time()
        error = await tunnel_fails(
            f"http://alice:{SECRET}@127.0.0.1:{port}", srv, connect_timeout=5
        )
        assert isinstance(error, ConnectTimeout)
        assert trio.current_time() - start == pytest.approx(5.0)
        assert "through the proxy" in str(error)
        shows_no_secret(error)
        release.set()
        nursery.cancel_scope.cancel()


async def test_a_closed_proxy_port_is_a_connect_error_naming_the_proxy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sock, port = await closed_port()
    with sock:
        async with serve() as srv:
            error = await tunnel_fails(f"http://alice:{SECRET}@127.0.0.1:{port}", srv)
            assert not isinstance(error, (ProxyError, NameResolutionError))
            assert f"the proxy http://127.0.0.1:{port}" in str(error)
            shows_no_secret(error)
            # A refused proxy, as a refused server, is retried.
            with pytest.raises(ReconnectError) as gave_up:
                await drain(
                    events_url(srv),
                    headers=auth(srv),
                    ssl_context=srv.ssl_context,
                    proxy=f"http://alice:{SECRET}@127.0.0.1:{port}",
                    max_attempts=2,
                )
            assert gave_up.value.attempts == 2
            assert f"127.0.0.1:{port}" in str(gave_up.value.last_error)
            shows_no_secret(gave_up.value)
            assert srv.requests == []


async def test_an_unknown_proxy_host_stops_at_once(autojump_clock: trio.testing.MockClock) -> None:
    with resolving({}) as resolver:
        async with serve() as srv:
            start = trio.current_time()
            with pytest.raises(NameResolutionError) as info:
                await drain(
                    events_url(srv),
                    headers=auth(srv),
                    ssl_context=srv.ssl_context,
                    proxy=f"http://alice:{SECRET}@proxy.invalid:3128",
                )
            assert trio.current_time() == start
            assert srv.requests == []
    assert resolver.calls == {"proxy.invalid": 1}
    assert info.value.proxy is True
    assert info.value.host == "proxy.invalid"
    assert "proxy" in str(info.value)
    shows_no_secret(info.value)


async def test_watch_with_an_unknown_proxy_host_stops_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with resolving({}) as resolver:
        start = trio.current_time()
        with pytest.raises(NameResolutionError) as info:
            await sseproto.watch(
                "t-1",
                api_key="sk-x",
                base_url="https://api.example.com/api/v1/r",
                proxy=f"http://alice:{SECRET}@proxy.invalid:3128",
            )
        assert trio.current_time() == start
    assert resolver.calls == {"proxy.invalid": 1}  # never the server's name
    assert info.value.proxy is True


async def test_the_environments_proxy_carries_a_named_host_unresolved(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a proxy, only the proxy looks the server's name up."""
    with resolving({}) as resolver:
        async with serve(names=["sse.test"]) as srv, fake_proxy() as proxy:
            monkeypatch.setenv("HTTPS_PROXY", proxy.url(f"alice:{SECRET}"))
            url = f"https://sse.test:{srv.port}/api/v1/r/tasks/t-1/events"
            async with open_event_stream(
                url, headers=auth(srv), ssl_context=srv.ssl_context
            ) as stream:
                assert await read_to_completion(stream) == EXPECTED_TYPES
    assert resolver.calls == {}
    assert len(proxy.connections) == 1
    line, headers = head_of(proxy.connections[0].head)
    assert line == f"CONNECT sse.test:{srv.port} HTTP/1.1"
    assert headers["proxy-authorization"] == f"Basic {TOKEN}"


async def test_no_proxy_and_loopback_skip_the_environments_proxy(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with resolving({"sse.test": ["127.0.0.1"]}) as resolver:
        async with serve(names=["sse.test"]) as srv, fake_proxy() as proxy:
            monkeypatch.setenv("HTTPS_PROXY", proxy.url())
            monkeypatch.setenv("NO_PROXY", "example.org,.test")
            named = f"https://sse.test:{srv.port}/api/v1/r/tasks/t-1/events"
            for url in (named, events_url(srv)):  # NO_PROXY; loopback
                async with open_event_stream(
                    url, headers=auth(srv), ssl_context=srv.ssl_context
                ) as stream:
                    assert await read_to_completion(stream) == EXPECTED_TYPES
    assert proxy.connections == []
    assert resolver.calls == {"sse.test": 1}


# == 6. unknown host names, trio =========================================================

UNKNOWN = "no-such-host.test"


@pytest.mark.parametrize(
    "code",
    [socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME), socket.EAI_FAIL],
    ids=["EAI_NONAME", "EAI_NODATA", "EAI_FAIL"],
)
async def test_an_unknown_host_stops_the_stream_at_once(
    autojump_clock: trio.testing.MockClock, code: int
) -> None:
    with resolving({UNKNOWN: [code]}) as resolver:
        start = trio.current_time()
        with pytest.raises(NameResolutionError) as info:
            await drain(f"https://{UNKNOWN}/x")
        assert trio.current_time() == start
    assert resolver.calls == {UNKNOWN: 1}
    assert info.value.host == UNKNOWN
    assert info.value.proxy is False
    assert UNKNOWN in str(info.value)


async def test_watch_with_an_unknown_host_stops_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with resolving({}) as resolver:
        start = trio.current_time()
        with pytest.raises(NameResolutionError) as info:
            await sseproto.watch("t1", api_key="sk-x", base_url=f"https://{UNKNOWN}/api/v1/r")
        assert trio.current_time() == start
    assert resolver.calls == {UNKNOWN: 1}
    assert info.value.host == UNKNOWN
    assert "sk-x" not in str(info.value)


async def test_a_client_call_to_an_unknown_host(autojump_clock: trio.testing.MockClock) -> None:
    with resolving({}) as resolver:
        async with sseproto.Client(api_key="sk-x", base_url=f"https://{UNKNOWN}/api/v1/r") as c:
            with pytest.raises(NameResolutionError):
                await c.get_task("t1")
    assert resolver.calls == {UNKNOWN: 1}


async def test_a_temporary_resolver_failure_is_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with (
        resolving({UNKNOWN: [socket.EAI_AGAIN]}) as resolver,
        pytest.raises(ReconnectError) as info,
    ):
        await drain(f"https://{UNKNOWN}/x", max_attempts=2)
    assert resolver.calls == {UNKNOWN: 3}
    last = info.value.last_error
    assert isinstance(last, ConnectError)
    assert not isinstance(last, NameResolutionError)


async def test_a_temporary_resolver_failure_then_the_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with resolving({"sse.test": [socket.EAI_AGAIN, "127.0.0.1"]}) as resolver:
        async with serve(names=["sse.test"]) as srv:
            url = f"https://sse.test:{srv.port}/api/v1/r/tasks/t-1/events"
            async with open_event_stream(
                url, headers=auth(srv), ssl_context=srv.ssl_context
            ) as stream:
                assert await read_to_completion(stream) == EXPECTED_TYPES
    assert resolver.calls == {"sse.test": 2}


async def test_an_unknown_host_after_the_stream_connected_is_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A laptop waking up: the name resolved, the stream dropped, the resolver says
    "no such name" once, then knows it again: the watch resumes and completes."""
    flaky = Task(faults=[Fault("drop_between", after=2)])
    answers: list[str | int] = ["127.0.0.1", socket.EAI_NONAME, "127.0.0.1"]
    items: list[Any] = []
    with resolving({"sse.test": answers}) as resolver:
        async with serve({"t1": flaky}, names=["sse.test"]) as srv:
            result = await sseproto.watch(
                "t1",
                api_key=srv.token,
                base_url=f"https://sse.test:{srv.port}/api/v1/r",
                ssl_context=srv.ssl_context,
                on_event=items.append,
            )
            streams = [r for r in srv.requests if r.path.endswith("/events")]
    assert result.id == "t1"
    assert resolver.calls["sse.test"] >= 3  # the stream, the failed lookup, the resume
    assert len(streams) == 2
    assert streams[1].headers["last-event-id"] == "2"
    labels = [type(item).__name__ for item in items]
    assert labels == ["StatusChanged"] * 3 + ["Progress"] * 4 + ["Completed"]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: socket.gaierror(socket.EAI_NONAME, "x"), True),
        (lambda: socket.gaierror(socket.EAI_AGAIN, "x"), False),
        (lambda: OSError("plain"), False),
        (lambda: ConnectError("ours"), False),
    ],
)
def test_name_not_known_itself(make: Callable[[], BaseException], expected: bool) -> None:
    assert name_not_known(make()) is expected


def test_name_not_known_behind_causes_contexts_and_groups() -> None:
    def caused(outer: BaseException, inner: BaseException) -> BaseException:
        outer.__cause__ = inner
        return outer

    def context(outer: BaseException, inner: BaseException) -> BaseException:
        outer.__context__ = inner
        return outer

    unknown = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert name_not_known(caused(httpx.ConnectError("x"), caused(OSError("y"), unknown)))
    assert name_not_known(context(OSError("x"), unknown))
    assert name_not_known(ExceptionGroup("g", [OSError("a"), unknown]))
    assert name_not_known(
        caused(OSError("x"), ExceptionGroup("g", [ExceptionGroup("h", [unknown])]))
    )
    later = socket.gaierror(socket.EAI_AGAIN, "Temporary failure")
    assert not name_not_known(caused(OSError("x"), ExceptionGroup("g", [later])))
    # A cycle of contexts ends.
    a, b = OSError("a"), OSError("b")
    a.__context__, b.__context__ = b, a
    assert not name_not_known(a)


# == 7. the httpx drivers =================================================================


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``socket.getaddrinfo`` that does not know UNKNOWN (counted); others as usual."""
    calls: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name == UNKNOWN:
            calls.append(name)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return calls


def _httpx_run(driver: str, what: str) -> None:
    base_url = f"https://{UNKNOWN}/api/v1/r"
    if driver == "sync":
        if what == "watch":
            sync_sse.watch("t1", api_key="sk-x", base_url=base_url)
        else:
            with sync_sse.open_event_stream(f"{base_url}/tasks/t1/events") as stream:
                for _ in stream:
                    pass  # pragma: no cover
        return

    async def main() -> None:
        if what == "watch":
            await async_sse.watch("t1", api_key="sk-x", base_url=base_url)
        else:
            async with async_sse.open_event_stream(f"{base_url}/tasks/t1/events") as stream:
                async for _ in stream:
                    pass  # pragma: no cover

    asyncio.run(asyncio.wait_for(main(), 20))


@pytest.mark.parametrize("what", ["watch", "stream"])
@pytest.mark.parametrize("driver", ["asyncio", "sync"])  # uvloop resolves on its own
def test_httpx_drivers_stop_at_once_on_an_unknown_host(
    lookups: list[str], driver: str, what: str
) -> None:
    start = time.monotonic()
    with pytest.raises(NameResolutionError) as info:
        _httpx_run(driver, what)
    assert time.monotonic() - start < 2.0  # no reconnection wait (3 s), no polling
    assert lookups == [UNKNOWN]
    assert info.value.host == UNKNOWN
    assert info.value.proxy is False


def test_httpx_proxy_with_http_client_is_refused() -> None:
    url = "https://api.example.com/api/v1/r"
    proxy = f"http://alice:{SECRET}@proxy.example:3128"
    with httpx.Client() as client:
        for given in (proxy, None):
            with pytest.raises(ConfigurationError, match="proxy=") as info:
                sync_sse.Client(api_key="sk-x", base_url=url, http_client=client, proxy=given)
            shows_no_secret(info.value)
            with pytest.raises(ConfigurationError, match="proxy="):
                sync_sse.watch("t1", api_key="sk-x", base_url=url, http_client=client, proxy=given)
            with (
                pytest.raises(ConfigurationError, match="proxy="),
                sync_sse.open_event_stream(f"{url}/x", http_client=client, proxy=given),
            ):
                pass  # pragma: no cover

    async def main() -> None:
        async with httpx.AsyncClient() as client:
            for given in (proxy, None):
                with pytest.raises(ConfigurationError, match="proxy="):
                    async_sse.Client(api_key="sk-x", base_url=url, http_client=client, proxy=given)
                with pytest.raises(ConfigurationError, match="proxy="):
                    await async_sse.watch(
                        "t1", api_key="sk-x", base_url=url, http_client=client, proxy=given
                    )
                with pytest.raises(ConfigurationError, match="proxy="):
                    async with async_sse.open_event_stream(
                        f"{url}/x", http_client=client, proxy=given
                    ):
                        pass  # pragma: no cover

    asyncio.run(main())


def test_client_reprs_show_no_proxy_password() -> None:
    url = "https://api.example.com/api/v1/r"
    proxy = f"http://alice:{SECRET}@proxy.example:3128"
    trio_client = sseproto.Client(api_key="sk-x", base_url=url, proxy=proxy)
    with sync_sse.Client(api_key="sk-x", base_url=url, proxy=proxy) as sync_client:
        own = sync_client.http_client  # sseproto's own httpx client, made for the proxy
        assert own.trust_env is False
        texts = [repr(trio_client), str(trio_client), repr(sync_client), str(sync_client)]

    async def main() -> list[str]:
        async with async_sse.Client(api_key="sk-x", base_url=url, proxy=proxy) as client:
            assert client.http_client.trust_env is False
            return [repr(client), str(client)]

    texts += asyncio.run(main())
    for text in texts:
        assert SECRET not in text
        assert TOKEN not in text
        assert "sk-x" not in text


def test_own_httpx_client_goes_through_the_chosen_proxy() -> None:
    proxy = parse_proxy(f"http://alice:{SECRET}@proxy.example:3128", source="proxy=")
    options = httpx_rules.own_client_options(None, proxy)
    assert options["trust_env"] is False
    assert options["follow_redirects"] is False
    given = options["proxy"]
    assert isinstance(given, httpx.Proxy)
    assert str(given.url) == "http://proxy.example:3128"
    assert given.headers["Proxy-Authorization"] == f"Basic {TOKEN}"
    assert httpx_rules.own_client_options(None, None)["proxy"] is None
