"""The command line: ``sseproto demo | watch | run | tail | parse | serve``.

Every subcommand is a thin shell over the library: ``watch`` and ``demo`` call
:func:`sseproto.watch` (the demo against the embedded test server, over real TLS on
loopback), ``tail`` is :func:`sseproto.open_event_stream`, ``parse`` the sans-IO
parser. Progress goes to stderr, results to stdout; ``--json`` writes JSON Lines.
A user error is one line that says what to do, never a traceback; only the library's
own errors (:class:`~sseproto.SSEProtoError`) and the command line's are caught, so a
bug still shows its traceback. Text from a server is printed literally, with the
characters a terminal would act on escaped (:func:`_printable`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import itertools
import json
import logging
import math
import os
import re
import ssl
import sys
from dataclasses import fields, is_dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple, TextIO

import trio

from . import tasks as _tasks
from ._client import Client, watch
from ._errors import (
    ConfigurationError,
    HTTPStatusError,
    NameResolutionError,
    ProxyError,
    SSEProtoError,
    TaskCancelled,
    TaskEventError,
    TaskFailed,
)
from ._parser import EventStreamParser, ServerSentEvent
from ._proxy import FROM_ENVIRONMENT, parse_proxy
from ._rules import check_headers
from ._stream import open_event_stream
from ._version import __version__

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1  # the task failed
EXIT_USAGE = 2  # argparse's own
EXIT_CANCELLED = 3  # the task was cancelled
EXIT_AUTH = 4  # no key, or the server refused it (401/403)
EXIT_ERROR = 5  # any other error (network, protocol)
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_BROKEN_PIPE = 141  # stdout's reader went away, as a shell reports SIGPIPE


class _UserError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# -- output ----------------------------------------------------------------------------

# What a terminal acts on instead of showing: the C0 controls (ESC starts the sequences
# that move the cursor, clear the screen, set the title or make a link; CR and LF
# would forge lines), DEL, the C1 controls (U+009B is a CSI on its own), the Unicode
# line and paragraph separators, and the bidirectional embeddings, overrides and
# isolates (which make text read as something it is not).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _printable(text: object) -> str:
    """Text from a server (or quoting one), safe for a terminal: each character of
    ``_UNSAFE`` becomes a ``\\uXXXX`` escape. The same escape means the same character
    in JSON, and json.dumps leaves these characters only inside strings, so a JSON
    line passed through here still decodes to exactly what it encoded."""
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", str(text))


def to_json(value: Any, _depth: int = 0) -> Any:
    """A JSON-able view of events, snapshots and results (dataclasses, datetimes).

    Raises:
        TaskEventError: Objects and arrays nested deeper than ``MAX_JSON_DEPTH``: the
            decoders refuse such JSON text, but take Python objects as they are, and
            this function (and ``json.dumps``) would exhaust the stack on them.
    """
    if isinstance(value, ServerSentEvent):
        return {"event": value.event, "data": value.data, "id": value.id}
    if is_dataclass(value) and not isinstance(value, type):
        # Not counted as a level: the decoded objects never contain one another, so
        # only their JSON values nest.
        out: dict[str, Any] = {"type": type(value).__name__}
        for f in fields(value):
            if f.name in ("sse", "raw"):
                continue
            out[f.name] = to_json(getattr(value, f.name), _depth)
        return out
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (dict, list, tuple)):
        if _depth >= _tasks.MAX_JSON_DEPTH:
            raise TaskEventError(
                f"the server sent JSON nested deeper than {_tasks.MAX_JSON_DEPTH} levels; "
                f"it is not printed"
            )
        if isinstance(value, dict):
            return {str(k): to_json(v, _depth + 1) for k, v in value.items()}
        return [to_json(v, _depth + 1) for v in value]
    if isinstance(value, BaseException):
        return {"type": type(value).__name__, "message": str(value)}
    return value


def _print_json(value: Any, out: TextIO = sys.stdout) -> None:
    print(_printable(json.dumps(to_json(value), ensure_ascii=False)), file=out, flush=True)


def _print_error(message: object) -> None:
    """``sseproto: <message>`` on stderr (messages may quote the server)."""
    print(f"sseproto: {_printable(message)}", file=sys.stderr, flush=True)


class _Display:
    """A live progress display on stderr, a line per task, as ``docker pull`` shows
    its layers (rich when installed, plain lines otherwise)."""

    def __init__(self, labels: dict[str, str], *, enabled: bool = True) -> None:
        self.labels = {key: _printable(label) for key, label in labels.items()}
        self._progress: Any = None
        self._rows: dict[str, Any] = {}
        if not enabled:  # --json: stdout carries the events, stderr stays quiet
            return
        try:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        except ImportError:  # the cli extra is not installed: plain lines
            return
        console = Console(stderr=True)
        if not console.is_interactive:  # a log file or CI: a plain line per event
            return
        # The label and the detail are literal text, never rich markup: a server's
        # "[link=...]" must not become a link, nor a stray "[/x]" crash the display.
        self._progress = Progress(
            TextColumn("{task.fields[label]}", style="bold", markup=False),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[detail]}", markup=False),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        for key, label in self.labels.items():
            self._rows[key] = self._progress.add_task(
                "", total=1.0, label=label, detail="connecting"
            )

    def __enter__(self) -> _Display:
        if self._progress is not None:
            self._progress.start()
            _LogLines.console = self._progress.console  # log lines print above the bar
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            _LogLines.console = None
            self._progress.stop()

    def update(self, key: str, item: Any) -> None:
        detail, done = _describe(item)
        detail = _printable(detail)
        if self._progress is None:
            share = "" if done is None else f"{done:4.0%} "
            print(f"{self.labels[key]}: {share}{detail}", file=sys.stderr, flush=True)
            return
        if done is None:
            self._progress.update(self._rows[key], detail=detail)
        else:
            self._progress.update(self._rows[key], detail=detail, completed=done)


class _Transfers:
    """Progress of uploads and downloads on stderr: a bar per file and one for all
    (rich on a terminal), else a line as each file completes."""

    def __init__(self, *, enabled: bool = True) -> None:
        self._progress: Any = None
        self._rows: dict[str, Any] = {}
        self._done: set[str] = set()
        self._enabled = enabled
        if not enabled:
            return
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TransferSpeedColumn,
            )
        except ImportError:
            return
        console = Console(stderr=True)
        if not console.is_interactive:
            return
        self._progress = Progress(
            TextColumn("{task.fields[label]}", markup=False),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
        )
        self._total = self._progress.add_task("", total=None, label="total")
        self._sizes: dict[str, tuple[int, int | None]] = {}

    def __enter__(self) -> _Transfers:
        if self._progress is not None:
            self._progress.start()
            _LogLines.console = self._progress.console
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            _LogLines.console = None
            self._progress.stop()

    def update(self, name: str, have: int, total: int | None) -> None:
        label = _printable(name)
        if self._progress is None:
            if self._enabled and total is not None and have >= total and name not in self._done:
                self._done.add(name)
                print(f"{label}: {have:,} bytes", file=sys.stderr, flush=True)
            return
        if name not in self._rows:
            self._rows[name] = self._progress.add_task("", total=total, label=label)
        self._progress.update(self._rows[name], completed=have, total=total)
        self._sizes[name] = (have, total)
        totals = [t for _, t in self._sizes.values()]
        self._progress.update(
            self._total,
            completed=sum(h for h, _ in self._sizes.values()),
            total=None if None in totals else sum(t for t in totals if t is not None),
        )


class _LogLines(logging.Handler):
    """The library's log (reconnects, polling) as lines on stderr, above any progress bar."""

    console: Any = None

    def emit(self, record: logging.LogRecord) -> None:
        line = f"  {_printable(record.getMessage())}"
        if _LogLines.console is not None:
            _LogLines.console.print(line, style="dim", markup=False, highlight=False)
        else:
            print(line, file=sys.stderr, flush=True)


def _describe(item: Any) -> tuple[str, float | None]:
    """One line about an event or snapshot, and the progress it implies (0..1)."""
    if isinstance(item, _tasks.Progress):
        parts = []
        if item.step_total:
            parts.append(f"step {item.step_current or 0}/{item.step_total}")
        if item.current_node:
            parts.append(f"node {item.current_node}")
        if item.stage:
            parts.append(item.stage)
        if item.message:
            parts.append(item.message)
        return " · ".join(parts) or "running", item.progress
    if isinstance(item, _tasks.StatusChanged):
        return str(item.status), None
    if isinstance(item, _tasks.TaskSnapshot):
        return f"{item.status} (polled)", 1.0 if item.is_terminal else None
    if isinstance(item, _tasks.Completed):
        return "completed", 1.0
    if isinstance(item, _tasks.Failed):
        return f"failed: {item.error}", None
    if isinstance(item, _tasks.Cancelled):
        return "cancelled", None
    if isinstance(item, _tasks.StreamError):
        return f"server error: {item.message}", None
    return type(item).__name__, None


# -- subcommands -----------------------------------------------------------------------


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    cacert = getattr(args, "cacert", None)
    if not cacert:
        return None
    try:
        return ssl.create_default_context(cafile=cacert)
    except ssl.SSLError as exc:  # before OSError, which it is too
        raise _UserError(
            f"--cacert {cacert!r} is not a PEM CA file ({exc.reason or exc}); give the "
            f"CA's certificate in PEM form (-----BEGIN CERTIFICATE-----)",
            EXIT_USAGE,
        ) from None
    except OSError as exc:
        raise _UserError(
            f"--cacert {cacert!r}: {exc.strerror or exc}; give the path of a PEM CA file",
            EXIT_USAGE,
        ) from None


#: The exit statuses of ``watch`` from the best to the worst: several tasks exit with
#: the worst of theirs.
_SEVERITY = [EXIT_OK, EXIT_CANCELLED, EXIT_FAILED, EXIT_AUTH, EXIT_ERROR]


def _event_json(task_id: str, item: Any) -> dict[str, Any]:
    """A watched item as a JSON line: the task, the API's event name (``snapshot`` for
    a polled state), the SSE ``id``, the raw payload, then the typed fields."""
    if isinstance(item, TaskEventError):
        sse, data = item.event, item.payload
    else:
        sse, data = getattr(item, "sse", None), getattr(item, "raw", None)
    out: dict[str, Any] = {
        "task_id": task_id,
        "event": sse.event if sse is not None else "snapshot",
        "id": sse.id if sse is not None else "",
        "data": data,
    }
    for key, value in to_json(item).items():
        out.setdefault(key, value)  # a snapshot's own "id" is the task's: kept above
    return out


def _error_json(task_id: str, exc: SSEProtoError) -> dict[str, Any]:
    error = to_json(exc)
    if isinstance(exc, TaskFailed):
        error["reason"] = exc.error
    return {"task_id": task_id, "error": error}


async def _watch_task(
    task_id: str,
    display: _Display,
    results: dict[str, Any],
    *,
    as_json: bool,
    poll_interval: float,
    last_event_id: str = "",
    **client: Any,
) -> int:
    def on_event(item: Any) -> None:
        if as_json:
            _print_json(_event_json(task_id, item))
        else:
            display.update(task_id, item)

    try:
        results[task_id] = await watch(
            task_id,
            on_event=on_event,
            poll_interval=poll_interval,
            last_event_id=last_event_id,
            **client,
        )
    except TaskFailed as exc:
        if as_json:
            _print_json(_error_json(task_id, exc))
        reason = exc.error or "no reason given"
        print(_printable(f"task {task_id} failed: {reason}"), file=sys.stderr)
        return EXIT_FAILED
    except TaskCancelled as exc:
        if as_json:
            _print_json(_error_json(task_id, exc))
        print(_printable(f"task {task_id} was cancelled"), file=sys.stderr)
        return EXIT_CANCELLED
    return EXIT_OK


async def _watch_one_of_many(task_id: str, codes: dict[str, int], **options: Any) -> None:
    """One task of ``watch ID ID...``: its error is its line, the others go on."""
    try:
        codes[task_id] = await _watch_task(task_id, **options)
    except SSEProtoError as exc:
        if options.get("as_json"):
            _print_json(_error_json(task_id, exc))
        _print_error(f"task {task_id}: {_in_cli_terms(exc)}")
        codes[task_id] = EXIT_AUTH if _refused(exc) else EXIT_ERROR


def _refused(exc: SSEProtoError) -> bool:
    """A setting that cannot work, or credentials refused: exit status 4, as ``main``
    gives for the same errors of a single command."""
    if isinstance(exc, ConfigurationError):
        return True
    if isinstance(exc, ProxyError):
        return exc.status_code == 407
    return isinstance(exc, HTTPStatusError) and exc.status_code in (401, 403)


async def _watch_tasks(
    task_ids: Sequence[str],
    *,
    as_json: bool,
    poll_interval: float,
    last_event_id: str = "",
    results: dict[str, Any] | None = None,
    **client: Any,
) -> int:
    """Follow the tasks to their ends, a display line (or JSON Lines) for each; the
    results on stdout once all are done (and in ``results``, by task); the exit
    status of the worst outcome."""
    results = {} if results is None else results
    codes: dict[str, int] = {}
    labels = {task_id: f"task {task_id}" for task_id in task_ids}
    with _Display(labels, enabled=not as_json) as display:
        options: dict[str, Any] = dict(
            display=display,
            results=results,
            as_json=as_json,
            poll_interval=poll_interval,
            last_event_id=last_event_id,
            **client,
        )
        if len(task_ids) == 1:  # its error is the command's (with its hint)
            codes[task_ids[0]] = await _watch_task(task_ids[0], **options)
        else:
            async with trio.open_nursery() as nursery:
                for task_id in task_ids:
                    nursery.start_soon(
                        functools.partial(_watch_one_of_many, task_id, codes, **options)
                    )
    for task_id in task_ids:  # in the order given, once all are done
        if task_id not in results:
            continue
        result = results[task_id]
        if as_json:
            _print_json({"task_id": task_id, **to_json(result)})
        else:
            for url in result.artifact_urls():
                print(_printable(url))
            if not result.artifact_urls():
                _print_json(result.output)
    return max(codes.values(), key=_SEVERITY.index)


def _proxy(args: argparse.Namespace) -> str | None:
    """``--proxy URL`` (checked here, so that its errors name the option), ``--no-proxy``
    (None), or neither: the environment's."""
    if args.no_proxy:
        return None
    if args.proxy is None:
        return FROM_ENVIRONMENT
    try:
        parse_proxy(args.proxy, source="--proxy")
    except ConfigurationError as exc:
        raise _UserError(str(exc), EXIT_USAGE) from None
    return str(args.proxy)


def _client_args(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "api_key": args.api_key,
        "base_url": args.base_url,
        "team_id": args.team_id,
        "ssl_context": _ssl_context(args),
        "proxy": _proxy(args),
    }


async def cmd_watch(args: argparse.Namespace) -> int:
    if args.last_event_id is not None and len(args.task_ids) > 1:
        raise _UserError("--last-event-id resumes one task: give one ID with it", EXIT_USAGE)
    return await _follow(args, args.task_ids, _client_args(args))


async def _follow(args: argparse.Namespace, task_ids: Sequence[str], client: dict[str, Any]) -> int:
    """``watch`` and ``run --watch``: the tasks to their ends, within ``--timeout``; on
    Ctrl-C with ``--cancel-on-interrupt``, each is cancelled on the server too."""
    results: dict[str, Any] = {}
    try:
        with trio.fail_after(args.timeout) if args.timeout else contextlib.nullcontext():
            code = await _watch_tasks(
                task_ids,
                as_json=args.json,
                poll_interval=args.poll_interval,
                last_event_id=getattr(args, "last_event_id", None) or "",
                results=results,
                **client,
            )
            if args.download is not None:  # the outputs of the tasks that completed
                for task_id in task_ids:
                    if task_id in results:
                        folder = args.download
                        if len(task_ids) > 1:
                            folder = os.path.join(folder, _safe_dir(task_id))
                        await _download(task_id, folder, as_json=args.json, client=client)
            return code
    except trio.TooSlowError:
        raise _UserError(f"gave up after --timeout {args.timeout} s", EXIT_ERROR) from None
    except BaseException as exc:  # Ctrl-C arrives as KeyboardInterrupt, maybe in a group
        if args.cancel_on_interrupt and _is_interrupt(exc):
            for task_id in task_ids:
                await _cancel_on_server(task_id, client)
        raise


def _safe_dir(task_id: str) -> str:
    """A task id as a folder name (ids are the server's: nothing that climbs out)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", task_id).strip(".")
    return name or "task"


def _is_interrupt(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(KeyboardInterrupt)[0] is not None
    return isinstance(exc, KeyboardInterrupt)


async def _cancel_on_server(task_id: str, client: dict[str, Any]) -> None:
    """``--cancel-on-interrupt``: ask the server to cancel, shielded, for 10 s at most."""
    with trio.CancelScope(shield=True) as scope:
        scope.deadline = trio.current_time() + 10
        try:
            async with Client(**client) as c:
                await c.cancel_task(task_id)
        except SSEProtoError as exc:
            message = f"could not cancel task {task_id} on the server: {exc}"
            print(_printable(message), file=sys.stderr)
            return
    if scope.cancelled_caught:
        message = f"could not cancel task {task_id} on the server in 10 s"
    else:
        message = f"cancelled task {task_id} on the server"
    print(_printable(message), file=sys.stderr)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def _table(rows: list[list[str]]) -> None:
    """Columns padded to their widest cell (cells are server text: escaped)."""
    rows = [[_printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


async def cmd_tasks(args: argparse.Namespace) -> int:
    async with Client(**_client_args(args)) as client:
        tasks, meta = await client.list_tasks(
            status=args.status, page=args.page, per_page=args.per_page
        )
    if args.json:
        _print_json({"tasks": tasks, "page_meta": meta})
        return EXIT_OK
    rows = [["ID", "STATUS", "WORKFLOW", "CREATED", "ERROR"]]
    for task in tasks:
        error = (task.error or "").splitlines()[0][:60] if task.error else ""
        rows.append(
            [task.id or "", str(task.status), task.workflow_id or "", _when(task.created_at), error]
        )
    _table(rows)
    total = meta.get("total_count")
    shown = f"page {args.page}, {len(tasks)} tasks"
    if isinstance(total, int) and not isinstance(total, bool):
        shown += f" of {total}"
    print(shown, file=sys.stderr)
    return EXIT_OK


async def cmd_status(args: argparse.Namespace) -> int:
    async with Client(**_client_args(args)) as client:
        snapshot = await client.get_task(args.task_id)
    if args.json:
        _print_json(snapshot)
        return EXIT_OK
    rows = []
    for f in fields(snapshot):
        if f.name == "raw":
            continue
        value = getattr(snapshot, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, (dict, list)):
            value = json.dumps(to_json(value), ensure_ascii=False)
        rows.append([f"{f.name}:", "" if value is None else str(value)])
    _table(rows)
    return EXIT_OK


async def _download(
    task_id: str, directory: str, *, as_json: bool, client: dict[str, Any]
) -> list[str]:
    """Every output of the task into ``directory``; the files' paths."""
    with _Transfers(enabled=not as_json) as display:
        async with Client(**client) as c:
            paths = await c.download(task_id, directory, on_progress=display.update)
    for path in paths:
        if as_json:
            _print_json({"task_id": task_id, "file": str(path)})
        else:
            print(_printable(path), flush=True)
    return [str(path) for path in paths]


async def cmd_download(args: argparse.Namespace) -> int:
    await _download(args.task_id, args.output, as_json=args.json, client=_client_args(args))
    return EXIT_OK


async def cmd_cancel(args: argparse.Namespace) -> int:
    async with Client(**_client_args(args)) as client:
        for task_id in args.task_ids:
            await client.cancel_task(task_id)
            if args.json:
                _print_json({"task_id": task_id, "cancelled": True})
            else:
                print(_printable(f"cancelled {task_id}"), flush=True)
    return EXIT_OK


async def cmd_result(args: argparse.Namespace) -> int:
    async with Client(**_client_args(args)) as client:
        result = await client.get_result(args.task_id)
    if args.json:
        _print_json(result)
        return EXIT_OK
    if result.error:
        print(_printable(f"error: {result.error}"))
    if result.expires_at is not None:
        print(f"links expire: {result.expires_at.isoformat()}", file=sys.stderr)
    for name, url in result.download_urls.items():
        print(_printable(f"{name}  {url}"))
    if result.download_url:
        print(_printable(result.download_url))
    if result.output is not None:
        _print_json(result.output)
    return EXIT_OK


async def cmd_run(args: argparse.Namespace) -> int:
    parameters: dict[str, Any] = {}
    uploads: dict[str, str] = {}
    for item in args.param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _UserError(f"-p takes key=value, not {item!r}", EXIT_USAGE)
        if value.startswith("@"):  # a file: uploaded, then passed as its file_key
            if not os.path.isfile(value[1:]):
                raise _UserError(f"-p {key}=@{value[1:]}: no such file", EXIT_USAGE)
            uploads[key] = value[1:]
            continue
        try:
            parameters[key] = json.loads(value)
        except ValueError:
            parameters[key] = value  # a plain string
        except RecursionError:
            raise _UserError(f"-p {key}: the JSON value is nested too deeply", EXIT_USAGE) from None
    client = _client_args(args)
    async with Client(**client) as c:
        for key, path in uploads.items():
            name = os.path.basename(path)
            with _Transfers(enabled=not args.json) as display:
                parameters[key] = await c.upload(
                    path, on_progress=functools.partial(display.update, name)
                )
        task_id = await c.run_workflow(args.workflow, parameters)
    if args.json:
        _print_json({"task_id": task_id})
    else:
        print(_printable(task_id), flush=True)  # the server's id
    if not args.watch:
        return EXIT_OK
    return await _follow(args, [task_id], client)


def _headers(options: list[str] | None) -> dict[str, str]:
    """The -H 'Name: value' options as a dict, each checked as the library will."""
    pairs: list[tuple[str, str]] = []
    for header in options or []:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            # Not quoted: a header given without its name may be just the secret.
            raise _UserError("-H takes 'Name: value' (a name, a colon, the value)", EXIT_USAGE)
        pairs.append((name.strip(), value.strip()))
    for name, _ in pairs:
        if name.lower() == "last-event-id":
            raise _UserError("-H cannot set Last-Event-ID: use --last-event-id", EXIT_USAGE)
    try:
        check_headers(pairs)  # a name or value HTTP cannot carry; never shows the value
    except ConfigurationError as exc:
        raise _UserError(f"-H: {exc}", EXIT_USAGE) from None
    return dict(pairs)


async def cmd_tail(args: argparse.Namespace) -> int:
    headers = _headers(args.header)
    async with open_event_stream(
        args.url,
        headers=headers,
        ssl_context=_ssl_context(args),
        last_event_id=args.last_event_id or "",
        proxy=_proxy(args),
    ) as stream:
        count = 0
        async for event in stream:
            _print_json(event)
            count += 1
            if count == args.count:
                break
    return EXIT_OK


def cmd_parse(args: argparse.Namespace) -> int:
    source: BinaryIO = sys.stdin.buffer
    if args.file not in (None, "-"):
        try:
            source = open(args.file, "rb")  # noqa: SIM115 (closed below)
        except OSError as exc:
            raise _UserError(
                f"cannot read {args.file!r}: {exc.strerror or exc}; give a file, or - for stdin",
                EXIT_USAGE,
            ) from None
    parser: EventStreamParser[Any] = EventStreamParser(comments=args.comments)
    try:
        while chunk := source.read(65536):
            for item in parser.feed(chunk):
                _print_json(item if isinstance(item, ServerSentEvent) else {"comment": item.text})
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    if parser.close():
        print("warning: the stream ended in the middle of an event", file=sys.stderr)
    return EXIT_OK


#: Why a --port cannot be listened on: in use, privileged, or not on this host.
_CANNOT_LISTEN = frozenset({errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL})


async def cmd_serve(args: argparse.Namespace) -> int:  # runs until Ctrl-C
    _needs_the_test_server("serve")
    from .testing import Task, scenario, serve

    scripted: dict[str, Task] = {}
    names: dict[str, str] = {}
    for item in args.task or []:
        task_id, sep, name = item.partition("=")
        try:
            if not sep or not task_id:
                raise ValueError(f"--task takes ID=SCENARIO, not {item!r}")
            scripted[task_id] = scenario(name, interval=args.interval)
        except ValueError as exc:
            raise _UserError(str(exc), EXIT_USAGE) from None
        names[task_id] = name
    async with contextlib.AsyncExitStack() as stack:
        try:
            server = await stack.enter_async_context(
                serve(
                    scripted,
                    token=args.token,
                    port=args.port,
                    names=args.name or (),
                    unknown=args.unknown,
                )
            )
        except (OSError, BaseExceptionGroup) as exc:  # trio's nursery may wrap it
            error = _unwrap(exc)
            if not (isinstance(error, OSError) and error.errno in _CANNOT_LISTEN):
                raise
            raise _UserError(
                f"cannot listen on 127.0.0.1 port {args.port}: {error.strerror or error}; "
                f"choose another --port (0: any free one)",
                EXIT_ERROR,
            ) from None
        print(f"base URL: {server.base_url}", flush=True)
        print(f"token:    {server.token}", flush=True)
        print(f"CA file:  {server.ca_path}  (export SSL_CERT_FILE=... to trust it)", flush=True)
        for task_id in scripted:
            print(f"task:     {task_id} ({names[task_id]})", flush=True)
        await trio.sleep_forever()
    raise AssertionError("unreachable")  # sleep_forever only ends by an exception


def _needs_the_test_server(what: str) -> None:
    """The embedded server makes its certificates with trustme (the cli extra)."""
    try:
        import trustme  # noqa: F401
    except ImportError:
        raise _UserError(
            f"{what} runs the embedded test server, which needs the cli extra: "
            f"pip install 'sseproto[cli]'",
            EXIT_USAGE,
        ) from None


async def cmd_demo(args: argparse.Namespace) -> int:
    """Two simulated tasks over the embedded server, watched the way a real one is."""
    _needs_the_test_server("the demo")
    from .testing import Fault, Task, comfyui_timeline, nerfstudio_timeline, serve

    interval = args.interval
    tasks = {
        "demo-comfyui": Task(
            steps=comfyui_timeline(steps=6, interval=interval),
            faults=[Fault("drop_mid_event", after=4)],  # the stream drops once: resumed
            retry=int(interval * 1000),
            heartbeat=interval / 2,
        ),
        "demo-nerfstudio": Task(
            steps=nerfstudio_timeline(interval=interval), workflow_id="wf-nerfstudio-demo"
        ),
    }
    async with serve(tasks) as server:
        print(f"demo server on {server.base_url} (TLS, a private CA)", file=sys.stderr)
        for task_id in tasks:
            code = await _watch_tasks(
                [task_id],
                as_json=args.json,
                poll_interval=1.0,
                api_key=server.token,
                base_url=server.base_url,
                ssl_context=server.ssl_context,
            )
            if code != EXIT_OK:
                return code
    return EXIT_OK


async def cmd_bench(args: argparse.Namespace) -> int:
    """Measure an SSE endpoint as a user sees it (or the whole stack, with no URL)."""
    headers = _headers(args.header)
    if args.url:
        context = _ssl_context(args)
        report = await _measure(args.url, headers, context, args.duration, proxy=_proxy(args))
    else:
        _needs_the_test_server("bench without a URL")
        from .testing import Task, progress, serve

        steps = [progress(i / args.events, step_current=i) for i in range(1, args.events + 1)]
        async with serve({"bench": Task(steps=steps)}) as server:
            headers["Authorization"] = f"Bearer {server.token}"
            url = f"{server.base_url}/tasks/bench/events"
            report = await _measure(url, headers, server.ssl_context, args.duration, args.events)
    if args.json:
        print(json.dumps(report), flush=True)
    else:
        width = max(map(len, report))
        for key, value in report.items():
            shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
            print(f"{key:<{width}}  {shown}")
    return EXIT_OK


async def _measure(
    url: str,
    headers: dict[str, str],
    context: ssl.SSLContext | None,
    duration: float,
    limit: int | None = None,
    *,
    proxy: str | None = None,
) -> dict[str, Any]:
    """Read events for ``duration`` seconds (or ``limit`` events): rates and gaps."""
    arrivals: list[float] = []
    size = 0
    start = trio.current_time()
    with trio.move_on_after(duration):
        async with open_event_stream(
            url, headers=headers, ssl_context=context, proxy=proxy
        ) as stream:
            async for event in stream:
                arrivals.append(trio.current_time())
                size += len(event.data.encode())
                if limit is not None and len(arrivals) >= limit:
                    break
    elapsed = (arrivals[-1] if arrivals else trio.current_time()) - start
    gaps = sorted(b - a for a, b in itertools.pairwise(arrivals))

    def percentile(q: float) -> float:
        return gaps[min(len(gaps) - 1, int(q * len(gaps)))] * 1000 if gaps else 0.0

    return {
        "events": len(arrivals),
        "seconds": elapsed,
        "events_per_s": len(arrivals) / elapsed if elapsed > 0 else 0.0,
        "data_mb_per_s": size / 1e6 / elapsed if elapsed > 0 else 0.0,
        "first_event_ms": (arrivals[0] - start) * 1000 if arrivals else 0.0,
        "gap_p50_ms": percentile(0.50),
        "gap_p90_ms": percentile(0.90),
        "gap_p99_ms": percentile(0.99),
    }


# -- the options and the subcommands ---------------------------------------------------


_EXIT_CODES = """exit status:
  0    the task completed
  1    the task failed
  2    a usage error
  3    the task was cancelled
  4    no API key or another setting that cannot work, the key refused (401, 403)
  4    or the proxy's credentials refused (407)
  5    any other error (network, protocol, --timeout)
  130  interrupted (Ctrl-C)"""


def _seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"takes a number of seconds above 0, not {text!r}")
    return value


def _count(text: str) -> int:
    """An argparse type: a whole number above 0."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"takes a whole number above 0, not {text!r}")
    return value


def _port(text: str) -> int:
    """An argparse type: a TCP port, or 0 for any free one."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"takes a port from 0 to 65535, not {text!r}")
    return value


# The options several subcommands share are declared once, in parent parsers grouped by
# what they are; each subcommand lists those it takes (argparse's ``parents=``), with
# ``_OWN`` where its own arguments stand among them (its help shows them in that order).


def _options(add: Callable[[argparse.ArgumentParser], object]) -> argparse.ArgumentParser:
    """A parser that only holds options, as ``add`` adds them, for others to take."""
    p = argparse.ArgumentParser(add_help=False)
    add(p)
    return p


def _connection_options(p: argparse.ArgumentParser) -> None:
    """Connection and TLS: the CA file to trust, a proxy or none."""
    p.add_argument("--cacert", default=None, help="a PEM CA file to trust")
    proxy = p.add_mutually_exclusive_group()
    proxy.add_argument(
        "--proxy",
        default=None,
        metavar="URL",
        help="an http://[user:password@]host:port proxy (default: $HTTPS_PROXY, "
        "$ALL_PROXY, except for $NO_PROXY)",
    )
    proxy.add_argument(
        "--no-proxy", action="store_true", help="connect directly, whatever the environment"
    )


def _header_options(p: argparse.ArgumentParser) -> None:
    """The request's headers, to any SSE endpoint."""
    p.add_argument("-H", "--header", action="append", metavar="'Name: value'")


def _api_options(p: argparse.ArgumentParser) -> None:
    """The task API: the key, the server and the team."""
    p.add_argument("--api-key", default=None, help="default: $CYBERUN_API_KEY")
    p.add_argument("--base-url", default=None, help="default: $CYBERUN_BASE_URL")
    p.add_argument("--team-id", default=None, help="default: $CYBERUN_TEAM_ID")


def _polling_options(p: argparse.ArgumentParser) -> None:
    """The task API where a task's stream is unavailable."""
    p.add_argument(
        "--poll-interval",
        type=_seconds,
        default=3.0,
        metavar="S",
        help="seconds between polls where the stream is unavailable (default: 3)",
    )


def _json_option(says: str) -> argparse.ArgumentParser:
    """Output: JSON on stdout (its help ``says`` what), instead of text for a person."""
    return _options(lambda p: p.add_argument("--json", action="store_true", help=says))


def _follow_options(p: argparse.ArgumentParser) -> None:
    """Following tasks to their ends (``watch``, ``run --watch``)."""
    p.add_argument(
        "--download",
        default=None,
        metavar="DIR",
        help="then download the outputs into DIR (DIR/ID with several tasks)",
    )
    p.add_argument("--timeout", type=_seconds, default=None, metavar="S", help="give up after S s")
    p.add_argument(
        "--cancel-on-interrupt",
        action="store_true",
        help="on Ctrl-C, also cancel the task on the server",
    )


_CONNECTION = _options(_connection_options)
_HEADERS = _options(_header_options)
_JSON_LINES = _json_option("JSON Lines on stdout")
_JSON_OBJECT = _json_option("one JSON object on stdout")
_FOLLOW = _options(_follow_options)
#: What every command of the task API takes, in this order.
_TASK_API = (_options(_api_options), _CONNECTION, _JSON_LINES, _options(_polling_options))
#: Stands, among a subcommand's parent parsers, for the arguments its table entry adds.
_OWN = argparse.ArgumentParser(add_help=False)


# Each subcommand's own arguments.


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--interval", type=_seconds, default=0.25, metavar="S", help="between steps")


def _watch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task_ids", nargs="+", metavar="ID", help="one task or several")
    p.add_argument(
        "--last-event-id",
        default=None,
        metavar="ID",
        help="resume the stream after this event (a position saved earlier; one task)",
    )


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("workflow")
    p.add_argument(
        "-p",
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="a parameter; the value is read as JSON (7, true, [1,2]) or else as text; "
        "@PATH uploads the file and passes its file_key",
    )
    p.add_argument("--watch", action="store_true", help="then follow it")


def _tasks_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--status", default=None, help="only tasks in this status (running, ...)")
    p.add_argument("--page", type=_count, default=1, metavar="N", help="default: 1")
    p.add_argument("--per-page", type=_count, default=20, metavar="N", help="default: 20")


def _task_id_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("task_id", metavar="ID")


def _task_ids_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("task_ids", nargs="+", metavar="ID")


def _download_arguments(p: argparse.ArgumentParser) -> None:
    _task_id_argument(p)
    p.add_argument("-o", "--output", default=".", metavar="DIR", help="default: here")


def _tail_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("url")
    p.add_argument("--last-event-id", default=None)
    p.add_argument("-n", "--count", type=_count, default=None, help="stop after N events")


def _parse_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", default="-")
    p.add_argument("--comments", action="store_true", help="include comments")


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", nargs="?", default=None)
    p.add_argument("--duration", type=_seconds, default=10.0, metavar="S")
    p.add_argument("--events", type=_count, default=20000, help="events (embedded server)")


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=_port, default=0, help="default: any free one")
    p.add_argument("--token", default=None, help="default: a random sk-test-... key")
    p.add_argument(
        "--task",
        action="append",
        metavar="ID=SCENARIO",
        help="script a task: comfyui, nerfstudio, failed, cancelled, flaky (drops twice), "
        "polling (no stream) or forbidden (403, a feature off); any other id runs a "
        "ComfyUI-like timeline (or is unknown, with --unknown 404)",
    )
    p.add_argument("--interval", type=_seconds, default=0.5, metavar="S", help="between steps")
    p.add_argument(
        "--unknown",
        choices=["timeline", "404"],
        default="timeline",
        help="what an unscripted task id is: a ComfyUI-like timeline, or 404",
    )
    p.add_argument(
        "--name",
        action="append",
        metavar="HOST",
        help="another host name for its certificate (one a proxy resolves, say)",
    )


class _Command(NamedTuple):
    """A subcommand: its line in ``sseproto --help``, what adds its own arguments, what
    runs it (to its exit status), the shared options it takes in the order of its help
    (``_OWN`` for its own), the epilog of its help, and whether it reads any SSE endpoint
    (its refusals are explained as the URL's, not the task API's)."""

    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    options: tuple[argparse.ArgumentParser, ...] = (_OWN,)
    epilog: str | None = None
    any_endpoint: bool = False


def _in_trio(
    command: Callable[[argparse.Namespace], Awaitable[int]],
) -> Callable[[argparse.Namespace], int]:
    """An async subcommand, run in a trio run of its own."""

    def run(args: argparse.Namespace) -> int:
        return trio.run(command, args)

    return run


def _commands() -> dict[str, _Command]:
    """The subcommands, in the order ``--help`` lists them: the parser is built from this
    table and ``main`` runs the command through it. Made on each call, so that it names
    the functions this module holds then (a test may replace one)."""
    return {
        "demo": _Command(
            "watch two simulated tasks on an embedded server",
            _demo_arguments,
            _in_trio(cmd_demo),
            (_JSON_LINES, _OWN),
        ),
        "watch": _Command(
            "follow a task to its end (key: $CYBERUN_API_KEY)",
            _watch_arguments,
            _in_trio(cmd_watch),
            (*_TASK_API, _FOLLOW, _OWN),
            epilog=_EXIT_CODES,
        ),
        "run": _Command(
            "start a task from a workflow (id, slug or slug@version)",
            _run_arguments,
            _in_trio(cmd_run),
            (_OWN, *_TASK_API, _FOLLOW),
            epilog=_EXIT_CODES + "\n  (with --watch; without it, 0 once the task is started)",
        ),
        "tasks": _Command(
            "list tasks, newest first (a table, or --json)",
            _tasks_arguments,
            _in_trio(cmd_tasks),
            (*_TASK_API, _OWN),
        ),
        "download": _Command(
            "every output of a finished task into a folder",
            _download_arguments,
            _in_trio(cmd_download),
            (_OWN, *_TASK_API),
        ),
        "status": _Command(
            "one task, all its fields",
            _task_id_argument,
            _in_trio(cmd_status),
            (_OWN, *_TASK_API),
        ),
        "cancel": _Command(
            "cancel tasks (a no-op for a finished one)",
            _task_ids_argument,
            _in_trio(cmd_cancel),
            (_OWN, *_TASK_API),
        ),
        "result": _Command(
            "a finished task's outputs and their links",
            _task_id_argument,
            _in_trio(cmd_result),
            (_OWN, *_TASK_API),
        ),
        "tail": _Command(
            "any SSE endpoint, events as JSON Lines, reconnecting",
            _tail_arguments,
            _in_trio(cmd_tail),
            (_HEADERS, _OWN, _CONNECTION),
            any_endpoint=True,
        ),
        "parse": _Command(
            "a captured stream (file or -) to JSON Lines", _parse_arguments, cmd_parse
        ),
        "bench": _Command(
            "measure an SSE endpoint (no URL: the whole stack)",
            _bench_arguments,
            _in_trio(cmd_bench),
            (_HEADERS, _OWN, _CONNECTION, _JSON_OBJECT),
            any_endpoint=True,
        ),
        "serve": _Command(
            "run the embedded test server in the foreground",
            _serve_arguments,
            _in_trio(cmd_serve),
        ),
    }


def build_parser(commands: dict[str, _Command] | None = None) -> argparse.ArgumentParser:
    """The command line's parser, a subparser for each of ``commands`` (default: all)."""
    ap = argparse.ArgumentParser(
        epilog="Settings: $CYBERUN_API_KEY, $CYBERUN_BASE_URL, $CYBERUN_TEAM_ID (or flags). "
        "With no command: the demo.",
        prog="sseproto",
        description="Server-Sent Events and the Cyberun task API, from the command line.",
    )
    ap.add_argument("--version", action="version", version=f"sseproto {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in (_commands() if commands is None else commands).items():
        own = _options(command.arguments)
        sub.add_parser(
            name,
            help=command.help,
            parents=[own if options is _OWN else options for options in command.options],
            epilog=command.epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,  # epilogs laid out by hand
        )
    return ap


# -- entry point -----------------------------------------------------------------------


def _unwrap(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member groups (trio's nurseries wrap)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


#: What to do about a refused request: ("api" for the task API or "url", status).
_HINTS = {
    ("url", 401): "pass credentials with -H 'Authorization: Bearer ...'",
    ("url", 404): "check the URL",
    ("api", 400): "a JWT needs the team too (--team-id or $CYBERUN_TEAM_ID)",
    ("api", 401): "check the API key (--api-key or $CYBERUN_API_KEY)",
    ("api", 403): "the key may not do this; a JWT also needs the team ($CYBERUN_TEAM_ID)",
    ("api", 404): "check the task or workflow id and the base URL ($CYBERUN_BASE_URL)",
}


#: The library's parameters, as the command line's options say them.
_OPTIONS = [
    ("ssl_context= or set SSL_CERT_FILE", "--cacert or set SSL_CERT_FILE"),
    ("ssl_context=", "--cacert"),
    ("pass api_key= or set CYBERUN_API_KEY", "pass --api-key or set $CYBERUN_API_KEY"),
    ("api_key=", "--api-key"),
    ("base_url=", "--base-url"),
    ("team_id=", "--team-id"),
    ("proxy=None; on the command line, --no-proxy", "--no-proxy"),
    ("(proxy=, or $HTTPS_PROXY)", "(--proxy, or $HTTPS_PROXY)"),
]


def _in_cli_terms(exc: BaseException) -> str:
    """A library error's message with its parameters named as this command's options."""
    message = str(exc)
    for library, option in _OPTIONS:
        message = message.replace(library, option)
    return message


def _feature(exc: HTTPStatusError) -> str | None:
    """The licensed feature a 403's JSON body names (``{"feature": ...}``), if any."""
    try:
        body = json.loads(exc.body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    for key in ("feature", "feature_name", "license", "licensed_feature"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:80]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    commands = _commands()
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    log = logging.getLogger("sseproto")
    if not log.handlers:
        log.addHandler(_LogLines())
        log.setLevel(logging.INFO)
        log.propagate = False
    if args.command is None:  # no command: the demo, with its defaults
        args = parser.parse_args(["demo"])
    command = commands[args.command]
    try:
        try:
            return command.run(args)
        except BaseExceptionGroup as group:
            raise _unwrap(group) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Whoever read stdout went away (`sseproto parse big | head`): stop quietly, as
        # cat does. Not by SIGPIPE's default action, which would also kill `serve` when
        # a client hangs up. Further writes go nowhere, so Python's exit flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    # Only deliberate errors are caught: the command line's own and the library's (a
    # ValueError or OSError reaching here is a bug, and shows its traceback).
    except _UserError as exc:
        _print_error(exc)
        return exc.code
    except ConfigurationError as exc:  # a missing key, a URL or header that cannot work
        _print_error(_in_cli_terms(exc))
        return EXIT_AUTH
    except NameResolutionError as exc:  # a typo in a URL: say which setting to check
        if exc.proxy:
            hint = "check --proxy or $HTTPS_PROXY (--no-proxy to connect directly)"
        elif command.any_endpoint:
            hint = "check the URL's host"
        else:
            hint = "check --base-url or $CYBERUN_BASE_URL"
        what = str(exc).rsplit("; check", 1)[0]  # the library's advice, for options
        _print_error(f"{what}; {hint}")
        return EXIT_ERROR
    except ProxyError as exc:
        if exc.status_code == 407:
            _print_error(f"{exc} (--proxy http://user:password@host:port, or $HTTPS_PROXY)")
            return EXIT_AUTH
        _print_error(exc)
        return EXIT_ERROR
    except HTTPStatusError as exc:
        generic = command.any_endpoint  # not the task API
        refusal = _HINTS.get(("url" if generic else "api", exc.status_code))
        feature = _feature(exc) if exc.status_code == 403 else None
        if feature is not None:
            refusal = (
                f"the feature {feature!r} is not enabled for this account or team; "
                f"ask its administrator"
            )
        _print_error(f"{_in_cli_terms(exc)}; {refusal}" if refusal else _in_cli_terms(exc))
        return EXIT_AUTH if exc.status_code in (401, 403) else EXIT_ERROR
    except SSEProtoError as exc:
        _print_error(_in_cli_terms(exc))
        return EXIT_ERROR


def run() -> None:
    """The console script's entry point."""
    sys.exit(main())
