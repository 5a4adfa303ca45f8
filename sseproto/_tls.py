"""TLS for every driver: the shared default context, and what a failed handshake means.

The default trust is ``ssl.create_default_context()``, which honours ``SSL_CERT_FILE``
and ``SSL_CERT_DIR``. Loading the system's CA bundle costs ~50 ms of CPU and ~860 KiB
a time, so it is built once per process and shared (rebuilt only when those variables
change). A handshake that fails for a reason other than the network (a certificate,
no common TLS version or cipher, a server that breaks it off) is a
:class:`~sseproto.TLSHandshakeError`: it would fail the same way again, so no driver
retries it.
"""

from __future__ import annotations

import os
import ssl

from ._errors import CertificateError, TLSHandshakeError

__all__ = ["default_ssl_context", "find_ssl_error", "handshake_error"]

_default_context: tuple[tuple[str | None, str | None], ssl.SSLContext] | None = None


def default_ssl_context() -> ssl.SSLContext:
    """``ssl.create_default_context()``, built once and shared by every connection
    that was given no context (rebuilt only if ``SSL_CERT_FILE`` or ``SSL_CERT_DIR``
    changed since, so the trust they name is always the one in use)."""
    global _default_context
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    if _default_context is None or _default_context[0] != key:
        _default_context = (key, ssl.create_default_context())
    return _default_context[1]


def find_ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The ``ssl.SSLError`` behind ``exc`` (itself, or along its causes and contexts:
    trio and httpx wrap it), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def handshake_error(origin: object, cause: ssl.SSLError) -> TLSHandshakeError:
    """Our error for a TLS handshake with ``origin`` that failed with ``cause``."""
    if isinstance(cause, ssl.SSLCertVerificationError):
        return CertificateError(
            f"the certificate of {origin} could not be verified ({cause.verify_message}); "
            f"if it is signed by a private CA, pass ssl_context= or set SSL_CERT_FILE"
        )
    if isinstance(cause, ssl.SSLEOFError):
        return TLSHandshakeError(
            f"the TLS handshake with {origin} failed: the server closed the connection "
            f"during the handshake ({cause.reason or cause}); it may accept no TLS "
            f"version or cipher this client offers (check the server's TLS settings)"
        )
    return TLSHandshakeError(
        f"the TLS handshake with {origin} failed: {cause.reason or cause} ({cause})"
    )
