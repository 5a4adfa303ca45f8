"""The Cyberun task client, ``watch()``, and the polling fallback.

Theory of operation: :class:`Client` holds the settings (key, base URL, team, TLS
trust) and one keep-alive connection for its JSON calls, reopened when the server
closed it. :meth:`Client.task_events` is :func:`~sseproto.open_event_stream` on the
task's events endpoint, decoded by :mod:`sseproto.tasks`, ending after the terminal
event. :func:`watch` is a loop around the sans-IO task-watch policy
(``_watching.WatchPolicy``: stream, then polling, then the result): it does the calls
the policy asks for and reports what they gave. The rules of redirects, retries and
resending are ``_rules``'; this module only does the I/O.

The API key never appears in a repr, a log line or an exception message.
"""

from __future__ import annotations

import inspect
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import trio

from . import _api, _watching
from ._api import DEFAULT_BASE_URL
from ._errors import SSEProtoError, StreamUnavailable, TaskEventError, TransportError
from ._eventsource import Wait
from ._http import Connection, parse_url
from ._rules import header_fields, may_resend
from ._stream import open_event_stream
from .tasks import decode_task_event, decode_task_result, decode_task_snapshot

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncGenerator, Awaitable, Callable

    from ._rules import HeaderFields
    from ._watching import WatchItem
    from .tasks import TaskEvent, TaskResult, TaskSnapshot

__all__ = ["DEFAULT_BASE_URL", "Client", "watch"]


class Client:
    """A client of the Cyberun task API. Use it as ``async with Client() as client``.

    Args:
        api_key: A JWT, ``sk-…`` or ``dk-…`` key; default ``CYBERUN_API_KEY``.
        base_url: Default ``CYBERUN_BASE_URL``, else the public API.
        team_id: Sent as ``X-Team-ID`` (a JWT needs it); default ``CYBERUN_TEAM_ID``.
        ssl_context: TLS trust; default ``ssl.create_default_context()`` (which honours
            ``SSL_CERT_FILE``). Verification is always on.
        connect_timeout: Seconds to connect (TCP and TLS).
        read_timeout: Seconds without a byte before a connection is presumed dead.

    Raises:
        ConfigurationError: No API key was given or found in the environment.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        team_id: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        self._settings = _api.Settings(api_key, base_url, team_id)
        self.base_url = self._settings.base_url
        self.team_id = self._settings.team_id
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._conn: Connection | None = None

    def __repr__(self) -> str:
        return f"<sseproto Client {self.base_url}>"  # never the key

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the keep-alive connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.aclose()

    def headers(self) -> dict[str, str]:
        """The authentication headers every request carries."""
        return self._settings.headers()

    # -- JSON calls --------------------------------------------------------------

    async def _call(self, method: str, path: str, payload: Any = None) -> Any:
        call = _api.Call(self._settings, method, path, payload)
        while True:
            status, fields, reason, body = await self._exchange(call)
            if not call.receive(status, fields, reason, body):
                return call.value

    async def _exchange(self, call: _api.Call) -> tuple[int, HeaderFields, str, bytes]:
        # A call on the idle keep-alive connection is sent again, once, only if the
        # server had closed that connection before a byte of the answer arrived
        # (_rules.may_resend); never once the answer started, nor after a read
        # timeout, when the server may be working on it (a POST must not run twice).
        origin, target = parse_url(call.url)
        for attempt in (1, 2):
            idle, self._conn = self._conn, None
            if idle is not None and not idle.reusable:  # closed, or sent what nobody asked
                await idle.aclose()
                idle = None
            reused = idle is not None
            if idle is not None:
                conn = idle
            else:
                conn = await Connection.connect(
                    origin, ssl_context=self.ssl_context, connect_timeout=self.connect_timeout
                )
            try:
                response = await conn.request(
                    call.method, target, call.headers, call.body, read_timeout=self.read_timeout
                )
                raw = await conn.read_body(
                    read_timeout=self.read_timeout, limit=_api.JSON_BODY_LIMIT
                )
            except TransportError as exc:
                await conn.aclose()
                if attempt == 1 and may_resend(
                    exc, reused=reused, answer_started=conn.answer_started
                ):
                    continue  # the server had closed the idle connection: send again
                raise
            except BaseException:
                await conn.aclose()
                raise
            if conn.reusable and self._conn is None:
                self._conn = conn  # keep one idle connection (calls may run concurrently)
            else:
                await conn.aclose()
            return response.status_code, header_fields(response.fields), response.reason, raw
        raise AssertionError("unreachable")  # pragma: no cover

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

    # -- the stream --------------------------------------------------------------

    async def task_events(
        self, task_id: str, *, last_event_id: str = ""
    ) -> AsyncGenerator[TaskEvent | TaskEventError, None]:
        """The task's typed events, reconnecting, ending after the terminal one.

        A malformed event is yielded as its :class:`~sseproto.TaskEventError` (and the
        stream goes on); an ``error`` event is yielded and the stream goes on.
        Prefer :func:`watch`, which also falls back to polling. If you may stop
        before the end, close it deterministically::

            async with contextlib.aclosing(client.task_events(task_id)) as events:
                async for event in events: ...
        """
        async with open_event_stream(
            self._settings.events_url(task_id),
            headers=self.headers(),
            ssl_context=self.ssl_context,
            last_event_id=last_event_id,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            reconnect_after=_watching.reconnect_after,
        ) as stream:
            async for sse in stream:
                try:
                    event = decode_task_event(sse)
                except TaskEventError as exc:
                    yield exc
                    continue
                yield event
                if event.is_terminal:  # the task stream ends there
                    return
            raise StreamUnavailable("the stream ended without a terminal event")


async def _emit(on_event: Any, item: WatchItem) -> None:
    if on_event is None:
        return
    result = on_event(item)
    if inspect.isawaitable(result):
        await result


async def watch(
    task_id: str,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    team_id: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    on_event: Callable[[WatchItem], Awaitable[None] | None] | None = None,
    poll_interval: float = 3.0,
    connect_timeout: float = 10.0,
    read_timeout: float = 60.0,
) -> TaskResult:
    """Follow a task to its end; return its result. ``trio.run(sseproto.watch, task_id)``.

    Follows the events stream (resuming with ``Last-Event-ID`` after drops) and falls
    back to polling ``GET /tasks/{id}`` every ``poll_interval`` seconds when the stream
    is unavailable (wrong content type, 204, 404/405/501 while the task exists), when
    reconnecting keeps failing, or when it closes right after an ``error`` event.

    Args:
        on_event: Called (sync or async) with every typed event, every polling
            snapshot, and a TaskEventError for each malformed event skipped, in order.

    Returns:
        The :class:`~sseproto.TaskResult` of the completed task.

    Raises:
        TaskFailed: The task failed (``.error`` says why).
        TaskCancelled: The task was cancelled.
        ConfigurationError: No API key.
        HTTPStatusError: 401/403 and other errors that polling cannot get past.
    """
    policy = _watching.WatchPolicy(task_id, poll_interval=poll_interval)
    async with Client(
        api_key,
        base_url,
        team_id,
        ssl_context,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    ) as client:
        while True:
            action = policy.next_action(trio.current_time())
            if isinstance(action, _watching.Finish):
                if action.error is not None:
                    raise action.error
                assert action.result is not None
                return action.result
            if isinstance(action, Wait):
                await trio.sleep_until(action.until)
            elif isinstance(action, _watching.FollowStream):
                try:
                    async with aclosing(client.task_events(task_id)) as events:
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
                    policy.call_failed(exc, trio.current_time())
                else:
                    await _emit(on_event, snapshot)
                    policy.task_fetched(snapshot, trio.current_time())
            else:
                try:
                    result = await client.get_result(task_id)
                except SSEProtoError as exc:
                    policy.call_failed(exc, trio.current_time())
                else:
                    policy.result_fetched(result)
