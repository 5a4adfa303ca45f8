"""The Cyberun task API, sans-IO: settings, requests, and what each answer means.

Every driver's ``Client`` (trio, asyncio, blocking) is a thin loop around these, so
the rules are written once: where the key, base URL and team come from and what they
may contain; the path of each endpoint; the headers every call carries; and, for one
JSON call, whether an answer is its value, a redirect to follow (same origin only, a
handful at most, a POST only where the status keeps the method), or one of our errors
(a refusal with its body and ``Retry-After``, a body in an encoding we did not ask
for, JSON that does not decode or is nested too deep). No I/O, no clock.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import TYPE_CHECKING, Any, Union
from urllib.parse import quote, urlencode

from ._errors import ConfigurationError, ContentTypeError, HTTPStatusError, TaskEventError
from ._rules import (
    ERROR_BODY_LIMIT,
    MAX_REDIRECTS,
    REDIRECT_STATUSES,
    USER_AGENT,
    HeaderFields,
    check_headers,
    follow_redirect,
    joined,
    parse_http_date,
    parse_retry_after,
    parse_url,
    refused,
    unsupported_encoding,
)
from .tasks import TaskSnapshot, _load_json, decode_task_snapshot

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "DEFAULT_BASE_URL",
    "JSON_BODY_LIMIT",
    "Call",
    "Settings",
    "list_path",
    "read_list",
    "read_run",
    "run_path",
    "task_path",
]

DEFAULT_BASE_URL = "https://core.cyberun.cloud/api/v1/r"
#: An API key, or a function returning the current one (called for each connection).
KeySource = Union[str, "Callable[[], str]", None]
#: Headers the API's own settings set: given with ``api_key=`` and ``team_id=``.
_OWN_HEADERS = {"authorization": "api_key=", "x-team-id": "team_id="}
#: The largest JSON answer read (a hostile server must not fill memory).
JSON_BODY_LIMIT = 16 * 1024 * 1024


def _header_safe(value: str) -> bool:
    """Printable ASCII without spaces: what a token or an id can be in a header."""
    return value.isascii() and value.isprintable() and " " not in value


def _seg(text: str) -> str:
    """A path segment from a caller's id (``/`` and the like percent-encoded)."""
    return quote(text, safe="@")


class Settings:
    """Who calls the API and where it is: the key, the base URL, the team.

    Args:
        api_key: A JWT, ``sk-…`` or ``dk-…`` key; default ``CYBERUN_API_KEY``. Or a
            function returning the current key, called for each connection and each
            call (a key that rotates, a short-lived JWT).
        base_url: Default ``CYBERUN_BASE_URL``, else the public API.
        team_id: Sent as ``X-Team-ID`` (a JWT needs it); default ``CYBERUN_TEAM_ID``.
        headers: More headers for every request (a tracing id, say); not
            Authorization or X-Team-ID, which ``api_key`` and ``team_id`` set.

    Raises:
        ConfigurationError: No key, a key, team id or header a request cannot carry,
            or a base URL that cannot be used (plain ``http`` to a host that is not
            loopback).
    """

    def __init__(
        self,
        api_key: KeySource = None,
        base_url: str | None = None,
        team_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        for name, value in (("base_url", base_url), ("team_id", team_id)):
            if value is not None and not isinstance(value, str):
                raise ConfigurationError(f"{name} must be a str, not {type(value).__name__}")
        self._key_source: Callable[[], str] | None = None
        if callable(api_key):
            self._key_source = api_key
            self._api_key = ""
        elif api_key is not None and not isinstance(api_key, str):
            raise ConfigurationError(
                f"api_key must be a str or a function returning one, not {type(api_key).__name__}"
            )
        else:
            self._api_key = _checked_key(api_key or os.environ.get("CYBERUN_API_KEY", ""))
        self._extra = check_headers(headers)
        for name, _ in self._extra:
            option = _OWN_HEADERS.get(name.lower())
            if option is not None:
                raise ConfigurationError(f"the {name} header cannot be given: set {option}")
        base = base_url or os.environ.get("CYBERUN_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = base.rstrip("/")
        self.origin, base_path = parse_url(self.base_url)  # refuses plain http
        self.base_path = base_path.rstrip("/")
        self.team_id = team_id or os.environ.get("CYBERUN_TEAM_ID") or None
        if self.team_id is not None and not _header_safe(self.team_id):
            raise ConfigurationError("the team id contains characters a header cannot carry")

    def __repr__(self) -> str:
        return f"<sseproto Settings {self.base_url}>"  # never the key

    def headers(self) -> dict[str, str]:
        """The headers every request carries: the key (asked of its function, if it is
        one), the team, the caller's own.

        Raises:
            ConfigurationError: The key function returned no key, or one a header
                cannot carry.
        """
        key = self._api_key if self._key_source is None else _checked_key(self._key_source())
        headers = {"Authorization": f"Bearer {key}", "User-Agent": USER_AGENT}
        if self.team_id:
            headers["X-Team-ID"] = self.team_id
        headers.update(self._extra)
        return headers

    def events_url(self, task_id: str) -> str:
        """The task's events stream."""
        return f"{self.base_url}/tasks/{_seg(task_id)}/events"


def _checked_key(key: object) -> str:
    if not isinstance(key, str) or not key.strip():
        raise ConfigurationError(
            "no API key: pass api_key= or set CYBERUN_API_KEY (a JWT, an sk-… or a dk-… key)"
        )
    key = key.strip()
    if not _header_safe(key):
        raise ConfigurationError(
            "the API key contains characters an HTTP header cannot carry (spaces, "
            "control characters or non-ASCII): check how it was copied"
        )
    return key


def task_path(task_id: str, what: str = "") -> str:
    """``/tasks/{id}``, or ``/tasks/{id}/{what}`` (``result``, ``cancel``)."""
    return f"/tasks/{_seg(task_id)}" + (f"/{what}" if what else "")


def run_path(workflow: str) -> str:
    """Where a workflow runs: by id (a UUID), or by slug (``slug@version`` pins one)."""
    try:
        uuid.UUID(workflow)
    except ValueError:
        return f"/workflows/slug/{_seg(workflow)}/run"
    return f"/workflows/{_seg(workflow)}/run"


def read_run(answer: Any, path: str) -> str:
    """The task id a run answered."""
    task_id = answer.get("task_id") if isinstance(answer, dict) else None
    if not isinstance(task_id, str) or not task_id:
        raise TaskEventError(f"POST {path} did not answer a task_id", payload=answer)
    return task_id


def list_path(status: str | None, page: int, per_page: int) -> str:
    """``/tasks?...``: one page of the task list."""
    query: dict[str, str | int] = {"current_page": page, "per_page": per_page}
    if status:
        query["status"] = status
    return "/tasks?" + urlencode(query)


def read_list(answer: Any) -> tuple[list[TaskSnapshot], dict[str, Any]]:
    """The tasks of a list page, and its metadata."""
    if not isinstance(answer, dict):
        raise TaskEventError("GET /tasks did not answer an object", payload=answer)
    tasks = [decode_task_snapshot(t) for t in answer.get("task_list") or []]
    meta = answer.get("page_meta")
    return tasks, meta if isinstance(meta, dict) else {}


class Call:
    """One JSON call of the task API: the request to send, then what each answer means.

    ::

        call = Call(settings, "GET", task_path(task_id))
        while call.receive(*send(call.method, call.url, call.headers, call.body)):
            pass  # a redirect: call.url changed, send again
        value = call.value

    Attributes:
        method, url, headers, body: The request to send now (``url`` absolute; the
            headers as ``(name, value)`` str pairs, values sent as UTF-8).
        value: The decoded JSON of the answer (None for an empty body), once
            :meth:`receive` returned False.
        date: The answer's ``Date`` header in Unix seconds (the server's clock), or
            None if it sent none that parses.
    """

    def __init__(self, settings: Settings, method: str, path: str, payload: Any = None) -> None:
        self.method = method
        self.url = f"{settings.origin}{settings.base_path}{path}"
        headers = {**settings.headers(), "Accept": "application/json"}
        headers["Accept-Encoding"] = "identity"
        self.body = b""
        if payload is not None:
            headers["Content-Type"] = "application/json"
            self.body = json.dumps(payload).encode()
        self.headers = list(headers.items())
        # Messages name the endpoint, never its query.
        self._what = f"{method} {settings.base_url}{path.split('?', 1)[0]}"
        self._redirects = 0
        self.value: Any = None
        self.date: float | None = None

    def receive(self, status: int, fields: HeaderFields, reason: str, body: bytes) -> bool:
        """The answer: its status, headers (lower-case names, repeats kept), reason
        phrase and whole body (at most ``JSON_BODY_LIMIT`` bytes).

        Returns:
            True: a redirect was followed; send the request again to :attr:`url`.
            False: :attr:`value` holds the answer.

        Raises:
            HTTPStatusError: A refusal (any status from 300 on that is not followed),
                with the body, headers and ``Retry-After``.
            ContentTypeError: A body in a Content-Encoding other than identity.
            TaskEventError: A body that is not JSON (or nested too deep).
        """
        unreadable = unsupported_encoding(fields)
        if unreadable is not None:
            raise ContentTypeError(
                f"{self._what} answered in {unreadable}; sseproto reads only uncompressed "
                f"answers (check the server, or a proxy that compresses)",
                status_code=status,
                body=body[:ERROR_BODY_LIMIT],
                headers=joined(fields),
            )
        # Redirects are followed to the same origin only, a handful at most; a POST
        # only where the status keeps the method (307, 308).
        if status in REDIRECT_STATUSES and (self.method == "GET" or status >= 307):
            self._redirects += 1
            locations = [value for name, value in fields if name == "location"]
            try:
                if self._redirects > MAX_REDIRECTS:
                    raise HTTPStatusError(
                        f"{self._what}: more than {MAX_REDIRECTS} redirects in a row",
                        status_code=status,
                    )
                self.url = follow_redirect(self.url, status, locations, self._what)
            except HTTPStatusError as exc:
                exc.body, exc.headers = body[:ERROR_BODY_LIMIT], joined(fields)
                raise
            return True
        if status >= 300:
            headers = joined(fields)
            raise HTTPStatusError(
                refused(self._what, status, reason),
                status_code=status,
                body=body[:ERROR_BODY_LIMIT],
                headers=headers,
                retry_after=parse_retry_after(headers.get("retry-after")),
            )
        self.date = parse_http_date(next((v for n, v in fields if n == "date"), None))
        if body.strip():
            try:
                self.value = _load_json(body)  # bounded in depth, as every decoder's JSON
            except ValueError as exc:
                raise TaskEventError(f"{self._what} did not answer JSON ({exc})") from None
        return False
