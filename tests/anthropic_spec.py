"""Validation against Anthropic's published OpenAPI document (November 2024, stale).

The document predates thinking blocks, url image sources and newer stop reasons, so tests use it
for what it still settles: required fields, types and enums of the Messages API shapes."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

from tests.openai_spec import spec_path

SPEC_NAME = "anthropic-openapi-stainless-2024-11.json"  # found beside OpenAI's document


@cache
def _components() -> dict[str, Any]:
    components: dict[str, Any] = _without_null_types(
        json.loads((spec_path().parent / SPEC_NAME).read_text())["components"]
    )
    return components


def _without_null_types(node: Any) -> Any:
    """The document writes `"type": null` where it means no type constraint (e.g. `Model`)."""
    if isinstance(node, dict):
        return {
            k: _without_null_types(v) for k, v in node.items() if not (k == "type" and v is None)
        }
    if isinstance(node, list):
        return [_without_null_types(item) for item in node]
    return node


def validate_anthropic(schema_name: str, instance: Any) -> None:
    """Raise `jsonschema.ValidationError` unless `instance` fits `components.schemas[name]`."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": _components()}
    Draft202012Validator(schema).validate(instance)
