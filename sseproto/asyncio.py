"""sseproto for asyncio: ``open_event_stream``, ``Client`` and ``watch`` on httpx.

The same names, parameters, defaults, errors and behaviour as the trio driver at the
top level (``sseproto.open_event_stream``, ``sseproto.Client``, ``sseproto.watch``),
for code under ``asyncio.run`` (or uvloop), plus ``http_client=`` to bring your own
``httpx.AsyncClient`` (its proxies, mounts, HTTP/2, auth, limits; never closed by
sseproto). Needs the ``httpx`` extra: ``pip install 'sseproto[httpx]'``.

::

    result = await sseproto.asyncio.watch(task_id)

    async with sseproto.asyncio.open_event_stream(url) as stream:
        async for event in stream:
            ...

Theory of operation: :class:`EventStream` is a loop around the sans-IO
:class:`~sseproto.EventSource`, pulled by its consumer, with no background task;
:class:`Client` supplies one JSON call (``_api.Call``) and the event stream to the
endpoints of ``_endpoints``; :func:`watch` runs the shared watch loop on the event
loop's clock. httpx does the HTTP; what it raises is translated into sseproto's own
errors at the boundary (``_httpx.translate``).
"""

from __future__ import annotations

import asyncio
import pathlib
import time
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any

from . import _api, _watching
from ._driver import EventStreamBase
from ._endpoints import AsyncEndpoints, watch_async
from ._errors import EventStreamError, HTTPStatusError
from ._eventsource import Connect, Stop, Wait
from ._httpx import (
    Attempt,
    Collector,
    aiter_body,
    answer_of,
    astream_body,
    check_client,
    fields_of,
    httpx,
    origin_of,
    own_client_options,
    presigned_request,
    request_headers,
    resumable,
    timeout,
    translate,
)
from ._net import route
from ._parser import DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_LINE_BYTES
from ._proxy import FROM_ENVIRONMENT
from ._rules import (
    ERROR_BODY_LIMIT,
    ERROR_BODY_SECONDS,
    MAX_ATTEMPTS,
    MAX_BACKOFF,
    joined,
    parse_url,
    refused,
)
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
    import random
    import ssl
    from collections.abc import (
        AsyncGenerator,
        AsyncIterator,
        Awaitable,
        Callable,
        Coroutine,
        Mapping,
    )

    from ._api import KeySource
    from ._eventsource import HeaderSource
    from ._parser import ServerSentEvent
    from ._proxy import Proxy
    from ._rules import HeaderFields
    from ._watching import WatchItem
    from .tasks import TaskResult

__all__ = ["Client", "EventStream", "open_event_stream", "watch"]

_PIECE = 256 * 1024  # bytes read from a file per piece of an upload
_MAX_DROPS = 3  # connections lost during one file's download before giving up


def _now() -> float:
    return asyncio.get_running_loop().time()


async def _sleep_until(until: float) -> None:
    await asyncio.sleep(max(0.0, until - _now()))


class EventStream(EventStreamBase):
    """An open event stream that reconnects by itself. ``async for event in stream``.

    Its attributes (``source``, ``last_event_id``, ``retry``, ``connections``) are
    those of every driver's stream (``_driver.EventStreamBase``).
    """

    def __init__(
        self,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None,
        http_client: httpx.AsyncClient | None,
        **options: Any,
    ) -> None:
        check_client(http_client, ssl_context, httpx.AsyncClient, options.get("proxy"))
        super().__init__(url, **options)
        self._given = http_client
        self._route: Proxy | None = None  # the proxy of our own client, once made
        self._own: httpx.AsyncClient | None = None
        self._ssl_context = ssl_context
        self._timeout = timeout(self._connect_timeout, self._read_timeout)
        self._response: httpx.Response | None = None
        self._receive_data = self.source.receive_data
        self._chunks: AsyncIterator[bytes] | None = None

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> ServerSentEvent:
        # The hot loop: one read, one event, inline; the rest is in _read_failed and
        # _next.
        ready = self._ready
        if ready:
            return ready.popleft()
        while True:
            chunks = self._chunks
            if chunks is not None:
                try:
                    chunk = await chunks.__anext__()
                except BaseException as exc:
                    await self._read_failed(exc)
                else:
                    try:
                        events = self._receive_data(chunk)
                    except EventStreamError as exc:  # delivered first; then Stop(exc)
                        ready.extend(exc.events)
                        await self._drop_connection()
                    else:
                        if len(events) == 1:
                            return events[0]
                        ready.extend(events)
            elif self._done:
                raise StopAsyncIteration
            else:
                await self._next()
            if ready:
                return ready.popleft()

    async def aclose(self) -> None:
        """Close the connection (and the client sseproto created) now; the stream
        delivers nothing more."""
        self._done = True
        self.source.close()
        try:
            await self._drop_connection()
        finally:
            own, self._own = self._own, None
            if own is not None:
                await own.aclose()

    def _translate(self, exc: Exception, url: str) -> Exception:
        ours = translate(
            exc,
            url,
            connect_timeout=self._connect_timeout,
            read_timeout=self._read_timeout,
            proxy=self._route,
        )
        return exc if ours is None else ours

    async def _next(self) -> None:
        action = self.source.next_action(_now())
        if isinstance(action, Stop):
            self._done = True
            if action.error is not None:
                raise action.error
        elif isinstance(action, Wait):
            await _sleep_until(action.until)
        else:
            await self._connect(action)

    async def _connect(self, action: Connect) -> None:
        source = self.source
        client = self._given
        if client is None:
            if self._own is None:
                proxy = self._route = route(origin_of(self.source.url), self._proxy)
                self._own = httpx.AsyncClient(**own_client_options(self._ssl_context, proxy))
            client = self._own
        request = client.build_request(
            "GET", action.url, headers=request_headers(action.headers), timeout=self._timeout
        )
        try:
            response = await client.send(request, stream=True, follow_redirects=False)
        except Exception as exc:
            answer = answer_of(exc)  # a response hook of yours raised for its status
            if answer is None:
                error = self._translate(exc, action.url)
                if error is exc:
                    raise
                source.connection_closed(_now(), error)
                return
            response = answer
        stream = False
        try:
            stream = source.receive_response(response.status_code, response.headers.raw, _now())
            if stream:
                self._response = response
                self._chunks = astream_body(response)
            elif source.wants_error_body:  # for the error: bounded in size and time
                collector = Collector(ERROR_BODY_LIMIT, truncate=True)
                with suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(_collect(response, collector), ERROR_BODY_SECONDS)
                source.receive_error_body(collector.body)
        except Exception as exc:
            error = self._translate(exc, action.url)
            if error is exc:
                raise
            source.connection_closed(_now(), error)
        finally:
            if not stream:
                await response.aclose()

    async def _read_failed(self, exc: BaseException) -> None:
        """The read raised: the body's end (StopAsyncIteration), a network failure (ours,
        translated, for the machine), or anything else (the caller's, re-raised)."""
        await self._drop_connection()
        if isinstance(
            exc, StopAsyncIteration
        ):  # the server ended the body: the machine says what next
            self.source.connection_closed(_now())
            return
        error = self._translate(exc, self.source.url) if isinstance(exc, Exception) else exc
        if error is exc:
            raise exc
        self.source.connection_closed(_now(), error)

    async def _drop_connection(self) -> None:
        response, self._response, self._chunks = self._response, None, None
        if response is not None:
            await response.aclose()


async def _collect(response: httpx.Response, collector: Collector) -> None:
    async for chunk in aiter_body(response):
        collector.add(chunk)
        if collector.full:
            return


@asynccontextmanager
async def open_event_stream(
    url: str,
    *,
    headers: HeaderSource = None,
    ssl_context: ssl.SSLContext | None = None,
    http_client: httpx.AsyncClient | None = None,
    last_event_id: str = "",
    connect_timeout: float = 10.0,
    read_timeout: float = 60.0,
    max_attempts: int = MAX_ATTEMPTS,
    max_backoff: float = MAX_BACKOFF,
    rng: random.Random | None = None,
    reconnect_after: Callable[[ServerSentEvent | None], bool] | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    proxy: str | None = FROM_ENVIRONMENT,
) -> AsyncIterator[EventStream]:
    """Open any SSE endpoint as a reconnecting stream of events, under asyncio.

    ::

        async with sseproto.asyncio.open_event_stream(url, headers=...) as stream:
            async for event in stream:
                ...

    The parameters are those of :func:`sseproto.open_event_stream`, plus:

    Args:
        http_client: Your own ``httpx.AsyncClient`` (proxies, mounts, HTTP/2, auth,
            limits, its own proxy); sseproto never closes it, and it cannot be given with
            ``ssl_context=`` (its ``verify=`` is its trust). Without one, sseproto
            creates a client (verification always on) and closes it at the end.

    An overall deadline is the caller's (``asyncio.timeout``). Leaving the block, an
    exception or a cancellation closes the connection.
    """
    stream = EventStream(
        url,
        headers=headers,
        ssl_context=ssl_context,
        http_client=http_client,
        last_event_id=last_event_id,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_attempts=max_attempts,
        max_backoff=max_backoff,
        rng=rng,
        reconnect_after=reconnect_after,
        max_line_bytes=max_line_bytes,
        max_event_bytes=max_event_bytes,
        proxy=proxy,
    )
    try:
        yield stream
    finally:
        await stream.aclose()


class Client(AsyncEndpoints):
    """A client of the Cyberun task API under asyncio. ``async with Client() as client``.

    The parameters are those of :class:`sseproto.Client`, plus ``http_client=`` (your
    own ``httpx.AsyncClient``, never closed by sseproto; not with ``ssl_context=``).
    Every endpoint is the trio client's: ``get_task``, ``get_result``, ``cancel_task``,
    ``run_workflow``, ``list_tasks``, ``task_events``, ``upload``, ``download``.

    Raises:
        ConfigurationError: No API key was given or found in the environment.
    """

    def __init__(
        self,
        api_key: KeySource = None,
        base_url: str | None = None,
        team_id: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        *,
        http_client: httpx.AsyncClient | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        proxy: str | None = FROM_ENVIRONMENT,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        check_client(http_client, ssl_context, httpx.AsyncClient, proxy)
        super().__init__(
            api_key, base_url, team_id, ssl_context, connect_timeout, read_timeout, proxy, headers
        )
        self._timeout = timeout(connect_timeout, read_timeout)
        self._given = http_client
        self._route: Proxy | None = None  # the proxy of our own client, once made
        self._own: httpx.AsyncClient | None = None
        # Our clients for presigned links whose host takes another route than the
        # API's (NO_PROXY may name one and not the other; loopback is never proxied
        # from the environment), by that route.
        self._routed: dict[Proxy | None, httpx.AsyncClient] = {}

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections of the httpx client sseproto created (never yours)."""
        own, self._own = self._own, None
        routed, self._routed = list(self._routed.values()), {}
        try:
            for other in routed:
                await other.aclose()
        finally:
            if own is not None:
                await own.aclose()

    @property
    def http_client(self) -> httpx.AsyncClient:
        """The httpx client in use: yours, or the one sseproto created."""
        if self._given is not None:
            return self._given
        if self._own is None:
            proxy = self._route = route(origin_of(self.base_url), self._proxy)
            self._own = httpx.AsyncClient(**own_client_options(self.ssl_context, proxy))
        return self._own

    async def _exchange(self, call: _api.Call) -> tuple[int, HeaderFields, str, bytes]:
        client = self.http_client
        for again in (True, False):
            attempt = Attempt()
            request = client.build_request(
                call.method,
                call.url,
                headers=request_headers(call.headers),
                content=call.body or None,
                timeout=self._timeout,
                extensions={"trace": attempt.atrace},
            )
            collector = Collector(_api.JSON_BODY_LIMIT)
            try:
                try:
                    response = await client.send(request, stream=True, follow_redirects=False)
                except httpx.HTTPStatusError as exc:  # your response hook raised: ours judge
                    response = exc.response
                try:
                    async for chunk in aiter_body(response):
                        collector.add(chunk)
                finally:
                    await response.aclose()
            except Exception as exc:
                if again and attempt.may_resend(exc):
                    continue  # the server had closed the idle connection: send again
                ours = translate(
                    exc,
                    call.url,
                    connect_timeout=self.connect_timeout,
                    read_timeout=self.read_timeout,
                    proxy=self._route,
                )
                if ours is None or ours is exc:
                    raise
                raise ours from None
            return (
                response.status_code,
                fields_of(response),
                response.reason_phrase,
                collector.body,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    @asynccontextmanager
    async def _open_stream(self, url: str, last_event_id: str) -> AsyncIterator[EventStream]:
        client = self.http_client  # ours made now if need be, with its proxy
        async with open_event_stream(
            url,
            headers=self.headers,  # asked again for each connection
            http_client=client,
            last_event_id=last_event_id,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            reconnect_after=_watching.reconnect_after,
        ) as stream:
            stream._route = self._route  # its errors name the proxy our client goes through
            yield stream

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
        API key, nor your client's default headers, cookies or auth: the link is
        presigned). ``on_progress(sent, size)`` after each piece. The file is read
        with plain blocking reads, a piece (256 KiB) at a time.

        Raises:
            HTTPStatusError: The presign call or the upload was refused (a header
                missing: 403; the object exists already: 412), with the server's body.
        """
        file = pathlib.Path(path)
        size = file.stat().st_size
        answer = await self._call(
            "POST", "/files/presign", presign_body(file.name, size, content_type)
        )
        upload = read_presign(answer)
        origin, target = parse_url(upload.upload_url)
        headers = [*upload.headers, ("Content-Length", str(size))]
        sent = 0
        with file.open("rb") as f:

            async def read_pieces() -> AsyncGenerator[bytes, None]:
                nonlocal sent
                while piece := f.read(_PIECE):
                    sent += len(piece)
                    if on_progress is not None:
                        on_progress(sent, size)
                    yield piece

            pieces = read_pieces()
            try:
                status, reason, fields, body = await self._presigned_put(
                    upload.upload_url, headers, pieces
                )
            finally:
                await pieces.aclose()
        if not 200 <= status < 300:
            raise HTTPStatusError(
                refused(f"PUT {origin}{target.split('?', 1)[0]}", status, reason),
                status_code=status,
                body=body,
                headers=fields,
            )
        return upload.file_key

    async def _presigned_put(
        self, url: str, headers: list[tuple[str, str]], pieces: AsyncIterator[bytes]
    ) -> tuple[int, str, dict[str, str], bytes]:
        """The PUT of an upload: (status, reason, headers, the body up to a bound)."""
        client, proxy = self._storage(url)
        request = presigned_request("PUT", url, headers, self._timeout, content=pieces)
        collector = Collector(ERROR_BODY_LIMIT, truncate=True)
        try:
            try:
                response = await client.send(
                    request, stream=True, follow_redirects=False, auth=None
                )
            except httpx.HTTPStatusError as exc:  # your response hook raised: ours judge
                response = exc.response
            try:
                async for chunk in aiter_body(response):
                    collector.add(chunk)
                    if collector.full:
                        break
            finally:
                await response.aclose()
        except Exception as exc:
            error = self._translate(exc, url, proxy)
            if error is exc:
                raise
            raise error from None
        status: int = response.status_code
        reason: str = response.reason_phrase
        return status, reason, joined(fields_of(response)), collector.body

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
        ``concurrency`` files at once (the
        first failure cancels the others, and is raised). ``on_progress(file_name,
        have, total)`` after each piece (total None while unknown). The files are
        written with plain blocking writes, a received piece at a time.

        Raises:
            ConfigurationError: ``concurrency`` is not an int of at least 1, or a link
                cannot be fetched (plain http to a host that is not loopback).
            HTTPStatusError: The storage refused a download (fresh links did not help
                a 403), or answered a range other than the one asked for.
        """
        limit = download_concurrency(concurrency)
        folder = pathlib.Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        result, expires = await self._fresh_links(task_id)
        downloads = [Download(*planned, expires=expires) for planned in plan_downloads(result)]
        limiter = asyncio.Semaphore(limit)
        await _together(
            [self._download_one(task_id, item, folder, on_progress, limiter) for item in downloads]
        )
        return [folder / item.file_name for item in downloads]

    async def _fresh_links(self, task_id: str) -> tuple[TaskResult, float | None]:
        """The result, and when its links expire on this driver's clock."""
        result, date = await self._result_dated(task_id)
        return result, link_deadline(result, date, time.time(), asyncio.get_running_loop().time())

    async def _download_one(
        self,
        task_id: str,
        item: Download,
        folder: pathlib.Path,
        on_progress: Callable[[str, int, int | None], object] | None,
        limiter: asyncio.Semaphore,
    ) -> None:
        final = folder / item.file_name
        if final.exists():  # renamed only once whole: done before
            size = final.stat().st_size
            if on_progress is not None:
                on_progress(item.file_name, size, size)
            return
        part = folder / f".{item.file_name}.part"
        item.have = part.stat().st_size if part.exists() else 0
        drops = 0
        async with limiter:
            while True:
                if item.expired(
                    asyncio.get_running_loop().time()
                ):  # past expires_at: fresh links first
                    item.new_link(*await self._fresh_links(task_id))
                url, headers = item.request()
                try:
                    step = await self._get_part(item, url, headers, part, on_progress)
                except Exception as exc:
                    if not resumable(exc):
                        raise
                    drops += 1
                    if drops > _MAX_DROPS:
                        raise
                    continue  # resumed from what the part file has
                if step == "refresh":
                    item.new_link(*await self._fresh_links(task_id))
                    continue
                if step == "again":
                    continue
                if item.complete:
                    break
        part.rename(final)

    async def _get_part(
        self,
        item: Download,
        url: str,
        headers: list[tuple[str, str]],
        part: pathlib.Path,
        on_progress: Callable[[str, int, int | None], object] | None,
    ) -> str:
        """One GET of a download: what its answer means (``Download.receive_response``),
        its body appended to the part file (or written from its start). Raises our
        errors only (httpx's translated)."""
        client, proxy = self._storage(url)
        request = presigned_request("GET", url, headers, self._timeout)
        try:
            try:
                response = await client.send(
                    request, stream=True, follow_redirects=False, auth=None
                )
            except httpx.HTTPStatusError as exc:  # your response hook raised: ours judge
                response = exc.response
            try:
                step = item.receive_response(
                    response.status_code, joined(fields_of(response)), response.reason_phrase
                )
                if step == "read":
                    with part.open("wb" if item.restart else "ab") as f:
                        async for chunk in aiter_body(response):
                            f.write(chunk)
                            item.have += len(chunk)
                            if on_progress is not None:
                                on_progress(item.file_name, item.have, item.total)
                    if item.total is None:
                        item.total = item.have  # read to its end
            finally:
                await response.aclose()
        except Exception as exc:
            error = self._translate(exc, url, proxy)
            if error is exc:
                raise
            raise error from None
        return step

    def _storage(self, url: str) -> tuple[httpx.AsyncClient, Proxy | None]:
        """The client for a presigned link, and the proxy it goes through: yours (its
        proxy is yours), else ours for the link's host under our proxy rules, as the
        trio driver routes each host (another client where that is not the API's
        route)."""
        client = self.http_client
        if self._given is not None:
            return client, None
        proxy = route(origin_of(url), self._proxy)
        if proxy == self._route:
            return client, proxy
        other = self._routed.get(proxy)
        if other is None:
            options = own_client_options(self.ssl_context, proxy)
            other = self._routed[proxy] = httpx.AsyncClient(**options)
        return other, proxy

    def _translate(self, exc: Exception, url: str, proxy: Proxy | None) -> Exception:
        """Our exception for httpx's ``exc`` on a request to ``url`` through ``proxy``
        (``exc`` itself if it is not httpx's)."""
        ours = translate(
            exc,
            url,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            proxy=proxy,
        )
        return exc if ours is None else ours


async def _together(coroutines: list[Coroutine[Any, Any, None]]) -> None:
    """Run ``coroutines`` concurrently until all are done. The first to fail cancels
    the others (waited for), and its exception is raised as it is (not in a group, as
    ``asyncio.TaskGroup`` would, which Python 3.10 lacks); a cancellation of the
    caller cancels them all."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    if not tasks:
        return
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()  # (a task already done ignores it)
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if task in done and not task.cancelled():
            error = task.exception()
            if error is not None:
                raise error


async def watch(
    task_id: str,
    *,
    api_key: KeySource = None,
    base_url: str | None = None,
    team_id: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    http_client: httpx.AsyncClient | None = None,
    on_event: Callable[[WatchItem], Awaitable[None] | None] | None = None,
    poll_interval: float = 3.0,
    connect_timeout: float = 10.0,
    read_timeout: float = 60.0,
    proxy: str | None = FROM_ENVIRONMENT,
    headers: Mapping[str, str] | None = None,
    last_event_id: str = "",
) -> TaskResult:
    """Follow a task to its end; return its result. ``await sseproto.asyncio.watch(id)``.

    The behaviour of :func:`sseproto.watch` (the stream, resumed with
    ``Last-Event-ID``; polling every ``poll_interval`` seconds when the stream is
    unavailable; then the result), under asyncio. ``on_event`` may be a plain or an
    async function. ``http_client=``: your own ``httpx.AsyncClient`` (not closed).

    Raises:
        TaskFailed: The task failed (``.error`` says why).
        TaskCancelled: The task was cancelled.
        ConfigurationError: No API key.
        HTTPStatusError: 401/403 and other errors that polling cannot get past.
    """
    async with Client(
        api_key,
        base_url,
        team_id,
        ssl_context,
        http_client=http_client,
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
            clock=_now,
            sleep_until=_sleep_until,
        )
