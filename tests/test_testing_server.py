"""``sseproto.testing``: the HTTPS server that plays the task API, seen from outside.

A client that is not ours (httpx, under trio) speaks to it: every endpoint and its
JSON, the token rules, every fault and stream option, and the events it emits, parsed
by :class:`~sseproto.EventStreamParser` and decoded by :func:`~sseproto.decode_task_event`,
compared with the scripted timeline (types, ids ``1..n``, data, timestamps, and the
trio time each event arrives at). The server writes its events with
:func:`~sseproto.encode_event`, so the encoder-to-parser round trip is tested too.

Every test runs on trio's ``MockClock`` (autojump): a timeline of seconds takes none.
The client's timeout is in those mock seconds, so a test that hangs fails instead.
"""

from __future__ import annotations

import json
import math
import os
import re
import ssl
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio
import trio.testing

import sseproto
from sseproto import (
    Cancelled,
    Comment,
    Completed,
    EventStreamParser,
    Failed,
    Progress,
    ServerSentEvent,
    StatusChanged,
    StreamError,
    TaskStatus,
    UnknownEvent,
    decode_task_event,
    decode_task_result,
    decode_task_snapshot,
    encode_comment,
    encode_event,
    parse_timestamp,
)
from sseproto.testing import (
    DEFAULT_OUTPUT_SIZE,
    Fault,
    Step,
    Task,
    TestServer,
    comfyui_timeline,
    completed,
    error,
    failed,
    nerfstudio_timeline,
    output_bytes,
    progress,
    serve,
    status,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

#: Mock seconds: longer than any timeline here, shorter than "forever".
TIMEOUT = httpx.Timeout(60.0)

SNAPSHOT_FIELDS = {
    "id",
    "workflow_id",
    "task_status",
    "task_error",
    "created_at",
    "started_at",
    "completed_at",
    "retry_count",
    "agent_id",
    "gpu_type",
    "tool_type",
}
RESULT_FIELDS = {
    "id",
    "task_output",
    "download_url",
    "download_urls",
    "expires_at",
    "task_error",
    "completed_at",
}

#: Every endpoint, as (method, path under the base URL).
ENDPOINTS = [
    ("GET", "/tasks"),
    ("GET", "/tasks/t-1"),
    ("GET", "/tasks/t-1/events"),
    ("GET", "/tasks/t-1/result"),
    ("POST", "/tasks/t-1/cancel"),
    ("POST", "/workflows/wf-1/run"),
    ("POST", "/workflows/slug/my-flow/run"),
    ("GET", "/nowhere"),
]

#: What decode_task_event makes of each event type.
DECODED = {
    "status": StatusChanged,
    "progress": Progress,
    "completed": Completed,
    "failed": Failed,
    "cancelled": Cancelled,
    "error": StreamError,
}

#: A short run (three events, two seconds), for tests that need many bytes per event.
SHORT = [status("pending"), status("running", delay=1.0), completed({"k": 1}, delay=1.0)]

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJl"


# -- helpers -------------------------------------------------------------------------


def client_for(
    server: TestServer,
    *,
    token: str | None = "",
    verify: ssl.SSLContext | bool | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.AsyncClient:
    """An httpx client for the server: its token (``""``), another, or none (None)."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token or server.token}"
    return httpx.AsyncClient(
        verify=server.ssl_context if verify is None else verify,
        headers=sent,
        timeout=TIMEOUT,
        trust_env=False,
    )


@dataclass
class Received:
    """What one request to the events endpoint got, as a client sees it."""

    status_code: int = 0
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    items: list[ServerSentEvent | Comment] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # trio time of each item
    chunks: list[bytes] = field(default_factory=list)
    cut: httpx.RemoteProtocolError | None = None  # the body ended before its end
    stalled: bool = False  # the client gave up waiting
    half_event: bool = False  # what parser.close() said: an event was cut short
    retry: int | None = None
    last_event_id: str = ""
    ended_at: float = math.nan

    @property
    def events(self) -> list[ServerSentEvent]:
        return [item for item in self.items if isinstance(item, ServerSentEvent)]

    @property
    def comments(self) -> list[Comment]:
        return [item for item in self.items if isinstance(item, Comment)]

    @property
    def event_arrivals(self) -> list[float]:
        pairs = zip(self.items, self.arrivals, strict=True)
        return [at for item, at in pairs if isinstance(item, ServerSentEvent)]

    @property
    def raw(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def ids(self) -> list[str]:
        return [event.id for event in self.events]


@dataclass
class Api:
    """A running server and an httpx client that trusts it and sends its token."""

    server: TestServer
    client: httpx.AsyncClient

    def url(self, path: str) -> str:
        return self.server.base_url + path

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, self.url(path), **kwargs)

    async def json(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        """The JSON answer to a request, checking its status and content type."""
        response = await self.request(method, path, **kwargs)
        assert response.status_code == expect, response.text
        assert response.headers["content-type"] == "application/json"
        return response.json()

    async def snapshot(self, task_id: str) -> dict[str, Any]:
        snapshot: dict[str, Any] = await self.json("GET", f"/tasks/{task_id}")
        assert set(snapshot) == SNAPSHOT_FIELDS
        assert snapshot["id"] == task_id
        return snapshot

    async def run_workflow(self, path: str = "/workflows/wf-1/run") -> str:
        answer = await self.json("POST", path, 202, json={"parameters": {"seed": 7}})
        assert set(answer) == {"task_id"}
        assert isinstance(answer["task_id"], str)
        assert answer["task_id"]
        return answer["task_id"]

    async def stream(
        self,
        task_id: str,
        *,
        last_event_id: str | None = None,
        give_up_after: float = math.inf,
        client: httpx.AsyncClient | None = None,
        into: Received | None = None,
    ) -> Received:
        """Read the task's events endpoint to its end (or a drop, or ``give_up_after``)."""
        received = Received() if into is None else into
        parser = EventStreamParser(last_event_id=last_event_id or "", comments=True)
        headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
        url = self.url(f"/tasks/{task_id}/events")
        with trio.move_on_after(give_up_after) as waiting:
            try:
                async with (client or self.client).stream("GET", url, headers=headers) as response:
                    received.status_code = response.status_code
                    received.headers = response.headers
                    async for chunk in response.aiter_raw():
                        now = trio.current_time()
                        received.chunks.append(chunk)
                        for item in parser.feed(chunk):
                            received.items.append(item)
                            received.arrivals.append(now)
            except httpx.RemoteProtocolError as exc:
                received.cut = exc
        received.stalled = waiting.cancelled_caught
        received.ended_at = trio.current_time()
        received.half_event = parser.close()
        received.retry = parser.retry
        received.last_event_id = parser.last_event_id
        return received

    async def stream_all(self, *task_ids: str) -> dict[str, Received]:
        """Read several tasks' streams at once (their tasks start at the same instant)."""
        out = {task_id: Received() for task_id in task_ids}
        async with trio.open_nursery() as nursery:
            for task_id in task_ids:
                nursery.start_soon(partial(self.stream, task_id, into=out[task_id]))
        return out

    def event_requests(self, task_id: str) -> list[dict[str, str]]:
        """The headers of each request the server recorded for the task's stream."""
        path = f"/api/v1/r/tasks/{task_id}/events"
        return [r.headers for r in self.server.requests if r.path == path]


@asynccontextmanager
async def api(
    tasks: Mapping[str, Task] | None = None, *, token: str | None = None, **options: Any
) -> AsyncIterator[Api]:
    async with serve(tasks, token=token, **options) as server, client_for(server) as client:
        yield Api(server, client)


def stamp(value: object) -> datetime:
    parsed = parse_timestamp(value)
    assert parsed is not None, value
    return parsed


def seconds(delta: timedelta) -> float:
    return delta.total_seconds()


def encode(item: ServerSentEvent | Comment) -> bytes:
    """What sseproto's encoder writes for a parsed event (with its own id) or comment."""
    if isinstance(item, Comment):
        return encode_comment(item.text)
    return encode_event(item.data, event=item.event, id=item.id)


def check_timeline(
    received: Received,
    task_id: str,
    script: Task,
    *,
    start: float | None,
    first: int = 1,
    last: int | None = None,
) -> datetime | None:
    """The events are exactly the script's timeline, steps ``first`` to ``last`` (1-based).

    Types, ids (``first``..n), data (with ``task_id``), timestamps that keep the
    script's offsets, and decoding; each event arrives at ``start`` + its offset when
    the task's start on trio's clock is given. Returns the timestamps' origin (the
    task's start as the server stamps it), if any event carries a timestamp.
    """
    timeline = script.timeline[first - 1 : last]
    events = received.events
    expected = [(step.event, str(n)) for n, (_, step) in enumerate(timeline, first)]
    assert [(event.event, event.id) for event in events] == expected
    origins: set[datetime] = set()
    for event, (offset, step) in zip(events, timeline, strict=True):
        payload = json.loads(event.data)
        if step.event == "error":  # the error event carries only its message
            assert payload == step.data
        else:
            key = "completed_at" if step.event == "completed" else "timestamp"
            origins.add(stamp(payload.pop(key)) - timedelta(seconds=offset))
            assert payload == {"task_id": task_id, **step.data}
        decoded = decode_task_event(event)
        assert type(decoded) is DECODED.get(step.event, UnknownEvent)
        if isinstance(decoded, (StatusChanged, Progress, Completed, Failed, Cancelled)):
            assert decoded.task_id == task_id
    assert len(origins) <= 1, origins  # one start: every stamp is its step's offset
    if start is not None:
        assert received.event_arrivals == pytest.approx([start + at for at, _ in timeline])
    return origins.pop() if origins else None


def check_clean_end(received: Received) -> None:
    """A whole stream: 200, an event stream, ended by the server between events."""
    assert received.status_code == 200
    assert received.headers["content-type"].startswith("text/event-stream")
    assert received.cut is None
    assert not received.stalled
    assert not received.half_event


def without_task_id(received: Received) -> list[tuple[str, str, Any]]:
    """The events with their JSON data, ``task_id`` left out (to compare two tasks)."""
    out = []
    for event in received.events:
        data = json.loads(event.data)
        data.pop("task_id", None)
        out.append((event.event, event.id, data))
    return out


# -- the events endpoint -------------------------------------------------------------

ERRORS_AND_FAILS = Task(
    steps=[
        status("provisioning"),  # not a documented status: decodes all the same
        error("cannot read the task state", delay=0.5),
        progress(0.5, delay=0.5, stage="train", message="half way"),
        Step("thumbnail", {"url": "x.png"}, delay=0.25),  # a type we do not know
        failed("CUDA out of memory", delay=1.0),
        status("running", delay=1.0),  # after the terminal step: never sent
    ]
)


@pytest.mark.parametrize(
    "script",
    [
        None,  # an unscripted id: the default ComfyUI-like run
        Task(steps=comfyui_timeline(steps=2, interval=1.5)),
        Task(steps=nerfstudio_timeline()),
        ERRORS_AND_FAILS,
    ],
    ids=["unscripted", "comfyui", "nerfstudio", "errors_and_fails"],
)
async def test_events_are_the_scripted_timeline(
    autojump_clock: trio.testing.MockClock, script: Task | None
) -> None:
    async with api(None if script is None else {"t-1": script}) as a:
        await trio.sleep(5)  # a task starts when the server first hears of it
        start = trio.current_time()
        received = await a.stream("t-1")
        snapshot = await a.snapshot("t-1")
    script = script or Task()
    check_clean_end(received)
    assert received.headers["cache-control"] == "no-cache"
    origin = check_timeline(received, "t-1", script, start=start)
    assert origin == stamp(snapshot["created_at"])
    end = script.timeline[-1][0]
    assert received.ended_at == pytest.approx(start + end)  # closed after the terminal event
    assert received.comments == []
    assert received.retry is None


async def test_events_after_the_end_are_the_whole_timeline_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with api() as a:
        start = trio.current_time()
        await a.snapshot("t-1")
        await trio.sleep(60)
        received = await a.stream("t-1")
    check_clean_end(received)
    check_timeline(received, "t-1", Task(), start=None)
    assert received.event_arrivals == [start + 60] * len(Task().timeline)


# -- snapshots and results -----------------------------------------------------------


async def test_snapshot_follows_the_timeline(autojump_clock: trio.testing.MockClock) -> None:
    async with api({"t-1": Task(workflow_id="wf-scripted")}) as a:
        await trio.sleep(10)
        start = trio.current_time()
        first = await a.snapshot("t-1")
        created = stamp(first["created_at"])
        assert first["workflow_id"] == "wf-scripted"
        assert first["task_status"] == "pending"
        assert first["task_error"] == ""
        assert first["started_at"] is None
        assert first["completed_at"] is None
        # (time from the start, status, started_at); the default run: pending 0,
        # queued 0.5, running 1.0, progress 1.5 to 3.0, completed 3.5.
        for at, expected, started in [
            (0.75, "queued", None),
            (1.25, "running", 1.0),
            (2.25, "running", 1.0),  # progress events leave the status running
            (3.25, "running", 1.0),
        ]:
            await trio.sleep_until(start + at)
            snapshot = await a.snapshot("t-1")
            assert (snapshot["task_status"], snapshot["completed_at"]) == (expected, None), at
            got = snapshot["started_at"]
            assert (None if got is None else seconds(stamp(got) - created)) == started, at
            assert snapshot["created_at"] == first["created_at"]
        await trio.sleep_until(start + 3.5)
        final = await a.snapshot("t-1")
    assert final["task_status"] == "completed"
    assert final["task_error"] == ""
    assert seconds(stamp(final["completed_at"]) - created) == 3.5
    for key in ("retry_count", "agent_id", "gpu_type", "tool_type"):
        assert final[key] is not None, key
    decoded = decode_task_snapshot(final)
    assert decoded.status is TaskStatus.COMPLETED
    assert decoded.id == "t-1"
    assert decoded.workflow_id == "wf-scripted"
    assert decoded.error is None  # "" is no error


async def test_failed_task(autojump_clock: trio.testing.MockClock) -> None:
    # No running status: the first progress event is when the task started.
    steps = [status("queued"), progress(0.5, delay=1.0), failed("CUDA out of memory", delay=1.0)]
    script = Task(steps=steps)
    async with api({"t-1": script}) as a:
        received = await a.stream("t-1")
        snapshot = await a.snapshot("t-1")
        result = await a.json("GET", "/tasks/t-1/result")
    check_clean_end(received)
    assert isinstance(decode_task_event(received.events[-1]), Failed)
    assert snapshot["task_status"] == "failed"
    assert snapshot["task_error"] == "CUDA out of memory"
    created = stamp(snapshot["created_at"])
    assert seconds(stamp(snapshot["started_at"]) - created) == 1.0
    assert seconds(stamp(snapshot["completed_at"]) - created) == 2.0
    assert result["task_output"] is None
    assert result["task_error"] == "CUDA out of memory"
    assert result["download_url"] is None
    assert not result["download_urls"]
    assert decode_task_snapshot(snapshot).status is TaskStatus.FAILED


async def test_result_before_the_end_is_409_when_asked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # (By default it is a 200 with null outputs, as documented: test_api_fidelity.py.)
    async with api(result_conflict=True) as a:
        for _ in range(3):  # pending, running, and just before the end
            answer = await a.json("GET", "/tasks/t-1/result", 409)
            assert "error" in answer
            await trio.sleep(1.4)
        result = await a.json("GET", "/tasks/t-1/result")
    assert result["task_output"] is not None


@pytest.mark.parametrize(
    ("output", "links"),
    [
        (
            {"9": {"images": [{"filename": "ComfyUI_00001_.png", "type": "output"}]}},
            {"9.images.0": "ComfyUI_00001_.png"},
        ),
        (
            {
                "9": {"images": [{"filename": "a.png"}, {"filename": "b.png"}]},
                "12": {"images": [{"filename": "c.png"}]},
            },
            {"9.images.0": "a.png", "9.images.1": "b.png", "12.images.0": "c.png"},
        ),
        ({"splat": "scene.ply"}, None),  # a dict, but no ComfyUI images: one link
        ("s3://bucket/out.zip", None),
        ([1, 2, 3], None),
    ],
    ids=["comfyui", "comfyui_many", "nerfstudio", "string", "list"],
)
async def test_result_of_a_completed_task(
    autojump_clock: trio.testing.MockClock, output: Any, links: dict[str, str] | None
) -> None:
    script = Task(steps=[status("running"), completed(output, delay=2.0)])
    async with api({"t-1": script}) as a:
        received = await a.stream("t-1")
        result = await a.json("GET", "/tasks/t-1/result")
        snapshot = await a.snapshot("t-1")
        origin = urlsplit(a.server.base_url)._replace(path="").geturl()
    assert set(result) == RESULT_FIELDS
    assert result["id"] == "t-1"
    assert result["task_output"] == output
    assert result["task_error"] == ""
    assert stamp(result["completed_at"]) == stamp(snapshot["completed_at"])
    event = decode_task_event(received.events[-1])
    assert isinstance(event, Completed)
    assert event.completed_at == stamp(result["completed_at"])
    assert event.output == output
    assert stamp(result["expires_at"]) > stamp(result["completed_at"])
    if links is None:
        assert result["download_urls"] is None
        assert result["download_url"].startswith(origin + "/")
    else:
        assert result["download_url"] is None
        assert set(result["download_urls"]) == set(links)
        for key, name in links.items():
            url = result["download_urls"][key]
            assert url.startswith(origin + "/")
            assert urlsplit(url).path.endswith("/" + name)
    async with api({"t-1": script}) as a:  # the links work, without the token (presigned)
        await a.stream("t-1")
        again = await a.json("GET", "/tasks/t-1/result")
        for key, url in [("", again["download_url"]), *(again["download_urls"] or {}).items()]:
            if url is None:
                continue
            artifact = await a.client.get(url, headers={"Authorization": ""})
            assert artifact.status_code == 200
            assert artifact.content == output_bytes("t-1", key, DEFAULT_OUTPUT_SIZE)
    decoded = decode_task_result(result)
    assert decoded.output == output
    assert decoded.download_urls == (result["download_urls"] or {})
    assert decoded.download_url == result["download_url"]


# -- cancel --------------------------------------------------------------------------


async def test_cancel_mid_run(autojump_clock: trio.testing.MockClock) -> None:
    async with api() as a, trio.open_nursery() as nursery:
        start = trio.current_time()
        received = Received()
        nursery.start_soon(partial(a.stream, "t-1", into=received))
        await trio.sleep(1.25)  # pending, queued and running have been sent
        answer = await a.json("POST", "/tasks/t-1/cancel")
        assert answer is True  # the documented answer: a single boolean
        await trio.sleep(0.1)
        assert received.ended_at == pytest.approx(start + 1.25)  # ended at the cancel
        snapshot = await a.snapshot("t-1")
        result = await a.json("GET", "/tasks/t-1/result")
        await trio.sleep(10)
        later = await a.stream("t-1")
    check_clean_end(received)
    assert [(e.event, e.id) for e in received.events] == [
        ("status", "1"),
        ("status", "2"),
        ("status", "3"),
        ("cancelled", "4"),
    ]
    assert received.event_arrivals[-1] == pytest.approx(start + 1.25)
    cancel = decode_task_event(received.events[-1])
    assert isinstance(cancel, Cancelled)
    assert cancel.task_id == "t-1"
    assert snapshot["task_status"] == "cancelled"
    assert seconds(stamp(snapshot["completed_at"]) - stamp(snapshot["created_at"])) == 1.25
    assert result["task_output"] is None
    assert result["download_url"] is None
    assert not result["download_urls"]
    assert later.events == received.events  # the timeline now ends with the cancel


async def test_cancel_a_finished_task_is_a_noop(autojump_clock: trio.testing.MockClock) -> None:
    async with api() as a:
        await a.snapshot("t-1")
        await trio.sleep(10)
        answer = await a.json("POST", "/tasks/t-1/cancel")
        assert answer is True
        snapshot = await a.snapshot("t-1")
        received = await a.stream("t-1")
        result = await a.json("GET", "/tasks/t-1/result")
    assert snapshot["task_status"] == "completed"
    check_timeline(received, "t-1", Task(), start=None)
    assert result["task_output"] is not None


# -- workflows -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/workflows/wf-1/run", "/workflows/slug/my-flow/run", "/workflows/slug/my-flow@3/run"],
    ids=["by_id", "by_slug", "by_slug_and_version"],
)
async def test_run_a_workflow(autojump_clock: trio.testing.MockClock, path: str) -> None:
    async with api() as a:
        start = trio.current_time()
        task_id = await a.run_workflow(path)
        other = await a.json("POST", path, 202, json={})  # parameters are optional
        snapshot = await a.snapshot(task_id)
        received = await a.stream(task_id)
        recorded = [r for r in a.server.requests if r.method == "POST"]
    assert other["task_id"] != task_id
    assert snapshot["task_status"] == "pending"
    check_clean_end(received)
    check_timeline(received, task_id, Task(), start=start)  # it started at the 202
    assert recorded[0].path == "/api/v1/r" + path
    assert json.loads(recorded[0].body) == {"parameters": {"seed": 7}}
    assert snapshot["workflow_id"] == path.split("/")[-2]  # the id, or the slug as given


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'"a string"',
        b"null",
        b'{"parameters": "seed=7"}',
        b'{"parameters": [["seed", 7]]}',
        b"[" * 100_000,  # nested past the JSON decoder's recursion limit
    ],
    ids=[
        "truncated",
        "not_json",
        "not_utf8",
        "array",
        "string",
        "null",
        "parameters_string",
        "parameters_list",
        "deeply_nested",
    ],
)
async def test_run_a_workflow_with_a_bad_body_is_400(
    autojump_clock: trio.testing.MockClock, body: bytes
) -> None:
    async with api() as a:
        answer = await a.json("POST", "/workflows/wf-1/run", 400, content=body)
        listing = await a.json("GET", "/tasks")  # the server is still there
    assert "error" in answer
    assert listing["task_list"] == []  # and started nothing


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/r/nowhere"),
        ("GET", "/api/v1/r/"),
        ("GET", "/api/v2/r/tasks/t-1"),
        ("GET", "/tasks/t-1"),
        ("GET", "/api/v1/r/tasks/t-1/events/more"),
        ("GET", "/api/v1/r/tasks/t-1/cancel"),
        ("POST", "/api/v1/r/tasks"),
        ("POST", "/api/v1/r/tasks/t-1/result"),
        ("GET", "/api/v1/r/workflows/wf-1/run"),
        ("POST", "/api/v1/r/workflows/run"),
        ("POST", "/api/v1/r/workflows/other/my-flow/run"),
        ("POST", "/api/v1/r/workflows/slug/a/b/run"),
    ],
)
async def test_unknown_path_is_404(
    autojump_clock: trio.testing.MockClock, method: str, path: str
) -> None:
    async with serve() as server, client_for(server) as client:
        response = await client.request(method, server.base_url.removesuffix("/api/v1/r") + path)
        again = await client.get(server.base_url + "/tasks")  # the connection lives on
    assert response.status_code == 404
    assert "error" in response.json()
    assert again.status_code == 200


async def test_other_methods_are_405(autojump_clock: trio.testing.MockClock) -> None:
    async with api() as a:
        for method in ("DELETE", "PUT", "PATCH"):
            answer = await a.json(method, "/tasks/t-1", 405)
            assert "error" in answer


# -- the task list -------------------------------------------------------------------


async def test_list_tasks_pages_and_filters(autojump_clock: trio.testing.MockClock) -> None:
    done = Task(steps=[completed({"k": 1})])  # finished as soon as it starts
    async with api({"done-1": done, "done-2": done}) as a:
        empty = await a.json("GET", "/tasks")
        for task_id in ("done-1", "done-2"):
            await a.snapshot(task_id)
        created = [await a.run_workflow() for _ in range(3)]
        everything = await a.json("GET", "/tasks")
        snapshots = [await a.snapshot(t["id"]) for t in everything["task_list"]]
        pages = [
            await a.json("GET", "/tasks", params={"per_page": 2, "current_page": page})
            for page in (1, 2, 3, 4)
        ]
        by_status = {
            wanted: await a.json("GET", "/tasks", params={"status": wanted})
            for wanted in ("completed", "pending", "running")
        }
        await trio.sleep(1.25)  # the three new tasks are running now
        running = await a.json("GET", "/tasks", params={"status": "running"})

    def ids(listing: Any) -> set[str]:
        return {t["id"] for t in listing["task_list"]}

    assert empty == {
        "task_list": [],
        "page_meta": {"current_page": 1, "per_page": 20, "total_count": 0},
    }
    assert everything["page_meta"] == {"current_page": 1, "per_page": 20, "total_count": 5}
    assert ids(everything) == {"done-1", "done-2", *created}
    assert everything["task_list"] == snapshots  # each item is the task's snapshot
    assert [len(p["task_list"]) for p in pages] == [2, 2, 1, 0]
    assert [t for p in pages for t in p["task_list"]] == everything["task_list"]
    for number, page in enumerate(pages, 1):
        meta = {"current_page": number, "per_page": 2, "total_count": 5}
        assert page["page_meta"] == meta
    assert ids(by_status["completed"]) == {"done-1", "done-2"}
    assert by_status["completed"]["page_meta"]["total_count"] == 2
    assert ids(by_status["pending"]) == set(created)
    assert ids(by_status["running"]) == set()
    assert ids(running) == set(created)


@pytest.mark.parametrize(
    "query",
    [
        {"current_page": "x", "per_page": "-3"},
        {"current_page": "0", "per_page": "0"},
        {"current_page": "\N{SUPERSCRIPT TWO}"},  # str.isdigit() says yes; int() says no
        {"per_page": "9" * 5000},  # past int()'s limit on digits
    ],
    ids=["not_numbers", "zero", "superscript", "too_many_digits"],
)
async def test_list_tasks_ignores_page_numbers_it_cannot_read(
    autojump_clock: trio.testing.MockClock, query: dict[str, str]
) -> None:
    async with api() as a:
        await a.snapshot("t-1")
        listing = await a.json("GET", "/tasks", params=query)
    assert [t["id"] for t in listing["task_list"]] == ["t-1"]
    assert listing["page_meta"]["current_page"] == 1


# -- tokens --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer sk-wrong", "Bearer", "{token}", "Token {token}", "Bearer {token}x"],
    ids=["missing", "wrong", "empty", "no_scheme", "other_scheme", "longer"],
)
async def test_every_endpoint_needs_the_token(
    autojump_clock: trio.testing.MockClock, authorization: str | None
) -> None:
    async with serve() as server:
        headers = {} if authorization is None else {"Authorization": authorization}
        headers = {k: v.format(token=server.token) for k, v in headers.items()}
        async with client_for(server, token=None, headers=headers) as stranger:
            for method, path in ENDPOINTS:
                response = await stranger.request(method, server.base_url + path, json={})
                assert response.status_code == 401, (method, path)
                assert "error" in response.json()
        async with client_for(server) as client:
            listing = (await client.get(server.base_url + "/tasks")).json()
    assert listing["task_list"] == []  # nothing was started by a refused request
    assert len(server.requests) == len(ENDPOINTS) + 1


async def test_default_token_is_a_random_key(autojump_clock: trio.testing.MockClock) -> None:
    async with serve() as one, serve() as two:
        tokens = [one.token, two.token]
        async with client_for(one, token=two.token) as crossed:
            response = await crossed.get(one.base_url + "/tasks")
    assert all(token.startswith("sk-") for token in tokens)
    assert tokens[0] != tokens[1]
    assert len(tokens[0]) >= 20
    assert response.status_code == 401


@pytest.mark.parametrize("token", ["dk-my-deploy-key", "sk-custom", JWT])
async def test_custom_token(autojump_clock: trio.testing.MockClock, token: str) -> None:
    team = {"X-Team-ID": "3f1c2a9e-0000-4000-8000-000000000001"}
    async with serve(token=token) as server, client_for(server, headers=team) as client:
        good = await client.get(server.base_url + "/tasks/t-1")
        random = await client.get(
            server.base_url + "/tasks/t-1", headers={"Authorization": "Bearer sk-other"}
        )
    assert server.token == token
    assert good.status_code == 200
    assert random.status_code == 401


async def test_the_auth_scheme_is_case_insensitive(autojump_clock: trio.testing.MockClock) -> None:
    async with serve() as server, client_for(server) as client:
        answer = await client.get(
            server.base_url + "/tasks/t-1", headers={"Authorization": f"bearer {server.token}"}
        )
    assert answer.status_code == 200


async def test_jwt_needs_a_team_id(autojump_clock: trio.testing.MockClock) -> None:
    async with serve(token=JWT) as server:
        async with client_for(server) as client:
            for method, path in ENDPOINTS:
                response = await client.request(method, server.base_url + path, json={})
                assert response.status_code == 400, (method, path)
                assert "X-Team-ID" in response.json()["error"]
            wrong = await client.get(
                server.base_url + "/tasks", headers={"Authorization": "Bearer sk-other"}
            )
        team = {"X-Team-ID": "3f1c2a9e-0000-4000-8000-000000000001"}
        async with client_for(server, headers=team) as client:
            listing = await client.get(server.base_url + "/tasks")
            received = await Api(server, client).stream("t-1")
    assert wrong.status_code == 401  # a wrong token is 401 before anything else
    assert listing.status_code == 200
    assert listing.json()["task_list"] == []  # nothing was started without the team
    check_clean_end(received)
    check_timeline(received, "t-1", Task(), start=None)


async def test_keys_ignore_the_team_id(autojump_clock: trio.testing.MockClock) -> None:
    async with serve() as server:
        team = {"X-Team-ID": "3f1c2a9e-0000-4000-8000-000000000001"}
        async with client_for(server, headers=team) as client:
            response = await client.get(server.base_url + "/tasks/t-1")
    assert response.status_code == 200


# -- faults: the connection ----------------------------------------------------------


@pytest.mark.parametrize("after", [0, 3])
async def test_drop_between_events_then_resume(
    autojump_clock: trio.testing.MockClock, after: int
) -> None:
    script = Task(faults=[Fault("drop_between", after=after)])
    async with api({"t-1": script}) as a:
        start = trio.current_time()
        dropped = await a.stream("t-1")
        resumed = await a.stream("t-1", last_event_id=dropped.last_event_id or None)
        headers = a.event_requests("t-1")
    assert dropped.status_code == 200
    assert isinstance(dropped.cut, httpx.RemoteProtocolError)
    assert not dropped.half_event  # the events before the drop arrived whole
    assert dropped.ids == [str(n) for n in range(1, after + 1)]
    assert dropped.last_event_id == (str(after) if after else "")
    check_timeline(dropped, "t-1", script, start=start, last=after)
    check_clean_end(resumed)
    check_timeline(resumed, "t-1", script, start=None, first=after + 1)
    assert "last-event-id" not in headers[0]
    assert headers[1].get("last-event-id") == (str(after) if after else None)


async def test_drop_mid_event(autojump_clock: trio.testing.MockClock) -> None:
    script = Task(faults=[Fault("drop_mid_event", after=2)])
    async with api({"t-1": script}) as a:
        dropped = await a.stream("t-1")
        resumed = await a.stream("t-1", last_event_id=dropped.last_event_id)
    assert isinstance(dropped.cut, httpx.RemoteProtocolError)
    assert dropped.half_event  # the parser was holding half of event 3
    assert dropped.ids == ["1", "2"]
    assert dropped.last_event_id == "2"
    whole = encode_event(dropped.events[0].data, event="status", id="1")
    whole += encode_event(dropped.events[1].data, event="status", id="2")
    assert dropped.raw.startswith(whole)
    half = dropped.raw[len(whole) :]
    third = resumed.raw[: resumed.raw.index(b"\n\n") + 2]  # event 3, in full
    assert half == third[: len(third) // 2]
    check_timeline(resumed, "t-1", script, start=None, first=3)


@pytest.mark.parametrize("after", [0, 2])
async def test_stall(autojump_clock: trio.testing.MockClock, after: int) -> None:
    script = Task(faults=[Fault("stall", after=after)], heartbeat=0.1)
    async with api({"t-1": script}) as a:
        start = trio.current_time()
        stalled = await a.stream("t-1", give_up_after=30)
        snapshot = await a.snapshot("t-1")
        resumed = await a.stream("t-1", last_event_id=stalled.last_event_id or None)
    assert stalled.stalled
    assert stalled.ended_at == pytest.approx(start + 30)
    assert stalled.status_code == 200  # the headers came
    assert stalled.headers["content-type"].startswith("text/event-stream")
    check_timeline(stalled, "t-1", script, start=start, last=after)
    # Not a byte after the last event, not even a heartbeat: all the bytes are the
    # events and heartbeats parsed, none arrived later than the last event.
    assert not stalled.half_event
    assert stalled.raw == b"".join(map(encode, stalled.items))
    quiet_from = start + (script.timeline[after - 1][0] if after else 0.0)
    assert max(stalled.arrivals, default=start) == pytest.approx(quiet_from)
    assert snapshot["task_status"] == "completed"  # the task went on meanwhile
    check_clean_end(resumed)
    check_timeline(resumed, "t-1", script, start=None, first=after + 1)


async def test_error_then_close(autojump_clock: trio.testing.MockClock) -> None:
    script = Task(faults=[Fault("error_then_close", after=2)])
    async with api({"t-1": script}) as a:
        start = trio.current_time()
        first = await a.stream("t-1")
        snapshot = await a.snapshot("t-1")
        resumed = await a.stream("t-1", last_event_id=first.last_event_id)
    check_clean_end(first)  # a clean end, without a terminal event
    assert [e.event for e in first.events] == ["status", "status", "error"]
    assert first.ids == ["1", "2", "2"]  # the error event has no id of its own
    assert first.last_event_id == "2"
    decoded = decode_task_event(first.events[-1])
    assert isinstance(decoded, StreamError)
    assert decoded.message
    assert first.ended_at == pytest.approx(start + 0.5)
    assert not TaskStatus(snapshot["task_status"]).is_terminal  # the task goes on
    check_clean_end(resumed)
    check_timeline(resumed, "t-1", script, start=None, first=3)


# -- faults: the answer ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "retry_after", "header"),
    [
        (401, None, None),
        (403, None, None),
        (404, None, None),
        (429, 2.5, "3"),  # whole seconds, rounded up
        (503, 30, "30"),
        (503, None, None),
    ],
)
async def test_status_fault(
    autojump_clock: trio.testing.MockClock,
    code: int,
    retry_after: float | None,
    header: str | None,
) -> None:
    script = Task(faults=[Fault("status", code=code, retry_after=retry_after)])
    async with api({"t-1": script}) as a:
        response = await a.request("GET", "/tasks/t-1/events")
        async with client_for(a.server) as fresh:
            after = await a.stream("t-1", client=fresh)
    assert response.status_code == code
    assert response.headers["content-type"] == "application/json"
    assert response.headers.get("retry-after") == header
    answer = response.json()
    assert "error" in answer
    if code == 403:  # a licensed feature is off: the payload names it
        assert answer["feature"]
    else:
        assert "feature" not in answer
    check_clean_end(after)  # the fault was for the first attempt only
    check_timeline(after, "t-1", script, start=None)


async def test_no_content(autojump_clock: trio.testing.MockClock) -> None:
    async with api({"t-1": Task(faults=[Fault("no_content")])}) as a:
        response = await a.request("GET", "/tasks/t-1/events")
    assert response.status_code == 204
    assert response.content == b""


async def test_wrong_content_type(autojump_clock: trio.testing.MockClock) -> None:
    async with api({"t-1": Task(faults=[Fault("wrong_content_type")])}) as a:
        response = await a.request("GET", "/tasks/t-1/events")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain"
    assert b"event:" not in response.content
    assert response.content


async def test_faults_apply_per_attempt(autojump_clock: trio.testing.MockClock) -> None:
    faults = [Fault("status", code=503), None, Fault("no_content"), Fault("wrong_content_type")]
    script = Task(faults=faults)
    answers = []
    async with api({"t-1": script}) as a:
        for _ in range(len(faults) + 1):
            # A fresh connection per attempt, as a reconnecting client makes (see
            # test_a_fault_answer_leaves_the_connection_usable for keep-alive).
            async with client_for(a.server) as fresh:
                answers.append(await a.stream("t-1", client=fresh))
    assert [r.status_code for r in answers] == [503, 200, 204, 200, 200]
    assert answers[3].headers["content-type"] == "text/plain"
    for clean in (answers[1], answers[4]):
        check_clean_end(clean)
        check_timeline(clean, "t-1", script, start=None)


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault("status", code=503, retry_after=1), 503),
        (Fault("status", code=404), 404),
        (Fault("no_content"), 204),
        (Fault("wrong_content_type"), 200),
    ],
    ids=["503", "404", "204", "text_plain"],
)
async def test_a_fault_answer_leaves_the_connection_usable(
    autojump_clock: trio.testing.MockClock, fault: Fault, code: int
) -> None:
    """The next request on the same keep-alive client works right away.

    The server keeps the connection after such an answer, or says ``Connection:
    close``; a silent close would make the client's next request, sent on that
    connection, fail with "Server disconnected".
    """
    async with api({"t-1": Task(faults=[fault])}) as a:
        first = await a.request("GET", "/tasks/t-1/events")
        second = await a.request("GET", "/tasks/t-1")
    assert first.status_code == code
    assert second.status_code == 200


# -- stream options --------------------------------------------------------------------


async def test_heartbeat(autojump_clock: trio.testing.MockClock) -> None:
    script = Task(steps=SHORT, heartbeat=0.3)
    async with api({"t-1": script}) as a:
        start = trio.current_time()
        received = await a.stream("t-1")
    check_clean_end(received)
    check_timeline(received, "t-1", script, start=start)
    kinds = ["C" if isinstance(item, Comment) else "E" for item in received.items]
    assert "".join(kinds) == "ECCCECCCE"  # every 0.3 s of silence, between events at 0, 1, 2
    assert {c.text for c in received.comments} == {"heartbeat"}
    times = [at - start for item, at in zip(received.items, received.arrivals, strict=True)]
    assert times == pytest.approx([0, 0.3, 0.6, 0.9, 1, 1.3, 1.6, 1.9, 2])


async def test_retry(autojump_clock: trio.testing.MockClock) -> None:
    script = Task(retry=2500, faults=[Fault("drop_between", after=1)])
    async with api({"t-1": script}) as a:
        first = await a.stream("t-1")
        resumed = await a.stream("t-1", last_event_id=first.last_event_id)
    for received in (first, resumed):  # at the start of every stream
        assert received.retry == 2500
        assert received.raw.startswith(b"retry: 2500\n")
    check_timeline(resumed, "t-1", script, start=None, first=2)


@pytest.mark.parametrize("line_ending", ["\r\n", "\r"], ids=["crlf", "cr"])
async def test_line_endings(autojump_clock: trio.testing.MockClock, line_ending: str) -> None:
    variant = Task(line_ending=line_ending, heartbeat=0.4, retry=1000)
    plain = Task(heartbeat=0.4, retry=1000)
    async with api({"plain": plain, "variant": variant}) as a:
        start = trio.current_time()
        got = await a.stream_all("plain", "variant")
    check_clean_end(got["variant"])
    check_timeline(got["variant"], "variant", variant, start=start)
    raw = got["variant"].raw
    assert raw.count(line_ending.encode()) == got["plain"].raw.count(b"\n")
    if line_ending == "\r":
        assert b"\n" not in raw
    else:
        assert raw.count(b"\n") == raw.count(b"\r\n") == raw.count(b"\r")
    assert without_task_id(got["variant"]) == without_task_id(got["plain"])  # same parse
    assert got["variant"].comments == got["plain"].comments
    assert got["variant"].retry == got["plain"].retry == 1000


async def test_multiline_data(autojump_clock: trio.testing.MockClock) -> None:
    variant = Task(multiline_data=True)
    async with api({"plain": Task(), "variant": variant}) as a:
        start = trio.current_time()
        got = await a.stream_all("plain", "variant")
    check_clean_end(got["variant"])
    check_timeline(got["variant"], "variant", variant, start=start)
    events = got["variant"].events
    assert all("\n" in event.data for event in events)  # several data: lines each
    assert got["variant"].raw.count(b"\ndata:") > 2 * len(events)
    assert without_task_id(got["variant"]) == without_task_id(got["plain"])
    plain_decoded = [decode_task_event(e) for e in got["plain"].events]
    for event, twin in zip(events, plain_decoded, strict=True):
        decoded = decode_task_event(event)
        assert type(decoded) is type(twin)
        assert getattr(decoded, "raw", None) == {
            **getattr(twin, "raw", {}),
            "task_id": "variant",
        }


async def test_replay_after_resume(autojump_clock: trio.testing.MockClock) -> None:
    script = Task(replay=2, faults=[Fault("drop_between", after=4)])
    async with api({"t-1": script}) as a:
        first = await a.stream("t-1")
        resumed = await a.stream("t-1", last_event_id=first.last_event_id)
    assert first.ids == ["1", "2", "3", "4"]  # a fresh stream replays nothing
    check_clean_end(resumed)
    assert resumed.ids[:2] == ["3", "4"]  # ids the client already had
    assert resumed.events[:2] == first.events[2:]  # the same events, byte for byte
    check_timeline(resumed, "t-1", script, start=None, first=3)


async def test_trickle(autojump_clock: trio.testing.MockClock) -> None:
    script = Task(steps=SHORT, trickle=True, retry=500)
    async with api({"t-1": script}) as a:
        start = trio.current_time()
        received = await a.stream("t-1")
    check_clean_end(received)
    check_timeline(received, "t-1", script, start=start)
    assert received.retry == 500
    assert len(received.chunks) > 100
    assert {len(chunk) for chunk in received.chunks} == {1}


# -- the round trip ------------------------------------------------------------------


@pytest.mark.parametrize(
    "script",
    [Task(), Task(multiline_data=True, retry=1500, heartbeat=0.2), ERRORS_AND_FAILS],
    ids=["plain", "multiline_retry_heartbeat", "errors_and_fails"],
)
async def test_events_on_the_wire_are_encode_event_output(
    autojump_clock: trio.testing.MockClock, script: Task
) -> None:
    async with api({"t-1": script}) as a:
        received = await a.stream("t-1")
    check_clean_end(received)
    check_timeline(received, "t-1", script, start=None)
    head = b"" if script.retry is None else encode_event(None, retry=script.retry)
    assert received.raw == head + b"".join(map(encode, received.items))


# -- the server's life ---------------------------------------------------------------


async def test_serve_starts_and_stops_cleanly(autojump_clock: trio.testing.MockClock) -> None:
    threads = set(threading.enumerate())
    async with serve() as server:
        match = re.fullmatch(r"https://127\.0\.0\.1:(\d+)/api/v1/r", server.base_url)
        assert match is not None, server.base_url
        port = int(match.group(1))
        ca_path = server.ca_path
        with open(ca_path, encoding="ascii") as pem:
            assert pem.read().startswith("-----BEGIN CERTIFICATE-----")
        async with client_for(server) as client:
            response = await client.get(server.base_url + "/tasks")
        assert response.status_code == 200
        assert set(threading.enumerate()) == threads  # no thread of its own
    assert not os.path.exists(ca_path)
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", port)
    assert set(threading.enumerate()) == threads


async def test_leaving_serve_closes_open_streams(autojump_clock: trio.testing.MockClock) -> None:
    received = Received()
    stalled = {"t-1": Task(faults=[Fault("stall", after=1)])}
    async with trio.open_nursery() as nursery, serve(stalled) as server:
        client = client_for(server)
        nursery.start_soon(partial(Api(server, client).stream, "t-1", into=received))
        await trio.sleep(1)
        assert received.ids == ["1"]
        assert math.isnan(received.ended_at)  # still waiting on the stalled stream
        left = trio.current_time()
    await client.aclose()
    assert received.ended_at == left  # the stream ended when the server did
    assert isinstance(received.cut, httpx.RemoteProtocolError)
    assert not received.stalled


async def test_trust_from_the_ca_file(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve() as server:
        context = ssl.create_default_context(cafile=server.ca_path)
        async with client_for(server, verify=context) as client:
            by_context = await client.get(server.base_url + "/tasks")
        monkeypatch.setenv("SSL_CERT_FILE", server.ca_path)
        auth = {"Authorization": f"Bearer {server.token}"}
        async with httpx.AsyncClient(headers=auth, timeout=TIMEOUT) as client:  # env trust
            by_env = await client.get(server.base_url + "/tasks")
    assert by_context.status_code == 200
    assert by_env.status_code == 200


async def test_a_client_that_does_not_trust_it_fails_and_it_survives(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve() as server:
        async with client_for(server, verify=ssl.create_default_context()) as stranger:
            with pytest.raises(httpx.ConnectError):
                await stranger.get(server.base_url + "/tasks")
        async with client_for(server) as client:
            response = await client.get(server.base_url + "/tasks")
    assert response.status_code == 200


async def test_requests_are_recorded(autojump_clock: trio.testing.MockClock) -> None:
    async with api() as a:
        await trio.sleep(2)
        await a.json("GET", "/tasks", params={"status": "running"})
        await a.run_workflow("/workflows/slug/my-flow@3/run")
        await a.stream("t-1", last_event_id="5")
        recorded = list(a.server.requests)
    assert [(r.method, r.path) for r in recorded] == [
        ("GET", "/api/v1/r/tasks"),  # the query is not part of the path
        ("POST", "/api/v1/r/workflows/slug/my-flow@3/run"),
        ("GET", "/api/v1/r/tasks/t-1/events"),
    ]
    assert all(r.headers["authorization"] == f"Bearer {a.server.token}" for r in recorded)
    assert recorded[2].headers["last-event-id"] == "5"
    assert json.loads(recorded[1].body) == {"parameters": {"seed": 7}}
    assert recorded[0].body == b""
    assert [r.time for r in recorded] == [2, 2, 2]


@pytest.mark.parametrize(
    "last_event_id",
    [b"abc", b"-1", b"\xb2", b"9" * 5000],  # \xb2 is a superscript two in latin-1
    ids=["letters", "negative", "superscript", "too_many_digits"],
)
async def test_a_last_event_id_it_cannot_read_starts_over(
    autojump_clock: trio.testing.MockClock, last_event_id: bytes
) -> None:
    async with api() as a:
        url = a.url("/tasks/t-1/events")
        headers = [(b"Last-Event-ID", last_event_id)]
        async with a.client.stream("GET", url, headers=headers) as response:
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
    parser = EventStreamParser()
    events = parser.feed(raw)
    assert not parser.close()
    assert [e.id for e in events] == [str(n) for n in range(1, len(Task().timeline) + 1)]


@pytest.mark.parametrize("port", [-1, 65536, 99999])
async def test_a_port_out_of_range_is_refused_not_wrapped(port: int) -> None:
    with pytest.raises(sseproto.ConfigurationError, match="port"):
        async with serve(port=port):
            pass
