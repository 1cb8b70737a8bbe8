"""The prompts the gateway serves, in memory: where each label points, the experiments that
run, and the versions they name, compiled.

Part of the routing snapshot (`gateway/config/snapshot.py`), reloaded with it whenever the
config version moves, so a request is served wholly from one snapshot: a label moved while
requests stream in gives each of them the old version or the new one, never a mixture.
Versions never change, so a compiled version is kept across reloads (`VersionCache`): a reload
compiles only versions it has not seen.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from capstan.prompts.assignment import Variant
from capstan.prompts.variables import VariableSpec, parse_variables
from capstan.store.schema import Prompt, PromptExperiment, PromptLabel, PromptVersion

if TYPE_CHECKING:
    from capstan.prompts.render import PromptTemplate

CACHED_VERSIONS = 4096


@dataclass(frozen=True, slots=True)
class ServedVersion:
    """One version, ready to render."""

    prompt: str
    version: int
    template: PromptTemplate
    model: str | None
    params: Mapping[str, Any]
    variables: tuple[VariableSpec, ...]


@dataclass(frozen=True, slots=True)
class RunningExperiment:
    id: uuid.UUID
    key: str  # the id as text, hashed with each caller's subject
    variants: tuple[Variant, ...]
    sticky_by: str


@dataclass(frozen=True, slots=True)
class PromptEntry:
    id: uuid.UUID
    name: str
    latest: int
    labels: Mapping[str, int]
    experiments: Mapping[str, RunningExperiment]  # by the label they run on


@dataclass(frozen=True)
class PromptIndex:
    entries: Mapping[str, PromptEntry] = field(default_factory=lambda: MappingProxyType({}))
    versions: Mapping[tuple[uuid.UUID, int], ServedVersion] = field(
        default_factory=lambda: MappingProxyType({})
    )


class VersionCache:
    """Compiled versions by (prompt id, version), the least recently used dropped first."""

    def __init__(self, capacity: int = CACHED_VERSIONS) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[uuid.UUID, int], ServedVersion] = OrderedDict()
        self._lock = threading.Lock()  # snapshot loads and pinned loads run in threads

    def get(self, key: tuple[uuid.UUID, int]) -> ServedVersion | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[uuid.UUID, int], version: ServedVersion) -> None:
        with self._lock:
            self._items[key] = version
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


def served_version(name: str, row: PromptVersion) -> ServedVersion:
    """A stored version compiled (it compiled when it was pushed, so this does not fail)."""
    from capstan.prompts.render import compile_prompt  # Jinja2: loaded by the first prompt

    return ServedVersion(
        prompt=name,
        version=row.version,
        template=compile_prompt(messages=row.messages, text=row.text),
        model=row.model,
        params=MappingProxyType(dict(row.params or {})),
        variables=parse_variables(row.variables or {}),
    )


def load_prompt_index(
    session: Session, org_id: uuid.UUID, cache: VersionCache | None = None
) -> PromptIndex:
    """Every prompt's labels, latest version and running experiments, and the versions they
    point at, compiled (from `cache` where it has them)."""
    cache = cache if cache is not None else VersionCache()
    prompts = session.execute(select(Prompt.id, Prompt.name).where(Prompt.org_id == org_id)).all()
    if not prompts:
        return PromptIndex()
    names = dict(prompts)
    latest = dict(
        session.execute(
            select(PromptVersion.prompt_id, func.max(PromptVersion.version))
            .join(Prompt, Prompt.id == PromptVersion.prompt_id)
            .where(Prompt.org_id == org_id)
            .group_by(PromptVersion.prompt_id)
        ).all()
    )
    labels: dict[uuid.UUID, dict[str, int]] = {}
    for prompt_id, label, version in session.execute(
        select(PromptLabel.prompt_id, PromptLabel.name, PromptLabel.version)
        .join(Prompt, Prompt.id == PromptLabel.prompt_id)
        .where(Prompt.org_id == org_id)
    ):
        labels.setdefault(prompt_id, {})[label] = version
    experiments: dict[uuid.UUID, dict[str, RunningExperiment]] = {}
    for row in session.scalars(
        select(PromptExperiment).where(
            PromptExperiment.org_id == org_id, PromptExperiment.status == "running"
        )
    ):
        variants = tuple(Variant(int(v["version"]), int(v["weight"])) for v in row.variants)
        experiments.setdefault(row.prompt_id, {})[row.label] = RunningExperiment(
            row.id, str(row.id), variants, row.sticky_by
        )
    wanted = {(prompt_id, version) for prompt_id, version in latest.items()}
    wanted |= {(p, v) for p, named in labels.items() for v in named.values()}
    wanted |= {
        (p, variant.version)
        for p, running in experiments.items()
        for experiment in running.values()
        for variant in experiment.variants
    }
    versions = {key: found for key in wanted if (found := cache.get(key)) is not None}
    missing = [key for key in wanted if key not in versions]
    for start in range(0, len(missing), 500):
        chunk = missing[start : start + 500]
        for stored in session.scalars(
            select(PromptVersion).where(
                tuple_(PromptVersion.prompt_id, PromptVersion.version).in_(chunk)
            )
        ):
            key = (stored.prompt_id, stored.version)
            versions[key] = served_version(names[stored.prompt_id], stored)
            cache.put(key, versions[key])
    entries = {
        name: PromptEntry(
            id=prompt_id,
            name=name,
            latest=latest.get(prompt_id, 0),
            labels=MappingProxyType(labels.get(prompt_id, {})),
            experiments=MappingProxyType(experiments.get(prompt_id, {})),
        )
        for prompt_id, name in names.items()
    }
    return PromptIndex(MappingProxyType(entries), MappingProxyType(versions))


def load_version(session: Session, entry: PromptEntry, number: int) -> ServedVersion | None:
    """A version the snapshot does not hold (pinned by number), read and compiled."""
    row = session.scalars(
        select(PromptVersion).where(
            PromptVersion.prompt_id == entry.id, PromptVersion.version == number
        )
    ).first()
    return served_version(entry.name, row) if row is not None else None
