"""``open_event_stream`` end to end: real TLS on loopback against ``sseproto.testing``.

Every scripted event must arrive exactly once, in order, at the trio time the
reconnect policy says (the contract is the docstrings of ``sseproto._stream`` and
``sseproto._eventsource``, with the constants of ``sseproto._rules``): a clean stream,
a reconnect after the server closes (3 s, or its ``retry:``), each fault of the test
server (drops, stalls, error events, HTTP statuses, replays, line ends), the backoff
with full jitter and its give-up, connect errors, structured concurrency, and the
secrecy of the token.

Every test runs on trio's ``MockClock`` (autojump): timings are exact and cost no real
time. A few edge cases need a server that misbehaves in ways the test server does not
script; the plain-HTTP loopback servers of ``tests/_servers.py`` play those.
"""

from __future__ import annotations

import gc
import itertools
import json
import random
import traceback
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

import sseproto
from sseproto import (
    ConnectError,
    ContentTypeError,
    EventStream,
    HTTPStatusError,
    ReadTimeout,
    ReconnectError,
    RemoteProtocolError,
    ServerSentEvent,
    open_event_stream,
)
from sseproto._rules import DEFAULT_RETRY
from sseproto.testing import (
    Fault,
    RecordedRequest,
    Task,
    TestServer,
    completed,
    serve,
    status,
)
from tests._servers import (
    ERROR_MESSAGE,
    ONE_EVENT,
    STEPS,
    Net,
    closed_port,
    plain_server,
    read_head,
    serving,
    tracked_connections,
    wait_for_eof,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

N = len(STEPS)
OFFSETS = [float(n) for n in range(N)]

#: A token that must never show up in a repr or an exception.
SECRET = "sk-secret-5e1f0a9c3b7d4e2f"

Arrival = tuple[ServerSentEvent, float]
Item = tuple[str, str, dict[str, Any]]


# -- helpers -------------------------------------------------------------------------


@pytest.fixture
def net(monkeypatch: pytest.MonkeyPatch) -> Iterator[Net]:
    yield from tracked_connections(monkeypatch)


def script(**options: Any) -> Task:
    """A task with the six steps above and the given faults and stream options."""
    return Task(steps=STEPS, **options)


def events_url(server: TestServer, task_id: str = "t-1") -> str:
    return f"{server.base_url}/tasks/{task_id}/events"


@asynccontextmanager
async def open_stream(
    server: TestServer, task_id: str = "t-1", *, token: str | None = None, **options: Any
) -> AsyncIterator[EventStream]:
    """``open_event_stream`` on the task's events, trusting the server, with its token."""
    options.setdefault("ssl_context", server.ssl_context)
    headers = {"Authorization": f"Bearer {server.token if token is None else token}"}
    headers.update(options.pop("headers", {}))
    async with open_event_stream(events_url(server, task_id), headers=headers, **options) as s:
        yield s


async def take(stream: EventStream, n: int, *, within: float = 300.0) -> list[Arrival]:
    """Up to ``n`` events with the trio time each arrived; fewer if the stream ends or
    ``within`` mock seconds pass (so a test that would hang fails instead)."""
    got: list[Arrival] = []
    with trio.move_on_after(within):
        async for event in stream:
            got.append((event, trio.current_time()))
            if len(got) == n:
                break
    return got


async def pull(stream: EventStream, *, within: float = 300.0) -> ServerSentEvent:
    """The next event, or what the stream raises (TooSlowError rather than a hang)."""
    with trio.fail_after(within):
        return await stream.__anext__()


def items(got: list[Arrival]) -> list[Item]:
    """(type, id, JSON data without its timestamp) of each event."""
    out: list[Item] = []
    for event, _ in got:
        payload = json.loads(event.data)
        payload.pop("timestamp", None)
        payload.pop("completed_at", None)
        out.append((event.event, event.id, payload))
    return out


def expected(first: int = 1, last: int = N, task_id: str = "t-1") -> list[Item]:
    """The scripted events ``first``..``last`` (1-based ids), as ``items`` shows them."""
    return [
        (step.event, str(n), {"task_id": task_id, **step.data})
        for n, step in enumerate(STEPS[first - 1 : last], first)
    ]


def error_item(id: str) -> Item:
    """The error event of error_then_close: no id line, so it carries the last id."""
    return ("error", id, ERROR_MESSAGE)


def times(got: list[Arrival]) -> list[float]:
    return [at for _, at in got]


def event_requests(server: TestServer, task_id: str = "t-1") -> list[RecordedRequest]:
    path = f"/api/v1/r/tasks/{task_id}/events"
    return [r for r in server.requests if r.path == path]


def resume_ids(requests: list[RecordedRequest]) -> list[str | None]:
    return [r.headers.get("last-event-id") for r in requests]


def gaps(requests: list[RecordedRequest]) -> list[float]:
    """The time between one request and the next."""
    return [b.time - a.time for a, b in itertools.pairwise(requests)]


def live_tasks() -> set[trio.lowlevel.Task]:
    """Every task in the run's tree."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    found: set[trio.lowlevel.Task] = set()
    pending = [root]
    while pending:
        task = pending.pop()
        found.add(task)
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return found


def chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and a ReconnectError's last error."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        if isinstance(current, ReconnectError):
            pending.append(current.last_error)


class Ceiling(random.Random):
    """Jitter that always draws the top of its range: each delay is its cap."""

    def random(self) -> float:
        return 1.0 - 2.0**-53


class Floor(random.Random):
    """Jitter that always draws the bottom of its range: 0 (full jitter starts at 0)."""

    def random(self) -> float:
        return 0.0


# -- a clean stream ------------------------------------------------------------------


async def test_clean_stream_delivers_every_event_in_order_on_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve({"t-1": script()}) as server, open_stream(server) as stream:
        got = await take(stream, N)
        assert stream.last_event_id == str(N)
        assert stream.connections == 1
    requests = event_requests(server)
    assert items(got) == expected()
    assert [event.id for event, _ in got] == [str(n) for n in range(1, N + 1)]
    start = requests[0].time
    assert times(got) == pytest.approx([start + at for at in OFFSETS])
    assert len(requests) == 1


async def test_request_headers(autojump_clock: trio.testing.MockClock) -> None:
    task = script(faults=[Fault("drop_between", after=2)])
    async with (
        serve({"t-1": task}) as server,
        open_stream(server, headers={"X-Team-ID": "team-1"}) as stream,
    ):
        await take(stream, N)
    first, second = event_requests(server)
    for request in (first, second):  # every attempt sends them all
        assert request.method == "GET"
        assert request.headers["accept"] == "text/event-stream"
        assert request.headers["cache-control"] == "no-cache"
        assert request.headers["user-agent"].startswith("sseproto/")
        assert request.headers["authorization"] == f"Bearer {server.token}"
        assert request.headers["x-team-id"] == "team-1"
        assert request.headers["host"] == f"127.0.0.1:{server.port}"
    assert "last-event-id" not in first.headers
    assert second.headers["last-event-id"] == "2"


async def test_last_event_id_argument_resumes(autojump_clock: trio.testing.MockClock) -> None:
    async with (
        serve({"t-1": script()}) as server,
        open_stream(server, last_event_id="3") as stream,
    ):
        got = await take(stream, N - 3)
    assert resume_ids(event_requests(server)) == ["3"]
    assert items(got) == expected(4)


# -- reconnecting after the server closes --------------------------------------------


@pytest.mark.parametrize(
    ("retry", "delay"),
    [(None, DEFAULT_RETRY), (1500, 1.5), (10_000, 10.0)],
    ids=["default_3s", "retry_1500", "retry_10000"],
)
async def test_reconnects_after_the_server_closes(
    autojump_clock: trio.testing.MockClock, retry: int | None, delay: float
) -> None:
    async with serve({"t-1": script(retry=retry)}) as server, open_stream(server) as stream:
        got = await take(stream, N)
        end = trio.current_time()  # the server closes right after the terminal event
        more = await take(stream, 1, within=3.5 * delay)  # three reconnects, nothing new
        assert stream.retry == retry
    requests = event_requests(server)
    assert items(got) == expected()
    assert more == []
    # The EventSource model: a normal end is followed by a reconnect after the
    # reconnection time; an empty answer waits that time again (no backoff).
    assert resume_ids(requests) == [None, "6", "6", "6"]
    assert [r.time - end for r in requests[1:]] == pytest.approx([delay, 2 * delay, 3 * delay])


async def test_empty_reconnections_count_as_failed_attempts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # After the terminal event every answer is an empty stream: each one is a failed
    # reconnection attempt, so the stream gives up after max_attempts of them.
    async with (
        serve({"t-1": script()}) as server,
        open_stream(server, max_attempts=2) as stream,
    ):
        got = await take(stream, N)
        end = trio.current_time()
        with pytest.raises(ReconnectError) as info:
            await pull(stream)
        gave_up = trio.current_time()
    assert items(got) == expected()
    assert info.value.attempts == 2
    assert isinstance(info.value.last_error, RemoteProtocolError)
    requests = event_requests(server)
    assert [r.time - end for r in requests[1:]] == pytest.approx([3.0, 6.0])
    assert gave_up - end == pytest.approx(6.0)


async def test_reconnect_after_can_stop_after_an_error_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[ServerSentEvent | None] = []

    def reconnect_after(last: ServerSentEvent | None) -> bool:
        seen.append(last)
        return last is None or last.event != "error"

    task = script(faults=[Fault("drop_between", after=1), Fault("error_then_close", after=1)])
    async with (
        serve({"t-1": task}) as server,
        open_stream(server, reconnect_after=reconnect_after) as stream,
    ):
        got = [(event, trio.current_time()) async for event in stream]
    assert items(got) == [*expected(1, 2), error_item("2")]
    assert seen == [got[-1][0]]  # asked once: a drop is no clean end
    assert len(event_requests(server)) == 2


async def test_reconnect_after_is_asked_about_an_empty_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Its documented contract: given the last event of the connection that ended
    # cleanly, None if that connection sent none.
    seen: list[str | None] = []

    def reconnect_after(last: ServerSentEvent | None) -> bool:
        seen.append(None if last is None else last.event)
        return last is not None

    async with (
        serve({"t-1": script()}) as server,
        open_stream(server, reconnect_after=reconnect_after) as stream,
    ):
        got = await take(stream, N + 1, within=60.0)
    assert items(got) == expected()
    assert seen == ["completed", None]
    assert len(event_requests(server)) == 2


# -- faults --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "dropped_at"),
    [("drop_between", 1.0), ("drop_mid_event", 2.0)],  # right after event 2 / during event 3
)
async def test_dropped_connection_resumes_without_loss(
    autojump_clock: trio.testing.MockClock, kind: str, dropped_at: float
) -> None:
    task = script(faults=[Fault(kind, after=2)])  # type: ignore[arg-type]
    async with serve({"t-1": task}) as server, open_stream(server) as stream:
        got = await take(stream, N)
        more = await take(stream, 1, within=1.0)
    requests = event_requests(server)
    start = requests[0].time
    resumed = start + dropped_at + DEFAULT_RETRY
    # drop_mid_event: half of event 3 (its id line included) was received and discarded.
    assert items(got) == expected()
    assert more == []
    assert resume_ids(requests) == [None, "2"]
    assert requests[1].time == pytest.approx(resumed)
    arrivals = [start + at if n < 2 else max(start + at, resumed) for n, at in enumerate(OFFSETS)]
    assert times(got) == pytest.approx(arrivals)


async def test_stall_reconnects_after_read_timeout(autojump_clock: trio.testing.MockClock) -> None:
    task = script(faults=[Fault("stall", after=2)])
    async with serve({"t-1": task}) as server, open_stream(server, read_timeout=5.0) as stream:
        got = await take(stream, N)
    requests = event_requests(server)
    start = requests[0].time
    assert items(got) == expected()
    assert resume_ids(requests) == [None, "2"]
    # The last byte at 1 s, presumed dead at 6 s, the reconnect 3 s later.
    assert requests[1].time == pytest.approx(start + 1.0 + 5.0 + DEFAULT_RETRY)


@pytest.mark.parametrize("heartbeat", [2.0, None], ids=["heartbeat", "no_heartbeat"])
async def test_heartbeats_keep_a_quiet_stream_alive(
    autojump_clock: trio.testing.MockClock, heartbeat: float | None
) -> None:
    steps = [status("pending"), status("running", delay=10.0), completed(None, delay=10.0)]
    task = Task(steps=steps, heartbeat=heartbeat)
    async with serve({"t-1": task}) as server, open_stream(server, read_timeout=5.0) as stream:
        got = await take(stream, 3)
    requests = event_requests(server)
    start = requests[0].time
    assert [(e.event, e.id) for e, _ in got] == [
        ("status", "1"),
        ("status", "2"),
        ("completed", "3"),
    ]
    assert times(got) == pytest.approx([start, start + 10.0, start + 20.0])
    if heartbeat is not None:
        assert len(requests) == 1  # comments count as bytes: never idle
    else:  # idle at 5 s and at 15 s: reconnects at 8 s and 18 s
        assert [r.time - start for r in requests] == pytest.approx([0.0, 8.0, 18.0])
        assert resume_ids(requests) == [None, "1", "2"]


async def test_error_event_then_close(autojump_clock: trio.testing.MockClock) -> None:
    task = script(faults=[Fault("error_then_close", after=2)])
    async with serve({"t-1": task}) as server, open_stream(server) as stream:
        got = await take(stream, N + 1)
    requests = event_requests(server)
    assert items(got) == [*expected(1, 2), error_item("2"), *expected(3)]
    assert resume_ids(requests) == [None, "2"]
    assert requests[1].time == pytest.approx(requests[0].time + 1.0 + DEFAULT_RETRY)


async def test_error_event_first_after_a_resume_is_delivered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The resumed stream starts with an event that has no id line: it carries the id
    # resumed from, but it is new, not a replay, and must not be dropped.
    task = script(faults=[Fault("drop_between", after=2), Fault("error_then_close", after=0)])
    async with serve({"t-1": task}) as server, open_stream(server) as stream:
        got = await take(stream, N + 1, within=60.0)
    assert items(got) == [*expected(1, 2), error_item("2"), *expected(3)]
    assert resume_ids(event_requests(server))[:3] == [None, "2", "2"]


@pytest.mark.parametrize(
    ("code", "retry_after", "delay"),
    [(503, 10.0, 10.0), (429, 7.0, 7.0), (503, 1.0, DEFAULT_RETRY), (503, None, DEFAULT_RETRY)],
    ids=["503_after_10", "429_after_7", "503_after_1", "503_no_retry_after"],
)
async def test_retry_after_is_honoured(
    autojump_clock: trio.testing.MockClock, code: int, retry_after: float | None, delay: float
) -> None:
    task = script(faults=[Fault("status", code=code, retry_after=retry_after)])
    async with serve({"t-1": task}) as server, open_stream(server) as stream:
        got = await take(stream, N)
    requests = event_requests(server)
    assert items(got) == expected()
    assert gaps(requests) == pytest.approx([delay])  # at least Retry-After
    assert resume_ids(requests) == [None, None]


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504])
async def test_retryable_statuses_are_retried(
    autojump_clock: trio.testing.MockClock, code: int
) -> None:
    task = script(faults=[Fault("status", code=code)] * 2)
    async with serve({"t-1": task}) as server, open_stream(server, rng=Ceiling()) as stream:
        got = await take(stream, N)
    assert items(got) == expected()
    assert gaps(event_requests(server)) == pytest.approx([DEFAULT_RETRY, 2 * DEFAULT_RETRY])


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410])
async def test_other_statuses_fail_at_once(
    autojump_clock: trio.testing.MockClock, code: int
) -> None:
    task = script(faults=[Fault("status", code=code, retry_after=1.0)])
    async with serve({"t-1": task}) as server, open_stream(server) as stream:
        start = trio.current_time()
        with pytest.raises(HTTPStatusError) as info:
            await take(stream, 1)
        failed_at = trio.current_time()
        with pytest.raises((StopAsyncIteration, HTTPStatusError)):
            await pull(stream)  # the stream is over: no retry
        await trio.sleep(60.0)
    error = info.value
    assert type(error) is HTTPStatusError
    assert error.status_code == code
    body = {"error": f"simulated HTTP {code}"} | ({"feature": "task_events"} if code == 403 else {})
    assert json.loads(error.body) == body
    assert error.headers["content-type"] == "application/json"
    assert error.retry_after == 1.0
    assert str(code) in str(error)
    assert failed_at == start
    assert len(event_requests(server)) == 1


async def test_wrong_token_fails_at_once(autojump_clock: trio.testing.MockClock) -> None:
    async with serve() as server, open_stream(server, token="sk-wrong") as stream:
        with pytest.raises(HTTPStatusError) as info:
            await take(stream, 1)
    assert info.value.status_code == 401
    assert json.loads(info.value.body) == {"error": "invalid or missing token"}
    assert len(event_requests(server)) == 1


async def test_no_content_ends_the_stream(autojump_clock: trio.testing.MockClock) -> None:
    task = script(faults=[Fault("no_content")])
    async with serve({"t-1": task}) as server, open_stream(server) as stream:
        got = await take(stream, 1)
        with pytest.raises(StopAsyncIteration):
            await pull(stream)
        await trio.sleep(60.0)
    assert got == []
    assert len(event_requests(server)) == 1


async def test_no_content_after_a_drop_ends_the_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    task = script(faults=[Fault("drop_between", after=2), Fault("no_content")])
    async with serve({"t-1": task}) as server, open_stream(server) as stream:
        got = [event async for event in stream]
        ended = trio.current_time()
    requests = event_requests(server)
    assert [event.id for event in got] == ["1", "2"]
    assert resume_ids(requests) == [None, "2"]
    assert ended == requests[1].time  # at once, no further attempt


async def test_wrong_content_type_fails(autojump_clock: trio.testing.MockClock) -> None:
    task = script(faults=[Fault("wrong_content_type")])
    async with serve({"t-1": task}) as server, open_stream(server) as stream:
        with pytest.raises(ContentTypeError) as info:
            await take(stream, 1)
    assert isinstance(info.value, HTTPStatusError)
    assert info.value.status_code == 200
    assert info.value.body == b"this is not an event stream"
    assert "text/plain" in str(info.value)
    assert len(event_requests(server)) == 1


async def test_faults_per_attempt(autojump_clock: trio.testing.MockClock) -> None:
    faults = [
        Fault("status", code=503),  # 0 s: retried after 3 s
        Fault("drop_between", after=1),  # 3 s: event 1, dropped
        Fault("drop_mid_event", after=1),  # 6 s: event 2, half of 3, dropped
        Fault("stall", after=1),  # 9 s: event 3, idle until 14 s
        Fault("error_then_close", after=1),  # 17 s: event 4, an error, closed
        None,  # 20 s: events 5 and 6
    ]
    task = script(faults=faults)
    async with serve({"t-1": task}) as server, open_stream(server, read_timeout=5.0) as stream:
        got = await take(stream, N + 1)
    requests = event_requests(server)
    start = requests[0].time
    assert items(got) == [*expected(1, 4), error_item("4"), *expected(5)]
    assert resume_ids(requests) == [None, None, "1", "2", "3", "4"]
    assert [r.time - start for r in requests] == pytest.approx([0, 3, 6, 9, 17, 20])
    assert [at - start for at in times(got)] == pytest.approx([3, 6, 9, 17, 17, 20, 20])


@pytest.mark.parametrize("replay", [1, 2, 5])
async def test_replayed_events_are_not_delivered_twice(
    autojump_clock: trio.testing.MockClock, replay: int
) -> None:
    task = script(faults=[Fault("drop_between", after=3)], replay=replay)
    async with serve({"t-1": task}) as server, open_stream(server) as stream:
        got = await take(stream, N)
        more = await take(stream, 1, within=10.0)  # reconnects after the end replay too
    assert items(got) == expected()
    assert more == []
    assert resume_ids(event_requests(server))[:3] == [None, "3", "6"]


async def test_replay_of_a_caller_given_last_event_id_is_not_recognised(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The documented limit: the caller resumes from "3", which this stream never saw,
    so a server that resumes inclusively gets event 3 delivered again. Recognising it
    by its id alone would drop new events that carry the sticky id (see
    test_error_event_first_after_a_resume_is_delivered)."""
    async with (
        serve({"t-1": script(replay=1)}) as server,
        open_stream(server, last_event_id="3") as stream,
    ):
        got = await take(stream, N - 2)
    assert resume_ids(event_requests(server)) == ["3"]
    assert items(got) == expected(3)


@pytest.mark.parametrize(
    "options",
    [
        {"line_ending": "\r\n"},
        {"line_ending": "\r"},
        {"multiline_data": True},
        {"trickle": True},
        {"line_ending": "\r", "multiline_data": True, "trickle": True},
        {"line_ending": "\r\n", "multiline_data": True, "trickle": True, "heartbeat": 0.25},
    ],
    ids=["crlf", "cr", "multiline", "trickle", "cr_multiline_trickle", "crlf_all_heartbeat"],
)
async def test_framing_gives_the_same_events(
    autojump_clock: trio.testing.MockClock, options: dict[str, Any]
) -> None:
    async with serve({"t-1": script(**options)}) as server, open_stream(server) as stream:
        got = await take(stream, N)
    requests = event_requests(server)
    assert items(got) == expected()
    # On time: an event comes out as soon as its blank line is in (a CR included).
    assert times(got) == pytest.approx([requests[0].time + at for at in OFFSETS])
    assert len(requests) == 1
    if options.get("multiline_data"):
        assert all("\n" in event.data for event, _ in got)


# -- backoff -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rng", "max_backoff", "delays"),
    [
        (Ceiling(), 60.0, [3.0, 6.0, 12.0, 24.0, 48.0]),
        (Ceiling(), 10.0, [3.0, 6.0, 10.0, 10.0, 10.0]),
        # Jitter down to zero, but never two attempts closer than the floor.
        (Floor(), 60.0, [3.0, 0.1, 0.1, 0.1, 0.1]),
    ],
    ids=["caps_double", "capped_by_max_backoff", "full_jitter_from_zero"],
)
async def test_backoff_is_exponential_with_full_jitter(
    autojump_clock: trio.testing.MockClock,
    rng: random.Random,
    max_backoff: float,
    delays: list[float],
) -> None:
    task = script(faults=[Fault("status", code=503)] * 5)
    async with (
        serve({"t-1": task}) as server,
        open_stream(server, rng=rng, max_backoff=max_backoff) as stream,
    ):
        got = await take(stream, N)
    assert items(got) == expected()
    assert gaps(event_requests(server)) == pytest.approx(delays)


async def backoff_delays(seed: int, failures: int = 6) -> list[float]:
    task = script(faults=[Fault("status", code=503)] * failures)
    async with (
        serve({"t-1": task}) as server,
        open_stream(server, rng=random.Random(seed), max_attempts=failures) as stream,
    ):
        got = await take(stream, N)
    assert items(got) == expected()
    return gaps(event_requests(server))


async def test_backoff_is_random_within_its_caps_and_reproducible(
    autojump_clock: trio.testing.MockClock,
) -> None:
    delays = await backoff_delays(7)
    assert delays[0] == pytest.approx(DEFAULT_RETRY)  # the first is the base delay
    caps = [min(60.0, DEFAULT_RETRY * 2 ** (n - 1)) for n in range(2, len(delays) + 1)]
    for delay, cap in zip(delays[1:], caps, strict=True):
        assert 0.0 <= delay <= cap + 1e-9
    assert any(d < cap - 1e-6 for d, cap in zip(delays[1:], caps, strict=True))  # jittered
    assert await backoff_delays(7) == pytest.approx(delays)  # the seed decides
    assert await backoff_delays(8) != pytest.approx(delays)


@pytest.mark.parametrize(("failures", "gives_up"), [(3, False), (4, True), (6, True)])
async def test_gives_up_after_max_attempts(
    autojump_clock: trio.testing.MockClock, failures: int, gives_up: bool
) -> None:
    # The first attempt, then max_attempts reconnection attempts.
    task = script(faults=[Fault("status", code=503)] * failures)
    async with serve({"t-1": task}) as server, open_stream(server, max_attempts=3) as stream:
        if not gives_up:
            assert items(await take(stream, N)) == expected()
            assert len(event_requests(server)) == failures + 1
            return
        with pytest.raises(ReconnectError) as info:
            await take(stream, N)
        with pytest.raises(StopAsyncIteration):
            await pull(stream)
    error = info.value
    assert error.attempts == 3
    assert isinstance(error.last_error, HTTPStatusError)
    assert error.last_error.status_code == 503
    assert "503" in str(error)
    assert len(event_requests(server)) == 4


@pytest.mark.parametrize(("failures", "gives_up"), [(2, False), (3, True)])
async def test_gives_up_after_max_attempts_after_a_drop(
    autojump_clock: trio.testing.MockClock, failures: int, gives_up: bool
) -> None:
    # A flowing stream drops; then max_attempts reconnection attempts fail in a row.
    faults = [Fault("drop_between", after=2), *[Fault("status", code=503)] * failures]
    if gives_up:
        faults += [Fault("status", code=503)] * 3  # room for attempts it should not make
    task = script(faults=faults)
    async with serve({"t-1": task}) as server, open_stream(server, max_attempts=3) as stream:
        if not gives_up:
            assert items(await take(stream, N)) == expected()
            assert len(event_requests(server)) == 1 + failures + 1
            return
        got = await take(stream, 2)
        with pytest.raises(ReconnectError) as info:
            await pull(stream)
    assert items(got) == expected(1, 2)
    failed_reconnects = len(event_requests(server)) - 1
    assert (failed_reconnects, info.value.attempts) == (3, 3)


async def test_failure_count_resets_once_events_flow(
    autojump_clock: trio.testing.MockClock,
) -> None:
    faults = [
        Fault("status", code=503),
        Fault("status", code=503),
        Fault("drop_between", after=1),  # event 1 flows: the count starts over
        Fault("status", code=503),
        Fault("status", code=503),
        None,
    ]
    task = script(faults=faults)
    async with (
        serve({"t-1": task}) as server,
        open_stream(server, max_attempts=3, rng=Ceiling()) as stream,
    ):
        got = await take(stream, N)
    requests = event_requests(server)
    assert items(got) == expected()
    assert resume_ids(requests) == [None, None, None, "1", "1", "1"]
    # 4 failures in all, never more than 2 in a row; the backoff starts over too.
    assert gaps(requests) == pytest.approx([3.0, 6.0, 3.0, 3.0, 6.0])


# -- connecting ----------------------------------------------------------------------


async def test_closed_port_is_a_connect_error(autojump_clock: trio.testing.MockClock) -> None:
    port = closed_port()
    start = trio.current_time()
    url = f"https://127.0.0.1:{port}/events"
    async with open_event_stream(url, max_attempts=2, rng=Ceiling()) as stream:
        with pytest.raises(ReconnectError) as info:
            await pull(stream)
    error = info.value
    assert error.attempts == 2
    assert type(error.last_error) is ConnectError
    assert f"127.0.0.1:{port}" in str(error.last_error)
    assert trio.current_time() - start == pytest.approx(3.0 + 6.0)


async def test_untrusted_certificate_is_a_connect_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A certificate that fails verification will not get better: no retry.
    async with serve() as server, open_stream(server, ssl_context=None, max_attempts=5) as stream:
        with pytest.raises(sseproto.CertificateError) as info:
            await pull(stream)
        with pytest.raises(StopAsyncIteration):
            await pull(stream)
    assert isinstance(info.value, ConnectError)
    assert "certificate" in str(info.value)
    assert server.requests == []  # no request crossed an unverified connection


async def test_ssl_cert_file_is_honoured(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve({"t-1": script()}) as server:
        monkeypatch.setenv("SSL_CERT_FILE", server.ca_path)
        async with open_stream(server, ssl_context=None) as stream:
            got = await take(stream, N)
    assert items(got) == expected()


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/events",
        "http://10.0.0.1/events",
        "http://127.0.0.1.example.com/events",
        "ftp://127.0.0.1/events",
        "127.0.0.1/events",
    ],
)
async def test_refused_urls_fail_before_connecting(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    async def no_connection(*args: object, **kwargs: object) -> trio.SocketStream:
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(trio, "open_tcp_stream", no_connection)
    with pytest.raises(sseproto.ConfigurationError) as info:
        async with open_event_stream(url, headers={"Authorization": f"Bearer {SECRET}"}):
            pass
    if url.startswith("http:"):
        assert "https" in str(info.value)


async def test_plain_http_to_loopback(autojump_clock: trio.testing.MockClock) -> None:
    async with (
        plain_server({"/events": ONE_EVENT}) as server,
        open_event_stream(server.url("/events")) as stream,
    ):
        got = await take(stream, 1)
    assert [event for event, _ in got] == [ServerSentEvent(data="hello", id="1")]
    request = server.requests[0]
    assert (request.method, request.target, request.http_version) == ("GET", "/events", "1.1")
    assert request.headers["host"] == server.origin.removeprefix("http://")


@pytest.mark.parametrize("absolute", [False, True], ids=["path", "absolute_url"])
async def test_same_origin_redirect_is_followed(
    autojump_clock: trio.testing.MockClock, absolute: bool
) -> None:
    async with plain_server({"/new": ONE_EVENT}) as server:
        new = server.url("/new") if absolute else "/new"
        server.routes["/old"] = (307, "text/plain", new.encode())
        headers = {"Authorization": "Bearer k"}
        async with open_event_stream(server.url("/old"), headers=headers) as stream:
            got = await take(stream, 1)
    assert [event for event, _ in got] == [ServerSentEvent(data="hello", id="1")]
    assert server.targets == ["/old", "/new"]
    assert server.requests[1].headers["authorization"] == "Bearer k"


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_redirect_to_another_origin_is_not_followed(
    autojump_clock: trio.testing.MockClock, code: int
) -> None:
    async with plain_server({"/events": ONE_EVENT}) as other:
        moved = (code, "text/plain", other.url("/events").encode())
        async with plain_server({"/events": moved}) as server:
            url = server.url("/events")
            async with open_event_stream(url, headers={"Authorization": f"Bearer {SECRET}"}) as s:
                with pytest.raises(HTTPStatusError) as info:
                    await pull(s)
    assert other.requests == []  # the token never reached the other origin
    assert len(server.requests) == 1
    assert "another origin" in str(info.value)
    assert info.value.status_code == code


async def test_a_redirect_loop_ends(autojump_clock: trio.testing.MockClock) -> None:
    async with (
        plain_server({"/loop": (302, "text/plain", b"/loop")}) as server,
        open_event_stream(server.url("/loop")) as stream,
    ):
        with pytest.raises(HTTPStatusError, match="redirects"):
            await pull(stream)
    assert 1 < len(server.requests) <= 10


# -- structured concurrency ----------------------------------------------------------


class Boom(Exception):
    pass


@pytest.mark.parametrize("how", ["break", "exception", "cancel_inside", "cancel_outside"])
async def test_leaving_the_block_closes_the_connection(
    autojump_clock: trio.testing.MockClock, net: Net, how: str
) -> None:
    task = script(heartbeat=0.1)  # the server writes often: it sees a close at once
    got: list[ServerSentEvent] = []
    async with serve({"t-1": task}) as server:
        before = live_tasks()

        async def consume(stream: EventStream) -> None:
            async for event in stream:
                got.append(event)
                assert len(net.live) == 1
                if event.id == "2" and how == "break":
                    break
                if event.id == "2" and how == "exception":
                    raise Boom

        if how == "cancel_outside":
            with trio.move_on_after(1.5) as scope:
                async with open_stream(server) as stream:
                    await consume(stream)
            assert scope.cancelled_caught
        else:
            try:
                async with open_stream(server) as stream:
                    with trio.move_on_after(1.5):
                        await consume(stream)
            except Boom:
                assert how == "exception"
            else:
                assert how != "exception"
        left = trio.current_time()
        del stream
        gc.collect()  # a socket left open would be a ResourceWarning (an error here)
        while net.live and trio.current_time() < left + 0.5:
            await trio.sleep(0.05)
        assert not net.live
        assert trio.current_time() - left <= 0.3  # its second write after the close fails
        assert live_tasks() == before  # no task outlived the block
    assert [event.id for event in got] == ["1", "2"]
    assert len(event_requests(server)) == 1


async def test_cancel_while_reading_an_error_body_closes_the_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A 503 whose body does not come: the caller's deadline ends the wait, and the
    # connection must close then, not when the garbage collector finds it.
    eof_at: list[float] = []

    async def handler(stream: trio.SocketStream) -> None:
        await read_head(stream)
        await stream.send_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        await wait_for_eof(stream)
        eof_at.append(trio.current_time())

    async with serving(handler) as port:
        start = trio.current_time()
        with trio.move_on_after(2.0):
            async with open_event_stream(f"http://127.0.0.1:{port}/e", read_timeout=60) as s:
                await pull(s)
        await trio.sleep(1.0)
        assert eof_at == [pytest.approx(start + 2.0)]
        del s
        gc.collect()


async def test_a_cancelled_pull_loses_nothing(autojump_clock: trio.testing.MockClock) -> None:
    # A per-event deadline (move_on_after around each pull) must not lose or repeat
    # events, nor stop the stream from reconnecting after a drop.
    task = script(faults=[Fault("drop_between", after=2)])
    got: list[Arrival] = []
    async with serve({"t-1": task}) as server, open_stream(server) as stream:
        with trio.move_on_after(60.0):
            while len(got) < N:
                with trio.move_on_after(0.4):
                    event = await stream.__anext__()
                    got.append((event, trio.current_time()))
    requests = event_requests(server)
    assert items(got) == expected()
    assert resume_ids(requests) == [None, "2"]
    assert requests[1].time == pytest.approx(requests[0].time + 1.0 + DEFAULT_RETRY)


# -- the token stays secret ----------------------------------------------------------


def assert_secret_kept(exc: BaseException) -> None:
    printed = "".join(traceback.format_exception(exc))
    assert SECRET not in printed
    for each in chain(exc):
        assert SECRET not in str(each)
        assert SECRET not in repr(each)
        if isinstance(each, HTTPStatusError):
            assert SECRET.encode() not in each.body
            assert SECRET not in repr(each.headers)


@pytest.mark.parametrize(
    ("faults", "expected_error"),
    [
        ([Fault("status", code=401)], HTTPStatusError),
        ([Fault("status", code=403)], HTTPStatusError),
        ([Fault("status", code=503)] * 3, ReconnectError),
        ([Fault("wrong_content_type")], ContentTypeError),
        ([Fault("stall")] * 3, ReconnectError),  # ReadTimeout
        ([Fault("drop_mid_event")] * 3, ReconnectError),  # RemoteProtocolError
    ],
    ids=["401", "403", "503", "content_type", "read_timeout", "drop"],
)
async def test_token_is_never_in_repr_or_errors(
    autojump_clock: trio.testing.MockClock,
    faults: list[Fault],
    expected_error: type[Exception],
) -> None:
    url_secret = f"?access_token={SECRET}"  # some APIs take the token in the URL too
    async with serve({"t-1": script(faults=faults)}, token=SECRET) as server:
        url = events_url(server) + url_secret
        async with open_event_stream(
            url,
            headers={"Authorization": f"Bearer {SECRET}"},
            ssl_context=server.ssl_context,
            read_timeout=5.0,
            max_attempts=1,
        ) as stream:
            assert SECRET not in repr(stream)
            assert SECRET not in str(stream)
            with pytest.raises(expected_error) as info:
                await pull(stream)
            assert SECRET not in repr(stream)
    assert type(info.value) is expected_error
    assert_secret_kept(info.value)
    if isinstance(info.value, ReconnectError):
        assert isinstance(
            info.value.last_error, (HTTPStatusError, ReadTimeout, RemoteProtocolError)
        )


async def test_token_is_not_in_a_connect_error(autojump_clock: trio.testing.MockClock) -> None:
    async with (
        serve(token=SECRET) as server,
        open_stream(server, ssl_context=None, max_attempts=0) as stream,
    ):
        with pytest.raises(ConnectError) as info:
            await pull(stream)
    assert_secret_kept(info.value)


async def test_token_with_a_line_break_is_refused_without_showing_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A key read from a file often ends with a newline: no valid header can carry it.
    # It is refused when the stream is opened, before anything is sent.
    async with serve(token=SECRET) as server:
        with pytest.raises(sseproto.ConfigurationError) as info:
            async with open_stream(server, token=SECRET + "\n"):
                pass
    assert_secret_kept(info.value)
    assert server.requests == []
