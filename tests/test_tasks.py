"""``sseproto.tasks``: typed task events, polling snapshots, results and webhooks.

Each payload of the API's documentation (DESIGN.md, "The API being spoken") with
realistic values; each tolerance rule (extra fields, optional fields of the wrong
type, unknown event types and statuses, unparseable timestamps); each malformed case
and the field its ``TaskEventError`` names; webhook signatures. Arbitrary input is
covered by ``test_tasks_properties.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import sseproto
from sseproto import (
    Cancelled,
    Completed,
    EventStreamParser,
    Failed,
    Progress,
    ServerSentEvent,
    SSEProtoError,
    StatusChanged,
    StreamError,
    TaskEvent,
    TaskEventError,
    TaskStatus,
    UnknownEvent,
    WebhookSignatureError,
    decode_task_event,
    decode_task_result,
    decode_task_snapshot,
    parse_timestamp,
    verify_webhook,
)

UTC = timezone.utc
TS = "2026-11-28T12:00:05Z"
TS_DT = datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC)
TASK = "8f14e45f-ceea-467a-9575-8c9d3b1a2f30"

#: One realistic payload of each documented event type.
DOCUMENTED: dict[str, dict[str, Any]] = {
    "status": {"task_id": TASK, "status": "running", "timestamp": TS},
    "progress": {
        "task_id": TASK,
        "progress": 0.35,
        "step_current": 7,
        "step_total": 20,
        "current_node": "3",
        "timestamp": TS,
    },
    "completed": {
        "task_id": TASK,
        "status": "completed",
        "completed_at": TS,
        "output": {"9": {"images": [{"filename": "ComfyUI_00001_.png", "type": "output"}]}},
    },
    "failed": {"task_id": TASK, "status": "failed", "error": "CUDA out of memory"},
    "cancelled": {"task_id": TASK, "status": "cancelled"},
    "error": {"message": "failed to read task state"},
}
EXPECTED_CLASS: dict[str, type[Any]] = {
    "status": StatusChanged,
    "progress": Progress,
    "completed": Completed,
    "failed": Failed,
    "cancelled": Cancelled,
    "error": StreamError,
}
KNOWN_TYPES = list(DOCUMENTED)


def make(event: str, data: str | dict[str, Any], id: str = "") -> ServerSentEvent:
    """An event as the parser would give it; a dict is sent as one line of JSON."""
    text = data if isinstance(data, str) else json.dumps(data)
    return ServerSentEvent(event=event, data=text, id=id)


def decode(event: str, data: str | dict[str, Any], id: str = "") -> TaskEvent:
    return decode_task_event(make(event, data, id))


def raw_of(decoded: TaskEvent) -> dict[str, Any]:
    """The raw JSON object of a decoded known event (an UnknownEvent has none)."""
    assert not isinstance(decoded, UnknownEvent)
    return decoded.raw


def parse_stream(stream: bytes, *, bytewise: bool = False) -> list[ServerSentEvent]:
    parser: EventStreamParser[Any] = EventStreamParser()
    chunks = [stream[i : i + 1] for i in range(len(stream))] if bytewise else [stream]
    events: list[ServerSentEvent] = [e for chunk in chunks for e in parser.feed(chunk)]
    parser.close()
    return events


def as_data_lines(event: str, text: str) -> bytes:
    """An event whose data is ``text``, one ``data:`` line per line of it."""
    lines = "".join(f"data: {line}\n" for line in text.split("\n"))
    return f"event: {event}\n{lines}\n".encode()


def signed(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


# -- the documented stream payloads ----------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["pending", "waiting", "queued", "running", "completed", "failed", "cancelled"],
)
def test_status_event_each_documented_status(value: str) -> None:
    payload = {"task_id": TASK, "status": value, "timestamp": TS}
    ev = make("status", payload, id="5")
    decoded = decode_task_event(ev)
    assert isinstance(decoded, StatusChanged)
    assert decoded.task_id == TASK
    assert decoded.status is TaskStatus(value)
    assert decoded.status == value
    assert decoded.status.is_known
    assert decoded.status.is_terminal is (value in {"completed", "failed", "cancelled"})
    assert decoded.timestamp == TS_DT
    assert decoded.sse is ev
    assert decoded.raw == payload


def test_status_event_provisioning_is_kept_not_terminal() -> None:
    decoded = decode("status", {"task_id": TASK, "status": "provisioning", "timestamp": TS})
    assert isinstance(decoded, StatusChanged)
    assert isinstance(decoded.status, TaskStatus)
    assert decoded.status == "provisioning"
    assert not decoded.status.is_known
    assert not decoded.status.is_terminal
    assert not decoded.is_terminal


def test_status_event_canceled_spelling() -> None:
    decoded = decode("status", {"task_id": TASK, "status": "canceled"})
    assert isinstance(decoded, StatusChanged)
    assert decoded.status is TaskStatus.CANCELLED
    assert decoded.status.is_terminal


def test_status_event_status_is_case_insensitive() -> None:
    decoded = decode("status", {"task_id": TASK, "status": "RUNNING"})
    assert isinstance(decoded, StatusChanged)
    assert decoded.status is TaskStatus.RUNNING


@pytest.mark.parametrize("value", ["completed", "failed", "cancelled"])
def test_status_event_with_terminal_status_is_not_itself_terminal(value: str) -> None:
    # Documented choice: only the completed/failed/cancelled events end the stream;
    # a status event says so through its status.
    decoded = decode("status", {"task_id": TASK, "status": value})
    assert isinstance(decoded, StatusChanged)
    assert decoded.is_terminal is False
    assert decoded.status.is_terminal is True


def test_comfyui_progress() -> None:
    ev = make("progress", DOCUMENTED["progress"], id="12")
    decoded = decode_task_event(ev)
    assert decoded == Progress(
        task_id=TASK,
        progress=0.35,
        step_current=7,
        step_total=20,
        current_node="3",
        stage=None,
        message=None,
        timestamp=TS_DT,
    )
    assert isinstance(decoded, Progress)
    assert decoded.sse is ev
    assert decoded.sse.id == "12"
    assert decoded.raw == DOCUMENTED["progress"]
    assert not decoded.is_terminal


@pytest.mark.parametrize("stage", ["download", "process_data", "train", "export", "upload"])
def test_nerfstudio_progress(stage: str) -> None:
    payload = {
        "task_id": TASK,
        "progress": 0.6,
        "stage": stage,
        "message": "Training step 18000/30000",
        "timestamp": TS,
    }
    decoded = decode("progress", payload)
    assert isinstance(decoded, Progress)
    assert (decoded.stage, decoded.message) == (stage, "Training step 18000/30000")
    assert decoded.progress == 0.6
    assert (decoded.step_current, decoded.step_total, decoded.current_node) == (None, None, None)
    assert decoded.timestamp == TS_DT


def test_progress_with_only_required_fields() -> None:
    decoded = decode("progress", {"task_id": TASK, "progress": 0.5})
    assert decoded == Progress(task_id=TASK, progress=0.5)
    assert isinstance(decoded, Progress)
    assert decoded.step_current is None
    assert decoded.step_total is None
    assert decoded.current_node is None
    assert decoded.stage is None
    assert decoded.message is None
    assert decoded.timestamp is None


def test_completed_event() -> None:
    ev = make("completed", DOCUMENTED["completed"], id="99")
    decoded = decode_task_event(ev)
    assert isinstance(decoded, Completed)
    assert decoded.task_id == TASK
    assert decoded.output == DOCUMENTED["completed"]["output"]
    assert decoded.completed_at == TS_DT
    assert decoded.status is TaskStatus.COMPLETED
    assert decoded.is_terminal
    assert decoded.sse is ev
    assert decoded.raw == DOCUMENTED["completed"]


@pytest.mark.parametrize(
    "output",
    [None, [], ["a.png", "b.png"], "done", 3, 2.5, True, {"nested": {"deep": [1, None]}}],
    ids=repr,
)
def test_completed_output_is_any_json(output: Any) -> None:
    decoded = decode("completed", {"task_id": TASK, "status": "completed", "output": output})
    assert isinstance(decoded, Completed)
    assert decoded.output == output
    assert type(decoded.output) is type(output)


def test_completed_without_output_or_completed_at() -> None:
    decoded = decode("completed", {"task_id": TASK, "status": "completed"})
    assert decoded == Completed(task_id=TASK, output=None, completed_at=None)


def test_failed_event() -> None:
    ev = make("failed", DOCUMENTED["failed"])
    decoded = decode_task_event(ev)
    assert isinstance(decoded, Failed)
    assert (decoded.task_id, decoded.error) == (TASK, "CUDA out of memory")
    assert decoded.status is TaskStatus.FAILED
    assert decoded.is_terminal
    assert decoded.sse is ev
    assert decoded.raw == DOCUMENTED["failed"]


@pytest.mark.parametrize("payload", [{}, {"error": None}, {"error": ""}], ids=repr)
def test_failed_without_error_message(payload: dict[str, Any]) -> None:
    decoded = decode("failed", {"task_id": TASK, "status": "failed", **payload})
    assert decoded == Failed(task_id=TASK, error="")


def test_cancelled_event() -> None:
    ev = make("cancelled", DOCUMENTED["cancelled"], id="7")
    decoded = decode_task_event(ev)
    assert decoded == Cancelled(task_id=TASK)
    assert isinstance(decoded, Cancelled)
    assert decoded.status is TaskStatus.CANCELLED
    assert decoded.is_terminal
    assert decoded.sse is ev
    assert decoded.raw == DOCUMENTED["cancelled"]


def test_error_event_is_not_terminal() -> None:
    ev = make("error", DOCUMENTED["error"])
    decoded = decode_task_event(ev)
    assert decoded == StreamError(message="failed to read task state")
    assert isinstance(decoded, StreamError)
    assert not decoded.is_terminal
    assert decoded.sse is ev
    assert decoded.raw == DOCUMENTED["error"]


def test_error_event_without_message() -> None:
    decoded = decode("error", {})
    assert decoded == StreamError(message="")


@pytest.mark.parametrize(
    ("event", "data", "value"),
    [
        pytest.param("message", '{"task_id": "t"}', {"task_id": "t"}, id="default-type-json"),
        pytest.param("message", "hello", None, id="default-type-text"),
        pytest.param("heartbeat", "", None, id="empty-data"),
        pytest.param("task.updated", "[1, 2]", [1, 2], id="json-array"),
        pytest.param("log", "not json {", None, id="not-json"),
        pytest.param("metric", "42", 42, id="json-number"),
        pytest.param("Status", '{"task_id": "t", "status": "running"}', None, id="type-case"),
        pytest.param("deep", "[" * 100_000, None, id="deeply-nested"),
    ],
)
def test_unknown_event_type(event: str, data: str, value: Any) -> None:
    ev = ServerSentEvent(event=event, data=data, id="3")
    decoded = decode_task_event(ev)
    assert isinstance(decoded, UnknownEvent)
    assert (decoded.event, decoded.data) == (event, data)
    if event == "Status":  # event types are case-sensitive: this one is unknown
        value = json.loads(data)
    assert decoded.json == value
    assert decoded.raw == (value if isinstance(value, dict) else {})
    assert decoded.sse is ev
    assert decoded.sse.id == "3"
    assert not decoded.is_terminal


@pytest.mark.parametrize("event", KNOWN_TYPES)
def test_every_decoded_event_keeps_its_sse_and_raw(event: str) -> None:
    payload = {**DOCUMENTED[event], "x-extra": [1, {"k": None}]}
    ev = make(event, payload, id="evt-41")
    decoded = decode_task_event(ev)
    assert isinstance(decoded, EXPECTED_CLASS[event])
    assert decoded.sse is ev
    assert decoded.sse.id == "evt-41"
    assert not isinstance(decoded, UnknownEvent)
    assert decoded.raw == payload


@pytest.mark.parametrize(
    ("cls", "terminal"),
    [
        (StatusChanged, False),
        (Progress, False),
        (Completed, True),
        (Failed, True),
        (Cancelled, True),
        (StreamError, False),
        (UnknownEvent, False),
    ],
)
def test_is_terminal_of_each_event_class(cls: type[Any], terminal: bool) -> None:
    assert cls.is_terminal is terminal
    instances: list[TaskEvent] = [decode(event, DOCUMENTED[event]) for event in KNOWN_TYPES]
    instances.append(decode("unknown", "{}"))
    (instance,) = [i for i in instances if type(i) is cls]
    assert instance.is_terminal is terminal


@pytest.mark.parametrize("event", [*KNOWN_TYPES, "unknown"])
def test_decoded_events_are_immutable(event: str) -> None:
    decoded = decode(event, DOCUMENTED.get(event, {}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.sse = ServerSentEvent()  # type: ignore[misc]


# -- the TaskEvent base and keyword-only construction ------------------------------


@pytest.mark.parametrize("event", [*KNOWN_TYPES, "unknown"])
def test_every_decoded_event_is_a_task_event_of_its_kind(event: str) -> None:
    decoded = decode(event, DOCUMENTED.get(event, {}))
    assert isinstance(decoded, TaskEvent)
    assert decoded.kind == event
    assert type(decoded) is EXPECTED_CLASS.get(event, UnknownEvent)
    if event in EXPECTED_CLASS:
        assert EXPECTED_CLASS[event].kind == event  # a class attribute of the known types
        assert decoded.is_terminal is (event in sseproto.TERMINAL_EVENTS)


def test_an_unknown_event_kind_is_its_event() -> None:
    assert UnknownEvent(event="metric", data="1", json=1).kind == "metric"
    assert decode("Status", "{}").kind == "Status"


@pytest.mark.parametrize(
    "args",
    [
        (StatusChanged, (TASK, TaskStatus.RUNNING)),
        (Progress, (TASK, 0.5)),
        (Completed, (TASK,)),
        (Failed, (TASK, "e")),
        (Cancelled, (TASK,)),
        (StreamError, ("m",)),
        (UnknownEvent, ("metric", "1")),
    ],
    ids=lambda args: args[0].__name__,
)
def test_events_take_keyword_arguments_only(args: tuple[type[Any], tuple[Any, ...]]) -> None:
    cls, positional = args
    with pytest.raises(TypeError):
        cls(*positional)
    assert cls.__match_args__ == ()  # no positional class patterns either


def test_a_built_event_is_the_decoded_one() -> None:
    """sse and raw default to empty, and stay out of repr and comparisons."""
    built = Progress(task_id=TASK, progress=0.35, step_current=7, step_total=20, current_node="3")
    built = dataclasses.replace(built, timestamp=TS_DT)
    decoded = decode("progress", DOCUMENTED["progress"])
    assert built == decoded
    assert hash(built) == hash(decoded)
    assert (
        repr(built)
        == repr(decoded)
        == (
            f"Progress(task_id={TASK!r}, progress=0.35, step_current=7, step_total=20, "
            f"current_node='3', stage=None, message=None, timestamp={TS_DT!r})"
        )
    )
    assert (built.sse, built.raw) == (ServerSentEvent(), {})
    assert built != Progress(task_id=TASK, progress=0.35)
    completed: TaskEvent = Completed(task_id=TASK)
    assert Cancelled(task_id=TASK) != completed  # the type is compared too


@pytest.mark.parametrize(
    ("value", "raw"),
    [({"a": 1}, {"a": 1}), ([1], {}), (None, {}), ("x", {})],
    ids=repr,
)
def test_an_unknown_event_raw_is_its_json_object(value: Any, raw: dict[str, Any]) -> None:
    unknown = UnknownEvent(event="metric", data=json.dumps(value), json=value)
    assert unknown.raw == raw
    if isinstance(value, dict):
        assert unknown.raw is value
    assert dataclasses.replace(unknown, json={"b": 2}).raw == {"b": 2}
    assert (
        repr(unknown) == f"UnknownEvent(event='metric', data={json.dumps(value)!r}, json={value!r})"
    )
    with pytest.raises(TypeError):
        UnknownEvent(event="metric", data="{}", raw={})  # type: ignore[call-arg]


# -- data spread over several data: lines ------------------------------------------


def test_documented_multiline_example() -> None:
    (ev,) = parse_stream(b'event: progress\ndata: {"task_id": "t",\ndata:  "progress": 0.5}\n\n')
    assert ev.data == '{"task_id": "t",\n "progress": 0.5}'
    decoded = decode_task_event(ev)
    assert decoded == Progress(task_id="t", progress=0.5)
    assert isinstance(decoded, Progress)
    assert decoded.raw == {"task_id": "t", "progress": 0.5}


@pytest.mark.parametrize("event", KNOWN_TYPES)
def test_multiline_data_decodes_like_single_line(event: str) -> None:
    payload = DOCUMENTED[event]
    (one,) = parse_stream(as_data_lines(event, json.dumps(payload)))
    (many,) = parse_stream(as_data_lines(event, json.dumps(payload, indent=2)))
    assert many.data.count("\n") >= 2
    single, spread = decode_task_event(one), decode_task_event(many)
    assert spread == single
    assert isinstance(spread, EXPECTED_CLASS[event])
    assert raw_of(spread) == raw_of(single) == payload


def test_string_broken_across_data_lines_keeps_the_line_break() -> None:
    stream = (
        b'event: failed\ndata: {"task_id": "t", "status": "failed",\n'
        b'data:  "error": "Traceback (most recent call last):\n'
        b'data:   RuntimeError: CUDA out of memory"}\n\n'
    )
    (ev,) = parse_stream(stream)
    decoded = decode_task_event(ev)
    assert isinstance(decoded, Failed)
    assert decoded.error == "Traceback (most recent call last):\n  RuntimeError: CUDA out of memory"


def test_whole_documented_stream_byte_by_byte_with_crlf() -> None:
    blocks = [
        (event, json.dumps(DOCUMENTED[event], indent=1), str(n))
        for n, event in enumerate(["status", "progress", "error", "completed"], 1)
    ]
    stream = b"".join(
        f"id: {id}\r\nevent: {event}\r\n".encode()
        + "".join(f"data: {line}\r\n" for line in text.split("\n")).encode()
        + b": heartbeat\r\n\r\n"
        for event, text, id in blocks
    )
    decoded = [decode_task_event(e) for e in parse_stream(stream, bytewise=True)]
    assert [type(d) for d in decoded] == [StatusChanged, Progress, StreamError, Completed]
    assert [d.sse.id for d in decoded] == ["1", "2", "3", "4"]
    assert [raw_of(d) for d in decoded] == [
        DOCUMENTED[e] for e in ["status", "progress", "error", "completed"]
    ]
    assert [d.is_terminal for d in decoded] == [False, False, False, True]


# -- TaskStatus ----------------------------------------------------------------------

STATUS_NAMES = ["pending", "waiting", "queued", "running", "completed", "failed", "cancelled"]


@pytest.mark.parametrize("name", STATUS_NAMES)
def test_known_status_values(name: str) -> None:
    status = TaskStatus(name)
    assert status is getattr(TaskStatus, name.upper())
    assert status.is_known
    assert status.is_terminal is (name in {"completed", "failed", "cancelled"})
    for spelling in (name.upper(), name.title(), f"  {name}\n"):
        assert TaskStatus(spelling) is status  # case-insensitive, a singleton


def test_known_and_terminal_collections() -> None:
    assert list(TaskStatus.KNOWN) == STATUS_NAMES
    assert {"completed", "failed", "cancelled"} == TaskStatus.TERMINAL
    assert all(type(s) is TaskStatus for s in TaskStatus.KNOWN)


@pytest.mark.parametrize("spelling", ["canceled", "CANCELED", "Canceled"])
def test_canceled_is_cancelled(spelling: str) -> None:
    status = TaskStatus(spelling)
    assert status is TaskStatus.CANCELLED
    assert status == "cancelled"
    assert status.is_terminal
    assert status.is_known


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("provisioning", "provisioning"),
        ("Provisioning", "provisioning"),
        ("SCALING_UP", "scaling_up"),
        ("", ""),
        ("done", "done"),
    ],
)
def test_unknown_status_is_kept_lowercase_and_not_terminal(value: str, kept: str) -> None:
    status = TaskStatus(value)
    assert type(status) is TaskStatus
    assert status == kept
    assert str(status) == kept
    assert not status.is_known
    assert not status.is_terminal
    assert status not in TaskStatus.KNOWN


def test_status_equals_plain_str_and_hashes_like_it() -> None:
    assert TaskStatus.RUNNING == "running"
    assert "running" == TaskStatus.RUNNING  # noqa: SIM300 (the plain str on the left)
    assert TaskStatus.RUNNING != "failed"
    assert isinstance(TaskStatus.RUNNING, str)
    assert hash(TaskStatus("Running")) == hash("running")
    assert {"running": 1}[TaskStatus("RUNNING")] == 1
    assert TaskStatus("PROVISIONING") == TaskStatus("provisioning") == "provisioning"
    assert TaskStatus(TaskStatus.QUEUED) is TaskStatus.QUEUED


@pytest.mark.parametrize("value", [None, 1, b"running", ["running"]], ids=repr)
def test_status_of_a_non_str_is_a_type_error(value: Any) -> None:
    with pytest.raises(TypeError):
        TaskStatus(value)


# -- timestamps ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("2025-01-02T03:04:05Z", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), id="Z"),
        pytest.param("2025-01-02T03:04:05z", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), id="z"),
        pytest.param(
            "2025-01-02T03:04:05+02:00",
            datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
            id="plus-offset",
        ),
        pytest.param(
            "2025-01-02T03:04:05-05:30",
            datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
            id="minus-offset",
        ),
        pytest.param(
            "2025-01-02T03:04:05.5Z",
            datetime(2025, 1, 2, 3, 4, 5, 500_000, tzinfo=UTC),
            id="fraction",
        ),
        pytest.param(
            "2025-01-02T03:04:05.123456789Z",
            datetime(2025, 1, 2, 3, 4, 5, 123_456, tzinfo=UTC),
            id="nanoseconds-cut",
        ),
        pytest.param(
            "2025-01-02T03:04:05.999999999+00:00",
            datetime(2025, 1, 2, 3, 4, 5, 999_999, tzinfo=UTC),
            id="nanoseconds-not-rounded-up",
        ),
        pytest.param(
            "2025-01-02T03:04:05", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), id="no-offset-utc"
        ),
        pytest.param("2025-01-02 03:04:05Z", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), id="space"),
        pytest.param(
            "2016-12-31T23:59:60Z",
            datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC),
            id="leap-second-becomes-59",
        ),
        pytest.param(0, datetime(1970, 1, 1, tzinfo=UTC), id="epoch-zero"),
        pytest.param(1735787045, datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), id="epoch-int"),
        pytest.param(
            1735787045.25,
            datetime(2025, 1, 2, 3, 4, 5, 250_000, tzinfo=UTC),
            id="epoch-float",
        ),
    ],
)
def test_parse_timestamp(value: object, expected: datetime) -> None:
    parsed = parse_timestamp(value)
    assert parsed == expected
    assert parsed is not None
    assert parsed.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "yesterday",
        "2025-01-02",
        "2025-13-02T03:04:05Z",
        "2025-01-32T03:04:05Z",
        "2025-01-02T25:04:05Z",
        "2025-01-02T03:04:05+25:00",
        "2025-01-02T03:60:05Z",
        "2025-01-02T03:04:61Z",
        "2025-01-02T03:04:99Z",
        "2025-01-02T03:04:05Z trailing",
        "\u0662\u0660\u0662\u0665-01-02T03:04:05Z",  # Arabic-Indic digits are not RFC 3339
        True,
        False,
        float("nan"),
        float("inf"),
        10**400,
        1e300,
        [],
        {},
    ],
    ids=repr,
)
def test_unparseable_timestamp_is_none(value: object) -> None:
    assert parse_timestamp(value) is None


@pytest.mark.parametrize(
    ("event", "key"),
    [("status", "timestamp"), ("progress", "timestamp"), ("completed", "completed_at")],
)
@pytest.mark.parametrize("raw", ["not a date", "2025-02-30T00:00:00Z", None, 10**400, [TS]])
def test_unparseable_event_timestamp_is_none_and_kept_raw(event: str, key: str, raw: Any) -> None:
    payload = {**DOCUMENTED[event], key: raw}
    decoded = decode(event, payload)
    assert isinstance(decoded, EXPECTED_CLASS[event])
    assert getattr(decoded, key) is None
    assert raw_of(decoded)[key] == raw


@pytest.mark.parametrize(
    ("event", "key"),
    [("status", "timestamp"), ("progress", "timestamp"), ("completed", "completed_at")],
)
def test_event_timestamp_is_aware_and_raw_string_stays(event: str, key: str) -> None:
    raw = "2026-11-28T13:00:05.123456789+01:00"
    decoded = decode(event, {**DOCUMENTED[event], key: raw})
    value = getattr(decoded, key)
    assert value == TS_DT.replace(microsecond=123_456)
    assert value.utcoffset() == timedelta(hours=1)
    assert raw_of(decoded)[key] == raw


# -- tolerance -------------------------------------------------------------------------

EXTRA = {"new_field": "v", "nested": {"a": [1, 2, {"b": None}]}, "status_detail": 3.5}


@pytest.mark.parametrize("event", KNOWN_TYPES)
def test_extra_fields_are_ignored_and_kept_in_raw(event: str) -> None:
    plain = decode(event, DOCUMENTED[event])
    extended = decode(event, {**DOCUMENTED[event], **EXTRA})
    assert extended == plain
    assert raw_of(extended) == {**DOCUMENTED[event], **EXTRA}


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("step_current", "7", None),
        ("step_current", 7.5, None),
        ("step_current", True, None),
        ("step_current", None, None),
        ("step_current", [7], None),
        ("step_total", {"n": 20}, None),
        ("step_total", "20", None),
        ("current_node", 3, "3"),
        ("current_node", ["3"], None),
        ("current_node", None, None),
        ("current_node", True, None),
        ("stage", ["train"], None),
        ("stage", None, None),
        ("message", {"text": "hi"}, None),
        ("message", False, None),
    ],
    ids=repr,
)
def test_progress_optional_field_of_wrong_type(key: str, value: Any, expected: Any) -> None:
    decoded = decode("progress", {"task_id": TASK, "progress": 0.5, key: value})
    assert isinstance(decoded, Progress)
    assert getattr(decoded, key) == expected
    assert type(getattr(decoded, key)) is type(expected)
    assert decoded.raw[key] == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0.0),
        (1, 1.0),
        (0.0, 0.0),
        (1.0, 1.0),
        (0.5, 0.5),
        (1.0000000000000002, 1.0),  # a rounding error past 1.0 is still done
        (1.01, 0.0101),  # above 1: a percentage (tests/test_api_fidelity.py)
        (-0.001, 0.0),
        (-1, 0.0),
        (3, 0.03),
        (100, 1.0),
        (250, 1.0),
    ],
    ids=repr,
)
def test_progress_value_is_a_float_clamped_to_unit_range(value: float, expected: float) -> None:
    decoded = decode("progress", {"task_id": TASK, "progress": value})
    assert isinstance(decoded, Progress)
    assert decoded.progress == expected
    assert type(decoded.progress) is float
    assert decoded.raw["progress"] == value


# -- malformed events ----------------------------------------------------------------

BAD_DATA = [
    pytest.param("not json", id="not-json"),
    pytest.param("", id="empty"),
    pytest.param("[1, 2]", id="array"),
    pytest.param('"running"', id="string"),
    pytest.param("42", id="number"),
    pytest.param("null", id="null"),
    pytest.param("true", id="bool"),
    pytest.param("{", id="truncated"),
    pytest.param("[" * 100_000, id="deeply-nested"),
    pytest.param("1" * 5000, id="huge-integer"),
]


@pytest.mark.parametrize("event", KNOWN_TYPES)
@pytest.mark.parametrize("data", BAD_DATA)
def test_known_event_whose_data_is_not_an_object(event: str, data: str) -> None:
    ev = ServerSentEvent(event=event, data=data, id="77")
    with pytest.raises(TaskEventError) as info:
        decode_task_event(ev)
    assert isinstance(info.value, SSEProtoError)
    assert info.value.event is ev
    assert info.value.field is None
    assert event in str(info.value)


TASK_ID_EVENTS = ["status", "progress", "completed", "failed", "cancelled"]
BAD_TASK_IDS = [
    pytest.param(None, id="null"),
    pytest.param(["t-1"], id="list"),
    pytest.param({"id": "t-1"}, id="object"),
    pytest.param(True, id="bool"),
    pytest.param(1.5, id="float"),
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
]


@pytest.mark.parametrize("event", TASK_ID_EVENTS)
def test_missing_task_id(event: str) -> None:
    payload = {k: v for k, v in DOCUMENTED[event].items() if k != "task_id"}
    ev = make(event, payload)
    with pytest.raises(TaskEventError, match="task_id") as info:
        decode_task_event(ev)
    assert info.value.event is ev
    assert info.value.field == "task_id"
    assert info.value.payload == payload


@pytest.mark.parametrize("event", TASK_ID_EVENTS)
@pytest.mark.parametrize("task_id", BAD_TASK_IDS)
def test_task_id_of_wrong_type_or_empty(event: str, task_id: Any) -> None:
    ev = make(event, {**DOCUMENTED[event], "task_id": task_id})
    with pytest.raises(TaskEventError, match="task_id") as info:
        decode_task_event(ev)
    assert info.value.event is ev
    assert info.value.field == "task_id"


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(None, id="null"),
        pytest.param(5, id="number"),
        pytest.param(True, id="bool"),
        pytest.param(["running"], id="list"),
        pytest.param("", id="empty"),
        pytest.param("  ", id="blank"),
    ],
)
def test_status_event_status_of_wrong_type(status: Any) -> None:
    ev = make("status", {"task_id": TASK, "status": status})
    with pytest.raises(TaskEventError, match="status") as info:
        decode_task_event(ev)
    assert info.value.event is ev
    assert info.value.field == "status"


def test_status_event_without_status() -> None:
    ev = make("status", {"task_id": TASK, "timestamp": TS})
    with pytest.raises(TaskEventError, match="status") as info:
        decode_task_event(ev)
    assert (info.value.event, info.value.field) == (ev, "status")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(f'{{"task_id": "{TASK}"}}', id="missing"),
        pytest.param(f'{{"task_id": "{TASK}", "progress": null}}', id="null"),
        pytest.param(f'{{"task_id": "{TASK}", "progress": "0.5"}}', id="string"),
        pytest.param(f'{{"task_id": "{TASK}", "progress": true}}', id="true"),
        pytest.param(f'{{"task_id": "{TASK}", "progress": false}}', id="false"),
        pytest.param(f'{{"task_id": "{TASK}", "progress": NaN}}', id="nan"),
        pytest.param(f'{{"task_id": "{TASK}", "progress": Infinity}}', id="infinity"),
        pytest.param(f'{{"task_id": "{TASK}", "progress": -Infinity}}', id="minus-infinity"),
        pytest.param(f'{{"task_id": "{TASK}", "progress": 1e999}}', id="overflowing-float"),
        pytest.param(f'{{"task_id": "{TASK}", "progress": 1{"0" * 400}}}', id="huge-int"),
        pytest.param(f'{{"task_id": "{TASK}", "progress": -1{"0" * 400}}}', id="huge-neg-int"),
        pytest.param(f'{{"task_id": "{TASK}", "progress": [0.5]}}', id="list"),
        pytest.param(f'{{"task_id": "{TASK}", "progress": {{"value": 0.5}}}}', id="object"),
    ],
)
def test_progress_missing_or_not_a_finite_number(data: str) -> None:
    ev = ServerSentEvent(event="progress", data=data, id="8")
    with pytest.raises(TaskEventError, match="progress") as info:
        decode_task_event(ev)
    assert info.value.event is ev
    assert info.value.field == "progress"
    assert len(str(info.value)) < 500  # a huge value is quoted briefly


def test_task_event_error_names_the_event_id() -> None:
    ev = make("status", {"task_id": TASK}, id="evt-123")
    with pytest.raises(TaskEventError, match="evt-123"):
        decode_task_event(ev)


def test_decode_task_event_takes_only_a_server_sent_event() -> None:
    with pytest.raises(TypeError):
        decode_task_event({"event": "status", "data": "{}"})  # type: ignore[arg-type]


# -- polling: GET /tasks/{id} ----------------------------------------------------------

SNAPSHOT: dict[str, Any] = {
    "id": TASK,
    "workflow_id": "wf-2b7e1516",
    "task_status": "running",
    "task_error": "",
    "created_at": "2026-11-28T11:59:00Z",
    "started_at": "2026-11-28T11:59:30.5Z",
    "completed_at": None,
    "retry_count": 0,
    "agent_id": "agent-eu-7",
    "gpu_type": "A100-80G",
    "tool_type": "comfyui",
}


def test_snapshot_documented_fields() -> None:
    snap = decode_task_snapshot(SNAPSHOT)
    assert snap.id == TASK
    assert snap.status is TaskStatus.RUNNING
    assert snap.error is None
    assert snap.workflow_id == "wf-2b7e1516"
    assert snap.created_at == datetime(2026, 11, 28, 11, 59, tzinfo=UTC)
    assert snap.started_at == datetime(2026, 11, 28, 11, 59, 30, 500_000, tzinfo=UTC)
    assert snap.completed_at is None
    assert snap.retry_count == 0
    assert (snap.agent_id, snap.gpu_type, snap.tool_type) == ("agent-eu-7", "A100-80G", "comfyui")
    assert snap.raw == SNAPSHOT
    assert not snap.is_terminal


def test_snapshot_of_a_failed_task() -> None:
    payload = {
        **SNAPSHOT,
        "task_status": "failed",
        "task_error": "node 9: out of memory",
        "completed_at": TS,
        "retry_count": 2,
    }
    snap = decode_task_snapshot(payload)
    assert snap.status is TaskStatus.FAILED
    assert snap.error == "node 9: out of memory"
    assert snap.completed_at == TS_DT
    assert snap.retry_count == 2
    assert snap.is_terminal


def test_snapshot_task_status_wins_over_status() -> None:
    snap = decode_task_snapshot({"id": TASK, "task_status": "completed", "status": "running"})
    assert snap.status is TaskStatus.COMPLETED


@pytest.mark.parametrize("task_status", ["absent", None, ""], ids=repr)
def test_snapshot_falls_back_to_status(task_status: str | None) -> None:
    payload: dict[str, Any] = {"id": TASK, "status": "queued"}
    if task_status != "absent":
        payload["task_status"] = task_status
    assert decode_task_snapshot(payload).status is TaskStatus.QUEUED


@pytest.mark.parametrize(
    "payload",
    [{"id": TASK}, {"id": TASK, "task_status": None, "status": None}, {"status": 3}],
    ids=repr,
)
def test_snapshot_without_status(payload: dict[str, Any]) -> None:
    with pytest.raises(TaskEventError, match="status") as info:
        decode_task_snapshot(payload)
    assert info.value.field in {"task_status", "status"}
    assert info.value.event is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", None), (None, None), ("absent", None), ("boom", "boom")],
    ids=repr,
)
def test_snapshot_task_error(value: str | None, expected: str | None) -> None:
    payload = {**SNAPSHOT, "task_status": "completed"}
    if value == "absent":
        del payload["task_error"]
    else:
        payload["task_error"] = value
    assert decode_task_snapshot(payload).error == expected


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        *((s, s in {"completed", "failed", "cancelled"}) for s in STATUS_NAMES),
        ("provisioning", False),
        ("CANCELED", True),
    ],
)
def test_snapshot_is_terminal(status: str, terminal: bool) -> None:
    assert decode_task_snapshot({"id": TASK, "task_status": status}).is_terminal is terminal


def test_snapshot_from_json_text_and_bytes() -> None:
    expected = decode_task_snapshot(SNAPSHOT)
    for source in (json.dumps(SNAPSHOT), json.dumps(SNAPSHOT).encode()):
        snap = decode_task_snapshot(source)
        assert snap == expected
        assert snap.raw == SNAPSHOT


def test_snapshot_optional_fields_of_wrong_type_are_none() -> None:
    payload = {
        "task_status": "running",
        "retry_count": "2",
        "created_at": "soon",
        "started_at": ["x"],
        "workflow_id": None,
        "gpu_type": {"name": "A100"},
        "agent_id": False,
    }
    snap = decode_task_snapshot(payload)
    assert snap.id is None
    assert (snap.retry_count, snap.created_at, snap.started_at) == (None, None, None)
    assert (snap.workflow_id, snap.gpu_type, snap.agent_id, snap.tool_type) == (None,) * 4
    assert snap.raw == payload


NOT_OBJECTS = [
    pytest.param([], id="list"),
    pytest.param(None, id="none"),
    pytest.param(5, id="int"),
    pytest.param("[]", id="json-array-text"),
    pytest.param(b'"running"', id="json-string-bytes"),
    pytest.param("not json", id="not-json"),
    pytest.param(b"\xff\xfe\x00", id="not-utf8"),
    pytest.param("", id="empty"),
    pytest.param("[" * 100_000, id="deeply-nested"),
]


@pytest.mark.parametrize("payload", NOT_OBJECTS)
def test_snapshot_of_a_non_object(payload: object) -> None:
    with pytest.raises(TaskEventError):
        decode_task_snapshot(payload)


# -- results: GET /tasks/{id}/result ---------------------------------------------------

URL_A = "https://cdn.cyberun.cloud/out/a.png?X-Amz-Signature=aa"
URL_B = "https://cdn.cyberun.cloud/out/b.png?X-Amz-Signature=bb"
URL_C = "https://cdn.cyberun.cloud/out/c.mp4?X-Amz-Signature=cc"


def test_result_local_task_with_download_url() -> None:
    payload = {
        "id": TASK,
        "task_output": {"9": {"images": [{"filename": "a.png"}]}},
        "download_url": URL_A,
        "expires_at": "2026-11-28T13:00:05Z",
        "task_error": "",
        "completed_at": TS,
    }
    result = decode_task_result(payload)
    assert result.id == TASK
    assert result.output == payload["task_output"]
    assert result.download_url == URL_A
    assert result.download_urls == {}
    assert result.expires_at == TS_DT + timedelta(hours=1)
    assert result.error is None
    assert result.completed_at == TS_DT
    assert result.artifact_urls() == [URL_A]
    assert result.raw == payload


def test_result_cloud_task_with_download_urls() -> None:
    urls = {"9.images.0": URL_A, "9.images.1": URL_B, "12.gifs.0": URL_C}
    payload = {"id": TASK, "task_output": {"ok": True}, "download_urls": urls}
    result = decode_task_result(payload)
    assert result.download_url is None
    assert result.download_urls == urls
    assert list(result.download_urls) == list(urls)
    assert result.artifact_urls() == [URL_A, URL_B, URL_C]


@pytest.mark.parametrize(
    "links",
    [{"download_url": None, "download_urls": None}, {}, {"download_url": "", "download_urls": {}}],
    ids=["null", "absent", "empty"],
)
def test_result_without_links(links: dict[str, Any]) -> None:
    payload = {"id": TASK, "task_output": None, "task_error": "cancelled by user", **links}
    result = decode_task_result(payload)
    assert result.download_url is None
    assert result.download_urls == {}
    assert result.artifact_urls() == []
    assert result.output is None
    assert result.error == "cancelled by user"


def test_result_artifact_urls_deduplicated_download_url_first() -> None:
    result = decode_task_result(
        {
            "id": TASK,
            "download_url": URL_B,
            "download_urls": {"a": URL_A, "b": URL_B, "c": URL_C, "d": URL_A},
        }
    )
    assert result.artifact_urls() == [URL_B, URL_A, URL_C]


def test_result_drops_non_string_links_but_keeps_them_raw() -> None:
    urls = {"a": URL_A, "b": None, "c": 5, "d": {"url": URL_B}, "e": URL_C}
    result = decode_task_result({"download_urls": urls, "download_url": ["x"]})
    assert result.download_urls == {"a": URL_A, "e": URL_C}
    assert result.download_url is None
    assert result.artifact_urls() == [URL_A, URL_C]
    assert result.raw["download_urls"] == urls


@pytest.mark.parametrize(
    "output", [None, {"images": ["a.png"]}, ["a", "b"], "text", 0, False], ids=repr
)
def test_result_output_is_any_json(output: Any) -> None:
    result = decode_task_result({"id": TASK, "task_output": output})
    assert result.output == output
    assert type(result.output) is type(output)


def test_result_from_json_text_and_bytes() -> None:
    payload = {"id": TASK, "task_output": None, "download_url": URL_A}
    assert decode_task_result(json.dumps(payload)) == decode_task_result(payload)
    assert decode_task_result(json.dumps(payload).encode()).artifact_urls() == [URL_A]


@pytest.mark.parametrize("payload", NOT_OBJECTS)
def test_result_of_a_non_object(payload: object) -> None:
    with pytest.raises(TaskEventError):
        decode_task_result(payload)


# -- webhooks ------------------------------------------------------------------------

SECRET = b"whsec_5f2b8c1d0e"
WEBHOOK: dict[str, Any] = {
    "event_type": "task.completed",
    "task_id": TASK,
    "task_status": "completed",
    "task_output": {"9": {"images": [{"filename": "a.png"}]}},
    "task_error": "",
    "timestamp": TS,
}
BODY = json.dumps(WEBHOOK, separators=(",", ":")).encode()


def test_webhook_valid_signature() -> None:
    event = verify_webhook(SECRET, BODY, signed(SECRET, BODY))
    assert event.event_type == "task.completed"
    assert event.task_id == TASK
    assert event.status is TaskStatus.COMPLETED
    assert event.output == WEBHOOK["task_output"]
    assert event.error is None
    assert event.timestamp == TS_DT
    assert event.raw == WEBHOOK


def test_webhook_failed_task() -> None:
    body = json.dumps(
        {**WEBHOOK, "task_status": "failed", "task_output": None, "task_error": "boom"}
    ).encode()
    event = verify_webhook(SECRET, body, signed(SECRET, body))
    assert (event.status, event.output, event.error) == (TaskStatus.FAILED, None, "boom")


def test_webhook_uppercase_hex_accepted() -> None:
    header = signed(SECRET, BODY)
    upper = "sha256=" + header.removeprefix("sha256=").upper()
    assert upper != header
    assert verify_webhook(SECRET, BODY, upper).task_id == TASK


def test_webhook_str_secret_is_utf8_of_bytes_secret() -> None:
    secret = "whsec_é€"
    header = signed(secret.encode(), BODY)
    assert verify_webhook(secret, BODY, header) == verify_webhook(secret.encode(), BODY, header)
    with pytest.raises(WebhookSignatureError):
        verify_webhook(secret.encode("latin-1", "replace"), BODY, header)


def test_webhook_wrong_secret() -> None:
    with pytest.raises(WebhookSignatureError):
        verify_webhook(b"another secret", BODY, signed(SECRET, BODY))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(BODY.replace(b"completed", b"failed", 1), id="changed-value"),
        pytest.param(json.dumps(WEBHOOK).encode(), id="re-serialised"),
        pytest.param(BODY + b" ", id="trailing-space"),
        pytest.param(BODY[:-1], id="truncated"),
        pytest.param(b"", id="empty"),
    ],
)
def test_webhook_tampered_body(body: bytes) -> None:
    assert body != BODY
    with pytest.raises(WebhookSignatureError):
        verify_webhook(SECRET, body, signed(SECRET, BODY))


GOOD_HEX = hmac.new(SECRET, BODY, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param(GOOD_HEX, id="no-prefix"),
        pytest.param("sha256=", id="prefix-only"),
        pytest.param("sha1=" + hmac.new(SECRET, BODY, hashlib.sha1).hexdigest(), id="sha1"),
        pytest.param("sha1=" + GOOD_HEX, id="sha1-prefix-sha256-value"),
        pytest.param("sha256=" + GOOD_HEX[:-1], id="too-short"),
        pytest.param("sha256=" + GOOD_HEX + "0", id="too-long"),
        pytest.param("sha256=" + "g" * 64, id="not-hex"),
        pytest.param("sha256=" + GOOD_HEX[:-1] + ("0" if GOOD_HEX[-1] != "0" else "1"), id="off"),
        pytest.param("sha256:" + GOOD_HEX, id="colon"),
        pytest.param(f"sha256={GOOD_HEX},sha256={GOOD_HEX}", id="twice"),
    ],
)
def test_webhook_bad_or_missing_signature_header(header: str | None) -> None:
    with pytest.raises(WebhookSignatureError) as info:
        verify_webhook(SECRET, BODY, header)
    assert isinstance(info.value, SSEProtoError)
    assert not isinstance(info.value, TaskEventError)


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe", b""])
def test_webhook_signature_checked_before_the_body_is_parsed(body: bytes) -> None:
    with pytest.raises(WebhookSignatureError):
        verify_webhook(SECRET, body, signed(b"wrong", body))
    with pytest.raises(WebhookSignatureError):
        verify_webhook(SECRET, body, None)
    with pytest.raises(TaskEventError):
        verify_webhook(SECRET, body, signed(SECRET, body))


def test_webhook_body_as_str_is_a_type_error() -> None:
    text = BODY.decode()
    with pytest.raises(TypeError):
        verify_webhook(SECRET, text, signed(SECRET, BODY))  # type: ignore[arg-type]


def test_webhook_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    verify_webhook(SECRET, BODY, signed(SECRET, BODY))
    with pytest.raises(WebhookSignatureError):
        verify_webhook(b"other", BODY, signed(SECRET, BODY))
    assert len(calls) == 2


def test_public_names_are_exported() -> None:
    for name in (
        "decode_task_event",
        "decode_task_snapshot",
        "decode_task_result",
        "verify_webhook",
        "TaskStatus",
        "TaskEventError",
        "WebhookSignatureError",
    ):
        assert name in sseproto.__all__
    assert issubclass(TaskEventError, SSEProtoError)
    assert issubclass(WebhookSignatureError, SSEProtoError)


@pytest.mark.parametrize("event", TASK_ID_EVENTS)
def test_task_id_sent_as_a_number_is_read_as_its_string(event: str) -> None:
    payload: dict[str, Any] = {"task_id": 42, "status": "running", "progress": 0.5}
    decoded = decode_task_event(make(event, payload))
    assert isinstance(decoded, (StatusChanged, Progress, Completed, Failed, Cancelled))
    assert decoded.task_id == "42"
