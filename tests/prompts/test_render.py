"""Prompt templates: compiled when pushed (syntax errors name the message and line), rendered in
an immutable sandbox within an output and a time limit. Whatever a template tries, rendering
ends in the prompt or in a PromptRenderError, never in another exception."""

from __future__ import annotations

from typing import Any

import pytest

from capstan.errors import InvalidInput
from capstan.prompts.render import (
    Limits,
    PromptRenderError,
    PromptTemplate,
    compile_prompt,
    render,
)


def text(source: str, variables: dict[str, Any] | None = None, limits: Limits = Limits()) -> Any:
    return render(compile_prompt(text=source), variables or {}, limits)


def refusal(
    source: str, variables: dict[str, Any] | None = None, **limits: Any
) -> PromptRenderError:
    with pytest.raises(PromptRenderError) as caught:
        text(source, variables, Limits(**limits))
    assert caught.value.status == 400
    return caught.value


# Rendering


def test_messages_render_to_roles_and_contents() -> None:
    template = compile_prompt(
        messages=[
            {"role": "system", "content": "You support {{ product }}."},
            {"role": "user", "content": "I am on the {{ tier }} tier."},
        ]
    )
    assert render(template, {"product": "Capstan", "tier": "pro"}) == [
        {"role": "system", "content": "You support Capstan."},
        {"role": "user", "content": "I am on the pro tier."},
    ]


def test_text_renders_to_a_string() -> None:
    assert text("Summarise: {{ doc }}", {"doc": "a memo"}) == "Summarise: a memo"


def test_the_template_keeps_its_sources() -> None:
    template = compile_prompt(messages=[{"role": "user", "content": "{{ q }}"}])
    assert template.message_sources == (("user", "{{ q }}"),)
    assert compile_prompt(text="{{ q }}").text_source == "{{ q }}"


def test_a_trailing_newline_is_kept() -> None:
    assert text("line\n") == "line\n"


def test_values_are_not_html_escaped() -> None:
    assert text("{{ q }}", {"q": "<b>&</b>"}) == "<b>&</b>"


def test_loops_conditions_and_filters_work() -> None:
    source = (
        "{% for t in tags if t != 'b' %}{{ t|upper }}{% if not loop.last %},{% endif %}{% endfor %}"
    )
    assert text(source, {"tags": ["a", "b", "c"]}) == "A,C"


def test_arithmetic_within_the_limits_works() -> None:
    assert (
        text("{{ '-' * 3 }} {{ 2 ** 10 }} {{ [1] + [2] }} {{ 'a' + 'b' }}") == "--- 1024 [1, 2] ab"
    )


def test_a_range_within_the_bound_works() -> None:
    assert text("{{ range(10000)|length }}") == "10000"


def test_dict_and_namespace_are_available() -> None:
    source = "{% set ns = namespace(n=1) %}{% set ns.n = ns.n + 1 %}{{ ns.n }}{{ dict(a=1).a }}"
    assert text(source) == "21"


def test_an_optional_variable_can_be_tested_for() -> None:
    assert text("{% if note is defined %}{{ note }}{% else %}none{% endif %}") == "none"


def test_power_is_left_associative_so_a_tower_of_small_powers_stays_small() -> None:
    assert text("{{ 9**9**9 }}") == str((9**9) ** 9)


# Missing variables


def test_a_missing_variable_is_named() -> None:
    error = refusal("Dear {{ customer }},")
    assert error.detail == "the template uses `customer`, which was not given"
    assert error.field == "prompt.variables.customer"


def test_a_missing_attribute_is_a_render_error() -> None:
    error = refusal("{{ user.email }}", {"user": {"name": "Ada"}})
    assert "has no attribute 'email'" in error.detail


# Compiling


def test_a_syntax_error_names_the_message_and_line() -> None:
    with pytest.raises(InvalidInput, match="line 2") as caught:
        compile_prompt(
            messages=[
                {"role": "system", "content": "fine"},
                {"role": "user", "content": "one\n{{ two }"},
            ]
        )
    assert caught.value.field == "messages[1].content"


def test_a_syntax_error_in_text_names_text() -> None:
    with pytest.raises(InvalidInput) as caught:
        compile_prompt(text="{% if %}")
    assert caught.value.field == "text"


def test_an_unknown_filter_is_a_compile_error() -> None:
    with pytest.raises(InvalidInput, match="filter"):
        compile_prompt(text="{{ x|shout }}")


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"role": "robot", "content": "hi"}, "messages[0].role"),
        ({"content": "hi"}, "messages[0].role"),
        ({"role": "user", "content": 3}, "messages[0].content"),
        ({"role": "user"}, "messages[0].content"),
        ({"role": "user", "content": "hi", "name": "x"}, "messages[0].name"),
        ("hi", "messages[0]"),
    ],
)
def test_a_malformed_message_is_refused_naming_where(message: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        compile_prompt(messages=[message])
    assert caught.value.field == field


@pytest.mark.parametrize("role", ["system", "user", "assistant", "developer"])
def test_the_four_roles_are_accepted(role: str) -> None:
    template = compile_prompt(messages=[{"role": role, "content": "x"}])
    assert render(template, {}) == [{"role": role, "content": "x"}]


@pytest.mark.parametrize(
    "parts", [{}, {"text": "a", "messages": [{"role": "user", "content": "b"}]}]
)
def test_a_prompt_has_exactly_one_of_messages_and_text(parts: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput, match="exactly one"):
        compile_prompt(**parts)


def test_a_prompt_has_at_least_one_message() -> None:
    with pytest.raises(InvalidInput) as caught:
        compile_prompt(messages=[])
    assert caught.value.field == "messages"


def test_a_prompt_has_at_most_50_messages() -> None:
    compile_prompt(messages=[{"role": "user", "content": "x"}] * 50)
    with pytest.raises(InvalidInput, match="at most 50"):
        compile_prompt(messages=[{"role": "user", "content": "x"}] * 51)


@pytest.mark.parametrize(
    "source", ["{% include 'x' %}", "{% extends 'x' %}", "{% import 'x' as x %}"]
)
def test_a_prompt_cannot_load_other_templates(source: str) -> None:
    with pytest.raises(InvalidInput, match="include"):
        compile_prompt(text=source)


def test_a_template_nested_past_pythons_limits_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="nests too deeply"):
        compile_prompt(text="{% for i in x %}" * 25 + "{% endfor %}" * 25)


# The sandbox


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ joiner.__init__.__globals__ }}",
        "{{ lipsum.__globals__ }}",
        "{{ self.__init__.__globals__ }}",
        "{{ self._TemplateReference__context }}",
        "{{ request.application }}",
        "{{ config }}",
        "{{ '{0.__class__}'.format(x) }}",
        "{{ x.__class__.__base__ }}",
        "{{ range.__globals__ }}",
        "{{ namespace.__init__.__globals__ }}",
        "{% for i in range(10**9) %}x{% endfor %}",
        "{{ range(10001)|length }}",
        "{{ 'a' * 10**9 }}",
        "{{ 10**9 * 'a' }}",
        "{{ [0] * 10**9 }}",
        "{{ 9 ** (9 ** 9) }}",
        "{{ (10**100) ** 100 }}",
        "{% set ns = namespace(x=3) %}"
        "{% for i in range(50) %}{% set ns.x = ns.x * ns.x %}{% endfor %}",
        "{% set l = [] %}{{ l.append(1) }}",
        "{% set d = {} %}{{ d.update({'a': 1}) }}",
        "{{ x.pop() }}",
        "{{ 1 / 0 }}",
        "{% for i in [1] recursive %}{{ loop([1]) }}{% endfor %}",
    ],
)
def test_what_prompts_may_not_do_fails_as_a_render_error(source: str) -> None:
    refusal(source, {"x": [1, 2]})


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'a'.center(10**9) }}",
        "{{ 'a'.ljust(10**9) }}",
        "{{ '1'.zfill(10**9) }}",
        "{{ 'a\tb'.expandtabs(10**9) }}",
        "{{ '%999999999d' % 1 }}",
        "{{ '%*d' % (10**9, 1) }}",
        "{{ '%.*f' % (10**9, 1.0) }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ '{:{}}'.format(1, 10**9) }}",
        "{{ '%999999d'|format(1) }}",
        "{{ s|center(10**9) }}",
        "{{ s|indent(10**9) }}",
        "{{ s|tojson(10**9) }}",
        "{{ [1]|slice(10**9)|list }}",
        "{{ [1, 2]|batch(10**9, 0)|list }}",
        "{{ ('a' * 1000).replace('a', 'b' * 1000) }}",
        "{{ ('a' * 1000)|replace('a', 'b' * 1000) }}",
    ],
)
def test_a_call_that_would_allocate_past_the_limit_is_refused_before_it_runs(
    source: str,
) -> None:
    error = refusal(source, {"s": "hi"})
    assert error.detail.startswith("the template tried something prompts may not do")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ '{:,}'.format(250000) }}", "250,000"),
        ("{{ '%d'|format(250000) }}", "250000"),
        ("{{ '%.2f' % 1234567.891 }}", "1234567.89"),
        ("Account 1234567: {{ s|center(6) }}", "Account 1234567:   hi  "),
        ("{{ 'abc'.replace('b', 'xx') }}", "axxc"),
    ],
)
def test_sizes_and_numbers_within_the_limits_still_render(source: str, expected: str) -> None:
    assert render(compile_prompt(text=source), {"s": "hi"}) == expected


def test_a_refused_operation_is_explained() -> None:
    error = refusal("{{ 'a' * 10**9 }}")
    assert error.detail.startswith("the template tried something prompts may not do")
    assert error.field == "prompt"


def test_a_failing_expression_is_explained_shortly() -> None:
    assert (
        refusal("{{ 1 / 0 }}").detail == "the template failed: ZeroDivisionError: division by zero"
    )


# Limits


def test_an_output_past_the_limit_is_refused() -> None:
    error = refusal("{% for i in range(10000) %}{{ '0123456789+' }}{% endfor %}")
    assert error.detail == "the rendered prompt exceeds 100,000 characters"


def test_the_output_limit_holds_across_messages() -> None:
    template = compile_prompt(
        messages=[{"role": "user", "content": "{{ 'x' * 600 }}"}] * 2,
    )
    assert render(template, {}, Limits(max_chars=1200))
    with pytest.raises(PromptRenderError, match="exceeds 1,000 characters"):
        render(template, {}, Limits(max_chars=1000))


def test_a_value_past_the_output_limit_is_refused_before_it_is_built() -> None:
    refusal("{{ ('x' * 600)|length }}", max_chars=500)


def test_a_render_past_the_time_limit_is_refused() -> None:
    source = "{% for i in range(10000) %}{% for j in range(10000) %}{{ j }}{% endfor %}{% endfor %}"
    error = refusal(source, max_chars=10**9, max_seconds=0.01)
    assert error.detail == "rendering took longer than 0.01 s"


def test_a_loop_that_prints_nothing_is_held_to_the_time_limit() -> None:
    source = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
    assert "took longer" in refusal(source, max_seconds=0.01).detail


def test_a_recursive_macro_is_held_to_the_time_limit() -> None:
    source = (
        "{% macro f(d) %}{% if d %}{{ f(d - 1) }}{{ f(d - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"
    )
    assert "took longer" in refusal(source, max_seconds=0.01).detail


def test_the_limits_of_one_render_do_not_carry_into_the_next() -> None:
    refusal("{{ 'x' * 600 }}", max_chars=500)
    assert len(text("{{ 'x' * 600 }}")) == 600


def test_a_compiled_template_renders_again_and_again() -> None:
    template: PromptTemplate = compile_prompt(text="{% for i in range(3) %}{{ v }}{% endfor %}")
    assert [render(template, {"v": v}) for v in "ab"] == ["aaa", "bbb"]
