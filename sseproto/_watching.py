"""The task-watch policy, sans-IO: stream, then polling, then the result.

Theory of operation: :class:`WatchPolicy` is told what happened (an item of the task
stream, the stream's end, a polled snapshot, a fetched result, a failed call) and the
time, and answers what to do next (:class:`FollowStream`, :class:`FetchTask`,
:class:`FetchResult`, :class:`~sseproto.Wait`, :class:`Finish`). Every driver's
``watch`` is a loop around it, so the rules are written once and tested without I/O:

* Follow the events stream to the terminal event. A malformed terminal event
  (``completed`` whose payload does not decode) is confirmed by polling; other
  malformed events and ``error`` events are reported and skipped.
* Poll ``GET /tasks/{id}`` every ``poll_interval`` seconds when the stream is not
  available: it ended without a terminal event (a 204, or a close right after an
  ``error`` event), it is not an event stream, reconnecting kept failing, or the
  endpoint answered 404, 405 or 501. Any other refusal (401, 403, …) is final.
* A polling or result call that fails transiently (``_rules.is_transient``) is tried
  again after ``poll_interval`` (or the server's ``Retry-After``, capped at
  ``max_backoff``), ``MAX_POLL_FAILURES`` times in a row at most; every wait is logged.
* The terminal state decides the end: failed raises ``TaskFailed``, cancelled
  ``TaskCancelled``, completed fetches the result.

The task stream's reconnect rule (a close right after an ``error`` event means "no
stream here") lives here too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ._errors import (
    ContentTypeError,
    HTTPStatusError,
    ReconnectError,
    SSEProtoError,
    StreamUnavailable,
    TaskCancelled,
    TaskEventError,
    TaskFailed,
    UsageError,
)
from ._eventsource import Wait
from ._rules import MAX_BACKOFF, MAX_POLL_FAILURES, count, is_transient, seconds, shown
from .tasks import (
    TERMINAL_EVENTS,
    Cancelled,
    Failed,
    StreamError,
    TaskEvent,
    TaskResult,
    TaskSnapshot,
    TaskStatus,
)

if TYPE_CHECKING:
    from ._parser import ServerSentEvent

__all__ = [
    "FetchResult",
    "FetchTask",
    "Finish",
    "FollowStream",
    "WatchItem",
    "WatchPolicy",
    "reconnect_after",
]

log = logging.getLogger("sseproto")

#: What ``watch`` hands ``on_event``: a typed stream event, a polling snapshot, or a
#: TaskEventError for a malformed event that was skipped.
WatchItem = TaskEvent | TaskSnapshot | TaskEventError

#: The events endpoint's statuses that mean "no stream here": poll instead.
NO_STREAM_STATUSES: Final = frozenset({404, 405, 501})


# -- the typed task stream -------------------------------------------------------------


def reconnect_after(last: ServerSentEvent | None) -> bool:
    """The task stream's reconnect rule: a clean close right after an ``error`` event
    is the API's signal that the stream is unavailable; any other end resumes."""
    return last is None or last.event != "error"


# -- actions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FollowStream:
    """Read the task's events stream, reporting each item (:meth:`WatchPolicy.stream_item`)
    and then its end (:meth:`WatchPolicy.stream_ended`)."""


@dataclass(frozen=True, slots=True)
class FetchTask:
    """Call ``GET /tasks/{id}``; report :meth:`WatchPolicy.task_fetched` or
    :meth:`WatchPolicy.call_failed`."""


@dataclass(frozen=True, slots=True)
class FetchResult:
    """Call ``GET /tasks/{id}/result``; report :meth:`WatchPolicy.result_fetched` or
    :meth:`WatchPolicy.call_failed`."""


@dataclass(frozen=True, slots=True)
class Finish:
    """The watch is over: return ``result``, or raise ``error`` when it is not None."""

    result: TaskResult | None = None
    error: SSEProtoError | None = None

    def outcome(self) -> TaskResult:
        """The result, or raise the error."""
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


_STREAM, _STREAMING, _POLL, _RESULT = "stream", "streaming", "poll", "result"


class WatchPolicy:
    """The task-watch policy of ``watch`` (see the module's docstring).

    Args:
        task_id: The task (for messages).
        poll_interval: Seconds between polls (above 0).
        max_backoff: The cap of a server's ``Retry-After``.
        max_failures: Transient failures in a row before a call's error is final.

    Raises:
        ConfigurationError: A setting that cannot work.
    """

    def __init__(
        self,
        task_id: str,
        *,
        poll_interval: float = 3.0,
        max_backoff: float = MAX_BACKOFF,
        max_failures: int = MAX_POLL_FAILURES,
    ) -> None:
        self.task_id = task_id
        self._interval = seconds("poll_interval", poll_interval, positive=True)
        self._max_backoff = seconds("max_backoff", max_backoff, positive=True)
        self._max_failures = count("max_failures", max_failures)
        self._phase = _STREAM
        self._at: float | None = None
        self._failures = 0
        self._final: TaskEvent | TaskSnapshot | None = None
        self._finish: Finish | None = None

    def next_action(self, now: float) -> FollowStream | FetchTask | FetchResult | Wait | Finish:
        """What to do now (``now``: the driver's monotonic clock, in seconds)."""
        if self._finish is not None:
            return self._finish
        if self._at is not None and now < self._at:
            return Wait(self._at)
        self._at = None
        phase = self._phase
        if phase is _STREAM:
            self._phase = _STREAMING
            return FollowStream()
        if phase is _POLL:
            return FetchTask()
        if phase is _RESULT:
            return FetchResult()
        raise UsageError("next_action() while the stream is followed: report its end first")

    # -- the stream -----------------------------------------------------------------

    def stream_item(self, item: TaskEvent | TaskEventError) -> bool:
        """An item of the task stream; True: go on reading, False: stop the stream."""
        if isinstance(item, TaskEventError):
            if item.event is not None and item.event.event in TERMINAL_EVENTS:
                log.warning("a malformed terminal event (%s); confirming by polling", item)
                return False
            log.warning("skipped a malformed task event: %s", item)
            return True
        if isinstance(item, StreamError):
            log.warning("the server reported an error reading task state: %s", item)
        if item.is_terminal:
            self._final = item
            return False
        return True

    def stream_ended(self, error: SSEProtoError | None = None) -> None:
        """The stream is over: after a terminal event or a malformed one, at its end,
        or with ``error`` (what the stream raised)."""
        if self._phase is not _STREAMING:
            raise UsageError("stream_ended() with no stream followed")
        if self._final is not None:
            self._decide(self._final)
            return
        if error is None or isinstance(
            error, (StreamUnavailable, ContentTypeError, ReconnectError)
        ):
            log.info(
                "task %s: the event stream is unavailable (%s); polling",
                self.task_id,
                error or "a terminal event to confirm",
            )
        elif isinstance(error, HTTPStatusError) and error.status_code in NO_STREAM_STATUSES:
            log.info(
                "task %s: the events endpoint answered %s; polling",
                self.task_id,
                error.status_code,
            )
        else:
            self._finish = Finish(error=error)
            return
        self._phase = _POLL

    # -- the calls ------------------------------------------------------------------

    def task_fetched(self, snapshot: TaskSnapshot, now: float) -> None:
        """A polled snapshot of the task."""
        self._failures = 0
        if snapshot.is_terminal:
            self._decide(snapshot)
        else:
            self._at = now + self._interval

    def result_fetched(self, result: TaskResult) -> None:
        """The result of the completed task."""
        self._finish = Finish(result=result)

    def call_failed(self, error: SSEProtoError, now: float) -> None:
        """The last FetchTask or FetchResult failed with ``error``."""
        self._failures += 1
        if not is_transient(error) or self._failures >= self._max_failures:
            self._finish = Finish(error=error)
            return
        wait = self._interval
        retry_after = error.retry_after if isinstance(error, HTTPStatusError) else None
        if retry_after is not None:
            if retry_after > self._max_backoff:
                log.warning(
                    "the server asked to wait %.0f s (Retry-After); waiting at most %.0f s",
                    retry_after,
                    self._max_backoff,
                )
            wait = max(wait, min(retry_after, self._max_backoff))
        what = "fetching the result of" if self._phase is _RESULT else "polling"
        log.info("%s task %s failed (%s); trying again in %.1f s", what, self.task_id, error, wait)
        self._at = now + wait

    def _decide(self, final: TaskEvent | TaskSnapshot) -> None:
        self._failures = 0
        task = self.task_id
        if isinstance(final, Failed) or (
            isinstance(final, TaskSnapshot) and final.status == TaskStatus.FAILED
        ):
            error = final.error if isinstance(final, Failed) else (final.error or "")
            self._finish = Finish(
                error=TaskFailed(
                    f"task {task} failed: {error or 'no reason given'}",
                    task_id=task,
                    error=error,
                    snapshot=final,
                )
            )
        elif isinstance(final, Cancelled) or (
            isinstance(final, TaskSnapshot) and final.status == TaskStatus.CANCELLED
        ):
            self._finish = Finish(
                error=TaskCancelled(f"task {task} was cancelled", task_id=task, snapshot=final)
            )
        else:
            self._phase = _RESULT

    def __repr__(self) -> str:
        return f"<WatchPolicy task {shown(self.task_id)} {self._phase}>"
