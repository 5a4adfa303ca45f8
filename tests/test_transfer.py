"""Client.download and Client.upload (trio) against the test server's presigned
storage, and the pure rules behind them (``_transfer``): file names, resuming with
Range, refreshing an expired link, the upload's signed headers."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

import sseproto
from sseproto._rules import parse_http_date
from sseproto._transfer import Download, link_deadline, plan_downloads, read_presign
from sseproto.testing import Task, output_bytes, serve

if TYPE_CHECKING:
    from pathlib import Path

OUTPUTS = {
    "9.images.0": ("ComfyUI_00001_.png", 300_000),
    "9.images.1": ("ComfyUI_00001_.png", 1_000),  # the same name: made unique
    "12.video": ("clip.mp4", 0),
}


def storage(srv: Any, method: str = "GET") -> list[Any]:
    return [r for r in srv.requests if r.path.startswith("/_storage") and r.method == method]


async def finished(srv: Any, task_id: str) -> None:
    await sseproto.watch(
        task_id, api_key=srv.token, base_url=srv.base_url, ssl_context=srv.ssl_context
    )


def client(srv: Any) -> sseproto.Client:
    return sseproto.Client(srv.token, srv.base_url, ssl_context=srv.ssl_context)


async def test_download_every_output_under_a_unique_name(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with serve({"t-1": Task(outputs=OUTPUTS)}) as srv:
        await finished(srv, "t-1")
        progress: list[tuple[str, int, int | None]] = []
        async with client(srv) as c:
            paths = await c.download("t-1", tmp_path, on_progress=lambda *a: progress.append(a))
        assert sorted(p.name for p in paths) == [
            "ComfyUI_00001_-2.png",
            "ComfyUI_00001_.png",
            "clip.mp4",
        ]
        by_name = {p.name: p.read_bytes() for p in paths}
        assert by_name["ComfyUI_00001_.png"] == output_bytes("t-1", "9.images.0", 300_000)
        assert by_name["ComfyUI_00001_-2.png"] == output_bytes("t-1", "9.images.1", 1_000)
        assert by_name["clip.mp4"] == b""
        assert sorted(f.name for f in tmp_path.iterdir()) == sorted(by_name)  # no part left
        assert ("ComfyUI_00001_.png", 300_000, 300_000) in progress
        # The presigned links never carry our key.
        assert all("authorization" not in r.headers for r in storage(srv))


async def test_a_file_already_complete_is_skipped(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with serve({"t-1": Task(outputs=OUTPUTS)}) as srv:
        await finished(srv, "t-1")
        async with client(srv) as c:
            await c.download("t-1", tmp_path)
            before = len(storage(srv))
            await c.download("t-1", tmp_path)
        assert len(storage(srv)) == before  # nothing fetched again


async def test_an_interrupted_download_resumes_with_range(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with serve({"t-1": Task(outputs={"o": ("big.bin", 100_000)})}) as srv:
        await finished(srv, "t-1")
        whole = output_bytes("t-1", "o", 100_000)
        (tmp_path / ".big.bin.part").write_bytes(whole[:40_000])  # what a drop left
        async with client(srv) as c:
            await c.download("t-1", tmp_path)
        assert (tmp_path / "big.bin").read_bytes() == whole
        (get,) = storage(srv)
        assert get.headers["range"] == "bytes=40000-"


async def test_a_part_longer_than_the_file_starts_over(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with serve({"t-1": Task(outputs={"o": ("f.bin", 1_000)})}) as srv:
        await finished(srv, "t-1")
        (tmp_path / ".f.bin.part").write_bytes(b"x" * 5_000)  # not this object's start
        async with client(srv) as c:
            await c.download("t-1", tmp_path)
        assert (tmp_path / "f.bin").read_bytes() == output_bytes("t-1", "o", 1_000)


def results_asked(srv: Any) -> int:
    return sum(1 for r in srv.requests if r.path.endswith("/result"))


async def test_a_link_past_its_expiry_is_refreshed_before_it_is_used(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    outputs = {"a": ("a.bin", 1_000), "b": ("b.bin", 1_000)}
    async with serve({"t-1": Task(outputs=outputs)}, link_seconds=60) as srv:
        await finished(srv, "t-1")
        before = results_asked(srv)

        done: list[str] = []

        def slow(name: str, have: int, total: int | None) -> None:
            if have == total and not done:
                done.append(name)
                autojump_clock.jump(120)  # the first file took two minutes

        async with client(srv) as c:
            await c.download("t-1", tmp_path, concurrency=1, on_progress=slow)
        # The second file's link was past expires_at (on the server's clock, its
        # Date): fresh links before it was asked, not a 403 first.
        assert results_asked(srv) - before == 2
        assert len(storage(srv)) == 2
        assert (tmp_path / "b.bin").read_bytes() == output_bytes("t-1", "b", 1_000)
        assert (tmp_path / "a.bin").read_bytes() == output_bytes("t-1", "a", 1_000)


async def test_a_link_the_storage_refuses_as_expired_is_refreshed(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve({"t-1": Task(outputs={"o": ("f.bin", 2_000)})}, link_seconds=60) as srv:
        await finished(srv, "t-1")
        async with client(srv) as c:
            stale = await c.get_result("t-1")
            await trio.sleep(120)  # its links expired
            real = c._result_dated
            calls: list[str] = []
            assert stale.expires_at is not None
            # The stale links, from an API whose clock (its Date) is behind the
            # storage's: they look valid for a minute, and the storage refuses them.
            behind = stale.expires_at.timestamp() - 60

            async def result_dated(task_id: str) -> tuple[sseproto.TaskResult, float | None]:
                calls.append(task_id)
                return (stale, behind) if len(calls) == 1 else await real(task_id)

            monkeypatch.setattr(c, "_result_dated", result_dated)
            await c.download("t-1", tmp_path)
        assert len(calls) == 2  # the stale links, then fresh ones after the 403
        assert len(storage(srv)) == 2
        assert (tmp_path / "f.bin").read_bytes() == output_bytes("t-1", "o", 2_000)


def test_the_test_server_says_its_time_in_every_answer() -> None:
    async def main() -> None:
        async with serve({"t-1": Task(outputs={"o": ("f.bin", 10)})}, link_seconds=60) as srv:
            await finished(srv, "t-1")
            async with client(srv) as c:
                call = await c._answer("GET", "/tasks/t-1/result")
        assert call.date is not None
        expires = sseproto.decode_task_result(call.value).expires_at
        assert expires is not None
        assert 60 <= expires.timestamp() - call.date <= 61

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@pytest.mark.parametrize(
    ("text", "unix"),
    [
        ("Sun, 06 Nov 1994 08:49:37 GMT", 784111777.0),  # IMF-fixdate
        ("Sunday, 06-Nov-94 08:49:37 GMT", 784111777.0),  # RFC 850
        ("Sun Nov  6 08:49:37 1994", 784111777.0),  # asctime
        ("Thu, 01 Jan 2026 00:00:00 GMT", 1767225600.0),
        ("Wed, 30 Jun 60 00:00:00 GMT", None),  # a two-digit year needs the long day name
        ("Wednesday, 30-Jun-60 00:00:00 GMT", 2855779200.0),  # < 70: 2060
        ("Sun, 31 Feb 1994 08:49:37 GMT", None),
        ("Sun, 06 Nov 1994 25:49:37 GMT", None),
        ("Sun, 06 Xyz 1994 08:49:37 GMT", None),
        ("Sun, 06 Nov 1994 08:49:37 +0000", None),
        ("Sun, \u0660\u0666 Nov 1994 08:49:37 GMT", None),  # Arabic-Indic digits
        ("1994-11-06T08:49:37Z", None),
        ("", None),
        ("Sun, 06 Nov 1994 08:49:37 GMT" + " " * 100, None),
        (None, None),
    ],
)
def test_http_dates(text: str | None, unix: float | None) -> None:
    assert parse_http_date(text) == unix


def test_link_deadline_reads_expires_at_on_the_servers_clock() -> None:
    result = sseproto.decode_task_result(
        {"id": "t", "download_url": "https://s/x", "expires_at": "2026-01-01T00:10:00Z"}
    )
    server_now = 1767225600.0  # 2026-01-01T00:00:00Z: ten minutes left
    # Our wall clock is a day off; the server's Date decides.
    assert link_deadline(result, server_now, server_now + 86_400, 50.0) == 50.0 + 600 - 2
    # No Date: our wall clock (here, a minute before the server's).
    assert link_deadline(result, None, server_now - 60, 50.0) == 50.0 + 660 - 2
    no_expiry = sseproto.decode_task_result({"id": "t", "download_url": "https://s/x"})
    assert link_deadline(no_expiry, server_now, server_now, 50.0) is None


def test_a_link_is_refreshed_for_expiry_three_times_at_most() -> None:
    item = Download("o", "https://s/x", "x", expires=100.0)
    assert not item.expired(99.9)
    assert [item.expired(100.0) for _ in range(4)] == [True, True, True, False]
    item = Download("o", "https://s/x", "x")
    assert not item.expired(1e12)  # no expires_at: only a 403 says


async def test_upload_sends_exactly_the_signed_headers(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 2_000
    path = tmp_path / "input image.png"
    path.write_bytes(data)
    async with serve() as srv:
        sent: list[tuple[int, int]] = []
        async with client(srv) as c:
            key = await c.upload(path, on_progress=lambda done, size: sent.append((done, size)))
        assert srv.uploads[key] == data
        presign = next(r for r in srv.requests if r.path.endswith("/files/presign"))
        assert json.loads(presign.body) == {
            "file_name": "input image.png",
            "file_size": len(data),
            "content_type": "image/png",
        }
        (put,) = storage(srv, "PUT")
        assert "authorization" not in put.headers  # never our key to the storage
        assert sent[-1] == (len(data), len(data))


async def test_an_upload_the_storage_refuses_is_an_error_with_its_body(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"hello")
    async with serve() as srv:
        async with client(srv) as c:
            answers: list[Any] = []
            real = c._call

            async def call(method: str, path_: str, payload: Any = None) -> Any:
                if not answers:
                    answers.append(await real(method, path_, payload))
                return answers[0]  # the same link twice: the object exists the second time

            monkeypatch.setattr(c, "_call", call)
            await c.upload(path)
            with pytest.raises(sseproto.HTTPStatusError) as refused:
                await c.upload(path)
        assert refused.value.status_code == 412
        assert refused.value.body


def test_a_presign_answer_missing_a_field_is_a_task_event_error() -> None:
    with pytest.raises(sseproto.TaskEventError, match="upload_url"):
        read_presign({"file_key": "k"})
    with pytest.raises(sseproto.ConfigurationError):
        read_presign({"file_key": "k", "upload_url": "http://storage.example/x"})  # plain http
    with pytest.raises(sseproto.ConfigurationError, match="headers"):
        read_presign(
            {"file_key": "k", "upload_url": "https://s.example/x", "upload_headers": {"X-A": "a\n"}}
        )


def test_file_names_from_hostile_links_stay_in_the_folder() -> None:
    result = sseproto.decode_task_result(
        {
            "id": "t",
            "download_urls": {
                "a": "https://s.example/x/..%2F..%2Fetc%2Fpasswd",
                "b": "https://s.example/x/%2E%2E",
                "c": "https://s.example/",
                "d": "https://s.example/x/CON\x1b[31m.png",
            },
        }
    )
    names = [name for _, _, name in plan_downloads(result)]
    assert all("/" not in n and "\\" not in n and n not in (".", "..") for n in names)
    assert all("\x1b" not in n for n in names)
    assert len(set(names)) == len(names)


def test_a_range_answered_from_elsewhere_is_an_error() -> None:
    item = Download("o", "https://s.example/f", "f", have=100)
    with pytest.raises(sseproto.HTTPStatusError, match="range"):
        item.receive_response(206, {"content-range": "bytes 0-99/200"})
    item = Download("o", "https://s.example/f", "f", have=100)
    assert item.receive_response(206, {"content-range": "bytes 100-199/200"}) == "read"
    assert item.total == 200
    assert item.request()[1] == [("Accept-Encoding", "identity"), ("Range", "bytes=100-")]


@pytest.mark.parametrize("concurrency", [0, -1, True, "2"])
async def test_download_concurrency_is_at_least_one(concurrency: Any, tmp_path: Path) -> None:
    async with serve() as srv, client(srv) as c:
        with pytest.raises(sseproto.ConfigurationError, match="concurrency"):
            await c.download("t-1", tmp_path, concurrency=concurrency)


async def test_a_refused_link_is_not_asked_again_as_a_drop(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve({"t-1": Task(outputs={"o": ("f.bin", 10)})}) as srv:
        await finished(srv, "t-1")
        async with client(srv) as c:
            result = await c.get_result("t-1")
            gone = sseproto.TaskResult(
                id="t-1", download_urls={"o": result.download_urls["o"].replace("/f.bin", "/g.bin")}
            )

            async def result_dated(task_id: str) -> tuple[sseproto.TaskResult, None]:
                return gone, None

            monkeypatch.setattr(c, "_result_dated", result_dated)
            with pytest.raises(sseproto.HTTPStatusError):
                await c.download("t-1", tmp_path)
        assert 1 <= len(storage(srv)) <= 4  # a refusal: not four drops and a retry each
