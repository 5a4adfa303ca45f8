"""``_tlsstream.TLSStream``: TLS for one connection, one task at a time, against a
``trio.SSLStream`` server on loopback (trustme certificates): the handshake and its
checks, records split across TCP segments, post-handshake messages, the two ways a
server ends (close_notify, or a close without it), TLS errors, checkpoints, and the
event stream's read with its idle timeout (``receive_within``): through the standard
socket and through trio's, and losing no byte to a cancellation."""

from __future__ import annotations

import ssl
from functools import partial
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing
import trustme

from sseproto._tlsstream import TLSStream

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


def contexts(name: str = "127.0.0.1") -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def with_server(
    handler: Callable[[trio.SSLStream[trio.SocketStream]], Awaitable[None]],
    client_side: Callable[[TLSStream], Awaitable[None]],
    *,
    name: str = "127.0.0.1",
) -> None:
    server_context, client_context = contexts(name)

    async def serve_one(tcp: trio.SocketStream) -> None:
        tls = trio.SSLStream(tcp, server_context, server_side=True)
        try:
            await tls.do_handshake()
            await handler(tls)
        except trio.BrokenResourceError:
            pass
        finally:
            await trio.aclose_forcefully(tls)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, serve_one, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        stream = TLSStream(tcp, client_context, server_hostname="127.0.0.1")
        try:
            await client_side(stream)
        finally:
            await trio.aclose_forcefully(stream)
            nursery.cancel_scope.cancel()


@pytest.fixture(params=["socket", "trio socket"])
def hide_socket(request: pytest.FixtureRequest) -> bool:
    """Both ways of reading: the standard socket directly (trio's own attribute), and
    the public ``trio.socket`` way that a trio release hiding it would leave."""
    return bool(request.param == "trio socket")


async def read_all(stream: TLSStream) -> bytes:
    received = b""
    while data := await stream.receive_some():
        received += data
    return received


async def test_echo_and_a_clean_close() -> None:
    async def handler(tls: trio.SSLStream[trio.SocketStream]) -> None:
        request = await tls.receive_some()
        await tls.send_all(b"you said: " + request)
        await tls.aclose()  # close_notify

    async def client(stream: TLSStream) -> None:
        await stream.do_handshake()
        await stream.send_all(b"hello")
        assert await read_all(stream) == b"you said: hello"

    await with_server(handler, client)


async def test_a_close_without_close_notify_ends_the_stream() -> None:
    async def handler(tls: trio.SSLStream[trio.SocketStream]) -> None:
        await tls.receive_some()
        await tls.send_all(b"data")
        await tls.transport_stream.aclose()  # no close_notify: how HTTPS servers end

    async def client(stream: TLSStream) -> None:
        await stream.do_handshake()
        await stream.send_all(b"x")
        assert await read_all(stream) == b"data"

    await with_server(handler, client)


async def test_records_split_into_one_byte_segments_are_reassembled() -> None:
    payload = bytes(range(256)) * 40

    async def handler(tls: trio.SSLStream[trio.SocketStream]) -> None:
        await tls.receive_some()
        await tls.send_all(b"start:")  # and the session tickets trio held back
        # Encrypt with the server's SSLObject, then dribble the bytes a few at a time.
        tls._ssl_object.write(payload)
        wire = tls._outgoing.read()
        for i in range(0, len(wire), 7):
            await tls.transport_stream.send_all(wire[i : i + 7])
        await tls.transport_stream.aclose()

    async def client(stream: TLSStream) -> None:
        await stream.do_handshake()
        await stream.send_all(b"go")
        assert await read_all(stream) == b"start:" + payload

    await with_server(handler, client)


async def test_many_messages_and_large_writes_both_ways() -> None:
    big = b"z" * 300_000

    async def handler(tls: trio.SSLStream[trio.SocketStream]) -> None:
        received = b""
        while len(received) < len(big):
            received += await tls.receive_some()
        assert received == big
        for i in range(100):
            await tls.send_all(b"event %d\n" % i)
        await tls.aclose()

    async def client(stream: TLSStream) -> None:
        await stream.do_handshake()
        await stream.send_all(big)
        expected = b"".join(b"event %d\n" % i for i in range(100))
        assert await read_all(stream) == expected

    await with_server(handler, client)


async def test_the_name_is_checked() -> None:
    async def handler(tls: trio.SSLStream[trio.SocketStream]) -> None:
        await tls.receive_some()  # pragma: no cover - the handshake fails first

    async def client(stream: TLSStream) -> None:
        with pytest.raises(ssl.SSLCertVerificationError):
            await stream.do_handshake()

    await with_server(handler, client, name="other.example")


async def test_garbage_after_the_handshake_is_a_broken_resource() -> None:
    async def handler(tls: trio.SSLStream[trio.SocketStream]) -> None:
        await tls.receive_some()
        await tls.transport_stream.send_all(b"\x17\x03\x03\x00\x10" + b"\x00" * 16)

    async def client(stream: TLSStream) -> None:
        await stream.do_handshake()
        await stream.send_all(b"x")
        with pytest.raises(trio.BrokenResourceError) as caught:
            await stream.receive_some()
        assert isinstance(caught.value.__cause__, ssl.SSLError)

    await with_server(handler, client)


async def read_once(stream: TLSStream, read: str) -> bytes:
    """One read of ``stream``: ``receive_some`` (1,000 bytes at most) or the event
    stream's ``receive_within``."""
    if read == "receive_some":
        return await stream.receive_some(1000)
    return await stream.receive_within(10.0)


@pytest.mark.parametrize("read", ["receive_some", "receive_within"])
async def test_a_read_is_a_checkpoint_whether_or_not_it_waits(hide_socket: bool, read: str) -> None:
    async def handler(tls: trio.SSLStream[trio.SocketStream]) -> None:
        await tls.receive_some()
        for _ in range(20):  # more than one read's worth, at once
            await tls.send_all(b"a" * 5000)
        await trio.sleep_forever()

    async def client(stream: TLSStream) -> None:
        if hide_socket:
            stream._sock = None
        await stream.do_handshake()
        await stream.send_all(b"x")
        got = 0
        while got < 100_000:
            with trio.testing.assert_checkpoints():
                got += len(await read_once(stream, read))

    await with_server(handler, client)


async def test_a_cancelled_read_can_be_followed_by_another() -> None:
    async def handler(tls: trio.SSLStream[trio.SocketStream]) -> None:
        await tls.receive_some()
        await trio.sleep(0.2)
        await tls.send_all(b"late")
        await trio.sleep_forever()

    async def client(stream: TLSStream) -> None:
        await stream.do_handshake()
        await stream.send_all(b"x")
        with trio.move_on_after(0.05) as scope:
            await stream.receive_some()
        assert scope.cancelled_caught  # cancelled while waiting on the socket
        assert await stream.receive_some() == b"late"

    await with_server(handler, client)


# -- receive_within: the event stream's read (the standard socket, or trio's) ----------


async def test_the_standard_socket_is_found() -> None:
    # If a trio release hides it, reads still work (the fallback below), only slower:
    # this says so.
    async def handler(tls: trio.SSLStream[trio.SocketStream]) -> None:
        await trio.sleep_forever()

    async def client(stream: TLSStream) -> None:
        assert stream._sock is not None

    await with_server(handler, client)


async def test_receive_within_reads_then_times_out(hide_socket: bool) -> None:
    async def handler(tls: trio.SSLStream[trio.SocketStream]) -> None:
        await tls.receive_some()
        await tls.send_all(b"first")
        await trio.sleep_forever()

    async def client(stream: TLSStream) -> None:
        if hide_socket:
            stream._sock = None
        await stream.do_handshake()
        await stream.send_all(b"x")
        assert await stream.receive_within(10.0) == b"first"
        start = trio.current_time()
        with pytest.raises(trio.TooSlowError):
            await stream.receive_within(0.2)
        assert trio.current_time() - start >= 0.2

    await with_server(handler, client)


@pytest.mark.parametrize("read", ["receive_some", "receive_within"])
async def test_a_read_cancelled_at_its_checkpoint_loses_no_byte(
    hide_socket: bool, read: str
) -> None:
    # Bytes already there: a read that does not wait. Cancelled at its checkpoint, it
    # must not have taken them (a caller's move_on_after around one read, then more).
    sent = bytes(range(256)) * 400

    async def handler(tls: trio.SSLStream[trio.SocketStream]) -> None:
        await tls.receive_some()
        await tls.send_all(sent)
        await trio.sleep_forever()

    async def client(stream: TLSStream) -> None:
        if hide_socket:
            stream._sock = None
        await stream.do_handshake()
        await stream.send_all(b"x")

        received = b""
        cancelled = 0
        with trio.move_on_after(10):  # a lost byte would leave the loop waiting
            while len(received) < len(sent):
                received += await read_once(stream, read)
                with trio.CancelScope() as scope:
                    scope.cancel()
                    received += await read_once(stream, read)
                cancelled += scope.cancelled_caught
        assert cancelled > 0
        assert received == sent

    await with_server(handler, client)
