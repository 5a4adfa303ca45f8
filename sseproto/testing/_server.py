"""A real HTTPS server (trio + h11 + ssl, certificates from trustme) that plays the
Cyberun task API of DESIGN.md, and misbehaves on demand.

Theory of operation: :func:`serve` opens a nursery inside the caller's task, binds
127.0.0.1 on a free port and serves each TLS connection with an ``h11`` loop
(keep-alive included). Every task follows its :class:`~sseproto.testing.Task`
timeline from the moment the server first hears of it, on trio's clock: the events
endpoint sends each step when its time comes, and the polling endpoints report the
state the timeline has reached, so under ``trio.testing.MockClock`` a whole run takes
no real time. Leaving the ``async with`` cancels the nursery: no task, socket or
temporary file outlives it.
"""

from __future__ import annotations

import functools
import json
import math
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
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import h11
import trio

from .._encoder import encode_comment, encode_event
from .._errors import ConfigurationError
from ._script import Fault, Step, Task, cancelled

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

__all__ = ["RecordedRequest", "TestServer", "serve"]

API_PREFIX = "/api/v1/r"
_EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)  # trio time 0, for timestamps
_JWT = re.compile(r"eyJ[\w-]*\.[\w-]+\.[\w-]*")


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received (header names lower-cased)."""

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


def _iso(t: float) -> str:
    return (_EPOCH + timedelta(seconds=t)).isoformat().replace("+00:00", "Z")


class _Drop(Exception):
    """Abort the connection now, without finishing the response (a network fault)."""


class TestServer:
    """The running server: where it is, how to trust it, and what it received."""

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self, scripts: Mapping[str, Task], token: str, ca_dir: str, names: Sequence[str] = ()
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
        self._scripts = dict(scripts)
        self._tasks: dict[str, _TaskState] = {}
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
        """The task with this id, started now if the server had not heard of it."""
        state = self._tasks.get(task_id)
        if state is None:
            script = self._scripts.get(task_id) or Task()
            state = _TaskState(task_id, script, trio.current_time())
            self._tasks[task_id] = state
        return state

    # -- connections -------------------------------------------------------------

    async def _serve_connection(self, tcp: trio.SocketStream) -> None:
        stream = trio.SSLStream(tcp, self._server_context, server_side=True)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._receive_request(conn, stream)
                if request is None:
                    return
                method, target, headers, body = request
                keep_alive = await self._respond(conn, stream, method, target, headers, body)
                if not keep_alive or h11.MUST_CLOSE in (conn.our_state, conn.their_state):
                    return
                conn.start_next_cycle()
        except (_Drop, trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            await trio.aclose_forcefully(stream)

    async def _receive_request(
        self, conn: h11.Connection, stream: trio.SSLStream[trio.SocketStream]
    ) -> tuple[str, str, dict[str, str], bytes] | None:
        request: h11.Request | None = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(bytes(data))
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                headers = {k.decode().lower(): v.decode("latin-1") for k, v in request.headers}
                return request.method.decode(), request.target.decode(), headers, body
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None

    async def _send(
        self, conn: h11.Connection, stream: trio.SSLStream[trio.SocketStream], event: Any
    ) -> None:
        data = conn.send(event)
        if data:
            await stream.send_all(data)

    async def _send_json(
        self,
        conn: h11.Connection,
        stream: trio.SSLStream[trio.SocketStream],
        status: int,
        payload: Any,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        body = json.dumps(payload).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            *extra_headers,
        ]
        await self._send(conn, stream, h11.Response(status_code=status, headers=headers))
        await self._send(conn, stream, h11.Data(data=body))
        await self._send(conn, stream, h11.EndOfMessage())

    # -- routing -----------------------------------------------------------------

    async def _respond(
        self,
        conn: h11.Connection,
        stream: trio.SSLStream[trio.SocketStream],
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
    ) -> bool:
        """Answer one request; False when the connection must close afterwards."""
        url = urlsplit(target)
        self.requests.append(RecordedRequest(method, url.path, headers, body, trio.current_time()))
        if method == "GET" and url.path.startswith("/files/"):
            # Artifact links are presigned, as the real ones: no token needed.
            await self._send_artifact(conn, stream, url.path)
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
        elif route == ("GET", "tasks", 2):
            await self._send_json(conn, stream, 200, self._snapshot(self.task(parts[1]), now))
        elif route == ("GET", "tasks", 3) and parts[2] == "events":
            # The server closes an event stream's connection after it (and says so).
            return await self._events(conn, stream, self.task(parts[1]), headers)
        elif route == ("GET", "tasks", 3) and parts[2] == "result":
            state = self.task(parts[1])
            result = self._result(state, now)
            if result is None:
                await self._send_json(conn, stream, 409, {"error": "the task has not finished"})
            else:
                await self._send_json(conn, stream, 200, result)
        elif route == ("POST", "tasks", 3) and parts[2] == "cancel":
            state = self.task(parts[1])
            if state.cancelled_at is None and not self._terminal(state, now):
                state.cancelled_at = now
                state.notify()
            await self._send_json(conn, stream, 200, {"id": state.id, "status": "ok"})
        elif method == "POST" and parts[0] == "workflows" and parts[-1] == "run":
            if len(parts) not in (3, 4) or (len(parts) == 4 and parts[1] != "slug"):
                await self._send_json(conn, stream, 404, {"error": "not found"})
                return True
            try:
                payload = json.loads(body or b"{}")
            except (ValueError, RecursionError):
                payload = None
            if not isinstance(payload, dict) or not isinstance(payload.get("parameters", {}), dict):
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

    async def _send_artifact(
        self, conn: h11.Connection, stream: trio.SSLStream[trio.SocketStream], path: str
    ) -> None:
        body = f"sseproto test artifact {path}\n".encode()
        headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))]
        await self._send(conn, stream, h11.Response(status_code=200, headers=headers))
        await self._send(conn, stream, h11.Data(data=body))
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
        final = self._terminal(state, now)
        if final is None:
            return None
        at = state.timeline()[-1][0]
        output = final.data.get("output") if final.event == "completed" else None
        urls = _artifact_urls(self.origin, state.id, output)
        return {
            "id": state.id,
            "task_output": output,
            "download_url": urls.pop("", None),
            "download_urls": urls or None,
            "expires_at": _iso(now + 3600),
            "task_error": final.data.get("error", ""),
            "completed_at": _iso(at),
        }

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
                "total": len(snapshots),
                "total_pages": math.ceil(len(snapshots) / per_page),
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
        start = _int(headers.get("last-event-id", ""), 0)
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
                id=str(index + 1),
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


def _artifact_urls(origin: str, task_id: str, output: Any) -> dict[str, str]:
    """ComfyUI-like outputs give a map of links; anything else one link (key "")."""
    urls: dict[str, str] = {}
    if isinstance(output, dict):
        for node, value in output.items():
            images = value.get("images") if isinstance(value, dict) else None
            for i, image in enumerate(images or []):
                name = image.get("filename", f"{i}.png") if isinstance(image, dict) else str(i)
                urls[f"{node}.images.{i}"] = f"{origin}/files/{task_id}/{name}"
    if not urls and output is not None:
        urls[""] = f"{origin}/files/{task_id}/output"
    return urls


def _retry_after(fault: Fault) -> str:
    assert fault.retry_after is not None
    return str(math.ceil(fault.retry_after))


def _int(text: str, default: int) -> int:
    """A small non-negative decimal integer, or ``default`` (for ids and query values)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else default


@asynccontextmanager
async def serve(
    tasks: Mapping[str, Task] | None = None,
    *,
    token: str | None = None,
    port: int = 0,
    names: Sequence[str] = (),
) -> AsyncIterator[TestServer]:
    """Run the test server on 127.0.0.1 for the duration of the ``async with``.

    Args:
        tasks: Scripted tasks by id. Any other id follows a default ComfyUI-like
            timeline to completion, so any task id works out of the box.
        token: The Bearer token to accept (default: a random ``sk-…`` key). A
            JWT-looking token also requires an ``X-Team-ID`` header, as the API does.
        port: The loopback port to listen on; 0 (the default) picks a free one.
        names: More host names for its certificate, besides ``127.0.0.1`` and
            ``localhost`` (a name that only a proxy resolves, say).

    Yields:
        The server: ``base_url``, ``token``, ``ssl_context``, ``ca_path``, ``requests``.

    Raises:
        ConfigurationError: ``port`` is not 0 to 65535 (the OS would wrap it silently).
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigurationError(f"port must be an int from 0 to 65535, not {port!r}")
    ca_dir = tempfile.mkdtemp(prefix="sseproto-test-")
    try:
        token = token or f"sk-test-{secrets.token_hex(16)}"
        server = TestServer(tasks or {}, token, ca_dir, names)
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
