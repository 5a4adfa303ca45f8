"""TLS over a trio socket for one connection, one task at a time: the trio driver's stream.

Theory of operation: ``trio.SSLStream`` is built for any number of tasks sending and
receiving at once: each read takes a conflict detector and a lock (whose acquisition
is a trip through the scheduler), on top of the socket's own wait. A connection of
ours is used by one task at a time (a request is sent, then its answer read), so
:class:`TLSStream` keeps only what that needs: an ``ssl.SSLObject`` between two
memory BIOs, and the socket's ``recv``/``send_all``. A read that has to wait costs one
trip through the scheduler (the socket's wait), which was two; one that does not wait
is still a checkpoint, as trio's conventions ask.

Semantics kept from ``SSLStream(https_compatible=True)``: the handshake verifies as
the context says (``server_hostname`` for SNI and the name check); a close without
``close_notify`` (a "ragged EOF", as HTTPS servers do) is an end of stream, not an
error; any other TLS error is ``trio.BrokenResourceError`` from the ``ssl.SSLError``.
"""

from __future__ import annotations

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
        size = _RECEIVE_SIZE if max_bytes is None else max_bytes
        checkpointed = False
        while True:
            try:
                data = self._ssl.read(size)
            except ssl.SSLWantReadError:
                if self._outgoing.pending:
                    await self._flush()  # a TLS message of its own to answer first
                await self._fill()  # a checkpoint: the socket's wait, or its yield
                checkpointed = True
                continue
            except ssl.SSLZeroReturnError:  # close_notify: a clean end
                data = b""
            except ssl.SSLError as exc:
                if not _is_eof(exc):
                    raise trio.BrokenResourceError(f"TLS error: {exc}") from exc
                data = b""  # a ragged EOF, as HTTPS servers close: the end
            if self._outgoing.pending:
                await self._flush()
            elif not checkpointed:
                await trio.lowlevel.checkpoint()  # it did not wait: still a checkpoint
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

    async def _fill(self) -> None:
        """Read the socket into the incoming BIO (its EOF too)."""
        if self._eof:
            raise trio.BrokenResourceError("TLS stream read past its end")
        data = await self._socket.recv(_RECEIVE_SIZE)
        if data:
            self._incoming.write(data)
        else:
            self._eof = True
            self._incoming.write_eof()
