"""The event types the parser returns: immutable, validated named tuples.

Kept apart from the parser core (``_core.py``) because the core may be compiled with
mypyc, which cannot compile tuple subclasses; these stay plain Python either way.
Building a tuple subclass is about three times cheaper than building a frozen
dataclass, which matters at a million events a second; the classes keep
dataclass-like equality (only with their own type) and validation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Iterable

    from typing_extensions import Self

__all__ = ["Comment", "ServerSentEvent"]

_new = tuple.__new__
_tuple_eq = tuple.__eq__


def _validated_make(cls: Any, iterable: Iterable[Any]) -> Any:
    return cls(*iterable)


class _EventFields(NamedTuple):
    event: str
    data: str
    id: str


class ServerSentEvent(_EventFields):
    """One dispatched event, as the standard's ``MessageEvent`` describes it.

    An immutable named tuple ``(event, data, id)``. It equals only another
    ``ServerSentEvent`` with the same fields (never a plain tuple).

    Args:
        event: The event type: the last ``event:`` field of the block, or
            ``"message"`` when there was none (or it was empty).
        data: The ``data:`` lines of the block joined with LF.
        id: The last event ID at dispatch time: sticky, carried over from earlier
            events until an ``id:`` field changes it (the standard's ``lastEventId``).

    Raises:
        TypeError: If a field is not a ``str``.
        ValueError: If ``id`` contains NUL, CR or LF, or ``event`` contains CR or LF
            (values that no event stream can carry).
    """

    __slots__ = ()

    def __new__(cls, event: str = "message", data: str = "", id: str = "") -> Self:
        for name, value in (("event", event), ("data", data), ("id", id)):
            if not isinstance(value, str):
                raise TypeError(f"ServerSentEvent.{name} must be a str, not {type(value).__name__}")
        if "\r" in event or "\n" in event:
            raise ValueError(f"ServerSentEvent.event cannot contain CR or LF: {event!r}")
        if "\r" in id or "\n" in id or "\0" in id:
            raise ValueError(f"ServerSentEvent.id cannot contain NUL, CR or LF: {id!r}")
        return _new(cls, (event, data, id))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return _tuple_eq(self, other)

    def __ne__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return not _tuple_eq(self, other)

    __hash__ = _EventFields.__hash__

    # namedtuple's own _make (and so _replace) would skip __new__'s validation.
    _make = classmethod(_validated_make)  # type: ignore[assignment]

    def json(self) -> Any:
        """Decode :attr:`data` as JSON (``json.loads``)."""
        import json

        return json.loads(self.data)


class _CommentFields(NamedTuple):
    text: str


class Comment(_CommentFields):
    """A comment line (``:`` and text), returned only by ``comments=True`` parsers.

    ``text`` is what follows the colon, with one leading U+0020 removed, the same
    rule as for field values (so ``: ping`` gives ``"ping"``). Servers send comments
    as heartbeats; they never touch the event being built. Like
    :class:`ServerSentEvent`, an immutable named tuple equal only to its own type.
    """

    __slots__ = ()

    def __new__(cls, text: str = "") -> Self:
        if not isinstance(text, str):
            raise TypeError(f"Comment.text must be a str, not {type(text).__name__}")
        return _new(cls, (text,))

    __eq__ = ServerSentEvent.__eq__
    __ne__ = ServerSentEvent.__ne__
    __hash__ = _CommentFields.__hash__
    _make = classmethod(_validated_make)  # type: ignore[assignment]
