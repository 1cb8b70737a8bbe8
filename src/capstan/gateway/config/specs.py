"""What a provider, a deployment and an alias are, as the API and `capstan apply` accept them,
and their canonical documents.

Pydantic checks shape (types, lengths, unknown keys). Meaning that depends on more than one
field (a base URL the kind cannot default, a Bedrock secret given in clear) is checked when a
spec is turned into its canonical document, so the error can name the field path either way.
The canonical document is what is compared (is this an update or nothing?), diffed and stored:
option values are text, a literal API key is replaced by its SHA-256 (`sha256:<hex>`), so two
documents are equal exactly when the configuration is the same, without decrypting anything.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from capstan.errors import InvalidInput
from capstan.gateway.config.kinds import ProviderKind, default_base_url
from capstan.governance.secrets.vault import MAX_VALUE

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@:/-]*$"
ENV_REF = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)$")
SECRET_REF = re.compile(r"^secret:([A-Za-z0-9][A-Za-z0-9._-]{0,99})$")
STORED_PREFIX = "sha256:"
OPTION_KEY = r"^[A-Za-z][A-Za-z0-9_.-]*$"
MAX_OPTIONS = 64
MAX_OPTION_TEXT = 8_192
# Options that are credentials: accepted only as `env:NAME` or `secret:NAME` references, so a
# secret never sits in a plain JSON column (or an audit digest of one).
SECRET_OPTIONS = frozenset({"aws_access_key_id", "aws_secret_access_key", "aws_session_token"})

Name = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        pattern=NAME_PATTERN,
        description="1-100 characters: letters, digits, '.', '_', '-', '@', ':', '/'.",
    ),
]
OptionValue = str | bool | int | float | date | dict[str, Any] | list[Any]
Options = Annotated[
    dict[Annotated[str, Field(max_length=64, pattern=OPTION_KEY)], OptionValue],
    Field(max_length=MAX_OPTIONS),
]
Strategy = Literal["weighted", "least-latency", "lowest-cost", "priority"]


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ProviderSpec(Spec):
    name: Name
    kind: ProviderKind
    base_url: str | None = Field(
        default=None, max_length=2000, description="Defaults to the kind's endpoint."
    )
    api_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_VALUE,
        description="`env:NAME` (read when routing) or the key itself (stored encrypted).",
    )
    options: Options | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^\s/?#]+[^\s]*$", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


class DeploymentSpec(Spec):
    name: Name
    provider: Name
    model: str = Field(min_length=1, max_length=200, pattern=r"^\S+$")
    timeout_s: float = Field(default=60.0, gt=0, le=3600)
    max_concurrency: int | None = Field(
        default=None, ge=1, le=1_000_000, description="In-flight calls per replica; more queue."
    )
    max_retries: int = Field(
        default=2, ge=0, le=10, description="Retries of a 429, 5xx, timeout or lost connection."
    )
    stream_idle_timeout_s: float | None = Field(
        default=None, gt=0, le=3600, description="Silence that stalls a stream; null: default."
    )
    options: Options | None = None


class TargetSpec(Spec):
    deployment: Name
    weight: int = Field(default=1, ge=0, le=1_000_000)
    priority: int = Field(default=0, ge=0, le=1_000)


class AliasSpec(Spec):
    name: Name
    strategy: Strategy = "weighted"
    targets: list[TargetSpec] = Field(min_length=1, max_length=100)
    fallbacks: list[Name] = Field(default_factory=list, max_length=20)
    fallback_on_content_policy: bool = Field(
        default=False, description="Also fall back when a vendor refuses on content policy."
    )


AnySpec = ProviderSpec | DeploymentSpec | AliasSpec


def field_path(prefix: str, field: str) -> str:
    """`providers[0]` + `base_url` → `providers[0].base_url`; no prefix → `base_url`."""
    if not prefix:
        return field
    return prefix + field if field.startswith("[") else f"{prefix}.{field}"


def key_digest(key: str) -> str:
    return STORED_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def api_key_view(credential: str | None) -> str | None:
    """What the API shows for a credential: references as they are, a stored key as `stored`."""
    if credential is not None and credential.startswith(STORED_PREFIX):
        return "stored"
    return credential


def option_text(value: OptionValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return str(value)


def _options(raw: dict[str, OptionValue] | None, prefix: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for key, value in sorted((raw or {}).items()):
        text = option_text(value)
        path = field_path(prefix, f"options.{key}")
        if len(text) > MAX_OPTION_TEXT:
            raise InvalidInput(f"{path}: at most {MAX_OPTION_TEXT} characters", field=path)
        if key in SECRET_OPTIONS and not (ENV_REF.match(text) or SECRET_REF.match(text)):
            raise InvalidInput(
                f"{path}: a credential: give it as env:NAME or secret:NAME, not in clear",
                field=path,
            )
        options[key] = text
    return options


def provider_document(spec: ProviderSpec, prefix: str = "") -> tuple[dict[str, Any], str | None]:
    """The provider's canonical document and, when the spec holds a literal key, that key
    (which goes to the vault; the document keeps only its digest)."""
    options = _options(spec.options, prefix)
    if spec.base_url is None and default_base_url(spec.kind, options) is None:
        path = field_path(prefix, "base_url")
        why = "set options.region or base_url" if spec.kind == "bedrock" else "it has no default"
        raise InvalidInput(f"{path}: required for kind {spec.kind} ({why})", field=path)
    literal: str | None = None
    credential = spec.api_key
    if credential is not None and not (ENV_REF.match(credential) or SECRET_REF.match(credential)):
        if credential.startswith(("env:", "secret:")):
            path = field_path(prefix, "api_key")
            raise InvalidInput(
                f"{path}: env:NAME needs a variable name (letters, digits, '_'); secret:NAME a "
                "secret name",
                field=path,
            )
        literal, credential = credential, key_digest(credential)
    document = {
        "kind": spec.kind.value,
        "base_url": spec.base_url,
        "api_key": credential,
        "options": options,
    }
    return document, literal


def deployment_document(spec: DeploymentSpec, prefix: str = "") -> dict[str, Any]:
    return {
        "provider": spec.provider,
        "model": spec.model,
        "timeout_s": float(spec.timeout_s),
        "max_concurrency": spec.max_concurrency,
        "max_retries": spec.max_retries,
        "stream_idle_timeout_s": spec.stream_idle_timeout_s,
        "options": _options(spec.options, prefix),
    }


def alias_document(spec: AliasSpec, prefix: str = "") -> dict[str, Any]:
    seen: set[str] = set()
    for index, target in enumerate(spec.targets):
        if target.deployment in seen:
            path = field_path(prefix, f"targets[{index}].deployment")
            raise InvalidInput(f"{path}: {target.deployment!r} is already a target", field=path)
        seen.add(target.deployment)
    if spec.strategy == "weighted" and not any(t.weight > 0 for t in spec.targets):
        path = field_path(prefix, "targets")
        raise InvalidInput(f"{path}: a weighted alias needs a target with weight > 0", field=path)
    for index, fallback in enumerate(spec.fallbacks):
        path = field_path(prefix, f"fallbacks[{index}]")
        if fallback == spec.name:
            raise InvalidInput(f"{path}: an alias cannot fall back to itself", field=path)
        if fallback in spec.fallbacks[:index]:
            raise InvalidInput(f"{path}: {fallback!r} is listed twice", field=path)
    return {
        "strategy": spec.strategy,
        "targets": [t.model_dump() for t in spec.targets],
        "fallbacks": list(spec.fallbacks),
        "fallback_on_content_policy": spec.fallback_on_content_policy,
    }
