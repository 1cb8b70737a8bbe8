"""OpenAI Chat Completions and Embeddings requests, rewritten as Gemini API requests.

Pure functions, no I/O: `gemini_request` and `gemini_embed_request` either return the Gemini
body or raise `TranslationError` naming the OpenAI parameter Gemini cannot express, so a client
gets a 400 that says what to drop instead of a silently different answer.

Mapping notes:
- every system/developer message goes to `systemInstruction` (Gemini has one, not per turn);
- a tool message becomes a `functionResponse` part named after the call it answers, found by
  its `tool_call_id`; consecutive tool messages share one user turn, because Gemini requires as
  many response parts in a turn as the call turn had calls;
- JSON schemas go to Gemini's OpenAPI-subset `parameters`/`responseSchema` with the keywords it
  rejects removed; a schema using `$ref` goes whole to `parametersJsonSchema` /
  `responseJsonSchema`, which take full JSON Schema;
- `reasoning_effort` becomes a `thinkingConfig.thinkingBudget` (Google's own compat mapping);
- Gemini 3 refuses replayed function calls without the `thoughtSignature` they came with, which
  OpenAI-shaped history cannot carry; their first call per model turn gets Google's documented
  `skip_thought_signature_validator` sentinel instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from capstan.gateway.providers.base import ChatRequest, EmbeddingRequest, TranslationError
from capstan.gateway.providers.media import image_url, inline_data
from capstan.gateway.providers.openai_request import (
    embedding_encoding,
    embedding_texts,
    max_output_tokens,
    refuse_params,
    require_arguments_object,
    stop_sequences,
)

MAX_CANDIDATES = 8
MAX_STOP_SEQUENCES = 5
MAX_TOP_LOGPROBS = 20
SIGNATURE_SENTINEL = "skip_thought_signature_validator"
SIGNING_MODELS = ("gemini-3",)
THINKING_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576}
AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}
UNSUPPORTED = {
    name: f"`{name}` is not supported for Gemini models: {why}"
    for name, why in {
        "logit_bias": "Gemini has no logit bias",
        "audio": "Gemini cannot answer with audio through this endpoint",
        "prediction": "Gemini has no predicted outputs",
        "web_search_options": "web search is not available through the Gemini adapter",
        "functions": "use `tools` instead of the deprecated `functions`",
        "function_call": "use `tool_choice` instead of the deprecated `function_call`",
    }.items()
}
SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "items",
        "minimum",
        "maximum",
    }
)
SCHEMA_FORMATS = frozenset({"enum", "date-time", "int32", "int64", "float", "double"})


def gemini_request(request: ChatRequest, model: str | None = None) -> dict[str, Any]:
    """The `generateContent` body for an OpenAI chat request to `model` (by default the
    request's own `model`)."""
    refuse_params(request, UNSUPPORTED)
    if "audio" in (request.get("modalities") or []):
        raise TranslationError("Gemini models cannot answer with audio here", param="modalities")
    system, contents = _contents(request.get("messages") or [])
    if any(m in str(model or request.get("model", "")) for m in SIGNING_MODELS):
        _sign_function_calls(contents)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    tools = request.get("tools") or []
    if tools:
        body["tools"] = [
            {"functionDeclarations": [_declaration(t, i) for i, t in enumerate(tools)]}
        ]
    tool_choice = request.get("tool_choice")
    if tool_choice is not None:
        body["toolConfig"] = {"functionCallingConfig": _calling_config(tool_choice)}
    config = _generation_config(request)
    if config:
        body["generationConfig"] = config
    return body


def _contents(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    previous_role = None
    for i, message in enumerate(messages):
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend(_text_parts(content, f"messages[{i}].content"))
        elif role == "user":
            contents.append({"role": "user", "parts": _user_parts(content, i)})
        elif role == "assistant":
            parts = _text_parts(content, f"messages[{i}].content", refusals=True)
            for j, call in enumerate(message.get("tool_calls") or []):
                parts.append(_function_call(call, f"messages[{i}].tool_calls[{j}]", call_names))
            if parts:
                contents.append({"role": "model", "parts": parts})
        elif role == "tool":
            part = _function_response(message, i, call_names)
            if previous_role == "tool":
                contents[-1]["parts"].append(part)
            else:
                contents.append({"role": "user", "parts": [part]})
        else:
            raise TranslationError(
                f"message role {role!r} is not supported for Gemini models",
                param=f"messages[{i}].role",
            )
        previous_role = role
    if not contents:
        raise TranslationError("Gemini needs at least one user message", param="messages")
    return system, contents


def _sign_function_calls(contents: list[dict[str, Any]]) -> None:
    for content in contents:
        calls = [p for p in content["parts"] if "functionCall" in p]
        if content["role"] == "model" and calls:
            calls[0]["thoughtSignature"] = SIGNATURE_SENTINEL


def _text_parts(content: Any, param: str, *, refusals: bool = False) -> list[dict[str, Any]]:
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"text": content}]
    parts = []
    for j, item in enumerate(content):
        kind = item.get("type")
        if kind == "text" or (refusals and kind == "refusal"):
            parts.append({"text": str(item.get("text") or item.get("refusal") or "")})
        else:
            raise TranslationError(
                f"content part type {kind!r} is not allowed here", param=f"{param}[{j}].type"
            )
    return parts


def _user_parts(content: Any, i: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    if not isinstance(content, list) or not content:
        raise TranslationError("a user message needs content", param=f"messages[{i}].content")
    parts: list[dict[str, Any]] = []
    for j, item in enumerate(content):
        param = f"messages[{i}].content[{j}]"
        kind = item.get("type")
        if kind == "text":
            parts.append({"text": str(item.get("text") or "")})
        elif kind == "image_url":
            parts.append(_inline_data(image_url(item), f"{param}.image_url"))
        elif kind == "input_audio":
            audio = item.get("input_audio") or {}
            mime = AUDIO_TYPES.get(str(audio.get("format")))
            if mime is None:
                raise TranslationError("audio format must be wav or mp3", param=f"{param}.format")
            parts.append({"inlineData": {"mimeType": mime, "data": str(audio.get("data", ""))}})
        elif kind == "file":
            file = item.get("file") or {}
            if not file.get("file_data"):
                raise TranslationError(
                    "Gemini needs the file inline as `file_data`; file ids are OpenAI's",
                    param=f"{param}.file",
                )
            parts.append(_inline_data(str(file["file_data"]), f"{param}.file.file_data"))
        else:
            raise TranslationError(
                f"content part type {kind!r} is not supported", param=f"{param}.type"
            )
    return parts


def _inline_data(url: str, param: str) -> dict[str, Any]:
    """A `data:` URL as an `inlineData` part. Gemini cannot fetch http(s) URLs itself, and
    fetching them here would make the gateway a proxy to arbitrary hosts, so those are refused."""
    inline = inline_data(url)
    if inline is None:
        raise TranslationError(
            "Gemini models need images and files inline, as base64 `data:` URLs", param=param
        )
    mime = inline.media_type or "application/octet-stream"
    return {"inlineData": {"mimeType": mime, "data": inline.data}}


def _function_call(call: Any, param: str, call_names: dict[str, str]) -> dict[str, Any]:
    function = call.get("function") or {}
    name = str(function.get("name") or "")
    args = require_arguments_object(function.get("arguments"), f"{param}.function.arguments")
    call_names[str(call.get("id"))] = name
    return {"functionCall": {"name": name, "args": args}}


def _function_response(message: Any, i: int, call_names: dict[str, str]) -> dict[str, Any]:
    call_id = str(message.get("tool_call_id"))
    name = call_names.get(call_id)
    if name is None:
        raise TranslationError(
            f"no earlier assistant tool call has id {call_id!r}",
            param=f"messages[{i}].tool_call_id",
        )
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(str(p.get("text") or "") for p in content)
    try:
        value = orjson.loads(content) if isinstance(content, str) else content
    except orjson.JSONDecodeError:
        value = content
    response = value if isinstance(value, dict) else {"result": value}
    return {"functionResponse": {"name": name, "response": response}}


def _declaration(tool: Any, i: int) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise TranslationError("Gemini models take function tools only", param=f"tools[{i}].type")
    function = tool.get("function") or {}
    declaration: dict[str, Any] = {"name": function.get("name")}
    if function.get("description"):
        declaration["description"] = function["description"]
    parameters = function.get("parameters")
    if isinstance(parameters, dict) and (parameters.get("properties") or "$ref" in parameters):
        key, schema = gemini_schema(parameters)
        declaration["parametersJsonSchema" if key == "json" else "parameters"] = schema
    return declaration


def _calling_config(choice: Any) -> dict[str, Any]:
    if choice in ("none", "auto", "required"):
        return {"mode": {"none": "NONE", "auto": "AUTO", "required": "ANY"}[choice]}
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        return {"mode": "ANY", "allowedFunctionNames": [name]}
    raise TranslationError("this tool_choice has no Gemini equivalent", param="tool_choice")


def _generation_config(request: ChatRequest) -> dict[str, Any]:
    config: dict[str, Any] = {}
    limit = max_output_tokens(request)
    if limit is not None:
        config["maxOutputTokens"] = limit
    for ours, theirs in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if request.get(ours) is not None:
            config[theirs] = request[ours]
    stops = stop_sequences(request)
    if stops:
        if len(stops) > MAX_STOP_SEQUENCES:
            raise TranslationError("Gemini takes at most 5 stop sequences", param="stop")
        config["stopSequences"] = stops
    n = request.get("n")
    if n is not None and n != 1:
        if not 1 <= n <= MAX_CANDIDATES:
            raise TranslationError("Gemini returns 1 to 8 choices", param="n")
        config["candidateCount"] = n
    if request.get("logprobs"):
        config["responseLogprobs"] = True
        top = request.get("top_logprobs")
        if top:
            if top > MAX_TOP_LOGPROBS:
                raise TranslationError(
                    "Gemini returns at most 20 top logprobs", param="top_logprobs"
                )
            config["logprobs"] = top
    config.update(_response_format(request.get("response_format")))
    effort = request.get("reasoning_effort")
    if effort is not None:
        if effort not in THINKING_BUDGETS:
            raise TranslationError(f"unknown reasoning_effort {effort!r}", param="reasoning_effort")
        config["thinkingConfig"] = {"thinkingBudget": THINKING_BUDGETS[effort]}
    return config


def _response_format(response_format: Any) -> dict[str, Any]:
    if not response_format:
        return {}
    kind = response_format.get("type")
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            return {"responseMimeType": "application/json"}
        key, converted = gemini_schema(schema)
        field = "responseJsonSchema" if key == "json" else "responseSchema"
        return {"responseMimeType": "application/json", field: converted}
    raise TranslationError(
        f"response_format {kind!r} is not supported", param="response_format.type"
    )


def gemini_schema(schema: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """("json", schema) when only full JSON Schema can hold it (it uses `$ref`), else
    ("openapi", the schema in Gemini's OpenAPI subset)."""
    if b'"$ref"' in orjson.dumps(schema):
        return "json", schema
    return "openapi", _openapi(schema)


def _openapi(schema: Any) -> Any:
    """Keep the keywords Gemini's `Schema` knows; `type: [x, "null"]` and `anyOf` with a null
    member become `nullable`; `const` becomes a one-value `enum`."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    kind = schema.get("type")
    if isinstance(kind, list):
        types = [t for t in kind if t != "null"]
        if len(types) < len(kind):
            out["nullable"] = True
        if len(types) == 1:
            kind = types[0]
        else:
            out["anyOf"] = [{"type": t} for t in types]
            kind = None
    if kind is not None:
        out["type"] = kind
    if "const" in schema:
        out["enum"] = [schema["const"]]
    for key, value in schema.items():
        if key not in SCHEMA_KEYS or key in ("type", "anyOf"):
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _openapi(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = _openapi(value)
        elif key != "format" or value in SCHEMA_FORMATS:
            out[key] = value
    variants = [v for v in schema.get("anyOf") or [] if v != {"type": "null"}]
    if variants:
        if len(variants) < len(schema["anyOf"]):
            out["nullable"] = True
        if len(variants) == 1:
            out.update(_openapi(variants[0]))
        else:
            out["anyOf"] = [_openapi(v) for v in variants]
    return out


def gemini_embed_request(request: EmbeddingRequest, model: str) -> tuple[list[str], dict[str, Any]]:
    """The input texts and the `batchEmbedContents` body (one request per text)."""
    texts = embedding_texts(request, "Gemini")
    embedding_encoding(request)
    extra: dict[str, Any] = {}
    if request.get("dimensions"):
        extra["outputDimensionality"] = request["dimensions"]
    requests = [{"model": model, "content": {"parts": [{"text": t}]}, **extra} for t in texts]
    return texts, {"requests": requests}
