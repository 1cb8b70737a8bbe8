"""What the Gemini simulator answers, as plain functions on the request body (no HTTP here).

A `GenerateContentRequest` is read into a `Prompt` (its words, images and last turn), then turned
into candidates whose pieces are streamed one by one or merged into one response. Counts follow
`text.count_tokens` (one word, one token; thoughts are `text.reasoning_text`) plus Google's
fixed 258 tokens per inline image, so `usageMetadata` always agrees with what a client receives.
Implicit-cache hits are kept in the shared `state.prompt_cache`, so `DELETE /_sim/faults`
forgets them like every other vendor's.

Triggers for tests: a user turn containing `SAFETY_TRIGGER` gets a candidate stopped with
`finishReason: SAFETY`; one containing `BLOCK_TRIGGER` gets the whole prompt blocked
(`promptFeedback.blockReason`, no candidates), as Google answers both.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import random
import re
import secrets
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import orjson

from capstan.testing.simulator.embeddings import gaussian_vector
from capstan.testing.simulator.prompt_cache import PromptCache, prefix_keys
from capstan.testing.simulator.text import (
    VOCABULARY,
    apply_stop,
    arguments_for,
    count_tokens,
    reasoning_text,
    reply_text,
    seed_of,
    split_words,
    truncated,
)
from capstan.testing.simulator.tool_use import ToolSpec, tools_to_call

IMAGE_TOKENS = 258  # what Gemini bills for an image up to 384x384 px
CACHE_MIN_TOKENS = 32  # Gemini needs 1,024+ tokens for implicit caching; scaled down for tests
IMAGE_MARK = "\x00image:"
SAFETY_TRIGGER = "[sim:safety]"
BLOCK_TRIGGER = "[sim:block]"
ROLES = frozenset({"user", "model"})
SIGNING_MODELS = ("gemini-3",)  # they refuse replayed function calls without a thought signature
DYNAMIC_THINKING_WORDS = 64
THINKING_BY_DEFAULT = ("gemini-2.5", "gemini-3", "thinking")
SAFETY_RATINGS = [
    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
]


class InvalidArgument(Exception):
    """A request Google would refuse with 400 INVALID_ARGUMENT; the message is Google's."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def fields(value: Any) -> dict[str, Any]:
    """A JSON object with snake_case keys read as camelCase: Google's proto JSON parser accepts
    both spellings, so the simulator must too (the SDK sends camelCase, curl users often not)."""
    if not isinstance(value, dict):
        return {}
    return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): v for k, v in value.items()}


def lower_types(schema: Any) -> Any:
    """Gemini's OpenAPI-style schemas spell types `OBJECT`/`STRING`; `arguments_for` reads
    JSON Schema's lowercase spelling."""
    if isinstance(schema, list):
        return [lower_types(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: lower_types(value) for key, value in schema.items()}
    if isinstance(out.get("type"), str):
        out["type"] = out["type"].lower()
    return out


@dataclass
class Prompt:
    """The request as the simulator needs it: the token sequence (words, plus one marker per
    image so cache prefixes see images), the text to echo and the last turn's kind."""

    sequence: list[str] = field(default_factory=list)
    boundaries: list[int] = field(default_factory=list)  # prefix ends a cache may key on
    images: int = 0
    echo: str = ""
    function_result: str | None = None  # set when the last turn answers a function call

    @property
    def text_tokens(self) -> int:
        return len(self.sequence) - self.images

    @property
    def tokens(self) -> int:
        return self.text_tokens + self.images * IMAGE_TOKENS

    def add_text(self, text: str) -> None:
        self.sequence.extend(text.split())

    def add_image(self, data: str) -> None:
        self.images += 1
        self.sequence.append(IMAGE_MARK + hashlib.sha256(data.encode()).hexdigest())


def read_prompt(request: dict[str, Any], *, where: str = "GenerateContentRequest") -> Prompt:
    """Validate `contents` (and `systemInstruction`, `tools`) as Google does and collect them."""
    prompt = Prompt()
    for part in fields(request.get("systemInstruction")).get("parts") or []:
        prompt.add_text(str(fields(part).get("text", "")))
    for tool in request.get("tools") or []:
        for declaration in fields(tool).get("functionDeclarations") or []:
            declared = fields(declaration)
            prompt.add_text(f"{declared.get('name', '')} {declared.get('description', '')}")
    contents = request.get("contents")
    if not isinstance(contents, list) or not contents:
        raise InvalidArgument(f"* {where}.contents: contents is not specified\n")
    previous_calls: int | None = None
    for i, raw_content in enumerate(contents):
        if prompt.sequence:
            prompt.boundaries.append(len(prompt.sequence))
        content = fields(raw_content)
        role = content.get("role") or "user"
        if role not in ROLES:
            raise InvalidArgument("Please use a valid role: user, model.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise InvalidArgument(
                f"* {where}.contents[{i}].parts: contents.parts must not be empty.\n"
            )
        kinds = [
            _read_part(prompt, fields(part), f"contents[{i}].parts[{j}]", where)
            for j, part in enumerate(parts)
        ]
        responses = kinds.count("functionResponse")
        if responses and responses != previous_calls:
            raise InvalidArgument(
                "Please ensure that the number of function response parts is equal to the number "
                "of function call parts of the function call turn."
            )
        previous_calls = kinds.count("functionCall") or None
        if role == "user":
            texts = [str(fields(p).get("text")) for p in parts if "text" in fields(p)]
            prompt.echo = " ".join(texts)
            prompt.function_result = None
            if responses:
                prompt.function_result = " ".join(
                    _result_text(fields(p)["functionResponse"])
                    for p in parts
                    if "functionResponse" in fields(p)
                )
    return prompt


def _result_text(response: Any) -> str:
    result = fields(response)
    return f"{result.get('name', '')}: {orjson.dumps(result.get('response') or {}).decode()}"


def _read_part(prompt: Prompt, part: dict[str, Any], path: str, where: str) -> str:
    if "text" in part:
        prompt.add_text(str(part["text"]))
        return "text"
    if "inlineData" in part:
        data = str(fields(part["inlineData"]).get("data", ""))
        try:
            base64.b64decode(data.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgument(
                f"Invalid value at '{path}.inline_data.data' (TYPE_BYTES), "
                f'Base64 decoding failed for "{data[:40]}"'
            ) from None
        prompt.add_image(data)
        return "inlineData"
    for kind in ("functionCall", "functionResponse"):
        if kind in part:
            call = fields(part[kind])
            payload = call.get("args") if kind == "functionCall" else call.get("response")
            prompt.add_text(f"{call.get('name', '')} {orjson.dumps(payload or {}).decode()}")
            return kind
    if "fileData" in part:
        prompt.add_image(str(fields(part["fileData"]).get("fileUri", "")))
        return "fileData"
    raise InvalidArgument(
        f"* {where}.{path}.data: required oneof field 'data' must have one initialized field\n"
    )


def cached_tokens(model: str, prompt: Prompt, cache: PromptCache) -> int:
    """Gemini's implicit context caching: tokens of the longest prefix, cut at a turn boundary
    (the last turn excluded), that an earlier request to `model` already sent; then remember
    this request's prefixes. Below `CACHE_MIN_TOKENS` nothing counts as cached, as on Gemini."""
    ends = prompt.boundaries
    turns = [prompt.sequence[start:end] for start, end in zip([0, *ends][:-1], ends, strict=True)]
    weights = accumulate(
        sum(IMAGE_TOKENS if token.startswith(IMAGE_MARK) else 1 for token in turn) for turn in turns
    )
    keys = prefix_keys("gemini", model, turns)
    cached = cache.longest_seen(list(zip(keys, weights, strict=True)))
    return cached if cached >= CACHE_MIN_TOKENS else 0


@dataclass
class Candidate:
    """One answer: the parts in the order they stream (one word per text piece)."""

    pieces: list[dict[str, Any]]
    finish_reason: str
    tokens: int = 0
    extras: dict[str, Any] = field(default_factory=dict)

    def parts(self) -> list[dict[str, Any]]:
        """The pieces with consecutive text of the same kind merged, as a non-streamed reply."""
        merged: list[dict[str, Any]] = []
        for piece in self.pieces:
            last = merged[-1] if merged else None
            if (
                last
                and "text" in piece
                and "text" in last
                and last.get("thought") == piece.get("thought")
            ):
                merged[-1] = {**last, "text": last["text"] + piece["text"]}
            else:
                merged.append(dict(piece))
        return merged


@dataclass
class Reply:
    candidates: list[Candidate]
    usage: dict[str, Any]
    prompt_feedback: dict[str, Any] | None = None


def generate(
    model: str, request: dict[str, Any], cache: PromptCache, context_window: int | None = None
) -> Reply:
    """The whole answer to a generateContent call (streamed or not); a prompt longer than
    `context_window` tokens is refused with Google's message."""
    prompt = read_prompt(request)
    if context_window is not None and prompt.tokens > context_window:
        raise InvalidArgument(
            f"The input token count ({prompt.tokens}) exceeds the maximum number of tokens "
            f"allowed ({context_window})."
        )
    if any(m in model for m in SIGNING_MODELS):
        _check_signatures(request)
    config = fields(request.get("generationConfig"))
    cached = cached_tokens(model, prompt, cache)
    if BLOCK_TRIGGER in prompt.echo:
        feedback = {"blockReason": "SAFETY", "safetyRatings": SAFETY_RATINGS}
        return Reply([], usage_metadata(prompt, 0, 0, cached), feedback)
    thinking = _thinking(model, config, prompt)
    thoughts = count_tokens(thinking)
    count = int(config.get("candidateCount") or 1)
    if not 1 <= count <= 8:
        raise InvalidArgument(
            "* GenerateContentRequest.generation_config.candidate_count: must be in [1, 8]\n"
        )
    candidates = [_candidate(model, request, config, prompt, thinking, i) for i in range(count)]
    completion = sum(c.tokens for c in candidates)
    return Reply(candidates, usage_metadata(prompt, completion, thoughts, cached))


def _check_signatures(request: dict[str, Any]) -> None:
    """Gemini 3 validates thought signatures in the current turn (since the last user text):
    the first function call of each model step must carry the `thoughtSignature` it came with
    (or Google's documented `skip_thought_signature_validator` sentinel)."""
    contents = [fields(c) for c in request.get("contents") or []]
    texts = [
        i
        for i, c in enumerate(contents)
        if c.get("role", "user") == "user"
        and any("text" in fields(p) for p in c.get("parts") or [])
    ]
    start = texts[-1] if texts else 0
    for i, content in enumerate(contents[start:]):
        calls = [fields(p) for p in content.get("parts") or [] if "functionCall" in fields(p)]
        if calls and not calls[0].get("thoughtSignature"):
            name = fields(calls[0]["functionCall"]).get("name")
            raise InvalidArgument(
                "Function call is missing a thought_signature in functionCall parts. This is "
                "required for tools to work correctly. Additional data, function call "
                f"`{name}` , position {start + i + 1}. Please refer to "
                "https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
            )


def usage_metadata(prompt: Prompt, candidates: int, thoughts: int, cached: int) -> dict[str, Any]:
    """Google's `usageMetadata`; like all proto3 JSON it leaves out fields that are zero."""
    usage: dict[str, Any] = {"promptTokenCount": prompt.tokens}
    if candidates:
        usage["candidatesTokenCount"] = candidates
    usage["totalTokenCount"] = prompt.tokens + candidates + thoughts
    if cached:
        usage["cachedContentTokenCount"] = cached
    details = [{"modality": "TEXT", "tokenCount": prompt.text_tokens}]
    if prompt.images:
        details.append({"modality": "IMAGE", "tokenCount": prompt.images * IMAGE_TOKENS})
    usage["promptTokensDetails"] = details
    if cached:
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _thinking(model: str, config: dict[str, Any], prompt: Prompt) -> str:
    """The model's thoughts ("" when it does not think): 2.5+ models think unless
    `thinkingBudget` is 0, others only when given a budget; -1 (dynamic) allows 64 words."""
    budget = fields(config.get("thinkingConfig")).get("thinkingBudget")
    thinks = budget != 0 and (budget is not None or any(m in model for m in THINKING_BY_DEFAULT))
    if not thinks:
        return ""
    words = budget if isinstance(budget, int) and budget > 0 else DYNAMIC_THINKING_WORDS
    return reasoning_text(model, prompt.echo, words)


def _candidate(
    model: str,
    request: dict[str, Any],
    config: dict[str, Any],
    prompt: Prompt,
    thinking: str,
    index: int,
) -> Candidate:
    if SAFETY_TRIGGER in prompt.echo:
        return Candidate([], "SAFETY", extras={"safetyRatings": SAFETY_RATINGS})
    seed = config.get("seed")
    seed = seed + index if isinstance(seed, int) else (index or None)
    pieces: list[dict[str, Any]] = []
    if thinking and fields(config.get("thinkingConfig")).get("includeThoughts"):
        pieces.append({"text": thinking, "thought": True})
    call = _function_call(model, request, prompt, seed)
    if call is not None:
        spent = count_tokens(f"{call['name']} {orjson.dumps(call['args']).decode()}")
        part: dict[str, Any] = {"functionCall": call}
        if any(m in model for m in SIGNING_MODELS):
            part["thoughtSignature"] = base64.b64encode(secrets.token_bytes(48)).decode()
        return Candidate([*pieces, part], "STOP", spent)
    limit = config.get("maxOutputTokens")
    if isinstance(limit, int) and thinking:
        limit -= count_tokens(thinking)  # thinking spends the same budget first, as on 2.5
        if limit <= 0:
            return Candidate(pieces, "MAX_TOKENS")
    text, finish = _text(model, config, prompt, limit, seed)
    words = split_words(text)
    candidate = Candidate([*pieces, *({"text": w} for w in words)], finish, count_tokens(text))
    if config.get("responseLogprobs"):
        candidate.extras.update(_logprobs(words, int(config.get("logprobs") or 0), seed))
    return candidate


def _text(
    model: str, config: dict[str, Any], prompt: Prompt, limit: int | None, seed: int | None
) -> tuple[str, str]:
    echo = prompt.function_result if prompt.function_result is not None else prompt.echo
    if config.get("responseMimeType") == "application/json":
        schema = config.get("responseSchema") or config.get("responseJsonSchema")
        value = (
            arguments_for(lower_types(schema), seed_of(model, echo, seed))
            if schema
            else {"reply": reply_text(model, echo, limit, seed)}
        )
        return orjson.dumps(value).decode(), "STOP"
    text = reply_text(model, echo, limit, seed)
    finish = "MAX_TOKENS" if truncated(limit, text) else "STOP"
    text, matched = apply_stop(text, list(config.get("stopSequences") or []))
    return text, "STOP" if matched else finish


def _function_call(
    model: str, request: dict[str, Any], prompt: Prompt, seed: int | None
) -> dict[str, Any] | None:
    """A call when tools are offered, calling is not off and the last turn is no result."""
    declarations = [
        fields(d)
        for tool in request.get("tools") or []
        for d in fields(tool).get("functionDeclarations") or []
    ]
    calling = fields(fields(request.get("toolConfig")).get("functionCallingConfig"))
    mode = str(calling.get("mode") or "AUTO").upper()
    if not declarations or mode == "NONE" or prompt.function_result is not None:
        return None
    allowed = calling.get("allowedFunctionNames") or []
    offered = [d for d in declarations if not allowed or d.get("name") in allowed] or declarations
    tools = [
        ToolSpec(str(d.get("name")), d.get("parameters") or d.get("parametersJsonSchema") or {})
        for d in offered
    ]
    (tool,) = tools_to_call(tools, mentioned_in=prompt.echo)
    arguments = arguments_for(lower_types(tool.parameters), seed_of(model, tool.name, seed))
    return {"name": tool.name, "args": arguments}


def _logprobs(words: list[str], top: int, seed: int | None) -> dict[str, Any]:
    """`logprobsResult` with one chosen token per word and `top` alternatives for each."""
    rng = random.Random(seed_of("logprobs", seed, *words))  # noqa: S311 - test data
    scores = [-round(rng.random(), 6) for _ in words]
    chosen = [{"token": w, "logProbability": p} for w, p in zip(words, scores, strict=True)]
    result: dict[str, Any] = {}
    if top:
        result["topCandidates"] = [
            {
                "candidates": [
                    c,
                    *(
                        {"token": " " + v, "logProbability": p - k - 1.0}
                        for k, v in enumerate(VOCABULARY[: top - 1])
                    ),
                ]
            }
            for c, p in zip(chosen, scores, strict=True)
        ]
    result["chosenCandidates"] = chosen
    return {"avgLogprobs": sum(scores) / max(1, len(scores)), "logprobsResult": result}


def candidate_json(
    candidate: Candidate,
    index: int,
    pieces: list[dict[str, Any]] | None = None,
    *,
    final: bool = True,
) -> dict[str, Any]:
    """One entry of `candidates`: the given pieces (all merged when None); the finish reason
    and extras only on the final piece."""
    parts = candidate.parts() if pieces is None else pieces
    out: dict[str, Any] = {}
    if parts or candidate.finish_reason != "SAFETY":
        out["content"] = {"parts": parts, "role": "model"} if parts else {"role": "model"}
    if final:
        out["finishReason"] = candidate.finish_reason
        out.update(candidate.extras)
    out["index"] = index
    return out


def embedding(model: str, text: str, dimensions: int | None) -> list[float]:
    """A unit vector that depends only on (model, text): equal texts embed equally."""
    size = dimensions or (3072 if "gemini-embedding" in model else 768)
    return [round(v, 8) for v in gaussian_vector(size, "embedding", model, text)]
