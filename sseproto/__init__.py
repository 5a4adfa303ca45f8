"""sseproto: Server-Sent Events, exact to the standard, for any event loop.

Layer 1 (sans-IO): :class:`EventStreamParser` turns bytes into
:class:`ServerSentEvent` objects; :func:`encode_event` and :func:`encode_comment`
do the reverse. See ``DESIGN.md`` for the layers above.
"""

from ._encoder import encode_comment, encode_event
from ._errors import EventStreamError, SSEProtoError
from ._parser import Comment, EventStreamParser, ServerSentEvent

__version__ = "0.1.0"

__all__ = [
    "Comment",
    "EventStreamError",
    "EventStreamParser",
    "SSEProtoError",
    "ServerSentEvent",
    "__version__",
    "encode_comment",
    "encode_event",
]
