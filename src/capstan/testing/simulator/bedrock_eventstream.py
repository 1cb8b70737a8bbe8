"""AWS event-stream framing (`application/vnd.amazon.eventstream`), the simulator's encoder.

Bedrock's streaming APIs do not use server-sent events: every event is one binary frame, and
clients (boto3, the AWS SDKs, Capstan's Bedrock adapter through botocore's parser) reject a
frame whose lengths or checksums are wrong. Encoding them here, rather than canning bytes,
lets the tests prove the framing by decoding it with botocore itself.

A frame, all integers big-endian:

    total length u32 | headers length u32 | prelude CRC32 u32 | headers | payload | message CRC32

The prelude CRC covers the first 8 bytes; the message CRC covers everything before it, the
prelude CRC included. A header is `name length u8 | name | type u8 | value`; the simulator
only needs type 7 (a UTF-8 string, with a u16 length).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from typing import Any

import orjson

CONTENT_TYPE = "application/vnd.amazon.eventstream"

_PRELUDE = struct.Struct(">II")
_CRC = struct.Struct(">I")
_STRING_HEADER = 7
_MAX_NAME = 255
_MAX_VALUE = 32_767


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """The headers section: every value typed as a string."""
    out = bytearray()
    for name, value in headers.items():
        raw_name = name.encode()
        raw_value = value.encode()
        if not raw_name or len(raw_name) > _MAX_NAME:
            raise ValueError(f"an event-stream header name must be 1-{_MAX_NAME} bytes")
        if len(raw_value) > _MAX_VALUE:
            raise ValueError(f"an event-stream header value must be at most {_MAX_VALUE} bytes")
        out += bytes([len(raw_name)]) + raw_name
        out += bytes([_STRING_HEADER]) + struct.pack(">H", len(raw_value)) + raw_value
    return bytes(out)


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One complete frame, lengths and both checksums included."""
    raw_headers = encode_headers(headers)
    total = _PRELUDE.size + _CRC.size + len(raw_headers) + len(payload) + _CRC.size
    prelude = _PRELUDE.pack(total, len(raw_headers))
    prelude += _CRC.pack(zlib.crc32(prelude))
    body = prelude + raw_headers + payload
    return body + _CRC.pack(zlib.crc32(body))


def event_frame(event_type: str, payload: Any) -> bytes:
    """A Converse stream event (`messageStart`, `contentBlockDelta`, ...) carrying JSON."""
    return encode_message(
        {
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        },
        orjson.dumps(payload),
    )


def exception_frame(exception_type: str, message: str) -> bytes:
    """A modelled mid-stream failure (`throttlingException`, `modelStreamErrorException`, ...);
    the SDKs raise it as an error named by `exception_type`."""
    return encode_message(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        orjson.dumps({"message": message}),
    )
