"""Property tests of ``sseproto.tasks`` (hypothesis).

* robustness: whatever the event type and data, ``decode_task_event`` returns a
  ``TaskEvent`` or raises ``TaskEventError`` (carrying the event), nothing else; the
  same for the polling and result decoders and for a correctly signed webhook;
* invariants of what decodes: the event and raw object kept, progress in [0, 1],
  optional fields of their types, timestamps aware;
* tolerance: a payload with its required fields decodes whatever else it carries,
  and extra fields never change the result;
* data spread over several ``data:`` lines decodes as single-line data;
* timestamps round-trip; statuses compare case-insensitively and only the three
  documented terminal ones are terminal; any other signature is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import string
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from hypothesis import example, given, settings
from hypothesis import strategies as st

from sseproto import (
    Cancelled,
    Completed,
    EventStreamParser,
    Failed,
    Progress,
    ServerSentEvent,
    StatusChanged,
    StreamError,
    TaskEvent,
    TaskEventError,
    TaskResult,
    TaskSnapshot,
    TaskStatus,
    UnknownEvent,
    WebhookEvent,
    WebhookSignatureError,
    decode_task_event,
    decode_task_result,
    decode_task_snapshot,
    parse_timestamp,
    verify_webhook,
)

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

SETTINGS = settings(max_examples=300, deadline=None)

KNOWN_CLASSES: dict[str, type[Any]] = {
    "status": StatusChanged,
    "progress": Progress,
    "completed": Completed,
    "failed": Failed,
    "cancelled": Cancelled,
    "error": StreamError,
}
KNOWN = list(KNOWN_CLASSES)
TERMINAL_CLASSES = (Completed, Failed, Cancelled)
#: Every field the decoders read; "extra" fields are any others.
READ_FIELDS = {
    "task_id",
    "status",
    "timestamp",
    "progress",
    "step_current",
    "step_total",
    "current_node",
    "stage",
    "message",
    "output",
    "completed_at",
    "error",
}

# -- strategies ---------------------------------------------------------------------

#: Numbers as JSON can carry them, including what json.dumps writes as NaN/Infinity,
#: integers too large for a float, and booleans (which are not numbers here).
numbers = st.one_of(
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=2**1024, max_value=10**1000),
    st.integers(min_value=-(10**1000), max_value=-(2**1024)),
    st.booleans(),
    st.sampled_from([0, 1, 0.5, -0.0, 1.0000001, -1e-9]),
)
scalars = st.one_of(st.none(), numbers, st.text(max_size=20))
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)
statuses = st.one_of(
    st.sampled_from([*(str(s) for s in TaskStatus.KNOWN), "provisioning", "CANCELED", "Running"]),
    st.text(max_size=12),
)
timestamps = st.one_of(
    st.sampled_from(["2026-11-28T12:00:05Z", "2026-11-28T12:00:05.123456789+01:00", "nope"]),
    st.datetimes().map(lambda d: d.isoformat()),
    numbers,
    st.text(max_size=30),
)
#: The fields the decoders read, each with a plausible or arbitrary value.
field_values: dict[str, st.SearchStrategy[Any]] = {
    "task_id": st.one_of(st.text(max_size=12), json_values),
    "status": st.one_of(statuses, json_values),
    "timestamp": timestamps,
    "progress": st.one_of(numbers, json_values),
    "step_current": st.one_of(numbers, json_values),
    "step_total": st.one_of(numbers, json_values),
    "current_node": st.one_of(st.text(max_size=5), numbers, json_values),
    "stage": st.one_of(st.sampled_from(["download", "train", "export"]), json_values),
    "message": json_values,
    "output": json_values,
    "completed_at": timestamps,
    "error": json_values,
}
objects = st.builds(
    lambda known, extra: {**extra, **known},
    st.fixed_dictionaries({}, optional=field_values),
    st.dictionaries(st.text(max_size=8), json_values, max_size=4),
)


def _dumps(value: Any) -> str:
    return json.dumps(value)


#: Data lines as a server could send them: JSON (one line or spread over several),
#: text, and the pathological inputs of a parser's worst day.
datas = st.one_of(
    objects.map(_dumps),
    objects.map(lambda o: json.dumps(o, indent=1)),
    json_values.map(_dumps),
    st.text(),
    st.sampled_from(
        [
            "",
            "{",
            "NaN",
            "Infinity",
            "-Infinity",
            "null",
            "true",
            "[" * 100_000,
            "{" * 100_000,
            '{"a":' * 50_000,
            "1" * 5000,
            '{"task_id": "t", "progress": ' + "1" * 5000 + "}",
            '{"task_id": "t", "progress": 1' + "0" * 4000 + "}",
            '{"task_id": "t", "progress": NaN}',
            '{"task_id": "t", "progress": true}',
            '{"task_id": "t", "status": 5}',
            '{"task_id": "t", "progress": 0.5, "error": ' + "[" * 900 + "]" * 900 + "}",
            '{"message": ' + "[" * 900 + "]" * 900 + "}",
        ]
    ),
)
event_types = st.one_of(
    st.sampled_from([*KNOWN, "message", "Status", "PROGRESS", ""]),
    st.text(max_size=10).filter(lambda t: "\r" not in t and "\n" not in t),
)
ids = st.text(max_size=5).filter(lambda t: not any(c in t for c in "\0\r\n"))


def attempt(decode: Callable[[Any], T], arg: Any) -> T | TaskEventError:
    """What ``decode(arg)`` returns, or the TaskEventError it raises."""
    try:
        return decode(arg)
    except TaskEventError as exc:
        return exc


def dump(value: Any) -> str:
    """A stable text of any decoded JSON (NaN included) for equality checks."""
    return json.dumps(value, sort_keys=False)


def check_aware(value: datetime | None) -> None:
    assert value is None or (isinstance(value, datetime) and value.utcoffset() is not None)


def check_event(ev: ServerSentEvent, decoded: TaskEvent) -> None:
    """What holds for every decoded event."""
    assert decoded.sse is ev
    assert isinstance(decoded.is_terminal, bool)
    assert decoded.is_terminal is isinstance(decoded, TERMINAL_CLASSES)
    if ev.event not in KNOWN_CLASSES:
        assert isinstance(decoded, UnknownEvent)
        assert (decoded.event, decoded.data) == (ev.event, ev.data)
        return
    assert isinstance(decoded, KNOWN_CLASSES[ev.event])
    assert not isinstance(decoded, UnknownEvent)
    assert dump(decoded.raw) == dump(json.loads(ev.data))
    if isinstance(decoded, StreamError):
        assert isinstance(decoded.message, str)
        return
    assert isinstance(decoded.task_id, str)
    assert decoded.task_id
    if isinstance(decoded, StatusChanged):
        assert isinstance(decoded.status, TaskStatus)
        assert decoded.status.is_terminal is (decoded.status in TaskStatus.TERMINAL)
        check_aware(decoded.timestamp)
    elif isinstance(decoded, Progress):
        assert type(decoded.progress) is float
        assert 0.0 <= decoded.progress <= 1.0
        for number in (decoded.step_current, decoded.step_total):
            assert number is None or (type(number) is int)
        for text in (decoded.current_node, decoded.stage, decoded.message):
            assert text is None or isinstance(text, str)
        check_aware(decoded.timestamp)
    elif isinstance(decoded, Completed):
        check_aware(decoded.completed_at)
    elif isinstance(decoded, Failed):
        assert isinstance(decoded.error, str)


# -- robustness ---------------------------------------------------------------------


@SETTINGS
@given(event=event_types, data=datas, id=ids)
@example(event="progress", data="[" * 100_000, id="")
@example(event="status", data="1" * 5000, id="")
@example(event="progress", data='{"task_id": "t", "progress": 1' + "0" * 400 + "}", id="")
@example(event="progress", data='{"task_id": "t", "progress": -Infinity}', id="")
@example(event="progress", data='{"task_id": "t", "progress": false}', id="1")
@example(event="status", data='{"task_id": "t", "status": 5}', id="")
@example(event="unknown", data="[" * 100_000, id="")
def test_decode_task_event_returns_an_event_or_raises_task_event_error(
    event: str, data: str, id: str
) -> None:
    ev = ServerSentEvent(event=event, data=data, id=id)
    decoded = attempt(decode_task_event, ev)
    if isinstance(decoded, TaskEventError):
        assert ev.event in KNOWN_CLASSES  # an unknown type never raises
        assert decoded.event is ev
        if decoded.field is not None:
            assert decoded.field in str(decoded)
            assert decoded.field in {"task_id", "status", "progress"}
        return
    check_event(ev, decoded)


@SETTINGS
@given(event=st.sampled_from(KNOWN), obj=objects, id=ids)
def test_known_events_with_arbitrary_objects(event: str, obj: dict[str, Any], id: str) -> None:
    ev = ServerSentEvent(event=event, data=json.dumps(obj), id=id)
    decoded = attempt(decode_task_event, ev)
    if isinstance(decoded, TaskEventError):
        assert decoded.event is ev
        assert decoded.field in {"task_id", "status", "progress"}
        assert decoded.field in str(decoded)
        return
    check_event(ev, decoded)


def required_ok(event: str, obj: dict[str, Any]) -> bool:
    """Whether ``obj`` has what the documentation says an ``event`` needs, as plain types
    (required strings must not be blank)."""
    if event == "error":
        return True
    task_id = obj.get("task_id")
    if not isinstance(task_id, str) or not task_id.strip():
        return False
    if event == "status":
        status = obj.get("status")
        return isinstance(status, str) and bool(status.strip())
    if event == "progress":
        value = obj.get("progress")
        return type(value) is float and math.isfinite(value)
    return True


@SETTINGS
@given(event=st.sampled_from(KNOWN), obj=objects)
def test_a_payload_with_its_required_fields_always_decodes(event: str, obj: dict[str, Any]) -> None:
    ev = ServerSentEvent(event=event, data=json.dumps(obj))
    if required_ok(event, obj):
        check_event(ev, decode_task_event(ev))


@SETTINGS
@given(
    event=st.sampled_from(KNOWN),
    task_id=st.text(min_size=1, max_size=10).filter(str.strip),
    status=st.text(min_size=1, max_size=10).filter(str.strip),
    progress=st.floats(min_value=-2, max_value=2),
    extra=st.dictionaries(
        st.text(max_size=8).filter(lambda k: k not in READ_FIELDS), json_values, max_size=5
    ),
)
def test_extra_fields_never_change_the_result(
    event: str,
    task_id: str,
    status: str,
    progress: float,
    extra: dict[str, Any],
) -> None:
    base = {"task_id": task_id, "status": status, "progress": progress, "message": "m"}
    plain = decode_task_event(ServerSentEvent(event=event, data=json.dumps(base)))
    extended = decode_task_event(ServerSentEvent(event=event, data=json.dumps({**extra, **base})))
    assert extended == plain


def parse_one(stream: bytes) -> ServerSentEvent:
    parser: EventStreamParser[Any] = EventStreamParser()
    events = [e for i in range(0, len(stream), 7) for e in parser.feed(stream[i : i + 7])]
    parser.close()
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, ServerSentEvent)
    return event


def outcome(ev: ServerSentEvent) -> tuple[str, Any]:
    try:
        decoded = decode_task_event(ev)
    except TaskEventError as exc:
        return ("error", exc.field)
    raw = None if isinstance(decoded, UnknownEvent) else dump(decoded.raw)
    return (type(decoded).__name__, (repr(decoded), raw))


@SETTINGS
@given(event=st.sampled_from(KNOWN), obj=objects, indent=st.sampled_from([None, 0, 1, 4, "\t"]))
def test_data_over_several_lines_decodes_as_one_line(
    event: str, obj: dict[str, Any], indent: int | str | None
) -> None:
    one_line = json.dumps(obj)
    spread = json.dumps(obj, indent=indent)
    streams = [
        f"event: {event}\n" + "".join(f"data: {line}\n" for line in text.split("\n")) + "\n"
        for text in (one_line, spread)
    ]
    single, multi = (parse_one(s.encode()) for s in streams)
    assert outcome(multi) == outcome(single)


# -- polling, results and webhooks ---------------------------------------------------

snapshot_objects = st.builds(
    lambda known, extra: {**extra, **known},
    st.fixed_dictionaries(
        {},
        optional={
            "id": field_values["task_id"],
            "task_status": field_values["status"],
            "status": field_values["status"],
            "task_error": json_values,
            "created_at": timestamps,
            "started_at": timestamps,
            "completed_at": timestamps,
            "retry_count": field_values["step_total"],
            "workflow_id": field_values["task_id"],
            "agent_id": field_values["task_id"],
            "gpu_type": json_values,
            "tool_type": json_values,
        },
    ),
    st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)
result_objects = st.builds(
    lambda known, extra: {**extra, **known},
    st.fixed_dictionaries(
        {},
        optional={
            "id": field_values["task_id"],
            "task_output": json_values,
            "download_url": st.one_of(st.text(max_size=10), json_values),
            "download_urls": st.one_of(
                st.dictionaries(
                    st.text(max_size=5), st.sampled_from(["u1", "u2", "u3", ""]) | json_values
                ),
                json_values,
            ),
            "expires_at": timestamps,
            "task_error": json_values,
            "completed_at": timestamps,
        },
    ),
    st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)
payloads = st.one_of(
    snapshot_objects,
    result_objects,
    json_values,
    snapshot_objects.map(_dumps),
    result_objects.map(lambda o: json.dumps(o).encode()),
    st.text(),
    st.binary(),
    st.sampled_from(["[" * 100_000, "1" * 5000, b"\xff\xfe\xfd"]),
)


@SETTINGS
@given(payload=payloads)
def test_decode_task_snapshot_returns_a_snapshot_or_raises(payload: Any) -> None:
    snap = attempt(decode_task_snapshot, payload)
    if isinstance(snap, TaskEventError):
        assert snap.event is None
        return
    assert isinstance(snap, TaskSnapshot)
    assert isinstance(snap.status, TaskStatus)
    assert snap.is_terminal is (snap.status in TaskStatus.TERMINAL)
    assert snap.error is None or (isinstance(snap.error, str) and snap.error)
    for when in (snap.created_at, snap.started_at, snap.completed_at):
        check_aware(when)
    assert snap.retry_count is None or type(snap.retry_count) is int
    if isinstance(payload, dict):
        assert snap.raw is payload
        status = payload.get("task_status")
        if isinstance(status, str) and status.strip():
            assert snap.status == TaskStatus(status)


@SETTINGS
@given(payload=payloads)
def test_decode_task_result_returns_a_result_or_raises(payload: Any) -> None:
    result = attempt(decode_task_result, payload)
    if isinstance(result, TaskEventError):
        assert result.event is None
        return
    assert isinstance(result, TaskResult)
    urls = result.artifact_urls()
    assert all(isinstance(u, str) and u for u in urls)
    assert len(urls) == len(set(urls))
    expected = ([result.download_url] if result.download_url else []) + list(
        result.download_urls.values()
    )
    assert set(urls) == set(expected)
    if result.download_url:
        assert urls[0] == result.download_url
    check_aware(result.expires_at)
    check_aware(result.completed_at)


webhook_bodies = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {},
        optional={
            "event_type": json_values,
            "task_id": field_values["task_id"],
            "task_status": field_values["status"],
            "task_output": json_values,
            "task_error": json_values,
            "timestamp": timestamps,
        },
    ).map(lambda o: json.dumps(o).encode()),
    st.sampled_from([b"[" * 100_000, b"1" * 5000]),
)
secrets = st.one_of(st.binary(min_size=1, max_size=32), st.text(min_size=1, max_size=16))


@SETTINGS
@given(secret=secrets, body=webhook_bodies, upper=st.booleans())
def test_webhook_with_good_signature_decodes_or_raises_task_event_error(
    secret: bytes | str, body: bytes, upper: bool
) -> None:
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, body, hashlib.sha256).hexdigest()
    header = "sha256=" + (digest.upper() if upper else digest)
    try:
        event = verify_webhook(secret, body, header)
    except TaskEventError:
        return
    assert isinstance(event, WebhookEvent)
    assert isinstance(event.event_type, str)
    assert event.status is None or isinstance(event.status, TaskStatus)
    check_aware(event.timestamp)


@SETTINGS
@given(
    secret=secrets,
    body=webhook_bodies,
    header=st.one_of(
        st.none(),
        st.text(max_size=80),
        st.text(alphabet=string.hexdigits, min_size=64, max_size=64).map("sha256={}".format),
        st.text(alphabet=string.hexdigits, min_size=0, max_size=70).map("sha256={}".format),
    ),
)
def test_webhook_with_any_other_signature_is_refused(
    secret: bytes | str, body: bytes, header: str | None
) -> None:
    key = secret.encode() if isinstance(secret, str) else secret
    good = hmac.new(key, body, hashlib.sha256).hexdigest()
    if header is not None and header.strip().lower() == "sha256=" + good:
        return  # (never happens in practice)
    try:
        verify_webhook(secret, body, header)
    except WebhookSignatureError:
        return
    raise AssertionError(f"accepted {header!r}")


# -- timestamps and statuses ---------------------------------------------------------


@SETTINGS
@given(value=st.one_of(json_values, timestamps, st.text()))
def test_parse_timestamp_never_raises(value: Any) -> None:
    check_aware(parse_timestamp(value))


@SETTINGS
@given(
    when=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    offset=st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
    sep=st.sampled_from(["T", " "]),
)
def test_parse_timestamp_round_trips_isoformat(when: datetime, offset: int, sep: str) -> None:
    aware = when.replace(tzinfo=timezone(timedelta(minutes=offset)))
    parsed = parse_timestamp(aware.isoformat(sep))
    assert parsed == aware
    assert parsed is not None
    assert parsed.utcoffset() == aware.utcoffset()
    naive = parse_timestamp(when.isoformat(sep))
    assert naive == when.replace(tzinfo=timezone.utc)


@SETTINGS
@given(
    name=st.sampled_from([*(str(s) for s in TaskStatus.KNOWN), "canceled", "provisioning"])
    | st.text(alphabet=string.ascii_letters + "_-", max_size=12),
    flips=st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_status_case_insensitive(name: str, flips: list[bool]) -> None:
    mixed = "".join(
        c.upper() if f else c.lower() for c, f in zip(name, flips[: len(name)], strict=True)
    )
    assert TaskStatus(mixed) == TaskStatus(name.lower())
    assert TaskStatus(mixed).is_terminal is TaskStatus(name.lower()).is_terminal
    if TaskStatus(name).is_known:
        assert TaskStatus(mixed) is TaskStatus(name)


@SETTINGS
@given(value=st.text(max_size=20))
def test_status_of_any_text(value: str) -> None:
    status = TaskStatus(value)
    assert isinstance(status, str)
    assert status.is_known is (status in TaskStatus.KNOWN)
    assert status.is_terminal is (status in {"completed", "failed", "cancelled"})
    if not status.is_known:
        assert status == value.strip().lower()
        assert not status.is_terminal
