"""The simulator's event-stream encoder, checked against botocore's decoder (the AWS SDK's own)."""

from __future__ import annotations

from typing import Any, cast

import orjson
import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer, EventStreamMessage
from hypothesis import given
from hypothesis import strategies as st

from capstan.testing.simulator.bedrock_eventstream import (
    encode_message,
    event_frame,
    exception_frame,
)

header_names = st.text(min_size=1, max_size=40).filter(lambda s: len(s.encode()) <= 255)
header_values = st.text(max_size=200)


def decode(data: bytes, *, step: int | None = None) -> list[EventStreamMessage]:
    buffer = EventStreamBuffer()
    messages: list[EventStreamMessage] = []
    pieces = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    for piece in pieces:
        buffer.add_data(piece)
        messages.extend(buffer)
    return messages


def headers_of(message: EventStreamMessage) -> dict[str, Any]:
    return cast(dict[str, Any], message.headers)


@given(
    headers=st.dictionaries(header_names, header_values, max_size=5),
    payload=st.binary(max_size=2000),
)
def test_any_frame_decodes_to_its_headers_and_payload(
    headers: dict[str, str], payload: bytes
) -> None:
    [message] = decode(encode_message(headers, payload))
    assert headers_of(message) == headers
    assert message.payload == payload


@given(payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=5), step=st.integers(1, 64))
def test_frames_fed_in_pieces_decode_in_order(payloads: list[bytes], step: int) -> None:
    stream = b"".join(encode_message({":message-type": "event"}, p) for p in payloads)
    assert [m.payload for m in decode(stream, step=step)] == payloads


def test_event_frame_carries_the_converse_headers() -> None:
    [message] = decode(event_frame("contentBlockDelta", {"delta": {"text": "hi"}}))
    assert headers_of(message) == {
        ":event-type": "contentBlockDelta",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    assert orjson.loads(message.payload) == {"delta": {"text": "hi"}}


def test_exception_frame_names_the_exception() -> None:
    [message] = decode(exception_frame("throttlingException", "slow down"))
    assert headers_of(message)[":message-type"] == "exception"
    assert headers_of(message)[":exception-type"] == "throttlingException"
    assert orjson.loads(message.payload) == {"message": "slow down"}


def test_a_corrupted_payload_fails_the_message_checksum() -> None:
    frame = bytearray(event_frame("messageStart", {"role": "assistant"}))
    frame[-6] ^= 0xFF  # inside the payload, before the message CRC
    with pytest.raises(ChecksumMismatch):
        decode(bytes(frame))


def test_an_oversized_header_name_is_refused() -> None:
    with pytest.raises(ValueError, match="header name"):
        encode_message({"x" * 256: "v"}, b"")
