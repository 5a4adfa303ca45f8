"""sseproto: Server-Sent Events, exact to the standard, for any event loop.

Layer 1 (sans-IO): :class:`EventStreamParser` turns bytes into
:class:`ServerSentEvent` objects; :func:`encode_event` and :func:`encode_comment`
do the reverse. Layer 2 (:mod:`sseproto.tasks`, pure too): :func:`decode_task_event`
turns the task stream's events into typed objects, with the polling and webhook
payloads beside it. Layer 3 (pure too): :class:`EventSource`, the reconnection model
as a state machine. Layer 4: the trio + h11 driver (:func:`open_event_stream`,
:class:`Client`, :func:`watch`), loaded on first use, so ``import sseproto`` loads no
I/O library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._api import DEFAULT_BASE_URL
from ._encoder import encode_comment, encode_event
from ._errors import (
    CertificateError,
    ConfigurationError,
    ConnectError,
    ConnectTimeout,
    ContentTypeError,
    EventStreamError,
    HTTPStatusError,
    NameResolutionError,
    ProxyError,
    ReadTimeout,
    ReconnectError,
    RemoteProtocolError,
    SSEProtoError,
    StreamUnavailable,
    TaskCancelled,
    TaskError,
    TaskEventError,
    TaskFailed,
    TLSHandshakeError,
    TransportError,
    UsageError,
    WebhookSignatureError,
)
from ._eventsource import Connect, EventSource, Stop, Wait
from ._parser import Comment, EventStreamParser, ServerSentEvent
from ._version import __version__
from .tasks import (
    MAX_JSON_DEPTH,
    TERMINAL_EVENTS,
    Cancelled,
    Completed,
    Failed,
    Progress,
    StatusChanged,
    StreamError,
    TaskEvent,
    TaskResult,
    TaskSnapshot,
    TaskStatus,
    UnknownEvent,
    WebhookEvent,
    decode_task_event,
    decode_task_result,
    decode_task_snapshot,
    parse_timestamp,
    verify_webhook,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_JSON_DEPTH",
    "TERMINAL_EVENTS",
    "Cancelled",
    "CertificateError",
    "Client",
    "Comment",
    "Completed",
    "ConfigurationError",
    "Connect",
    "ConnectError",
    "ConnectTimeout",
    "ContentTypeError",
    "EventSource",
    "EventStream",
    "EventStreamError",
    "EventStreamParser",
    "Failed",
    "HTTPStatusError",
    "NameResolutionError",
    "Progress",
    "ProxyError",
    "ReadTimeout",
    "ReconnectError",
    "RemoteProtocolError",
    "SSEProtoError",
    "ServerSentEvent",
    "StatusChanged",
    "Stop",
    "StreamError",
    "StreamUnavailable",
    "TLSHandshakeError",
    "TaskCancelled",
    "TaskError",
    "TaskEvent",
    "TaskEventError",
    "TaskFailed",
    "TaskResult",
    "TaskSnapshot",
    "TaskStatus",
    "TransportError",
    "UnknownEvent",
    "UsageError",
    "Wait",
    "WebhookEvent",
    "WebhookSignatureError",
    "__version__",
    "decode_task_event",
    "decode_task_result",
    "decode_task_snapshot",
    "encode_comment",
    "encode_event",
    "open_event_stream",
    "parse_timestamp",
    "verify_webhook",
    "watch",
]

if TYPE_CHECKING:
    from . import asyncio as asyncio
    from . import sync as sync
    from ._client import Client, watch
    from ._stream import EventStream, open_event_stream

# The drivers, loaded on first use (PEP 562): the parser, the decoders and
# EventSource cost no I/O library. ``sseproto.asyncio`` and ``sseproto.sync`` (httpx)
# are submodules, also reachable as attributes after a plain ``import sseproto``.
_LAZY = {
    "Client": "._client",
    "watch": "._client",
    "EventStream": "._stream",
    "open_event_stream": "._stream",
}
_SUBMODULES = ("asyncio", "sync")


def __getattr__(name: str) -> Any:
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)  # sets the attribute
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sseproto' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
