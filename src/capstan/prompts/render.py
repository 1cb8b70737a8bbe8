"""Prompt templates: Jinja2 in an immutable sandbox, compiled once when a prompt is pushed and
rendered on the gateway's request path.

The sandbox keeps templates away from Python's internals (no `_` attributes, no unsafe
callables, no mutating lists or dicts). It does not bound what a template costs, so this module
does: `*`, `+` and `**` refuse a result past the output limit before computing it, `range` stops
at 10,000 items, every loop iteration and macro call checks the deadline (a loop that prints
nothing never yields a chunk to check after), and the output is measured chunk by chunk. Any
failure is a `PromptRenderError`, a 400 for the client, never a raw exception.

Calls that take a size are sized before they run, too: padding methods and filters
(`center`, `ljust`, `rjust`, `zfill`, `expandtabs`, `indent`, `batch`, `slice`, `tojson`),
`replace` (from the count of what it replaces), and widths in `%` and `format` specs. What is
left unbounded is exotic: a deeply nested structure built from repeated references and printed
whole. Prompt authors hold `prompts:write` (developers and admins of the organization); a
template from an author who is not trusted at all needs a process with a memory limit.
"""

from __future__ import annotations

import functools
import gc
import re
import threading
import time
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import (
    Environment,
    StrictUndefined,
    Template,
    TemplateSyntaxError,
    UndefinedError,
    nodes,
    pass_context,
)
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from capstan.errors import CapstanError, InvalidInput

ROLES = ("system", "user", "assistant", "developer")
MAX_MESSAGES = 50
MAX_RANGE = 10_000
MAX_EXPONENT = 100
MAX_INT_BITS = 4096  # far past any count or price; stops squaring in a loop from growing forever
_UNDEFINED_NAME = re.compile(r"'([A-Za-z_][A-Za-z0-9_]*)' is undefined")
_INCLUDES = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)
_TICK = "prompt-deadline"  # a filter name no template can spell: only `_compile` inserts it
# A width or precision of 100,000 or more, or one taken from an argument, in a `%` spec
# (`%999999d`, `%.*f`) or a `format` spec (`{:>999999}`, `{:{}}`).
_WIDE_PERCENT = re.compile(r"%[-+ #0]*(?:\*|\d{6,})|%[-+ #0]*\d*\.(?:\*|\d{6,})")
_WIDE_FORMAT = re.compile(r"\{[^{}]*:[^{}]*?(?:\d{6,}|\{)")
# Methods and filters whose integer arguments size their result.
_SIZING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_SIZING_FILTERS = frozenset({"center", "indent", "batch", "slice", "tojson", "wordwrap"})


class PromptRenderError(CapstanError):
    """The template could not be rendered with what the client sent: a 400, not a 500."""

    status = 400
    slug = "prompt-render-failed"
    title = "Prompt render failed"


@dataclass(frozen=True, slots=True)
class Limits:
    max_chars: int = 100_000
    max_seconds: float = 0.25


class _CollectorTime(threading.local):
    """CPU seconds this thread spent in Python's garbage collector: a full collection that
    a render happens to trigger (0.2-0.5 s in a big process) is not the template's cost."""

    def __init__(self) -> None:
        self.total = 0.0
        self.started = 0.0


_COLLECTOR = _CollectorTime()


def _collector_clock(phase: str, _info: dict[str, Any]) -> None:
    if phase == "start":
        _COLLECTOR.started = time.thread_time()
    else:
        _COLLECTOR.total += time.thread_time() - _COLLECTOR.started


gc.callbacks.append(_collector_clock)


@dataclass(frozen=True, slots=True)
class _Budget:
    limits: Limits
    deadline: float  # wall clock (`perf_counter`): cheap to read
    cpu_start: float  # this thread's CPU time at the start (`thread_time`), less its GC time

    @classmethod
    def start(cls, limits: Limits) -> _Budget:
        cpu = time.thread_time() - _COLLECTOR.total
        return cls(limits, time.perf_counter() + limits.max_seconds, cpu)

    def over(self) -> bool:
        """Past the time limit in CPU time spent on the template, not only on the wall
        clock: a render the scheduler set aside on a busy host, or that paid for a garbage
        collection, has not cost what the limit bounds. The wall clock is read first, the
        CPU clock (a system call) only once it has run out."""
        if time.perf_counter() <= self.deadline:
            return False
        spent = time.thread_time() - _COLLECTOR.total - self.cpu_start
        return spent > self.limits.max_seconds


# The render in progress on this thread or task: the sandbox's hooks get no argument of ours.
_IDLE = _Budget(Limits(), float("inf"), 0.0)  # frozen, so a safe default to share
_budget: ContextVar[_Budget] = ContextVar("prompt_budget", default=_IDLE)


class _PromptEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            enable_async=False,
        )
        self.globals["range"] = _bounded_range
        self.filters[_TICK] = _tick
        for name in ("lipsum", "cycler", "joiner"):  # they give prompts nothing but objects
            del self.globals[name]
        for name in _SIZING_FILTERS:
            self.filters[name] = _sized_filter(self.filters[name])
        self.filters["replace"] = _sized_replace(self.filters["replace"])
        self.filters["format"] = _sized_format(self.filters["format"])

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _refuse_huge(operator, left, right, _budget.get().limits.max_chars)
        return super().call_binop(context, operator, left, right)

    def call(
        __self,  # noqa: N805 - Jinja's own signature: its arguments must not clash with kwargs
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            name = getattr(__obj, "__name__", "")
            if name in _SIZING_METHODS:
                _refuse_sizes(args, kwargs)
            elif name == "replace":
                _refuse_replacement(owner, *args)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Any:
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str) and _WIDE_FORMAT.search(owner):
            raise SecurityError("a format spec with a width or precision of 100,000 or more")
        return super().wrap_str_format(value)


def _refuse_sizes(args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    max_chars = _budget.get().limits.max_chars
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > max_chars:
            raise SecurityError(f"a size of {value:,} (at most {max_chars:,})")


def _refuse_replacement(text: Any, old: Any = None, new: Any = None, count: Any = -1) -> None:
    """`text.replace(old, new)` sized before it runs: every occurrence may grow the text."""
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return
    found = len(text) + 1 if old == "" else text.count(old)
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    size = len(text) + found * (len(new) - len(old))
    max_chars = _budget.get().limits.max_chars
    if size > max_chars:
        raise SecurityError(f"a replacement of {size:,} characters (at most {max_chars:,})")


def _filter_arguments(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """A filter's value and arguments, without the context, environment or evaluation
    context that Jinja passes first to some filters."""
    skip = 0
    while skip < len(args) and isinstance(args[skip], Context | Environment | EvalContext):
        skip += 1
    return args[skip:]


def _sized_filter(function: Any) -> Any:
    @functools.wraps(function)
    def sized(*args: Any, **kwargs: Any) -> Any:
        _refuse_sizes(_filter_arguments(args)[1:], kwargs)  # the sizes follow the value
        return function(*args, **kwargs)

    return sized


def _sized_replace(function: Any) -> Any:
    @functools.wraps(function)
    def sized(*args: Any, **kwargs: Any) -> Any:
        value, *rest = _filter_arguments(args)
        _refuse_replacement(str(value), *rest, **kwargs)
        return function(*args, **kwargs)

    return sized


def _sized_format(function: Any) -> Any:
    @functools.wraps(function)
    def sized(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) and _WIDE_PERCENT.search(value):
            raise SecurityError("a format spec with a width or precision of 100,000 or more")
        return function(value, *args, **kwargs)

    return sized


def _refuse_huge(operator: str, left: Any, right: Any, max_chars: int) -> None:
    """Size the result from the operands, since computing it is what must not happen."""
    sized = (str, list, tuple)
    if operator == "+" and isinstance(left, sized) and isinstance(right, sized):
        size = len(left) + len(right)
    elif operator == "*" and isinstance(left, sized) and isinstance(right, int):
        size = len(left) * right
    elif operator == "*" and isinstance(right, sized) and isinstance(left, int):
        size = len(right) * left
    elif operator == "*" and isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise SecurityError(f"a product of more than {MAX_INT_BITS} bits")
        return
    elif operator == "**" and isinstance(left, int) and isinstance(right, int):
        if right > MAX_EXPONENT or left.bit_length() * right > MAX_INT_BITS:
            raise SecurityError(f"a power beyond exponent {MAX_EXPONENT} or {MAX_INT_BITS} bits")
        return
    elif operator == "%" and isinstance(left, str):
        if _WIDE_PERCENT.search(left):
            raise SecurityError("a format spec with a width or precision of 100,000 or more")
        return
    else:
        return
    if size > max_chars:
        raise SecurityError(f"a value of {size:,} characters or items (at most {max_chars:,})")


def _bounded_range(*args: int) -> range:
    items = range(*args)
    if len(items) > MAX_RANGE:
        raise SecurityError(f"a range of {len(items):,} items (at most {MAX_RANGE:,})")
    return items


@pass_context  # which also keeps the compiler from calling it once and folding the result
def _tick(context: Context, _: None) -> None:
    """Runs at the start of every loop iteration and macro call (see `_compile`). A filter,
    because filters are called directly; a sandboxed call would cost 2 µs an iteration."""
    budget = _budget.get()
    if budget.over():
        raise _too_slow(budget.limits)


_ENV = _PromptEnvironment()


@dataclass(frozen=True)
class PromptTemplate:
    """Compiled once (when pushed, or when a version is loaded) and rendered many times."""

    messages: tuple[tuple[str, Template], ...] | None
    text: Template | None
    message_sources: tuple[tuple[str, str], ...] | None
    text_source: str | None


def compile_prompt(
    *, messages: Sequence[Mapping[str, Any]] | None = None, text: str | None = None
) -> PromptTemplate:
    if (messages is None) == (text is None):
        raise InvalidInput("a prompt has either `messages` or `text`, exactly one of them")
    if text is not None:
        if not isinstance(text, str):
            raise InvalidInput("text is a template string", field="text")
        return PromptTemplate(None, _compile(text, "text"), None, text)
    if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
        raise InvalidInput("messages is a non-empty list of messages", field="messages")
    if len(messages) > MAX_MESSAGES:
        raise InvalidInput(
            f"a prompt has at most {MAX_MESSAGES} messages, not {len(messages)}",
            field="messages",
        )
    sources = tuple(_message_source(i, message) for i, message in enumerate(messages))
    compiled = tuple(
        (role, _compile(content, f"messages[{i}].content"))
        for i, (role, content) in enumerate(sources)
    )
    return PromptTemplate(compiled, None, sources, None)


def _message_source(i: int, message: Any) -> tuple[str, str]:
    where = f"messages[{i}]"
    if not isinstance(message, Mapping):
        raise InvalidInput("a message is a mapping with `role` and `content`", field=where)
    for key in message:
        if key not in ("role", "content"):  # refused rather than dropped, so a typo shows
            raise InvalidInput(
                f"unknown message key {key!r}; known: role, content", field=f"{where}.{key}"
            )
    role, content = message.get("role"), message.get("content")
    if role not in ROLES:
        raise InvalidInput(
            f"role {role!r} is not one of: {', '.join(ROLES)}", field=f"{where}.role"
        )
    if not isinstance(content, str):
        raise InvalidInput("content is a template string", field=f"{where}.content")
    return role, content


def _compile(source: str, field: str) -> Template:
    try:
        tree = _ENV.parse(source)
        if any(True for _ in tree.find_all(_INCLUDES)):
            raise InvalidInput(
                "a prompt cannot extend, include or import other templates", field=field
            )
        _check_deadline_in_loops(tree)
        return _ENV.from_string(tree)
    except TemplateSyntaxError as exc:
        raise InvalidInput(
            f"template syntax error on line {exc.lineno}: {exc.message}", field=field
        ) from exc
    except (SyntaxError, RecursionError) as exc:  # Python's own limits on the compiled code
        raise InvalidInput("the template nests too deeply", field=field) from exc


def _check_deadline_in_loops(tree: nodes.Template) -> None:
    """A loop or a recursive macro can spin without printing, so without a chunk to check the
    deadline after: each iteration and call checks it itself."""
    repeated: list[nodes.For | nodes.Macro | nodes.CallBlock] = [
        *tree.find_all(nodes.For),
        *tree.find_all(nodes.Macro),
        *tree.find_all(nodes.CallBlock),
    ]
    for node in repeated:
        tick = nodes.ExprStmt(nodes.Filter(nodes.Const(None), _TICK, [], [], None, None))
        node.body.insert(0, tick.set_lineno(node.lineno).set_environment(_ENV))


def render(
    template: PromptTemplate, variables: Mapping[str, Any], limits: Limits = Limits()
) -> list[dict[str, str]] | str:
    """Messages as `[{"role", "content"}]`, or the text; the limits hold across all messages."""
    budget = _Budget.start(limits)
    token = _budget.set(budget)
    try:
        if template.text is not None:
            return _generate(template.text, variables, budget, 0)[0]
        assert template.messages is not None
        rendered: list[dict[str, str]] = []
        size = 0
        for role, content in template.messages:
            text, size = _generate(content, variables, budget, size)
            rendered.append({"role": role, "content": text})
        return rendered
    except PromptRenderError:
        raise
    except UndefinedError as exc:
        raise _undefined(exc) from exc
    except SecurityError as exc:
        raise PromptRenderError(
            f"the template tried something prompts may not do: {exc}", field="prompt"
        ) from exc
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise PromptRenderError(f"the template failed: {reason[:200]}", field="prompt") from exc
    finally:
        _budget.reset(token)


def _generate(
    template: Template, variables: Mapping[str, Any], budget: _Budget, size: int
) -> tuple[str, int]:
    """Chunk by chunk, so an output past the limit stops as soon as it gets there."""
    chunks = []
    for chunk in template.generate(variables):
        size += len(chunk)
        if size > budget.limits.max_chars:
            raise PromptRenderError(
                f"the rendered prompt exceeds {budget.limits.max_chars:,} characters",
                field="prompt",
            )
        if budget.over():
            raise _too_slow(budget.limits)
        chunks.append(chunk)
    return "".join(chunks), size


def _too_slow(limits: Limits) -> PromptRenderError:
    return PromptRenderError(f"rendering took longer than {limits.max_seconds:g} s", field="prompt")


def _undefined(exc: UndefinedError) -> PromptRenderError:
    match = _UNDEFINED_NAME.fullmatch(exc.message or "")
    if match is None:
        return PromptRenderError(
            f"the template uses something that is not there: {exc.message}", field="prompt"
        )
    name = match.group(1)
    return PromptRenderError(
        f"the template uses `{name}`, which was not given", field=f"prompt.variables.{name}"
    )
