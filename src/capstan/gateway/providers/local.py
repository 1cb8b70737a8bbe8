"""The `local` provider kind: models that run inside the gateway process, with no upstream.

Today one model, all-MiniLM-L6-v2 sentence embeddings (`serving/minilm.py`, the `local`
extra), served on `/v1/embeddings` like any vendor's: an alias or a deployment names it, and
the call is authenticated, budgeted and recorded like every other. The model loads on the
first call (about half a second) and runs in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from capstan.gateway.providers.base import (
    ChatChunk,
    ChatCompletion,
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    TranslationError,
    Upstream,
)
from capstan.gateway.upstream_client import UpstreamClient

if TYPE_CHECKING:
    from capstan.serving.minilm import MiniLM

MAX_INPUTS = 2048


class LocalProvider:
    def __init__(self) -> None:
        self._model: MiniLM | None = None
        self._loading: asyncio.Lock | None = None

    async def chat(
        self, http: UpstreamClient, upstream: Upstream, request: ChatRequest
    ) -> ChatCompletion:
        raise TranslationError("the local provider serves embeddings only", param="model")

    def stream_chat(
        self, http: UpstreamClient, upstream: Upstream, request: ChatRequest
    ) -> AsyncIterator[ChatChunk]:
        raise TranslationError("the local provider serves embeddings only", param="model")

    async def embed(
        self, http: UpstreamClient, upstream: Upstream, request: EmbeddingRequest
    ) -> EmbeddingResponse:
        from capstan.serving.minilm import MODEL_ID

        if upstream.model != MODEL_ID:
            raise TranslationError(
                f"the local provider has no model {upstream.model!r} (it has {MODEL_ID})",
                param="model",
            )
        texts = _texts(request.get("input"))
        model = await self._loaded()
        dimensions = request.get("dimensions")
        if dimensions is not None and dimensions != model.dimensions:
            raise TranslationError(
                f"{MODEL_ID} makes {model.dimensions}-dimension vectors", param="dimensions"
            )
        vectors, counts = await asyncio.to_thread(lambda: (model.embed(texts), model.tokens(texts)))
        as_base64 = request.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": index,
                "embedding": (
                    base64.b64encode(vector.astype("<f4").tobytes()).decode()
                    if as_base64
                    else vector.tolist()
                ),
            }
            for index, vector in enumerate(vectors)
        ]
        tokens = sum(counts)
        return {
            "object": "list",
            "data": data,
            "model": MODEL_ID,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def _loaded(self) -> MiniLM:
        if self._model is None:
            if self._loading is None:
                self._loading = asyncio.Lock()
            async with self._loading:
                if self._model is None:
                    self._model = await asyncio.to_thread(_load)
        return self._model


def _load() -> MiniLM:
    from capstan.serving.minilm import MiniLM

    try:
        return MiniLM()
    except LookupError as exc:
        raise TranslationError(str(exc), param="model") from exc


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or not value
        or len(value) > MAX_INPUTS
        or not all(isinstance(text, str) for text in value)
    ):
        raise TranslationError(
            f"input is a string or a list of 1 to {MAX_INPUTS} strings (token arrays are "
            "not supported by the local model)",
            param="input",
        )
    return value
