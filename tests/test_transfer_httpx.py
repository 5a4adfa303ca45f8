"""Client.upload and Client.download of the drivers on httpx (``sseproto.asyncio``,
also under uvloop, and ``sseproto.sync``): the scenarios of ``test_transfer`` (the
trio client's), against ``serve_in_thread``'s presigned storage on the real clock.

Each test runs one driver's client through :func:`driven`, which calls its methods as
plain functions (the blocking client directly; the asyncio one on an event loop of
its own, asyncio's or uvloop's, that lives as long as the client, so that its
connections are pooled as in a program), each call under LIMIT. What the server
cannot play (a connection dropped in the middle of a body) comes from a bare socket
served by a thread, as plain HTTP to loopback (a presigned link may be that). The
autouse ``no_leaks`` fixture fails a test that leaves a socket open, a thread
running, or a ResourceWarning for the garbage collector to find.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

import sseproto
import sseproto.asyncio as async_sse
import sseproto.sync as sync_sse
from sseproto.testing import Task, comfyui_timeline, output_bytes, serve_in_thread
from tests._leaks import LIMIT, accepting, alarm, clear_environment, leak_check

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator
    from pathlib import Path

    from sseproto.testing import RecordedRequest, TestServer

#: The httpx drivers: blocking, asyncio, asyncio on uvloop.
DRIVERS = ["sync", "asyncio", "uvloop"]
#: Seconds between the steps of a task: it completes in a tenth of a second.
INTERVAL = 0.01

OUTPUTS = {
    "9.images.0": ("ComfyUI_00001_.png", 300_000),
    "9.images.1": ("ComfyUI_00001_.png", 1_000),  # the same name: made unique
    "12.video": ("clip.mp4", 0),
}


@pytest.fixture(autouse=True)
def no_leaks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No new socket open, no new thread, no ResourceWarning after a test (and no
    CYBERUN_*, SSL_CERT_* or proxy settings from the environment during it)."""
    clear_environment(monkeypatch)
    with leak_check():
        yield


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "uvloop":
        pytest.importorskip("uvloop")
    return name


class Driven:
    """One driver's client, its methods called as plain functions (``d("download",
    task_id, folder)``), each under LIMIT; ``d.client`` is the client itself."""

    def __init__(self, name: str, srv: TestServer, **options: Any) -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client: Any
        if name == "sync":
            options.setdefault("ssl_context", srv.ssl_context)
            self.client = sync_sse.Client(srv.token, srv.base_url, **options)
            return
        if name == "uvloop":
            import uvloop

            self.loop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        options.setdefault("ssl_context", srv.ssl_context)
        self.client = async_sse.Client(srv.token, srv.base_url, **options)

    @property
    def is_async(self) -> bool:
        return self.loop is not None

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.loop is None:
            with alarm(LIMIT):
                return getattr(self.client, method)(*args, **kwargs)
        call = getattr(self.client, method)(*args, **kwargs)
        return self.loop.run_until_complete(asyncio.wait_for(call, LIMIT))

    def close(self) -> None:
        if self.loop is None:
            self.client.close()
            return
        try:
            self.loop.run_until_complete(self.client.aclose())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()


@contextlib.contextmanager
def driven(name: str, srv: TestServer, **options: Any) -> Iterator[Driven]:
    d = Driven(name, srv, **options)
    try:
        yield d
    finally:
        d.close()


def finished(srv: TestServer, task_id: str) -> None:
    """Follow the task to its end (blocking: this is the setting up, not the test)."""
    with alarm(LIMIT):
        sync_sse.watch(
            task_id, api_key=srv.token, base_url=srv.base_url, ssl_context=srv.ssl_context
        )


def quick(outputs: dict[str, tuple[str, int]]) -> Task:
    """A ComfyUI-like task that completes within a tenth of a second, with ``outputs``."""
    return Task(steps=comfyui_timeline(interval=INTERVAL), outputs=outputs)


def storage(srv: TestServer, method: str = "GET") -> list[RecordedRequest]:
    return [r for r in srv.requests if r.path.startswith("/_storage") and r.method == method]


def result_with(links: dict[str, str]) -> sseproto.TaskResult:
    """A completed task's result whose outputs are ``links``."""
    return sseproto.decode_task_result({"id": "t-1", "download_urls": links})


def replace_results(d: Driven, monkeypatch: pytest.MonkeyPatch, *answers: Any) -> list[str]:
    """The result that ``download`` fetches is ``answers`` in turn (a TaskResult, as if
    answered without a ``Date``, or a ``(TaskResult, date)`` pair), then the server's;
    returns the task ids it was asked for."""
    calls: list[str] = []
    real = d.client._result_dated

    def pick(task_id: str) -> Any:
        calls.append(task_id)
        if len(calls) > len(answers):
            return None
        answer = answers[len(calls) - 1]
        return answer if isinstance(answer, tuple) else (answer, None)

    if d.is_async:

        async def result_dated(task_id: str) -> Any:
            answer = pick(task_id)
            return answer if answer is not None else await real(task_id)

    else:

        def result_dated(task_id: str) -> Any:  # type: ignore[misc]
            answer = pick(task_id)
            return answer if answer is not None else real(task_id)

    monkeypatch.setattr(d.client, "_result_dated", result_dated)
    return calls


def results_asked(srv: TestServer) -> int:
    return sum(1 for r in srv.requests if r.path.endswith("/result"))


class CallerAuth(httpx.Auth):
    """A caller's auth on its own client: one more header on each request."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["X-Caller-Auth"] = "1"
        yield request


# -- download ----------------------------------------------------------------------------


def test_download_every_output_under_a_unique_name(driver: str, tmp_path: Path) -> None:
    with serve_in_thread({"t-1": quick(OUTPUTS)}) as srv:
        finished(srv, "t-1")
        progress: list[tuple[str, int, int | None]] = []
        with driven(driver, srv) as d:
            paths = d("download", "t-1", tmp_path, on_progress=lambda *a: progress.append(a))
        assert [p.parent for p in paths] == [tmp_path] * 3
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
        gets = storage(srv)
        assert len(gets) == 3
        # The presigned links carry neither our key nor any header of the client's.
        for get in gets:
            assert "authorization" not in get.headers
            assert "user-agent" not in get.headers
            assert get.headers["accept-encoding"] == "identity"
            assert "range" not in get.headers


def test_your_clients_headers_cookies_and_auth_stay_away_from_the_storage(
    driver: str, tmp_path: Path
) -> None:
    upload = tmp_path / "in.txt"
    upload.write_bytes(b"hello")
    with serve_in_thread({"t-1": quick({"o": ("f.bin", 1_000)})}) as srv:
        finished(srv, "t-1")
        options: dict[str, Any] = {
            "verify": srv.ssl_context,
            "headers": {"X-Caller": "1"},
            "cookies": {"session": "s"},
            "auth": CallerAuth(),
        }
        mine: Any = httpx.Client(**options) if driver == "sync" else httpx.AsyncClient(**options)
        with driven(driver, srv, http_client=mine, ssl_context=None) as d:
            try:
                d("download", "t-1", tmp_path / "out")
                d("upload", upload)
            finally:  # never closed by sseproto
                if d.loop is None:
                    mine.close()
                else:
                    d.loop.run_until_complete(mine.aclose())
        (get,) = storage(srv)
        (put,) = storage(srv, "PUT")
        for request in (get, put):
            unwanted = {"x-caller", "x-caller-auth", "cookie", "authorization", "user-agent"}
            assert not unwanted & set(request.headers)
        api = [r for r in srv.requests if r.path.endswith("/result")][-1]
        assert api.headers["x-caller"] == api.headers["x-caller-auth"] == "1"  # yours carry them


def test_downloads_one_file_at_a_time_with_concurrency_1(driver: str, tmp_path: Path) -> None:
    with serve_in_thread({"t-1": quick(OUTPUTS)}) as srv:
        finished(srv, "t-1")
        with driven(driver, srv) as d:
            paths = d("download", "t-1", tmp_path, concurrency=1)
        assert all(p.is_file() for p in paths)
        assert len(storage(srv)) == 3


def test_a_file_already_complete_is_skipped(driver: str, tmp_path: Path) -> None:
    with serve_in_thread({"t-1": quick(OUTPUTS)}) as srv:
        finished(srv, "t-1")
        progress: list[tuple[str, int, int | None]] = []
        with driven(driver, srv) as d:
            first = d("download", "t-1", tmp_path)
            before = len(storage(srv))
            again = d("download", "t-1", tmp_path, on_progress=lambda *a: progress.append(a))
        assert again == first
        assert len(storage(srv)) == before  # nothing fetched again
        assert ("ComfyUI_00001_.png", 300_000, 300_000) in progress


def test_an_interrupted_download_resumes_with_range(driver: str, tmp_path: Path) -> None:
    with serve_in_thread({"t-1": quick({"o": ("big.bin", 100_000)})}) as srv:
        finished(srv, "t-1")
        whole = output_bytes("t-1", "o", 100_000)
        (tmp_path / ".big.bin.part").write_bytes(whole[:40_000])  # what a drop left
        progress: list[tuple[str, int, int | None]] = []
        with driven(driver, srv) as d:
            d("download", "t-1", tmp_path, on_progress=lambda *a: progress.append(a))
        assert (tmp_path / "big.bin").read_bytes() == whole
        assert not (tmp_path / ".big.bin.part").exists()
        (get,) = storage(srv)
        assert get.headers["range"] == "bytes=40000-"
        assert progress[-1] == ("big.bin", 100_000, 100_000)


def test_a_part_longer_than_the_file_starts_over(driver: str, tmp_path: Path) -> None:
    with serve_in_thread({"t-1": quick({"o": ("f.bin", 1_000)})}) as srv:
        finished(srv, "t-1")
        (tmp_path / ".f.bin.part").write_bytes(b"x" * 5_000)  # not this object's start
        with driven(driver, srv) as d:
            d("download", "t-1", tmp_path)
        assert (tmp_path / "f.bin").read_bytes() == output_bytes("t-1", "o", 1_000)
        first, second = storage(srv)
        assert first.headers["range"] == "bytes=5000-"  # answered 416
        assert "range" not in second.headers  # then the whole file


def test_a_part_that_is_already_whole_is_renamed(driver: str, tmp_path: Path) -> None:
    with serve_in_thread({"t-1": quick({"o": ("f.bin", 1_000)})}) as srv:
        finished(srv, "t-1")
        whole = output_bytes("t-1", "o", 1_000)
        (tmp_path / ".f.bin.part").write_bytes(whole)  # dropped just before the rename
        with driven(driver, srv) as d:
            d("download", "t-1", tmp_path)
        assert (tmp_path / "f.bin").read_bytes() == whole
        (get,) = storage(srv)  # 416, with the size: done
        assert get.headers["range"] == "bytes=1000-"


def test_a_link_past_its_expiry_is_refreshed_before_it_is_used(driver: str, tmp_path: Path) -> None:
    # Two files, one at a time; the links live 3 s on the server's clock (its Date),
    # and the first file's last piece takes 3.1 s to arrive: the other file's link
    # is past expires_at, so the result is fetched again before it is asked (the
    # storage would still have served it: it is not a 403 that tells us).
    outputs = {"a": ("a.bin", 1_000), "b": ("b.bin", 1_000)}
    with serve_in_thread({"t-1": quick(outputs)}, link_seconds=3) as srv:
        finished(srv, "t-1")
        before = results_asked(srv)

        done: list[str] = []

        def slow(name: str, have: int, total: int | None) -> None:
            if have == total and not done:
                done.append(name)
                time.sleep(3.1)

        with driven(driver, srv) as d:
            d("download", "t-1", tmp_path, concurrency=1, on_progress=slow)
        assert results_asked(srv) - before == 2  # the links, then fresh ones
        assert len(storage(srv)) == 2  # one GET a file: no 403 on the way
        assert (tmp_path / "b.bin").read_bytes() == output_bytes("t-1", "b", 1_000)


def test_a_link_the_storage_refuses_as_expired_is_refreshed(
    driver: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve_in_thread({"t-1": quick({"o": ("f.bin", 2_000)})}) as srv:
        finished(srv, "t-1")
        with driven(driver, srv) as d:
            # Links that expired a minute before they were made, from an API whose
            # clock (its Date) is two minutes behind the storage's: they look valid,
            # and the storage refuses them (403).
            srv.link_seconds = -60.0
            stale = d("get_result", "t-1")
            srv.link_seconds = 60.0
            assert stale.expires_at is not None
            behind = stale.expires_at.timestamp() - 60
            calls = replace_results(d, monkeypatch, (stale, behind))
            d("download", "t-1", tmp_path)
        assert calls == ["t-1", "t-1"]  # the stale links, then fresh ones after the 403
        assert (tmp_path / "f.bin").read_bytes() == output_bytes("t-1", "o", 2_000)
        assert len(storage(srv)) == 2
        assert not (tmp_path / ".f.bin.part").exists()


def test_links_that_stay_expired_are_an_error_after_three_refreshes(
    driver: str, tmp_path: Path
) -> None:
    with serve_in_thread({"t-1": quick({"o": ("f.bin", 2_000)})}) as srv:
        finished(srv, "t-1")
        before = results_asked(srv)
        srv.link_seconds = -60.0  # every link the result gives has expired
        with driven(driver, srv) as d, pytest.raises(sseproto.HTTPStatusError) as refused:
            d("download", "t-1", tmp_path)
        assert refused.value.status_code == 403
        assert "fresh links did not help" in str(refused.value)
        assert "sig=" not in str(refused.value)  # the link's signature is a credential
        # Three refreshes in all (the links past expires_at before a GET, or refused
        # with 403 after it), then the refusal is the error.
        assert results_asked(srv) - before == 4
        assert len(storage(srv)) == 2
        assert not (tmp_path / "f.bin").exists()


def test_a_link_that_cannot_be_fetched_is_a_configuration_error(
    driver: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve_in_thread() as srv, driven(driver, srv) as d:
        replace_results(d, monkeypatch, result_with({"o": "http://storage.example/f.bin"}))
        with pytest.raises(sseproto.ConfigurationError):
            d("download", "t-1", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_storage_that_cannot_be_reached_is_a_connect_error(
    driver: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with serve_in_thread() as srv, driven(driver, srv) as d:
        replace_results(d, monkeypatch, result_with({"o": f"http://127.0.0.1:{port}/f?s=1"}))
        with pytest.raises(sseproto.ConnectError) as error:
            d("download", "t-1", tmp_path)
    assert not isinstance(error.value, httpx.HTTPError)
    assert "s=1" not in str(error.value)


@pytest.mark.parametrize("concurrency", [0, -1, "2", True])
def test_concurrency_must_be_at_least_one(driver: str, tmp_path: Path, concurrency: Any) -> None:
    with (
        serve_in_thread() as srv,
        driven(driver, srv) as d,
        pytest.raises(sseproto.ConfigurationError, match="concurrency"),
    ):
        d("download", "t-1", tmp_path, concurrency=concurrency)
    assert srv.requests == []  # refused before anything is asked


# -- drops, from a bare server -------------------------------------------------------------


@contextlib.contextmanager
def dropping_storage(
    whole: bytes, drops: int, *, stall: bool = False
) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A plain-HTTP storage on loopback: its first ``drops`` answers send the headers
    of the rest of the file and half of it, then hang up (``stall``: send nothing
    more until the client hangs up); the next ones send the rest (206 for a Range).
    Yields its link and the headers of every request."""
    seen: list[dict[str, str]] = []

    def handle(conn: socket.socket) -> None:
        conn.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head:
            piece = conn.recv(65536)
            if not piece:
                return
            head += piece
        lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
        seen.append(headers)
        start = int(headers.get("range", "bytes=0-")[len("bytes=") : -1])
        rest = whole[start:]
        status = "206 Partial Content" if start else "200 OK"
        span = f"Content-Range: bytes {start}-{len(whole) - 1}/{len(whole)}\r\n" if start else ""
        conn.sendall(
            f"HTTP/1.1 {status}\r\nContent-Length: {len(rest)}\r\n{span}"
            f"Connection: close\r\n\r\n".encode()
        )
        if len(seen) <= drops:
            conn.sendall(rest[: len(rest) // 2])
            if stall:
                with contextlib.suppress(OSError):
                    while conn.recv(65536):  # until the client gives up
                        pass
        else:
            conn.sendall(rest)
        conn.shutdown(socket.SHUT_RDWR)

    with accepting("dropping-storage", handle) as port:
        yield f"http://127.0.0.1:{port}/f.bin?sig=secret", seen


def test_a_dropped_connection_is_resumed_with_range(
    driver: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = bytes(range(256)) * 400  # 102,400 bytes
    with (
        dropping_storage(whole, drops=2) as (link, seen),
        serve_in_thread() as srv,
        driven(driver, srv) as d,
    ):
        replace_results(d, monkeypatch, result_with({"o": link}))
        d("download", "t-1", tmp_path)
    assert (tmp_path / "f.bin").read_bytes() == whole
    assert [h.get("range") for h in seen] == [None, "bytes=51200-", "bytes=76800-"]
    assert all("authorization" not in h for h in seen)


def test_a_connection_dropped_four_times_is_an_error_and_keeps_the_part(
    driver: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = bytes(range(256)) * 64
    with (
        dropping_storage(whole, drops=10) as (link, seen),
        serve_in_thread() as srv,
        driven(driver, srv) as d,
    ):
        replace_results(d, monkeypatch, result_with({"o": link}))
        with pytest.raises(sseproto.RemoteProtocolError) as error:
            d("download", "t-1", tmp_path)
    assert len(seen) == 4  # the first try, then three resumed
    assert "secret" not in str(error.value)
    part = (tmp_path / ".f.bin.part").read_bytes()
    assert whole.startswith(part)
    assert len(part) > len(whole) // 2  # what each try brought is kept
    assert not (tmp_path / "f.bin").exists()


def test_a_stalled_download_is_resumed_then_a_read_timeout(
    driver: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = bytes(range(256)) * 64
    with (
        dropping_storage(whole, drops=10, stall=True) as (link, seen),
        serve_in_thread() as srv,
        driven(driver, srv, read_timeout=0.1) as d,
    ):
        replace_results(d, monkeypatch, result_with({"o": link}))
        with pytest.raises(sseproto.ReadTimeout):
            d("download", "t-1", tmp_path)
    # Each try brings half of what is left of the 16,384 bytes, kept in the part.
    assert [h.get("range") for h in seen] == [None, "bytes=8192-", "bytes=12288-", "bytes=14336-"]
    assert (tmp_path / ".f.bin.part").read_bytes() == whole[:15_360]


@pytest.mark.parametrize("driver", ["asyncio", "uvloop"], indirect=True)
def test_a_cancelled_download_keeps_its_part_and_leaves_no_socket_open(
    driver: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = bytes(range(256)) * 64
    with (
        dropping_storage(whole, drops=1, stall=True) as (link, seen),
        serve_in_thread() as srv,
        driven(driver, srv) as d,
    ):
        replace_results(d, monkeypatch, *[result_with({"o": link})] * 2)
        assert d.loop is not None
        with pytest.raises(asyncio.TimeoutError):
            d.loop.run_until_complete(asyncio.wait_for(d.client.download("t-1", tmp_path), 0.3))
        assert (tmp_path / ".f.bin.part").read_bytes() == whole[:8_192]
        d("download", "t-1", tmp_path)  # resumed, later
    assert (tmp_path / "f.bin").read_bytes() == whole
    assert [h.get("range") for h in seen] == [None, "bytes=8192-"]


# -- upload ------------------------------------------------------------------------------


def test_upload_sends_exactly_the_signed_headers(driver: str, tmp_path: Path) -> None:
    data = bytes(range(256)) * 2_000  # two pieces of 256 KiB at most
    path = tmp_path / "input image.png"
    path.write_bytes(data)
    with serve_in_thread() as srv:
        sent: list[tuple[int, int]] = []
        with driven(driver, srv) as d:
            key = d("upload", path, on_progress=lambda done, size: sent.append((done, size)))
            other = d("upload", str(path), content_type="application/x-test")
        assert srv.uploads[key] == data
        assert srv.uploads[other] == data
        first, second = (r for r in srv.requests if r.path.endswith("/files/presign"))
        assert json.loads(first.body) == {
            "file_name": "input image.png",
            "file_size": len(data),
            "content_type": "image/png",
        }
        assert json.loads(second.body)["content_type"] == "application/x-test"
        assert "authorization" in first.headers  # the API call carries our key...
        put, _ = storage(srv, "PUT")
        assert "authorization" not in put.headers  # ...never the storage
        # The signed headers, Host and Content-Length: nothing else (no chunked body).
        assert set(put.headers) == {
            "host",
            "content-length",
            "content-type",
            "x-amz-meta-file-name",
            "x-amz-server-side-encryption",
            "x-amz-security-token",
        }
        assert put.headers["content-length"] == str(len(data))
        assert sent == [(256 * 1024, len(data)), (len(data), len(data))]


def test_an_empty_file_is_uploaded(driver: str, tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with serve_in_thread() as srv, driven(driver, srv) as d:
        key = d("upload", path)
    assert srv.uploads[key] == b""


def test_an_upload_the_storage_refuses_is_an_error_with_its_body(
    driver: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"hello")
    with serve_in_thread() as srv, driven(driver, srv) as d:
        answers: list[Any] = []
        real = d.client._call
        # The same presign answer twice: the object exists the second time (412).
        if d.is_async:

            async def call(method: str, path_: str, payload: Any = None) -> Any:
                if not answers:
                    answers.append(await real(method, path_, payload))
                return answers[0]

        else:

            def call(method: str, path_: str, payload: Any = None) -> Any:  # type: ignore[misc]
                if not answers:
                    answers.append(real(method, path_, payload))
                return answers[0]

        monkeypatch.setattr(d.client, "_call", call)
        d("upload", path)
        with pytest.raises(sseproto.HTTPStatusError) as refused:
            d("upload", path)
    assert refused.value.status_code == 412
    assert b"PreconditionFailed" in refused.value.body
    assert refused.value.headers["content-type"] == "application/xml"
    assert "412" in str(refused.value)
    assert "sig=" not in str(refused.value)  # the link's signature is a credential
    assert "/_storage/" in str(refused.value)


def test_an_upload_to_a_storage_that_cannot_be_reached_is_a_connect_error(
    driver: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"hello")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    answer = {"file_key": "k", "upload_url": f"http://127.0.0.1:{port}/u?sig=secret"}
    with serve_in_thread() as srv, driven(driver, srv) as d:
        if d.is_async:

            async def call(method: str, path_: str, payload: Any = None) -> Any:
                return answer

        else:

            def call(method: str, path_: str, payload: Any = None) -> Any:  # type: ignore[misc]
                return answer

        monkeypatch.setattr(d.client, "_call", call)
        with pytest.raises(sseproto.ConnectError) as error:
            d("upload", path)
    assert not isinstance(error.value, httpx.HTTPError)
    assert "secret" not in str(error.value)


def test_a_missing_file_is_an_os_error_before_any_call(driver: str, tmp_path: Path) -> None:
    with serve_in_thread() as srv, driven(driver, srv) as d, pytest.raises(FileNotFoundError):
        d("upload", tmp_path / "nothing.png")
    assert srv.requests == []


# -- asyncio: files at once -----------------------------------------------------------------


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_first_failure_cancels_the_other_files_and_is_raised_as_is(loop: str) -> None:
    from sseproto.asyncio import _together

    events: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    async def failing() -> None:
        await asyncio.sleep(0.01)
        raise sseproto.HTTPStatusError("refused", status_code=404)

    async def main() -> None:
        with pytest.raises(sseproto.HTTPStatusError):  # not an exception group
            await _together([slow(), failing(), slow()])
        await _together([])

    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        runner_loop = uvloop.new_event_loop()
    else:
        runner_loop = asyncio.new_event_loop()
    try:
        runner_loop.run_until_complete(asyncio.wait_for(main(), LIMIT))
    finally:
        runner_loop.close()
    assert events == ["cancelled", "cancelled"]
