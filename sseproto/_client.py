"""The Cyberun task client, ``watch()``, and the polling fallback.

Theory of operation: :class:`Client` holds the settings (key, base URL, team, TLS
trust) and one keep-alive connection for its JSON calls, reopened when the server
closed it. It supplies the two I/O steps the endpoints of ``_endpoints`` are built on
(one JSON call of ``_api.Call``; :func:`~sseproto.open_event_stream` on the task's
events URL). :func:`watch` runs ``_endpoints.watch_async``, the loop around the
sans-IO task-watch policy (stream, then polling, then the result), on trio's clock.
The rules of redirects, retries and resending are ``_api``'s and ``_rules``'; this
module only does the I/O.

The API key never appears in a repr, a log line or an exception message.
"""

from __future__ import annotations

import pathlib
import sys
import time
from typing import TYPE_CHECKING

import trio

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from . import _api, _watching
from ._api import DEFAULT_BASE_URL
from ._endpoints import AsyncEndpoints, watch_async
from ._errors import HTTPStatusError, SSEProtoError, TransportError
from ._http import Connection, parse_url
from ._net import route
from ._proxy import FROM_ENVIRONMENT
from ._rules import ERROR_BODY_LIMIT, header_fields, may_resend, refused
from ._stream import EventStream, open_event_stream
from ._transfer import (
    Download,
    download_concurrency,
    link_deadline,
    plan_downloads,
    presign_body,
    read_presign,
)

if TYPE_CHECKING:
    import os
    import ssl
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
    from contextlib import AbstractAsyncContextManager

    from ._api import KeySource
    from ._rules import HeaderFields, Origin
    from ._watching import WatchItem
    from .tasks import TaskResult

__all__ = ["DEFAULT_BASE_URL", "Client", "watch"]

_PIECE = 256 * 1024  # bytes read from a file per piece of an upload
_MAX_DROPS = 3  # connections lost in a row during one file's download before giving up


class Client(AsyncEndpoints):
    """A client of the Cyberun task API. Use it as ``async with Client() as client``.

    Args:
        api_key: A JWT, ``sk-…`` or ``dk-…`` key; default ``CYBERUN_API_KEY``. Or a
            function returning the current key, called for each connection and call
            (a key that rotates, a short-lived JWT).
        base_url: Default ``CYBERUN_BASE_URL``, else the public API.
        team_id: Sent as ``X-Team-ID`` (a JWT needs it); default ``CYBERUN_TEAM_ID``.
        ssl_context: TLS trust; default ``ssl.create_default_context()`` (which honours
            ``SSL_CERT_FILE``). Verification is always on.
        connect_timeout: Seconds to connect (TCP and TLS).
        read_timeout: Seconds without a byte before a connection is presumed dead.
        proxy: An ``http://[user:password@]host:port`` proxy, or None for none; by
            default the environment's (``HTTPS_PROXY``, ``NO_PROXY``, ...; see
            :func:`sseproto.open_event_stream`).
        headers: More headers for every request and stream (not Authorization or
            X-Team-ID: ``api_key`` and ``team_id`` set those).

    Raises:
        ConfigurationError: No API key was given or found in the environment, or the
            proxy URL cannot be used.
    """

    def __init__(
        self,
        api_key: KeySource = None,
        base_url: str | None = None,
        team_id: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        proxy: str | None = FROM_ENVIRONMENT,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            api_key, base_url, team_id, ssl_context, connect_timeout, read_timeout, proxy, headers
        )
        self._conn: Connection | None = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the keep-alive connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.aclose()

    # -- JSON calls --------------------------------------------------------------

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
                    origin,
                    ssl_context=self.ssl_context,
                    connect_timeout=self.connect_timeout,
                    proxy=route(origin, self._proxy),
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

    # -- files -------------------------------------------------------------------

    async def upload(
        self,
        path: str | os.PathLike[str],
        *,
        content_type: str | None = None,
        on_progress: Callable[[int, int], object] | None = None,
    ) -> str:
        """Upload a file for a workflow's input; return its ``file_key``.

        ``POST /files/presign`` (the file's name, size and type), then a PUT of its
        bytes to the link it answers, with exactly the headers it names (never our
        API key: the link is presigned). ``on_progress(sent, size)`` after each piece.

        Raises:
            HTTPStatusError: The presign call or the upload was refused (a header
                missing: 403; the object exists already: 412), with the server's body.
        """
        file = trio.Path(path)
        size = (await file.stat()).st_size
        answer = await self._call(
            "POST", "/files/presign", presign_body(file.name, size, content_type)
        )
        upload = read_presign(answer)
        origin, target = parse_url(upload.upload_url)
        sent = 0

        async def pieces() -> AsyncIterator[bytes]:
            nonlocal sent
            async with await trio.open_file(file, "rb") as f:
                while piece := await f.read(_PIECE):
                    sent += len(piece)
                    if on_progress is not None:
                        on_progress(sent, size)
                    yield piece

        conn = await self._connect(origin)
        try:
            response = await conn.request(
                "PUT",
                target,
                upload.headers,
                read_timeout=self.read_timeout,
                body_chunks=pieces(),
                content_length=size,
            )
            body = await conn.read_body(
                read_timeout=self.read_timeout, limit=ERROR_BODY_LIMIT, truncate=True
            )
        finally:
            await conn.aclose()
        if not 200 <= response.status_code < 300:
            raise HTTPStatusError(
                refused(
                    f"PUT {origin}{target.split('?', 1)[0]}", response.status_code, response.reason
                ),
                status_code=response.status_code,
                body=body,
                headers=response.headers,
            )
        return upload.file_key

    async def download(
        self,
        task_id: str,
        directory: str | os.PathLike[str],
        *,
        on_progress: Callable[[str, int, int | None], object] | None = None,
        concurrency: int = 4,
    ) -> list[pathlib.Path]:
        """Download every output of a finished task into ``directory``; return the
        files' paths.

        Each file is named after the last segment of its link's path (made unique
        if two collide), written to ``.NAME.part`` and renamed once complete; a file
        already there is skipped; an interrupted part is resumed with ``Range`` (here
        after a dropped connection, or by a later call); a link past its
        ``expires_at`` (on the server's clock: the ``Date`` of the result's answer),
        or refused with 403, is replaced by fetching the result again.
        ``concurrency`` files at once.
        ``on_progress(file_name, have, total)`` after each piece (total None while
        unknown).
        """
        folder = trio.Path(directory)
        await folder.mkdir(parents=True, exist_ok=True)
        result, expires = await self._fresh_links(task_id)
        downloads = [Download(*planned, expires=expires) for planned in plan_downloads(result)]
        limiter = trio.CapacityLimiter(download_concurrency(concurrency))
        try:
            async with trio.open_nursery() as nursery:
                for item in downloads:
                    nursery.start_soon(
                        self._download_one, task_id, item, folder, on_progress, limiter
                    )
        except BaseExceptionGroup as group:  # the first file that failed, as itself
            leaves = group.exceptions
            if all(isinstance(e, SSEProtoError) for e in leaves):
                raise leaves[0] from None
            raise
        return [pathlib.Path(folder / item.file_name) for item in downloads]

    async def _fresh_links(self, task_id: str) -> tuple[TaskResult, float | None]:
        """The result, and when its links expire on this driver's clock."""
        result, date = await self._result_dated(task_id)
        return result, link_deadline(result, date, time.time(), trio.current_time())

    async def _download_one(
        self,
        task_id: str,
        item: Download,
        folder: trio.Path,
        on_progress: Callable[[str, int, int | None], object] | None,
        limiter: trio.CapacityLimiter,
    ) -> None:
        final = folder / item.file_name
        if await final.exists():  # renamed only once whole: done before
            size = (await final.stat()).st_size
            if on_progress is not None:
                on_progress(item.file_name, size, size)
            return
        part = folder / f".{item.file_name}.part"
        item.have = (await part.stat()).st_size if await part.exists() else 0
        drops = 0
        async with limiter:
            while True:
                if item.expired(trio.current_time()):  # past expires_at: fresh links first
                    item.new_link(*await self._fresh_links(task_id))
                url, headers = item.request()
                origin, target = parse_url(url)
                conn = await self._connect(origin)
                try:
                    response = await conn.request(
                        "GET", target, headers, read_timeout=self.read_timeout
                    )
                    step = item.receive_response(
                        response.status_code, response.headers, response.reason
                    )
                    if step == "refresh":
                        item.new_link(*await self._fresh_links(task_id))
                        continue
                    if step == "again":
                        continue
                    if step == "read":
                        async with await trio.open_file(part, "wb" if item.restart else "ab") as f:
                            while chunk := await conn.receive_body(read_timeout=self.read_timeout):
                                await f.write(chunk)
                                item.have += len(chunk)
                                if on_progress is not None:
                                    on_progress(item.file_name, item.have, item.total)
                        if item.total is None:
                            item.total = item.have  # read to its end
                except HTTPStatusError:
                    raise  # an answer, not a drop: asking again would get the same
                except TransportError:
                    drops += 1
                    if drops > _MAX_DROPS:
                        raise
                    continue  # resumed from what the part file has
                finally:
                    await conn.aclose()
                if item.complete:
                    break
        await part.rename(final)

    async def _connect(self, origin: Origin) -> Connection:
        return await Connection.connect(
            origin,
            ssl_context=self.ssl_context,
            connect_timeout=self.connect_timeout,
            proxy=route(origin, self._proxy),
        )

    def _open_stream(
        self, url: str, last_event_id: str
    ) -> AbstractAsyncContextManager[EventStream]:
        return open_event_stream(
            url,
            headers=self.headers,  # asked again for each connection
            ssl_context=self.ssl_context,
            last_event_id=last_event_id,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            reconnect_after=_watching.reconnect_after,
            proxy=self._proxy_given,
        )


async def watch(
    task_id: str,
    *,
    api_key: KeySource = None,
    base_url: str | None = None,
    team_id: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    on_event: Callable[[WatchItem], Awaitable[None] | None] | None = None,
    poll_interval: float = 3.0,
    connect_timeout: float = 10.0,
    read_timeout: float = 60.0,
    proxy: str | None = FROM_ENVIRONMENT,
    headers: Mapping[str, str] | None = None,
    last_event_id: str = "",
) -> TaskResult:
    """Follow a task to its end; return its result. ``trio.run(sseproto.watch, task_id)``.

    Follows the events stream (resuming with ``Last-Event-ID`` after drops) and falls
    back to polling ``GET /tasks/{id}`` every ``poll_interval`` seconds when the stream
    is unavailable (wrong content type, 204, 404/405/501 while the task exists), when
    reconnecting keeps failing, or when it closes right after an ``error`` event.

    Args:
        on_event: Called (sync or async) with every typed event, every polling
            snapshot, and a TaskEventError for each malformed event skipped, in order.
        proxy: An ``http://`` proxy URL, or None for none; by default the
            environment's (see :func:`sseproto.open_event_stream`).
        headers: More headers for every request (see :class:`Client`).
        last_event_id: Resume the task's stream from this id (a position saved by an
            earlier process: the ``id`` of the last event it handled), sent as
            ``Last-Event-ID`` on the first connection.

    Returns:
        The :class:`~sseproto.TaskResult` of the completed task.

    Raises:
        TaskFailed: The task failed (``.error`` says why).
        TaskCancelled: The task was cancelled.
        ConfigurationError: No API key, or a proxy URL that cannot be used.
        HTTPStatusError: 401/403 and other errors that polling cannot get past.
        ConnectError: A failure every attempt would meet again, raised at once: a host
            name that does not resolve (:class:`~sseproto.NameResolutionError`), a
            proxy's 407 or 403 (:class:`~sseproto.ProxyError`), a TLS handshake or
            certificate (:class:`~sseproto.TLSHandshakeError`).
    """
    async with Client(
        api_key,
        base_url,
        team_id,
        ssl_context,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        proxy=proxy,
        headers=headers,
    ) as client:
        return await watch_async(
            client,
            task_id,
            poll_interval=poll_interval,
            on_event=on_event,
            last_event_id=last_event_id,
            clock=trio.current_time,
            sleep_until=trio.sleep_until,
        )
