"""`capstan apply`: a YAML file describing providers, deployments and aliases, made true.

The file is parsed strictly (an unknown key anywhere is an error naming its path, such as
`deployments[1].timeout`), its references are resolved against the file plus what the store
already holds, and the difference becomes a plan: create what is new, update what differs,
and, only with `prune`, delete what the file omits. The plan is applied in one transaction with
one audit entry per resource change; a file that matches the store changes nothing and writes no
audit entry, so applying it again (from CI, on every deploy) is harmless. `settings:` belongs to
the process (read at start by `capstan.config`) and is ignored here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from capstan.errors import InvalidInput
from capstan.gateway.config.persist import Loaded
from capstan.gateway.config.plan import Change, GatewayState, Kind, Plan, compute_plan
from capstan.gateway.config.service import GatewayConfig, document_of
from capstan.gateway.config.specs import AliasSpec, AnySpec, DeploymentSpec, ProviderSpec
from capstan.identity.principal import Principal

SECTIONS: tuple[tuple[str, Kind], ...] = (
    ("providers", "provider"),
    ("deployments", "deployment"),
    ("aliases", "alias"),
)


class ConfigDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    settings: dict[str, Any] | None = None
    providers: list[ProviderSpec] | None = None
    deployments: list[DeploymentSpec] | None = None
    aliases: list[AliasSpec] | None = None


@dataclass
class Desired:
    """What the file asks for: documents by kind, where each came from, literal keys."""

    state: GatewayState = field(default_factory=GatewayState)
    paths: dict[tuple[Kind, str], str] = field(default_factory=dict)
    literals: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    changes: tuple[Change, ...]
    unchanged: int
    applied: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "changes": [change.as_dict() for change in self.changes],
            "unchanged": self.unchanged,
            "applied": self.applied,
        }


def error_path(loc: tuple[int | str, ...]) -> str:
    """Pydantic's `('deployments', 1, 'timeout')` as `deployments[1].timeout`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "document"


def parse_document(text: str) -> Desired:
    """The desired configuration in `text`, or `InvalidInput` naming the first bad path."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput(f"document: not valid YAML{where}: {problem}", field="document") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidInput("document: the top level must be a mapping", field="document")
    try:
        document = ConfigDocument.model_validate(raw)
    except ValidationError as exc:
        errors = [
            {"field": error_path(e["loc"]), "message": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        first = errors[0]
        message = first["message"]
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        detail = f"{first['field']}: {message}"
        raise InvalidInput(detail, field=first["field"], errors=errors) from None
    return _desired(document)


def _desired(document: ConfigDocument) -> Desired:
    desired = Desired()
    for section, kind in SECTIONS:
        specs: list[AnySpec] = list(getattr(document, section) or [])
        documents = desired.state.of(kind)
        for index, spec in enumerate(specs):
            prefix = f"{section}[{index}]"
            if (kind, spec.name) in desired.paths:
                first = desired.paths[(kind, spec.name)]
                path = f"{prefix}.name"
                raise InvalidInput(
                    f"{path}: {spec.name!r} is already defined at {first}", field=path
                )
            documents[spec.name], literal = document_of(spec, prefix)
            desired.paths[(kind, spec.name)] = prefix
            if literal is not None:
                desired.literals[spec.name] = literal
    return desired


def apply_document(
    config: GatewayConfig,
    principal: Principal,
    text: str,
    *,
    dry_run: bool = False,
    prune: bool = False,
) -> ApplyResult:
    """Plan `text` against the store and, unless `dry_run`, apply it in one transaction.

    A dry run needs only read access (anyone who may see the configuration may see how a file
    would change it); applying needs write access, and provider changes also secrets:write."""
    desired = parse_document(text)

    def plan(loaded: Loaded) -> Plan:
        return compute_plan(loaded.state, desired.state, prune=prune)

    _, planned = config.apply_plan(
        principal, plan, desired.paths, desired.literals, dry_run=dry_run
    )
    return ApplyResult(
        planned.changes, planned.unchanged, applied=bool(planned.changes) and not dry_run
    )
