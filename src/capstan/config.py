"""Settings: `CAPSTAN_*` environment variables over the `settings:` section of `capstan.yaml`
over embedded defaults.

`capstan.yaml` is shared with `capstan apply` (providers, deployments, aliases): process settings
live under its `settings:` key so one file can describe a whole installation. Settings are
validated once, at start; a bad or unknown one is a `ConfigError` naming it, never a traceback
from deep inside a request.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from capstan.errors import ConfigError

ENV_PREFIX = "CAPSTAN_"
CONFIG_FILE_ENV = "CAPSTAN_CONFIG"
DEFAULT_CONFIG_FILE = "capstan.yaml"
# Variables read by the CLI rather than the server: known, so not flagged as typos.
CLIENT_ENV = frozenset({"CAPSTAN_URL", "CAPSTAN_API_KEY", CONFIG_FILE_ENV})


class _YamlSettingsSource(PydanticBaseSettingsSource):
    """The `settings:` mapping of the config file, when there is one."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path
        self.data = _read_yaml_settings(path) if path else {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


def _read_yaml_settings(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read settings: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: the file must hold a mapping")
    section = document.get("settings") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: settings: must be a mapping")
    return section


class Settings(BaseSettings):
    """Everything a Capstan process needs to know before it starts."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    home: Path = Field(default=Path(".capstan"), description="State folder (db, artifacts, spool).")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; SQLite by default.")
    redis_url: str | None = Field(default=None, description="Shared counters and pub/sub.")
    redis_prefix: str | None = Field(
        default=None,
        description="Prefix of this installation's Redis keys and channels; by default one "
        "derived from the database URL, so installations sharing a Redis never mix.",
    )
    artifact_store: str | None = Field(
        default=None,
        description="Where model artifacts live: a folder or any fsspec URL (s3://bucket/prefix); "
        "by default the home's artifacts/ folder.",
    )
    max_artifact_bytes: int = Field(
        default=2 * 1024**3, ge=1, description="The largest model artifact an upload may carry."
    )
    model_cache_size: int = Field(
        default=8, ge=1, le=1024, description="Registry model versions kept loaded per process."
    )
    master_key: SecretStr | None = Field(default=None, description="Base64 AES-256 key.")
    previous_master_keys: list[SecretStr] = Field(
        default_factory=list, description="Older keys, for decryption only, during a rotation."
    )
    host: str = "127.0.0.1"
    port: int = Field(default=4100, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    config_poll_interval: float = Field(
        default=0.25, gt=0, le=60.0, description="Seconds between config-version checks."
    )
    db_pool_size: int = Field(default=10, ge=1, le=200)
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="Largest request body the gateway accepts."
    )
    stream_idle_timeout_s: float = Field(
        default=30.0, gt=0, le=3600, description="Silence after which a stream counts as stalled."
    )
    retry_backoff_s: float = Field(
        default=0.25, ge=0, le=60, description="First retry's backoff ceiling (full jitter)."
    )
    retry_backoff_max_s: float = Field(default=8.0, ge=0, le=600, description="Backoff cap.")
    breaker_failures: int = Field(
        default=5, ge=1, le=10_000, description="Consecutive failures that open a breaker."
    )
    breaker_error_ratio: float = Field(
        default=0.5, gt=0, le=1, description="Failure share in the window that opens a breaker."
    )
    breaker_min_calls: int = Field(
        default=20, ge=1, description="Calls in the window before the ratio counts."
    )
    breaker_window_s: float = Field(default=30.0, gt=0, le=3600)
    breaker_cooldown_s: float = Field(
        default=30.0, gt=0, le=3600, description="Open time before a half-open probe."
    )
    queue_factor: float = Field(
        default=1.0, ge=0, le=100, description="Waiting calls per concurrency slot, then 429."
    )
    metrics_public: bool = Field(
        default=False, description="Serve /metrics without a key (e.g. on a private network)."
    )
    drain_timeout_s: float = Field(
        default=30.0, ge=0, le=3600, description="On SIGTERM, how long in-flight requests get."
    )
    budget_webhook_url: str | None = Field(
        default=None, description="Where budget threshold alerts are posted (JSON, Slack-style)."
    )
    events_batch_size: int = Field(
        default=1000, ge=1, le=100_000, description="Request events per insert, at most."
    )
    events_flush_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How long request events wait in the spool for a fuller batch.",
    )

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("only sqlite:/// and postgresql+psycopg:// URLs are supported")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'capstan.db').resolve()}"

    @property
    def redis_namespace(self) -> str:
        """What every Redis key and channel of this installation starts with: replicas share
        a database, so they share it; another installation on the same Redis does not."""
        if self.redis_prefix:
            return self.redis_prefix
        digest = hashlib.sha256(self.resolved_database_url.encode()).hexdigest()[:12]
        return f"capstan:{digest}:"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def artifact_store_url(self) -> str:
        return self.artifact_store or str(self.artifacts_dir)

    @property
    def spool_dir(self) -> Path:
        return self.home / "spool"

    @property
    def master_key_file(self) -> Path:
        return self.home / "master.key"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSettingsSource(settings_cls, _config_path()))


def _config_path() -> Path | None:
    explicit = os.environ.get(CONFIG_FILE_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"{CONFIG_FILE_ENV}={explicit}: no such file")
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def _unknown_env() -> list[str]:
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | CLIENT_ENV
    return sorted(k for k in os.environ if k.startswith(ENV_PREFIX) and k not in known)


def load_settings(**overrides: Any) -> Settings:
    """Validated settings, or a `ConfigError` that names the bad setting and says what is wrong."""
    unknown = _unknown_env()
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown setting (is it misspelled?)")
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "settings"
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown setting"
        label = f"{ENV_PREFIX}{name.upper()} (settings.{name})" if first["loc"] else name
        raise ConfigError(f"{label}: {message}", field=name) from exc
