"""The exception tree of sseproto.

Every exception sseproto raises on purpose derives from :class:`SSEProtoError`, so
``except sseproto.SSEProtoError`` catches all of them and nothing else. Lower layers'
exceptions (h11's, ssl's, trio's) are translated into these at the boundary where
they happen; they never leak. Messages say what went wrong and what to do about it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["EventStreamError", "SSEProtoError", "TaskEventError", "WebhookSignatureError"]


class SSEProtoError(Exception):
    """The root of every exception sseproto raises on purpose."""


class EventStreamError(SSEProtoError):
    """The event stream broke a limit or the parser was used after it ended.

    Attributes:
        events: The events (and comments, if requested) that the failing ``feed``
            call had already completed before the fault, in order. Nothing that was
            complete is lost: deliver these, then handle the error.
    """

    def __init__(self, message: str, events: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.events: list[Any] = list(events)


class TaskEventError(SSEProtoError):
    """A task payload could not be decoded: not a JSON object, or a field it cannot
    be without is missing or of the wrong type. Extra or unknown fields never cause it.

    Attributes:
        event: The :class:`~sseproto.ServerSentEvent` at fault (None for the polling
            and webhook payloads).
        field: The name of the field at fault, or None when the whole payload is.
        payload: The decoded JSON object, when there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        event: Any = None,
        field: str | None = None,
        payload: Any = None,
    ) -> None:
        super().__init__(message)
        self.event = event
        self.field = field
        self.payload = payload


class WebhookSignatureError(SSEProtoError):
    """A webhook delivery's signature is missing, malformed or wrong: reject the request."""
