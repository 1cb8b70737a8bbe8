"""A prompt's variables schema: checked when the prompt is pushed (an `InvalidInput` naming the
variable), and against what a client sends on every render (a 400 naming the variable)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capstan.errors import InvalidInput
from capstan.prompts.variables import (
    NO_DEFAULT,
    TYPES,
    PromptInputError,
    VariableSpec,
    bind,
    parse_variables,
    schema_document,
)

SUPPORT = parse_variables(
    {
        "product": "string",
        "tier": {"type": "string", "enum": ["free", "pro"]},
        "n": {"type": "integer", "default": 3},
    }
)


# parse_variables


def test_a_shorthand_declares_a_required_variable_of_that_type() -> None:
    assert parse_variables({"n": "integer"}) == (VariableSpec("n", "integer"),)


def test_a_mapping_declares_type_enum_default_and_description() -> None:
    (spec,) = parse_variables(
        {"tier": {"type": "string", "enum": ["free", "pro"], "default": "free", "description": "d"}}
    )
    assert spec == VariableSpec("tier", "string", ("free", "pro"), False, "free", "d")


def test_the_type_defaults_to_string() -> None:
    assert parse_variables({"product": {"description": "what is sold"}})[0].type == "string"


def test_a_variable_with_a_default_is_optional() -> None:
    (spec,) = parse_variables({"n": {"type": "integer", "default": 3}})
    assert not spec.required
    assert spec.has_default


def test_a_variable_may_be_optional_without_a_default() -> None:
    (spec,) = parse_variables({"note": {"required": False}})
    assert not spec.required
    assert spec.default is NO_DEFAULT


def test_specs_are_sorted_by_name() -> None:
    assert [spec.name for spec in SUPPORT] == ["n", "product", "tier"]


@pytest.mark.parametrize("raw", [None, {}])
def test_no_variables_declare_nothing(raw: dict[str, Any] | None) -> None:
    assert parse_variables(raw) == ()


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"n": {"type": "integer", "colour": "red"}}, "variables.n.colour"),
        ({"n": "int"}, "variables.n"),
        ({"n": 3}, "variables.n"),
        ({"1st": "string"}, "variables.1st"),
        ({"first-name": "string"}, "variables.first-name"),
        ({"x" * 65: "string"}, f"variables.{'x' * 65}"),
        ({"n": {"type": "integer", "enum": [1, "two"]}}, "variables.n.enum"),
        ({"n": {"type": "integer", "enum": [True]}}, "variables.n.enum"),
        ({"n": {"type": "integer", "enum": []}}, "variables.n.enum"),
        ({"n": {"type": "integer", "enum": 1}}, "variables.n.enum"),
        ({"n": {"type": "integer", "default": "3"}}, "variables.n.default"),
        ({"n": {"type": "integer", "default": 2.5}}, "variables.n.default"),
        ({"n": {"type": "integer", "enum": [1, 2], "default": 3}}, "variables.n.default"),
        ({"n": {"type": "integer", "required": "yes"}}, "variables.n.required"),
        ({"n": {"type": "integer", "required": True, "default": 3}}, "variables.n.required"),
        ({"n": {"type": "integer", "description": 3}}, "variables.n.description"),
    ],
)
def test_a_bad_schema_is_invalid_input_naming_where(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_variables(raw)
    assert caught.value.field == field


def test_an_unknown_key_is_named() -> None:
    with pytest.raises(InvalidInput, match="unknown key 'colour'"):
        parse_variables({"n": {"colour": "red"}})


def test_variables_must_be_a_mapping() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_variables(["product"])  # type: ignore[arg-type]
    assert caught.value.field == "variables"


def test_a_prompt_declares_at_most_100_variables() -> None:
    parse_variables({f"v{i}": "string" for i in range(100)})
    with pytest.raises(InvalidInput, match="at most 100"):
        parse_variables({f"v{i}": "string" for i in range(101)})


# schema_document


def test_the_schema_document_spells_every_key_out() -> None:
    assert schema_document(SUPPORT) == {
        "n": {"type": "integer", "required": False, "default": 3},
        "product": {"type": "string", "required": True},
        "tier": {"type": "string", "enum": ["free", "pro"], "required": True},
    }


def test_a_shorthand_and_its_long_form_have_the_same_document() -> None:
    short = parse_variables({"product": "string"})
    long = parse_variables({"product": {"type": "string", "required": True}})
    assert schema_document(short) == schema_document(long)


_VALUES = {
    "string": st.text(max_size=8),
    "integer": st.integers(),
    "number": st.integers() | st.floats(allow_nan=False, allow_infinity=False),
    "boolean": st.booleans(),
    "array": st.lists(st.integers(), max_size=3),
    "object": st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
}


@st.composite
def _specs(draw: st.DrawFn) -> VariableSpec:
    name = draw(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True))
    type_ = draw(st.sampled_from(TYPES))
    values = _VALUES[type_]
    enum = draw(st.none() | st.lists(values, min_size=1, max_size=4).map(tuple))
    choices = values if enum is None else st.sampled_from(enum)
    default = draw(st.just(NO_DEFAULT) | choices)
    required = default is NO_DEFAULT and draw(st.booleans())
    description = draw(st.none() | st.text(max_size=20))
    return VariableSpec(name, type_, enum, required, default, description)


@given(st.lists(_specs(), max_size=6, unique_by=lambda spec: spec.name))
def test_the_schema_document_parses_back_to_the_same_specs(specs: list[VariableSpec]) -> None:
    canonical = tuple(sorted(specs, key=lambda spec: spec.name))
    assert parse_variables(schema_document(canonical)) == canonical


# bind


def test_given_variables_are_bound_and_defaults_applied() -> None:
    assert bind(SUPPORT, {"product": "Capstan", "tier": "pro"}) == {
        "n": 3,
        "product": "Capstan",
        "tier": "pro",
    }


def test_a_given_value_overrides_the_default() -> None:
    assert bind(SUPPORT, {"product": "Capstan", "tier": "pro", "n": 5})["n"] == 5


def test_a_missing_required_variable_is_named_with_its_type_and_choices() -> None:
    with pytest.raises(
        PromptInputError, match=r"missing variable `tier` \(string, one of: free, pro\)"
    ) as caught:
        bind(SUPPORT, {"product": "Capstan"})
    assert caught.value.field == "prompt.variables.tier"
    assert caught.value.status == 400


def test_a_missing_variable_without_choices_is_named_with_its_type() -> None:
    with pytest.raises(PromptInputError, match=r"missing variable `product` \(string\)"):
        bind(SUPPORT, {"tier": "pro"})


def test_an_optional_variable_without_a_default_is_left_out() -> None:
    assert bind(parse_variables({"note": {"required": False}}), {}) == {}


def test_a_wrongly_typed_variable_is_named_with_both_types() -> None:
    with pytest.raises(
        PromptInputError, match="variable `n` must be an integer, got string"
    ) as caught:
        bind(SUPPORT, {"product": "Capstan", "tier": "pro", "n": "3"})
    assert caught.value.field == "prompt.variables.n"


@pytest.mark.parametrize("type_", ["integer", "number"])
def test_a_boolean_is_not_a_number(type_: str) -> None:
    with pytest.raises(PromptInputError, match="got boolean"):
        bind(parse_variables({"n": type_}), {"n": True})


def test_a_float_is_not_an_integer() -> None:
    with pytest.raises(PromptInputError, match="got number"):
        bind(parse_variables({"n": "integer"}), {"n": 2.5})


@pytest.mark.parametrize("value", [2, 2.5])
def test_an_integer_or_a_float_is_a_number(value: float) -> None:
    assert bind(parse_variables({"x": "number"}), {"x": value}) == {"x": value}


@pytest.mark.parametrize(
    ("type_", "good", "bad"),
    [
        ("string", "a", 1),
        ("boolean", False, 0),
        ("array", [1], (1,)),
        ("object", {"a": 1}, [("a", 1)]),
    ],
)
def test_each_type_takes_its_json_kind_only(type_: str, good: Any, bad: Any) -> None:
    specs = parse_variables({"x": type_})
    assert bind(specs, {"x": good}) == {"x": good}
    with pytest.raises(PromptInputError):
        bind(specs, {"x": bad})


def test_a_value_outside_the_enum_names_the_allowed_values() -> None:
    with pytest.raises(PromptInputError, match="one of: free, pro") as caught:
        bind(SUPPORT, {"product": "Capstan", "tier": "gold"})
    assert caught.value.field == "prompt.variables.tier"


def test_an_undeclared_variable_is_named_with_the_declared_ones() -> None:
    with pytest.raises(
        PromptInputError, match="unknown variable `prodcut`; the prompt declares: n, product, tier"
    ) as caught:
        bind(SUPPORT, {"prodcut": "Capstan", "tier": "pro"})
    assert caught.value.field == "prompt.variables.prodcut"


def test_a_prompt_that_declares_nothing_takes_what_it_is_given() -> None:
    assert bind((), {"anything": [1, 2]}) == {"anything": [1, 2]}


def test_no_variables_given_bind_to_nothing() -> None:
    assert bind((), None) == {}


def test_variables_that_are_not_a_mapping_are_refused() -> None:
    with pytest.raises(PromptInputError) as caught:
        bind(SUPPORT, ["Capstan"])  # type: ignore[arg-type]
    assert caught.value.field == "prompt.variables"


def test_a_default_is_not_shared_between_renders() -> None:
    specs = parse_variables({"tags": {"type": "array", "default": ["a"]}})
    bind(specs, {})["tags"].append("b")
    assert bind(specs, {}) == {"tags": ["a"]}
