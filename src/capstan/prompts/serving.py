"""Managed prompts on the request path: a chat completion or an Anthropic message names a prompt
(`"prompt": {"name": …, "label": …, "variables": {…}}` in the body, or the header
`x-capstan-prompt: support-reply@production`, `@7` for a version), and the gateway renders it
into the request before routing.

The rendered messages go before the client's own; the prompt's model and parameters apply
where the request sets none (the request's explicit ones win). A label with a running
experiment serves the caller's sticky variant instead. Everything is read from the routing
snapshot in memory; only a version pinned by number that no label points at is read from the
database, once, and kept (versions never change).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from capstan.errors import CapstanError
from capstan.gateway.errors import GatewayError
from capstan.prompts.assignment import assign, subject_of
from capstan.prompts.service import LATEST
from capstan.prompts.service import PRODUCTION as DEFAULT_LABEL
from capstan.prompts.snapshot import (
    PromptEntry,
    PromptIndex,
    RunningExperiment,
    ServedVersion,
    load_version,
)
from capstan.prompts.variables import bind

if TYPE_CHECKING:
    from capstan.gateway.recording import CallRecord
    from capstan.gateway.runtime import Gateway
    from capstan.identity.principal import Principal

PROMPT_HEADER = "x-capstan-prompt"
VERSION_HEADER = "x-capstan-prompt-version"
# Prompt parameters an Anthropic request takes, under its own name where it differs.
_ANTHROPIC_PARAMS = {
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "stop": "stop_sequences",
}
_MAX_TOKEN_PARAMS = ("max_tokens", "max_completion_tokens")

Apply = Callable[[dict[str, Any], ServedVersion, list[dict[str, str]]], None]


@dataclass(frozen=True, slots=True)
class PromptRef:
    name: str
    label: str | None
    version: int | None
    variables: Any


def prompt_ref(body: dict[str, Any], header: str | None) -> PromptRef | None:
    """What the request asks for (the body's `prompt` wins over the header); `prompt` is
    taken out of the body, which goes upstream."""
    spec = body.pop("prompt", None)
    if spec is None and header is None:
        return None
    name = label = None
    version: int | None = None
    variables: Any = None
    if header is not None:
        name, label, version = _parse_ref(header, PROMPT_HEADER)
    if isinstance(spec, str):
        name, label, version = _parse_ref(spec, "prompt")
    elif isinstance(spec, dict):
        variables = spec.get("variables")
        if spec.get("name") is not None:
            name, label, version = _parse_ref(str(spec["name"]), "prompt.name")
        if spec.get("label") is not None:
            label = _text(spec["label"], "prompt.label")
        if spec.get("version") is not None:
            version = spec["version"]
            if type(version) is not int or version < 1:
                raise _invalid("prompt.version is a version number (1, 2, ...)", "prompt.version")
    elif spec is not None:
        raise _invalid("prompt is an object: {name, label or version, variables}", "prompt")
    if not name:
        raise _invalid("prompt.name is required", "prompt.name")
    if label is not None and version is not None:
        raise _invalid("name a prompt's label or its version, not both", "prompt.version")
    return PromptRef(name, label, version, variables)


def _parse_ref(text: str, param: str) -> tuple[str, str | None, int | None]:
    name, _, ref = text.strip().partition("@")
    if not name:
        raise _invalid(f"{param} is NAME, NAME@LABEL or NAME@VERSION", param)
    if not ref:
        return name, None, None
    if ref.isdigit():
        return name, None, int(ref)
    return name, ref, None


def _text(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value:
        raise _invalid(f"{param} must be a non-empty string", param)
    return value


def _invalid(message: str, param: str) -> GatewayError:
    return GatewayError(400, message, param=param, code="invalid_prompt")


@dataclass(frozen=True, slots=True)
class Choice:
    """The version a request gets: `served` is None when the snapshot does not hold it (a
    version pinned by number that no label points at)."""

    entry: PromptEntry
    number: int
    experiment: RunningExperiment | None
    served: ServedVersion | None


def choose(
    index: PromptIndex, ref: PromptRef, principal: Principal, headers: Mapping[str, str]
) -> Choice:
    entry = index.entries.get(ref.name)
    if entry is None:
        raise GatewayError(
            404, f"no prompt named {ref.name!r}", param="prompt", code="prompt_not_found"
        )
    number, experiment = _choose(entry, ref, principal, headers)
    return Choice(entry, number, experiment, index.versions.get((entry.id, number)))


def render_into(
    body: dict[str, Any],
    served: ServedVersion,
    variables: Any,
    apply: Apply,
    record: CallRecord,
    experiment: RunningExperiment | None,
) -> None:
    """Render `served` with the request's variables into `body`; a variable missing or of the
    wrong type, or a template that breaks the sandbox's rules, is a 400 naming it."""
    from capstan.prompts.render import render  # Jinja2: loaded by the first prompt

    try:
        rendered = render(served.template, bind(served.variables, variables))
    except CapstanError as exc:
        raise GatewayError(400, exc.detail, param=exc.field, code="invalid_prompt") from exc
    messages = [{"role": "system", "content": rendered}] if isinstance(rendered, str) else rendered
    apply(body, served, messages)
    record.prompt_name = served.prompt
    record.prompt_version = served.version
    record.experiment_id = experiment.id if experiment is not None else None


async def use_prompt(
    gateway: Gateway,
    body: dict[str, Any],
    header: str | None,
    headers: Mapping[str, str],
    principal: Principal,
    record: CallRecord,
    apply: Apply,
) -> None:
    """Render the prompt the request names into `body` (in place), noting on `record` which
    version served; no-op when it names none."""
    ref = prompt_ref(body, header)
    if ref is None:
        return
    table = await gateway.routing_table()
    choice = choose(table.prompts, ref, principal, headers)
    served = choice.served or await _pinned(gateway, choice.entry, choice.number)
    render_into(body, served, ref.variables, apply, record, choice.experiment)


def _choose(
    entry: PromptEntry, ref: PromptRef, principal: Principal, headers: Mapping[str, str]
) -> tuple[int, RunningExperiment | None]:
    """The version to serve: pinned, the newest, the caller's experiment variant, or the
    label's."""
    if ref.version is not None:
        return ref.version, None
    label = ref.label or DEFAULT_LABEL
    if label == LATEST:
        return entry.latest, None
    experiment = entry.experiments.get(label)
    if experiment is not None:
        key_id = str(principal.key_id) if principal.key_id is not None else None
        user_id = str(principal.user_id) if principal.user_id is not None else None
        subject = subject_of(experiment.sticky_by, user_id=user_id, key_id=key_id, headers=headers)
        if subject is not None:
            return assign(experiment.key, subject, experiment.variants).version, experiment
    number = entry.labels.get(label)
    if number is None:
        raise GatewayError(
            404,
            f"prompt {entry.name!r} has no label {label!r}",
            param="prompt.label",
            code="prompt_not_found",
        )
    return number, None


async def _pinned(gateway: Gateway, entry: PromptEntry, number: int) -> ServedVersion:
    key = (entry.id, number)
    served = gateway.prompt_versions.get(key)
    if served is None:

        def load() -> ServedVersion | None:
            with gateway.services.store.read() as session:
                return load_version(session, entry, number)

        served = await asyncio.to_thread(load)
        if served is None:
            raise GatewayError(
                404,
                f"prompt {entry.name!r} has no version {number}",
                param="prompt.version",
                code="prompt_not_found",
            )
        gateway.prompt_versions.put(key, served)
    return served


def apply_openai(
    body: dict[str, Any], served: ServedVersion, messages: list[dict[str, str]]
) -> None:
    """Chat Completions: the rendered messages first, then the client's."""
    own = body.get("messages")
    body["messages"] = [*messages, *own] if isinstance(own, list) else messages
    if served.model is not None:
        body.setdefault("model", served.model)
    has_limit = any(k in body for k in _MAX_TOKEN_PARAMS)
    for key, value in served.params.items():
        if key in _MAX_TOKEN_PARAMS and has_limit:
            continue
        body.setdefault(key, value)


def apply_anthropic(
    body: dict[str, Any], served: ServedVersion, messages: list[dict[str, str]]
) -> None:
    """Messages API: rendered system messages join the request's `system` (before it), the
    others go before the client's messages; parameters the API has are mapped to its names."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] in ("system", "developer"))
    turns = [m for m in messages if m["role"] not in ("system", "developer")]
    if system:
        own = body.get("system")
        if isinstance(own, list):
            body["system"] = [{"type": "text", "text": system}, *own]
        elif isinstance(own, str) and own:
            body["system"] = f"{system}\n\n{own}"
        else:
            body["system"] = system
    if turns:
        own_turns = body.get("messages")
        body["messages"] = [*turns, *own_turns] if isinstance(own_turns, list) else turns
    if served.model is not None:
        body.setdefault("model", served.model)
    for key, value in served.params.items():
        name = _ANTHROPIC_PARAMS.get(key)
        if name is not None:
            body.setdefault(
                name, [value] if name == "stop_sequences" and isinstance(value, str) else value
            )
