"""``import sseproto`` loads no I/O library: the parser, the task decoder and the
reconnection machine work with trio and h11 unavailable; the trio driver loads on
first use."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest

import sseproto

#: Never loaded by the sans-IO layers (trio and h11 are blocked outright below).
IO_MODULES = ("trio", "h11", "ssl", "socket", "asyncio", "httpx")

SANS_IO = textwrap.dedent(
    """
    import sys

    sys.modules["trio"] = None  # an import of either now raises ImportError
    sys.modules["h11"] = None

    import sseproto

    parser = sseproto.EventStreamParser()
    events = parser.feed(b'event: progress\\nid: 1\\ndata: {"task_id": "t", "progress": 0.5}\\n\\n')
    assert sseproto.decode_task_event(events[0]).progress == 0.5

    es = sseproto.EventSource("https://example.com/events")
    connect = es.next_action(0.0)
    assert isinstance(connect, sseproto.Connect), connect
    assert connect.url == "https://example.com/events"
    assert es.receive_response(200, [(b"content-type", b"text/event-stream")], 0.1)
    received = es.receive_data(b"retry: 500\\nid: 7\\ndata: hello\\n\\n")
    assert [(e.id, e.data) for e in received] == [("7", "hello")]
    es.connection_closed(5.0)
    wait = es.next_action(5.0)
    assert isinstance(wait, sseproto.Wait) and wait.until == 5.5, wait
    again = es.next_action(5.5)
    assert isinstance(again, sseproto.Connect)
    assert ("Last-Event-ID", "7") in again.headers
    assert not es.receive_response(204, [], 5.6)
    assert es.next_action(5.6) == sseproto.Stop(None)

    loaded = sorted(
        name for name in {IO_MODULES!r} if sys.modules.get(name) is not None
    )
    assert not loaded, f"import sseproto loaded {loaded}"
    assert "sseproto._client" not in sys.modules and "sseproto._stream" not in sys.modules

    try:
        sseproto.open_event_stream
    except ImportError as exc:
        assert exc.name in ("trio", "h11"), exc.name
    else:
        raise AssertionError("open_event_stream loaded without trio")
    print("ok")
    """
).replace("{IO_MODULES!r}", repr(IO_MODULES))


def test_the_sans_io_layers_load_no_io_library() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", SANS_IO],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"ok\n"


LAZY = {
    "Client": "sseproto._client",
    "watch": "sseproto._client",
    "EventStream": "sseproto._stream",
    "open_event_stream": "sseproto._stream",
}


@pytest.mark.parametrize(("name", "module"), LAZY.items(), ids=LAZY.keys())
def test_the_driver_names_resolve_on_first_use(
    name: str, module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = vars(sseproto)
    monkeypatch.delitem(namespace, name, raising=False)  # as before any first use
    assert name not in namespace
    assert name in dir(sseproto)
    assert name in sseproto.__all__
    value = getattr(sseproto, name)  # through the module's __getattr__
    assert value is getattr(importlib.import_module(module), name)
    assert namespace[name] is value  # kept: later uses are plain attribute reads


def test_the_default_base_url_needs_no_driver() -> None:
    # A constant of the (pure) task API: reading it loads no I/O library.
    assert "DEFAULT_BASE_URL" in vars(sseproto)
    assert sseproto.DEFAULT_BASE_URL == "https://core.cyberun.cloud/api/v1/r"


@pytest.mark.parametrize("name", ["asyncio", "sync"])
def test_the_httpx_drivers_are_attributes_after_import_sseproto(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(vars(sseproto), name, raising=False)  # as before any first use
    monkeypatch.delitem(sys.modules, f"sseproto.{name}", raising=False)
    module = getattr(sseproto, name)  # `import sseproto; sseproto.sync.watch(...)`
    assert module is sys.modules[f"sseproto.{name}"]
    assert {"Client", "watch", "open_event_stream", "EventStream"} <= set(vars(module))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        sseproto.NoSuchThing  # noqa: B018
