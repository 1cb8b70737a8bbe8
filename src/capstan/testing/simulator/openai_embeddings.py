"""OpenAI's `/v1/embeddings`: deterministic unit vectors, as floats or as base64.

The official SDK asks for `encoding_format: "base64"` by default (little-endian float32 bytes) and
decodes them itself, so both encodings must carry the same numbers: vectors are rounded to
float32 before either is written. The same text always gives the same vector (a hash of the text
seeds it), whatever else is in the batch; `dimensions` shortens it and renormalises, as the
text-embedding-3 models do.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from starlette.responses import JSONResponse, Response

from capstan.testing.simulator import text
from capstan.testing.simulator.embeddings import gaussian_vector
from capstan.testing.simulator.openai_errors import OpenAIError, invalid_type, missing
from capstan.testing.simulator.state import SimulatorState

DEFAULT_DIMENSIONS = 1536
LARGE_DIMENSIONS = 3072
MAX_INPUTS = 2048
ENCODINGS = ("float", "base64")


def validate_embeddings(body: dict[str, Any]) -> None:
    model = body.get("model")
    if model is None:
        raise OpenAIError(400, "you must provide a model parameter")
    if not isinstance(model, str):
        raise invalid_type("model", "a string", model)
    if "input" not in body:
        raise missing("input")
    inputs = _inputs(body["input"])
    if not inputs or len(inputs) > MAX_INPUTS or any(len(item) == 0 for item in inputs):
        raise OpenAIError(
            400,
            "'$.input' is invalid. Please check the API reference: "
            "https://platform.openai.com/docs/api-reference.",
            param="input",
        )
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ENCODINGS:
        raise OpenAIError(
            400,
            f"Invalid value: '{encoding}'. Supported values are: 'float' and 'base64'.",
            param="encoding_format",
            code="invalid_value",
        )
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        not isinstance(dimensions, int)
        or isinstance(dimensions, bool)
        or not 1 <= dimensions <= full_dimensions(model)
    ):
        raise OpenAIError(
            400,
            f"Invalid value for 'dimensions': must be an integer between 1 and "
            f"{full_dimensions(model)}.",
            param="dimensions",
            code="invalid_value",
        )


def _inputs(value: Any) -> list[str | list[int]]:
    """The inputs as texts or token lists; raises on a shape OpenAI does not accept."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(_is_int(item) for item in value):
        return [value]
    if isinstance(value, list) and all(
        isinstance(item, str) or (isinstance(item, list) and all(_is_int(t) for t in item))
        for item in value
    ):
        return list(value)
    raise invalid_type("input", "a string, an array of strings, or an array of token arrays", value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def full_dimensions(model: str) -> int:
    return LARGE_DIMENSIONS if "large" in model else DEFAULT_DIMENSIONS


def input_tokens(body: dict[str, Any]) -> list[int]:
    """Tokens of each input: words of a text, or the length of a token list."""
    return [
        text.count_tokens(item) if isinstance(item, str) else len(item)
        for item in _inputs(body["input"])
    ]


def vector(item: str | list[int], dimensions: int, size: int) -> list[float]:
    """A unit vector of `dimensions` floats (float32 values) seeded by the text alone: the
    first `dimensions` of the model's full `size`, renormalised."""
    key = item if isinstance(item, str) else " ".join(map(str, item))
    values = gaussian_vector(dimensions, "embedding", key, size)
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *values)))


async def respond(
    body: dict[str, Any], model: str, _state: SimulatorState, headers: dict[str, str]
) -> Response:
    size = full_dimensions(model)
    dimensions = body.get("dimensions") or size
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(_inputs(body["input"])):
        values = vector(item, dimensions, size)
        embedding: Any = (
            base64.b64encode(struct.pack(f"<{dimensions}f", *values)).decode()
            if as_base64
            else values
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(input_tokens(body))
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
        headers=headers,
    )
