"""sseproto, blocking: ``open_event_stream``, ``Client`` and ``watch`` on httpx.

The same names, parameters, defaults, errors and behaviour as the trio driver at the
top level (``sseproto.open_event_stream``, ``sseproto.Client``, ``sseproto.watch``),
for scripts, workers and notebooks, plus ``http_client=`` to bring your own
``httpx.Client`` (its proxies, mounts, HTTP/2, auth, limits; never closed by
sseproto). Needs the ``httpx`` extra: ``pip install 'sseproto[httpx]'``.

::

    result = sseproto.sync.watch(task_id)

    with sseproto.sync.open_event_stream(url) as stream:
        for event in stream:
            ...

Theory of operation: the asyncio driver's (``sseproto/asyncio.py``), line for line,
with blocking calls: :class:`EventStream` loops around the sans-IO
:class:`~sseproto.EventSource`; :class:`Client` supplies one JSON call and the event
stream to the endpoints of ``_endpoints``; :func:`watch` runs the shared watch loop
on ``time.monotonic``. An interrupt (Ctrl-C) at any point leaves through the
``with`` blocks, which close the response and the client sseproto created: no
socket stays open. One exception, upstream: an interrupt during the TLS handshake
itself leaves that one socket to the garbage collector (httpcore 1.0's
``start_tls`` and CPython's ``SSLSocket`` close it on ``Exception`` only).
"""

from __future__ import annotations

import pathlib
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from . import _api, _watching
from ._driver import EventStreamBase
from ._endpoints import SyncEndpoints, watch_sync
from ._errors import EventStreamError, HTTPStatusError
from ._eventsource import Connect, Stop, Wait
from ._httpx import (
    Attempt,
    Collector,
    answer_of,
    check_client,
    fields_of,
    httpx,
    iter_body,
    origin_of,
    own_client_options,
    presigned_request,
    request_headers,
    resumable,
    stream_body,
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
    from collections.abc import Callable, Generator, Iterator, Mapping

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


_now = time.monotonic


def _sleep_until(until: float) -> None:
    time.sleep(max(0.0, until - _now()))


class EventStream(EventStreamBase):
    """An open event stream that reconnects by itself. ``for event in stream``.

    Its attributes (``source``, ``last_event_id``, ``retry``, ``connections``) are
    those of every driver's stream (``_driver.EventStreamBase``).
    """

    def __init__(
        self,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None,
        http_client: httpx.Client | None,
        **options: Any,
    ) -> None:
        check_client(http_client, ssl_context, httpx.Client, options.get("proxy"))
        super().__init__(url, **options)
        self._given = http_client
        self._route: Proxy | None = None  # the proxy of our own client, once made
        self._own: httpx.Client | None = None
        self._ssl_context = ssl_context
        self._timeout = timeout(self._connect_timeout, self._read_timeout)
        self._response: httpx.Response | None = None
        self._receive_data = self.source.receive_data
        self._chunks: Iterator[bytes] | None = None

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> ServerSentEvent:
        # The hot loop: one read, one event, inline; the rest is in _read_failed and
        # _next.
        ready = self._ready
        if ready:
            return ready.popleft()
        while True:
            chunks = self._chunks
            if chunks is not None:
                try:
                    chunk = next(chunks)
                except BaseException as exc:
                    self._read_failed(exc)
                else:
                    try:
                        events = self._receive_data(chunk)
                    except EventStreamError as exc:  # delivered first; then Stop(exc)
                        ready.extend(exc.events)
                        self._drop_connection()
                    else:
                        if len(events) == 1:
                            return events[0]
                        ready.extend(events)
            elif self._done:
                raise StopIteration
            else:
                self._next()
            if ready:
                return ready.popleft()

    def close(self) -> None:
        """Close the connection (and the client sseproto created) now; the stream
        delivers nothing more."""
        self._done = True
        self.source.close()
        try:
            self._drop_connection()
        finally:
            own, self._own = self._own, None
            if own is not None:
                own.close()

    def _translate(self, exc: Exception, url: str) -> Exception:
        ours = translate(
            exc,
            url,
            connect_timeout=self._connect_timeout,
            read_timeout=self._read_timeout,
            proxy=self._route,
        )
        return exc if ours is None else ours

    def _next(self) -> None:
        action = self.source.next_action(_now())
        if isinstance(action, Stop):
            self._done = True
            if action.error is not None:
                raise action.error
        elif isinstance(action, Wait):
            _sleep_until(action.until)
        else:
            self._connect(action)

    def _connect(self, action: Connect) -> None:
        source = self.source
        client = self._given
        if client is None:
            if self._own is None:
                proxy = self._route = route(origin_of(self.source.url), self._proxy)
                self._own = httpx.Client(**own_client_options(self._ssl_context, proxy))
            client = self._own
        request = client.build_request(
            "GET", action.url, headers=request_headers(action.headers), timeout=self._timeout
        )
        try:
            response = client.send(request, stream=True, follow_redirects=False)
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
                self._chunks = stream_body(response)
            elif source.wants_error_body:  # for the error: bounded in size and time
                collector = Collector(ERROR_BODY_LIMIT, truncate=True)
                _collect(response, collector, _now() + ERROR_BODY_SECONDS)
                source.receive_error_body(collector.body)
        except Exception as exc:
            error = self._translate(exc, action.url)
            if error is exc:
                raise
            source.connection_closed(_now(), error)
        finally:
            if not stream:
                response.close()

    def _read_failed(self, exc: BaseException) -> None:
        """The read raised: the body's end (StopIteration), a network failure (ours,
        translated, for the machine), or anything else (the caller's, re-raised)."""
        self._drop_connection()
        if isinstance(exc, StopIteration):  # the body ended: the machine says what next
            self.source.connection_closed(_now())
            return
        error = self._translate(exc, self.source.url) if isinstance(exc, Exception) else exc
        if error is exc:
            raise exc
        self.source.connection_closed(_now(), error)

    def _drop_connection(self) -> None:
        response, self._response, self._chunks = self._response, None, None
        if response is not None:
            response.close()


def _collect(response: httpx.Response, collector: Collector, deadline: float) -> None:
    """An error's body, until it ends, fills ``collector`` or the deadline passes
    (checked between reads: a read waits at most ``read_timeout``)."""
    for chunk in iter_body(response):
        collector.add(chunk)
        if collector.full or _now() >= deadline:
            return


@contextmanager
def open_event_stream(
    url: str,
    *,
    headers: HeaderSource = None,
    ssl_context: ssl.SSLContext | None = None,
    http_client: httpx.Client | None = None,
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
) -> Iterator[EventStream]:
    """Open any SSE endpoint as a reconnecting stream of events, blocking.

    ::

        with sseproto.sync.open_event_stream(url, headers=...) as stream:
            for event in stream:
                ...

    The parameters are those of :func:`sseproto.open_event_stream`, plus:

    Args:
        http_client: Your own ``httpx.Client`` (proxies, mounts, HTTP/2, auth,
            limits, its own proxy); sseproto never closes it, and it cannot be given with
            ``ssl_context=`` (its ``verify=`` is its trust). Without one, sseproto
            creates a client (verification always on) and closes it at the end.

    Leaving the block, an exception or an interrupt (Ctrl-C) closes the connection
    and the client sseproto created.
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
        stream.close()


class Client(SyncEndpoints):
    """A client of the Cyberun task API, blocking. ``with Client() as client``.

    The parameters are those of :class:`sseproto.Client`, plus ``http_client=`` (your
    own ``httpx.Client``, never closed by sseproto; not with ``ssl_context=``).
    Every endpoint is the trio client's: ``get_task``, ``get_result``, ``cancel_task``,
    ``run_workflow``, ``list_tasks``, ``task_events``, ``upload``, ``download`` (one
    file at a time).

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
        http_client: httpx.Client | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        proxy: str | None = FROM_ENVIRONMENT,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        check_client(http_client, ssl_context, httpx.Client, proxy)
        super().__init__(
            api_key, base_url, team_id, ssl_context, connect_timeout, read_timeout, proxy, headers
        )
        self._timeout = timeout(connect_timeout, read_timeout)
        self._given = http_client
        self._route: Proxy | None = None  # the proxy of our own client, once made
        self._own: httpx.Client | None = None
        # Our clients for presigned links whose host takes another route than the
        # API's (NO_PROXY may name one and not the other; loopback is never proxied
        # from the environment), by that route.
        self._routed: dict[Proxy | None, httpx.Client] = {}

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections of the httpx client sseproto created (never yours)."""
        own, self._own = self._own, None
        routed, self._routed = list(self._routed.values()), {}
        try:
            for other in routed:
                other.close()
        finally:
            if own is not None:
                own.close()

    @property
    def http_client(self) -> httpx.Client:
        """The httpx client in use: yours, or the one sseproto created."""
        if self._given is not None:
            return self._given
        if self._own is None:
            proxy = self._route = route(origin_of(self.base_url), self._proxy)
            self._own = httpx.Client(**own_client_options(self.ssl_context, proxy))
        return self._own

    def _exchange(self, call: _api.Call) -> tuple[int, HeaderFields, str, bytes]:
        client = self.http_client
        for again in (True, False):
            attempt = Attempt()
            request = client.build_request(
                call.method,
                call.url,
                headers=request_headers(call.headers),
                content=call.body or None,
                timeout=self._timeout,
                extensions={"trace": attempt.trace},
            )
            collector = Collector(_api.JSON_BODY_LIMIT)
            try:
                try:
                    response = client.send(request, stream=True, follow_redirects=False)
                except httpx.HTTPStatusError as exc:  # your response hook raised: ours judge
                    response = exc.response
                try:
                    for chunk in iter_body(response):
                        collector.add(chunk)
                finally:
                    response.close()
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

    @contextmanager
    def _open_stream(self, url: str, last_event_id: str) -> Iterator[EventStream]:
        client = self.http_client  # ours made now if need be, with its proxy
        with open_event_stream(
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

    def upload(
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
        presigned). ``on_progress(sent, size)`` after each piece (256 KiB).

        Raises:
            HTTPStatusError: The presign call or the upload was refused (a header
                missing: 403; the object exists already: 412), with the server's body.
        """
        file = pathlib.Path(path)
        size = file.stat().st_size
        answer = self._call("POST", "/files/presign", presign_body(file.name, size, content_type))
        upload = read_presign(answer)
        origin, target = parse_url(upload.upload_url)
        headers = [*upload.headers, ("Content-Length", str(size))]
        sent = 0
        with file.open("rb") as f:

            def read_pieces() -> Generator[bytes, None, None]:
                nonlocal sent
                while piece := f.read(_PIECE):
                    sent += len(piece)
                    if on_progress is not None:
                        on_progress(sent, size)
                    yield piece

            pieces = read_pieces()
            try:
                status, reason, fields, body = self._presigned_put(
                    upload.upload_url, headers, pieces
                )
            finally:
                pieces.close()
        if not 200 <= status < 300:
            raise HTTPStatusError(
                refused(f"PUT {origin}{target.split('?', 1)[0]}", status, reason),
                status_code=status,
                body=body,
                headers=fields,
            )
        return upload.file_key

    def _presigned_put(
        self, url: str, headers: list[tuple[str, str]], pieces: Iterator[bytes]
    ) -> tuple[int, str, dict[str, str], bytes]:
        """The PUT of an upload: (status, reason, headers, the body up to a bound)."""
        client, proxy = self._storage(url)
        request = presigned_request("PUT", url, headers, self._timeout, content=pieces)
        collector = Collector(ERROR_BODY_LIMIT, truncate=True)
        try:
            try:
                response = client.send(request, stream=True, follow_redirects=False, auth=None)
            except httpx.HTTPStatusError as exc:  # your response hook raised: ours judge
                response = exc.response
            try:
                for chunk in iter_body(response):
                    collector.add(chunk)
                    if collector.full:
                        break
            finally:
                response.close()
        except Exception as exc:
            error = self._translate(exc, url, proxy)
            if error is exc:
                raise
            raise error from None
        status: int = response.status_code
        reason: str = response.reason_phrase
        return status, reason, joined(fields_of(response)), collector.body

    def download(
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
        ``on_progress(file_name, have,
        total)`` after each piece (total None while unknown).

        Blocking, the files are downloaded one after the other: ``concurrency`` (the
        files at once of the async drivers) is checked, and otherwise unused.

        Raises:
            ConfigurationError: ``concurrency`` is not an int of at least 1, or a link
                cannot be fetched (plain http to a host that is not loopback).
            HTTPStatusError: The storage refused a download (fresh links did not help
                a 403), or answered a range other than the one asked for.
        """
        download_concurrency(concurrency)
        folder = pathlib.Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        result, expires = self._fresh_links(task_id)
        downloads = [Download(*planned, expires=expires) for planned in plan_downloads(result)]
        for item in downloads:
            self._download_one(task_id, item, folder, on_progress)
        return [folder / item.file_name for item in downloads]

    def _fresh_links(self, task_id: str) -> tuple[TaskResult, float | None]:
        """The result, and when its links expire on this driver's clock."""
        result, date = self._result_dated(task_id)
        return result, link_deadline(result, date, time.time(), time.monotonic())

    def _download_one(
        self,
        task_id: str,
        item: Download,
        folder: pathlib.Path,
        on_progress: Callable[[str, int, int | None], object] | None,
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
        while True:
            if item.expired(time.monotonic()):  # past expires_at: fresh links first
                item.new_link(*self._fresh_links(task_id))
            url, headers = item.request()
            try:
                step = self._get_part(item, url, headers, part, on_progress)
            except Exception as exc:
                if not resumable(exc):
                    raise
                drops += 1
                if drops > _MAX_DROPS:
                    raise
                continue  # resumed from what the part file has
            if step == "refresh":
                item.new_link(*self._fresh_links(task_id))
                continue
            if step == "again":
                continue
            if item.complete:
                break
        part.rename(final)

    def _get_part(
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
                response = client.send(request, stream=True, follow_redirects=False, auth=None)
            except httpx.HTTPStatusError as exc:  # your response hook raised: ours judge
                response = exc.response
            try:
                step = item.receive_response(
                    response.status_code, joined(fields_of(response)), response.reason_phrase
                )
                if step == "read":
                    with part.open("wb" if item.restart else "ab") as f:
                        for chunk in iter_body(response):
                            f.write(chunk)
                            item.have += len(chunk)
                            if on_progress is not None:
                                on_progress(item.file_name, item.have, item.total)
                    if item.total is None:
                        item.total = item.have  # read to its end
            finally:
                response.close()
        except Exception as exc:
            error = self._translate(exc, url, proxy)
            if error is exc:
                raise
            raise error from None
        return step

    def _storage(self, url: str) -> tuple[httpx.Client, Proxy | None]:
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
            other = self._routed[proxy] = httpx.Client(**options)
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


def watch(
    task_id: str,
    *,
    api_key: KeySource = None,
    base_url: str | None = None,
    team_id: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    http_client: httpx.Client | None = None,
    on_event: Callable[[WatchItem], None] | None = None,
    poll_interval: float = 3.0,
    connect_timeout: float = 10.0,
    read_timeout: float = 60.0,
    proxy: str | None = FROM_ENVIRONMENT,
    headers: Mapping[str, str] | None = None,
    last_event_id: str = "",
) -> TaskResult:
    """Follow a task to its end; return its result. ``sseproto.sync.watch(task_id)``.

    The behaviour of :func:`sseproto.watch` (the stream, resumed with
    ``Last-Event-ID``; polling every ``poll_interval`` seconds when the stream is
    unavailable; then the result), blocking. ``on_event`` is a plain function (an
    async one is a TypeError). ``http_client=``: your own ``httpx.Client`` (not
    closed).

    Raises:
        TaskFailed: The task failed (``.error`` says why).
        TaskCancelled: The task was cancelled.
        ConfigurationError: No API key.
        HTTPStatusError: 401/403 and other errors that polling cannot get past.
    """
    with Client(
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
        return watch_sync(
            client,
            task_id,
            poll_interval=poll_interval,
            on_event=on_event,
            last_event_id=last_event_id,
            clock=_now,
            sleep_until=_sleep_until,
        )
