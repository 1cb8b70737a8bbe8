"""A prompt as its author writes it (a YAML file, or the same fields in JSON), checked and put in
canonical form: the content a version stores, and the hash that says whether it changed.

Only what shapes the model call is content: the template, the target model, the parameters
and the variables schema. The commit message, the description and the owning project are not,
so pushing the same prompt with another message makes no new version.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import yaml

from capstan.errors import InvalidInput
from capstan.prompts.variables import parse_variables, schema_document

if TYPE_CHECKING:
    from capstan.prompts.render import PromptTemplate

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
LABEL_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# Parameters a prompt may set on the call it is rendered into; a typo is an error at push time
# rather than a parameter silently dropped by the provider.
PARAMS = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "n",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "logit_bias",
        "reasoning_effort",
    }
)
_FIELDS = frozenset(
    {"name", "description", "project", "model", "params", "variables", "messages", "text"}
)


@dataclass(frozen=True)
class PromptDocument:
    """A checked prompt: what a version stores, and its compiled template."""

    name: str
    description: str | None
    project: str | None
    model: str | None
    params: dict[str, Any]
    variables: dict[str, Any]  # canonical schema document
    messages: list[dict[str, str]] | None
    text: str | None
    template: PromptTemplate

    @property
    def content(self) -> dict[str, Any]:
        """What the content hash covers."""
        return {
            "messages": self.messages,
            "text": self.text,
            "model": self.model,
            "params": self.params,
            "variables": self.variables,
        }

    @property
    def content_hash(self) -> str:
        return content_hash(self.content)


def content_hash(content: dict[str, Any]) -> str:
    canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def check_name(name: Any, *, field: str = "name") -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidInput(
            "a prompt name is 1 to 100 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            field=field,
        )
    return name


def check_label(label: Any) -> str:
    if not isinstance(label, str) or not LABEL_PATTERN.match(label) or label.isdigit():
        raise InvalidInput(
            "a label is 1 to 64 lower-case letters, digits, '.', '_' or '-', and not a number "
            "(a number names a version)",
            field="label",
        )
    return label


def parse_document(data: Any) -> PromptDocument:
    """Check a prompt's fields (unknown ones refused, so a typo does not vanish) and compile its
    template, so a template that cannot render never becomes a version."""
    if not isinstance(data, dict):
        raise InvalidInput("a prompt is a mapping of fields (name, messages or text, ...)")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise InvalidInput(
            f"unknown prompt field {unknown[0]!r}; known: {', '.join(sorted(_FIELDS))}",
            field=str(unknown[0]),
        )
    name = check_name(data.get("name"))
    model = _optional_text(data, "model", 200)
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise InvalidInput("params is a mapping of model parameters", field="params")
    for key in params:
        if key not in PARAMS:
            raise InvalidInput(
                f"unknown model parameter {key!r}; known: {', '.join(sorted(PARAMS))}",
                field=f"params.{key}",
            )
    variables = schema_document(parse_variables(data.get("variables") or {}))
    messages, text = data.get("messages"), data.get("text")
    from capstan.prompts.render import compile_prompt  # Jinja2: loaded by the first prompt

    template = compile_prompt(messages=messages, text=text)
    if messages is not None:
        messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    return PromptDocument(
        name=name,
        description=_optional_text(data, "description", 500),
        project=_optional_text(data, "project", 100),
        model=model,
        params=params,
        variables=variables,
        messages=messages,
        text=text,
        template=template,
    )


def parse_yaml(source: str) -> PromptDocument:
    try:
        data = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"the prompt file is not valid YAML: {exc}") from exc
    return parse_document(data)


def _optional_text(data: dict[str, Any], key: str, limit: int) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise InvalidInput(f"{key} is a text of 1 to {limit} characters", field=key)
    return value


def version_document(
    name: str,
    *,
    messages: list[dict[str, str]] | None,
    text: str | None,
    model: str | None,
    params: dict[str, Any],
    variables: dict[str, Any],
) -> str:
    """A version as YAML in the order an author writes it: what `diff` compares line by line."""
    data: dict[str, Any] = {"name": name}
    if model is not None:
        data["model"] = model
    if params:
        data["params"] = params
    if variables:
        data["variables"] = variables
    if messages is not None:
        data["messages"] = messages
    if text is not None:
        data["text"] = text
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
