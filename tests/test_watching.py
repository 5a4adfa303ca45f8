"""The task-watch policy (``sseproto._watching.WatchPolicy``), driven by hand.

No I/O and no clock: the tests tell the policy what happened (stream items, the
stream's end, polled snapshots, results, failed calls) and a time, and check what it
says to do next. One test (or a parametrized group) per rule of the module docstring.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

import sseproto
from sseproto import ServerSentEvent, TaskEvent, TaskEventError, Wait
from sseproto._rules import MAX_BACKOFF, MAX_POLL_FAILURES
from sseproto._watching import (
    FetchResult,
    FetchTask,
    Finish,
    FollowStream,
    WatchPolicy,
    reconnect_after,
)

TASK = "8f14e45f-ceea-467a-9575-8c9d3b1a2f30"
INTERVAL = 3.0
RESULT = sseproto.decode_task_result(
    {"id": TASK, "task_output": {"images": ["a.png"]}, "download_url": "https://dl/x"}
)


def decode_item(sse: ServerSentEvent) -> TaskEvent | TaskEventError:
    """An item of the task stream, as Client.task_events yields it."""
    try:
        return sseproto.decode_task_event(sse)
    except TaskEventError as exc:
        return exc


def ends_stream(item: TaskEvent | TaskEventError) -> bool:
    """Whether Client.task_events stops after this item."""
    return not isinstance(item, TaskEventError) and item.is_terminal


def event(kind: str, payload: Any) -> TaskEvent:
    sse = ServerSentEvent(event=kind, data=json.dumps(payload))
    return sseproto.decode_task_event(sse)


def running() -> TaskEvent:
    return event(
        "status", {"task_id": TASK, "status": "running", "timestamp": "2026-01-01T00:00:00Z"}
    )


def progress(value: float) -> TaskEvent:
    return event("progress", {"task_id": TASK, "progress": value})


def completed() -> TaskEvent:
    return event("completed", {"task_id": TASK, "status": "completed", "output": {"k": 1}})


def failed(error: str = "out of memory") -> TaskEvent:
    return event("failed", {"task_id": TASK, "status": "failed", "error": error})


def cancelled() -> TaskEvent:
    return event("cancelled", {"task_id": TASK, "status": "cancelled"})


def snapshot(status: str, error: str = "") -> sseproto.TaskSnapshot:
    return sseproto.decode_task_snapshot({"id": TASK, "task_status": status, "task_error": error})


def http_error(status: int, retry_after: float | None = None) -> sseproto.HTTPStatusError:
    return sseproto.HTTPStatusError(
        f"GET /tasks answered HTTP {status}", status_code=status, retry_after=retry_after
    )


def follow(policy: WatchPolicy, now: float = 0.0) -> None:
    assert isinstance(policy.next_action(now), FollowStream)


def to_polling(policy: WatchPolicy, now: float = 0.0) -> None:
    """Follow the stream, which ends without a terminal event: polling starts."""
    follow(policy, now)
    policy.stream_ended()
    assert isinstance(policy.next_action(now), FetchTask)


def finish(policy: WatchPolicy, now: float) -> Finish:
    action = policy.next_action(now)
    assert isinstance(action, Finish), action
    assert policy.next_action(now + 100.0) == action  # asked again: the same
    return action


def wait_until(policy: WatchPolicy, now: float) -> float:
    action = policy.next_action(now)
    assert isinstance(action, Wait), action
    assert action.until > now
    return action.until


def messages(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sseproto" and r.levelno >= level]


# -- the stream --------------------------------------------------------------------


def test_first_action_is_to_follow_the_stream() -> None:
    policy = WatchPolicy(TASK)
    assert policy.next_action(0.0) == FollowStream()


def test_stream_to_completed_then_the_result() -> None:
    policy = WatchPolicy(TASK)
    follow(policy)
    assert policy.stream_item(running()) is True
    assert policy.stream_item(progress(0.5)) is True
    assert policy.stream_item(completed()) is False  # stop reading
    policy.stream_ended()
    assert policy.next_action(1.0) == FetchResult()
    policy.result_fetched(RESULT)
    done = finish(policy, 2.0)
    assert done.result is RESULT
    assert done.error is None


def test_stream_to_failed_raises_task_failed() -> None:
    policy = WatchPolicy(TASK)
    follow(policy)
    policy.stream_item(running())
    terminal = failed("CUDA out of memory")
    assert policy.stream_item(terminal) is False
    policy.stream_ended()
    done = finish(policy, 1.0)
    assert done.result is None
    assert isinstance(done.error, sseproto.TaskFailed)
    assert done.error.error == "CUDA out of memory"
    assert done.error.task_id == TASK
    assert done.error.snapshot is terminal
    assert "CUDA out of memory" in str(done.error)


def test_stream_to_failed_without_a_reason() -> None:
    policy = WatchPolicy(TASK)
    follow(policy)
    policy.stream_item(event("failed", {"task_id": TASK, "status": "failed"}))
    policy.stream_ended()
    error = finish(policy, 1.0).error
    assert isinstance(error, sseproto.TaskFailed)
    assert error.error == ""


def test_stream_to_cancelled_raises_task_cancelled() -> None:
    policy = WatchPolicy(TASK)
    follow(policy)
    assert policy.stream_item(cancelled()) is False
    policy.stream_ended()
    error = finish(policy, 1.0).error
    assert isinstance(error, sseproto.TaskCancelled)
    assert not isinstance(error, sseproto.TaskFailed)
    assert error.task_id == TASK


def test_the_terminal_event_decides_even_if_the_stream_then_breaks() -> None:
    policy = WatchPolicy(TASK)
    follow(policy)
    policy.stream_item(completed())
    policy.stream_ended(sseproto.RemoteProtocolError("reset after the last event"))
    assert policy.next_action(1.0) == FetchResult()


@pytest.mark.parametrize("kind", ["completed", "failed", "cancelled"])
def test_a_malformed_terminal_event_is_confirmed_by_polling(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    item = decode_item(ServerSentEvent(event=kind, data="{not json"))
    assert isinstance(item, TaskEventError)
    assert not ends_stream(item)
    policy = WatchPolicy(TASK)
    follow(policy)
    with caplog.at_level(logging.INFO, logger="sseproto"):
        assert policy.stream_item(item) is False  # stop the stream
        policy.stream_ended()
    assert policy.next_action(0.0) == FetchTask()
    assert any("malformed terminal" in m for m in messages(caplog, logging.WARNING))
    policy.task_fetched(snapshot("completed"), 1.0)
    assert policy.next_action(1.0) == FetchResult()


def test_a_terminal_event_missing_its_task_id_is_confirmed_by_polling() -> None:
    item = decode_item(ServerSentEvent(event="completed", data=json.dumps({"output": 1})))
    assert isinstance(item, TaskEventError)
    policy = WatchPolicy(TASK)
    follow(policy)
    assert policy.stream_item(item) is False
    policy.stream_ended()
    assert policy.next_action(0.0) == FetchTask()


def test_other_malformed_events_and_error_events_are_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = decode_item(ServerSentEvent(event="progress", data='{"task_id": "x"}'))
    assert isinstance(bad, TaskEventError)
    error_event = decode_item(ServerSentEvent(event="error", data='{"message": "db down"}'))
    assert isinstance(error_event, sseproto.StreamError)
    unknown = decode_item(ServerSentEvent(event="heartbeat", data="{}"))
    assert isinstance(unknown, sseproto.UnknownEvent)
    policy = WatchPolicy(TASK)
    follow(policy)
    with caplog.at_level(logging.INFO, logger="sseproto"):
        assert policy.stream_item(bad) is True
        assert policy.stream_item(error_event) is True
        assert policy.stream_item(unknown) is True
    warned = messages(caplog, logging.WARNING)
    assert any("malformed" in m for m in warned)
    assert any("db down" in m for m in warned)
    assert policy.stream_item(completed()) is False


def test_decode_item_and_ends_stream() -> None:
    good = decode_item(ServerSentEvent(event="completed", data=json.dumps({"task_id": TASK})))
    assert isinstance(good, sseproto.Completed)
    assert ends_stream(good)
    assert ends_stream(failed())
    assert ends_stream(cancelled())
    assert not ends_stream(running())
    assert not ends_stream(progress(1.0))
    # A status event that says "completed" is not the terminal event itself.
    assert not ends_stream(event("status", {"task_id": TASK, "status": "completed"}))


def test_reconnect_after_stops_only_after_an_error_event() -> None:
    assert reconnect_after(None) is True
    assert reconnect_after(ServerSentEvent(event="progress", data="{}")) is True
    assert reconnect_after(ServerSentEvent(event="error", data="{}")) is False


@pytest.mark.parametrize(
    "error",
    [
        None,
        sseproto.StreamUnavailable("204: no stream"),
        sseproto.ContentTypeError("text/html", status_code=200),
        sseproto.ReconnectError("gave up", attempts=8, last_error=sseproto.ConnectError("x")),
        http_error(404),
        http_error(405),
        http_error(501),
    ],
    ids=["clean_end", "unavailable", "content_type", "reconnect", "404", "405", "501"],
)
def test_a_stream_that_is_not_available_falls_back_to_polling(
    error: sseproto.SSEProtoError | None, caplog: pytest.LogCaptureFixture
) -> None:
    policy = WatchPolicy(TASK)
    follow(policy)
    policy.stream_item(running())
    with caplog.at_level(logging.INFO, logger="sseproto"):
        policy.stream_ended(error)
    assert policy.next_action(0.0) == FetchTask()
    assert any("polling" in m for m in messages(caplog))


@pytest.mark.parametrize(
    "error",
    [
        http_error(401),
        http_error(403),
        http_error(400),
        http_error(410),
        sseproto.TLSHandshakeError("no shared cipher"),
        sseproto.CertificateError("untrusted"),
        sseproto.EventStreamError("line too long"),
    ],
    ids=["401", "403", "400", "410", "tls", "certificate", "event_stream"],
)
def test_other_stream_failures_are_final(error: sseproto.SSEProtoError) -> None:
    policy = WatchPolicy(TASK)
    follow(policy)
    policy.stream_ended(error)
    done = finish(policy, 0.0)
    assert done.error is error
    assert done.result is None


# -- polling ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["pending", "queued", "running", "provisioning", "Waiting"])
def test_a_task_not_done_is_polled_every_poll_interval(status: str) -> None:
    policy = WatchPolicy(TASK, poll_interval=5.0)
    to_polling(policy, 10.0)
    policy.task_fetched(snapshot(status), 10.5)
    assert wait_until(policy, 10.5) == 15.5
    assert wait_until(policy, 14.0) == 15.5  # asked early: the same
    assert policy.next_action(15.5) == FetchTask()
    policy.task_fetched(snapshot(status), 16.0)
    assert wait_until(policy, 16.0) == 21.0


def test_a_completed_snapshot_fetches_the_result() -> None:
    policy = WatchPolicy(TASK)
    to_polling(policy)
    policy.task_fetched(snapshot("running"), 0.0)
    assert policy.next_action(INTERVAL) == FetchTask()
    policy.task_fetched(snapshot("completed"), INTERVAL)
    assert policy.next_action(INTERVAL) == FetchResult()  # no wait
    policy.result_fetched(RESULT)
    assert finish(policy, INTERVAL).result is RESULT


@pytest.mark.parametrize(("error", "shown"), [("disk full", "disk full"), ("", "no reason")])
def test_a_failed_snapshot_raises_task_failed(error: str, shown: str) -> None:
    policy = WatchPolicy(TASK)
    to_polling(policy)
    snap = snapshot("failed", error)
    policy.task_fetched(snap, 0.0)
    failure = finish(policy, 0.0).error
    assert isinstance(failure, sseproto.TaskFailed)
    assert failure.error == error
    assert failure.snapshot is snap
    assert shown in str(failure)


@pytest.mark.parametrize("status", ["cancelled", "canceled", "CANCELLED"])
def test_a_cancelled_snapshot_raises_task_cancelled(status: str) -> None:
    policy = WatchPolicy(TASK)
    to_polling(policy)
    policy.task_fetched(snapshot(status), 0.0)
    assert isinstance(finish(policy, 0.0).error, sseproto.TaskCancelled)


# -- failed calls ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "delay"),
    [
        (sseproto.ConnectError("refused"), INTERVAL),
        (sseproto.ReadTimeout("slow"), INTERVAL),
        (sseproto.RemoteProtocolError("reset"), INTERVAL),
        (http_error(503), INTERVAL),
        (http_error(503, retry_after=10.0), 10.0),
        (http_error(429, retry_after=1.0), INTERVAL),  # never sooner than the interval
        (http_error(429, retry_after=45.0), 45.0),
        (http_error(502), INTERVAL),
        (http_error(408), INTERVAL),
    ],
    ids=[
        "connect",
        "read_timeout",
        "protocol",
        "503",
        "503_retry_after",
        "429_short",
        "429_long",
        "502",
        "408",
    ],
)
def test_a_transient_polling_failure_is_retried_and_logged(
    error: sseproto.SSEProtoError, delay: float, caplog: pytest.LogCaptureFixture
) -> None:
    policy = WatchPolicy(TASK)
    to_polling(policy)
    with caplog.at_level(logging.INFO, logger="sseproto"):
        policy.call_failed(error, 7.0)
    assert wait_until(policy, 7.0) == 7.0 + delay
    assert policy.next_action(7.0 + delay) == FetchTask()
    logged = messages(caplog)
    assert len(logged) == 1
    assert "trying again" in logged[0]


def test_every_retry_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    policy = WatchPolicy(TASK)
    to_polling(policy)
    now = 0.0
    with caplog.at_level(logging.INFO, logger="sseproto"):
        for _ in range(4):
            policy.call_failed(sseproto.ConnectError("refused"), now)
            now = wait_until(policy, now)
            assert policy.next_action(now) == FetchTask()
    assert len([m for m in messages(caplog) if "trying again" in m]) == 4


def test_max_poll_failures_in_a_row_give_up() -> None:
    policy = WatchPolicy(TASK)
    to_polling(policy)
    now = 0.0
    for _ in range(MAX_POLL_FAILURES - 1):
        policy.call_failed(http_error(503), now)
        now = wait_until(policy, now)
        assert policy.next_action(now) == FetchTask()
    last = sseproto.ConnectError("still refused")
    policy.call_failed(last, now)
    assert finish(policy, now).error is last


def test_a_success_resets_the_failure_count() -> None:
    policy = WatchPolicy(TASK, max_failures=3)
    to_polling(policy)
    now = 0.0
    for _ in range(5):  # two failures, then a snapshot, five times: never 3 in a row
        for _ in range(2):
            policy.call_failed(sseproto.ConnectError("refused"), now)
            now = wait_until(policy, now)
            assert policy.next_action(now) == FetchTask()
        policy.task_fetched(snapshot("running"), now)
        now = wait_until(policy, now)
        assert policy.next_action(now) == FetchTask()
    for _ in range(2):
        policy.call_failed(sseproto.ConnectError("refused"), now)
        now = wait_until(policy, now)
        policy.next_action(now)
    policy.call_failed(sseproto.ConnectError("refused"), now)
    assert isinstance(finish(policy, now).error, sseproto.ConnectError)


@pytest.mark.parametrize(
    "error",
    [
        http_error(401),
        http_error(403),
        http_error(404),
        sseproto.TLSHandshakeError("handshake"),
        sseproto.CertificateError("expired"),
        TaskEventError("the task payload has no status"),
    ],
    ids=["401", "403", "404", "tls", "certificate", "bad_payload"],
)
def test_a_non_transient_failure_is_final(error: sseproto.SSEProtoError) -> None:
    policy = WatchPolicy(TASK)
    to_polling(policy)
    policy.call_failed(error, 0.0)
    assert finish(policy, 0.0).error is error


def test_a_huge_retry_after_is_capped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    policy = WatchPolicy(TASK)
    to_polling(policy)
    with caplog.at_level(logging.INFO, logger="sseproto"):
        policy.call_failed(http_error(503, retry_after=86400.0), 100.0)
    assert wait_until(policy, 100.0) == 100.0 + MAX_BACKOFF
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 1
    assert "86400" in warnings[0]


def test_a_retry_after_past_a_custom_max_backoff_is_capped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = WatchPolicy(TASK, poll_interval=1.0, max_backoff=20.0)
    to_polling(policy)
    with caplog.at_level(logging.INFO, logger="sseproto"):
        policy.call_failed(http_error(429, retry_after=30.0), 0.0)
    assert wait_until(policy, 0.0) == 20.0
    assert messages(caplog, logging.WARNING)


def test_a_retry_after_within_max_backoff_is_not_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = WatchPolicy(TASK)
    to_polling(policy)
    with caplog.at_level(logging.INFO, logger="sseproto"):
        policy.call_failed(http_error(503, retry_after=MAX_BACKOFF), 0.0)
    assert wait_until(policy, 0.0) == MAX_BACKOFF
    assert not messages(caplog, logging.WARNING)
    assert messages(caplog)  # the retry itself is still logged


def test_a_failed_result_call_is_retried_as_a_result_call(caplog: pytest.LogCaptureFixture) -> None:
    policy = WatchPolicy(TASK)
    follow(policy)
    policy.stream_item(completed())
    policy.stream_ended()
    assert policy.next_action(0.0) == FetchResult()
    with caplog.at_level(logging.INFO, logger="sseproto"):
        policy.call_failed(http_error(503, retry_after=5.0), 0.0)
    assert wait_until(policy, 0.0) == 5.0
    assert policy.next_action(5.0) == FetchResult()  # the result again, not the task
    assert any("result" in m for m in messages(caplog))
    policy.result_fetched(RESULT)
    assert finish(policy, 5.0).result is RESULT


def test_a_result_call_that_keeps_failing_gives_up() -> None:
    policy = WatchPolicy(TASK, max_failures=2)
    to_polling(policy)
    policy.call_failed(sseproto.ConnectError("refused"), 0.0)  # one polling failure
    now = wait_until(policy, 0.0)
    policy.task_fetched(snapshot("completed"), now)  # resets the count
    assert policy.next_action(now) == FetchResult()
    policy.call_failed(sseproto.ConnectError("refused"), now)
    now = wait_until(policy, now)
    assert policy.next_action(now) == FetchResult()
    last = http_error(500)
    policy.call_failed(last, now)
    assert finish(policy, now).error is last


def test_a_non_transient_result_failure_is_final() -> None:
    policy = WatchPolicy(TASK)
    to_polling(policy)
    policy.task_fetched(snapshot("completed"), 0.0)
    policy.next_action(0.0)
    gone = http_error(404)
    policy.call_failed(gone, 0.0)
    assert finish(policy, 0.0).error is gone


# -- misuse ------------------------------------------------------------------------------


def test_next_action_while_the_stream_is_followed_is_a_usage_error() -> None:
    policy = WatchPolicy(TASK)
    follow(policy)
    with pytest.raises(sseproto.UsageError):
        policy.next_action(1.0)


def test_stream_ended_without_a_stream_is_a_usage_error() -> None:
    policy = WatchPolicy(TASK)
    with pytest.raises(sseproto.UsageError):
        policy.stream_ended()
    to_polling(policy)
    with pytest.raises(sseproto.UsageError) as caught:
        policy.stream_ended()
    assert isinstance(caught.value, sseproto.SSEProtoError)


def test_the_repr_names_the_task_and_phase() -> None:
    policy = WatchPolicy(TASK)
    assert TASK in repr(policy)
    follow(policy)
    assert "streaming" in repr(policy)


@pytest.mark.parametrize("interval", [0, -1.0, float("nan"), float("inf"), "3"])
def test_a_poll_interval_that_cannot_work_is_refused(interval: Any) -> None:
    with pytest.raises(sseproto.ConfigurationError, match="poll_interval"):
        WatchPolicy(TASK, poll_interval=interval)


async def test_watch_refuses_it_before_any_request() -> None:
    # No server: a request would be a ConnectError, not this.
    with pytest.raises(sseproto.ConfigurationError, match="poll_interval"):
        await sseproto.watch(
            TASK, api_key="sk-x", base_url="https://127.0.0.1:9/api", poll_interval=-1
        )
