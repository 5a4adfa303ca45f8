"""The task client's own options: a key that is a function (asked for each connection),
extra headers, and ``watch(last_event_id=)`` to resume a position saved by an earlier
process. On trio, and on the httpx drivers (asyncio and blocking) through the same
``_api.Settings``."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

import pytest

import sseproto
import sseproto.asyncio
import sseproto.sync
from sseproto.testing import Fault, Task, serve, serve_in_thread

if TYPE_CHECKING:
    import trio.testing

EVENTS_PATH = "/api/v1/r/tasks/t-1/events"


class Keys:
    """A key function that counts its calls and answers the server's token."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.token


async def test_a_key_function_is_asked_for_each_connection_and_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    task = Task(faults=[Fault("drop_between", after=2)])  # the stream reconnects once
    async with serve({"t-1": task}) as srv:
        keys = Keys(srv.token)
        result = await sseproto.watch(
            "t-1", api_key=keys, base_url=srv.base_url, ssl_context=srv.ssl_context
        )
        assert result.artifact_urls()
        streams = [r for r in srv.requests if r.path == EVENTS_PATH]
        assert len(streams) == 2
        # Every request carried the key of its own call: one call per request.
        assert keys.calls == len(srv.requests)
        assert {r.headers["authorization"] for r in srv.requests} == {f"Bearer {srv.token}"}


async def test_a_rotated_key_is_used_from_the_next_connection_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve() as srv:
        current = ["sk-expired"]
        async with sseproto.Client(
            lambda: current[0], srv.base_url, ssl_context=srv.ssl_context
        ) as client:
            with pytest.raises(sseproto.HTTPStatusError) as refused:
                await client.get_task("t-1")
            assert refused.value.status_code == 401
            current[0] = srv.token  # rotated: the same client goes on with the new key
            snapshot = await client.get_task("t-1")
        assert snapshot.id == "t-1"


@pytest.mark.parametrize("answer", ["", "  ", "sk-with space", 7, None])
async def test_a_key_function_answering_no_usable_key_is_a_configuration_error(
    answer: object,
) -> None:
    async with serve() as srv:
        client = sseproto.Client(lambda: answer, srv.base_url, ssl_context=srv.ssl_context)  # type: ignore[arg-type,return-value]
        with pytest.raises(sseproto.ConfigurationError) as caught:
            await client.get_task("t-1")
        await client.aclose()
        assert srv.requests == []  # nothing was sent
        if isinstance(answer, str) and answer.strip():
            assert answer not in str(caught.value)  # a key is never shown


async def test_extra_headers_go_with_every_call_and_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve() as srv:
        await sseproto.watch(
            "t-1",
            api_key=srv.token,
            base_url=srv.base_url,
            ssl_context=srv.ssl_context,
            headers={"X-Request-Source": "nightly-batch"},
        )
        assert srv.requests
        assert all(r.headers.get("x-request-source") == "nightly-batch" for r in srv.requests)


@pytest.mark.parametrize(
    ("name", "option"), [("Authorization", "api_key="), ("x-team-id", "team_id=")]
)
def test_extra_headers_cannot_replace_the_key_or_the_team(name: str, option: str) -> None:
    with pytest.raises(sseproto.ConfigurationError, match=option):
        sseproto.Client("sk-x", headers={name: "Bearer sk-other"})


def test_extra_headers_are_checked_before_anything_is_sent() -> None:
    with pytest.raises(sseproto.ConfigurationError, match="X-Bad"):
        sseproto.Client("sk-x", headers={"X-Bad": "a\r\nInjected: 1"})


def test_a_key_that_is_neither_a_str_nor_a_function_is_refused() -> None:
    with pytest.raises(sseproto.ConfigurationError, match="api_key must be"):
        sseproto.Client(12345)  # type: ignore[arg-type]


async def test_watch_resumes_from_a_saved_last_event_id(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve() as srv:
        seen: list[str] = []
        await sseproto.watch(
            "t-1",
            api_key=srv.token,
            base_url=srv.base_url,
            ssl_context=srv.ssl_context,
            last_event_id="3",
            on_event=lambda item: seen.append(getattr(getattr(item, "sse", None), "id", "")),
        )
        first = next(r for r in srv.requests if r.path == EVENTS_PATH)
        assert first.headers.get("last-event-id") == "3"
        assert not {"1", "2", "3"} & set(seen)  # not sent again
        assert seen  # the rest was


def test_httpx_drivers_take_the_same_options() -> None:
    with serve_in_thread() as srv:
        keys = Keys(srv.token)
        extra = {"X-Request-Source": "nightly-batch"}
        sseproto.sync.watch(
            "t-1",
            api_key=keys,
            base_url=srv.base_url,
            ssl_context=srv.ssl_context,
            headers=extra,
            last_event_id="2",
        )
        asyncio.run(
            sseproto.asyncio.watch(
                "t-2",
                api_key=keys,
                base_url=srv.base_url,
                ssl_context=srv.ssl_context,
                headers=extra,
            )
        )
        assert keys.calls == len(srv.requests)
        assert all(r.headers.get("x-request-source") == "nightly-batch" for r in srv.requests)
        first = next(r for r in srv.requests if r.path == EVENTS_PATH)
        assert first.headers.get("last-event-id") == "2"


def test_event_source_asks_a_header_function_for_each_connection() -> None:
    tokens = iter(["one", "two"])
    source = sseproto.EventSource(
        "https://example.com/events",
        headers=lambda: {"Authorization": f"Bearer {next(tokens)}"},
        rng=random.Random(0),
    )
    first = source.next_action(0.0)
    assert isinstance(first, sseproto.Connect)
    assert ("Authorization", "Bearer one") in first.headers
    assert ("Accept", "text/event-stream") in first.headers  # the defaults stay
    source.connection_closed(0.0, sseproto.ConnectError("refused"))
    wait = source.next_action(0.0)
    assert isinstance(wait, sseproto.Wait)
    second = source.next_action(wait.until)
    assert isinstance(second, sseproto.Connect)
    assert ("Authorization", "Bearer two") in second.headers


def test_a_header_function_returning_a_bad_header_fails_the_connect() -> None:
    source = sseproto.EventSource("https://example.com/events", headers=lambda: {"X-A": "b\r\n"})
    with pytest.raises(sseproto.ConfigurationError, match="X-A"):
        source.next_action(0.0)
