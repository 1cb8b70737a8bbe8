"""The model registry: registered models, immutable versions, artifacts, lineage, profiles.

Data scientists register models with `capstan.registry.log_model(model, name=..., ...)` (see
`client`). Those names are loaded on first use, so the server's imports of
`capstan.registry.service` and the rest never load the client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from capstan.registry.client import (
        RegisteredVersion,
        RegistryError,
        log_model,
        train_data_sha256,
    )

__all__ = ["RegisteredVersion", "RegistryError", "log_model", "train_data_sha256"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("capstan.registry.client"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
