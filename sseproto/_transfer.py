"""Uploads and downloads of the task API, sans-IO: names, requests, what answers mean.

Theory of operation: a task's outputs are presigned links in its result
(``download_url``, ``download_urls``); :func:`plan_downloads` names a file for each
(the last segment of the link's path, made safe and unique). :class:`Download` is
the rule of one file: a part file (``.NAME.part``) that grows until it is complete,
then is renamed, so a file under its own name is always whole; a ``Range`` request
resumes an interrupted part; a link past its ``expires_at`` (on the server's clock,
read from the ``Date`` of the answer that gave it: :func:`link_deadline`) is refreshed
before it is used; an answer says what next (append, start over, done, refresh the
links after a 403, fail). An upload is ``POST /files/presign`` (:func:`presign_body`,
:func:`read_presign`), then a PUT of the bytes with exactly the headers the answer
names. The links come from the server: they are checked like any URL (https, or
plain http to loopback), and our API key is never sent with them (the signature in
the link is the credential).

No I/O: the drivers open the files and the connections.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from ._errors import ConfigurationError, HTTPStatusError, TaskEventError
from ._rules import check_headers, count, parse_url, refused, shown

if TYPE_CHECKING:
    from .tasks import TaskResult

__all__ = [
    "Download",
    "Upload",
    "download_concurrency",
    "link_deadline",
    "plan_downloads",
    "presign_body",
    "read_presign",
]

#: Times the links are fetched again (``/result``) for one download before giving up.
MAX_REFRESHES = 3
#: Seconds before its ``expires_at`` that a link is no longer used: the request must
#: reach the storage in time, and both clocks count in whole seconds.
LINK_MARGIN = 2.0
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _safe_name(text: str) -> str:
    """A file name from server text: no path, no control or reserved characters."""
    name = _UNSAFE_NAME.sub("_", text).strip().strip(".")
    return name[:200] or ""


def plan_downloads(result: TaskResult) -> list[tuple[str, str, str]]:
    """``(output name, link, file name)`` for every link of ``result``: the file is
    named after the last segment of the link's path, made unique where two collide
    (``image.png``, ``image-2.png``), or after the output's name if it has none."""
    links: list[tuple[str, str]] = []
    if result.download_url:
        links.append(("output", result.download_url))
    links += [(name, url) for name, url in result.download_urls.items()]
    seen: set[str] = set()
    out = []
    for output, url in links:
        name = _safe_name(unquote(urlsplit(url).path.rsplit("/", 1)[-1])) or _safe_name(output)
        name = name or "output"
        stem, dot, ext = name.rpartition(".")
        if not dot:
            stem, ext = name, ""
        candidate, n = name, 1
        while candidate.lower() in seen:
            n += 1
            candidate = f"{stem}-{n}.{ext}" if dot else f"{stem}-{n}"
        seen.add(candidate.lower())
        out.append((output, url, candidate))
    return out


def link_deadline(
    result: TaskResult, server_date: float | None, wall_now: float, now: float
) -> float | None:
    """When the links of ``result`` must be fetched again before they are used, on the
    driver's clock (``now`` being the moment the answer came): its ``expires_at``
    against the ``Date`` of the same answer (``server_date``, Unix seconds), so that
    neither our clock nor the server's skew matters; without a ``Date``, against our
    wall clock (``wall_now``). :data:`LINK_MARGIN` early. None: no ``expires_at``.
    """
    if result.expires_at is None:
        return None
    reference = server_date if server_date is not None else wall_now
    return now + (result.expires_at.timestamp() - reference) - LINK_MARGIN


@dataclass
class Download:
    """One output's download, resumable: what to ask, and what an answer means.

    The driver keeps ``have`` (the part file's size) and calls :meth:`request`,
    :meth:`receive_response`, then writes the body to the part file (truncated first
    when :attr:`restart`), and renames it once :attr:`complete`.
    """

    output: str
    url: str
    file_name: str
    #: Bytes already in the part file.
    have: int = 0
    #: The whole size, once an answer said it (None before, or if it never does).
    total: int | None = None
    #: True when the part file must be emptied before the body is written.
    restart: bool = False
    #: When the link expires, on the driver's clock (:func:`link_deadline`); None: unknown.
    expires: float | None = None
    refreshes: int = field(default=0)

    def expired(self, now: float) -> bool:
        """Whether the link is past :attr:`expires` (at the driver's clock ``now``),
        so that the driver fetches the result again (and calls :meth:`new_link`)
        before asking. Counted with the refreshes a 403 causes: past
        :data:`MAX_REFRESHES`, the link is tried anyway and the storage judges."""
        if self.expires is None or now < self.expires or self.refreshes >= MAX_REFRESHES:
            return False
        self.refreshes += 1
        return True

    def request(self) -> tuple[str, list[tuple[str, str]]]:
        """The URL and headers of the next GET (never our API key: the link is
        presigned). Raises ConfigurationError for a link that cannot be fetched."""
        parse_url(self.url)  # https, or http to loopback only
        headers = [("Accept-Encoding", "identity")]
        if self.have:
            headers.append(("Range", f"bytes={self.have}-"))
        return self.url, headers

    def receive_response(self, status: int, headers: dict[str, str], reason: str = "") -> str:
        """What to do with the answer: ``"read"`` (write its body, from the part
        file's start if :attr:`restart`), ``"done"`` (the part file is already whole),
        ``"again"`` (ask again, for the whole file), or ``"refresh"`` (the link
        expired: fetch the result again and call :meth:`new_link`).

        Raises:
            HTTPStatusError: Any other answer (a 404, a 5xx), or a range the server
                did not honour as asked.
        """
        self.restart = False
        what = f"GET {self.file_name}"
        if status == 200:
            self.restart = True  # the server sends it whole: write it from its start
            self.have = 0
            self.total = _length(headers.get("content-length"))
            return "read"
        if status == 206:
            match = _CONTENT_RANGE.fullmatch(headers.get("content-range", "").strip())
            if match is None or int(match.group(1)) != self.have:
                raise HTTPStatusError(
                    f"{what}: the server answered a range other than the one asked for",
                    status_code=status,
                    headers=headers,
                )
            if match.group(3) != "*":
                self.total = int(match.group(3))
            return "read"
        if status == 416:  # nothing after what we have: whole, if the sizes agree
            size = headers.get("content-range", "").rpartition("/")[2]
            if size.isdigit() and int(size) == self.have:
                self.total = self.have
                return "done"
            self.have = 0  # the part is not this object's start: ask for all of it
            return "again"
        if status in (401, 403) and self.refreshes < MAX_REFRESHES:
            self.refreshes += 1  # a presigned link that expired
            return "refresh"
        raise HTTPStatusError(
            refused(what, status, reason)
            + ("; fetching fresh links did not help" if status in (401, 403) else ""),
            status_code=status,
            headers=headers,
        )

    def new_link(self, result: TaskResult, expires: float | None = None) -> None:
        """Take this output's link from a freshly fetched result, and when it expires
        (:func:`link_deadline`).

        Raises:
            TaskEventError: The new result has no link for this output.
        """
        for output, url, _ in plan_downloads(result):
            if output == self.output:
                self.url, self.expires = url, expires
                return
        raise TaskEventError(f"the result no longer has a link for the output {shown(self.output)}")

    @property
    def complete(self) -> bool:
        return self.total is not None and self.have >= self.total


def download_concurrency(value: object) -> int:
    """``download``'s ``concurrency``: files at once, at least 1 (``_rules.count``
    allows 0, which would wait forever).

    Raises:
        ConfigurationError: Anything else.
    """
    files = count("concurrency", value)
    if files < 1:
        raise ConfigurationError(f"concurrency must be an int of at least 1, not {value!r}")
    return files


def _length(value: str | None) -> int | None:
    if value is not None and value.strip().isdigit() and len(value.strip()) <= 18:
        return int(value.strip())
    return None


def presign_body(file_name: str, file_size: int, content_type: str | None = None) -> dict[str, Any]:
    """The JSON of ``POST /files/presign`` for a file (its type guessed from its name)."""
    guessed = content_type or mimetypes.guess_type(file_name)[0] or "application/octet-stream"
    return {"file_name": file_name, "file_size": file_size, "content_type": guessed}


@dataclass
class Upload:
    """A presigned upload: the key to pass to a workflow, where to PUT, with what."""

    file_key: str
    upload_url: str
    headers: list[tuple[str, str]] = field(repr=False)


def read_presign(answer: Any) -> Upload:
    """The answer of ``POST /files/presign``: ``{file_key, upload_url, upload_headers}``.

    Raises:
        TaskEventError: Not that object, or a field of the wrong type.
        ConfigurationError: A link or header that cannot be sent (plain http to a
            host that is not loopback, a header with a line break).
    """
    if not isinstance(answer, dict):
        raise TaskEventError("POST /files/presign did not answer an object", payload=answer)
    key, url, headers = (
        answer.get("file_key"),
        answer.get("upload_url"),
        answer.get("upload_headers"),
    )
    if not isinstance(key, str) or not key:
        raise TaskEventError("the presign answer has no file_key", field="file_key", payload=answer)
    if not isinstance(url, str) or not url:
        raise TaskEventError(
            "the presign answer has no upload_url", field="upload_url", payload=answer
        )
    if headers is None:
        headers = {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise TaskEventError(
            "the presign answer's upload_headers is not an object of strings",
            field="upload_headers",
            payload=answer,
        )
    parse_url(url)
    try:
        checked = check_headers(headers)
    except ConfigurationError as exc:
        raise ConfigurationError(f"the upload link's headers cannot be sent: {exc}") from None
    return Upload(key, url, checked)
