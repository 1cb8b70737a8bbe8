"""OpenAI Chat Completions <-> Bedrock Converse, as pure functions on plain dicts.

Kept apart from the HTTP and signing in `bedrock.py` so every mapping is tested without a
server. A request feature Converse cannot express raises `TranslationError` naming the
parameter rather than being dropped: a client asking for `n=3` or log-probabilities must
learn it did not get them.

Extensions honoured: a content part (or a system part) carrying `cache_control` is followed by
a Converse `cachePoint`, which is how Bedrock's prompt caching is asked for; reasoning text in
the answer comes back as `message.reasoning_content` (`delta.reasoning_content` in chunks),
the field most OpenAI-compatible servers use.
"""

from __future__ import annotations

import time
from typing import Any

from capstan.gateway.providers.base import (
    ChatChunk,
    ChatCompletion,
    ChatRequest,
    FailureKind,
    TranslationError,
    UpstreamError,
)
from capstan.gateway.providers.media import image_url, inline_data
from capstan.gateway.providers.openai_request import (
    max_output_tokens,
    refuse_params,
    require_arguments_object,
    require_one_choice,
    stop_sequences,
)
from capstan.gateway.providers.openai_shapes import (
    arguments_text,
    assistant_message,
    chat_completion,
    completion_choice,
    completion_chunk,
    token_usage,
    tool_call,
    usage_chunk,
)
from capstan.ids import new_id

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
}
IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
CACHE_POINT = {"cachePoint": {"type": "default"}}
_REFUSALS = {
    "logprobs": "Bedrock Converse does not return log-probabilities",
    "top_logprobs": "Bedrock Converse does not return log-probabilities",
    "logit_bias": "Bedrock Converse does not support logit_bias",
    "presence_penalty": "Bedrock Converse does not support presence_penalty",
    "frequency_penalty": "Bedrock Converse does not support frequency_penalty",
}


def to_converse(request: ChatRequest) -> dict[str, Any]:
    """The Converse body for an OpenAI chat request (the model goes in the URL, not here)."""
    _refuse_untranslatable(request)
    system, messages = _turns(request.get("messages") or [])
    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system
    config: dict[str, Any] = {}
    max_tokens = max_output_tokens(request)
    if max_tokens is not None:
        config["maxTokens"] = max_tokens
    if request.get("temperature") is not None:
        config["temperature"] = request["temperature"]
    if request.get("top_p") is not None:
        config["topP"] = request["top_p"]
    stop = stop_sequences(request)
    if stop:
        config["stopSequences"] = stop
    if config:
        body["inferenceConfig"] = config
    tool_config = _tool_config(request.get("tools"), request.get("tool_choice"))
    if tool_config is not None:
        body["toolConfig"] = tool_config
    return body


def from_converse(data: Any, model: str) -> ChatCompletion:
    """An OpenAI `chat.completion` from a Converse response."""
    output = data.get("output") if isinstance(data, dict) else None
    message = output.get("message") if isinstance(output, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise UpstreamError(FailureKind.MALFORMED, "the Bedrock response has no output message")
    texts: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in message["content"]:
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            arguments = arguments_text(use.get("input"))
            tool_calls.append(tool_call(use["toolUseId"], use["name"], arguments))
        elif "reasoningContent" in block:
            reasoning.append(block["reasoningContent"].get("reasoningText", {}).get("text", ""))
    reply = assistant_message("".join(texts), tool_calls)
    if any(reasoning):
        reply["reasoning_content"] = "".join(reasoning)
    return chat_completion(
        id=f"chatcmpl-{new_id().hex}",
        model=model,
        choices=[completion_choice(reply, finish_reason(data.get("stopReason")))],
        usage=usage_from(data.get("usage") or {}),
    )


def finish_reason(stop_reason: Any) -> str:
    """OpenAI's finish_reason for a Converse stopReason (unknown reasons read as `stop`)."""
    return FINISH_REASONS.get(str(stop_reason), "stop")


def usage_from(usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI usage from Converse usage. Bedrock's `inputTokens` excludes the tokens read from
    and written to the prompt cache; OpenAI's `prompt_tokens` includes them."""
    read = int(usage.get("cacheReadInputTokens") or 0)
    write = int(usage.get("cacheWriteInputTokens") or 0)
    return token_usage(
        int(usage.get("inputTokens") or 0) + read + write,
        int(usage.get("outputTokens") or 0),
        cached=read,
        cache_creation=write,
    )


class ConverseStreamTranslator:
    """Turns ConverseStream events into OpenAI chunks, for one stream. It remembers which
    Converse content block is which OpenAI tool call (`tool_calls[].index` counts tool calls
    only, where `contentBlockIndex` counts every block) and whether the stream finished."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = f"chatcmpl-{new_id().hex}"
        self.created = int(time.time())
        self.finished = False  # the `metadata` event (the last one) arrived
        self._tool_index: dict[int, int] = {}

    def chunks(self, event_type: str, event: dict[str, Any]) -> list[ChatChunk]:
        if event_type == "messageStart":
            return [self._chunk({"role": "assistant", "content": ""})]
        if event_type == "contentBlockStart":
            use = event.get("start", {}).get("toolUse")
            if use is None:
                return []
            index = self._tool(event.get("contentBlockIndex", 0))
            call = {"index": index, **tool_call(use["toolUseId"], use["name"], "")}
            return [self._chunk({"tool_calls": [call]})]
        if event_type == "contentBlockDelta":
            return self._delta(event.get("delta", {}), event.get("contentBlockIndex", 0))
        if event_type == "messageStop":
            return [self._chunk({}, finish_reason(event.get("stopReason")))]
        if event_type == "metadata":
            self.finished = True
            usage = usage_from(event.get("usage") or {})
            return [usage_chunk(self.id, self.created, self.model, usage)]
        return []  # contentBlockStop, and events this adapter has no use for

    def _delta(self, delta: dict[str, Any], block: int) -> list[ChatChunk]:
        if "text" in delta:
            return [self._chunk({"content": delta["text"]})]
        if "toolUse" in delta:
            arguments = delta["toolUse"].get("input", "")
            call = {"index": self._tool(block), "function": {"arguments": arguments}}
            return [self._chunk({"tool_calls": [call]})]
        reasoning = delta.get("reasoningContent", {}).get("text")
        if reasoning:
            return [self._chunk({"reasoning_content": reasoning})]
        return []  # signatures, redacted reasoning, citations

    def _tool(self, block: int) -> int:
        return self._tool_index.setdefault(block, len(self._tool_index))

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> ChatChunk:
        return completion_chunk(self.id, self.created, self.model, delta, finish)


def _refuse_untranslatable(request: ChatRequest) -> None:
    require_one_choice(request, "Bedrock Converse")
    refuse_params(request, _REFUSALS)
    response_format = request.get("response_format") or {"type": "text"}
    if response_format.get("type") != "text":
        raise TranslationError(
            "Bedrock Converse has no structured-output mode; ask for JSON in the prompt or "
            "use a tool",
            param="response_format",
        )
    if request.get("reasoning_effort") is not None:
        raise TranslationError(
            "reasoning_effort has no model-independent Converse equivalent",
            param="reasoning_effort",
        )
    if "audio" in (request.get("modalities") or []) or request.get("audio"):
        raise TranslationError("Bedrock Converse does not produce audio", param="modalities")


def _turns(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System blocks, and the user/assistant turns. Consecutive turns of the same Converse
    role are merged: tool results become one user turn, as Bedrock requires alternation."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        where = f"messages[{i}]"
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), f"{where}.content"))
            continue
        if role == "user":
            converse_role, blocks = "user", _user_blocks(message.get("content"), where)
        elif role == "tool":
            converse_role, blocks = "user", [_tool_result(message, where)]
        elif role == "assistant":
            converse_role, blocks = "assistant", _assistant_blocks(message, where)
        else:
            raise TranslationError(f"unsupported message role {role!r}", param=f"{where}.role")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == converse_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": converse_role, "content": blocks})
    return system, turns


def _text_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """Text-only content (system, tool results): a string or a list of text parts."""
    if isinstance(content, str):
        return [{"text": content}] if content.strip() else []
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content or []):
        if part.get("type") != "text":
            raise TranslationError("only text parts are allowed here", param=f"{where}[{j}]")
        if part.get("text", "").strip():
            blocks.append({"text": part["text"]})
        if part.get("cache_control"):
            blocks.append(dict(CACHE_POINT))
    return blocks


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str) or content is None:
        return _text_blocks(content, f"{where}.content")
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            if part.get("text", "").strip():
                blocks.append({"text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(image_url(part), f"{where}.content[{j}].image_url.url"))
        else:
            raise TranslationError(
                f"Bedrock Converse does not accept {kind!r} content parts",
                param=f"{where}.content[{j}]",
            )
        if part.get("cache_control"):
            blocks.append(dict(CACHE_POINT))
    return blocks


def _image(url: str, param: str) -> dict[str, Any]:
    """A data: URL as image bytes; Converse cannot fetch URLs (S3 locations aside)."""
    inline = inline_data(url)
    if inline is None:
        raise TranslationError(
            "Bedrock Converse takes images inline only: send a base64 data: URL", param=param
        )
    image_format = IMAGE_FORMATS.get(inline.media_type.lower())
    if image_format is None:
        raise TranslationError(
            f"Bedrock Converse does not accept {inline.media_type or 'untyped'} images "
            "(png, jpeg, gif, webp)",
            param=param,
        )
    return {"image": {"format": image_format, "source": {"bytes": inline.data}}}


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    tool_call_id = message.get("tool_call_id")
    if not tool_call_id:
        raise TranslationError(
            "a tool message needs its tool_call_id", param=f"{where}.tool_call_id"
        )
    content = [b for b in _text_blocks(message.get("content"), f"{where}.content") if "text" in b]
    return {"toolResult": {"toolUseId": tool_call_id, "content": content, "status": "success"}}


def _assistant_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    content = message.get("content")
    blocks: list[dict[str, Any]] = []
    if isinstance(content, str):
        blocks += [{"text": content}] if content.strip() else []
    else:
        for part in content or []:
            text = part.get("text") or part.get("refusal") or ""
            if text.strip():
                blocks.append({"text": text})
    for j, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        param = f"{where}.tool_calls[{j}].function.arguments"
        arguments = require_arguments_object(function.get("arguments"), param)
        blocks.append(
            {
                "toolUse": {
                    "toolUseId": call.get("id"),
                    "name": function.get("name"),
                    "input": arguments,
                }
            }
        )
    return blocks


def _tool_config(tools: Any, tool_choice: Any) -> dict[str, Any] | None:
    """Converse `toolConfig`; None when no tools are offered or tool_choice is "none" (Converse
    has no way to offer tools while forbidding their use)."""
    if not tools or tool_choice == "none":
        return None
    specs: list[dict[str, Any]] = []
    for k, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise TranslationError("only function tools are supported", param=f"tools[{k}].type")
        function = tool.get("function") or {}
        spec: dict[str, Any] = {
            "name": function.get("name"),
            "inputSchema": {"json": function.get("parameters") or {"type": "object"}},
        }
        if function.get("description"):
            spec["description"] = function["description"]
        specs.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": specs}
    if tool_choice is None:
        pass  # Converse defaults to auto; not every model accepts an explicit toolChoice
    elif tool_choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif tool_choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        config["toolChoice"] = {"tool": {"name": (tool_choice.get("function") or {}).get("name")}}
    else:
        raise TranslationError(f"unsupported tool_choice {tool_choice!r}", param="tool_choice")
    return config
