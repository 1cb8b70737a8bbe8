"""Planning configuration changes, as plain functions on plain data.

The configuration is a `GatewayState`: for each kind, name → canonical document (see
`specs.py`). A write, whether one REST call or a whole `capstan apply` file, is a `Plan` of
changes from the current state to a desired one; the plan is checked against the state it would
leave (every reference resolves, no alias and deployment share a name, no fallback cycle)
before anything is written. Nothing here touches the database, so it is tested on dicts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from capstan.errors import InvalidInput
from capstan.gateway.config.specs import STORED_PREFIX, api_key_view, field_path

Kind = Literal["provider", "deployment", "alias"]
Action = Literal["create", "update", "delete"]
Document = dict[str, Any]
KINDS: tuple[Kind, ...] = ("provider", "deployment", "alias")


@dataclass
class GatewayState:
    providers: dict[str, Document] = field(default_factory=dict)
    deployments: dict[str, Document] = field(default_factory=dict)
    aliases: dict[str, Document] = field(default_factory=dict)

    def of(self, kind: Kind) -> dict[str, Document]:
        return {"provider": self.providers, "deployment": self.deployments, "alias": self.aliases}[
            kind
        ]

    def copy(self) -> GatewayState:
        return GatewayState(dict(self.providers), dict(self.deployments), dict(self.aliases))


@dataclass(frozen=True, slots=True)
class FieldChange:
    field: str
    before: Any
    after: Any


@dataclass(frozen=True, slots=True)
class Change:
    action: Action
    kind: Kind
    name: str
    before: Document | None
    after: Document | None

    def diff(self) -> list[FieldChange]:
        """The fields that differ, `options` key by key, with stored keys shown as `stored`."""
        before, after = _flat(self.before), _flat(self.after)
        changes = []
        for name in [*before, *(k for k in after if k not in before)]:
            old, new = before.get(name), after.get(name)
            if old == new:
                continue
            if name == "api_key":
                old, new = _key_views(old, new)
            changes.append(FieldChange(name, old, new))
        return changes

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "kind": self.kind,
            "name": self.name,
            "diff": [{"field": c.field, "before": c.before, "after": c.after} for c in self.diff()],
        }


@dataclass(frozen=True, slots=True)
class Plan:
    changes: tuple[Change, ...]
    unchanged: int

    def ordered(self) -> list[Change]:
        """An order that never leaves a dangling foreign key: aliases and deployments go before
        the providers they used; providers come before the deployments that name them."""
        rank = {
            ("delete", "alias"): 0,
            ("delete", "deployment"): 1,
            ("create", "provider"): 2,
            ("update", "provider"): 2,
            ("create", "deployment"): 3,
            ("update", "deployment"): 3,
            ("create", "alias"): 4,
            ("update", "alias"): 4,
            ("delete", "provider"): 5,
        }
        return sorted(self.changes, key=lambda c: rank[(c.action, c.kind)])


def _flat(document: Document | None) -> dict[str, Any]:
    if document is None:
        return {}
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if key == "options":
            flat.update({f"options.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def _key_views(old: Any, new: Any) -> tuple[Any, Any]:
    both_stored = all(isinstance(v, str) and v.startswith(STORED_PREFIX) for v in (old, new))
    if both_stored:
        return "stored", "stored (new key)"
    return api_key_view(old), api_key_view(new)


def compute_plan(current: GatewayState, desired: GatewayState, *, prune: bool) -> Plan:
    """Changes from `current` to `desired`. Resources `desired` omits are left alone unless
    `prune`, in which case they are deleted."""
    changes: list[Change] = []
    unchanged = 0
    for kind in KINDS:
        have, want = current.of(kind), desired.of(kind)
        for name, document in want.items():
            if name not in have:
                changes.append(Change("create", kind, name, None, document))
            elif have[name] != document:
                changes.append(Change("update", kind, name, have[name], document))
            else:
                unchanged += 1
        for name, document in have.items():
            if name in want:
                continue
            if prune:
                changes.append(Change("delete", kind, name, document, None))
            else:
                unchanged += 1
    return Plan(tuple(changes), unchanged)


def after_plan(current: GatewayState, plan: Plan) -> GatewayState:
    final = current.copy()
    for change in plan.changes:
        documents = final.of(change.kind)
        if change.after is None:
            documents.pop(change.name, None)
        else:
            documents[change.name] = change.after
    return final


def dependents(state: GatewayState, kind: Kind, name: str) -> list[str]:
    """What refers to `kind` `name`, as `deployment x` / `alias y`, in a stable order."""
    found: list[str] = []
    if kind == "provider":
        found += [
            f"deployment {d}" for d, doc in state.deployments.items() if doc["provider"] == name
        ]
    if kind in ("deployment", "alias"):
        for alias, doc in state.aliases.items():
            targets = {t["deployment"] for t in doc["targets"]} if kind == "deployment" else set()
            if name in targets or name in doc["fallbacks"]:
                found.append(f"alias {alias}")
    return sorted(found)


def check_references(final: GatewayState, paths: Mapping[tuple[Kind, str], str]) -> None:
    """Raise `InvalidInput` naming the first broken reference in the state a plan leaves.

    `paths` gives each resource being written its place in the input (`aliases[0]` in a file,
    `""` for a REST body); errors are reported in that order, every one listed in `errors`."""
    order = {key: index for index, key in enumerate(paths)}
    problems: list[tuple[int, str, str]] = []
    for kind, name, field_name, message in _broken(final):
        key = (kind, name)
        if key in paths:
            where = field_path(paths[key], field_name)
            problems.append((order[key], where, f"{where}: {message}"))
        else:
            problems.append((len(order), "", f"{kind} {name!r} ({field_name}): {message}"))
    if problems:
        problems.sort(key=lambda p: p[0])
        _, where, detail = problems[0]
        errors = [{"field": w, "message": m} for _, w, m in problems]
        raise InvalidInput(detail, field=where or None, errors=errors)


def _broken(state: GatewayState) -> Iterator[tuple[Kind, str, str, str]]:
    for name, doc in state.deployments.items():
        if doc["provider"] not in state.providers:
            yield "deployment", name, "provider", f"no provider named {doc['provider']!r}"
        if name in state.aliases:
            yield "deployment", name, "name", f"an alias is already named {name!r}"
    for name, doc in state.aliases.items():
        if name in state.deployments:
            yield "alias", name, "name", f"a deployment is already named {name!r}"
        for index, target in enumerate(doc["targets"]):
            wanted = target["deployment"]
            if wanted not in state.deployments:
                message = f"no deployment named {wanted!r}"
                if wanted in state.aliases:
                    message = f"{wanted!r} is an alias; targets name deployments"
                yield "alias", name, f"targets[{index}].deployment", message
        for index, fallback in enumerate(doc["fallbacks"]):
            if fallback not in state.deployments and fallback not in state.aliases:
                yield "alias", name, f"fallbacks[{index}]", f"no alias or deployment {fallback!r}"
            elif (cycle := _cycle(state, name, fallback)) is not None:
                yield "alias", name, f"fallbacks[{index}]", "fallback cycle " + " → ".join(cycle)


def _cycle(state: GatewayState, start: str, first: str) -> list[str] | None:
    """The fallback chain from `start` through `first` back to `start`, if there is one."""
    stack: list[tuple[str, list[str]]] = [(first, [start, first])]
    seen: set[str] = set()
    while stack:
        name, path = stack.pop()
        if name == start:
            return path
        if name in seen or name not in state.aliases:
            continue
        seen.add(name)
        stack.extend((nxt, [*path, nxt]) for nxt in state.aliases[name]["fallbacks"])
    return None
