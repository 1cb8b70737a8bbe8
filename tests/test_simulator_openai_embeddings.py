"""The simulator's OpenAI `/v1/embeddings`: deterministic unit vectors, base64 by default as the
SDK asks, the same numbers as floats, sized by the model and `dimensions`."""

from __future__ import annotations

import base64
import math
import struct

import openai

from tests.openai_spec import WireRecorder, validate_openai_exchange


def test_embeddings_default_to_base64_unit_vectors(
    openai_client: openai.OpenAI, recorder: WireRecorder
) -> None:
    result = openai_client.embeddings.create(
        model="text-embedding-3-small", input=["one", "two words"]
    )
    raw = recorder.last.json()
    assert isinstance(raw["data"][0]["embedding"], str)
    assert [e.index for e in result.data] == [0, 1]
    vector = result.data[0].embedding
    assert len(vector) == 1536
    assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-5)
    assert result.usage.prompt_tokens == 3


def test_float_embeddings_equal_the_base64_ones(
    openai_client: openai.OpenAI, recorder: WireRecorder
) -> None:
    encoded = openai_client.embeddings.create(model="text-embedding-3-small", input="same text")
    floats = openai_client.embeddings.create(
        model="text-embedding-3-small", input="same text", encoding_format="float"
    )
    validate_openai_exchange(recorder.last, "CreateEmbeddingResponse")
    assert floats.data[0].embedding == encoded.data[0].embedding
    raw = base64.b64decode(recorder.exchanges[0].json()["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == floats.data[0].embedding


def test_embedding_size_follows_model_and_dimensions(openai_client: openai.OpenAI) -> None:
    large = openai_client.embeddings.create(model="text-embedding-3-large", input="x")
    short = openai_client.embeddings.create(
        model="text-embedding-3-large", input="x", dimensions=256
    )
    assert len(large.data[0].embedding) == 3072
    assert len(short.data[0].embedding) == 256


def test_token_list_inputs_are_embedded(openai_client: openai.OpenAI) -> None:
    result = openai_client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4]])
    assert len(result.data) == 2
    assert result.usage.prompt_tokens == 4
