"""A real HTTPS server (trio + h11 + ssl, certificates from trustme) that plays the
Cyberun task API (the endpoints and payloads of its public documentation, as
``sseproto.tasks`` decodes them), and misbehaves on demand.

Theory of operation: :func:`serve` opens a nursery inside the caller's task, binds
127.0.0.1 on a free port and serves each TLS connection with an ``h11`` loop
(keep-alive included). Every task follows its :class:`~sseproto.testing.Task`
timeline from the moment the server first hears of it, on trio's clock: the events
endpoint sends each step when its time comes, and the polling endpoints report the
state the timeline has reached, so under ``trio.testing.MockClock`` a whole run takes
no real time. Leaving the ``async with`` cancels the nursery: no task, socket or
temporary file outlives it.

Besides the API (under ``/api/v1/r``, Bearer token required) it plays the storage
behind presigned links, under ``/_storage`` (no token: the link's signature and
expiry are the credential), as S3 does: uploads (``POST /files/presign``, then a
``PUT`` with exactly the headers it named) land in :attr:`TestServer.uploads`;
the download links of a result serve deterministic bytes
(:func:`~sseproto.testing.output_bytes`) with ``Range`` support, until they expire.
Storage errors are S3-like XML (``<Error><Code>…</Code><Message>…</Message>``).
"""

from __future__ import annotations

import email.utils
import functools
import hashlib
import hmac
import json
import math
import mimetypes
import os
import re
import secrets
import shutil
import ssl
import tempfile
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, quote, urlsplit
from xml.sax.saxutils import escape

import h11
import trio

from .._encoder import encode_comment, encode_event
from .._errors import ConfigurationError
from ._script import DEFAULT_OUTPUT_SIZE, Fault, Step, Task, cancelled

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

__all__ = ["RecordedRequest", "TestServer", "UnknownTasks", "output_bytes", "serve"]

API_PREFIX = "/api/v1/r"
#: Where the presigned links lead (no token: the signature is the credential).
STORAGE_PREFIX = "/_storage"
_UPLOAD = STORAGE_PREFIX + "/upload/"
_DOWNLOAD = STORAGE_PREFIX + "/download/"
_EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)  # trio time 0, for timestamps
_EPOCH_UNIX = int(_EPOCH.timestamp())  # the same instant, in Unix seconds
_JWT = re.compile(r"eyJ[\w-]*\.[\w-]+\.[\w-]*")
_RANGE = re.compile(r"bytes=(\d{0,18})-(\d{0,18})", re.ASCII)
_CHUNK = 65536  # how much of a download one write sends
#: The largest request body read by default (an upload's included); larger is a 413.
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
#: How long a presigned link lives by default, in seconds.
LINK_SECONDS = 3600.0

#: What the server does with a task id it was not given (nor started from a workflow):
#: ``"timeline"`` runs the default ComfyUI-like timeline, ``"404"`` answers 404.
UnknownTasks = Literal["timeline", "404"]


def output_bytes(task_id: str, name: str, size: int) -> bytes:
    """The bytes the test server serves for a task's output file (deterministic).

    Args:
        task_id: The task's id, as it appears in the API's paths.
        name: The output's name (``"9.images.0"``; ``""`` for the one
            ``download_url`` of a "local" task).
        size: How many bytes.
    """
    seed = b"sseproto test output\0" + task_id.encode() + b"\0" + name.encode()
    return hashlib.shake_256(seed).digest(size) if size else b""


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received (header names lower-cased; the path without its
    query; the body empty when it was larger than ``max_upload_bytes``)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    time: float


@dataclass
class _TaskState:
    id: str
    script: Task
    started: float
    parameters: dict[str, Any] = field(default_factory=dict)
    workflow_id: str | None = None  # the workflow it was run from, if it was
    attempts: int = 0
    cancelled_at: float | None = None
    changed: trio.Event = field(default_factory=trio.Event)

    def timeline(self) -> list[tuple[float, Step]]:
        """(absolute trio time, step) up to the terminal one, cancellation included."""
        out: list[tuple[float, Step]] = []
        for offset, step in self.script.timeline:
            at = self.started + offset
            if self.cancelled_at is not None and at > self.cancelled_at:
                break
            out.append((at, step))
        if self.cancelled_at is not None and not (out and out[-1][1].is_terminal):
            out.append((self.cancelled_at, cancelled()))
        return out

    def reached(self, now: float) -> list[tuple[float, Step]]:
        return [(at, step) for at, step in self.timeline() if at <= now]

    def notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


@dataclass(frozen=True)
class _Object:
    """A task's output file, behind a download link."""

    task_id: str
    name: str  # the output's name ("9.images.0", or "")
    file_name: str
    size: int

    @property
    def etag(self) -> str:
        digest = hashlib.sha256(f"{self.task_id}\0{self.name}\0{self.size}".encode())
        return f'"{digest.hexdigest()[:32]}"'


@dataclass(frozen=True)
class _Upload:
    """A presigned upload: the object it makes, and what its PUT must carry."""

    file_key: str
    size: int
    headers: dict[str, str]


@dataclass(frozen=True)
class _Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    too_large: bool = False  # the body was past the limit (read and dropped)
    unread: bool = False  # ... and not even read (the client waits for a 100)


def _iso(t: float) -> str:
    return (_EPOCH + timedelta(seconds=t)).isoformat().replace("+00:00", "Z")


def _unix(t: float) -> float:
    """Trio time ``t`` in Unix seconds (the clock of the timestamps)."""
    return _EPOCH_UNIX + t


def _s3_error(code: str, message: str, **extra: str) -> bytes:
    """An S3-like XML error body."""
    parts = [f"<Code>{code}</Code>", f"<Message>{escape(message)}</Message>"]
    parts += (f"<{name}>{escape(value)}</{name}>" for name, value in extra.items())
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{"".join(parts)}</Error>\n'.encode()


class _Connection(h11.Connection):
    """h11's server side, knowing whether the request it answers is a HEAD."""

    head = False


class _Drop(Exception):
    """Abort the connection now, without finishing the response (a network fault)."""


class TestServer:
    """The running server: where it is, how to trust it, and what it received.

    Attributes:
        requests: Every request received, in order (storage requests included).
        uploads: The objects uploaded through presigned links, by ``file_key``.
        unknown, link_seconds, max_upload_bytes, result_conflict: As given to
            :func:`serve`.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self,
        scripts: Mapping[str, Task],
        token: str,
        ca_dir: str,
        names: Sequence[str] = (),
        *,
        unknown: UnknownTasks = "timeline",
        link_seconds: float = LINK_SECONDS,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        result_conflict: bool = False,
    ) -> None:
        try:
            import trustme
        except ImportError:
            raise ImportError(
                "sseproto.testing makes its certificates with trustme: "
                "pip install 'sseproto[testing]'"
            ) from None

        self.token = token
        self.requests: list[RecordedRequest] = []
        self.uploads: dict[str, bytes] = {}
        self.unknown: UnknownTasks = unknown
        self.link_seconds = link_seconds
        self.max_upload_bytes = max_upload_bytes
        self.result_conflict = result_conflict
        self._scripts = dict(scripts)
        self._tasks: dict[str, _TaskState] = {}
        self._secret = secrets.token_bytes(32)  # signs the presigned links
        self._objects: dict[str, _Object] = {}  # download link path -> its file
        self._presigned: dict[str, _Upload] = {}  # upload link path -> its upload
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost", *names)
        self._server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self._server_context)
        #: A client context that trusts this server's certificate.
        self.ssl_context = ssl.create_default_context()
        ca.configure_trust(self.ssl_context)
        #: A PEM file of the server's CA, for SSL_CERT_FILE.
        self.ca_path = os.path.join(ca_dir, "sseproto-test-ca.pem")
        ca.cert_pem.write_to_path(self.ca_path)
        self.port = 0

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The API's base URL, ending in ``/api/v1/r``."""
        return self.origin + API_PREFIX

    def task(self, task_id: str) -> _TaskState:
        """The task with this id, started now if the server had not heard of it
        (an unscripted id follows the default timeline, whatever ``unknown`` says)."""
        state = self._tasks.get(task_id)
        if state is None:
            script = self._scripts.get(task_id) or Task()
            state = _TaskState(task_id, script, trio.current_time())
            self._tasks[task_id] = state
        return state

    def _find(self, task_id: str) -> _TaskState | None:
        """The task the API knows by this id: None for an unknown id under ``"404"``."""
        if self.unknown == "404" and task_id not in self._tasks and task_id not in self._scripts:
            return None
        return self.task(task_id)

    # -- connections -------------------------------------------------------------

    async def _serve_connection(self, tcp: trio.SocketStream) -> None:
        stream = trio.SSLStream(tcp, self._server_context, server_side=True)
        conn = _Connection(h11.SERVER)
        try:
            while True:
                request = await self._receive_request(conn, stream)
                if request is None:
                    return
                keep_alive = await self._respond(conn, stream, request)
                if (
                    not keep_alive
                    or request.unread
                    or h11.MUST_CLOSE in (conn.our_state, conn.their_state)
                ):
                    return
                conn.start_next_cycle()
        except (_Drop, trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            await trio.aclose_forcefully(stream)

    async def _receive_request(
        self, conn: h11.Connection, stream: trio.SSLStream[trio.SocketStream]
    ) -> _Request | None:
        """The next request, its body read to the end but kept only up to
        ``max_upload_bytes`` (past it, dropped as it comes: memory stays bounded, and
        the connection can answer 413 and go on)."""
        request: h11.Request | None = None
        body = bytearray()
        too_large = False
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(bytes(data))
                continue
            if isinstance(event, h11.Request):
                request = event
                if isinstance(conn, _Connection):
                    conn.head = event.method == b"HEAD"
                declared = _int(_header(event.headers, b"content-length"), 0, digits=18)
                if conn.they_are_waiting_for_100_continue:
                    if declared > self.max_upload_bytes:  # refuse before the body comes
                        return _Request(*_head(event), b"", too_large=True, unread=True)
                    await self._send(
                        conn, stream, h11.InformationalResponse(status_code=100, headers=[])
                    )
            elif isinstance(event, h11.Data):
                if too_large or len(body) + len(event.data) > self.max_upload_bytes:
                    too_large = True
                    body.clear()
                else:
                    body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                return _Request(*_head(request), bytes(body), too_large=too_large)
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None

    async def _send(
        self, conn: h11.Connection, stream: trio.SSLStream[trio.SocketStream], event: Any
    ) -> None:
        if isinstance(event, h11.Data) and getattr(conn, "head", False):
            return  # the answer to a HEAD has headers only
        if isinstance(event, h11.Response):  # every answer says the server's time
            date = email.utils.formatdate(_unix(trio.current_time()), usegmt=True)
            event = h11.Response(
                status_code=event.status_code,
                headers=[*event.headers, (b"Date", date.encode())],
                reason=event.reason,
            )
        data = conn.send(event)
        if data:
            await stream.send_all(data)

    async def _send_body(
        self,
        conn: h11.Connection,
        stream: trio.SSLStream[trio.SocketStream],
        status: int,
        body: bytes,
        headers: Sequence[tuple[str, str]],
    ) -> None:
        """A whole response: ``headers`` (a Content-Type among them), then ``body``."""
        framing = [*headers, ("Content-Length", str(len(body)))]
        await self._send(conn, stream, h11.Response(status_code=status, headers=framing))
        if body:
            await self._send(conn, stream, h11.Data(data=body))
        await self._send(conn, stream, h11.EndOfMessage())

    async def _send_json(
        self,
        conn: h11.Connection,
        stream: trio.SSLStream[trio.SocketStream],
        status: int,
        payload: Any,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        body = json.dumps(payload).encode()
        headers = [("Content-Type", "application/json"), *extra_headers]
        await self._send_body(conn, stream, status, body, headers)

    async def _send_xml(
        self,
        conn: h11.Connection,
        stream: trio.SSLStream[trio.SocketStream],
        status: int,
        body: bytes,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        headers = [("Content-Type", "application/xml"), *extra_headers]
        await self._send_body(conn, stream, status, body, headers)

    # -- routing -----------------------------------------------------------------

    async def _respond(
        self,
        conn: h11.Connection,
        stream: trio.SSLStream[trio.SocketStream],
        request: _Request,
    ) -> bool:
        """Answer one request; False when the connection must close afterwards."""
        method, headers, body = request.method, request.headers, request.body
        url = urlsplit(request.target)
        self.requests.append(RecordedRequest(method, url.path, headers, body, trio.current_time()))
        if url.path.startswith(STORAGE_PREFIX + "/"):
            # Presigned links, as the real ones: no token needed.
            return await self._storage(conn, stream, request, url.path, url.query)
        if request.too_large:
            limit = f"the request body is larger than {self.max_upload_bytes} bytes"
            await self._send_json(conn, stream, 413, {"error": limit})
            return True
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.token:
            await self._send_json(conn, stream, 401, {"error": "invalid or missing token"})
            return True
        if _JWT.fullmatch(self.token) and not headers.get("x-team-id"):
            await self._send_json(conn, stream, 400, {"error": "X-Team-ID header is required"})
            return True
        path = url.path
        if not path.startswith(API_PREFIX + "/"):
            await self._send_json(conn, stream, 404, {"error": "not found"})
            return True
        parts = path[len(API_PREFIX) + 1 :].strip("/").split("/")
        now = trio.current_time()
        route = (method, *parts[:1], len(parts))
        if route == ("GET", "tasks", 1):
            await self._send_json(conn, stream, 200, self._list(parse_qs(url.query), now))
        elif parts[0] == "tasks" and (
            route == ("GET", "tasks", 2)
            or (route == ("GET", "tasks", 3) and parts[2] in ("events", "result"))
            or (route == ("POST", "tasks", 3) and parts[2] == "cancel")
        ):
            state = self._find(parts[1])
            if state is None:
                await self._send_json(conn, stream, 404, {"error": "task not found"})
            elif len(parts) == 2:
                await self._send_json(conn, stream, 200, self._snapshot(state, now))
            elif parts[2] == "events":
                # The server closes an event stream's connection after it (and says so).
                return await self._events(conn, stream, state, headers)
            elif parts[2] == "result":
                result = self._result(state, now)
                if result is None:
                    error = {"error": "the task has not finished"}
                    await self._send_json(conn, stream, 409, error)
                else:
                    await self._send_json(conn, stream, 200, result)
            else:  # cancel: a no-op success on a finished task; the answer is `true`
                if state.cancelled_at is None and not self._terminal(state, now):
                    state.cancelled_at = now
                    state.notify()
                await self._send_json(conn, stream, 200, True)
        elif route == ("POST", "files", 2) and parts[1] == "presign":
            status, answer = self._presign(body, now)
            await self._send_json(conn, stream, status, answer)
        elif method == "POST" and parts[0] == "workflows" and parts[-1] == "run":
            if len(parts) not in (3, 4) or (len(parts) == 4 and parts[1] != "slug"):
                await self._send_json(conn, stream, 404, {"error": "not found"})
                return True
            payload = _json_object(body)
            if payload is None or not isinstance(payload.get("parameters", {}), dict):
                error = {"error": 'the body must be a JSON object, {"parameters": {...}}'}
                await self._send_json(conn, stream, 400, error)
                return True
            task_id = str(uuid.uuid4())
            state = self.task(task_id)
            state.parameters = dict(payload.get("parameters", {}))
            state.workflow_id = parts[-2]  # the id, or the slug (with any @version)
            await self._send_json(conn, stream, 202, {"task_id": task_id})
        elif method not in ("GET", "POST"):
            await self._send_json(conn, stream, 405, {"error": "method not allowed"})
        else:
            await self._send_json(conn, stream, 404, {"error": "not found"})
        return True

    # -- storage: presigned uploads and downloads --------------------------------

    def _sign(self, method: str, path: str, expires: int) -> str:
        message = f"{method}\n{path}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def _presigned_url(self, method: str, path: str, now: float) -> tuple[str, int]:
        """A link to ``path`` for ``method``, and when it expires (Unix seconds): at
        least ``link_seconds`` from now, on the timestamps' clock."""
        expires = math.ceil(_unix(now) + self.link_seconds)
        query = f"expires={expires}&sig={self._sign(method, path, expires)}"
        return f"{self.origin}{path}?{query}", expires

    def _link_problem(self, method: str, path: str, query: str, now: float) -> str | None:
        """Why a presigned link does not allow this request (None: it does)."""
        values = parse_qs(query)
        expires_text = values.get("expires", [""])[0]
        signature = values.get("sig", [""])[0]
        expires = _int(expires_text, -1, digits=18)
        if expires < 0 or not signature:
            return "Query-string authentication requires the expires and sig parameters"
        if not hmac.compare_digest(self._sign(method, path, expires), signature):
            return "The request signature we calculated does not match the signature you provided"
        if _unix(now) > expires:
            return "Request has expired"
        return None

    def _presign(self, body: bytes, now: float) -> tuple[int, dict[str, Any]]:
        """``POST /files/presign``: (status, answer)."""
        payload = _json_object(body)
        usage = "the body must be a JSON object: {file_name, file_size, content_type}"
        if payload is None:
            return 400, {"error": usage}
        name, size = payload.get("file_name"), payload.get("file_size")
        content_type = payload.get("content_type", "application/octet-stream")
        if not isinstance(name, str) or not name.strip():
            return 400, {"error": "file_name must be a non-empty string; " + usage}
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            return 400, {"error": "file_size must be an integer >= 0; " + usage}
        if not isinstance(content_type, str) or not _header_value(content_type):
            return 400, {"error": "content_type must be a header value; " + usage}
        if size > self.max_upload_bytes:
            return 413, {"error": f"file_size is larger than {self.max_upload_bytes} bytes"}
        file_key = f"uploads/{uuid.uuid4().hex}/{name}"
        path = _UPLOAD + quote(file_key, safe="/")
        headers = {
            "Content-Type": content_type,
            "x-amz-meta-file-name": quote(name, safe=""),
            "x-amz-server-side-encryption": "AES256",
            "x-amz-security-token": secrets.token_hex(16),
        }
        self._presigned[path] = _Upload(file_key, size, headers)
        url, _ = self._presigned_url("PUT", path, now)
        return 200, {"file_key": file_key, "upload_url": url, "upload_headers": dict(headers)}

    async def _storage(
        self,
        conn: h11.Connection,
        stream: trio.SSLStream[trio.SocketStream],
        request: _Request,
        path: str,
        query: str,
    ) -> bool:
        """A request to a presigned link."""
        method, headers = request.method, request.headers
        now = trio.current_time()
        upload = self._presigned.get(path)
        stored = self._objects.get(path)
        kind = "PUT" if upload is not None else "GET"
        allowed = ("PUT",) if upload is not None else ("GET", "HEAD")
        if upload is None and stored is None:
            problem: str | None = "No such presigned link"
        else:
            problem = self._link_problem(kind, path, query, now)
        if problem is None and method not in allowed:
            body = _s3_error("MethodNotAllowed", f"{method} is not allowed on this link")
            await self._send_xml(conn, stream, 405, body, [("Allow", ", ".join(allowed))])
            return True
        if problem is not None:
            await self._send_xml(conn, stream, 403, _s3_error("AccessDenied", problem))
            return True
        if request.too_large:
            limit = f"the body is larger than the maximum allowed, {self.max_upload_bytes} bytes"
            await self._send_xml(conn, stream, 413, _s3_error("EntityTooLarge", limit))
            return True
        if upload is not None:
            status, body, extra = self._put(upload, headers, request.body)
            await self._send_body(conn, stream, status, body, extra)
            return True
        assert stored is not None
        await self._download(conn, stream, method, stored, headers)
        return True

    def _put(
        self, upload: _Upload, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, list[tuple[str, str]]]:
        """A PUT to an upload link: (status, body, headers)."""
        xml = [("Content-Type", "application/xml")]
        for name, value in upload.headers.items():
            sent = headers.get(name.lower())
            if sent != value:
                problem = (
                    f"the presigned upload needs the header {name}"
                    if sent is None
                    else f"the header {name} differs from the one the upload was presigned with"
                )
                return 403, _s3_error("AccessDenied", problem, HeaderName=name), xml
        if upload.file_key in self.uploads:
            problem = f"the object {upload.file_key} already exists"
            return 412, _s3_error("PreconditionFailed", problem, Condition="If-None-Match"), xml
        if len(body) != upload.size:
            problem = f"the body is {len(body)} bytes; the upload was presigned for {upload.size}"
            return 400, _s3_error("IncompleteBody", problem), xml
        self.uploads[upload.file_key] = body
        etag = f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'
        return 200, b"", [("ETag", etag)]

    async def _download(
        self,
        conn: h11.Connection,
        stream: trio.SSLStream[trio.SocketStream],
        method: str,
        stored: _Object,
        headers: dict[str, str],
    ) -> None:
        """A GET (or HEAD) of a download link, whole or a byte range."""
        size = stored.size
        content_type = mimetypes.guess_type(stored.file_name)[0] or "application/octet-stream"
        common = [("Accept-Ranges", "bytes"), ("ETag", stored.etag)]
        wanted = headers.get("range")
        if_range = headers.get("if-range")
        if if_range is not None and if_range != stored.etag:
            wanted = None  # the file changed (it never does here): send it whole
        span = _byte_range(wanted, size) if wanted is not None else None
        if span == "unsatisfiable":
            body = _s3_error("InvalidRange", "The requested range is not satisfiable")
            await self._send_xml(conn, stream, 416, body, [("Content-Range", f"bytes */{size}")])
            return
        status, start, end = 200, 0, size
        response = [("Content-Type", content_type), *common]
        if span is not None:
            status, (start, end) = 206, span
            response.append(("Content-Range", f"bytes {start}-{end - 1}/{size}"))
        response.append(("Content-Length", str(end - start)))
        await self._send(conn, stream, h11.Response(status_code=status, headers=response))
        if method == "GET" and end > start:
            data = output_bytes(stored.task_id, stored.name, end)[start:]
            for i in range(0, len(data), _CHUNK):
                await self._send(conn, stream, h11.Data(data=data[i : i + _CHUNK]))
        await self._send(conn, stream, h11.EndOfMessage())

    # -- polling payloads --------------------------------------------------------

    def _terminal(self, state: _TaskState, now: float) -> Step | None:
        reached = state.reached(now)
        return reached[-1][1] if reached and reached[-1][1].is_terminal else None

    def _snapshot(self, state: _TaskState, now: float) -> dict[str, Any]:
        reached = state.reached(now)
        status, error, started, completed = "pending", "", None, None
        for at, step in reached:
            if step.event == "status":
                status = step.data["status"]
                if status == "running" and started is None:
                    started = at
            elif step.event == "progress" and started is None:
                started = at
            elif step.is_terminal:
                status, completed = step.event, at
                error = step.data.get("error", "")
        return {
            "id": state.id,
            "workflow_id": state.workflow_id or state.script.workflow_id,
            "task_status": status,
            "task_error": error,
            "created_at": _iso(state.started),
            "started_at": _iso(started) if started is not None else None,
            "completed_at": _iso(completed) if completed is not None else None,
            "retry_count": 0,
            "agent_id": "agent-test-1",
            "gpu_type": "RTX 4090",
            "tool_type": "comfyui",
        }

    def _result(self, state: _TaskState, now: float) -> dict[str, Any] | None:
        """``GET /tasks/{id}/result``; None for the 409 of ``result_conflict``.

        A task that has not finished answers as the documentation does: its outputs
        null, no links, ``task_error`` ``""``. A completed task's links are fresh on
        every call (a later ``expires_at``).
        """
        final = self._terminal(state, now)
        if final is None:
            if self.result_conflict:
                return None
            return {
                "id": state.id,
                "task_output": None,
                "download_url": None,
                "download_urls": None,
                "expires_at": None,
                "task_error": "",
                "completed_at": None,
            }
        at = state.timeline()[-1][0]
        output = final.data.get("output") if final.event == "completed" else None
        urls: dict[str, str] = {}
        expires: int | None = None
        if final.event == "completed":
            for name, (file_name, size) in _outputs(state.script, output).items():
                urls[name], expires = self._download_link(state.id, name, file_name, size, now)
        return {
            "id": state.id,
            "task_output": output,
            "download_url": urls.pop("", None),
            "download_urls": urls or None,
            "expires_at": _iso(expires - _EPOCH_UNIX) if expires is not None else None,
            "task_error": final.data.get("error", ""),
            "completed_at": _iso(at),
        }

    def _download_link(
        self, task_id: str, name: str, file_name: str, size: int, now: float
    ) -> tuple[str, int]:
        """A fresh presigned link to one output file, and when it expires."""
        object_id = hmac.new(self._secret, f"{task_id}\0{name}".encode(), hashlib.sha256)
        path = f"{_DOWNLOAD}{object_id.hexdigest()[:24]}/{quote(file_name, safe='')}"
        self._objects[path] = _Object(task_id, name, file_name, size)
        return self._presigned_url("GET", path, now)

    def _list(self, query: dict[str, list[str]], now: float) -> dict[str, Any]:
        wanted = query.get("status", [""])[0]
        page = max(1, _int(query.get("current_page", ["1"])[0], 1))
        per_page = min(100, max(1, _int(query.get("per_page", ["20"])[0], 20)))
        snapshots = [self._snapshot(s, now) for s in self._tasks.values()]
        if wanted:
            snapshots = [s for s in snapshots if s["task_status"] == wanted]
        start = (page - 1) * per_page
        return {
            "task_list": snapshots[start : start + per_page],
            "page_meta": {
                "current_page": page,
                "per_page": per_page,
                "total_count": len(snapshots),
            },
        }

    # -- the event stream --------------------------------------------------------

    async def _events(
        self,
        conn: h11.Connection,
        stream: trio.SSLStream[trio.SocketStream],
        state: _TaskState,
        headers: dict[str, str],
    ) -> bool:
        """Answer the events endpoint; False when the connection must close (a stream)."""
        script = state.script
        fault = script.fault(state.attempts)
        state.attempts += 1
        if fault is not None and fault.kind == "status":
            extra = [("Retry-After", _retry_after(fault))] if fault.retry_after is not None else []
            payload: dict[str, Any] = {"error": f"simulated HTTP {fault.code}"}
            if fault.code == 403:
                payload["feature"] = "task_events"
            await self._send_json(conn, stream, fault.code, payload, extra)
            return True
        if fault is not None and fault.kind == "no_content":
            await self._send(conn, stream, h11.Response(status_code=204, headers=[]))
            await self._send(conn, stream, h11.EndOfMessage())
            return True
        if fault is not None and fault.kind == "wrong_content_type":
            body = b"this is not an event stream"
            await self._send(
                conn,
                stream,
                h11.Response(
                    status_code=200,
                    headers=[("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
                ),
            )
            await self._send(conn, stream, h11.Data(data=body))
            await self._send(conn, stream, h11.EndOfMessage())
            return True

        await self._send(
            conn,
            stream,
            h11.Response(
                status_code=200,
                headers=[
                    ("Content-Type", "text/event-stream; charset=utf-8"),
                    ("Cache-Control", "no-cache"),
                    ("X-Accel-Buffering", "no"),
                    ("Connection", "close"),  # one stream per connection
                ],
            ),
        )
        writer = _StreamWriter(self, conn, stream, script)
        if script.retry is not None:
            await writer.write(encode_event(None, retry=script.retry))
        # Without ids there is nothing to resume after: every stream starts over.
        start = _int(headers.get("last-event-id", ""), 0) if script.ids else 0
        start = max(0, start - script.replay) if start else 0
        sent = 0
        index = start
        timeline = state.timeline()  # computed again only when the task changes
        while True:
            if index >= len(timeline):
                break  # the timeline ended (it always ends with a terminal step)
            at, step = timeline[index]
            if fault is not None and sent == fault.after:
                if fault.kind == "stall":
                    await trio.sleep_forever()
                if fault.kind == "drop_between":
                    raise _Drop
                if fault.kind == "error_then_close":
                    message = {"message": "simulated: failed to read the task state"}
                    await writer.write(encode_event(json.dumps(message), event="error"))
                    break
            if not await writer.wait_until(state, at):
                timeline = state.timeline()  # the task changed (cancelled): look again
                continue
            wire = encode_event(
                _step_json(state.id, step, at, script.multiline_data),
                event=step.event,
                id=str(index + 1) if script.ids else None,
            )
            if fault is not None and fault.kind == "drop_mid_event" and sent == fault.after:
                await writer.write(wire[: len(wire) // 2])
                raise _Drop
            await writer.write(wire)
            sent += 1
            index += 1
            if step.is_terminal:
                break
        await self._send(conn, stream, h11.EndOfMessage())
        return False


class _StreamWriter:
    """Writes event-stream bytes with the script's line ends, trickle and heartbeats."""

    def __init__(
        self,
        server: TestServer,
        conn: h11.Connection,
        stream: trio.SSLStream[trio.SocketStream],
        script: Task,
    ) -> None:
        self.server = server
        self.conn = conn
        self.stream = stream
        self.script = script
        self.last_write = trio.current_time()

    async def write(self, wire: bytes) -> None:
        if self.script.line_ending != "\n":
            wire = wire.replace(b"\n", self.script.line_ending.encode())
        pieces = [wire[i : i + 1] for i in range(len(wire))] if self.script.trickle else [wire]
        for piece in pieces:
            await self.server._send(self.conn, self.stream, h11.Data(data=piece))
        self.last_write = trio.current_time()

    async def wait_until(self, state: _TaskState, at: float) -> bool:
        """Sleep until trio time ``at``, sending heartbeats; False if the task changed."""
        heartbeat = self.script.heartbeat
        while True:
            now = trio.current_time()
            if now >= at:
                return True
            until = at
            if heartbeat is not None:
                until = min(until, self.last_write + heartbeat)
            changed = state.changed
            with trio.move_on_at(until):
                await changed.wait()
                return False
            if heartbeat is not None and trio.current_time() >= self.last_write + heartbeat:
                await self.write(encode_comment("heartbeat"))


def _step_json(task_id: str, step: Step, at: float, multiline: bool) -> str:
    """The event's JSON as the API sends it (``indent`` spreads it over lines)."""
    data: dict[str, Any] = dict(step.data)
    if step.event != "error":  # the error event carries only its message
        data = {"task_id": task_id, **data}
        data["completed_at" if step.event == "completed" else "timestamp"] = _iso(at)
    return json.dumps(data, indent=1 if multiline else None)


def _outputs(script: Task, output: Any) -> dict[str, tuple[str, int]]:
    """A completed task's files, by output name: the script's, or derived from its
    output (ComfyUI images give a map; any other output one file, name "")."""
    if script.outputs is not None:
        return dict(script.outputs)
    files: dict[str, tuple[str, int]] = {}
    if isinstance(output, dict):
        for node, value in output.items():
            images = value.get("images") if isinstance(value, dict) else None
            for i, image in enumerate(images if isinstance(images, list) else []):
                name = image.get("filename") if isinstance(image, dict) else None
                name = name if isinstance(name, str) and name else f"{i}.png"
                files[f"{node}.images.{i}"] = (name, DEFAULT_OUTPUT_SIZE)
    if not files and output is not None:
        files[""] = ("output", DEFAULT_OUTPUT_SIZE)
    return files


def _byte_range(header: str, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """The span ``[start, end)`` a ``Range`` header asks of ``size`` bytes.

    None: no range to honour (a syntax this server does not read, several ranges, or
    ``N-M`` with M < N), so the whole file is sent; ``"unsatisfiable"``: a 416.
    """
    m = _RANGE.fullmatch(header.strip())
    if m is None or not (m.group(1) or m.group(2)):
        return None
    if not m.group(1):  # bytes=-K: the last K bytes
        suffix = int(m.group(2))
        return (max(0, size - suffix), size) if suffix and size else "unsatisfiable"
    start = int(m.group(1))
    if m.group(2) and int(m.group(2)) < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return (start, min(int(m.group(2)) + 1, size) if m.group(2) else size)


def _head(request: h11.Request) -> tuple[str, str, dict[str, str]]:
    """A request's method, target and headers (names lower-cased)."""
    headers = {k.decode().lower(): v.decode("latin-1") for k, v in request.headers}
    return request.method.decode(), request.target.decode(), headers


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str:
    return next((v.decode("latin-1") for k, v in headers if k.lower() == name), "")


def _json_object(body: bytes) -> dict[str, Any] | None:
    """A request body's JSON object, or None (not JSON, or not an object)."""
    try:
        payload = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def _header_value(text: str) -> bool:
    """Whether ``text`` can be sent as a header value as it is."""
    return bool(text) and text.isascii() and text.isprintable() and text == text.strip()


def _retry_after(fault: Fault) -> str:
    assert fault.retry_after is not None
    return str(math.ceil(fault.retry_after))


def _int(text: str, default: int, digits: int = 9) -> int:
    """A non-negative decimal integer of at most ``digits`` digits, or ``default``
    (for ids, query values, lengths)."""
    ok = text.isascii() and text.isdigit() and len(text) <= digits
    return int(text) if ok else default


@asynccontextmanager
async def serve(
    tasks: Mapping[str, Task] | None = None,
    *,
    token: str | None = None,
    port: int = 0,
    names: Sequence[str] = (),
    unknown: UnknownTasks = "timeline",
    link_seconds: float = LINK_SECONDS,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    result_conflict: bool = False,
) -> AsyncIterator[TestServer]:
    """Run the test server on 127.0.0.1 for the duration of the ``async with``.

    Args:
        tasks: Scripted tasks by id.
        token: The Bearer token to accept (default: a random ``sk-…`` key). A
            JWT-looking token also requires an ``X-Team-ID`` header, as the API does.
        port: The loopback port to listen on; 0 (the default) picks a free one.
        names: More host names for its certificate, besides ``127.0.0.1`` and
            ``localhost`` (a name that only a proxy resolves, say).
        unknown: What a task id that is neither in ``tasks`` nor started by a
            workflow run gets: ``"timeline"`` (the default) follows a default
            ComfyUI-like timeline to completion, so any task id works out of the box;
            ``"404"`` answers 404 on each of its endpoints, as the real API does.
        link_seconds: How long a presigned link (an upload's, or a result's download
            link) lives, on the server's clock (trio's: under ``MockClock`` a test
            lets it pass); ``expires_at`` says when, rounded up to the second.
        max_upload_bytes: The largest request body the server keeps (an upload's,
            and ``file_size`` at presign); a larger one is answered 413 (its bytes are
            read and dropped, the connection goes on).
        result_conflict: ``GET /tasks/{id}/result`` of a task that has not finished
            answers 409. By default it answers 200 with null outputs, no links and
            ``task_error`` ``""``, as the documentation shows.

    Yields:
        The server: ``base_url``, ``token``, ``ssl_context``, ``ca_path``,
        ``requests``, ``uploads``.

    Raises:
        ConfigurationError: ``port`` is not 0 to 65535 (the OS would wrap it
            silently), or another option is out of its range.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigurationError(f"port must be an int from 0 to 65535, not {port!r}")
    if unknown not in ("timeline", "404"):
        raise ConfigurationError(f"unknown must be 'timeline' or '404', not {unknown!r}")
    if (
        isinstance(link_seconds, bool)
        or not isinstance(link_seconds, (int, float))
        or not 0 < link_seconds < math.inf
    ):
        raise ConfigurationError(f"link_seconds must be a number > 0, not {link_seconds!r}")
    if (
        isinstance(max_upload_bytes, bool)
        or not isinstance(max_upload_bytes, int)
        or max_upload_bytes < 0
    ):
        raise ConfigurationError(f"max_upload_bytes must be an int >= 0, not {max_upload_bytes!r}")
    ca_dir = tempfile.mkdtemp(prefix="sseproto-test-")
    try:
        token = token or f"sk-test-{secrets.token_hex(16)}"
        server = TestServer(
            tasks or {},
            token,
            ca_dir,
            names,
            unknown=unknown,
            link_seconds=float(link_seconds),
            max_upload_bytes=max_upload_bytes,
            result_conflict=bool(result_conflict),
        )
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, server._serve_connection, port, host="127.0.0.1")
            )
            server.port = listeners[0].socket.getsockname()[1]
            try:
                yield server
            finally:
                nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(ca_dir, ignore_errors=True)
