"""Which tools a simulated model calls, decided once for every vendor.

Each vendor reads its own request shape into `ToolSpec`s and decides for itself whether tools
may be called at all (offered, not switched off, the last turn not a tool result); what it
calls then follows one rule: the tool the request names, else the first one the prompt
mentions (for vendors whose models pick by the prompt), else the first tool, or the first two
when parallel calls are allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the request offers: its name and the JSON schema of its arguments."""

    name: str
    parameters: dict[str, Any]


def tools_to_call(
    tools: list[ToolSpec],
    *,
    named: str | None = None,
    mentioned_in: str | None = None,
    parallel: bool = False,
) -> list[ToolSpec]:
    """The tools to call, in order, from the non-empty `tools`: the one called `named` when
    there is one, else the first whose name `mentioned_in` contains (the first tool if none
    does), else the first tool, or the first two when `parallel` and at least two are offered."""
    chosen = [tool for tool in tools if tool.name == named][:1]
    if chosen:
        return chosen
    if mentioned_in is not None:
        return [next((tool for tool in tools if tool.name in mentioned_in), tools[0])]
    return tools[:2] if parallel and len(tools) >= 2 else tools[:1]
