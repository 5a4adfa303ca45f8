"""sseproto: Server-Sent Events, exact to the standard, for any event loop.

Layer 1 (sans-IO): :class:`EventStreamParser` turns bytes into
:class:`ServerSentEvent` objects; :func:`encode_event` and :func:`encode_comment`
do the reverse. Layer 2 (:mod:`sseproto.tasks`, pure too): :func:`decode_task_event`
turns the task stream's events into typed objects, with the polling and webhook
payloads beside it. See ``DESIGN.md`` for the layers above.
"""

from ._client import DEFAULT_BASE_URL, Client, watch
from ._encoder import encode_comment, encode_event
from ._errors import (
    CertificateError,
    ConfigurationError,
    ConnectError,
    ConnectTimeout,
    ContentTypeError,
    EventStreamError,
    HTTPStatusError,
    ReadTimeout,
    ReconnectError,
    RemoteProtocolError,
    SSEProtoError,
    StreamUnavailable,
    TaskCancelled,
    TaskError,
    TaskEventError,
    TaskFailed,
    TransportError,
    WebhookSignatureError,
)
from ._parser import Comment, EventStreamParser, ServerSentEvent
from ._stream import EventStream, open_event_stream
from ._version import __version__
from .tasks import (
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
    "Cancelled",
    "CertificateError",
    "Client",
    "Comment",
    "Completed",
    "ConfigurationError",
    "ConnectError",
    "ConnectTimeout",
    "ContentTypeError",
    "EventStream",
    "EventStreamError",
    "EventStreamParser",
    "Failed",
    "HTTPStatusError",
    "Progress",
    "ReadTimeout",
    "ReconnectError",
    "RemoteProtocolError",
    "SSEProtoError",
    "ServerSentEvent",
    "StatusChanged",
    "StreamError",
    "StreamUnavailable",
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
