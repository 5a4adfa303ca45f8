"""``sseproto.EventSource``, the reconnection model, driven by hand: no sockets, no trio.

The clock is a float the tests move; randomness is a ``random.Random`` whose
``uniform`` returns the upper bound (or 0), so every backoff is exact. One test (or a
parametrized group) per rule of ``_eventsource.py``'s docstring and of part C of the
standard; at the end, a hypothesis state machine plays a model server (statuses,
redirects, failures, replays, ``retry:``) against it and checks that no event is lost,
doubled or reordered, and that no wait or connect breaks the rules.
"""

from __future__ import annotations

import itertools
import logging
import random
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import h11
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import sseproto
from sseproto import Connect, EventSource, ServerSentEvent, Stop, Wait
from sseproto._rules import (
    DEFAULT_RETRY,
    ERROR_BODY_LIMIT,
    MAX_BACKOFF,
    MIN_CONNECT_INTERVAL,
    SHORT_CONNECTION,
    USER_AGENT,
)
from tests._chunking import CHUNKING_IDS, CHUNKINGS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from tests._chunking import Splitter

URL = "https://example.com/events"
STREAM_HEADERS = [("Content-Type", "text/event-stream")]
DEFAULT_HEADERS = [
    ("Accept", "text/event-stream"),
    ("Accept-Encoding", "identity"),
    ("Cache-Control", "no-cache"),
    ("User-Agent", USER_AGENT),
]
EPS = 1e-9

ResponseHeaders = list[tuple[str, str]] | list[tuple[bytes, bytes]] | dict[str, str]


class UpperRandom(random.Random):
    """Full jitter at its largest: ``uniform(a, b)`` is ``b``."""

    def uniform(self, a: float, b: float) -> float:
        return b


class ZeroRandom(random.Random):
    """Full jitter at its smallest: ``uniform(a, b)`` is ``a`` (0 for the backoff)."""

    def uniform(self, a: float, b: float) -> float:
        return a


# -- helpers -------------------------------------------------------------------------


def ev(data: str, id: str = "", event: str = "message") -> ServerSentEvent:
    return ServerSentEvent(event=event, data=data, id=id)


def connect(es: EventSource, now: float) -> Connect:
    action = es.next_action(now)
    assert isinstance(action, Connect), action
    return action


def wait(es: EventSource, now: float) -> float:
    action = es.next_action(now)
    assert isinstance(action, Wait), action
    return action.until


def stopped(es: EventSource, now: float) -> sseproto.SSEProtoError | None:
    action = es.next_action(now)
    assert isinstance(action, Stop), action
    again = es.next_action(now + 1000.0)
    assert again == action  # asked again, the machine answers the same
    return action.error


def header(c: Connect, name: str) -> str | None:
    values = [v for n, v in c.headers if n.lower() == name.lower()]
    assert len(values) <= 1, c.headers
    return values[0] if values else None


def h11_check(c: Connect) -> None:
    """The request the driver would build from ``c`` is one h11 accepts."""
    parts = urlsplit(c.url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    request = h11.Request(
        method="GET",
        target=target,
        headers=[
            (b"Host", parts.netloc.encode()),
            *[(n.encode(), v.encode()) for n, v in c.headers],
        ],
    )
    h11.Connection(h11.CLIENT).send(request)


def wants_body(es: EventSource) -> bool:
    return es.wants_error_body


def retry_state(es: EventSource) -> tuple[int | None, float]:
    """The server's ``retry:`` (ms) and the reconnection time (s)."""
    return es.server_retry, es.retry


def open_stream(es: EventSource, now: float) -> Connect:
    c = connect(es, now)
    assert es.receive_response(200, STREAM_HEADERS, now) is True
    return c


def session(
    es: EventSource,
    now: float,
    body: bytes = b"",
    *,
    lasts: float = 10.0,
    error: BaseException | None = None,
) -> tuple[Connect, list[ServerSentEvent]]:
    """Connect at ``now``, read ``body`` as a stream, end it ``lasts`` later."""
    c = open_stream(es, now)
    events = es.receive_data(body)
    es.connection_closed(now + lasts, error)
    return c, events


def fail_attempt(es: EventSource, now: float, kind: str) -> None:
    """Connect at ``now`` and fail that attempt the way ``kind`` says."""
    connect(es, now)
    if kind == "connect_error":
        es.connection_closed(now, sseproto.ConnectError("connection refused"))
    elif kind == "closed_before_answer":
        es.connection_closed(now)
    elif kind == "broken_empty_stream":
        assert es.receive_response(200, STREAM_HEADERS, now)
        es.connection_closed(now, sseproto.RemoteProtocolError("reset"))
    else:
        assert es.receive_response(int(kind), [], now) is False
        assert es.wants_error_body


# -- the request ---------------------------------------------------------------------


def test_first_action_is_connect_with_the_default_headers() -> None:
    es = EventSource(URL)
    c = connect(es, 0.0)
    assert c.url == URL
    assert c.headers == DEFAULT_HEADERS  # no Last-Event-ID without an id
    h11_check(c)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer t0ken", "accept": "text/event-stream, */*", "X-Team-ID": "a b"},
        [
            ("Authorization", "Bearer t0ken"),
            ("accept", "text/event-stream, */*"),
            ("X-Team-ID", "a b"),
        ],
    ],
    ids=["mapping", "pairs"],
)
def test_caller_headers_are_added_and_replace_a_default(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
) -> None:
    es = EventSource(URL, headers=headers)
    c = connect(es, 0.0)
    assert header(c, "Accept") == "text/event-stream, */*"
    assert header(c, "Authorization") == "Bearer t0ken"
    assert header(c, "X-Team-ID") == "a b"
    assert header(c, "User-Agent") == USER_AGENT
    assert header(c, "Cache-Control") == "no-cache"
    assert header(c, "Accept-Encoding") == "identity"
    assert len(c.headers) == 6
    h11_check(c)


def test_user_agent_can_be_replaced() -> None:
    c = connect(EventSource(URL, headers={"User-Agent": "mine/1.0"}), 0.0)
    assert header(c, "User-Agent") == "mine/1.0"
    assert len(c.headers) == len(DEFAULT_HEADERS)


def test_last_event_id_from_the_constructor_is_sent() -> None:
    es = EventSource(URL, last_event_id="42")
    c = connect(es, 0.0)
    assert c.headers == [*DEFAULT_HEADERS, ("Last-Event-ID", "42")]
    assert es.last_event_id == "42"
    h11_check(c)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://Example.COM/a b?q=é#fragment", "https://example.com/a%20b?q=%C3%A9"),
        ("https://example.com:443/x", "https://example.com/x"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),
        ("https://example.com", "https://example.com/"),
        ("https://bücher.example/x", "https://xn--bcher-kva.example/x"),
    ],
)
def test_the_url_is_normalised_for_the_request(url: str, expected: str) -> None:
    es = EventSource(url)
    c = connect(es, 0.0)
    assert c.url == expected
    assert es.url == expected
    h11_check(c)


def test_plain_http_to_loopback_is_allowed() -> None:
    for url in ("http://127.0.0.1:8080/e", "http://localhost/e", "http://[::1]:9/e"):
        assert connect(EventSource(url), 0.0).url == url


# -- opening and reading a stream ---------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/event-stream",
        "text/event-stream;",
        "text/event-stream; charset=utf-8",
        "text/event-stream;charset=windows-1252",
        "Text/Event-Stream",
        "TEXT/EVENT-STREAM; Charset=UTF-8",
        " text/event-stream ",
    ],
)
def test_200_event_stream_opens(content_type: str) -> None:
    es = EventSource(URL)
    connect(es, 0.0)
    assert es.connections == 0
    assert es.receive_response(200, [("Content-Type", content_type)], 0.0) is True
    assert es.connections == 1
    assert es.receive_data(b"data: hi\n\n") == [ev("hi")]


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/event-stream"},
        [("content-type", "text/event-stream")],
        [(b"Content-Type", b"text/event-stream"), (b"Content-Encoding", b"identity")],
    ],
    ids=["mapping", "str_pairs", "bytes_pairs"],
)
def test_response_headers_in_every_form(headers: ResponseHeaders) -> None:
    es = EventSource(URL)
    connect(es, 0.0)
    assert es.receive_response(200, headers, 0.0) is True


STREAM_BODY = (
    b"retry: 1500\n"
    b"id: 1\nevent: update\ndata: one\n\n"
    b": a comment\n"
    b"data: two\ndata: lines\n\n"
    b"id: 3\r\ndata: caf\xc3\xa9\r\n\r\n"
    b"retry: nope\n"
    b"id: 4\n"  # not committed: no blank line follows
)


@pytest.mark.parametrize("split", CHUNKINGS, ids=CHUNKING_IDS)
def test_events_in_any_chunking(split: Splitter) -> None:
    es = EventSource(URL)
    open_stream(es, 0.0)
    events: list[ServerSentEvent] = []
    for chunk in split(STREAM_BODY):
        events.extend(es.receive_data(chunk))
    assert events == [ev("one", "1", "update"), ev("two\nlines", "1"), ev("café", "3")]
    assert es.last_event_id == "3"
    assert retry_state(es) == (1500, 1.5)


def test_retry_and_last_event_id_follow_the_stream() -> None:
    es = EventSource(URL, retry=2.0)
    assert retry_state(es) == (None, 2.0)
    assert es.last_event_id == ""
    open_stream(es, 0.0)
    assert es.receive_data(b"retry: 250\n") == []
    assert retry_state(es) == (250, 0.25)
    assert es.receive_data(b"retry: 1x\n") == []  # not a number: ignored
    assert retry_state(es) == (250, 0.25)
    assert es.receive_data(b"id: 7\n") == []
    assert es.last_event_id == ""  # committed only by the blank line
    assert es.receive_data(b"data: a\n\n") == [ev("a", "7")]
    assert es.last_event_id == "7"
    assert es.receive_data(b"retry: 0\n") == []
    assert retry_state(es) == (0, 0.0)


def test_default_retry_is_the_rules_constant() -> None:
    assert EventSource(URL).retry == DEFAULT_RETRY == 3.0


def test_connections_count_the_streams_opened() -> None:
    es = EventSource(URL)
    session(es, 0.0, b"id: 1\ndata: a\n\n")
    assert es.connections == 1
    fail_attempt(es, wait(es, 10.0), "connect_error")  # not a stream: not counted
    assert es.connections == 1
    session(es, wait(es, 13.0), b"id: 2\ndata: b\n\n")
    assert es.connections == 2


# -- reconnecting after an end --------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "delay"),
    [(b"", DEFAULT_RETRY), (b"retry: 5000\n", 5.0), (b"retry: 750\n", 0.75)],
    ids=["default", "retry_5000", "retry_750"],
)
def test_clean_end_waits_the_reconnection_time_then_resumes(prefix: bytes, delay: float) -> None:
    es = EventSource(URL)
    _, events = session(es, 0.0, prefix + b"id: e1\ndata: a\n\n", lasts=10.0)
    assert events == [ev("a", "e1")]
    assert wait(es, 10.0) == pytest.approx(10.0 + delay)
    assert wait(es, 10.0 + delay / 2) == pytest.approx(10.0 + delay)  # asked early: same
    c = connect(es, 10.0 + delay)
    assert header(c, "Last-Event-ID") == "e1"
    assert c.url == URL
    h11_check(c)


def test_broken_stream_with_events_resumes_after_the_reconnection_time() -> None:
    es = EventSource(URL, rng=UpperRandom())
    session(es, 0.0, b"id: 5\ndata: a\n\n", lasts=4.0, error=sseproto.ReadTimeout("idle"))
    assert wait(es, 4.0) == 4.0 + DEFAULT_RETRY
    assert header(connect(es, 7.0), "Last-Event-ID") == "5"


def test_resumed_parser_is_seeded_with_the_last_event_id() -> None:
    es = EventSource(URL)
    session(es, 0.0, b"id: 41\ndata: a\n\n")
    open_stream(es, wait(es, 10.0))
    # The first event without an id reports the id resumed from (WPT, D1).
    assert es.receive_data(b"data: b\n\n") == [ev("b", "41")]
    assert es.receive_data(b"id: 42\ndata: c\n\ndata: d\n\n") == [ev("c", "42"), ev("d", "42")]


def test_a_mid_event_end_discards_the_half_event() -> None:
    es = EventSource(URL)
    open_stream(es, 0.0)
    assert es.receive_data(b"id: 1\ndata: a\n\nid: 2\ndata: half") == [ev("a", "1")]
    es.connection_closed(5.0)
    assert es.last_event_id == "1"
    assert header(connect(es, wait(es, 5.0)), "Last-Event-ID") == "1"


# -- failed attempts and backoff ------------------------------------------------------


def test_a_connection_that_delivered_nothing_is_a_failed_attempt_without_backoff() -> None:
    es = EventSource(URL, rng=UpperRandom(), max_attempts=4)
    session(es, 0.0, b"id: 1\ndata: a\n\n", lasts=1.0)  # then empty streams only
    now = wait(es, 1.0)
    for _ in range(3):
        _, events = session(es, now, b": only a comment\n", lasts=0.5)
        assert events == []
        until = wait(es, now + 0.5)
        assert until == pytest.approx(now + 0.5 + DEFAULT_RETRY)  # no growth
        now = until
    session(es, now, b"", lasts=0.5)
    error = stopped(es, now + 0.5)
    assert isinstance(error, sseproto.ReconnectError)
    assert error.attempts == 4


def test_empty_streams_that_come_back_at_once_back_off() -> None:
    # retry: 0 and an empty answer, over and over: each a failed attempt, and as the
    # cycle is short, the waits grow instead of reconnecting ten times a second.
    es = EventSource(URL, rng=UpperRandom(), max_attempts=100, retry=0.0)
    now = 0.0
    starts = []
    while now < 60.0:
        starts.append(now)
        session(es, now, b"", lasts=0.0)
        now = wait(es, now)
    assert len(starts) < 15
    assert starts[-1] - starts[-2] > 10 * MIN_CONNECT_INTERVAL


FAILURES = [
    "connect_error",
    "closed_before_answer",
    "broken_empty_stream",
    "408",
    "429",
    "500",
    "502",
    "503",
    "504",
]


@pytest.mark.parametrize("kind", FAILURES)
def test_failures_back_off_exponentially_capped(kind: str) -> None:
    es = EventSource(URL, rng=UpperRandom(), max_attempts=50)
    now = 0.0
    delays = []
    for _ in range(8):
        fail_attempt(es, now, kind)
        until = wait(es, now)
        delays.append(until - now)
        now = until
    # The first failure waits the reconnection time, then the bound doubles.
    assert delays == pytest.approx([3, 6, 12, 24, 48, MAX_BACKOFF, MAX_BACKOFF, MAX_BACKOFF])


@pytest.mark.parametrize("kind", FAILURES)
def test_full_jitter_reaches_down_to_the_floor(kind: str) -> None:
    es = EventSource(URL, rng=ZeroRandom(), max_attempts=50)
    now = 0.0
    delays = []
    for _ in range(4):
        fail_attempt(es, now, kind)
        until = wait(es, now)
        delays.append(until - now)
        now = until
    assert delays == pytest.approx([DEFAULT_RETRY, *[MIN_CONNECT_INTERVAL] * 3])


def test_backoff_is_capped_at_max_backoff() -> None:
    es = EventSource(URL, rng=UpperRandom(), max_backoff=10.0, max_attempts=50)
    now = 0.0
    delays = []
    for _ in range(5):
        fail_attempt(es, now, "503")
        until = wait(es, now)
        delays.append(until - now)
        now = until
    assert delays == pytest.approx([3, 6, 10, 10, 10])


def test_retry_after_is_honoured() -> None:
    es = EventSource(URL, rng=ZeroRandom())
    connect(es, 0.0)
    assert es.receive_response(503, [("Retry-After", "20")], 0.0) is False
    assert wait(es, 0.0) == 20.0
    connect(es, 20.0)
    assert es.receive_response(429, {"retry-after": "7"}, 20.0) is False
    assert wait(es, 20.0) == 27.0  # larger than the jitter's 0
    connect(es, 27.0)
    http_date = [("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")]
    assert es.receive_response(503, http_date, 27.0) is False
    assert wait(es, 27.0) == pytest.approx(27.0 + MIN_CONNECT_INTERVAL)  # a date: the backoff


def test_a_transient_answer_keeps_its_body_and_retry_after_for_the_error() -> None:
    es = EventSource(URL, rng=ZeroRandom(), max_attempts=0)
    session(es, 0.0, b"id: 1\ndata: a\n\n")
    connect(es, wait(es, 10.0))
    assert es.receive_response(503, [("Retry-After", "20")], 13.0) is False
    assert wants_body(es)
    es.receive_error_body(b"overloaded")
    error = stopped(es, 13.0)
    assert isinstance(error, sseproto.ReconnectError)
    last = error.last_error
    assert isinstance(last, sseproto.HTTPStatusError)
    assert (last.status_code, last.retry_after, last.body) == (503, 20.0, b"overloaded")


def test_retry_after_never_shortens_the_backoff() -> None:
    es = EventSource(URL, rng=UpperRandom())
    connect(es, 0.0)
    es.receive_response(503, [("Retry-After", "1")], 0.0)
    assert wait(es, 0.0) == DEFAULT_RETRY


@pytest.mark.parametrize("retry_after", ["1000", "86400", "999999999"])
def test_retry_after_is_capped_at_max_backoff_and_logged(
    retry_after: str, caplog: pytest.LogCaptureFixture
) -> None:
    es = EventSource(URL, rng=ZeroRandom())
    connect(es, 0.0)
    with caplog.at_level(logging.INFO, logger="sseproto"):
        es.receive_response(503, [("Retry-After", retry_after)], 0.0)
    assert wait(es, 0.0) == MAX_BACKOFF
    assert any(
        r.name == "sseproto" and r.levelno == logging.WARNING and "Retry-After" in r.getMessage()
        for r in caplog.records
    )


def test_huge_server_retry_is_capped_at_max_backoff(caplog: pytest.LogCaptureFixture) -> None:
    es = EventSource(URL)
    with caplog.at_level(logging.INFO, logger="sseproto"):
        session(es, 0.0, b"retry: 99999999999\nid: 1\ndata: a\n\n", lasts=5.0)
        until = wait(es, 5.0)
    assert es.server_retry == 99999999999
    assert es.retry == pytest.approx(99999999.999)
    assert until == 5.0 + MAX_BACKOFF
    assert any(r.levelno == logging.WARNING and "retry" in r.getMessage() for r in caplog.records)


def test_huge_server_retry_is_capped_at_a_custom_max_backoff() -> None:
    es = EventSource(URL, max_backoff=5.0)
    session(es, 0.0, b"retry: 600000\nid: 1\ndata: a\n\n", lasts=5.0)
    assert wait(es, 5.0) == 10.0


def test_max_attempts_failed_reconnections_give_up() -> None:
    es = EventSource(URL, rng=ZeroRandom(), max_attempts=3)
    session(es, 0.0, b"id: 1\ndata: a\n\n", lasts=1.0, error=sseproto.RemoteProtocolError("x"))
    now = 1.0
    errors: list[sseproto.SSEProtoError] = []
    for i in range(3):
        now = wait(es, now)
        connect(es, now)
        errors.append(sseproto.ConnectError(f"refused {i}"))
        es.connection_closed(now, errors[-1])
    error = stopped(es, now)
    assert isinstance(error, sseproto.ReconnectError)
    assert error.attempts == 3
    assert error.last_error is errors[-1]
    assert error.__cause__ is errors[-1]


def test_max_attempts_counts_reconnections_after_the_first_attempt() -> None:
    es = EventSource(URL, rng=ZeroRandom(), max_attempts=2)
    now = 0.0
    for _ in range(3):  # the first attempt, then 2 reconnections
        fail_attempt(es, now, "503")
        action = es.next_action(now)
        assert isinstance(action, (Wait, Stop))
        if isinstance(action, Stop):
            break
        now = action.until
    error = stopped(es, now)
    assert isinstance(error, sseproto.ReconnectError)
    assert error.attempts == 2
    assert isinstance(error.last_error, sseproto.HTTPStatusError)
    assert error.last_error.status_code == 503


def test_max_attempts_counts_the_same_when_the_first_stream_was_empty() -> None:
    # The first attempt is not a reconnection, whether it failed to connect or
    # opened a stream that delivered nothing: both give 1 + max_attempts attempts.
    counts = []
    for kind in ("connect_error", "clean_empty_stream"):
        es = EventSource(URL, rng=ZeroRandom(), max_attempts=2)
        now, attempts = 0.0, 0
        while True:
            action = es.next_action(now)
            if isinstance(action, Stop):
                assert isinstance(action.error, sseproto.ReconnectError)
                assert action.error.attempts == 2
                break
            if isinstance(action, Wait):
                now = action.until
                continue
            attempts += 1
            if kind == "connect_error":
                es.connection_closed(now, sseproto.ConnectError("refused"))
            else:
                assert es.receive_response(200, STREAM_HEADERS, now)
                es.connection_closed(now)
        counts.append(attempts)
    assert counts == [3, 3]


def test_the_failure_count_resets_once_events_are_delivered() -> None:
    es = EventSource(URL, rng=ZeroRandom(), max_attempts=3)
    now = 0.0
    session(es, now, b"id: 1\ndata: a\n\n", lasts=1.0)
    now = 1.0
    for round_ in range(4):  # 2 failures then events, four times: never 3 in a row
        for _ in range(2):
            now = wait(es, now)
            fail_attempt(es, now, "connect_error")
        now = wait(es, now)
        _, events = session(es, now, f"id: n{round_}\ndata: b\n\n".encode(), lasts=1.0)
        assert len(events) == 1
        now += 1.0
    for _ in range(3):
        now = wait(es, now)
        fail_attempt(es, now, "connect_error")
    assert isinstance(stopped(es, now), sseproto.ReconnectError)


# -- no server makes the client reconnect at speed ---------------------------------


def drive(es: EventSource, now: float) -> float:
    """Wait as told until the machine says Connect; the time it does."""
    while True:
        action = es.next_action(now)
        if isinstance(action, Connect):
            return now
        assert isinstance(action, Wait), action
        assert action.until > now
        now = action.until


def test_two_connects_never_closer_than_the_floor() -> None:
    es = EventSource(URL, retry=0.0, rng=ZeroRandom(), max_attempts=10_000)
    now = 0.0
    starts: list[float] = []
    for i in range(80):
        now = drive(es, now)
        starts.append(now)
        kind = i % 5
        if kind == 0:
            es.connection_closed(now, sseproto.ConnectError("refused"))
        elif kind == 1:
            es.receive_response(200, STREAM_HEADERS, now)
            assert es.receive_data(f"retry: 0\nid: {i}\ndata: x\n\n".encode())
            es.connection_closed(now)
        elif kind == 2:
            es.receive_response(503, [("Retry-After", "0")], now + 0.03)
            now += 0.03
        elif kind == 3:
            es.receive_response(200, STREAM_HEADERS, now)
            es.connection_closed(now)
        else:
            es.receive_response(200, STREAM_HEADERS, now)
            es.receive_data(f"retry: 0\nid: {i}\ndata: x\n\n".encode())
            es.connection_closed(now + 0.01, sseproto.RemoteProtocolError("reset"))
            now += 0.01
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= MIN_CONNECT_INTERVAL - EPS
    assert min(gaps) == pytest.approx(MIN_CONNECT_INTERVAL)  # the floor is what held it


def short_stream(es: EventSource, now: float, n: int, lasts: float = 0.0) -> None:
    es.receive_response(200, STREAM_HEADERS, now)
    assert es.receive_data(f"retry: 0\nid: {n}\ndata: x\n\n".encode()) == [ev("x", str(n))]
    es.connection_closed(now + lasts)


@pytest.mark.parametrize("seed", range(6))
def test_retry_zero_and_an_immediate_close_back_off(seed: int) -> None:
    es = EventSource(URL, rng=random.Random(seed), max_attempts=10_000)
    now, connects = 0.0, 0
    while now < 60.0:
        action = es.next_action(now)
        if isinstance(action, Wait):
            now = action.until
            continue
        assert isinstance(action, Connect)
        connects += 1
        short_stream(es, now, connects)
    assert connects < 30


def test_short_streams_double_the_wait_and_a_long_one_resets_it() -> None:
    es = EventSource(URL, rng=UpperRandom(), max_attempts=10_000)
    now = 0.0
    delays = []
    for n in range(6):
        connect(es, now)
        short_stream(es, now, n)
        until = wait(es, now)
        delays.append(until - now)
        now = until
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
    # A stream that lives past SHORT_CONNECTION: retry: 0 means at once again.
    connect(es, now)
    short_stream(es, now, 100, lasts=SHORT_CONNECTION + 0.5)
    now += SHORT_CONNECTION + 0.5
    connect(es, now)
    short_stream(es, now, 101)
    assert wait(es, now) == pytest.approx(now + MIN_CONNECT_INTERVAL)


def test_a_long_stream_resets_the_backoff_of_failures() -> None:
    es = EventSource(URL, rng=UpperRandom(), max_attempts=50)
    now = 0.0
    for _ in range(4):
        fail_attempt(es, now, "connect_error")
        now = wait(es, now)
    assert es.next_action(now) == Connect(URL, DEFAULT_HEADERS)
    es.receive_response(200, STREAM_HEADERS, now)
    es.receive_data(b"id: 1\ndata: a\n\n")
    es.connection_closed(now + 30.0, sseproto.ReadTimeout("idle"))
    now += 30.0
    assert wait(es, now) == now + DEFAULT_RETRY
    fail_attempt(es, now + DEFAULT_RETRY, "connect_error")
    assert wait(es, now + DEFAULT_RETRY) == now + 2 * DEFAULT_RETRY  # a new streak


# -- answers that end the stream -------------------------------------------------------


def test_204_stops_without_an_error() -> None:
    es = EventSource(URL)
    connect(es, 0.0)
    assert es.receive_response(204, [], 0.0) is False
    assert stopped(es, 0.0) is None


@pytest.mark.parametrize("status", [205, 400, 401, 403, 404, 405, 410, 418, 501])
def test_other_statuses_fail_at_once(status: int) -> None:
    es = EventSource(URL)
    connect(es, 0.0)
    assert es.receive_response(status, [("X-Why", "because")], 0.0) is False
    assert es.wants_error_body
    es.receive_error_body(b"x" * (ERROR_BODY_LIMIT + 100))
    assert not wants_body(es)
    error = stopped(es, 0.0)
    assert type(error) is sseproto.HTTPStatusError
    assert error.status_code == status
    assert error.body == b"x" * ERROR_BODY_LIMIT
    assert error.headers == {"x-why": "because"}
    assert str(status) in str(error)


def test_the_error_body_is_kept_as_is() -> None:
    es = EventSource(URL)
    connect(es, 0.0)
    es.receive_response(403, [], 0.0)
    es.receive_error_body(b'{"feature": "x"}')
    error = stopped(es, 0.0)
    assert isinstance(error, sseproto.HTTPStatusError)
    assert error.body == b'{"feature": "x"}'


@pytest.mark.parametrize(
    "headers",
    [
        [("Content-Type", "text/plain")],
        [("Content-Type", "text/x-bogus")],
        [("Content-Type", "x bogus")],
        [("Content-Type", "text/event-streams")],
        [],
    ],
    ids=["text_plain", "bogus", "x_bogus", "streams", "none"],
)
def test_200_that_is_not_an_event_stream_fails(headers: list[tuple[str, str]]) -> None:
    es = EventSource(URL)
    connect(es, 0.0)
    assert es.receive_response(200, headers, 0.0) is False
    assert es.wants_error_body
    es.receive_error_body(b"hello")
    error = stopped(es, 0.0)
    assert isinstance(error, sseproto.ContentTypeError)
    assert error.status_code == 200
    assert error.body == b"hello"
    assert es.connections == 0


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate", "identity, gzip", "GZIP"])
def test_a_compressed_event_stream_is_refused(encoding: str) -> None:
    es = EventSource(URL)
    connect(es, 0.0)
    headers = [("Content-Type", "text/event-stream"), ("Content-Encoding", encoding)]
    assert es.receive_response(200, headers, 0.0) is False
    assert isinstance(stopped(es, 0.0), sseproto.ContentTypeError)


@pytest.mark.parametrize("encoding", ["identity", "Identity", " identity "])
def test_identity_encoding_is_accepted(encoding: str) -> None:
    es = EventSource(URL)
    connect(es, 0.0)
    headers = [("Content-Type", "text/event-stream"), ("Content-Encoding", encoding)]
    assert es.receive_response(200, headers, 0.0) is True


@pytest.mark.parametrize(
    "error",
    [sseproto.TLSHandshakeError("no shared cipher"), sseproto.CertificateError("bad cert")],
    ids=["tls", "certificate"],
)
def test_a_tls_failure_is_not_retried(error: sseproto.SSEProtoError) -> None:
    es = EventSource(URL)
    connect(es, 0.0)
    es.connection_closed(0.0, error)
    assert stopped(es, 0.0) is error


@pytest.mark.parametrize(
    "error",
    [
        sseproto.ConnectError("refused"),
        sseproto.ConnectTimeout("slow"),
        sseproto.ReadTimeout("no answer"),
        sseproto.RemoteProtocolError("garbage"),
        OSError("foreign"),
        None,
    ],
    ids=["connect", "connect_timeout", "read_timeout", "protocol", "foreign", "closed"],
)
def test_a_network_failure_is_retried(error: BaseException | None) -> None:
    es = EventSource(URL, rng=UpperRandom(), max_attempts=1)
    connect(es, 0.0)
    es.connection_closed(0.0, error)
    assert wait(es, 0.0) == DEFAULT_RETRY
    connect(es, DEFAULT_RETRY)
    es.connection_closed(DEFAULT_RETRY, error)
    gave_up = stopped(es, DEFAULT_RETRY)
    assert isinstance(gave_up, sseproto.ReconnectError)
    assert isinstance(gave_up.last_error, sseproto.TransportError)  # a foreign one wrapped
    if error is not None:
        assert gave_up.last_error is error or gave_up.last_error.__cause__ is error


# -- redirects ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/other", "https://example.com/other"),
        ("https://example.com/x?y=1", "https://example.com/x?y=1"),
        ("https://EXAMPLE.com:443/x", "https://example.com/x"),
        ("next", "https://example.com/a/next"),
        ("../up", "https://example.com/up"),
        ("?page=2", "https://example.com/a/events?page=2"),
        ("/x#fragment", "https://example.com/x"),
    ],
    ids=["path", "absolute", "default_port", "relative", "dotdot", "query", "fragment"],
)
def test_a_same_origin_redirect_is_followed_at_once(
    status: int, location: str, expected: str
) -> None:
    es = EventSource("https://example.com/a/events", headers={"Authorization": "Bearer t"})
    connect(es, 0.0)
    assert es.receive_response(status, [("Location", location)], 0.0) is False
    c = connect(es, 0.0)  # no wait
    assert c.url == expected
    assert es.url == expected
    assert header(c, "Authorization") == "Bearer t"
    h11_check(c)


@pytest.mark.parametrize(
    ("location", "target"),
    [
        ("/a b", "/a%20b"),
        ("/é", "/%C3%A9"),
        (b"/\xc3\xa9", "/%C3%A9"),
        ("/q?x=a b", "/q?x=a%20b"),
        ("/already%20done", "/already%20done"),
        ("/100%", "/100%25"),
    ],
    ids=["space", "non_ascii", "utf8_bytes", "query_space", "escaped", "lone_percent"],
)
def test_a_redirect_target_is_percent_encoded(location: str | bytes, target: str) -> None:
    es = EventSource(URL)
    connect(es, 0.0)
    headers: list[tuple[bytes, bytes]] = [
        (b"Location", location if isinstance(location, bytes) else location.encode())
    ]
    assert es.receive_response(302, headers, 0.0) is False
    c = connect(es, 0.0)
    assert c.url == f"https://example.com{target}"
    h11_check(c)


def test_a_str_location_with_non_ascii_text_is_percent_encoded() -> None:
    es = EventSource(URL)
    connect(es, 0.0)
    es.receive_response(307, {"location": "/é x"}, 0.0)
    assert connect(es, 0.0).url == "https://example.com/%C3%A9%20x"


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("Location", "/a"), ("Location", "/b")],
        [("Location", "")],
        [("Location", "   ")],
        [("Location", "https://evil.example/x")],
        [("Location", "//evil.example/x")],
        [("Location", "http://example.com/x")],
        [("Location", "https://example.com:8443/x")],
        [("Location", "ftp://example.com/x")],
        [("Location", "javascript:alert(1)")],
        [("Location", "https://[::1/x")],
        [("Location", "https://example.com:99999/x")],
        [("Location", "https://ex ample.com/x")],
    ],
    ids=[
        "missing",
        "two",
        "empty",
        "blank",
        "other_host",
        "scheme_relative",
        "http_downgrade",
        "other_port",
        "ftp",
        "javascript",
        "bad_ipv6",
        "bad_port",
        "bad_host",
    ],
)
def test_a_redirect_that_cannot_be_followed_fails(headers: list[tuple[str, str]]) -> None:
    es = EventSource(URL, headers={"Authorization": "Bearer secret-token"})
    connect(es, 0.0)
    assert es.receive_response(302, headers, 0.0) is False  # never an exception
    error = stopped(es, 0.0)
    assert type(error) is sseproto.HTTPStatusError
    assert error.status_code == 302
    assert "secret-token" not in str(error)


def test_more_than_max_redirects_in_a_row_fails() -> None:
    es = EventSource(URL, max_redirects=2)
    for i in range(2):
        connect(es, 0.0)
        assert es.receive_response(301, [("Location", f"/r{i}")], 0.0) is False
    assert connect(es, 0.0).url == "https://example.com/r1"
    assert es.receive_response(301, [("Location", "/r2")], 0.0) is False
    error = stopped(es, 0.0)
    assert isinstance(error, sseproto.HTTPStatusError)
    assert error.status_code == 301


def test_a_redirect_loop_ends() -> None:
    es = EventSource(URL)
    for _ in range(50):
        action = es.next_action(0.0)
        if isinstance(action, Stop):
            break
        assert isinstance(action, Connect)
        es.receive_response(302, [("Location", "/events")], 0.0)
    assert isinstance(stopped(es, 0.0), sseproto.HTTPStatusError)


def test_each_reconnect_starts_at_the_original_url() -> None:
    es = EventSource(URL, max_redirects=1)
    connect(es, 0.0)
    es.receive_response(307, [("Location", "/moved")], 0.0)
    assert open_stream(es, 0.0).url == "https://example.com/moved"
    assert es.url == "https://example.com/moved"
    assert es.receive_data(b"id: 1\ndata: a\n\n") == [ev("a", "1")]
    es.connection_closed(5.0)
    c = connect(es, wait(es, 5.0))
    assert c.url == URL
    assert es.url == URL
    assert header(c, "Last-Event-ID") == "1"
    # The redirect count starts again too: one more redirect is followed, and the
    # redirected request resumes too.
    es.receive_response(307, [("Location", "/moved")], 8.0)
    c = connect(es, 8.0)
    assert c.url == "https://example.com/moved"
    assert header(c, "Last-Event-ID") == "1"


def test_a_failure_after_a_redirect_retries_the_original_url() -> None:
    es = EventSource(URL, rng=UpperRandom())
    connect(es, 0.0)
    es.receive_response(302, [("Location", "/moved")], 0.0)
    connect(es, 0.0)
    es.connection_closed(0.0, sseproto.ConnectError("refused"))
    assert connect(es, wait(es, 0.0)).url == URL


# -- Last-Event-ID ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_id",
    ["7 ", " 7", "a\x01b", "a\x7fb", "7\t", "\x1b[31m"],
    ids=["trailing_space", "leading_space", "ctrl_01", "del", "trailing_tab", "escape"],
)
def test_an_id_http_cannot_carry_is_not_sent(bad_id: str, caplog: pytest.LogCaptureFixture) -> None:
    es = EventSource(URL)
    with caplog.at_level(logging.WARNING, logger="sseproto"):
        _, events = session(es, 0.0, f"id: {bad_id}\ndata: a\n\n".encode())
        assert events == [ev("a", bad_id)]
        assert es.last_event_id == bad_id
        c = connect(es, wait(es, 10.0))
    assert header(c, "Last-Event-ID") is None
    assert c.headers == DEFAULT_HEADERS
    h11_check(c)
    assert [r for r in caplog.records if r.name == "sseproto" and r.levelno == logging.WARNING]
    # The stream goes on.
    assert es.receive_response(200, STREAM_HEADERS, 13.0) is True
    assert es.receive_data(b"id: 8\ndata: b\n\n") == [ev("b", "8")]
    es.connection_closed(20.0)
    assert header(connect(es, wait(es, 20.0)), "Last-Event-ID") == "8"


@pytest.mark.parametrize("good_id", ["é…", "a b", "日本", "x\t y"])
def test_an_id_with_non_ascii_text_or_inner_spaces_is_sent_as_is(good_id: str) -> None:
    es = EventSource(URL)
    session(es, 0.0, f"id: {good_id}\ndata: a\n\n".encode())
    c = connect(es, wait(es, 10.0))
    assert header(c, "Last-Event-ID") == good_id
    h11_check(c)


# -- the replay filter -----------------------------------------------------------------

FIRST = b"id: 1\ndata: a\n\nid: 2\nevent: up\ndata: b\n\nid: 3\ndata: c\n\n"


@pytest.mark.parametrize("split", CHUNKINGS, ids=CHUNKING_IDS)
def test_replayed_events_are_dropped_until_the_first_new_one(split: Splitter) -> None:
    es = EventSource(URL)
    _, events = session(es, 0.0, FIRST)
    assert len(events) == 3
    c = open_stream(es, wait(es, 10.0))
    assert header(c, "Last-Event-ID") == "3"
    got: list[ServerSentEvent] = []
    replay = b"id: 2\nevent: up\ndata: b\n\nid: 3\ndata: c\n\n"
    for chunk in split(replay + b"id: 4\ndata: d\n\nid: 2\nevent: up\ndata: b\n\n"):
        got.extend(es.receive_data(chunk))
    # After the first new event the window is closed: the later "2" is delivered.
    assert got == [ev("d", "4"), ev("b", "2", "up")]
    assert es.last_event_id == "2"


def test_the_replay_window_is_the_last_1024_events_in_8_bytes_each() -> None:
    es = EventSource(URL)
    stream = b"".join(b"id: %d\ndata: e%d\n\n" % (i, i) for i in range(5000))
    _, events = session(es, 0.0, stream)
    assert len(events) == 5000
    assert len(es._seen) == 1024
    assert sys.getsizeof(es._seen._items) <= 8 * 1024 + 200  # a deque of ints: ~36 KiB
    open_stream(es, wait(es, 10.0))
    # The last 1024 are recognised as replays; older ones are new again.
    assert es.receive_data(b"id: 4990\ndata: e4990\n\nid: 4999\ndata: e4999\n\n") == []
    old = es.receive_data(b"id: 3000\ndata: e3000\n\n")
    assert [e.id for e in old] == ["3000"]


def test_a_replay_in_several_chunks_then_an_end_delivers_nothing() -> None:
    es = EventSource(URL)
    session(es, 0.0, FIRST)
    open_stream(es, wait(es, 10.0))
    assert es.receive_data(b"id: 2\nevent: up\ndata: b\n\n") == []
    assert es.receive_data(b"id: 3\ndata: c\n\n") == []
    assert es.receive_data(b"id: 4\ndata: d\n\n") == [ev("d", "4")]


def test_a_new_event_without_its_own_id_is_never_taken_for_a_replay() -> None:
    es = EventSource(URL)
    # Before any resume, the same event twice (its id sticky) is delivered twice.
    _, events = session(es, 0.0, b"id: 1\ndata: x\n\ndata: x\n\n")
    assert events == [ev("x", "1"), ev("x", "1")]
    open_stream(es, wait(es, 10.0))
    # Same sticky id, type and data as delivered events, but no id: field: new.
    assert es.receive_data(b"data: x\n\n") == [ev("x", "1")]


def test_replays_do_not_move_the_resume_point_back() -> None:
    es = EventSource(URL)
    session(es, 0.0, FIRST)
    open_stream(es, wait(es, 10.0))
    # The server replays an older event, then the connection drops: the next resume
    # still starts after "3", the last event delivered.
    assert es.receive_data(b"id: 2\nevent: up\ndata: b\n\n") == []
    assert es.last_event_id == "3"
    es.connection_closed(11.0, sseproto.RemoteProtocolError("reset"))
    c = connect(es, wait(es, 11.0))
    assert header(c, "Last-Event-ID") == "3"


@pytest.mark.parametrize("split", CHUNKINGS, ids=CHUNKING_IDS)
def test_an_id_line_in_a_block_without_data_marks_no_event(split: Splitter) -> None:
    # The id of an empty block is sticky, but the next event's block has no id field
    # of its own: it is new, whatever the chunking.
    es = EventSource(URL)
    session(es, 0.0, b"id: 1\ndata: x\n\n")
    open_stream(es, wait(es, 10.0))
    got: list[ServerSentEvent] = []
    for chunk in split(b"id: 1\n\ndata: x\n\n"):
        got.extend(es.receive_data(chunk))
    assert got == [ev("x", "1")]


def test_an_event_with_the_same_id_but_other_data_is_not_a_replay() -> None:
    es = EventSource(URL)
    session(es, 0.0, FIRST)
    open_stream(es, wait(es, 10.0))
    assert es.receive_data(b"id: 3\ndata: changed\n\n") == [ev("changed", "3")]
    es.connection_closed(20.0)
    open_stream(es, wait(es, 20.0))
    assert es.receive_data(b"id: 3\nevent: other\ndata: changed\n\n") == [
        ev("changed", "3", "other")
    ]


def test_events_before_any_resume_are_never_dropped() -> None:
    es = EventSource(URL)
    open_stream(es, 0.0)
    twice = b"id: 1\ndata: a\n\n" * 2
    assert es.receive_data(twice) == [ev("a", "1"), ev("a", "1")]


def test_a_resume_from_the_constructor_drops_nothing_it_never_delivered() -> None:
    es = EventSource(URL, last_event_id="3")
    open_stream(es, 0.0)
    assert es.receive_data(FIRST) == [ev("a", "1"), ev("b", "2", "up"), ev("c", "3")]


def test_replays_are_dropped_when_last_event_id_could_not_be_sent() -> None:
    es = EventSource(URL)
    session(es, 0.0, b"id: 1 \ndata: a\n\nid: 2 \ndata: b\n\n")
    c = open_stream(es, wait(es, 10.0))
    assert header(c, "Last-Event-ID") is None
    # The server starts from the beginning: what was delivered is not again.
    body = b"id: 1 \ndata: a\n\nid: 2 \ndata: b\n\nid: 3\ndata: c\n\n"
    assert es.receive_data(body) == [ev("c", "3")]


# -- limits ----------------------------------------------------------------------------


def test_a_line_past_max_line_bytes_stops_with_the_complete_events() -> None:
    es = EventSource(URL, max_line_bytes=32)
    session(es, 0.0, b"id: 1\ndata: a\n\nid: 2\ndata: b\n\n")
    open_stream(es, wait(es, 10.0))
    body = b"id: 2\ndata: b\n\n" + b"id: 3\ndata: c\n\n" + b"data: " + b"x" * 100 + b"\n\n"
    with pytest.raises(sseproto.EventStreamError) as caught:
        es.receive_data(body)
    assert caught.value.events == [ev("c", "3")]  # the replay of 2 left out
    assert es.last_event_id == "3"
    assert stopped(es, 13.0) is caught.value
    es.connection_closed(14.0)  # harmless now
    assert stopped(es, 14.0) is caught.value


def test_a_line_past_max_line_bytes_in_pieces() -> None:
    es = EventSource(URL, max_line_bytes=16)
    open_stream(es, 0.0)
    assert es.receive_data(b"data: ok\n\ndata: ") == [ev("ok")]
    assert es.receive_data(b"xxxxxxxx") == []  # 14 bytes: still within the limit
    with pytest.raises(sseproto.EventStreamError) as caught:
        es.receive_data(b"xxx")
    assert caught.value.events == []
    assert stopped(es, 0.0) is caught.value


def test_an_event_past_max_event_bytes_stops() -> None:
    es = EventSource(URL, max_event_bytes=10)
    open_stream(es, 0.0)
    with pytest.raises(sseproto.EventStreamError) as caught:
        es.receive_data(b"data: a\n\n" + b"data: 0123456789\n\n")
    assert caught.value.events == [ev("a")]
    assert stopped(es, 0.0) is caught.value


# -- the caller's rule: reconnect_after -------------------------------------------------


def test_reconnect_after_is_asked_on_a_clean_end() -> None:
    asked: list[ServerSentEvent | None] = []

    def rule(last: ServerSentEvent | None) -> bool:
        asked.append(last)
        return True

    es = EventSource(URL, reconnect_after=rule, rng=UpperRandom())
    session(es, 0.0, b"id: 1\ndata: a\n\nevent: error\ndata: b\n\n")
    assert asked == [ev("b", "1", "error")]
    session(es, wait(es, 10.0), b": nothing\n")  # delivered nothing: None
    assert asked == [ev("b", "1", "error"), None]
    # A broken connection is not a clean end: not asked.
    session(es, wait(es, 20.0), b"data: c\n\n", error=sseproto.ReadTimeout("idle"))
    assert len(asked) == 2
    assert isinstance(es.next_action(30.0), Wait)


def test_reconnect_after_false_stops() -> None:
    def rule(last: ServerSentEvent | None) -> bool:
        return last is None or last.event != "error"

    es = EventSource(URL, reconnect_after=rule)
    session(es, 0.0, b"data: a\n\n")
    open_stream(es, wait(es, 10.0))
    assert es.receive_data(b"event: error\ndata: {}\n\n") == [ev("{}", event="error")]
    es.connection_closed(15.0)
    assert stopped(es, 15.0) is None


# -- close, and reports that come with no connection -------------------------------------


def test_close_stops_without_an_error() -> None:
    es = EventSource(URL)
    es.close()
    assert stopped(es, 0.0) is None
    es.connection_closed(1.0, sseproto.ConnectError("late"))
    es.close()
    assert stopped(es, 1.0) is None


def test_close_while_open_stops() -> None:
    es = EventSource(URL)
    open_stream(es, 0.0)
    es.receive_data(b"data: a\n\n")
    es.close()
    es.connection_closed(1.0)  # the driver reports the end: harmless
    assert stopped(es, 1.0) is None


def test_connection_closed_with_no_connection_is_harmless() -> None:
    es = EventSource(URL)
    es.connection_closed(0.0, sseproto.ConnectError("nothing"))
    es.connection_closed(0.0)
    assert connect(es, 0.0).url == URL  # no failure recorded, no wait
    # After a refused (transient) answer, the driver's close report changes nothing.
    es.receive_response(503, [], 0.0)
    until = wait(es, 0.0)
    es.connection_closed(0.0, sseproto.RemoteProtocolError("closed"))
    assert wait(es, 0.0) == until
    # After a stop, neither.
    connect(es, until)
    es.receive_response(404, [], until)
    es.connection_closed(until)
    error = stopped(es, until)
    assert isinstance(error, sseproto.HTTPStatusError)
    assert error.status_code == 404


# -- misuse ---------------------------------------------------------------------------


def test_receive_data_with_no_stream_open_is_a_usage_error() -> None:
    es = EventSource(URL)
    with pytest.raises(sseproto.UsageError):
        es.receive_data(b"data: a\n\n")
    connect(es, 0.0)
    with pytest.raises(sseproto.UsageError):
        es.receive_data(b"data: a\n\n")


def test_receive_response_with_no_connect_pending_is_a_usage_error() -> None:
    es = EventSource(URL)
    with pytest.raises(sseproto.UsageError):
        es.receive_response(200, STREAM_HEADERS, 0.0)
    open_stream(es, 0.0)
    with pytest.raises(sseproto.UsageError):
        es.receive_response(200, STREAM_HEADERS, 0.0)


def test_next_action_while_connecting_or_open_is_a_usage_error() -> None:
    es = EventSource(URL)
    connect(es, 0.0)
    with pytest.raises(sseproto.UsageError) as caught:
        es.next_action(0.0)
    assert isinstance(caught.value, sseproto.SSEProtoError)
    es.receive_response(200, STREAM_HEADERS, 0.0)
    with pytest.raises(sseproto.UsageError):
        es.next_action(1.0)
    es.connection_closed(1.0)
    assert isinstance(es.next_action(1.0), Wait)


# -- the constructor ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/events",
        "http://10.0.0.1/events",
        "ftp://example.com/events",
        "https://example.com:99999/events",
        "https://example.com:port/events",
        "https:///events",
        "example.com/events",
        "",
    ],
)
def test_a_bad_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(sseproto.ConfigurationError):
        EventSource(url)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Key": "s3cr3t "},
        {"X-Key": " s3cr3t"},
        {"X-Key": "s3\ncr3t"},
        {"X-Key": "s3cr3t\r\nInjected: yes"},
        {"X-Key": "s3cr3t\x00"},
        {"Host": "example.com"},
        {"host": "example.com"},
        {"Content-Length": "0"},
        {"Transfer-Encoding": "chunked"},
        {"Last-Event-ID": "5"},
        {"Bad Name": "x"},
        {"": "x"},
    ],
)
def test_a_bad_header_is_a_configuration_error(headers: dict[str, str]) -> None:
    with pytest.raises(sseproto.ConfigurationError) as caught:
        EventSource(URL, headers=headers)
    assert "s3" not in str(caught.value)
    assert "cr3t" not in str(caught.value)


def test_a_secret_in_a_bad_header_is_never_shown() -> None:
    with pytest.raises(sseproto.ConfigurationError) as caught:
        EventSource("https://h/e", headers={"Authorization": "Bearer sk-secret "})
    assert "sk-secret" not in str(caught.value)
    assert "sk-secret" not in repr(caught.value)
    assert "Authorization" in str(caught.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"retry": -1.0},
        {"retry": float("nan")},
        {"retry": float("inf")},
        {"max_backoff": -5.0},
        {"max_backoff": 0.0},
        {"max_attempts": -1},
        {"max_redirects": -1},
        {"last_event_id": "a\nb"},
        {"last_event_id": "a\x00b"},
        {"max_line_bytes": 0},
        {"max_event_bytes": -1},
    ],
    ids=lambda kwargs: "-".join(f"{k}={v!r}" for k, v in kwargs.items()),
)
def test_a_bad_setting_is_a_configuration_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(sseproto.ConfigurationError):
        EventSource(URL, **kwargs)  # type: ignore[arg-type]


def test_the_repr_shows_no_query_or_secret() -> None:
    es = EventSource("https://example.com/e?token=sk-abc", headers={"Authorization": "Bearer x"})
    assert "sk-abc" not in repr(es)
    assert "Bearer" not in repr(es)


# -- a model server, played by hypothesis -----------------------------------------------

ORIGIN = ("https", "example.com", 443)
TYPES = ["message", "update", "message", "progress"]
MODEL = [
    ServerSentEvent(
        event=TYPES[i % len(TYPES)],
        data=f"payload {i % 5}" if i % 3 else f"line {i % 2}\nsecond é",
        id=f"ev-{i}",
    )
    for i in range(40)
]
MODEL_INDEX = {e.id: i for i, e in enumerate(MODEL)}


@dataclass(frozen=True)
class Answer:
    """What the model server does with a request (by default: a stream)."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "text/event-stream; charset=utf-8"),)
    redirect: bool = False  # a same-origin redirect, followed at once
    failure: Callable[[str], sseproto.SSEProtoError] | None = None  # no answer at all


def location(value: str) -> tuple[tuple[str, str], ...]:
    return (("Location", value),)


def retry_after(value: str) -> tuple[tuple[str, str], ...]:
    return (("Retry-After", value),)


STREAM = Answer()
OTHER_ANSWERS: list[Answer] = [
    Answer(failure=sseproto.ConnectError),
    Answer(failure=sseproto.ReadTimeout),
    Answer(failure=sseproto.RemoteProtocolError),
    Answer(301, location("/moved"), redirect=True),
    Answer(302, location("https://example.com/events?from=redirect"), redirect=True),
    Answer(307, location("again"), redirect=True),
    Answer(408, ()),
    Answer(429, ()),
    Answer(429, retry_after("5")),
    Answer(500, ()),
    Answer(503, ()),
    Answer(503, retry_after("2")),
    Answer(503, retry_after("86400")),
    Answer(503, retry_after("999999999")),
    # The answers that end it all.
    Answer(200, (("Content-Type", "text/plain"),)),
    Answer(204, ()),
    Answer(302, location("https://other.example/events")),
    Answer(401, ()),
    Answer(404, ()),
]


def encode(event: ServerSentEvent) -> bytes:
    return sseproto.encode_event(event.data, event=event.event, id=event.id)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@dataclass(frozen=True)
class Batch:
    """What the model server sends in one go on an open stream."""

    pause: float  # seconds since the last batch (or the answer)
    count: int  # events of the model sequence
    retry: int | None  # a retry: field before them
    comment: bool  # a heartbeat comment before them
    cuts: list[int]  # where the bytes are split into chunks


BATCHES = st.builds(
    Batch,
    pause=st.sampled_from([0.0, 0.05, 0.5, 2.0, 30.0]),
    count=st.integers(0, 4),
    retry=st.none() | st.sampled_from([0, 1, 150, 2500, 10**12, 99999999999]),
    comment=st.booleans(),
    cuts=st.lists(st.integers(0, 10_000), max_size=5),
)


@dataclass(frozen=True)
class Plan:
    """One connection attempt: how the driver waits, what the server answers, what
    it streams and how the connection ends."""

    early: float | None  # ask once before the Wait is over (a fraction of it)
    latency: float  # seconds from the connect to the answer (or the failure)
    answer: Answer
    replay: int  # events the server sends again before the first new one
    batches: list[Batch]
    end: Callable[[str], sseproto.SSEProtoError] | None  # None: a clean end
    partial: int  # bytes of a half event before the end
    read_body: bool  # of a refused answer
    report_close: bool  # after a refused answer


PLANS = st.builds(
    Plan,
    early=st.none() | st.floats(0.0, 0.99),
    latency=st.sampled_from([0.0, 0.03, 0.2, 5.0]),
    answer=st.just(STREAM) | st.sampled_from(OTHER_ANSWERS),  # half of them streams
    replay=st.integers(0, 3),
    batches=st.lists(BATCHES, max_size=4),
    end=st.sampled_from([None, sseproto.ReadTimeout, sseproto.RemoteProtocolError]),
    partial=st.integers(0, 40),
    read_body=st.booleans(),
    report_close=st.booleans(),
)


@settings(max_examples=150, stateful_step_count=30, deadline=None)
class EventSourceModel(RuleBasedStateMachine):
    """A server with one sequence of events (unique ids) that resumes after the
    ``Last-Event-ID`` it is sent, replays a few events now and then, answers with
    every kind of status, and breaks connections anywhere. Each step is one attempt:
    the driver waits as told, connects, and the server answers (and streams)."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.stop: Stop | None = None
        self.delivered: list[ServerSentEvent] = []
        self.last_connect: float | None = None
        self.after_redirect = False
        self.max_backoff = MAX_BACKOFF
        self.es = EventSource(URL)

    @initialize(
        seed=st.integers(0, 2**32 - 1),
        max_backoff=st.sampled_from([MAX_BACKOFF, 5.0, 0.5]),
        retry=st.sampled_from([DEFAULT_RETRY, 0.0, 0.2]),
        max_attempts=st.sampled_from([8, 20, 2]),
        plans=st.lists(PLANS, min_size=3, max_size=10),
    )
    def start(
        self, seed: int, max_backoff: float, retry: float, max_attempts: int, plans: list[Plan]
    ) -> None:
        self.max_backoff = max_backoff
        self.es = EventSource(
            URL,
            headers={"Authorization": "Bearer t0ken"},
            retry=retry,
            max_backoff=max_backoff,
            max_attempts=max_attempts,
            rng=random.Random(seed),
        )
        self.attempts(plans)

    def feed(self, chunk: bytes) -> None:
        self.delivered.extend(self.es.receive_data(chunk))

    def next_connect(self, early: float | None) -> Connect | None:
        """Wait as told (once asking early) until Connect; None on Stop."""
        waits = 0
        while True:
            action = self.es.next_action(self.now)
            if isinstance(action, Stop):
                error = action.error
                assert error is None or isinstance(error, sseproto.SSEProtoError)
                if isinstance(error, sseproto.ReconnectError):
                    assert isinstance(error.last_error, sseproto.SSEProtoError)
                self.stop = action
                return None
            if isinstance(action, Connect):
                return action
            assert action.until > self.now
            assert action.until - self.now <= self.max_backoff + EPS
            waits += 1
            assert waits == 1  # once the driver slept as told, it may go on
            if early is not None:  # asked before the time: the same answer
                assert self.es.next_action(self.now + early * (action.until - self.now)) == action
            self.now = action.until

    @precondition(lambda self: self.stop is None)
    @rule(plans=st.lists(PLANS, min_size=1, max_size=6))
    def attempts(self, plans: list[Plan]) -> None:
        for plan in plans:
            if self.stop is None:
                self.attempt(plan)

    def attempt(self, plan: Plan) -> None:
        action = self.next_connect(plan.early)
        if action is None:
            return
        # The request: valid HTTP, on the original origin, at a sane pace.
        parts = urlsplit(action.url)
        assert (parts.scheme, parts.hostname, parts.port or 443) == ORIGIN
        assert header(action, "Authorization") == "Bearer t0ken"
        h11_check(action)
        if self.last_connect is not None and not self.after_redirect:
            assert self.now - self.last_connect >= MIN_CONNECT_INTERVAL - EPS
        self.last_connect = self.now
        self.after_redirect = False
        sent_id = header(action, "Last-Event-ID")
        # The client resumes from the last event it delivered (a replay it dropped
        # never moves that point back).
        if self.delivered:
            assert sent_id == self.delivered[-1].id
        else:
            assert sent_id is None

        # The answer.
        self.now += plan.latency
        answer = plan.answer
        if answer.failure is not None:
            self.es.connection_closed(self.now, answer.failure("boom"))
            return
        if not self.es.receive_response(answer.status, answer.headers, self.now):
            assert answer.headers != Answer.headers
            if plan.read_body and self.es.wants_error_body:
                self.es.receive_error_body(b'{"error": "no"}')
            if plan.report_close:
                self.es.connection_closed(self.now)
            self.after_redirect = answer.redirect
            return
        assert answer.headers == Answer.headers

        # The stream: from after the id sent, some events earlier (replays).
        position = 0 if sent_id is None else MODEL_INDEX[sent_id] + 1
        position = max(0, position - plan.replay)
        for batch in plan.batches:
            self.now += batch.pause
            body = b": keep-alive\n" if batch.comment else b""
            if batch.retry is not None:
                body += f"retry: {batch.retry}\n".encode()
            for event in MODEL[position : position + batch.count]:
                body += encode(event)
            position = min(len(MODEL), position + batch.count)
            for chunk in split_at(body, batch.cuts):
                self.feed(chunk)
        if plan.partial and position < len(MODEL):  # a half event: never its blank line
            block = encode(MODEL[position])
            self.feed(block[: min(plan.partial, len(block) - 1)])
        self.es.connection_closed(self.now, None if plan.end is None else plan.end("dropped"))

    @rule(dt=st.sampled_from([0.0, 0.01, 0.5, 3.0, 100.0]))
    def advance(self, dt: float) -> None:
        self.now += dt

    @precondition(lambda self: self.stop is not None)
    @rule()
    def stays_stopped(self) -> None:
        self.es.connection_closed(self.now, sseproto.ConnectError("late"))
        assert self.es.next_action(self.now) == self.stop

    @invariant()
    def delivered_exactly_once_in_order(self) -> None:
        assert self.delivered == MODEL[: len(self.delivered)]


TestEventSourceModel = EventSourceModel.TestCase
