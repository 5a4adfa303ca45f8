"""Fidelity to the API's documentation, and options where the real API may differ.

Two halves:

* the decoders read the documented payloads and their known variants: a ``failed``
  event whose message is in ``task_error`` or ``message``, a ``status`` event that
  carries ``task_status``, a progress sent as a percentage, and the snapshot's
  ``agent_labels``, ``gateway_id``, ``dispatch_target``, ``target_pool``;
* the test server plays the API as documented (the list's ``page_meta.total_count``,
  the 200 of an unfinished task's result, cancel's ``true``), the options where the
  real API may differ (``result_conflict``, ``Task(ids=False)``, ``unknown="404"``),
  and the storage behind presigned links: uploads (exact headers, 403, 412, 400, 413)
  and downloads (whole, ``Range``, 416, expiry, fresh links). Spoken to over plain
  HTTP by httpx (under trio on ``MockClock``, or blocking against
  ``serve_in_thread``), and by sseproto's own ``Client``.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from contextlib import asynccontextmanager
from dataclasses import fields
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import trio
import trio.testing

import sseproto
from sseproto import (
    Client,
    ConfigurationError,
    EventStreamParser,
    Failed,
    Progress,
    ServerSentEvent,
    StatusChanged,
    TaskEventError,
    TaskSnapshot,
    TaskStatus,
    decode_task_event,
    decode_task_result,
    decode_task_snapshot,
    parse_timestamp,
)
from sseproto.testing import (
    DEFAULT_OUTPUT_SIZE,
    Task,
    TestServer,
    completed,
    output_bytes,
    progress,
    serve,
    serve_in_thread,
    status,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

TASK = "8f14e45f-ceea-467a-9575-8c9d3b1a2f30"
TS = "2026-11-28T12:00:05Z"
UTC = timezone.utc
#: Mock seconds: longer than any timeline here, shorter than "forever".
TIMEOUT = httpx.Timeout(60.0)


def event(kind: str, payload: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(event=kind, data=json.dumps(payload), id="7")


# == decoders ==========================================================================

# -- failed: the message in error, task_error or message ------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"error": "CUDA out of memory"}, "CUDA out of memory"),
        ({"task_error": "CUDA out of memory"}, "CUDA out of memory"),
        ({"message": "CUDA out of memory"}, "CUDA out of memory"),
        ({"error": "first", "task_error": "second", "message": "third"}, "first"),
        ({"task_error": "second", "message": "third"}, "second"),
        ({"error": "", "task_error": "second"}, "second"),  # "" says nothing
        ({"error": None, "task_error": "", "message": "third"}, "third"),
        ({"task_error": {"code": 137}}, '{"code": 137}'),  # not a str: its JSON, as before
        ({"error": "", "task_error": None, "message": ""}, ""),
        ({}, ""),
    ],
    ids=repr,
)
def test_failed_message_from_error_then_task_error_then_message(
    payload: dict[str, Any], expected: str
) -> None:
    data = {"task_id": TASK, "status": "failed", **payload}
    ev = event("failed", data)
    decoded = decode_task_event(ev)
    assert decoded == Failed(task_id=TASK, error=expected)
    assert isinstance(decoded, Failed)
    assert decoded.raw == data
    assert decoded.sse is ev


# -- status: task_status instead of status --------------------------------------------


def test_status_event_with_task_status() -> None:
    data = {"task_id": TASK, "task_status": "running", "timestamp": TS}
    decoded = decode_task_event(event("status", data))
    assert isinstance(decoded, StatusChanged)
    assert decoded.status is TaskStatus.RUNNING
    assert decoded.timestamp == datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC)
    assert decoded.raw == data


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"status": "queued", "task_status": "running"}, "queued"),  # documented wins
        ({"status": "", "task_status": "running"}, "running"),
        ({"status": None, "task_status": "running"}, "running"),
        ({"status": 5, "task_status": "Running"}, "running"),
        ({"task_status": "provisioning"}, "provisioning"),  # unknown, kept, not terminal
    ],
    ids=repr,
)
def test_status_event_falls_back_to_task_status(payload: dict[str, Any], expected: str) -> None:
    decoded = decode_task_event(event("status", {"task_id": TASK, **payload}))
    assert isinstance(decoded, StatusChanged)
    assert decoded.status == expected
    assert not decoded.is_terminal


@pytest.mark.parametrize(
    "payload",
    [{}, {"task_status": ""}, {"task_status": 3}, {"status": None, "task_status": None}],
    ids=repr,
)
def test_status_event_without_either_names_status(payload: dict[str, Any]) -> None:
    ev = event("status", {"task_id": TASK, **payload})
    with pytest.raises(TaskEventError, match="status") as info:
        decode_task_event(ev)
    assert info.value.field == "status"
    assert info.value.event is ev


# -- progress: a percentage ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (35, 0.35),  # a percentage
        (35.5, 0.355),
        (50, 0.5),
        (99.9, 0.999),
        (100, 1.0),
        (100.0, 1.0),
        (150, 1.0),  # past 100 %: done
        (1e300, 1.0),
        (2, 0.02),
        (0.35, 0.35),  # the documented scale, unchanged
        (0, 0.0),
        (1, 1.0),
        (1.0, 1.0),
        (1.0000000000000002, 1.0),  # a rounding error past 1.0 is still done
        (-0.5, 0.0),
        (-35, 0.0),
    ],
    ids=repr,
)
def test_progress_above_one_is_a_percentage(value: float, expected: float) -> None:
    data = {"task_id": TASK, "progress": value, "step_current": 7, "step_total": 20}
    decoded = decode_task_event(event("progress", data))
    assert isinstance(decoded, Progress)
    assert decoded.progress == pytest.approx(expected)
    assert type(decoded.progress) is float
    assert 0.0 <= decoded.progress <= 1.0
    assert decoded.raw["progress"] == value  # what was sent is kept


@pytest.mark.parametrize(
    "value", ["NaN", "Infinity", "-Infinity", "true", "false", '"35"', "null", "1e999"]
)
def test_progress_guards_still_refuse(value: str) -> None:
    ev = ServerSentEvent(event="progress", data=f'{{"task_id": "{TASK}", "progress": {value}}}')
    with pytest.raises(TaskEventError, match="progress") as info:
        decode_task_event(ev)
    assert info.value.field == "progress"


# -- snapshot: the deployment fields ---------------------------------------------------

SNAPSHOT: dict[str, Any] = {
    "id": TASK,
    "workflow_id": "wf-2b7e1516",
    "task_status": "running",
    "task_error": "",
    "created_at": "2026-11-28T11:59:00Z",
    "started_at": "2026-11-28T11:59:30Z",
    "completed_at": None,
    "retry_count": 0,
    "agent_id": "agent-eu-7",
    "gpu_type": "A100-80G",
    "tool_type": "comfyui",
    "agent_labels": ["gpu:a100", "region:eu-west"],
    "gateway_id": "gw-eu-1",
    "dispatch_target": "cloud",
    "target_pool": "pool-a100",
}


def test_snapshot_keeps_the_deployment_fields() -> None:
    snap = decode_task_snapshot(SNAPSHOT)
    assert snap.agent_labels == ["gpu:a100", "region:eu-west"]
    assert (snap.gateway_id, snap.dispatch_target, snap.target_pool) == (
        "gw-eu-1",
        "cloud",
        "pool-a100",
    )
    assert snap.tool_type == "comfyui"
    assert snap.status is TaskStatus.RUNNING
    assert snap.raw == SNAPSHOT
    assert decode_task_snapshot(json.dumps(SNAPSHOT)) == snap


def test_snapshot_agent_labels_as_an_object() -> None:
    labels = {"gpu": "a100", "region": "eu-west", "spot": True}
    snap = decode_task_snapshot({**SNAPSHOT, "agent_labels": labels})
    assert snap.agent_labels == labels


def test_snapshot_deployment_fields_absent_are_none() -> None:
    snap = decode_task_snapshot({"id": TASK, "task_status": "queued"})
    assert (snap.agent_labels, snap.gateway_id, snap.dispatch_target, snap.target_pool) == (
        None,
    ) * 4
    assert snap.tool_type is None


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("agent_labels", "gpu:a100", None),
        ("agent_labels", 3, None),
        ("agent_labels", None, None),
        ("agent_labels", [], []),
        ("gateway_id", 42, "42"),  # an id sent as a number, as the other ids
        ("gateway_id", True, None),
        ("gateway_id", ["gw"], None),
        ("dispatch_target", {"kind": "cloud"}, None),
        ("dispatch_target", 1.5, None),
        ("target_pool", None, None),
        ("target_pool", False, None),
        ("tool_type", ["comfyui"], None),
    ],
    ids=repr,
)
def test_snapshot_deployment_fields_of_wrong_type(key: str, value: Any, expected: Any) -> None:
    snap = decode_task_snapshot({**SNAPSHOT, key: value})
    assert getattr(snap, key) == expected
    assert snap.raw[key] == value


def test_snapshot_fields_keep_their_order_new_ones_last() -> None:
    names = [f.name for f in fields(TaskSnapshot)]
    assert names[:12] == [
        "id",
        "status",
        "error",
        "workflow_id",
        "created_at",
        "started_at",
        "completed_at",
        "retry_count",
        "agent_id",
        "gpu_type",
        "tool_type",
        "raw",
    ]
    assert names[12:] == ["agent_labels", "gateway_id", "dispatch_target", "target_pool"]
    # Positional construction keeps its meaning; the new fields default to None.
    snap = TaskSnapshot("t", TaskStatus.RUNNING, None, "wf", None, None, None, 0, "a", "g", "c")
    assert (snap.tool_type, snap.agent_labels, snap.target_pool) == ("c", None, None)


# == the test server ===================================================================


def stamp(value: object) -> datetime:
    parsed = parse_timestamp(value)
    assert parsed is not None, value
    return parsed


class Api:
    """A running server, and an httpx client that trusts it (with its token)."""

    def __init__(
        self, server: TestServer, client: httpx.AsyncClient, bare: httpx.AsyncClient
    ) -> None:
        self.server = server
        self.client = client
        self.bare = bare  # no token

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, self.server.base_url + path, **kwargs)

    async def json(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = await self.call(method, path, **kwargs)
        assert response.status_code == expect, response.text
        assert response.headers["content-type"] == "application/json"
        return response.json()

    async def storage(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A request to a presigned link: no token."""
        return await self.bare.request(method, url, **kwargs)

    async def presign(
        self, file_name: str = "scene.ply", body: bytes = b"", content_type: str = "model/ply"
    ) -> dict[str, Any]:
        payload = {"file_name": file_name, "file_size": len(body), "content_type": content_type}
        answer: dict[str, Any] = await self.json("POST", "/files/presign", json=payload)
        return answer


@asynccontextmanager
async def api(tasks: Mapping[str, Task] | None = None, **options: Any) -> AsyncIterator[Api]:
    async with serve(tasks, **options) as server:
        headers = {"Authorization": f"Bearer {server.token}"}
        mine = httpx.AsyncClient(
            verify=server.ssl_context, headers=headers, timeout=TIMEOUT, trust_env=False
        )
        bare = httpx.AsyncClient(verify=server.ssl_context, timeout=TIMEOUT, trust_env=False)
        async with mine, bare:
            yield Api(server, mine, bare)


def xml_error(response: httpx.Response) -> dict[str, str]:
    """An S3-like XML error body, as {element: text}."""
    assert response.headers["content-type"] == "application/xml"
    root = ET.fromstring(response.content)
    assert root.tag == "Error"
    return {child.tag: child.text or "" for child in root}


# -- the task list ---------------------------------------------------------------------


async def test_list_page_meta_is_total_count(autojump_clock: trio.testing.MockClock) -> None:
    async with api() as a:
        empty = await a.json("GET", "/tasks")
        for task_id in ("a", "b", "c"):
            await a.json("GET", f"/tasks/{task_id}")
        page = await a.json("GET", "/tasks", params={"per_page": 2, "current_page": 2})
    assert empty["page_meta"] == {"current_page": 1, "per_page": 20, "total_count": 0}
    assert page["page_meta"] == {"current_page": 2, "per_page": 2, "total_count": 3}
    assert [t["id"] for t in page["task_list"]] == ["c"]


# -- the result of an unfinished task ---------------------------------------------------


async def test_result_of_an_unfinished_task_is_200_with_null_outputs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with api() as a:
        early = await a.json("GET", "/tasks/t-1/result")
        await trio.sleep(60)
        done = await a.json("GET", "/tasks/t-1/result")
    assert early == {
        "id": "t-1",
        "task_output": None,
        "download_url": None,
        "download_urls": None,
        "expires_at": None,
        "task_error": "",
        "completed_at": None,
    }
    decoded = decode_task_result(early)
    assert (decoded.output, decoded.error, decoded.artifact_urls()) == (None, None, [])
    assert done["task_output"] is not None
    assert done["download_urls"]


async def test_result_of_an_unfinished_task_is_409_when_asked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with api(result_conflict=True) as a:
        early = await a.json("GET", "/tasks/t-1/result", 409)
        await trio.sleep(60)
        done = await a.json("GET", "/tasks/t-1/result")
    assert early == {"error": "the task has not finished"}
    assert done["task_output"] is not None


async def test_client_reads_the_documented_answers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """sseproto's own client, against the documented answers: a 200 result of an
    unfinished task, cancel's ``true``, the list's ``total_count``."""
    async with (
        serve() as server,
        Client(
            api_key=server.token, base_url=server.base_url, ssl_context=server.ssl_context
        ) as client,
    ):
        early = await client.get_result("t-1")
        cancelled = await client.cancel_task("t-1")  # type: ignore[func-returns-value]
        tasks, meta = await client.list_tasks()
    assert early.output is None
    assert early.artifact_urls() == []
    assert cancelled is None
    assert [t.id for t in tasks] == ["t-1"]
    assert meta["total_count"] == 1


# -- cancel ------------------------------------------------------------------------------


async def test_cancel_answers_true(autojump_clock: trio.testing.MockClock) -> None:
    async with api() as a:
        await a.json("GET", "/tasks/t-1")
        running = await a.call("POST", "/tasks/t-1/cancel")
        await trio.sleep(60)
        finished = await a.call("POST", "/tasks/t-1/cancel")  # a no-op, the same answer
        snapshot = await a.json("GET", "/tasks/t-1")
    for response in (running, finished):
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.content == b"true"
        assert response.json() is True
    assert snapshot["task_status"] == "cancelled"


# -- a stream without ids ------------------------------------------------------------------


async def read_stream(a: Api, task_id: str, headers: Mapping[str, str] | None = None) -> bytes:
    url = f"{a.server.base_url}/tasks/{task_id}/events"
    async with a.client.stream("GET", url, headers=dict(headers or {})) as response:
        assert response.status_code == 200
        return b"".join([chunk async for chunk in response.aiter_raw()])


async def test_ids_false_sends_no_id_lines(autojump_clock: trio.testing.MockClock) -> None:
    quick = [status("pending"), progress(0.5, delay=1.0), completed({"k": 1}, delay=1.0)]
    async with api({"t-1": Task(steps=quick, ids=False), "t-2": Task(steps=quick)}) as a:
        plain = await read_stream(a, "t-1")
        again = await read_stream(a, "t-1", {"Last-Event-ID": "2"})  # nothing to resume
        with_ids = await read_stream(a, "t-2")
    parser = EventStreamParser()
    events = parser.feed(plain)
    assert [e.event for e in events] == ["status", "progress", "completed"]
    assert all(e.id == "" for e in events)
    assert not any(line.startswith(b"id") for line in plain.splitlines())
    assert again == plain  # the whole timeline again
    assert b"\nid: 3\n" in b"\n" + with_ids  # the default keeps its ids
    assert [type(decode_task_event(e)).__name__ for e in events] == [
        "StatusChanged",
        "Progress",
        "Completed",
    ]


# -- unknown task ids ---------------------------------------------------------------------

TASK_ENDPOINTS = [
    ("GET", "/tasks/{}"),
    ("GET", "/tasks/{}/events"),
    ("GET", "/tasks/{}/result"),
    ("POST", "/tasks/{}/cancel"),
]


async def test_unknown_ids_are_404_when_asked(autojump_clock: trio.testing.MockClock) -> None:
    async with api({"known": Task()}, unknown="404") as a:
        for method, path in TASK_ENDPOINTS:
            answer = await a.json(method, path.format("nope"), 404)
            assert answer == {"error": "task not found"}
        await a.json("GET", "/tasks/known")
        run = await a.json("POST", "/workflows/wf-1/run", 202, json={"parameters": {}})
        started = await a.json("GET", f"/tasks/{run['task_id']}")
        listing = await a.json("GET", "/tasks")
        for method, path in TASK_ENDPOINTS:  # a known one answers on every endpoint
            response = await a.call(method, path.format("known"))
            assert response.status_code == 200, (method, path)
    assert started["task_status"] == "pending"
    assert sorted(t["id"] for t in listing["task_list"]) == sorted(["known", run["task_id"]])


async def test_unknown_ids_run_a_timeline_by_default(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with api() as a:
        snapshot = await a.json("GET", "/tasks/anything")
    assert snapshot["task_status"] == "pending"


def test_unknown_404_through_serve_in_thread() -> None:
    with (
        serve_in_thread({"known": Task()}, unknown="404") as srv,
        httpx.Client(
            verify=srv.ssl_context,
            headers={"Authorization": f"Bearer {srv.token}"},
            trust_env=False,
        ) as client,
    ):
        missing = client.get(srv.base_url + "/tasks/nope")
        known = client.get(srv.base_url + "/tasks/known")
    assert missing.status_code == 404
    assert known.status_code == 200
    assert srv.unknown == "404"


@pytest.mark.parametrize(
    "options",
    [
        {"unknown": "500"},
        {"unknown": None},
        {"link_seconds": 0},
        {"link_seconds": -1.0},
        {"link_seconds": math.inf},
        {"link_seconds": math.nan},
        {"link_seconds": True},
        {"max_upload_bytes": -1},
        {"max_upload_bytes": 1.5},
    ],
    ids=repr,
)
async def test_serve_refuses_options_out_of_range(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match=next(iter(options))):
        async with serve(**options):
            pass  # pragma: no cover


# == storage: uploads ====================================================================

BODY = b"ply\nformat binary_little_endian 1.0\n" + bytes(range(256)) * 4


async def test_presign_then_upload(autojump_clock: trio.testing.MockClock) -> None:
    async with api() as a:
        answer = await a.presign("scene.ply", BODY, "model/ply")
        url, headers = answer["upload_url"], answer["upload_headers"]
        response = await a.storage("PUT", url, content=BODY, headers=headers)
        origin = a.server.origin
        uploads = dict(a.server.uploads)
        recorded = a.server.requests[-1]
    assert set(answer) == {"file_key", "upload_url", "upload_headers"}
    assert answer["file_key"].endswith("/scene.ply")
    assert url.startswith(origin + "/_storage/upload/")
    assert "sig=" in urlsplit(url).query
    assert headers["Content-Type"] == "model/ply"
    assert len(headers) >= 3  # a signature header among them
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    assert response.status_code == 200
    assert response.headers["etag"].startswith('"')
    assert uploads == {answer["file_key"]: BODY}
    assert recorded.method == "PUT"
    assert recorded.path == urlsplit(url).path  # recorded without its query
    assert "authorization" not in recorded.headers  # no token: the link is the credential


async def test_presign_needs_the_token(autojump_clock: trio.testing.MockClock) -> None:
    async with api() as a:
        payload = {"file_name": "a.bin", "file_size": 1, "content_type": "x/y"}
        response = await a.bare.post(a.server.base_url + "/files/presign", json=payload)
    assert response.status_code == 401


@pytest.mark.parametrize(
    "payload",
    [
        {"file_size": 3, "content_type": "x/y"},
        {"file_name": "", "file_size": 3, "content_type": "x/y"},
        {"file_name": 7, "file_size": 3, "content_type": "x/y"},
        {"file_name": "a", "content_type": "x/y"},
        {"file_name": "a", "file_size": -1, "content_type": "x/y"},
        {"file_name": "a", "file_size": "3", "content_type": "x/y"},
        {"file_name": "a", "file_size": True, "content_type": "x/y"},
        {"file_name": "a", "file_size": 3, "content_type": "x/y\r\nX-Evil: 1"},
        {"file_name": "a", "file_size": 3, "content_type": 5},
        [1, 2],
    ],
    ids=repr,
)
async def test_presign_refuses_a_bad_body(
    autojump_clock: trio.testing.MockClock, payload: Any
) -> None:
    async with api() as a:
        answer = await a.json("POST", "/files/presign", 400, json=payload)
    assert "error" in answer


async def test_upload_without_a_content_type_defaults_to_octet_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with api() as a:
        payload = {"file_name": "blob", "file_size": 3}
        answer = await a.json("POST", "/files/presign", json=payload)
        headers = answer["upload_headers"]
        response = await a.storage("PUT", answer["upload_url"], content=b"abc", headers=headers)
    assert headers["Content-Type"] == "application/octet-stream"
    assert response.status_code == 200


async def test_upload_refuses_each_missing_or_changed_header(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with api() as a:
        answer = await a.presign(body=BODY)
        url, headers = answer["upload_url"], answer["upload_headers"]
        refusals = []
        for name in headers:
            missing = {k: v for k, v in headers.items() if k != name}
            changed = {**missing, name: headers[name] + "x"}
            for sent in (missing, changed):
                response = await a.storage("PUT", url, content=BODY, headers=sent)
                refusals.append((name, response.status_code, xml_error(response)))
        lower = {k.lower(): v for k, v in headers.items()}  # names are case-insensitive
        accepted = await a.storage("PUT", url, content=BODY, headers=lower)
        uploads = dict(a.server.uploads)
    assert len(refusals) == 2 * len(headers)
    for name, code, error in refusals:
        assert code == 403
        assert error["Code"] == "AccessDenied"
        assert error["HeaderName"] == name
        assert name in error["Message"]
    assert accepted.status_code == 200
    assert uploads == {answer["file_key"]: BODY}  # nothing stored by a refusal


async def test_upload_again_is_412(autojump_clock: trio.testing.MockClock) -> None:
    async with api() as a:
        answer = await a.presign(body=BODY)
        url, headers = answer["upload_url"], answer["upload_headers"]
        first = await a.storage("PUT", url, content=BODY, headers=headers)
        second = await a.storage("PUT", url, content=BODY[::-1], headers=headers)
        other = await a.presign(body=BODY)  # the same name again: another object
        third = await a.storage(
            "PUT", other["upload_url"], content=BODY, headers=other["upload_headers"]
        )
        uploads = dict(a.server.uploads)
    assert first.status_code == 200
    assert second.status_code == 412
    assert xml_error(second)["Code"] == "PreconditionFailed"
    assert third.status_code == 200
    assert other["file_key"] != answer["file_key"]
    assert uploads == {answer["file_key"]: BODY, other["file_key"]: BODY}  # first one kept


@pytest.mark.parametrize("body", [BODY[:-1], BODY + b"!", b""], ids=["short", "long", "empty"])
async def test_upload_of_another_length_is_400(
    autojump_clock: trio.testing.MockClock, body: bytes
) -> None:
    async with api() as a:
        answer = await a.presign(body=BODY)
        url, headers = answer["upload_url"], answer["upload_headers"]
        wrong = await a.storage("PUT", url, content=body, headers=headers)
        right = await a.storage("PUT", url, content=BODY, headers=headers)  # still open
    assert wrong.status_code == 400
    assert str(len(BODY)) in xml_error(wrong)["Message"]
    assert right.status_code == 200


async def test_upload_past_the_limit_is_413(autojump_clock: trio.testing.MockClock) -> None:
    async with api(max_upload_bytes=1000) as a:
        too_big = {"file_name": "big.bin", "file_size": 1001, "content_type": "x/y"}
        at_presign = await a.json("POST", "/files/presign", 413, json=too_big)
        answer = await a.presign(body=b"x" * 1000)
        url, headers = answer["upload_url"], answer["upload_headers"]
        over = await a.storage("PUT", url, content=b"x" * 5000, headers=headers)
        exact = await a.storage("PUT", url, content=b"x" * 1000, headers=headers)  # same link
        uploads = dict(a.server.uploads)
    assert "1000" in at_presign["error"]
    assert over.status_code == 413
    assert xml_error(over)["Code"] == "EntityTooLarge"
    assert exact.status_code == 200
    assert uploads == {answer["file_key"]: b"x" * 1000}


async def test_upload_link_expires(autojump_clock: trio.testing.MockClock) -> None:
    async with api(link_seconds=60) as a:
        answer = await a.presign(body=BODY)
        url, headers = answer["upload_url"], answer["upload_headers"]
        await trio.sleep(62)
        late = await a.storage("PUT", url, content=BODY, headers=headers)
    assert late.status_code == 403
    assert xml_error(late)["Message"] == "Request has expired"


@pytest.mark.parametrize("what", ["sig", "expires", "no_query", "other_key"])
async def test_a_tampered_link_is_403(autojump_clock: trio.testing.MockClock, what: str) -> None:
    async with api() as a:
        answer = await a.presign(body=BODY)
        url, headers = answer["upload_url"], answer["upload_headers"]
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if what == "sig":
            query["sig"] = ("0" if query["sig"][0] != "0" else "1") + query["sig"][1:]
        elif what == "expires":
            query["expires"] = str(int(query["expires"]) + 3600)
        elif what == "no_query":
            query = {}
        tampered = parts._replace(query="&".join(f"{k}={v}" for k, v in query.items()))
        if what == "other_key":
            tampered = tampered._replace(path=parts.path.replace("scene", "other"))
        response = await a.storage("PUT", tampered.geturl(), content=BODY, headers=headers)
        uploads = dict(a.server.uploads)
    assert response.status_code == 403
    assert xml_error(response)["Code"] == "AccessDenied"
    assert uploads == {}


async def test_an_upload_link_takes_only_put(autojump_clock: trio.testing.MockClock) -> None:
    async with api() as a:
        answer = await a.presign(body=BODY)
        response = await a.storage("GET", answer["upload_url"])
    assert response.status_code == 405
    assert response.headers["allow"] == "PUT"


def test_upload_through_serve_in_thread() -> None:
    with serve_in_thread() as srv, httpx.Client(verify=srv.ssl_context, trust_env=False) as c:
        payload = {"file_name": "notes.txt", "file_size": 5, "content_type": "text/plain"}
        auth = {"Authorization": f"Bearer {srv.token}"}
        answer = c.post(srv.base_url + "/files/presign", json=payload, headers=auth).json()
        done = c.put(answer["upload_url"], content=b"hello", headers=answer["upload_headers"])
        uploads = dict(srv.uploads)
    assert done.status_code == 200
    assert uploads == {answer["file_key"]: b"hello"}


# == storage: downloads ===================================================================

PNG = "ComfyUI_00001_.png"
OUTPUTS = {"9.images.0": (PNG, 200_000), "9.images.1": ("ComfyUI_00002_.png", 10)}
CLOUD = Task(steps=[status("running"), completed({"k": 1}, delay=1.0)], outputs=OUTPUTS)


async def finished_result(a: Api, task_id: str = "t-1") -> dict[str, Any]:
    await a.json("GET", f"/tasks/{task_id}")
    await trio.sleep(5)
    answer: dict[str, Any] = await a.json("GET", f"/tasks/{task_id}/result")
    return answer


async def test_download_links_of_a_result(autojump_clock: trio.testing.MockClock) -> None:
    async with api({"t-1": CLOUD}) as a:
        result = await finished_result(a)
        fetched_at = trio.current_time()
        first = await a.storage("GET", result["download_urls"]["9.images.0"])
        second = await a.storage("GET", result["download_urls"]["9.images.1"])
        with_token = await a.client.get(result["download_urls"]["9.images.1"])
        snapshot = await a.json("GET", "/tasks/t-1")
        origin = a.server.origin
    assert result["download_url"] is None
    assert set(result["download_urls"]) == set(OUTPUTS)
    for url in result["download_urls"].values():
        assert url.startswith(origin + "/_storage/download/")
    assert urlsplit(result["download_urls"]["9.images.0"]).path.endswith("/" + PNG)
    assert first.status_code == 200
    assert first.content == output_bytes("t-1", "9.images.0", 200_000)
    assert len(first.content) == 200_000
    assert first.headers["content-length"] == "200000"
    assert first.headers["content-type"] == "image/png"
    assert first.headers["accept-ranges"] == "bytes"
    assert second.content == output_bytes("t-1", "9.images.1", 10)
    assert with_token.content == second.content  # a token does no harm
    assert first.content[:10] != second.content  # each output its own bytes
    # expires_at: link_seconds (an hour) after the fetch, on the server's clock
    created = stamp(snapshot["created_at"])
    offset = (stamp(result["expires_at"]) - created).total_seconds()
    started = fetched_at - 5  # the task started 5 s before the fetch
    assert 3600 <= offset - (fetched_at - started) < 3601
    decoded = decode_task_result(result)
    assert decoded.artifact_urls() == list(result["download_urls"].values())
    assert decoded.expires_at == stamp(result["expires_at"])
    assert decoded.download_url is None


async def test_download_one_link_of_a_local_task(autojump_clock: trio.testing.MockClock) -> None:
    local = Task(steps=[completed({"splat": "scene.ply"})], outputs={"": ("scene.ply", 300)})
    async with api({"t-1": local}) as a:
        result = await finished_result(a)
        got = await a.storage("GET", result["download_url"])
    assert result["download_urls"] is None
    assert got.content == output_bytes("t-1", "", 300)
    assert decode_task_result(result).artifact_urls() == [result["download_url"]]


async def test_derived_outputs_have_the_default_size(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with api() as a:  # the default ComfyUI-like task: one image
        result = await finished_result(a)
        got = await a.storage("GET", result["download_urls"]["9.images.0"])
    assert got.content == output_bytes("t-1", "9.images.0", DEFAULT_OUTPUT_SIZE)


async def test_failed_and_cancelled_results_have_no_links(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with api({"t-1": CLOUD}) as a:
        await a.json("GET", "/tasks/t-1")
        await a.call("POST", "/tasks/t-1/cancel")
        result = await a.json("GET", "/tasks/t-1/result")
    assert (result["download_url"], result["download_urls"], result["expires_at"]) == (
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-", 0, 200_000),
        ("bytes=123456-", 123_456, 200_000),
        ("bytes=199999-", 199_999, 200_000),
        ("bytes=100-199", 100, 200),
        ("bytes=150000-999999", 150_000, 200_000),  # past the end: up to it
        ("bytes=-500", 199_500, 200_000),  # the last 500
        ("bytes=-999999", 0, 200_000),
    ],
)
async def test_download_a_range(
    autojump_clock: trio.testing.MockClock, header: str, start: int, end: int
) -> None:
    async with api({"t-1": CLOUD}) as a:
        url = (await finished_result(a))["download_urls"]["9.images.0"]
        whole = await a.storage("GET", url)
        part = await a.storage("GET", url, headers={"Range": header})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes {start}-{end - 1}/200000"
    assert part.headers["content-length"] == str(end - start)
    assert part.headers["etag"] == whole.headers["etag"]
    assert part.content == whole.content[start:end]


async def test_resume_a_download(autojump_clock: trio.testing.MockClock) -> None:
    """A first part, then the rest with ``Range: bytes=N-`` (and ``If-Range``)."""
    async with api({"t-1": CLOUD}) as a:
        url = (await finished_result(a))["download_urls"]["9.images.0"]
        head = await a.storage("GET", url, headers={"Range": "bytes=0-69999"})  # cut short
        etag = head.headers["etag"]
        headers = {"Range": f"bytes={len(head.content)}-", "If-Range": etag}
        rest = await a.storage("GET", url, headers=headers)
        stale = await a.storage("GET", url, headers={**headers, "If-Range": '"other"'})
    assert (head.status_code, len(head.content)) == (206, 70_000)
    assert rest.status_code == 206
    assert rest.headers["content-range"] == "bytes 70000-199999/200000"
    assert head.content + rest.content == output_bytes("t-1", "9.images.0", 200_000)
    assert stale.status_code == 200  # If-Range does not match: the whole file
    assert len(stale.content) == 200_000


@pytest.mark.parametrize("header", ["bytes=200000-", "bytes=999999-", "bytes=-0"])
async def test_download_a_range_out_of_the_file_is_416(
    autojump_clock: trio.testing.MockClock, header: str
) -> None:
    async with api({"t-1": CLOUD}) as a:
        url = (await finished_result(a))["download_urls"]["9.images.0"]
        response = await a.storage("GET", url, headers={"Range": header})
        again = await a.storage("GET", url)  # the connection is still good
    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */200000"
    assert xml_error(response)["Code"] == "InvalidRange"
    assert again.status_code == 200


@pytest.mark.parametrize("header", ["bytes=5-2", "items=0-", "bytes=0-1,5-6", "bytes=x-"])
async def test_a_range_it_does_not_read_sends_the_whole_file(
    autojump_clock: trio.testing.MockClock, header: str
) -> None:
    async with api({"t-1": CLOUD}) as a:
        url = (await finished_result(a))["download_urls"]["9.images.0"]
        response = await a.storage("GET", url, headers={"Range": header})
    assert response.status_code == 200
    assert len(response.content) == 200_000


async def test_head_of_a_download(autojump_clock: trio.testing.MockClock) -> None:
    async with api({"t-1": CLOUD}) as a:
        url = (await finished_result(a))["download_urls"]["9.images.0"]
        head = await a.storage("HEAD", url)
        put = await a.storage("PUT", url, content=b"x")
    assert head.status_code == 200
    assert head.headers["content-length"] == "200000"
    assert head.content == b""
    assert put.status_code == 405


async def test_download_links_expire_and_fresh_ones_come_with_the_result(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with api({"t-1": CLOUD}, link_seconds=60) as a:
        first = await finished_result(a)
        fetched = trio.current_time()
        old = first["download_urls"]["9.images.1"]
        await trio.sleep_until(fetched + 59.5)
        before = await a.storage("GET", old)
        second = await a.json("GET", "/tasks/t-1/result")  # 59.5 s later
        new = second["download_urls"]["9.images.1"]
        await trio.sleep_until(fetched + 61.01)
        after = await a.storage("GET", old)
        fresh = await a.storage("GET", new)
        await trio.sleep_until(fetched + 59.5 + 61.01)
        too_late = await a.storage("GET", new)
    assert before.status_code == 200
    assert after.status_code == 403
    error = xml_error(after)
    assert (error["Code"], error["Message"]) == ("AccessDenied", "Request has expired")
    assert new != old
    assert stamp(second["expires_at"]) - stamp(first["expires_at"]) >= timedelta(seconds=59)
    assert fresh.status_code == 200
    assert fresh.content == output_bytes("t-1", "9.images.1", 10)
    assert too_late.status_code == 403


async def test_storage_requests_are_recorded(autojump_clock: trio.testing.MockClock) -> None:
    async with api({"t-1": CLOUD}) as a:
        url = (await finished_result(a))["download_urls"]["9.images.1"]
        await a.storage("GET", url, headers={"Range": "bytes=2-"})
        recorded = a.server.requests
    assert [(r.method, r.path.split("/")[1]) for r in recorded] == [
        ("GET", "api"),
        ("GET", "api"),
        ("GET", "_storage"),
    ]
    assert recorded[-1].path == urlsplit(url).path
    assert recorded[-1].headers["range"] == "bytes=2-"


@pytest.mark.parametrize(
    "outputs",
    [
        {"a": ("", 3)},
        {"a": ("x.png", -1)},
        {"a": ("x.png", True)},
        {"a": ("x.png", 1.5)},
        {"a": ["x.png", 3]},
        {"a": ("x.png",)},
        {1: ("x.png", 3)},
    ],
    ids=repr,
)
def test_task_outputs_are_checked(outputs: Any) -> None:
    with pytest.raises(ValueError, match="output"):
        Task(outputs=outputs)


def test_output_bytes_are_deterministic() -> None:
    one = output_bytes("t-1", "9.images.0", 1000)
    assert one == output_bytes("t-1", "9.images.0", 1000)
    assert output_bytes("t-1", "9.images.0", 10) == one[:10]  # a prefix of any longer
    assert one != output_bytes("t-2", "9.images.0", 1000)
    assert one != output_bytes("t-1", "9.images.1", 1000)
    assert output_bytes("t-1", "", 0) == b""


def test_public_names() -> None:
    for name in ("output_bytes", "DEFAULT_OUTPUT_SIZE", "UnknownTasks"):
        assert name in sseproto.testing.__all__
