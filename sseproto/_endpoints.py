"""The task API's endpoints and ``watch``'s loop, written once for every driver.

Theory of operation: a driver's ``Client`` supplies two things, ``_exchange`` (send
the request of an ``_api.Call`` once and return the answer) and ``_open_stream`` (its
``open_event_stream`` on the task's events URL); :class:`AsyncEndpoints` (trio and
asyncio) and :class:`SyncEndpoints` (blocking) build every endpoint on them, and
:func:`watch_async` / :func:`watch_sync` run the sans-IO task-watch policy
(``_watching.WatchPolicy``) with the driver's clock and sleep. Nothing here imports an
I/O library: the awaits are the driver's.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import TYPE_CHECKING, Any

from . import _api, _watching
from ._errors import SSEProtoError, StreamUnavailable, TaskEventError
from ._eventsource import Wait
from ._proxy import FROM_ENVIRONMENT, proxy_setting
from ._rules import seconds
from .tasks import decode_task_event, decode_task_result, decode_task_snapshot

if TYPE_CHECKING:
    import ssl
    from collections.abc import (
        AsyncGenerator,
        AsyncIterator,
        Awaitable,
        Callable,
        Generator,
        Iterator,
        Mapping,
    )
    from contextlib import AbstractAsyncContextManager, AbstractContextManager

    from ._parser import ServerSentEvent
    from ._rules import HeaderFields
    from ._watching import WatchItem
    from .tasks import TaskEvent, TaskResult, TaskSnapshot

__all__ = ["AsyncEndpoints", "ClientBase", "SyncEndpoints", "watch_async", "watch_sync"]

_STREAM_DOC = """The task's typed events, reconnecting, ending after the terminal one.

        A malformed event is yielded as its :class:`~sseproto.TaskEventError` (and the
        stream goes on); an ``error`` event is yielded and the stream goes on.
        Prefer ``watch``, which also falls back to polling."""


def _typed(sse: ServerSentEvent) -> TaskEvent | TaskEventError:
    try:
        return decode_task_event(sse)
    except TaskEventError as exc:
        return exc


def _unfinished() -> StreamUnavailable:
    return StreamUnavailable("the stream ended without a terminal event")


class ClientBase:
    """What every driver's ``Client`` holds: the settings (``_api.Settings``: key,
    base URL, team), the TLS trust, the proxy setting and the timeouts. Its repr never
    shows the key (nor a proxy's password)."""

    def __init__(
        self,
        api_key: _api.KeySource,
        base_url: str | None,
        team_id: str | None,
        ssl_context: ssl.SSLContext | None,
        connect_timeout: float,
        read_timeout: float,
        proxy: str | None = FROM_ENVIRONMENT,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._settings = _api.Settings(api_key, base_url, team_id, headers)
        self._proxy = proxy_setting(proxy)  # checked now, before anything is sent
        self._proxy_given = proxy  # for the streams, which check it again
        self.base_url = self._settings.base_url
        self.team_id = self._settings.team_id
        self.ssl_context = ssl_context
        self.connect_timeout = seconds("connect_timeout", connect_timeout, positive=True)
        self.read_timeout = seconds("read_timeout", read_timeout, positive=True)

    def __repr__(self) -> str:
        return f"<{type(self).__module__.replace('._client', '')} Client {self.base_url}>"

    def headers(self) -> dict[str, str]:
        """The headers every request carries (the key asked of its function, if
        ``api_key`` is one): streams call this for each connection."""
        return self._settings.headers()


class AsyncEndpoints(ClientBase):
    """The endpoints of the task API, for a driver whose ``_call`` is async."""

    async def _exchange(self, call: _api.Call) -> tuple[int, HeaderFields, str, bytes]:
        """Send ``call``'s request once: the answer's status, header fields, reason
        phrase and body."""
        raise NotImplementedError  # pragma: no cover

    async def _answer(self, method: str, path: str, payload: Any = None) -> _api.Call:
        call = _api.Call(self._settings, method, path, payload)
        while call.receive(*await self._exchange(call)):
            pass  # a redirect: send again
        return call

    async def _call(self, method: str, path: str, payload: Any = None) -> Any:
        return (await self._answer(method, path, payload)).value

    async def _result_dated(self, task_id: str) -> tuple[TaskResult, float | None]:
        """``get_result``, and the server's ``Date`` of its answer (the links' clock)."""
        call = await self._answer("GET", _api.task_path(task_id, "result"))
        return decode_task_result(call.value), call.date

    def _open_stream(
        self, url: str, last_event_id: str
    ) -> AbstractAsyncContextManager[AsyncIterator[ServerSentEvent]]:
        raise NotImplementedError  # pragma: no cover

    async def get_task(self, task_id: str) -> TaskSnapshot:
        """``GET /tasks/{id}``: the task's current state."""
        return decode_task_snapshot(await self._call("GET", _api.task_path(task_id)))

    async def get_result(self, task_id: str) -> TaskResult:
        """``GET /tasks/{id}/result`` (a finished task; the links expire, fetch again)."""
        return decode_task_result(await self._call("GET", _api.task_path(task_id, "result")))

    async def cancel_task(self, task_id: str) -> None:
        """``POST /tasks/{id}/cancel`` (a no-op success on a finished task)."""
        await self._call("POST", _api.task_path(task_id, "cancel"), {})

    async def run_workflow(self, workflow: str, parameters: dict[str, Any] | None = None) -> str:
        """Start a task from a workflow id, a slug or ``slug@version``; its task id."""
        path = _api.run_path(workflow)
        return _api.read_run(await self._call("POST", path, {"parameters": parameters or {}}), path)

    async def list_tasks(
        self, *, status: str | None = None, page: int = 1, per_page: int = 20
    ) -> tuple[list[TaskSnapshot], dict[str, Any]]:
        """``GET /tasks``: one page of tasks, and the page metadata."""
        return _api.read_list(await self._call("GET", _api.list_path(status, page, per_page)))

    async def task_events(
        self, task_id: str, *, last_event_id: str = ""
    ) -> AsyncGenerator[TaskEvent | TaskEventError, None]:
        async with self._open_stream(self._settings.events_url(task_id), last_event_id) as stream:
            async for sse in stream:
                item = _typed(sse)
                yield item
                if not isinstance(item, TaskEventError) and item.is_terminal:
                    return  # the task stream ends there
            raise _unfinished()

    task_events.__doc__ = (
        _STREAM_DOC
        + """ If you may stop before the end, close it
        deterministically::

            async with contextlib.aclosing(client.task_events(task_id)) as events:
                async for event in events: ...
        """
    )


class SyncEndpoints(ClientBase):
    """The endpoints of the task API, for a blocking driver."""

    def _exchange(self, call: _api.Call) -> tuple[int, HeaderFields, str, bytes]:
        """Send ``call``'s request once: the answer's status, header fields, reason
        phrase and body."""
        raise NotImplementedError  # pragma: no cover

    def _answer(self, method: str, path: str, payload: Any = None) -> _api.Call:
        call = _api.Call(self._settings, method, path, payload)
        while call.receive(*self._exchange(call)):
            pass  # a redirect: send again
        return call

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        return self._answer(method, path, payload).value

    def _result_dated(self, task_id: str) -> tuple[TaskResult, float | None]:
        """``get_result``, and the server's ``Date`` of its answer (the links' clock)."""
        call = self._answer("GET", _api.task_path(task_id, "result"))
        return decode_task_result(call.value), call.date

    def _open_stream(
        self, url: str, last_event_id: str
    ) -> AbstractContextManager[Iterator[ServerSentEvent]]:
        raise NotImplementedError  # pragma: no cover

    def get_task(self, task_id: str) -> TaskSnapshot:
        """``GET /tasks/{id}``: the task's current state."""
        return decode_task_snapshot(self._call("GET", _api.task_path(task_id)))

    def get_result(self, task_id: str) -> TaskResult:
        """``GET /tasks/{id}/result`` (a finished task; the links expire, fetch again)."""
        return decode_task_result(self._call("GET", _api.task_path(task_id, "result")))

    def cancel_task(self, task_id: str) -> None:
        """``POST /tasks/{id}/cancel`` (a no-op success on a finished task)."""
        self._call("POST", _api.task_path(task_id, "cancel"), {})

    def run_workflow(self, workflow: str, parameters: dict[str, Any] | None = None) -> str:
        """Start a task from a workflow id, a slug or ``slug@version``; its task id."""
        path = _api.run_path(workflow)
        return _api.read_run(self._call("POST", path, {"parameters": parameters or {}}), path)

    def list_tasks(
        self, *, status: str | None = None, page: int = 1, per_page: int = 20
    ) -> tuple[list[TaskSnapshot], dict[str, Any]]:
        """``GET /tasks``: one page of tasks, and the page metadata."""
        return _api.read_list(self._call("GET", _api.list_path(status, page, per_page)))

    def task_events(
        self, task_id: str, *, last_event_id: str = ""
    ) -> Generator[TaskEvent | TaskEventError, None, None]:
        with self._open_stream(self._settings.events_url(task_id), last_event_id) as stream:
            for sse in stream:
                item = _typed(sse)
                yield item
                if not isinstance(item, TaskEventError) and item.is_terminal:
                    return
            raise _unfinished()

    task_events.__doc__ = (
        _STREAM_DOC
        + """ If you may stop before the end, close it
        deterministically::

            with contextlib.closing(client.task_events(task_id)) as events:
                for event in events: ...
        """
    )


async def _emit(on_event: Any, item: WatchItem) -> None:
    if on_event is not None:
        result = on_event(item)
        if inspect.isawaitable(result):
            await result


async def watch_async(
    client: AsyncEndpoints,
    task_id: str,
    *,
    poll_interval: float,
    on_event: Callable[[WatchItem], Awaitable[None] | None] | None,
    clock: Callable[[], float],
    sleep_until: Callable[[float], Awaitable[object]],
    last_event_id: str = "",
) -> TaskResult:
    """``watch``'s loop for an async driver: does what the policy says, tells it what
    happened. ``clock`` and ``sleep_until`` are the driver's (trio's or asyncio's)."""
    policy = _watching.WatchPolicy(task_id, poll_interval=poll_interval)
    while True:
        action = policy.next_action(clock())
        if isinstance(action, _watching.Finish):
            return action.outcome()
        if isinstance(action, Wait):
            await sleep_until(action.until)
        elif isinstance(action, _watching.FollowStream):
            try:
                async with contextlib.aclosing(
                    client.task_events(task_id, last_event_id=last_event_id)
                ) as events:
                    async for item in events:
                        await _emit(on_event, item)
                        if not policy.stream_item(item):
                            break
            except SSEProtoError as exc:
                policy.stream_ended(exc)
            else:
                policy.stream_ended()
        elif isinstance(action, _watching.FetchTask):
            try:
                snapshot = await client.get_task(task_id)
            except SSEProtoError as exc:
                policy.call_failed(exc, clock())
            else:
                await _emit(on_event, snapshot)
                policy.task_fetched(snapshot, clock())
        else:
            try:
                result = await client.get_result(task_id)
            except SSEProtoError as exc:
                policy.call_failed(exc, clock())
            else:
                policy.result_fetched(result)


def _emit_sync(on_event: Any, item: WatchItem) -> None:
    if on_event is not None and inspect.isawaitable(result := on_event(item)):
        if inspect.iscoroutine(result):
            result.close()  # never awaited: do not leave a warning behind
        raise TypeError(
            "on_event returned an awaitable: the blocking watch calls plain functions; "
            "use sseproto.asyncio.watch for an async on_event"
        )


def watch_sync(
    client: SyncEndpoints,
    task_id: str,
    *,
    poll_interval: float,
    on_event: Callable[[WatchItem], None] | None,
    clock: Callable[[], float],
    sleep_until: Callable[[float], object],
    last_event_id: str = "",
) -> TaskResult:
    """``watch``'s loop for a blocking driver (the same steps as :func:`watch_async`)."""
    policy = _watching.WatchPolicy(task_id, poll_interval=poll_interval)
    while True:
        action = policy.next_action(clock())
        if isinstance(action, _watching.Finish):
            return action.outcome()
        if isinstance(action, Wait):
            sleep_until(action.until)
        elif isinstance(action, _watching.FollowStream):
            try:
                with contextlib.closing(
                    client.task_events(task_id, last_event_id=last_event_id)
                ) as events:
                    for item in events:
                        _emit_sync(on_event, item)
                        if not policy.stream_item(item):
                            break
            except SSEProtoError as exc:
                policy.stream_ended(exc)
            else:
                policy.stream_ended()
        elif isinstance(action, _watching.FetchTask):
            try:
                snapshot = client.get_task(task_id)
            except SSEProtoError as exc:
                policy.call_failed(exc, clock())
            else:
                _emit_sync(on_event, snapshot)
                policy.task_fetched(snapshot, clock())
        else:
            try:
                result = client.get_result(task_id)
            except SSEProtoError as exc:
                policy.call_failed(exc, clock())
            else:
                policy.result_fetched(result)
