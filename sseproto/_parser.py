"""The public face of the event-stream parser.

The state machine lives in ``_core.py`` (see its theory of operation), which the
build compiles with mypyc when it can; this module picks the compiled core, or the
pure-Python one when there is none or ``SSEPROTO_NO_EXTENSIONS`` is set, and gives it
its typed, documented class.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import TYPE_CHECKING, Generic, Literal, TypeVar, overload

from ._events import Comment, ServerSentEvent

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["Comment", "EventStreamParser", "ServerSentEvent"]


def _pure_core() -> ModuleType:
    """The pure-Python core, loaded from ``_core.py`` even when a compiled one exists."""
    name = f"{__package__}._core_pure"
    module = sys.modules.get(name)
    if module is None:
        path = os.path.join(os.path.dirname(__file__), "_core.py")
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


if TYPE_CHECKING:
    from . import _core
elif os.environ.get("SSEPROTO_NO_EXTENSIONS"):
    _core = _pure_core()
else:
    try:
        from . import _core
    except ImportError:  # a compiled core that cannot load (built for another Python)
        _core = _pure_core()

#: True when the parser runs compiled (mypyc), False when it runs as Python.
compiled: bool = not str(_core.__file__).endswith(".py")

DEFAULT_MAX_LINE_BYTES: int = _core.DEFAULT_MAX_LINE_BYTES
DEFAULT_MAX_EVENT_BYTES: int = _core.DEFAULT_MAX_EVENT_BYTES

T = TypeVar("T", ServerSentEvent, "ServerSentEvent | Comment")


class EventStreamParser(_core.ParserCore, Generic[T]):
    """A sans-IO parser for ``text/event-stream``: feed it bytes, get events back.

    ::

        parser = EventStreamParser()
        for chunk in chunks:                 # any chunking, down to one byte
            for event in parser.feed(chunk):
                handle(event)
        parser.close()                       # end of stream

    Args:
        last_event_id: The last event ID to start from. A fresh stream starts from
            ``""``; a stream resumed with ``Last-Event-ID`` starts from the id that was
            sent, so its first events report it (as browsers and the WPT suite do).
        max_line_bytes: The longest line accepted, in bytes without its line end.
            A server that never sends a line end costs at most this much memory.
        max_event_bytes: The most data one event may carry, in bytes as received
            (its ``data:`` values plus one LF each).
        comments: If true, ``feed`` also returns a :class:`Comment` for every comment
            line, in stream order among the events (for heartbeat logging). Callers
            who leave it false pay nothing for comments.

    Attributes:
        last_event_id: The last event ID as of the last blank line: what a client
            sends as ``Last-Event-ID`` when it reconnects. An ``id:`` line of an event
            whose blank line has not arrived yet is not in it.
        retry: The last valid ``retry:`` value, in milliseconds, or None if the
            stream has sent none. It takes effect as soon as its line is read.
    """

    __slots__ = ()

    @overload
    def __init__(
        self: EventStreamParser[ServerSentEvent],
        *,
        last_event_id: str = "",
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        comments: Literal[False] = False,
    ) -> None: ...

    @overload
    def __init__(
        self: EventStreamParser[ServerSentEvent | Comment],
        *,
        last_event_id: str = "",
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        comments: Literal[True],
    ) -> None: ...

    def __init__(
        self,
        *,
        last_event_id: str = "",
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        comments: bool = False,
    ) -> None:
        super().__init__(
            last_event_id=last_event_id,
            max_line_bytes=max_line_bytes,
            max_event_bytes=max_event_bytes,
            comments=comments,
        )

    if TYPE_CHECKING:  # the core's methods, with the types this class promises

        def feed(self, chunk: bytes) -> list[T]: ...  # type: ignore[override]
