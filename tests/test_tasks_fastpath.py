"""The fast paths of ``sseproto.tasks`` give exactly what the code before them gave.

``decode_task_event``, ``parse_timestamp`` and the JSON loader were rewritten for speed:
``datetime.fromisoformat`` for the usual timestamp layouts, the JSON scanner without
``JSONDecoder.decode``'s whitespace matching, each field read once, and events built
through a plain class with the same slots instead of the frozen dataclass's
``__init__``. This file keeps a verbatim copy of the code as it was before (the
``_old_*`` names below, frozen: do not "fix" them) and checks, with hypothesis and
with fixed corpora, that the new code gives the same results: the same types, the
same field values compared by type and repr (so ``2`` is not ``2.0`` and ``-0.0`` is
not ``0.0``), and the same errors with the same messages. (It checks no timings.)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import pickle
import re
from dataclasses import fields
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sseproto import (
    Cancelled,
    Completed,
    Failed,
    Progress,
    ServerSentEvent,
    StatusChanged,
    StreamError,
    TaskEvent,
    TaskEventError,
    TaskStatus,
    UnknownEvent,
    decode_task_event,
    parse_timestamp,
    tasks,
)
from sseproto.tasks import MAX_JSON_DEPTH

if TYPE_CHECKING:
    from collections.abc import Callable

SETTINGS = settings(max_examples=1000, deadline=None)

# -- the code before the fast paths (verbatim, renamed) ------------------------------

_OLD_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:[Zz]|([+-])(\d{2}):?(\d{2}))?",
    re.ASCII,
)


def _old_parse_timestamp(value: object) -> datetime | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value, timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    m = _OLD_RFC3339.fullmatch(value.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second, frac, sign, oh, om = m.groups()
    tz = timezone.utc
    if sign is not None:
        offset = timedelta(hours=int(oh), minutes=int(om))
        try:
            tz = timezone(offset if sign == "+" else -offset)
        except ValueError:
            return None
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            59 if second == "60" else int(second),  # a leap second becomes :59
            int((frac or "0")[:6].ljust(6, "0")),
            tzinfo=tz,
        )
    except ValueError:
        return None


def _old_opt_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # an id sent as a number
    return None


def _old_opt_int(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _old_finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _old_nonblank(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _old_opt_error(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _old_required_str(
    obj: dict[str, Any], key: str, sse: ServerSentEvent | None, *, number_ok: bool = False
) -> str:
    value = _old_opt_str(obj, key) if number_ok else obj.get(key)
    if not isinstance(value, str) or not value.strip():
        got = "missing" if key not in obj else f"{type(obj[key]).__name__} {_old_short(obj[key])}"
        raise TaskEventError(
            f"{_old_where(sse)} needs a non-blank string {key!r}, got {got}",
            event=sse,
            field=key,
            payload=obj,
        )
    return value


def _old_short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _old_where(sse: ServerSentEvent | None) -> str:
    if sse is None:
        return "the payload"
    return f"the {sse.event!r} event" + (f" (id {sse.id!r})" if sse.id else "")


_OLD_JSON: Final = json.JSONDecoder(strict=False)
_OLD_DEPTH_CHARS: Final = 2 * MAX_JSON_DEPTH


def _old_load_json(text: str | bytes) -> Any:
    try:
        value = _OLD_JSON.decode(text) if isinstance(text, str) else json.loads(text, strict=False)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    if (
        len(text) > _OLD_DEPTH_CHARS
        and isinstance(value, (dict, list))
        and _old_brackets(text) > MAX_JSON_DEPTH
        and _old_too_deep(value)
    ):
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _old_brackets(text: str | bytes) -> int:
    if isinstance(text, str):
        return text.count("{") + text.count("[")
    return text.count(b"{") + text.count(b"[")


def _old_too_deep(value: Any) -> bool:
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > MAX_JSON_DEPTH:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def _old_decode_task_event(sse: ServerSentEvent) -> TaskEvent:
    if not isinstance(sse, ServerSentEvent):
        raise TypeError(f"decode_task_event takes a ServerSentEvent, not {type(sse).__name__}")
    decode = _OLD_DECODERS.get(sse.event)
    if decode is None:
        try:
            value = _old_load_json(sse.data)
        except ValueError:
            value = None
        return UnknownEvent(event=sse.event, data=sse.data, json=value, sse=sse)
    try:
        obj = _old_load_json(sse.data)
    except ValueError as exc:
        raise TaskEventError(
            f"{_old_where(sse)} does not carry JSON ({exc}); data starts {sse.data[:80]!r}",
            event=sse,
        ) from None
    if not isinstance(obj, dict):
        raise TaskEventError(
            f"{_old_where(sse)} must carry a JSON object, got {type(obj).__name__}", event=sse
        )
    return decode(obj, sse)


def _old_status_event(obj: dict[str, Any], sse: ServerSentEvent) -> StatusChanged:
    task_id = _old_required_str(obj, "task_id", sse, number_ok=True)
    use_task_status = not _old_nonblank(obj.get("status")) and _old_nonblank(obj.get("task_status"))
    status = TaskStatus(_old_required_str(obj, "task_status" if use_task_status else "status", sse))
    return StatusChanged(
        task_id=task_id,
        status=status,
        timestamp=_old_parse_timestamp(obj.get("timestamp")),
        sse=sse,
        raw=obj,
    )


def _old_progress_event(obj: dict[str, Any], sse: ServerSentEvent) -> Progress:
    task_id = _old_required_str(obj, "task_id", sse, number_ok=True)
    value = _old_finite(obj.get("progress"))
    if value is None:
        got = "missing" if "progress" not in obj else _old_short(obj["progress"])
        raise TaskEventError(
            f"{_old_where(sse)} needs a number 'progress' from 0 to 1, got {got}",
            event=sse,
            field="progress",
            payload=obj,
        )
    return Progress(
        task_id=task_id,
        progress=_old_fraction(value),
        step_current=_old_opt_int(obj, "step_current"),
        step_total=_old_opt_int(obj, "step_total"),
        current_node=_old_opt_str(obj, "current_node"),
        stage=_old_opt_str(obj, "stage"),
        message=_old_opt_str(obj, "message"),
        timestamp=_old_parse_timestamp(obj.get("timestamp")),
        sse=sse,
        raw=obj,
    )


_OLD_ROUNDING: Final = 1e-9


def _old_fraction(value: float) -> float:
    if value > 1.0 + _OLD_ROUNDING:
        value /= 100.0
    return min(max(value, 0.0), 1.0)


def _old_completed_event(obj: dict[str, Any], sse: ServerSentEvent) -> Completed:
    task_id = _old_required_str(obj, "task_id", sse, number_ok=True)
    return Completed(
        task_id=task_id,
        output=obj.get("output"),
        completed_at=_old_parse_timestamp(obj.get("completed_at")),
        sse=sse,
        raw=obj,
    )


def _old_failed_event(obj: dict[str, Any], sse: ServerSentEvent) -> Failed:
    task_id = _old_required_str(obj, "task_id", sse, number_ok=True)
    error = next(filter(None, (_old_opt_error(obj, key) for key in _OLD_FAILED_ERROR_KEYS)), "")
    return Failed(task_id=task_id, error=error, sse=sse, raw=obj)


def _old_cancelled_event(obj: dict[str, Any], sse: ServerSentEvent) -> Cancelled:
    task_id = _old_required_str(obj, "task_id", sse, number_ok=True)
    return Cancelled(task_id=task_id, sse=sse, raw=obj)


def _old_error_event(obj: dict[str, Any], sse: ServerSentEvent) -> StreamError:
    return StreamError(message=_old_opt_error(obj, "message") or "", sse=sse, raw=obj)


_OLD_FAILED_ERROR_KEYS: Final = ("error", "task_error", "message")

_OLD_DECODERS: Final[dict[str, Callable[[dict[str, Any], ServerSentEvent], TaskEvent]]] = {
    "status": _old_status_event,
    "progress": _old_progress_event,
    "completed": _old_completed_event,
    "failed": _old_failed_event,
    "cancelled": _old_cancelled_event,
    "error": _old_error_event,
}

# -- comparisons ----------------------------------------------------------------------


def assert_same_value(new: object, old: object) -> None:
    """Equal as the same thing: same type and same repr (NaN, -0.0, 2 vs 2.0 included)."""
    assert type(new) is type(old)
    assert repr(new) == repr(old)


def assert_same_timestamp(new: datetime | None, old: datetime | None) -> None:
    assert_same_value(new, old)
    if new is not None and old is not None:
        assert new == old
        assert new.tzinfo == old.tzinfo
        assert new.utcoffset() == old.utcoffset()
        assert new.fold == old.fold


def assert_same_event(new: object, old: object) -> None:
    assert type(new) is type(old)
    assert dataclasses.is_dataclass(old)
    assert repr(new) == repr(old)
    for f in fields(old):
        assert_same_value(getattr(new, f.name), getattr(old, f.name))
    if not has_nan(vars_of(old)):  # NaN is not equal to itself (repr says it is the same)
        assert new == old
    try:
        expected = hash(old)
    except TypeError:  # an output or a json that is a dict
        with pytest.raises(TypeError):
            hash(new)
    else:
        assert hash(new) == expected


def vars_of(event: Any) -> dict[str, Any]:
    """The compared fields (those equality and hashing look at)."""
    return {f.name: getattr(event, f.name) for f in fields(event) if f.compare}


def has_nan(value: object) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, dict):
        return any(has_nan(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_nan(v) for v in value)
    return False


def outcome(decode: Callable[[ServerSentEvent], TaskEvent], sse: ServerSentEvent) -> object:
    try:
        return decode(sse)
    except TaskEventError as exc:
        return exc


def assert_same_outcome(sse: ServerSentEvent) -> None:
    new, old = outcome(decode_task_event, sse), outcome(_old_decode_task_event, sse)
    if isinstance(old, TaskEventError):
        assert isinstance(new, TaskEventError), new
        assert type(new) is type(old)
        assert str(new) == str(old)
        assert new.field == old.field
        assert new.event == old.event
        assert repr(new.payload) == repr(old.payload)
        assert new.__cause__ is None
        assert new.__suppress_context__ == old.__suppress_context__
    else:
        assert_same_event(new, old)
        if not isinstance(old, UnknownEvent):
            assert repr(new.raw) == repr(old.raw)  # type: ignore[attr-defined]
        assert new.sse is sse  # type: ignore[attr-defined]


def load_outcome(load: Callable[[Any], Any], text: str | bytes) -> tuple[str, str]:
    try:
        value = load(text)
    except ValueError as exc:
        return type(exc).__name__, str(exc)
    return type(value).__name__, repr(value)


# -- strategies ---------------------------------------------------------------------

numbers = st.one_of(
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=2**1024, max_value=10**400),
    st.booleans(),
    st.sampled_from([0, 1, 2, 35, 100, 101, 0.5, 2.0, -0.0, 1.0000000001, 1.000000001, -1e-9]),
)
texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "\t\n", "\u2003", "3", "train", "running", "a b"]),
)
scalars = st.one_of(st.none(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


def _digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


def _two(interesting: list[str]) -> st.SearchStrategy[str]:
    """A two-digit field: any, an edge value, or something that is not two ASCII digits."""
    return st.one_of(
        _digits(2),
        st.sampled_from(interesting),
        st.text(alphabet="0123456789\u0661\u00b2+- _", max_size=3),
    )


years = st.one_of(
    _digits(4),
    st.sampled_from(["0000", "0001", "1970", "2000", "2024", "2026", "9999"]),
    st.text(alphabet="0123456789", max_size=5),
)
months = _two(["00", "01", "02", "12", "13", "99"])
days = _two(["00", "01", "28", "29", "30", "31", "32"])
hours = _two(["00", "09", "19", "20", "23", "24", "25", "29", "30", "99"])
minutes = _two(["00", "59", "60", "61", "99"])
seconds = _two(["00", "59", "60", "61", "69", "99"])
fractions = st.one_of(
    st.just(""),
    st.builds(
        lambda mark, digits: mark + digits,
        st.sampled_from([".", ".", ".", ",", ""]),
        st.text(alphabet="0123456789", max_size=12),
    ),
    st.builds(lambda d: "." + d, st.text(alphabet="0123456789\u0661x", min_size=1, max_size=10)),
)
offsets = st.one_of(
    st.sampled_from(
        ["", "", "Z", "z", "+00:00", "-00:00", "+0000", "+00", "+24:00", "-23:59", "+05:75", "ZZ"]
    ),
    st.builds(
        lambda sign, hh, colon, mm: sign + hh + colon + mm,
        st.sampled_from(["+", "-", "", "\u2212"]),
        _two(["00", "01", "12", "14", "23", "24", "99"]),
        st.sampled_from([":", ":", "", "-"]),
        _two(["00", "30", "45", "59", "60", "99"]),
    ),
)
rfc3339_like = st.builds(
    lambda lead, y, s1, mo, s2, d, t, h, c1, mi, c2, s, frac, off, trail: (
        lead + y + s1 + mo + s2 + d + t + h + c1 + mi + c2 + s + frac + off + trail
    ),
    st.sampled_from(["", "", "", " ", "\t", "\n", "\u00a0"]),
    years,
    st.sampled_from(["-", "-", "-", "", "/"]),
    months,
    st.sampled_from(["-", "-", "-", "", "/"]),
    days,
    st.sampled_from(["T", "T", "t", " ", "", "_", "x", "TT", "\u2003"]),
    hours,
    st.sampled_from([":", ":", ":", "", "."]),
    minutes,
    st.sampled_from([":", ":", ":", "", "."]),
    seconds,
    fractions,
    offsets,
    st.sampled_from(["", "", "", " ", "\n", "x"]),
)
#: Real timestamps as servers write them (Python's isoformat, Go's RFC3339Nano...).
real_timestamps = st.builds(
    lambda when, offset, sep, spec, z: (
        when.replace(tzinfo=timezone(timedelta(minutes=offset)) if offset is not None else None)
        .isoformat(sep, spec)
        .replace("+00:00", "Z" if z else "+00:00")
    ),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.one_of(st.none(), st.integers(min_value=-1439, max_value=1439)),
    st.sampled_from(["T", "t", " "]),
    st.sampled_from(["auto", "seconds", "milliseconds", "microseconds"]),
    st.booleans(),
)
any_timestamps = st.one_of(st.text(), rfc3339_like, real_timestamps, numbers, json_values)

STAMP_EXAMPLES = [
    "2026-01-01T00:00:01.123456Z",
    "2026-01-01T00:00:01Z",
    "2026-01-01T00:00:01+02:00",
    "2026-01-01T00:00:01",
    "2026-01-01 00:00:01",
    "2026-01-01t00:00:01z",
    "2026-01-01T00:00:01.1Z",
    "2026-01-01T00:00:01.123Z",
    "2026-01-01T00:00:01.1234567Z",
    "2026-01-01T00:00:01.123456789Z",
    "2026-01-01T00:00:01.1234567890Z",
    "2026-01-01T00:00:01.999999999-05:30",
    "2026-01-01T00:00:01.Z",
    "2026-01-01T00:00:01,5Z",
    "2026-01-01T00:00:01-00:00",
    "2026-01-01T00:00:01+0530",
    "2026-01-01T00:00:01+05",
    "2026-01-01T00:00:01+05:75",
    "2026-01-01T00:00:01+23:59",
    "2026-01-01T00:00:01+24:00",
    "2026-01-01T00:00:01-24:00",
    "2026-01-01T24:00:00Z",
    "2026-01-01T24:00:00",
    "2026-01-01T23:59:60Z",
    "2016-12-31T23:59:60.5+01:00",
    "2026-01-01T23:60:00Z",
    "2026-02-29T00:00:00Z",
    "2024-02-29T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:59:59-01:00",
    " 2026-01-01T00:00:01Z ",
    "\u00a02026-01-01T00:00:01Z",
    "2026-01-01T00:00:01Z\n",
    "2026-W01-1T00:00:00Z",
    "2026-001T00:00:00Z",
    "20260101T000001Z",
    "2026-01-01T00:00Z",
    "2026-01-01T00Z",
    "2026-01-01",
    "2026-01-01T00:00:01\u00b2",
    "\u0662\u0660\u0662\u0666-01-01T00:00:01Z",
    "2026-01-01T00:00:01Z\udc80",
    "",
    None,
    True,
    0,
    1735787045.25,
    float("nan"),
    10**400,
]


# -- timestamps -------------------------------------------------------------------------


@pytest.mark.parametrize("value", STAMP_EXAMPLES, ids=repr)
def test_timestamp_examples_as_before(value: object) -> None:
    assert_same_timestamp(parse_timestamp(value), _old_parse_timestamp(value))
    assert_same_timestamp(tasks._parse_timestamp_slow(value), _old_parse_timestamp(value))


@SETTINGS
@given(value=any_timestamps)
def test_timestamps_as_before(value: object) -> None:
    assert_same_timestamp(parse_timestamp(value), _old_parse_timestamp(value))


@SETTINGS
@given(value=st.one_of(rfc3339_like, real_timestamps))
def test_rfc3339_like_timestamps_as_before(value: str) -> None:
    assert_same_timestamp(parse_timestamp(value), _old_parse_timestamp(value))
    assert_same_timestamp(tasks._parse_timestamp_slow(value), _old_parse_timestamp(value))


@SETTINGS
@given(value=st.one_of(st.text(), rfc3339_like, real_timestamps))
def test_fast_layouts_are_rfc3339(value: str) -> None:
    """Whatever the fast path takes, the general path's regex matches too."""
    if tasks._ISO_LAYOUT(value):
        assert _OLD_RFC3339.fullmatch(value.strip())


@SETTINGS
@given(value=real_timestamps)
def test_real_timestamps_take_the_fast_path(value: str) -> None:
    """Not a timing test: the usual layouts are the ones the fast path is for."""
    assert tasks._ISO_LAYOUT(value)


# -- the JSON loader ---------------------------------------------------------------------

JSON_EXAMPLES: list[str | bytes] = [
    '{"task_id": "t", "progress": 0.5}',
    ' {"task_id": "t"}',
    '{"task_id": "t"} ',
    '\n{"task_id": "t"}\n',
    '{"task_id": "t"} {}',
    '{"task_id": "t"}x',
    '{"a": "line\nbreak"}',
    '{"a": NaN, "b": Infinity, "c": -Infinity}',
    '{"a": 1,}',
    '{"a" 1}',
    "{",
    "}",
    "",
    " ",
    "null",
    "[]",
    '"text"',
    "1e400",
    "-",
    "nul",
    "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1),
    "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH,
    "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1),
    '{"a":' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1),
    "[" * 50_000 + "]" * 50_000,
    "[" * 50_000,
    '"[[[[' + "[" * 300 + '"',
    b'{"task_id": "t"}',
    b' {"task_id": "t"} ',
    b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
    b"\xff",
]


@pytest.mark.parametrize("text", JSON_EXAMPLES, ids=lambda t: repr(t)[:40])
def test_json_examples_as_before(text: str | bytes) -> None:
    assert load_outcome(tasks._load_json, text) == load_outcome(_old_load_json, text)


json_texts = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda value, lead, trail, indent: lead + json.dumps(value, indent=indent) + trail,
        json_values,
        st.sampled_from(["", "", " ", "\n", "\t", "x"]),
        st.sampled_from(["", "", " ", "\n", "x", "{}", "]"]),
        st.sampled_from([None, None, 1]),
    ),
    st.builds(lambda value, cut: json.dumps(value)[:cut], json_values, st.integers(0, 30)),
)


@SETTINGS
@given(text=st.one_of(json_texts, json_texts.map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_json_loads_as_before(text: str | bytes) -> None:
    assert load_outcome(tasks._load_json, text) == load_outcome(_old_load_json, text)


# -- events -------------------------------------------------------------------------------

TASK = "3f2c9a4e-8b1d-4c6f-9e2a-7d5b3c1f0a8e"
TS = "2026-01-01T00:00:01.123456Z"
OUTPUT = {"9": {"images": [{"filename": "ComfyUI_00001_.png", "type": "output"}]}}
#: A progress event as the API documents it, and as the ComfyUI runtime sends it.
PROGRESS: dict[str, Any] = {
    "task_id": TASK,
    "progress": 0.42,
    "message": "sampling 12/30",
    "timestamp": TS,
}
COMFYUI_PROGRESS: dict[str, Any] = {
    "task_id": TASK,
    "progress": 0.5,
    "step_current": 2,
    "step_total": 4,
    "current_node": "3",
    "timestamp": "2026-01-01T00:00:01Z",
}
#: A failed event's message, wherever it is (or is not).
FAILED_FIELDS: list[dict[str, Any]] = [
    {},
    {"error": ""},
    {"error": None, "task_error": "boom"},
    {"error": "", "task_error": "", "message": "m"},
    {"error": {"code": 1}},
    {"error": 0, "message": "m"},
    {"error": False},
    {"task_error": ["a"]},
    {"error": " "},
]
EVENT_EXAMPLES: list[tuple[str, Any]] = [
    # What the test server sends (sseproto.testing), and the documented payloads.
    *(
        ("status", {"task_id": TASK, "status": s, "timestamp": TS})
        for s in ["pending", "waiting", "queued", "running", "provisioning"]
    ),
    ("progress", PROGRESS),
    ("progress", COMFYUI_PROGRESS),
    ("progress", {"task_id": TASK, "progress": 0.2, "stage": "download", "message": "done"}),
    ("completed", {"task_id": TASK, "status": "completed", "output": OUTPUT, "completed_at": TS}),
    ("completed", {"task_id": TASK, "status": "completed", "output": None, "completed_at": TS}),
    ("completed", {"task_id": TASK, "output": {"splat": "scene.ply"}}),
    ("failed", {"task_id": TASK, "status": "failed", "error": "CUDA out of memory"}),
    ("cancelled", {"task_id": TASK, "status": "cancelled", "timestamp": TS}),
    ("error", {"message": "could not read the task state"}),
    # Tolerance and refusals.
    *(
        ("progress", {"task_id": TASK, "progress": p})
        for p in [0, 1, 35, 100, 250, -3, -0.0, 1.0000000001, 1.00000001, 0.999, True, None]
    ),
    ("progress", {"task_id": TASK}),
    ("progress", '{"task_id": "t", "progress": NaN}'),
    ("progress", '{"task_id": "t", "progress": Infinity}'),
    ("progress", '{"task_id": "t", "progress": 1e400}'),
    ("progress", {"task_id": TASK, "progress": 10**400}),
    ("progress", {"task_id": TASK, "progress": "0.5"}),
    (
        "progress",
        {
            "task_id": 7,
            "progress": 0.5,
            "step_current": 2.0,
            "step_total": 2.5,
            "current_node": 3,
            "stage": True,
            "message": ["m"],
            "timestamp": 1735787045,
        },
    ),
    ("progress", {"task_id": TASK, "progress": 0.5, "step_current": True, "step_total": "4"}),
    *(
        ("status", {"task_id": TASK, "status": s})
        for s in ["Running", " running ", "CANCELED", "canceled", "", "  ", None, 3, ["running"]]
    ),
    ("status", {"task_id": TASK, "task_status": "running"}),
    ("status", {"task_id": TASK, "status": "", "task_status": "Queued"}),
    ("status", {"task_id": TASK, "status": " ", "task_status": " "}),
    ("status", {"task_id": TASK}),
    *(
        ("cancelled", {"task_id": t})
        for t in ["", " ", "\u2003", None, True, 0, 12, 1.5, ["x"], {"id": 1}]
    ),
    ("cancelled", {}),
    *(("failed", {"task_id": TASK, **extra}) for extra in FAILED_FIELDS),
    *(("error", {"message": m}) for m in ["", " ", None, 0, {"a": 1}, ["x"], False, "it broke"]),
    ("error", {}),
    ("completed", {"task_id": TASK, "completed_at": "2026-02-30T00:00:00Z"}),
    ("completed", {"task_id": TASK, "completed_at": " 2026-01-01T00:00:01Z"}),
    ("status", {"task_id": TASK, "status": "running", "timestamp": "2026-01-01T24:00:00Z"}),
    ("status", {"task_id": TASK, "status": "running", "timestamp": "2016-12-31T23:59:60Z"}),
    # Data that is not one JSON object.
    *(
        (kind, data)
        for kind in ["status", "progress", "completed", "failed", "cancelled", "error", "other"]
        for data in [
            "",
            "not json",
            "[]",
            "null",
            '"s"',
            "3",
            f' {{"task_id": "{TASK}", "status": "running", "progress": 1}} ',
            f'{{"task_id": "{TASK}", "status": "running", "progress": 1}}\n',
            f'{{"task_id": "{TASK}", "status": "running", "progress": 1}} {{}}',
            '{"task_id": "t", "status": "running",\n "progress": 0.5,\n "error": "e"}',
            "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1),
            "[" * 50_000,
        ]
    ),
    ("message", {"task_id": TASK}),
    ("Progress", {"task_id": TASK, "progress": 0.5}),
]


def as_sse(kind: str, payload: Any, id_: str = "17") -> ServerSentEvent:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return ServerSentEvent(kind, data, id_)


@pytest.mark.parametrize(("kind", "payload"), EVENT_EXAMPLES, ids=lambda v: repr(v)[:50])
@pytest.mark.parametrize("id_", ["17", ""])
def test_event_examples_as_before(kind: str, payload: Any, id_: str) -> None:
    assert_same_outcome(as_sse(kind, payload, id_))


read_fields: dict[str, st.SearchStrategy[Any]] = {
    "task_id": st.one_of(texts, st.just(TASK), json_values),
    "status": st.one_of(
        st.sampled_from(["running", "Running", "canceled", "provisioning", " queued"]),
        json_values,
    ),
    "task_status": st.one_of(st.sampled_from(["completed", "FAILED"]), json_values),
    "timestamp": any_timestamps,
    "completed_at": any_timestamps,
    "progress": st.one_of(numbers, json_values),
    "step_current": st.one_of(numbers, json_values),
    "step_total": st.one_of(numbers, json_values),
    "current_node": st.one_of(texts, numbers, json_values),
    "stage": st.one_of(texts, json_values),
    "message": st.one_of(texts, json_values),
    "output": json_values,
    "error": st.one_of(texts, json_values),
    "task_error": st.one_of(texts, json_values),
}
payloads = st.builds(
    lambda known, extra: {**extra, **known},
    st.fixed_dictionaries({}, optional=read_fields),
    st.dictionaries(st.text(max_size=6), json_values, max_size=3),
)
kinds = st.one_of(
    st.sampled_from(["status", "progress", "completed", "failed", "cancelled", "error"]),
    st.text(alphabet=st.characters(exclude_characters="\r\n"), max_size=10),
)
datas = st.one_of(
    st.builds(
        lambda payload, indent, lead, trail: lead + json.dumps(payload, indent=indent) + trail,
        payloads,
        st.sampled_from([None, None, None, 1]),
        st.sampled_from(["", "", "", " ", "\n"]),
        st.sampled_from(["", "", "", " ", "\n", "x", "{}"]),
    ),
    json_texts,
)


@SETTINGS
@given(kind=kinds, data=datas, id_=st.sampled_from(["", "17", "a b"]))
@example(kind="progress", data=json.dumps(PROGRESS), id_="17")
def test_events_as_before(kind: str, data: str, id_: str) -> None:
    assert_same_outcome(ServerSentEvent(kind, data, id_))


@pytest.mark.parametrize("value", [None, "progress", ("progress", "{}", ""), object()], ids=repr)
def test_not_an_event_is_still_a_type_error(value: Any) -> None:
    with pytest.raises(TypeError) as new:
        decode_task_event(value)
    with pytest.raises(TypeError) as old:
        _old_decode_task_event(value)
    assert str(new.value) == str(old.value)


# -- the events built through the slots twins are ordinary frozen dataclasses ------------

TWINS = [
    (StatusChanged, tasks._StatusChangedSlots, "status", {"task_id": "t", "status": "running"}),
    (Progress, tasks._ProgressSlots, "progress", COMFYUI_PROGRESS),
    (Completed, tasks._CompletedSlots, "completed", {"task_id": "t", "output": [1]}),
    (Failed, tasks._FailedSlots, "failed", {"task_id": "t", "error": "e"}),
    (Cancelled, tasks._CancelledSlots, "cancelled", {"task_id": "t"}),
    (StreamError, tasks._StreamErrorSlots, "error", {"message": "m"}),
    (UnknownEvent, tasks._UnknownEventSlots, "metric", {"task_id": "t", "gpu": 0.9}),
]


def all_slots(cls: type) -> list[str]:
    """The slots of ``cls``'s instances, inherited ones included, the base's first."""
    return [name for klass in reversed(cls.__mro__) for name in vars(klass).get("__slots__", ())]


def test_every_decoded_type_has_a_twin() -> None:
    assert {kind for _, _, kind, _ in TWINS} == {*tasks._DECODERS, "metric"}


@pytest.mark.parametrize(("cls", "twin", "kind", "payload"), TWINS, ids=lambda v: str(v)[:30])
def test_twins_have_the_slots_of_their_class(
    cls: type[Any], twin: type, kind: str, payload: dict[str, Any]
) -> None:
    """The layout that ``__class__`` assignment needs: the same base, the same slots
    added to it, so the same slots in all (a field added to the class and not to the
    twin, or the other way, fails here)."""
    assert all_slots(twin) == all_slots(cls)
    assert sorted(set(all_slots(cls))) == sorted(f.name for f in fields(cls))
    assert vars(twin)["__slots__"] == vars(cls)["__slots__"]
    assert twin.__bases__ == cls.__bases__ == (TaskEvent,)
    assert twin.__basicsize__ == cls.__basicsize__
    # The twin's stores are plain ones (the frozen base's would go through Python).
    assert vars(twin)["__setattr__"] is object.__setattr__
    assert vars(twin)["__delattr__"] is object.__delattr__


@pytest.mark.parametrize(("cls", "twin", "kind", "payload"), TWINS, ids=lambda v: str(v)[:30])
def test_decoded_events_are_ordinary_frozen_instances(
    cls: type[Any], twin: type, kind: str, payload: dict[str, Any]
) -> None:
    sse = as_sse(kind, payload)
    event = decode_task_event(sse)
    assert type(event) is cls
    assert isinstance(event, TaskEvent)
    assert not isinstance(event, twin)
    assert event.kind == kind
    # The same event from the constructor, every field (sse and raw included) given
    # (an UnknownEvent's raw is not an argument: the constructor derives it).
    built = cls(**{f.name: getattr(event, f.name) for f in fields(cls) if f.init})
    assert built.sse is event.sse is sse
    assert built.raw is event.raw
    assert_same_event(event, built)
    assert event == built
    assert not hasattr(event, "__dict__")
    for f in fields(cls):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(event, f.name, "changed")
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(event, f.name)
    assert_same_event(copy.copy(event), event)
    assert_same_event(copy.deepcopy(event), event)
    assert_same_event(pickle.loads(pickle.dumps(event)), event)
    assert_same_event(dataclasses.replace(event), event)
    assert dataclasses.asdict(event) == dataclasses.asdict(built)
    assert event.is_terminal == cls.is_terminal
