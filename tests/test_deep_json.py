"""Deeply nested JSON: every decoder refuses it with its own error, never RecursionError,
and what the decoders accept can be printed by the command line (``to_json``)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Any

import pytest

import sseproto
from sseproto._cli import to_json
from sseproto.tasks import MAX_JSON_DEPTH

if TYPE_CHECKING:
    from collections.abc import Callable

#: Fine at the bound, refused one past it, and far past Python's recursion limit.
DEPTHS = [MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 50_000]


def nested_text(levels: int) -> str:
    """JSON text of ``levels`` containers inside each other (objects and arrays in
    turn), built as text: json.dumps of such a value would itself recurse."""
    opens = "".join("[" if i % 2 else '{"a": ' for i in range(levels))
    closes = "".join("]" if i % 2 else "}" for i in reversed(range(levels)))
    return f'{opens}"x"{closes}'


def nested_value(levels: int) -> Any:
    """The value of :func:`nested_text`, built without recursion."""
    value: Any = "x"
    for i in reversed(range(levels)):
        value = [value] if i % 2 else {"a": value}
    return value


def payload(levels: int, fields: str, key: str) -> str:
    """An object of ``levels`` levels in all: ``fields``, and ``key`` nested below them."""
    inner = nested_text(levels - 1)
    return f"{{{fields}, {json.dumps(key)}: {inner}}}"


def depth_of(value: Any) -> int:
    """How many containers deep ``value`` is (iterative)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def test_the_bound_is_100() -> None:
    assert MAX_JSON_DEPTH == 100
    assert depth_of(json.loads(nested_text(7))) == depth_of(nested_value(7)) == 7
    assert json.loads(nested_text(7)) == nested_value(7)


def sse(kind: str, data: str) -> sseproto.ServerSentEvent:
    return sseproto.ServerSentEvent(event=kind, data=data)


def signed(body: bytes) -> sseproto.WebhookEvent:
    signature = hmac.new(b"secret", body, hashlib.sha256).hexdigest()
    return sseproto.verify_webhook("secret", body, f"sha256={signature}")


def stream_event(kind: str, fields: str, key: str, attribute: str) -> Callable[[int], Any]:
    """Decode a ``kind`` event whose ``key`` is nested; answer its typed ``attribute``."""

    def decode(levels: int) -> Any:
        event = sseproto.decode_task_event(sse(kind, payload(levels, fields, key)))
        return getattr(event, attribute)

    return decode


#: Each decoder, given a payload nested ``levels`` deep; and where the nesting ends up.
DECODERS: dict[str, Callable[[int], Any]] = {
    "failed_error": stream_event("failed", '"task_id": "t", "status": "failed"', "error", "error"),
    "completed_output": stream_event(
        "completed", '"task_id": "t", "status": "completed"', "output", "output"
    ),
    "error_message": stream_event("error", '"task_id": "t"', "message", "message"),
    "status_extra": stream_event("status", '"task_id": "t", "status": "running"', "x", "raw"),
    "progress_extra": stream_event("progress", '"task_id": "t", "progress": 0.5', "x", "raw"),
    "cancelled_extra": stream_event("cancelled", '"task_id": "t"', "x", "raw"),
    "snapshot_str": lambda n: (
        sseproto.decode_task_snapshot(
            payload(n, '"id": "t", "task_status": "failed"', "task_error")
        ).error
    ),
    "snapshot_bytes": lambda n: (
        sseproto.decode_task_snapshot(
            payload(n, '"id": "t", "task_status": "failed"', "task_error").encode()
        ).error
    ),
    "result_str": lambda n: (
        sseproto.decode_task_result(payload(n, '"id": "t"', "task_output")).output
    ),
    "result_bytes": lambda n: (
        sseproto.decode_task_result(payload(n, '"id": "t"', "task_output").encode()).output
    ),
    "webhook": lambda n: (
        signed(
            payload(n, '"event_type": "task.completed", "task_id": "t"', "task_output").encode()
        ).output
    ),
}


@pytest.mark.parametrize("levels", DEPTHS)
@pytest.mark.parametrize("decode", DECODERS.values(), ids=DECODERS.keys())
def test_each_decoder_bounds_the_depth(decode: Callable[[int], Any], levels: int) -> None:
    if levels <= MAX_JSON_DEPTH:
        nested = decode(levels)
        if isinstance(nested, str):  # an error message: the JSON, re-serialised
            nested = json.loads(nested)
        if isinstance(nested, dict) and "x" in nested:  # raw: the whole payload
            assert depth_of(nested) == levels
        else:
            assert depth_of(nested) == levels - 1  # the payload itself is the first level
        return
    with pytest.raises(sseproto.TaskEventError) as caught:  # never RecursionError
        decode(levels)
    if levels == MAX_JSON_DEPTH + 1:
        assert f"deeper than {MAX_JSON_DEPTH}" in str(caught.value)


@pytest.mark.parametrize("levels", DEPTHS)
def test_an_unknown_event_keeps_json_only_within_the_bound(levels: int) -> None:
    event = sseproto.decode_task_event(sse("brand_new", nested_text(levels)))
    assert isinstance(event, sseproto.UnknownEvent)
    assert len(event.data) > 2 * levels  # the text is kept whole, whatever its depth
    if levels <= MAX_JSON_DEPTH:
        assert depth_of(event.json) == levels
    else:
        assert event.json is None
        assert event.raw == {}


def test_the_command_line_prints_a_result_at_the_bound() -> None:
    """`watch --json` and the result line: to_json, then json.dumps."""
    fields = {"id": "t", "completed_at": "2026-01-02T03:04:05Z"}
    text = payload(MAX_JSON_DEPTH, json.dumps(fields)[1:-1], "task_output")
    from_text = sseproto.decode_task_result(text)
    deepest = nested_value(MAX_JSON_DEPTH - 1)  # the whole payload at the bound
    from_dict = sseproto.decode_task_result({**fields, "task_output": deepest})
    for result, levels in ((from_text, MAX_JSON_DEPTH - 1), (from_dict, MAX_JSON_DEPTH - 1)):
        shown = json.loads(json.dumps(to_json(result), ensure_ascii=False))
        assert shown["type"] == "TaskResult"
        assert shown["completed_at"] == "2026-01-02T03:04:05+00:00"
        assert depth_of(shown["output"]) == levels
        assert shown["output"] == result.output
        assert depth_of(json.loads(json.dumps(to_json(result.output)))) == levels


@pytest.mark.parametrize("levels", DEPTHS[1:])
def test_the_command_line_refuses_deeper_objects_it_is_given(levels: int) -> None:
    """An object built by hand (the decoders refuse such JSON, text or dict): to_json
    stops at the same bound instead of exhausting the stack."""
    result = sseproto.TaskResult(id="t", output=nested_value(levels))
    for value in (result, result.output):
        with pytest.raises(sseproto.TaskEventError, match=f"deeper than {MAX_JSON_DEPTH}"):
            to_json(value)


def test_every_event_the_stream_decoder_accepts_can_be_printed() -> None:
    """to_json of each event type at the bound (what `watch --json` prints)."""
    fields = '"task_id": "t", "progress": 0.5, "status": "running"'
    for kind in ("status", "progress", "completed", "failed", "cancelled", "error", "other"):
        key = {"failed": "error", "error": "message"}.get(kind, "output")
        event = sseproto.decode_task_event(sse(kind, payload(MAX_JSON_DEPTH, fields, key)))
        shown = json.loads(json.dumps(to_json(event)))
        assert shown["type"] == type(event).__name__
        if kind == "completed":  # the nesting is printed where it is kept outside raw
            assert depth_of(shown["output"]) == MAX_JSON_DEPTH - 1
        elif kind == "other":
            assert depth_of(shown["json"]) == MAX_JSON_DEPTH
        elif kind in ("failed", "error"):  # the message is the nested JSON, as text
            text = shown["error" if kind == "failed" else "message"]
            assert depth_of(json.loads(text)) == MAX_JSON_DEPTH - 1


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH, 50_000])
def test_a_payload_given_as_a_dict_is_bounded_too(depth: int) -> None:
    # A dict decoded elsewhere (by the caller): the bound holds for it as well. With
    # the outer object, the whole payload is depth + 1 levels deep.
    deep = {"task_status": "failed", "task_error": nested_value(depth)}
    if depth + 1 <= MAX_JSON_DEPTH:
        assert sseproto.decode_task_snapshot(deep).error
    else:
        with pytest.raises(sseproto.TaskEventError, match="deeper than"):
            sseproto.decode_task_snapshot(deep)
        with pytest.raises(sseproto.TaskEventError, match="deeper than"):
            sseproto.decode_task_result({"task_output": nested_value(depth)})
