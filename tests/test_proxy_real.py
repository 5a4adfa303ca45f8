"""Proxies for real: pproxy (a proxy that is not ours), every driver, the command line.

The proxy runs in a process of its own (``tests/_pproxy.py``), once without and once
with Basic auth for the whole module, and resolves :data:`PROXY_ONLY_HOST` to
127.0.0.1, a name the test process cannot resolve: a watch of
``https://api.only-the-proxy.test:PORT`` can only succeed through the proxy, and,
connecting directly, must fail at once with NameResolutionError. Its log (a line per
tunnel, ``http 127.0.0.1:P -> host:port``) says what went through it.

Each scenario is a plain function of a driver (``trio``: ``sseproto``; ``asyncio`` and
``uvloop``: ``sseproto.asyncio``; ``sync``: ``sseproto.sync``) against the test server
in a thread (``serve_in_thread``, its certificate also for the proxy-only name), on
the real clock, under a deadline. The command line runs as a user runs it: a
subprocess, against ``sseproto serve --name api.only-the-proxy.test``.

Every test runs without the environment's proxy, CYBERUN_* and SSL_CERT_* settings
(those it needs are set with monkeypatch), and ends with no socket, thread or
ResourceWarning left behind.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import traceback
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import trio

import sseproto
import sseproto.asyncio
import sseproto.sync
from sseproto import (
    ConfigurationError,
    NameResolutionError,
    ProxyError,
    ServerSentEvent,
    TaskResult,
)
from sseproto.testing import Task, comfyui_timeline, serve_in_thread
from tests._leaks import (
    LIMIT,
    alarm,
    check_leaks,
    clear_environment,
    open_sockets,
    run_asyncio,
)
from tests._pproxy import PROXY_ONLY_HOST, RunningProxy, running_pproxy
from tests.cli_helpers import run_cli, serving

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from sseproto.testing import TestServer

#: Exit statuses of the command line (sseproto._cli).
EXIT_OK, EXIT_USAGE, EXIT_AUTH, EXIT_ERROR = 0, 2, 4, 5

USER, PASSWORD = "alice", "s3cret-Pa55"
#: A wrong password: it must show nowhere.
WRONG_PASSWORD = "wr0ng-Pa55-x9"
#: A proxy whose host name does not resolve, with a password that must show nowhere.
UNKNOWN_PROXY_SECRET = "pw9x-zq"
UNKNOWN_PROXY = f"http://u:{UNKNOWN_PROXY_SECRET}@no-such-proxy.invalid:3128"
TERMINAL = frozenset({"completed", "failed", "cancelled"})
#: Seconds within which a failure that is not retried must be raised.
AT_ONCE = 1.5

DRIVERS = ["trio", "asyncio", "uvloop", "sync"]


def _resolver_says_no(host: str) -> bool:
    """Whether this machine's resolver answers that ``host`` does not exist (not "try
    later", as it does without any DNS server: then nothing is decided at once)."""
    try:
        socket.getaddrinfo(host, 443)
    except socket.gaierror as exc:
        return exc.errno in {getattr(socket, "EAI_NONAME", -2), getattr(socket, "EAI_NODATA", -5)}
    return False


#: For the tests that need the resolver to say "no such name" for the proxy-only name.
needs_no_such_name = pytest.mark.skipif(
    not _resolver_says_no(PROXY_ONLY_HOST),
    reason=f"this machine's resolver does not answer 'no such name' for {PROXY_ONLY_HOST}",
)


# -- fixtures ----------------------------------------------------------------------------


def needs_pproxy() -> None:
    if find_spec("pproxy") is None:
        pytest.skip("pproxy is not installed (pip install 'sseproto[test]')")


@pytest.fixture(scope="module")
def proxy() -> Iterator[RunningProxy]:
    """pproxy without authentication."""
    needs_pproxy()
    with running_pproxy() as running:
        yield running


@pytest.fixture(scope="module")
def auth_proxy() -> Iterator[RunningProxy]:
    """pproxy that wants Basic credentials (USER, PASSWORD)."""
    needs_pproxy()
    with running_pproxy(USER, PASSWORD) as running:
        yield running


def trio_workers() -> set[threading.Thread]:
    """trio's cached worker threads: one that ran ``getaddrinfo`` for a host name (not
    an address) waits 10 s for the next job. trio's, not sseproto's: no leak."""
    return {t for t in threading.enumerate() if t.name.startswith("Trio thread ")}


@pytest.fixture(autouse=True)
def no_leaks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No socket left open, no thread left running (but trio's idle workers), no
    ResourceWarning; and none of the environment's proxy settings."""
    clear_environment(monkeypatch)
    sockets = open_sockets()
    threads = set(threading.enumerate())
    yield
    check_leaks(sockets, threads | trio_workers())


@pytest.fixture
def srv() -> Iterator[TestServer]:
    """The test server, its certificate also for PROXY_ONLY_HOST; task t-1 is quick."""
    quick = Task(steps=comfyui_timeline(2, interval=0.01), retry=50)
    with serve_in_thread({"t-1": quick}, names=[PROXY_ONLY_HOST]) as server:
        yield server


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "uvloop":
        pytest.importorskip("uvloop")
    return name


def proxied_base(srv: TestServer) -> str:
    """The server's base URL by the name only the proxy resolves."""
    return srv.base_url.replace("://127.0.0.1:", f"://{PROXY_ONLY_HOST}:")


def server_port(srv: TestServer) -> int:
    return int(srv.base_url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


# -- the drivers -------------------------------------------------------------------------


def watch_with(driver: str, task_id: str, **kwargs: Any) -> TaskResult:
    """``watch(task_id, **kwargs)`` on ``driver``, under LIMIT."""
    if driver == "trio":

        async def on_trio() -> TaskResult:
            with trio.fail_after(LIMIT):
                return await sseproto.watch(task_id, **kwargs)

        return trio.run(on_trio)
    if driver == "sync":
        with alarm(LIMIT):
            return sseproto.sync.watch(task_id, **kwargs)

    async def on_asyncio() -> TaskResult:
        return await sseproto.asyncio.watch(task_id, **kwargs)

    return run_asyncio(on_asyncio, driver)


def events_with(driver: str, url: str, **kwargs: Any) -> list[ServerSentEvent]:
    """The events of ``open_event_stream(url, **kwargs)`` on ``driver``, up to the
    first terminal one, under LIMIT."""

    def done(events: list[ServerSentEvent]) -> bool:
        return bool(events) and events[-1].event in TERMINAL

    events: list[ServerSentEvent] = []
    if driver == "trio":

        async def on_trio() -> None:
            with trio.fail_after(LIMIT):
                async with sseproto.open_event_stream(url, **kwargs) as stream:
                    async for event in stream:
                        events.append(event)
                        if done(events):
                            break

        trio.run(on_trio)
    elif driver == "sync":
        with alarm(LIMIT), sseproto.sync.open_event_stream(url, **kwargs) as stream:
            for event in stream:
                events.append(event)
                if done(events):
                    break
    else:

        async def on_asyncio() -> None:
            async with sseproto.asyncio.open_event_stream(url, **kwargs) as stream:
                async for event in stream:
                    events.append(event)
                    if done(events):
                        break

        run_asyncio(on_asyncio, driver)
    return events


def task_args(srv: TestServer, **kwargs: Any) -> dict[str, Any]:
    """watch()'s arguments for the server by the proxy-only name."""
    return {
        "api_key": srv.token,
        "base_url": proxied_base(srv),
        "ssl_context": srv.ssl_context,
        **kwargs,
    }


def check_completed(result: TaskResult) -> None:
    assert isinstance(result, TaskResult)
    assert result.id == "t-1"
    assert list(result.download_urls) == ["9.images.0"]


def exception_text(exc: BaseException) -> str:
    """Everything an exception shows: str, repr and the whole traceback, chain included."""
    return f"{exc}\n{exc!r}\n" + "".join(traceback.format_exception(exc))


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """The block's wall time, in seconds, in the list once it ends (raising or not)."""
    box: list[float] = []
    start = time.monotonic()
    try:
        yield box
    finally:
        box.append(time.monotonic() - start)


# -- through the proxy, by proxy= --------------------------------------------------------


def test_watch_through_the_proxy_reaches_a_host_only_the_proxy_can_resolve(
    driver: str, srv: TestServer, proxy: RunningProxy
) -> None:
    before = proxy.tunnels_to(PROXY_ONLY_HOST, server_port(srv))
    result = watch_with(driver, "t-1", **task_args(srv, proxy=proxy.url))
    check_completed(result)
    assert proxy.tunnels_to(PROXY_ONLY_HOST, server_port(srv)) > before  # CONNECT name:port
    # The requests reached the server through the tunnel, with its token (end to end TLS).
    assert any(r.path.endswith("/tasks/t-1/events") for r in list(srv.requests))


def test_open_event_stream_through_the_proxy_yields_the_events(
    driver: str, srv: TestServer, proxy: RunningProxy
) -> None:
    before = proxy.tunnels_to(PROXY_ONLY_HOST, server_port(srv))
    events = events_with(
        driver,
        f"{proxied_base(srv)}/tasks/t-1/events",
        headers={"Authorization": f"Bearer {srv.token}"},
        ssl_context=srv.ssl_context,
        proxy=proxy.url,
    )
    assert [e.id for e in events] == [str(i) for i in range(1, 7)]
    assert events[0].event == "status"
    assert events[-1].event == "completed"
    assert json.loads(events[-1].data)["task_id"] == "t-1"
    assert proxy.tunnels_to(PROXY_ONLY_HOST, server_port(srv)) == before + 1


@pytest.mark.parametrize("driver", ["trio", "asyncio", "sync"], indirect=True)
def test_an_explicit_proxy_applies_to_loopback_too(
    driver: str, srv: TestServer, proxy: RunningProxy
) -> None:
    before = proxy.tunnels_to("127.0.0.1", server_port(srv))
    result = watch_with(
        driver,
        "t-1",
        api_key=srv.token,
        base_url=srv.base_url,
        ssl_context=srv.ssl_context,
        proxy=proxy.url,
    )
    check_completed(result)
    assert proxy.tunnels_to("127.0.0.1", server_port(srv)) > before


# -- through the proxy, from the environment -------------------------------------------


def test_https_proxy_from_the_environment_reaches_the_proxy_only_host(
    driver: str, srv: TestServer, proxy: RunningProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    before = proxy.tunnels_to(PROXY_ONLY_HOST, server_port(srv))
    check_completed(watch_with(driver, "t-1", **task_args(srv)))  # proxy= by default
    assert proxy.tunnels_to(PROXY_ONLY_HOST, server_port(srv)) > before


def test_lower_case_https_proxy_wins_over_upper_case(
    driver: str, srv: TestServer, proxy: RunningProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read, the upper-case value would fail at once (sseproto speaks to no socks proxy).
    monkeypatch.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1")
    monkeypatch.setenv("https_proxy", proxy.url)
    before = proxy.tunnels_to(PROXY_ONLY_HOST, server_port(srv))
    check_completed(watch_with(driver, "t-1", **task_args(srv)))
    assert proxy.tunnels_to(PROXY_ONLY_HOST, server_port(srv)) > before


def test_all_proxy_from_the_environment_is_used_without_https_proxy(
    driver: str, srv: TestServer, proxy: RunningProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    before = proxy.tunnels_to(PROXY_ONLY_HOST, server_port(srv))
    check_completed(watch_with(driver, "t-1", **task_args(srv)))
    assert proxy.tunnels_to(PROXY_ONLY_HOST, server_port(srv)) > before


@pytest.mark.parametrize("driver", ["trio", "asyncio", "sync"], indirect=True)
def test_loopback_is_never_proxied_from_the_environment(
    driver: str, srv: TestServer, proxy: RunningProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    before = proxy.log()
    result = watch_with(
        driver, "t-1", api_key=srv.token, base_url=srv.base_url, ssl_context=srv.ssl_context
    )
    check_completed(result)
    assert proxy.log() == before  # not a line: no tunnel, not even a connection


@pytest.mark.parametrize("setting", ["unset", "socks5", "closed_port"])
def test_the_environment_proxy_and_no_proxy_do_not_matter_with_proxy_given(
    srv: TestServer, proxy: RunningProxy, monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    """An explicit proxy= wins over whatever HTTPS_PROXY and NO_PROXY say (trio)."""
    if setting != "unset":
        bogus = "socks5://127.0.0.1:1" if setting == "socks5" else "http://127.0.0.1:1"
        monkeypatch.setenv("HTTPS_PROXY", bogus)
        monkeypatch.setenv("NO_PROXY", PROXY_ONLY_HOST)
    before = proxy.tunnels_to(PROXY_ONLY_HOST, server_port(srv))
    check_completed(watch_with("trio", "t-1", **task_args(srv, proxy=proxy.url)))
    assert proxy.tunnels_to(PROXY_ONLY_HOST, server_port(srv)) > before


# -- past the proxy: NO_PROXY, proxy=None, and the name only the proxy knows ------------


@needs_no_such_name
@pytest.mark.parametrize(
    "no_proxy",
    [PROXY_ONLY_HOST, "only-the-proxy.test", ".only-the-proxy.test", "example.com, *.test"],
)
def test_no_proxy_bypasses_the_proxy_so_the_proxy_only_host_does_not_resolve(
    driver: str,
    srv: TestServer,
    proxy: RunningProxy,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy: str,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    before = proxy.log()
    with timed() as took, pytest.raises(NameResolutionError) as caught:
        watch_with(driver, "t-1", **task_args(srv))
    assert took[0] < AT_ONCE  # at once: not retried
    assert caught.value.host == PROXY_ONLY_HOST
    assert caught.value.proxy is False  # the server's name, not the proxy's
    assert PROXY_ONLY_HOST in str(caught.value)
    assert proxy.log() == before  # connected directly: the proxy saw nothing
    assert list(srv.requests) == []


@needs_no_such_name
def test_lower_case_no_proxy_wins_over_upper_case(
    srv: TestServer, proxy: RunningProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "example.com")
    monkeypatch.setenv("no_proxy", PROXY_ONLY_HOST)
    before = proxy.log()
    with pytest.raises(NameResolutionError):
        watch_with("trio", "t-1", **task_args(srv))
    assert proxy.log() == before


@needs_no_such_name
def test_proxy_none_ignores_https_proxy(
    driver: str, srv: TestServer, proxy: RunningProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("https_proxy", proxy.url)
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    before = proxy.log()
    with timed() as took, pytest.raises(NameResolutionError) as caught:
        watch_with(driver, "t-1", **task_args(srv, proxy=None))
    assert took[0] < AT_ONCE
    assert caught.value.host == PROXY_ONLY_HOST
    assert proxy.log() == before


@needs_no_such_name
def test_the_proxy_only_host_without_a_proxy_fails_at_once(driver: str, srv: TestServer) -> None:
    """No proxy anywhere: the name does not resolve here, a NameResolutionError before
    any retry or poll (the same watch through the proxy completes: above)."""
    with timed() as took, pytest.raises(NameResolutionError) as caught:
        watch_with(driver, "t-1", **task_args(srv))
    assert took[0] < AT_ONCE
    assert caught.value.host == PROXY_ONLY_HOST
    assert not caught.value.proxy
    assert "not known" in str(caught.value)
    assert list(srv.requests) == []


@needs_no_such_name
def test_open_event_stream_to_the_proxy_only_host_without_a_proxy_fails_at_once(
    driver: str, srv: TestServer
) -> None:
    with timed() as took, pytest.raises(NameResolutionError) as caught:
        events_with(
            driver,
            f"{proxied_base(srv)}/tasks/t-1/events",
            headers={"Authorization": f"Bearer {srv.token}"},
            ssl_context=srv.ssl_context,
            proxy=None,
        )
    assert took[0] < AT_ONCE
    assert caught.value.host == PROXY_ONLY_HOST


def check_unknown_proxy_host(exc: NameResolutionError) -> None:
    assert exc.proxy is True  # the proxy's name, not the server's
    assert exc.host == "no-such-proxy.invalid"
    assert "the proxy's host name 'no-such-proxy.invalid' is not known" in str(exc)
    assert UNKNOWN_PROXY_SECRET not in exception_text(exc)


@pytest.mark.parametrize("driver", DRIVERS, indirect=True)
def test_watch_with_a_proxy_whose_own_name_does_not_resolve_fails_at_once(
    driver: str, srv: TestServer
) -> None:
    if not _resolver_says_no("no-such-proxy.invalid"):
        pytest.skip("this machine's resolver does not answer 'no such name'")
    with timed() as took, pytest.raises(NameResolutionError) as caught:
        watch_with(driver, "t-1", **task_args(srv, proxy=UNKNOWN_PROXY))
    assert took[0] < AT_ONCE
    check_unknown_proxy_host(caught.value)


def test_open_event_stream_with_a_proxy_whose_own_name_does_not_resolve_fails_at_once(
    driver: str, srv: TestServer
) -> None:
    if not _resolver_says_no("no-such-proxy.invalid"):
        pytest.skip("this machine's resolver does not answer 'no such name'")
    with timed() as took, pytest.raises(NameResolutionError) as caught:
        events_with(
            driver,
            f"{proxied_base(srv)}/tasks/t-1/events",
            headers={"Authorization": f"Bearer {srv.token}"},
            ssl_context=srv.ssl_context,
            proxy=UNKNOWN_PROXY,
        )
    assert took[0] < AT_ONCE
    check_unknown_proxy_host(caught.value)


# -- Basic auth --------------------------------------------------------------------------


def test_the_right_credentials_open_the_tunnel(
    driver: str, srv: TestServer, auth_proxy: RunningProxy
) -> None:
    before = auth_proxy.tunnels_to(PROXY_ONLY_HOST, server_port(srv))
    check_completed(watch_with(driver, "t-1", **task_args(srv, proxy=auth_proxy.url)))
    assert auth_proxy.tunnels_to(PROXY_ONLY_HOST, server_port(srv)) > before


def test_the_right_credentials_from_the_environment_open_the_tunnel(
    driver: str, srv: TestServer, auth_proxy: RunningProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", auth_proxy.url)
    before = auth_proxy.tunnels_to(PROXY_ONLY_HOST, server_port(srv))
    check_completed(watch_with(driver, "t-1", **task_args(srv)))
    assert auth_proxy.tunnels_to(PROXY_ONLY_HOST, server_port(srv)) > before


def refusals(proxy: RunningProxy, *, at_least: int = 0) -> int:
    """The requests pproxy refused for their credentials so far (its 407s). pproxy logs
    a refusal after it sent the 407, so the client can have it first: with
    ``at_least``, wait (2 s at most) for the log to reach that count."""
    deadline = time.monotonic() + 2.0
    while True:
        count = proxy.log().count("Unauthorized HTTP from")
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(0.01)


def test_a_wrong_password_is_a_407_raised_at_once_and_never_shown(
    driver: str, srv: TestServer, auth_proxy: RunningProxy
) -> None:
    before = refusals(auth_proxy)
    with timed() as took, pytest.raises(ProxyError) as caught:
        watch_with(driver, "t-1", **task_args(srv, proxy=auth_proxy.url_with(USER, WRONG_PASSWORD)))
    assert took[0] < AT_ONCE
    assert caught.value.status_code == 407
    # Asked once: not retried, no polling.
    assert refusals(auth_proxy, at_least=before + 1) == before + 1
    text = exception_text(caught.value)
    assert WRONG_PASSWORD not in text
    assert PASSWORD not in text
    assert list(srv.requests) == []


def test_a_wrong_password_from_the_environment_is_never_shown(
    driver: str, srv: TestServer, auth_proxy: RunningProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", auth_proxy.url_with(USER, WRONG_PASSWORD))
    with pytest.raises(ProxyError) as caught:
        watch_with(driver, "t-1", **task_args(srv))
    assert caught.value.status_code == 407
    assert WRONG_PASSWORD not in exception_text(caught.value)


@pytest.mark.parametrize("driver", DRIVERS, indirect=True)
@pytest.mark.parametrize("credentials", ["none", "wrong"])
def test_watch_407_says_what_to_do_about_the_credentials(
    driver: str, srv: TestServer, auth_proxy: RunningProxy, credentials: str
) -> None:
    url = auth_proxy.bare_url if credentials == "none" else auth_proxy.url_with(USER, "nope")
    with pytest.raises(ProxyError) as caught:
        watch_with(driver, "t-1", **task_args(srv, proxy=url))
    message = str(caught.value)
    assert caught.value.status_code == 407
    assert f"127.0.0.1:{auth_proxy.port}" in message  # which proxy
    if credentials == "none":
        assert "it wants credentials" in message
        assert "http://user:password@host:port" in message
    else:
        assert "check the user and password" in message


def test_no_credentials_is_a_407_saying_the_proxy_wants_them(
    driver: str, srv: TestServer, auth_proxy: RunningProxy
) -> None:
    """open_event_stream (every driver's own client knows its proxy)."""
    before = refusals(auth_proxy)
    with timed() as took, pytest.raises(ProxyError) as caught:
        events_with(
            driver,
            f"{proxied_base(srv)}/tasks/t-1/events",
            headers={"Authorization": f"Bearer {srv.token}"},
            ssl_context=srv.ssl_context,
            proxy=auth_proxy.bare_url,
        )
    assert took[0] < AT_ONCE
    assert caught.value.status_code == 407
    assert "wants credentials" in str(caught.value)
    assert f"127.0.0.1:{auth_proxy.port}" in str(caught.value)
    assert refusals(auth_proxy, at_least=before + 1) == before + 1


def test_client_calls_through_the_proxy_with_credentials(
    driver: str, srv: TestServer, auth_proxy: RunningProxy
) -> None:
    """Client's JSON calls (run_workflow, get_task) go through the tunnel too; a 407
    there is a ProxyError that names the proxy and the credentials."""
    args = task_args(srv, proxy=auth_proxy.url)
    wrong = task_args(srv, proxy=auth_proxy.url_with(USER, WRONG_PASSWORD))
    errors: list[ProxyError] = []
    if driver == "sync":
        with alarm(LIMIT):
            with sseproto.sync.Client(**args) as client:
                task_id = client.run_workflow("my-flow", {"seed": 7})
                assert client.get_task(task_id).id == task_id
            with sseproto.sync.Client(**wrong) as client:
                try:
                    client.get_task("t-1")
                except ProxyError as exc:
                    errors.append(exc)
    else:
        module: Any = sseproto if driver == "trio" else sseproto.asyncio

        async def main() -> None:
            async with module.Client(**args) as client:
                task_id = await client.run_workflow("my-flow", {"seed": 7})
                assert (await client.get_task(task_id)).id == task_id
            async with module.Client(**wrong) as client:
                try:
                    await client.get_task("t-1")
                except ProxyError as exc:
                    errors.append(exc)

        if driver == "trio":
            trio.run(main)
        else:
            run_asyncio(main, driver)
    assert len(errors) == 1
    assert errors[0].status_code == 407
    assert "check the user and password" in str(errors[0])
    assert WRONG_PASSWORD not in exception_text(errors[0])


def transfer_with(driver: str, tmp_path: Path, **args: Any) -> tuple[str, list[Path]]:
    """On ``driver``: upload a file, then download t-1's outputs into ``tmp_path``."""
    (tmp_path / "in.txt").write_bytes(b"input")
    folder = tmp_path / "out"
    if driver == "sync":
        with alarm(LIMIT), sseproto.sync.Client(**args) as client:
            return client.upload(tmp_path / "in.txt"), client.download("t-1", folder)
    module: Any = sseproto if driver == "trio" else sseproto.asyncio

    async def main() -> tuple[str, list[Path]]:
        async with module.Client(**args) as client:
            key = await client.upload(tmp_path / "in.txt")
            return key, await client.download("t-1", folder)

    if driver == "trio":

        async def on_trio() -> tuple[str, list[Path]]:
            with trio.fail_after(LIMIT):
                return await main()

        return trio.run(on_trio)
    return run_asyncio(main, driver)


def test_storage_links_take_their_own_hosts_route(
    driver: str,
    srv: TestServer,
    proxy: RunningProxy,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The API is reached through the proxy (a name only it resolves); the presigned
    links name 127.0.0.1, which the environment's proxy never takes: the PUT and the
    GET go there directly, on every driver."""
    watch_with(driver, "t-1", **task_args(srv, proxy=None, base_url=srv.base_url))
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    api_before = proxy.tunnels_to(PROXY_ONLY_HOST, server_port(srv))
    storage_before = proxy.tunnels_to("127.0.0.1", server_port(srv))
    key, paths = transfer_with(driver, tmp_path, **task_args(srv))
    assert srv.uploads[key] == b"input"
    assert [p.name for p in paths] == ["ComfyUI_00001_.png"]
    assert proxy.tunnels_to(PROXY_ONLY_HOST, server_port(srv)) > api_before
    assert proxy.tunnels_to("127.0.0.1", server_port(srv)) == storage_before


def test_storage_links_go_through_a_proxy_given_for_everything(
    driver: str, srv: TestServer, proxy: RunningProxy, tmp_path: Path
) -> None:
    watch_with(driver, "t-1", **task_args(srv, proxy=None, base_url=srv.base_url))
    before = proxy.tunnels_to("127.0.0.1", server_port(srv))
    key, _ = transfer_with(driver, tmp_path, **task_args(srv, proxy=proxy.url))
    assert srv.uploads[key] == b"input"
    assert proxy.tunnels_to("127.0.0.1", server_port(srv)) > before


@pytest.mark.parametrize("module_name", ["sseproto", "sseproto.asyncio", "sseproto.sync"])
def test_a_socks_proxy_is_refused_before_anything_is_sent(module_name: str) -> None:
    module: Any = {
        "sseproto": sseproto,
        "sseproto.asyncio": sseproto.asyncio,
        "sseproto.sync": sseproto.sync,
    }[module_name]
    socks = UNKNOWN_PROXY.replace("http://", "socks5://")
    with pytest.raises(ConfigurationError) as caught:
        module.Client(api_key="k", base_url="https://x.example/api", proxy=socks)
    assert "socks5://" in str(caught.value)
    assert UNKNOWN_PROXY_SECRET not in exception_text(caught.value)


# -- the command line --------------------------------------------------------------------

#: One task per command-line run (a task's timeline runs once), a hundredth apart.
CLI_TASKS = ["c-proxy", "c-env", "c-tail", "c-auth", "c-noproxy", "c-wrong"]


@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, str]]:
    """`sseproto serve --name api.only-the-proxy.test`, its settings; the base URL by
    the proxy-only name under "proxied"."""
    tasks = [arg for task_id in CLI_TASKS for arg in ("--task", f"{task_id}=comfyui")]
    with serving("--name", PROXY_ONLY_HOST, "--interval", "0.01", *tasks) as settings:
        settings["proxied"] = settings["base URL"].replace(
            "://127.0.0.1:", f"://{PROXY_ONLY_HOST}:"
        )
        yield settings


def cli_env(served: dict[str, str], **more: str) -> dict[str, str]:
    """The key and the CA of `sseproto serve` (the base URL is given by --base-url)."""
    return {"CYBERUN_API_KEY": served["token"], "SSL_CERT_FILE": served["CA file"], **more}


def test_cli_watch_through_proxy_option(served: dict[str, str], proxy: RunningProxy) -> None:
    port = int(served["proxied"].split(":")[2].split("/")[0])
    before = proxy.tunnels_to(PROXY_ONLY_HOST, port)
    done = run_cli(
        "watch",
        "c-proxy",
        "--base-url",
        served["proxied"],
        "--proxy",
        proxy.bare_url,
        env=cli_env(served),
    )
    assert done.returncode == EXIT_OK, done.stderr.decode()
    assert urlsplit(done.stdout.decode().strip()).path.endswith("/ComfyUI_00001_.png")
    assert proxy.tunnels_to(PROXY_ONLY_HOST, port) > before


def test_cli_watch_through_https_proxy_from_the_environment(
    served: dict[str, str], proxy: RunningProxy
) -> None:
    port = int(served["proxied"].split(":")[2].split("/")[0])
    before = proxy.tunnels_to(PROXY_ONLY_HOST, port)
    done = run_cli(
        "watch",
        "c-env",
        "--base-url",
        served["proxied"],
        "--json",
        env=cli_env(served, HTTPS_PROXY=proxy.bare_url),
    )
    assert done.returncode == EXIT_OK, done.stderr.decode()
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert lines[-1]["type"] == "TaskResult"
    assert proxy.tunnels_to(PROXY_ONLY_HOST, port) > before


def test_cli_tail_through_the_proxy_prints_n_json_lines(
    served: dict[str, str], auth_proxy: RunningProxy
) -> None:
    url = f"{served['proxied']}/tasks/c-tail/events"
    done = run_cli(
        "tail",
        url,
        "-H",
        f"Authorization: Bearer {served['token']}",
        "--proxy",
        auth_proxy.url,
        "-n",
        "3",
        env={"SSL_CERT_FILE": served["CA file"]},
    )
    assert done.returncode == EXIT_OK, done.stderr.decode()
    events = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [e["id"] for e in events] == ["1", "2", "3"]
    assert events[0]["event"] == "status"


def test_cli_watch_with_proxy_credentials(served: dict[str, str], auth_proxy: RunningProxy) -> None:
    done = run_cli(
        "watch",
        "c-auth",
        "--base-url",
        served["proxied"],
        "--proxy",
        auth_proxy.url,
        env=cli_env(served),
    )
    assert done.returncode == EXIT_OK, done.stderr.decode()
    assert PASSWORD.encode() not in done.stderr + done.stdout


@needs_no_such_name
def test_cli_no_proxy_connects_directly_and_says_which_setting_to_check(
    served: dict[str, str], proxy: RunningProxy
) -> None:
    before = proxy.log()
    start = time.monotonic()
    done = run_cli(
        "watch",
        "c-noproxy",
        "--base-url",
        served["proxied"],
        "--no-proxy",
        env=cli_env(served, HTTPS_PROXY=proxy.bare_url),
    )
    assert time.monotonic() - start < 10
    assert done.returncode == EXIT_ERROR, done.stderr.decode()
    err = done.stderr.decode()
    last = err.splitlines()[-1]
    assert last.startswith("sseproto: ")
    assert PROXY_ONLY_HOST in last
    assert last.endswith("check --base-url or $CYBERUN_BASE_URL")
    assert "Traceback" not in err
    assert proxy.log() == before


@pytest.mark.parametrize("where", ["option", "environment"])
def test_cli_wrong_proxy_password_exits_4_and_never_shows_it(
    served: dict[str, str], auth_proxy: RunningProxy, where: str
) -> None:
    wrong = auth_proxy.url_with(USER, WRONG_PASSWORD)
    option = ["--proxy", wrong] if where == "option" else []
    env = cli_env(served) if where == "option" else cli_env(served, HTTPS_PROXY=wrong)
    start = time.monotonic()
    done = run_cli("watch", "c-wrong", "--base-url", served["proxied"], *option, env=env)
    assert time.monotonic() - start < 10
    assert done.returncode == EXIT_AUTH, done.stderr.decode()
    err = done.stderr.decode()
    assert "407" in err
    assert WRONG_PASSWORD not in err + done.stdout.decode()
    assert "Traceback" not in err


def test_cli_socks_proxy_is_a_usage_error() -> None:
    done = run_cli(
        "watch",
        "t-1",
        "--base-url",
        "https://api.example.com/api/v1/r",
        "--proxy",
        "socks5://bob:hunter2@127.0.0.1:1080",
        env={"CYBERUN_API_KEY": "sk-x"},
    )
    assert done.returncode == EXIT_USAGE
    err = done.stderr.decode()
    assert "--proxy" in err
    assert "socks5://" in err
    assert "hunter2" not in err
    assert "Traceback" not in err


def test_cli_proxy_and_no_proxy_together_are_a_usage_error() -> None:
    done = run_cli("watch", "t-1", "--proxy", "http://127.0.0.1:1", "--no-proxy")
    assert done.returncode == EXIT_USAGE
    assert b"not allowed with" in done.stderr


def test_cli_closed_port_is_retried_and_each_failure_said() -> None:
    start = time.monotonic()
    done = run_cli(
        "watch",
        "t-1",
        "--base-url",
        "https://127.0.0.1:1/api/v1/r",
        "--timeout",
        "4",
        env={"CYBERUN_API_KEY": "sk-x"},
    )
    took = time.monotonic() - start
    assert done.returncode == EXIT_ERROR
    err = done.stderr.decode()
    assert "could not connect to https://127.0.0.1:1: Connection refused; trying again" in err
    assert took >= 4  # retried until --timeout, not given up at once
    assert err.splitlines()[-1] == "sseproto: gave up after --timeout 4.0 s"


def test_cli_unknown_host_exits_5_at_once_naming_the_base_url_setting() -> None:
    if not _resolver_says_no("no-such-host.invalid"):
        pytest.skip("this machine's resolver does not answer 'no such name'")
    start = time.monotonic()
    done = run_cli(
        "watch",
        "t-1",
        "--base-url",
        "https://no-such-host.invalid/api/v1/r",
        env={"CYBERUN_API_KEY": "sk-x"},
    )
    assert time.monotonic() - start < 10
    assert done.returncode == EXIT_ERROR
    err = done.stderr.decode()
    assert err.count("\n") == 1  # one line, no retries said
    assert err.startswith("sseproto: ")
    assert "no-such-host.invalid" in err
    assert err.rstrip("\n").endswith("check --base-url or $CYBERUN_BASE_URL")


def test_cli_unknown_proxy_host_names_the_proxy_setting() -> None:
    if not _resolver_says_no("no-such-proxy.invalid"):
        pytest.skip("this machine's resolver does not answer 'no such name'")
    start = time.monotonic()
    done = run_cli(
        "watch",
        "t-1",
        "--base-url",
        "https://api.example.com/api/v1/r",
        env={"CYBERUN_API_KEY": "sk-x", "HTTPS_PROXY": UNKNOWN_PROXY},
    )
    assert time.monotonic() - start < 10
    assert done.returncode == EXIT_ERROR
    err = done.stderr.decode()
    assert "no-such-proxy.invalid" in err
    assert "check --proxy or $HTTPS_PROXY" in err
    assert UNKNOWN_PROXY_SECRET not in err
