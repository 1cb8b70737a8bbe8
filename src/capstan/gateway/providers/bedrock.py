"""AWS Bedrock through the Converse API (chat) and InvokeModel (Titan text embeddings).

Requests are signed with botocore's own SigV4 signer and sent with the gateway's upstream
client, so Bedrock shares the keep-alive pools and failure mapping of every other adapter
without pulling boto3's synchronous HTTP stack into the data plane. Streams are decoded with
botocore's `EventStreamBuffer`, the parser the AWS SDK itself uses, so lengths and CRCs are
checked exactly as boto3 checks them.

Credentials come from the upstream's options (`region`, `aws_access_key_id`,
`aws_secret_access_key`, optional `aws_session_token`); without them a Bedrock API key in
`api_key` is sent as a bearer token, which Bedrock also accepts.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import orjson
import yarl

if TYPE_CHECKING:
    from botocore.eventstream import EventStreamBuffer

from capstan.gateway.providers.base import (
    ChatChunk,
    ChatCompletion,
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    FailureKind,
    TranslationError,
    Upstream,
    UpstreamError,
)
from capstan.gateway.providers.bedrock_translate import (
    ConverseStreamTranslator,
    from_converse,
    to_converse,
)
from capstan.gateway.providers.http import (
    failure_kind,
    json_object,
    upstream_post,
    vendor_message,
)
from capstan.gateway.providers.openai_request import embedding_encoding, embedding_texts
from capstan.gateway.providers.openai_shapes import embedding_list
from capstan.gateway.upstream_client import UpstreamClient, UpstreamResponse

__all__ = ["BedrockProvider", "bedrock_url", "signed_headers"]

SERVICE = "bedrock"
EVENTSTREAM = "application/vnd.amazon.eventstream"
EMBED_CONCURRENCY = 8  # Titan embeds one text per call; bound the fan-out for long inputs
# The HTTP status each modelled stream exception stands for, so `failure_kind` maps it.
_STREAM_EXCEPTION_STATUS = {
    "validationException": 400,
    "throttlingException": 429,
    "modelTimeoutException": 408,
    "modelStreamErrorException": 424,
    "internalServerException": 500,
    "serviceUnavailableException": 503,
}
_REGION_IN_HOST = re.compile(r"bedrock-runtime(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com")


class BedrockProvider:
    """The Bedrock Runtime adapter; holds no per-call state."""

    async def chat(
        self, http: UpstreamClient, upstream: Upstream, request: ChatRequest
    ) -> ChatCompletion:
        body = orjson.dumps(to_converse(request))
        async with _post(http, upstream, "converse", body, accept="application/json") as response:
            raw = await response.read()
        try:
            return from_converse(json_object(raw), request.get("model") or upstream.model)
        except (KeyError, TypeError, AttributeError) as exc:
            raise _unexpected_shape() from exc

    async def stream_chat(
        self, http: UpstreamClient, upstream: Upstream, request: ChatRequest
    ) -> AsyncIterator[ChatChunk]:
        body = orjson.dumps(to_converse(request))
        translator = ConverseStreamTranslator(request.get("model") or upstream.model)
        from botocore.eventstream import EventStreamBuffer  # see `signed_headers`

        buffer = EventStreamBuffer()
        async with _post(http, upstream, "converse-stream", body, accept=EVENTSTREAM) as response:
            async for data in response.chunks():
                buffer.add_data(data)
                for event_type, event in _events(buffer):
                    try:
                        chunks = translator.chunks(event_type, event)
                    except (KeyError, TypeError, AttributeError) as exc:
                        raise _unexpected_shape() from exc
                    for chunk in chunks:
                        yield chunk
        if not translator.finished:
            raise UpstreamError(
                FailureKind.CONNECTION, "the Bedrock stream ended before its final event"
            )

    async def embed(
        self, http: UpstreamClient, upstream: Upstream, request: EmbeddingRequest
    ) -> EmbeddingResponse:
        """Titan text embeddings through InvokeModel, one call per input text (Titan takes one),
        at most `EMBED_CONCURRENCY` at a time."""
        model = request.get("model") or upstream.model
        if "titan-embed-text" not in model:
            raise TranslationError(
                "embeddings through Bedrock Converse are not supported; use a Titan text "
                "embedding deployment (amazon.titan-embed-text-v1 or -v2)",
                param="model",
            )
        texts = embedding_texts(request, "Titan")
        payload_extra: dict[str, Any] = {}
        if request.get("dimensions") is not None:
            if "titan-embed-text-v1" in model:
                raise TranslationError("Titan v1 embeddings have a fixed size", param="dimensions")
            payload_extra["dimensions"] = request["dimensions"]
        encoding = embedding_encoding(request)
        limit = asyncio.Semaphore(EMBED_CONCURRENCY)

        async def one(text: str) -> dict[str, Any]:
            async with limit:
                return await self._invoke(http, upstream, {"inputText": text, **payload_extra})

        tasks = [asyncio.ensure_future(one(text)) for text in texts]
        try:
            results = await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()  # siblings of a failed call stop instead of running on
        return embedding_list(
            [r["embedding"] for r in results],
            model=model,
            tokens=sum(int(r.get("inputTextTokenCount") or 0) for r in results),
            encoding_format=encoding,
        )

    async def _invoke(
        self, http: UpstreamClient, upstream: Upstream, payload: dict[str, Any]
    ) -> dict[str, Any]:
        body = orjson.dumps(payload)
        async with _post(http, upstream, "invoke", body, accept="application/json") as response:
            raw = await response.read()
        result = json_object(raw)
        if not isinstance(result.get("embedding"), list):
            raise UpstreamError(FailureKind.MALFORMED, "the Bedrock response has no embedding")
        return result


def _post(
    http: UpstreamClient, upstream: Upstream, operation: str, body: bytes, *, accept: str
) -> AbstractAsyncContextManager[UpstreamResponse]:
    """Sign and send one call."""
    url = bedrock_url(upstream, operation)
    headers = signed_headers(upstream, url, body, accept=accept)
    return upstream_post(http, url, headers=headers, body=body, timeout_s=upstream.timeout_s)


def bedrock_url(upstream: Upstream, operation: str) -> str:
    """`{base}/model/{modelId}/{operation}`, the model id fully percent-encoded (ARNs hold `:`
    and `/`), normalised as yarl normalises it (`%3A` back to `:`, the form AWS's SDKs send); the
    upstream client sends it as it is, and the signature covers exactly that path."""
    base = upstream.base_url.rstrip("/") or (
        f"https://bedrock-runtime.{region_of(upstream)}.amazonaws.com"
    )
    return str(yarl.URL(f"{base}/model/{quote(upstream.model, safe='')}/{operation}"))


def region_of(upstream: Upstream) -> str:
    """The signing region: the `region` option, else the one in a standard endpoint's host."""
    region = upstream.options.get("region")
    if region:
        return region
    match = _REGION_IN_HOST.search(upstream.base_url)
    if match:
        return match.group(1)
    raise UpstreamError(
        FailureKind.AUTHENTICATION, "the Bedrock deployment needs a region option to sign requests"
    )


def signed_headers(upstream: Upstream, url: str, body: bytes, *, accept: str) -> dict[str, str]:
    """The headers to send: SigV4-signed (Authorization, X-Amz-Date, X-Amz-Security-Token)
    when AWS keys are configured, else a bearer Bedrock API key. Signing is a few HMACs, cheap
    enough to run inline on the event loop."""
    headers = {"Content-Type": "application/json", "Accept": accept}
    options = upstream.options
    access_key = options.get("aws_access_key_id")
    secret_key = options.get("aws_secret_access_key")
    if access_key and secret_key:
        # Imported here: botocore weighs about 7 MB, paid only by a gateway that uses Bedrock.
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        credentials = Credentials(access_key, secret_key, options.get("aws_session_token") or None)
        request = AWSRequest(method="POST", url=url, data=body, headers=headers)
        SigV4Auth(credentials, SERVICE, region_of(upstream)).add_auth(request)
        return {name: str(value) for name, value in request.headers.items()}
    if upstream.api_key:
        return {**headers, "Authorization": f"Bearer {upstream.api_key}"}
    raise UpstreamError(
        FailureKind.AUTHENTICATION,
        "the Bedrock deployment has no credentials: set aws_access_key_id and "
        "aws_secret_access_key, or a Bedrock API key",
    )


def _events(buffer: EventStreamBuffer) -> Iterator[tuple[str, dict[str, Any]]]:
    """The complete events in the buffer; exception frames raise `UpstreamError`."""
    from botocore.eventstream import ParserError

    try:
        for message in buffer:
            headers = cast(dict[str, Any], message.headers)
            kind = headers.get(":message-type")
            if kind == "event":
                event = orjson.loads(message.payload) if message.payload else {}
                yield str(headers.get(":event-type")), event
            elif kind == "exception":
                name = str(headers.get(":exception-type"))
                text = vendor_message(message.payload)
                status = _STREAM_EXCEPTION_STATUS.get(name, 500)
                raise UpstreamError(failure_kind(status, text), f"{name}: {text}", status=status)
            elif kind == "error":
                text = str(headers.get(":error-message") or headers.get(":error-code"))
                raise UpstreamError(FailureKind.SERVER, text)
    except (ParserError, orjson.JSONDecodeError) as exc:
        raise UpstreamError(FailureKind.MALFORMED, "the Bedrock event stream is corrupt") from exc


def _unexpected_shape() -> UpstreamError:
    """A vendor answer missing fields the Converse API defines as always present."""
    return UpstreamError(FailureKind.MALFORMED, "Bedrock answered in an unexpected shape")
