"""Typed task events: what the Cyberun task API sends, as immutable Python objects.

Layer 2 of sseproto, pure code (no I/O, no clock): it turns the generic
:class:`~sseproto.ServerSentEvent` objects of ``GET /tasks/{id}/events`` into
:class:`StatusChanged`, :class:`Progress`, :class:`Completed`, :class:`Failed`,
:class:`Cancelled`, :class:`StreamError` or :class:`UnknownEvent` (each a
:class:`TaskEvent`, built from keyword arguments only); the JSON of the polling
endpoints into :class:`TaskSnapshot` and :class:`TaskResult`; and a signed
webhook delivery into a :class:`WebhookEvent`.

Tolerance, because the API grows and documents little:

* Every decoded object keeps what it was made from (``raw``, and ``sse`` for stream
  events), so nothing the server sent is lost.
* Extra fields are never an error. An optional field that is missing, ``null`` or of
  an unexpected type becomes ``None``. An unknown event type becomes an
  :class:`UnknownEvent`; an unknown status value a :class:`TaskStatus` that keeps its
  string and is not terminal.
* Only what the object cannot be without raises :class:`~sseproto.TaskEventError`:
  data that is not a JSON object, or a required field (``task_id`` everywhere, the
  ``status`` of a status event, the ``progress`` of a progress event) missing or of
  the wrong type. The error names the field and carries the event.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar, Final

from ._errors import TaskEventError, WebhookSignatureError
from ._parser import ServerSentEvent

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "MAX_JSON_DEPTH",
    "TERMINAL_EVENTS",
    "Cancelled",
    "Completed",
    "Failed",
    "Progress",
    "StatusChanged",
    "StreamError",
    "TaskEvent",
    "TaskResult",
    "TaskSnapshot",
    "TaskStatus",
    "UnknownEvent",
    "WebhookEvent",
    "decode_task_event",
    "decode_task_result",
    "decode_task_snapshot",
    "parse_timestamp",
    "verify_webhook",
]


# -- statuses ----------------------------------------------------------------------


class TaskStatus(str):
    """A task's status: a ``str``, read case-insensitively (lower-cased on construction).

    The documented values are class attributes (``TaskStatus.RUNNING`` …), and
    ``TaskStatus("Running") is TaskStatus.RUNNING``. Any other value
    (``"provisioning"``, or a state the API adds later) is kept as its lower-cased
    string, with ``is_known`` False, and is never terminal. ``"canceled"`` is read as
    :attr:`CANCELLED`. A status equals (and hashes like) its lower-case plain string,
    so compare with ``"running"``, not ``"RUNNING"``.
    """

    __slots__ = ()

    PENDING: ClassVar[TaskStatus]
    WAITING: ClassVar[TaskStatus]
    QUEUED: ClassVar[TaskStatus]
    RUNNING: ClassVar[TaskStatus]
    COMPLETED: ClassVar[TaskStatus]
    FAILED: ClassVar[TaskStatus]
    CANCELLED: ClassVar[TaskStatus]
    #: Every documented status, in the order a task goes through them.
    KNOWN: ClassVar[tuple[TaskStatus, ...]]
    TERMINAL: ClassVar[frozenset[TaskStatus]]

    def __new__(cls, value: str) -> TaskStatus:
        if not isinstance(value, str):
            raise TypeError(f"a task status is a str, not {type(value).__name__}")
        key = value.strip().lower()
        known = _STATUSES.get(key)
        if known is not None:
            return known
        return str.__new__(cls, key)

    @property
    def is_terminal(self) -> bool:
        """True for completed, failed and cancelled: the task will not change again."""
        return self in TaskStatus.TERMINAL

    @property
    def is_known(self) -> bool:
        """True for the documented values; False for a value this version does not know."""
        return _STATUSES.get(str(self)) is self

    def __repr__(self) -> str:
        return f"TaskStatus({str.__repr__(self)})"


_STATUSES: dict[str, TaskStatus] = {}
for _name in ("pending", "waiting", "queued", "running", "completed", "failed", "cancelled"):
    _STATUSES[_name] = str.__new__(TaskStatus, _name)
    setattr(TaskStatus, _name.upper(), _STATUSES[_name])
_STATUSES["canceled"] = _STATUSES["cancelled"]  # the American spelling
TaskStatus.KNOWN = tuple(_STATUSES[n] for n in ("pending", "waiting", "queued", "running"))
TaskStatus.KNOWN += (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)
TaskStatus.TERMINAL = frozenset((TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED))
#: The task stream's terminal event types (named like the terminal statuses).
TERMINAL_EVENTS: Final = frozenset(map(str, TaskStatus.TERMINAL))


# -- timestamps --------------------------------------------------------------------

_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:[Zz]|([+-])(\d{2}):?(\d{2}))?",
    re.ASCII,
)
_UTC: Final = timezone.utc
_fromisoformat: Final = datetime.fromisoformat
#: The timestamps parse_timestamp hands to datetime.fromisoformat: a subset of what
#: _RFC3339 matches (nothing around it, ``T``, ``t`` or a space between date and time,
#: a fraction of 1 to 9 digits or none, then ``Z``, ``±hh:mm`` or nothing), in which
#: the hours are below 24 and the seconds below 60: a newer fromisoformat may read
#: 24:00 as the next day's midnight, and none reads :60 as :59 as the general path does.
_ISO_LAYOUT: Final = re.compile(
    r"\d{4}-\d\d-\d\d[Tt ](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?"
    r"(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)?",
    re.ASCII,
).fullmatch


def _fromisoformat_reads_rfc3339() -> bool:
    """True if datetime.fromisoformat reads ``Z`` and fractions of any length, cut to
    microseconds (Python 3.11 and later); 3.10's does not, and takes no fast path."""
    try:
        parsed = _fromisoformat("2000-01-02T03:04:05.1234567Z")
    except ValueError:
        return False
    return parsed == datetime(2000, 1, 2, 3, 4, 5, 123456, tzinfo=_UTC) and parsed.tzinfo is _UTC


_ISO_FAST: Final = _fromisoformat_reads_rfc3339()


def parse_timestamp(value: object) -> datetime | None:
    """A timezone-aware ``datetime`` from an API timestamp, or None if it does not parse.

    Accepts RFC 3339 (``2025-01-02T03:04:05Z``, with or without fractional seconds,
    which are cut to microseconds, with ``Z`` or a ``±hh:mm`` offset); a timestamp
    without an offset is taken as UTC. A number is taken as seconds since the Unix
    epoch. Anything else (including ``None``) gives None: a timestamp is never a
    reason to reject a payload.
    """
    if type(value) is str:
        if _ISO_FAST and _ISO_LAYOUT(value):
            # The fast path: the usual layouts (see _ISO_LAYOUT) go to
            # datetime.fromisoformat, several times cheaper than the general way. For
            # them it gives what _parse_timestamp_slow gives (tests/test_tasks_fastpath.py
            # checks); anything else, and anything fromisoformat refuses (a 30
            # February), goes the general way.
            try:
                parsed = _fromisoformat(value)
            except ValueError:
                pass
            else:
                return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=_UTC)
    elif value is None:  # an absent field
        return None
    return _parse_timestamp_slow(value)


def _parse_timestamp_slow(value: object) -> datetime | None:
    """:func:`parse_timestamp` for any value, by the regex: the general path, and the
    reference that the fast path is tested against."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value, timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    m = _RFC3339.fullmatch(value.strip())
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


# -- field readers -----------------------------------------------------------------


def _opt_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # an id sent as a number
    return None


def _opt_int(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _opt_container(obj: dict[str, Any], key: str) -> dict[str, Any] | list[Any] | None:
    """A JSON object or array, as sent; None for anything else."""
    value = obj.get(key)
    return value if isinstance(value, (dict, list)) else None


_isfinite: Final = math.isfinite


def _finite(value: object) -> float | None:
    """A JSON number as a finite float, or None (bools, NaN, infinities, huge ints)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _nonblank(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _opt_error(obj: dict[str, Any], key: str) -> str | None:
    """An error message: ``""`` and ``null`` both mean no error."""
    value = obj.get(key)
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _required_str(
    obj: dict[str, Any], key: str, sse: ServerSentEvent | None, *, number_ok: bool = False
) -> str:
    """A string field the payload cannot be without (non-blank; an id may be a number)."""
    value = _opt_str(obj, key) if number_ok else obj.get(key)
    if not isinstance(value, str) or not value.strip():
        got = "missing" if key not in obj else f"{type(obj[key]).__name__} {_short(obj[key])}"
        raise TaskEventError(
            f"{_where(sse)} needs a non-blank string {key!r}, got {got}",
            event=sse,
            field=key,
            payload=obj,
        )
    return value


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _where(sse: ServerSentEvent | None) -> str:
    if sse is None:
        return "the payload"
    return f"the {sse.event!r} event" + (f" (id {sse.id!r})" if sse.id else "")


_JSON: Final = json.JSONDecoder(strict=False)  # json.loads would build one per call
#: The scanner that _JSON.decode runs once it has skipped whitespace (typeshed does not
#: declare the attribute).
_SCAN_ONCE: Final[Callable[[str, int], tuple[Any, int]]] = _JSON.scan_once  # type: ignore[attr-defined]
#: The deepest JSON accepted (objects and arrays inside each other). Deeper payloads
#: are refused: re-serialising or printing them would exhaust Python's stack.
MAX_JSON_DEPTH: Final = 100
_DEPTH_CHARS: Final = 2 * MAX_JSON_DEPTH  # the shortest text that can be deeper


def _load_json(text: str | bytes) -> Any:
    """json.loads, tolerant of literal line breaks in strings (data lines joined), and
    bounded in depth.

    Raises:
        ValueError: Not JSON, or nested deeper than :data:`MAX_JSON_DEPTH`.
    """
    try:
        if isinstance(text, str):
            # The usual text is one JSON value from its first character to its last:
            # the scanner alone reads it, as _JSON.decode would, without the whitespace
            # matching that decode does around it in Python. Anything else (whitespace
            # around the value, no value, extra data) goes to decode itself, which reads
            # it or raises its own error. The scanner's errors are decode's: decode
            # would have made the same call.
            try:
                value, end = _SCAN_ONCE(text, 0)
            except StopIteration:
                end = -1
            if end != len(text):
                value = _JSON.decode(text)
        else:
            value = json.loads(text, strict=False)
    except RecursionError:  # deeper than the interpreter's stack: past the bound too
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    # Only a text of more than 2 * MAX_JSON_DEPTH characters, and then only one with
    # more brackets than the bound, can be that deep: a small payload (a progress
    # event) pays a len(), not a count or a walk.
    if (
        len(text) > _DEPTH_CHARS
        and isinstance(value, (dict, list))
        and _brackets(text) > MAX_JSON_DEPTH
        and _too_deep(value)
    ):
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _brackets(text: str | bytes) -> int:
    """How many objects and arrays ``text`` opens (brackets in strings counted too)."""
    if isinstance(text, str):
        return text.count("{") + text.count("[")
    return text.count(b"{") + text.count(b"[")


def _too_deep(value: Any) -> bool:
    """True if ``value`` nests objects and arrays deeper than MAX_JSON_DEPTH (iterative:
    a deep value must not exhaust the stack here either)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > MAX_JSON_DEPTH:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


# -- task events -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskEvent:
    """What every event of the task stream has: the base of :class:`StatusChanged`,
    :class:`Progress`, :class:`Completed`, :class:`Failed`, :class:`Cancelled`,
    :class:`StreamError` and :class:`UnknownEvent`, the types
    :func:`decode_task_event` returns. Only those are instantiated, never
    ``TaskEvent`` itself.

    Every event is a frozen dataclass built from keyword arguments only
    (``Progress(task_id="t", progress=0.5)``): positional arguments raise
    ``TypeError``, so that a field added or moved can never shift a value into the
    wrong field. ``sse`` and ``raw`` are in neither the repr nor the comparisons.
    """

    #: The event as received (an empty ``ServerSentEvent`` for one built by hand).
    sse: ServerSentEvent = field(default_factory=ServerSentEvent, repr=False, compare=False)
    #: The event's data as a JSON object, with every field the server sent.
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: True for the events after which the task does not change again
    #: (``completed``, ``failed``, ``cancelled``).
    is_terminal: ClassVar[bool] = False

    @property
    def kind(self) -> str:
        """The event's type as the API sends it: ``"status"``, ``"progress"``,
        ``"completed"``, ``"failed"``, ``"cancelled"``, ``"error"``, or an
        :class:`UnknownEvent`'s own ``event``. A class attribute of the known types
        (``Progress.kind == "progress"``)."""
        raise NotImplementedError("TaskEvent is a base class: its subclasses have a kind")


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusChanged(TaskEvent):
    """``status``: the task moved to another state. Not terminal itself (the
    ``completed``, ``failed`` and ``cancelled`` events are), though ``status`` may be.

    The status is read from ``status``, or from ``task_status`` (the polling
    endpoint's name for it) when an event carries that instead.
    """

    task_id: str
    status: TaskStatus
    timestamp: datetime | None = None
    kind: ClassVar[str] = "status"


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress(TaskEvent):
    """``progress``: how far the task is, from 0.0 to 1.0.

    The documented scale is 0.0 to 1.0; a value above 1 is read as a percentage
    (``35`` is 0.35, ``100`` is 1.0; a rounding error just past 1.0 is still 1.0), and
    the result is kept within 0.0 to 1.0. ``raw["progress"]`` keeps what was sent.
    ``step_current``/``step_total`` come only when the runtime reports steps;
    ``current_node`` is the ComfyUI node id; ``stage`` (download, process_data, train,
    export, upload) and ``message`` come from Nerfstudio tasks.
    """

    task_id: str
    progress: float
    step_current: int | None = None
    step_total: int | None = None
    current_node: str | None = None
    stage: str | None = None
    message: str | None = None
    timestamp: datetime | None = None
    kind: ClassVar[str] = "progress"


@dataclass(frozen=True, slots=True, kw_only=True)
class Completed(TaskEvent):
    """``completed``: the task succeeded. ``output`` is its output (any JSON)."""

    task_id: str
    output: Any = None
    completed_at: datetime | None = None
    kind: ClassVar[str] = "completed"
    is_terminal: ClassVar[bool] = True
    status: ClassVar[TaskStatus] = TaskStatus.COMPLETED


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed(TaskEvent):
    """``failed``: the task failed; ``error`` says why (``""`` when the server did not).

    Read from ``error`` as documented, else from ``task_error`` (the polling
    endpoint's name), else from ``message``: the first that is not empty.
    """

    task_id: str
    error: str = ""
    kind: ClassVar[str] = "failed"
    is_terminal: ClassVar[bool] = True
    status: ClassVar[TaskStatus] = TaskStatus.FAILED


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancelled(TaskEvent):
    """``cancelled``: the task was cancelled."""

    task_id: str
    kind: ClassVar[str] = "cancelled"
    is_terminal: ClassVar[bool] = True
    status: ClassVar[TaskStatus] = TaskStatus.CANCELLED


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamError(TaskEvent):
    """``error``: the server failed to read the task state. Not terminal: the task may
    still be running and the stream may go on (if it closes, poll instead)."""

    message: str = ""
    kind: ClassVar[str] = "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownEvent(TaskEvent):
    """An event type this version does not know, kept whole. ``json`` is its data
    decoded as JSON, or None when the data is not JSON; ``kind`` is its ``event``.

    ``raw`` is not an argument: it is ``json`` when that is a JSON object, as for the
    other events, and ``{}`` otherwise.
    """

    event: str
    data: str
    json: Any = None
    raw: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        json = self.json
        object.__setattr__(self, "raw", json if isinstance(json, dict) else {})

    @property
    def kind(self) -> str:
        """The event's type as sent: its ``event``."""
        return self.event


def _slots_twin(cls: type[TaskEvent]) -> type:
    """A class with the layout of the frozen dataclass ``cls`` whose attributes can be
    set, to build its instances fast: fill the slots of an instance, then set its
    ``__class__`` to ``cls``.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``
    (its own ``__setattr__`` refuses), which made building a ``Progress`` cost about as
    much as decoding its JSON; attribute stores and one ``__class__`` assignment cost a
    quarter of that. Python allows that assignment only between classes of the same
    layout: the same base class, and the same slots added to it. A plain class with
    all the slots (or a parallel hierarchy of plain classes) has another base and is
    refused, so the twin derives from ``cls``'s own base (:class:`TaskEvent`, which
    holds ``sse`` and ``raw``) and adds ``cls``'s own slots. It takes back
    ``object``'s ``__setattr__`` and ``__delattr__`` from the frozen base: with either
    of the base's left, every store would go through a Python-level lookup, several
    times slower. The result is an ordinary instance of ``cls``, as frozen as any:
    same type, same field values, so the same repr, equality and hash. Every decoder
    fills every slot, and each twin's slots, inherited ones included, are its class's
    (tests/test_tasks_fastpath.py checks both).
    """
    (base,) = cls.__bases__
    namespace = {
        "__slots__": vars(cls)["__slots__"],
        "__setattr__": object.__setattr__,
        "__delattr__": object.__delattr__,
        "__module__": __name__,
    }
    return type(f"_{cls.__name__}Slots", (base,), namespace)


_new: Final = object.__new__
_StatusChangedSlots: Final = _slots_twin(StatusChanged)
_ProgressSlots: Final = _slots_twin(Progress)
_CompletedSlots: Final = _slots_twin(Completed)
_FailedSlots: Final = _slots_twin(Failed)
_CancelledSlots: Final = _slots_twin(Cancelled)
_StreamErrorSlots: Final = _slots_twin(StreamError)
_UnknownEventSlots: Final = _slots_twin(UnknownEvent)


def decode_task_event(sse: ServerSentEvent) -> TaskEvent:
    """Decode one event of the task stream.

    Args:
        sse: An event from :class:`~sseproto.EventStreamParser`.

    Returns:
        The typed event; :class:`UnknownEvent` for a type this version does not know.

    Raises:
        TaskEventError: A known event type whose data is not a JSON object, or whose
            required field is missing or of the wrong type. Its ``event`` is ``sse``,
            its ``field`` the field at fault (None when the data is not an object).
    """
    if not isinstance(sse, ServerSentEvent):
        raise TypeError(f"decode_task_event takes a ServerSentEvent, not {type(sse).__name__}")
    decode = _DECODERS.get(sse.event)
    if decode is None:
        try:
            value = _load_json(sse.data)
        except ValueError:
            value = None
        return _unknown_event(sse, value)
    try:
        obj = _load_json(sse.data)
    except ValueError as exc:
        raise TaskEventError(
            f"{_where(sse)} does not carry JSON ({exc}); data starts {sse.data[:80]!r}",
            event=sse,
        ) from None
    if not isinstance(obj, dict):
        raise TaskEventError(
            f"{_where(sse)} must carry a JSON object, got {type(obj).__name__}", event=sse
        )
    return decode(obj, sse)


# The decoders run for every event of every stream, so they are written for speed:
# each field is read once, a value of the usual type is taken as it is, and only
# another value goes through the general readers (which read it again and decide as
# they always did). The event is built through its _Slots twin (see _slots_twin).


def _status_event(obj: dict[str, Any], sse: ServerSentEvent) -> StatusChanged:
    get = obj.get
    task_id = get("task_id")
    if type(task_id) is not str or not task_id.strip():
        task_id = _required_str(obj, "task_id", sse, number_ok=True)
    status = get("status")
    # A documented status as sent ("running") is its TaskStatus, found by a lookup.
    status = _STATUSES.get(status) if type(status) is str else None
    if status is None:
        # ``status`` as documented; ``task_status`` (the polling endpoint's name) when
        # the event carries that instead. The error names ``status``, the documented
        # field.
        use_task_status = not _nonblank(get("status")) and _nonblank(get("task_status"))
        status = TaskStatus(_required_str(obj, "task_status" if use_task_status else "status", sse))
    event: Any = _new(_StatusChangedSlots)
    event.task_id = task_id
    event.status = status
    event.timestamp = parse_timestamp(get("timestamp"))
    event.sse = sse
    event.raw = obj
    event.__class__ = StatusChanged
    decoded: StatusChanged = event
    return decoded


def _progress_event(obj: dict[str, Any], sse: ServerSentEvent) -> Progress:
    get = obj.get
    task_id = get("task_id")
    if type(task_id) is not str or not task_id.strip():
        task_id = _required_str(obj, "task_id", sse, number_ok=True)
    value = get("progress")
    if type(value) is not float or not _isfinite(value):
        value = _finite(value)
        if value is None:
            got = "missing" if "progress" not in obj else _short(obj["progress"])
            raise TaskEventError(
                f"{_where(sse)} needs a number 'progress' from 0 to 1, got {got}",
                event=sse,
                field="progress",
                payload=obj,
            )
    step_current = get("step_current")
    if step_current is not None and type(step_current) is not int:
        step_current = _opt_int(obj, "step_current")
    step_total = get("step_total")
    if step_total is not None and type(step_total) is not int:
        step_total = _opt_int(obj, "step_total")
    current_node = get("current_node")
    if current_node is not None and type(current_node) is not str:
        current_node = _opt_str(obj, "current_node")
    stage = get("stage")
    if stage is not None and type(stage) is not str:
        stage = _opt_str(obj, "stage")
    message = get("message")
    if message is not None and type(message) is not str:
        message = _opt_str(obj, "message")
    event: Any = _new(_ProgressSlots)
    event.task_id = task_id
    event.progress = _fraction(value)
    event.step_current = step_current
    event.step_total = step_total
    event.current_node = current_node
    event.stage = stage
    event.message = message
    event.timestamp = parse_timestamp(get("timestamp"))
    event.sse = sse
    event.raw = obj
    event.__class__ = Progress
    decoded: Progress = event
    return decoded


#: How far past 1.0 a value is still a fraction that a rounding error pushed over
#: (``1.0000000000000002`` is done); beyond it, a value is a percentage.
_ROUNDING: Final = 1e-9
_PERCENT_ABOVE: Final = 1.0 + _ROUNDING


def _fraction(value: float) -> float:
    """A finite progress value as a fraction from 0.0 to 1.0.

    The documented scale is 0.0 to 1.0, kept as is. A value above 1 (past a rounding
    error) is a percentage, as some runtimes report: ``35`` is 0.35, ``100`` is 1.0.
    Below 0 is 0.0, above 100 % is 1.0.
    """
    if value > _PERCENT_ABOVE:
        value /= 100.0
    # min(max(value, 0.0), 1.0), without the two calls.
    if value < 0.0:
        return 0.0
    if value > 1.0:
        return 1.0
    return value


def _completed_event(obj: dict[str, Any], sse: ServerSentEvent) -> Completed:
    get = obj.get
    task_id = get("task_id")
    if type(task_id) is not str or not task_id.strip():
        task_id = _required_str(obj, "task_id", sse, number_ok=True)
    event: Any = _new(_CompletedSlots)
    event.task_id = task_id
    event.output = get("output")
    event.completed_at = parse_timestamp(get("completed_at"))
    event.sse = sse
    event.raw = obj
    event.__class__ = Completed
    decoded: Completed = event
    return decoded


def _failed_event(obj: dict[str, Any], sse: ServerSentEvent) -> Failed:
    get = obj.get
    task_id = get("task_id")
    if type(task_id) is not str or not task_id.strip():
        task_id = _required_str(obj, "task_id", sse, number_ok=True)
    error = get("error")
    if type(error) is not str or not error:
        # ``error`` as documented, else the first of ``task_error`` (the polling
        # endpoint's name) and ``message`` that says something.
        error = next(filter(None, (_opt_error(obj, key) for key in _FAILED_ERROR_KEYS)), "")
    event: Any = _new(_FailedSlots)
    event.task_id = task_id
    event.error = error
    event.sse = sse
    event.raw = obj
    event.__class__ = Failed
    decoded: Failed = event
    return decoded


def _cancelled_event(obj: dict[str, Any], sse: ServerSentEvent) -> Cancelled:
    task_id = obj.get("task_id")
    if type(task_id) is not str or not task_id.strip():
        task_id = _required_str(obj, "task_id", sse, number_ok=True)
    event: Any = _new(_CancelledSlots)
    event.task_id = task_id
    event.sse = sse
    event.raw = obj
    event.__class__ = Cancelled
    decoded: Cancelled = event
    return decoded


def _error_event(obj: dict[str, Any], sse: ServerSentEvent) -> StreamError:
    message = obj.get("message")
    if type(message) is not str:
        message = _opt_error(obj, "message") or ""
    event: Any = _new(_StreamErrorSlots)
    event.message = message
    event.sse = sse
    event.raw = obj
    event.__class__ = StreamError
    decoded: StreamError = event
    return decoded


def _unknown_event(sse: ServerSentEvent, value: Any) -> UnknownEvent:
    """An event of a type this version does not know, ``value`` its data as JSON (None
    when not JSON), with the ``raw`` that ``UnknownEvent.__post_init__`` gives."""
    event: Any = _new(_UnknownEventSlots)
    event.event = sse.event
    event.data = sse.data
    event.json = value
    event.sse = sse
    event.raw = value if isinstance(value, dict) else {}
    event.__class__ = UnknownEvent
    decoded: UnknownEvent = event
    return decoded


#: Where a ``failed`` event's message may be, in order (``error`` is documented).
_FAILED_ERROR_KEYS: Final = ("error", "task_error", "message")


_DECODERS: Final[dict[str, Callable[[dict[str, Any], ServerSentEvent], TaskEvent]]] = {
    "status": _status_event,
    "progress": _progress_event,
    "completed": _completed_event,
    "failed": _failed_event,
    "cancelled": _cancelled_event,
    "error": _error_event,
}


# -- polling payloads --------------------------------------------------------------


def _as_object(obj: object, what: str) -> dict[str, Any]:
    if isinstance(obj, (str, bytes, bytearray)):
        try:
            obj = _load_json(obj if isinstance(obj, str) else bytes(obj))
        except ValueError as exc:
            raise TaskEventError(f"the {what} is not JSON ({exc})") from None
    elif isinstance(obj, dict) and _too_deep(obj):  # a dict decoded elsewhere
        raise TaskEventError(f"the {what} is nested deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(obj, dict):
        raise TaskEventError(f"the {what} must be a JSON object, got {type(obj).__name__}")
    return obj


@dataclass(frozen=True, slots=True)
class TaskSnapshot:
    """A task as ``GET /tasks/{id}`` describes it (the polling endpoint).

    Every field but ``status`` is optional: None when absent, null or of another
    type. ``agent_labels`` is kept as sent when it is a JSON object or array;
    ``gateway_id``, ``dispatch_target`` and ``target_pool`` are strings (an id sent as
    a number is read as its string), like ``agent_id`` and ``tool_type``.
    """

    id: str | None
    status: TaskStatus
    error: str | None = None
    workflow_id: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    retry_count: int | None = None
    agent_id: str | None = None
    gpu_type: str | None = None
    tool_type: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    # Added after ``raw`` so that positional construction keeps its meaning.
    #: The labels of the agent that runs the task, as sent: a JSON object or array.
    agent_labels: dict[str, Any] | list[Any] | None = None
    gateway_id: str | None = None
    dispatch_target: str | None = None
    target_pool: str | None = None

    @property
    def is_terminal(self) -> bool:
        """True once the task is completed, failed or cancelled."""
        return self.status.is_terminal


def decode_task_snapshot(obj: object) -> TaskSnapshot:
    """Decode the JSON of ``GET /tasks/{id}`` (a dict, or its text).

    The status is ``task_status``, falling back to ``status``; ``task_error`` of
    ``""`` or ``null`` means no error (``error`` is then None).

    Raises:
        TaskEventError: Not a JSON object, or it has no status string.
    """
    data = _as_object(obj, "task payload")
    status = data.get("task_status")
    if not isinstance(status, str) or not status.strip():
        status = data.get("status")
    if not isinstance(status, str) or not status.strip():
        raise TaskEventError(
            "the task payload has no status: expected a string 'task_status' (or 'status')",
            field="task_status",
            payload=data,
        )
    return TaskSnapshot(
        id=_opt_str(data, "id") or _opt_str(data, "task_id"),
        status=TaskStatus(status),
        error=_opt_error(data, "task_error"),
        workflow_id=_opt_str(data, "workflow_id"),
        created_at=parse_timestamp(data.get("created_at")),
        started_at=parse_timestamp(data.get("started_at")),
        completed_at=parse_timestamp(data.get("completed_at")),
        retry_count=_opt_int(data, "retry_count"),
        agent_id=_opt_str(data, "agent_id"),
        gpu_type=_opt_str(data, "gpu_type"),
        tool_type=_opt_str(data, "tool_type"),
        raw=data,
        agent_labels=_opt_container(data, "agent_labels"),
        gateway_id=_opt_str(data, "gateway_id"),
        dispatch_target=_opt_str(data, "dispatch_target"),
        target_pool=_opt_str(data, "target_pool"),
    )


@dataclass(frozen=True, slots=True)
class TaskResult:
    """A finished task's result, as ``GET /tasks/{id}/result`` gives it.

    The links are presigned and expire (``expires_at``): fetch the result again for
    fresh ones. ``download_url`` is the one link of "local" tasks; ``download_urls``
    maps output names (such as ``"9.images.0"``) to links for "cloud" tasks.
    """

    id: str | None
    output: Any = None
    download_url: str | None = None
    download_urls: dict[str, str] = field(default_factory=dict)
    expires_at: datetime | None = None
    error: str | None = None
    completed_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def artifact_urls(self) -> list[str]:
        """Every artifact link once: ``download_url`` first, then ``download_urls`` in
        the server's order, without repeats."""
        urls = [self.download_url] if self.download_url else []
        urls += self.download_urls.values()
        return list(dict.fromkeys(urls))


def decode_task_result(obj: object) -> TaskResult:
    """Decode the JSON of ``GET /tasks/{id}/result`` (a dict, or its text).

    ``download_url`` and ``download_urls`` may each be absent or null; entries of
    ``download_urls`` that are not strings are dropped (they stay in ``raw``).

    Raises:
        TaskEventError: Not a JSON object.
    """
    data = _as_object(obj, "result payload")
    urls = data.get("download_urls")
    return TaskResult(
        id=_opt_str(data, "id") or _opt_str(data, "task_id"),
        output=data.get("task_output", data.get("output")),
        download_url=_opt_str(data, "download_url") or None,
        download_urls=(
            {str(k): v for k, v in urls.items() if isinstance(v, str) and v}
            if isinstance(urls, dict)
            else {}
        ),
        expires_at=parse_timestamp(data.get("expires_at")),
        error=_opt_error(data, "task_error"),
        completed_at=parse_timestamp(data.get("completed_at")),
        raw=data,
    )


# -- webhooks ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified webhook delivery."""

    event_type: str
    task_id: str | None
    status: TaskStatus | None
    output: Any = None
    error: str | None = None
    timestamp: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


_SIGNATURE: Final = re.compile(r"sha256=([0-9a-fA-F]{64})")


def verify_webhook(secret: str | bytes, body: bytes, signature_header: str | None) -> WebhookEvent:
    """Check a webhook's signature, then decode it.

    Args:
        secret: The webhook's signing secret (a ``str`` is UTF-8 encoded).
        body: The raw request body, exactly as received (not re-serialised JSON).
        signature_header: The ``X-Webhook-Signature-256`` header value,
            ``sha256=<hex HMAC-SHA256(secret, body)>``, or None when it was missing.

    Returns:
        The decoded delivery.

    Raises:
        WebhookSignatureError: The header is missing or malformed, or the signature
            does not match (compared in constant time). The body is not parsed then.
        TaskEventError: The signature matches but the body is not a JSON object.
    """
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not isinstance(secret, (bytes, bytearray)) or not secret:
        raise WebhookSignatureError("no webhook secret: pass the secret the webhook was made with")
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError("verify_webhook needs the raw body as bytes, exactly as received")
    if not signature_header:
        raise WebhookSignatureError(
            "no signature: the request has no X-Webhook-Signature-256 header; reject it"
        )
    m = _SIGNATURE.fullmatch(signature_header.strip())
    if m is None:
        raise WebhookSignatureError(
            "malformed signature header: expected 'sha256=' and 64 hex digits; reject it"
        )
    expected = hmac.new(bytes(secret), bytes(body), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, m.group(1).lower()):
        raise WebhookSignatureError(
            "signature mismatch: the body was not signed with this secret (or was "
            "changed on the way); reject it"
        )
    data = _as_object(bytes(body), "webhook body")
    status = data.get("task_status")
    return WebhookEvent(
        event_type=_opt_str(data, "event_type") or "",
        task_id=_opt_str(data, "task_id"),
        status=TaskStatus(status) if isinstance(status, str) and status.strip() else None,
        output=data.get("task_output"),
        error=_opt_error(data, "task_error"),
        timestamp=parse_timestamp(data.get("timestamp")),
        raw=data,
    )
