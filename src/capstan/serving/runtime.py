"""Registry models loaded in this process: an LRU of loaded versions, each loaded once (its
artifact's SHA-256 checked on every load), and predictions run off the event loop.

A version is loaded on its first call and kept warm while it is among the most recently used
(`CAPSTAN_MODEL_CACHE_SIZE`, 8 by default). Concurrent first calls share one load. A batch is
one `predict` call. A tampered artifact is refused, and recorded as an audited incident.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from capstan.registry.storage import ArtifactStore, ArtifactTampered
from capstan.serving.index import ServableVersion

if TYPE_CHECKING:
    import numpy as np

    from capstan.governance.audit import AuditLog
    from capstan.serving.loaders import LoadedModel
    from capstan.store.engine import Store

log = logging.getLogger(__name__)
Key = tuple[uuid.UUID, int]


class ModelServer:
    def __init__(
        self,
        artifacts: ArtifactStore,
        store: Store,
        audit: AuditLog,
        capacity: int,
        *,
        threads: int | None = None,
    ) -> None:
        self.artifacts = artifacts
        self.store = store
        self.audit = audit
        self.capacity = capacity
        self._loaded: OrderedDict[Key, LoadedModel] = OrderedDict()
        self._loading: dict[Key, asyncio.Future[LoadedModel]] = {}
        # Versions whose artifact failed its check: refused at once from then on (one audited
        # incident, not one per request), until the process restarts.
        self._tampered: dict[Key, ArtifactTampered] = {}
        # Inference threads: onnxruntime, xgboost and lightgbm release the GIL while they run.
        self._pool = ThreadPoolExecutor(
            max_workers=threads or min(4, os.cpu_count() or 1), thread_name_prefix="infer"
        )

    async def model(self, version: ServableVersion) -> LoadedModel:
        """The loaded model of `version`, loading it (once, however many ask) if needed."""
        key = version.key
        loaded = self._loaded.get(key)
        if loaded is None and key in self._tampered:
            raise self._tampered[key]
        if loaded is not None:
            self._loaded.move_to_end(key)
            return loaded
        pending = self._loading.get(key)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = loop.run_in_executor(self._pool, self._load, version)
            self._loading[key] = pending
            pending.add_done_callback(lambda _: self._loading.pop(key, None))
        loaded = await asyncio.shield(pending)
        self._keep(key, loaded)
        return loaded

    def _keep(self, key: Key, loaded: LoadedModel) -> None:
        self._loaded[key] = loaded
        self._loaded.move_to_end(key)
        while len(self._loaded) > self.capacity:
            self._loaded.popitem(last=False)

    def _load(self, version: ServableVersion) -> LoadedModel:
        from capstan.serving.loaders import load_model  # numpy and the libraries, when needed

        try:
            data = self.artifacts.open_verified(version.artifact_uri, version.artifact_sha256)
        except ArtifactTampered as exc:
            self._tampered[version.key] = exc
            self._incident(version, exc)
            raise
        return load_model(
            version.flavor,
            data,
            filename=version.artifact_filename,
            trusted_types=version.trusted_types,
        )

    def _incident(self, version: ServableVersion, exc: ArtifactTampered) -> None:
        """A changed artifact is a security incident: audited, logged, and never served."""
        log.error("refusing to serve %s v%d: %s", version.name, version.version, exc)
        try:
            with self.store.write() as session:
                self.audit.append(
                    session,
                    actor="system:serving",
                    action="model.artifact.tampered",
                    resource_type="model_versions",
                    resource_id=f"{version.name}@{version.version}",
                    before={"sha256": version.artifact_sha256},
                    after={"sha256": getattr(exc, "actual", None)},
                )
        except Exception as failure:  # the refusal stands even if the audit cannot be written
            log.error("could not audit the tampered artifact: %s", failure)

    async def predict(
        self, version: ServableVersion, inputs: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        loaded = await self.model(version)
        run: Callable[[], dict[str, np.ndarray]] = lambda: loaded.predict(inputs)  # noqa: E731
        return await asyncio.get_running_loop().run_in_executor(self._pool, run)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._loaded.clear()
