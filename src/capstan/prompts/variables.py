"""The variables a prompt declares: a small subset of JSON schema.

The schema is checked twice. `parse_variables` checks the schema itself when a prompt is pushed,
so an authoring mistake is an `InvalidInput` before it becomes a version. `bind` checks what a
client sends on every render, so a wrong variable is a 400 that names it rather than a prompt
rendered with a hole in it, or a typo silently ignored.
"""

from __future__ import annotations

import copy
import enum
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from capstan.errors import CapstanError, InvalidInput

TYPES = ("string", "number", "integer", "boolean", "array", "object")
MAX_VARIABLES = 100
MAX_NAME_CHARS = 64
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYS = ("type", "enum", "required", "default", "description")

# bool is an int in Python but never in JSON: `true` is not a count.
_IS_TYPE: Final[dict[str, Callable[[Any], bool]]] = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}
_ARTICLE = {"integer": "an", "array": "an", "object": "an"}


class PromptInputError(CapstanError):
    """The variables a client sent do not fit the prompt: the client's mistake, so a 400."""

    status = 400
    slug = "invalid-prompt-input"
    title = "Invalid prompt input"


class _NoDefault(enum.Enum):
    NO_DEFAULT = "NO_DEFAULT"


# A sentinel rather than None, because null could one day be a default in its own right.
NO_DEFAULT: Final = _NoDefault.NO_DEFAULT


@dataclass(frozen=True, slots=True)
class VariableSpec:
    name: str
    type: str
    enum: tuple[Any, ...] | None = None
    required: bool = True
    default: Any = NO_DEFAULT
    description: str | None = None

    @property
    def has_default(self) -> bool:
        return self.default is not NO_DEFAULT


def parse_variables(raw: Mapping[str, Any] | None) -> tuple[VariableSpec, ...]:
    """Specs sorted by name, so that equal schemas compare, store and hash equal."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise InvalidInput("variables is a mapping of names to types", field="variables")
    if len(raw) > MAX_VARIABLES:
        raise InvalidInput(
            f"a prompt declares at most {MAX_VARIABLES} variables, not {len(raw)}",
            field="variables",
        )
    return tuple(_parse_one(name, raw[name]) for name in sorted(raw, key=str))


def _parse_one(name: Any, raw: Any) -> VariableSpec:
    field = f"variables.{name}"
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > MAX_NAME_CHARS:
        raise InvalidInput(
            f"variable name {name!r} is not an identifier of at most {MAX_NAME_CHARS} "
            "characters (letters, digits and '_', not starting with a digit)",
            field=field,
        )
    body: Mapping[str, Any] = {"type": raw} if isinstance(raw, str) else raw
    if not isinstance(body, Mapping):
        raise InvalidInput(
            f"variable `{name}` is a type name or a mapping with keys {', '.join(_KEYS)}",
            field=field,
        )
    for key in body:
        if key not in _KEYS:
            raise InvalidInput(
                f"variable `{name}` has unknown key {key!r}; known: {', '.join(_KEYS)}",
                field=f"{field}.{key}",
            )
    type_ = body.get("type", "string")
    if type_ not in TYPES:
        raise InvalidInput(
            f"variable `{name}` has unknown type {type_!r}; one of: {', '.join(TYPES)}",
            field=field,
        )
    enum_ = _parse_enum(name, type_, body.get("enum"))
    default = body.get("default", NO_DEFAULT)
    if default is not NO_DEFAULT:
        if not _IS_TYPE[type_](default):
            raise InvalidInput(
                f"the default of `{name}` must be {_a(type_)}, got {_json_type(default)}",
                field=f"{field}.default",
            )
        if enum_ is not None and default not in enum_:
            raise InvalidInput(
                f"the default of `{name}` must be one of: {_show(enum_)}",
                field=f"{field}.default",
            )
    required = body.get("required", default is NO_DEFAULT)
    if not isinstance(required, bool):
        raise InvalidInput(f"`required` of `{name}` is true or false", field=f"{field}.required")
    if required and default is not NO_DEFAULT:
        raise InvalidInput(
            f"variable `{name}` has a default, so it is optional: drop `required: true`",
            field=f"{field}.required",
        )
    description = body.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidInput(f"the description of `{name}` is a text", field=f"{field}.description")
    return VariableSpec(name, type_, enum_, required, default, description)


def _parse_enum(name: str, type_: str, raw: Any) -> tuple[Any, ...] | None:
    if raw is None:
        return None
    field = f"variables.{name}.enum"
    if not isinstance(raw, list) or not raw:
        raise InvalidInput(f"the enum of `{name}` is a non-empty list", field=field)
    for value in raw:
        if not _IS_TYPE[type_](value):
            raise InvalidInput(
                f"the enum of `{name}` lists {value!r}, which is not {_a(type_)}", field=field
            )
    return tuple(raw)


def schema_document(specs: tuple[VariableSpec, ...]) -> dict[str, Any]:
    """The canonical JSON form, what is stored and hashed: every key spelled out, so the same
    schema written with shorthands or without is stored the same."""
    document: dict[str, Any] = {}
    for spec in specs:
        entry: dict[str, Any] = {"type": spec.type}
        if spec.enum is not None:
            entry["enum"] = list(spec.enum)
        entry["required"] = spec.required
        if spec.has_default:
            entry["default"] = spec.default
        if spec.description is not None:
            entry["description"] = spec.description
        document[spec.name] = entry
    return document


def bind(specs: tuple[VariableSpec, ...], given: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the template sees. A prompt that declares nothing takes what it is given: its
    template's strict undefined still names anything missing."""
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise PromptInputError(
            "variables is a mapping of names to values", field="prompt.variables"
        )
    if not specs:
        return dict(given)
    declared = {spec.name for spec in specs}
    for name in given:
        if name not in declared:
            raise PromptInputError(
                f"unknown variable `{name}`; the prompt declares: {', '.join(sorted(declared))}",
                field=f"prompt.variables.{name}",
            )
    bound: dict[str, Any] = {}
    for spec in specs:
        if spec.name in given:
            bound[spec.name] = _checked(spec, given[spec.name])
        elif spec.has_default:
            bound[spec.name] = copy.deepcopy(spec.default)  # a list default is not shared
        elif spec.required:
            raise PromptInputError(
                f"missing variable `{spec.name}` ({_describe(spec)})",
                field=f"prompt.variables.{spec.name}",
            )
    return bound


def _checked(spec: VariableSpec, value: Any) -> Any:
    field = f"prompt.variables.{spec.name}"
    if not _IS_TYPE[spec.type](value):
        raise PromptInputError(
            f"variable `{spec.name}` must be {_a(spec.type)}, got {_json_type(value)}",
            field=field,
        )
    if spec.enum is not None and value not in spec.enum:
        raise PromptInputError(
            f"variable `{spec.name}` must be one of: {_show(spec.enum)}", field=field
        )
    return value


def _describe(spec: VariableSpec) -> str:
    if spec.enum is None:
        return spec.type
    return f"{spec.type}, one of: {_show(spec.enum)}"


def _a(type_: str) -> str:
    return f"{_ARTICLE.get(type_, 'a')} {type_}"


def _show(values: tuple[Any, ...]) -> str:
    return ", ".join(v if isinstance(v, str) else json.dumps(v) for v in values)


def _json_type(value: Any) -> str:
    """The JSON name of what a client sent, since that is the language the client speaks."""
    if value is None:
        return "null"
    for type_ in ("boolean", "integer", "number", "string", "array", "object"):
        if _IS_TYPE[type_](value):
            return type_
    return type(value).__name__
