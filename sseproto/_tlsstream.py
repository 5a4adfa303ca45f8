"""TLS over a trio socket for one connection, one task at a time: the trio driver's stream.

Theory of operation: ``trio.SSLStream`` is built for any number of tasks sending and
receiving at once: each read takes a conflict detector and a lock (whose acquisition
is a trip through the scheduler), on top of the socket's own wait. A connection of
ours is used by one task at a time (a request is sent, then its answer read), so
:class:`TLSStream` keeps only what that needs: an ``ssl.SSLObject`` between two
memory BIOs, and the socket. A read calls the standard socket under trio's directly
and, only when it would block, waits for it (``trio.lowlevel.wait_readable``): one trip
through the scheduler, which was two, and for an idle timeout
(:meth:`TLSStream.receive_within`) one cancel scope around that wait alone, not around
every read. A read that does not wait is still a checkpoint, as trio's conventions ask.

Semantics kept from ``SSLStream(https_compatible=True)``: the handshake verifies as
the context says (``server_hostname`` for SNI and the name check); a close without
``close_notify`` (a "ragged EOF", as HTTPS servers do) is an end of stream, not an
error; any other TLS error is ``trio.BrokenResourceError`` from the ``ssl.SSLError``.
"""

from __future__ import annotations

import math
import socket
import ssl

import trio

__all__ = ["TLSStream"]

_RECEIVE_SIZE = 65536


def _is_eof(exc: BaseException) -> bool:
    """A close without close_notify (OpenSSL 3 names it; older versions do not)."""
    return isinstance(exc, ssl.SSLEOFError) or (
        "UNEXPECTED_EOF_WHILE_READING" in str(getattr(exc, "strerror", "") or "")
    )


class TLSStream(trio.abc.Stream):
    """TLS on ``transport_stream``, for one task at a time. Call :meth:`do_handshake`
    first."""

    def __init__(
        self, transport_stream: trio.SocketStream, context: ssl.SSLContext, server_hostname: str
    ) -> None:
        self.transport_stream = transport_stream
        self._socket = transport_stream.socket
        # The standard socket under trio's (non-blocking), read directly, waited for
        # with trio.lowlevel.wait_readable: a read that waits is one trip through the
        # scheduler and, for a timeout, one cancel scope around that wait. None if a
        # trio release hides it: reads then take the slower public way.
        sock = getattr(transport_stream.socket, "_sock", None)
        self._sock: socket.socket | None = sock if isinstance(sock, socket.socket) else None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(
            self._incoming, self._outgoing, server_side=False, server_hostname=server_hostname
        )
        self._eof = False

    async def do_handshake(self) -> None:
        """The TLS handshake (a cancellation leaves the stream unusable: close it).

        Raises:
            ssl.SSLError: The handshake failed (a certificate, a version, a close).
            OSError, trio.BrokenResourceError: The socket failed.
        """
        while True:
            try:
                self._ssl.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                await self._fill()
                continue
            await self._flush()
            return

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """The next decrypted bytes; ``b""`` at the end of the stream.

        Raises:
            trio.BrokenResourceError: A TLS error (from its ``ssl.SSLError``).
            OSError: The socket failed.
        """
        return await self._receive(_RECEIVE_SIZE if max_bytes is None else max_bytes, math.inf)

    async def receive_within(self, timeout: float) -> bytes:
        """:meth:`receive_some`, giving up after ``timeout`` seconds without a byte
        (``trio.TooSlowError``): the read of an event stream. Cheaper than a cancel
        scope around :meth:`receive_some`: the scope is entered only when the read
        has to wait, around the wait alone."""
        return await self._receive(_RECEIVE_SIZE, timeout)

    async def _receive(self, size: int, timeout: float) -> bytes:
        """Up to ``size`` decrypted bytes. A checkpoint whether or not it waits, that
        loses no byte to a cancellation: cancellation is checked before anything is
        read, and a read that did not wait yields, shielded, after (so a caller's
        ``move_on_after`` around one read can go on reading)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        yielded = False
        while True:
            try:
                data = self._ssl.read(size)
            except ssl.SSLWantReadError:
                if self._outgoing.pending:
                    await self._flush()  # a TLS message of its own to answer first
                    yielded = True
                yielded |= await self._fill(timeout)
                continue
            except ssl.SSLZeroReturnError:  # close_notify: a clean end
                data = b""
            except ssl.SSLError as exc:
                if not _is_eof(exc):
                    raise trio.BrokenResourceError(f"TLS error: {exc}") from exc
                data = b""  # a ragged EOF, as HTTPS servers close: the end
            # A TLS message of our own still to send (rare after the handshake) waits
            # for the next read or write: sent now, a cancellation could lose `data`.
            if not yielded:
                await trio.lowlevel.cancel_shielded_checkpoint()
            return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and send all of ``data``."""
        view = memoryview(data)
        while view:
            written = self._ssl.write(view)
            view = view[written:]
        await self._flush()

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        """Close the socket (no close_notify: nothing waits for the server)."""
        await self.transport_stream.aclose()

    async def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending:
            await self.transport_stream.send_all(pending)

    async def _fill(self, timeout: float = math.inf) -> bool:
        """Read the socket into the incoming BIO (its EOF too), waiting at most
        ``timeout`` seconds for it (then ``trio.TooSlowError``); True if it waited
        (a trip through the scheduler)."""
        if self._eof:
            raise trio.BrokenResourceError("TLS stream read past its end")
        sock = self._sock
        waited = False
        if sock is None:  # trio's socket hides its own: the public way
            with trio.move_on_after(timeout) as idle:
                raw = await self._socket.recv(_RECEIVE_SIZE)
            if idle.cancelled_caught:
                raise trio.TooSlowError
            waited = True
        else:
            while True:
                try:
                    raw = sock.recv(_RECEIVE_SIZE)
                    break
                except BlockingIOError:
                    pass
                with trio.CancelScope(deadline=trio.current_time() + timeout) as idle:
                    await trio.lowlevel.wait_readable(sock)
                if idle.cancelled_caught:
                    raise trio.TooSlowError
                waited = True
        if raw:
            self._incoming.write(raw)
        else:
            self._eof = True
            self._incoming.write_eof()
        return waited
