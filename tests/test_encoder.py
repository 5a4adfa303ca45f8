"""``encode_event`` and ``encode_comment``: the exact bytes, and the values refused.

That the output parses back to the same events is a property test
(``test_properties.py``); here is what the bytes look like.
"""

from __future__ import annotations

from typing import Any

import pytest

from sseproto import encode_comment, encode_event


@pytest.mark.parametrize(
    ("args", "encoded"),
    [
        pytest.param({"data": "hello"}, b"data: hello\n\n", id="one-line"),
        pytest.param(
            {"data": "a\nb\r\nc\rd"},
            b"data: a\ndata: b\ndata: c\ndata: d\n\n",
            id="each-line-end-splits",
        ),
        pytest.param({"data": "a\n"}, b"data: a\ndata:\n\n", id="trailing-line-end"),
        pytest.param({"data": "\n"}, b"data:\ndata:\n\n", id="only-a-line-end"),
        pytest.param({"data": " x "}, b"data:  x \n\n", id="spaces-kept"),
        pytest.param({"data": ""}, b"data:\n\n", id="empty-data-dispatches"),
        pytest.param({"data": None}, b"\n", id="no-data"),
        pytest.param({"data": None, "id": "7"}, b"id: 7\n\n", id="id-only"),
        pytest.param(
            {"data": "x", "event": "update", "id": "42", "retry": 3000},
            b"retry: 3000\nid: 42\nevent: update\ndata: x\n\n",
            id="all-fields",
        ),
        pytest.param({"data": "x", "id": ""}, b"id:\ndata: x\n\n", id="empty-id-resets"),
        pytest.param({"data": "x", "event": ""}, b"event:\ndata: x\n\n", id="empty-event"),
        pytest.param({"data": "x", "retry": 0}, b"retry: 0\ndata: x\n\n", id="retry-zero"),
        pytest.param(
            {"data": None, "retry": 2**64 - 1}, b"retry: 18446744073709551615\n\n", id="retry-max"
        ),
        pytest.param({"data": "é\0😀"}, "data: é\0😀\n\n".encode(), id="utf8-and-nul"),
        pytest.param({"data": "\u2028\x85"}, "data: \u2028\x85\n\n".encode(), id="not-line-ends"),
        pytest.param({"data": "x", "id": " 1"}, b"id:  1\ndata: x\n\n", id="id-leading-space"),
    ],
)
def test_encode_event_bytes(args: dict[str, Any], encoded: bytes) -> None:
    assert encode_event(**args) == encoded


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("ping", b": ping\n"),
        ("", b":\n"),
        (" indented", b":  indented\n"),
        ("a\nb\r\nc\rd", b": a\n: b\n: c\n: d\n"),
    ],
)
def test_encode_comment_bytes(text: str, encoded: bytes) -> None:
    assert encode_comment(text) == encoded


def test_encode_comment_defaults_to_empty() -> None:
    assert encode_comment() == b":\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"event": "a\rb"}, "event type"),
        ({"event": "a\nb"}, "event type"),
        ({"id": "1\0"}, "id"),
        ({"id": "1\r"}, "id"),
        ({"id": "1\n"}, "id"),
        ({"retry": -1}, "retry"),
        ({"retry": 2**64}, "retry"),  # past uint64: clients would ignore it
    ],
)
def test_encode_event_refuses_values_no_stream_can_carry(
    args: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        encode_event("x", **args)


@pytest.mark.parametrize(
    "args",
    [
        {"data": b"x"},
        {"data": 1},
        {"data": "x", "event": b"e"},
        {"data": "x", "id": 1},
        {"data": "x", "retry": True},
        {"data": "x", "retry": 1.5},
        {"data": "x", "retry": "1000"},
    ],
    ids=repr,
)
def test_encode_event_wrong_types(args: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        encode_event(**args)


def test_encode_comment_wrong_type() -> None:
    text: Any = b"ping"  # Any: past mypy, to the runtime check
    with pytest.raises(TypeError):
        encode_comment(text)
