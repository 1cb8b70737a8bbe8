"""`Experiments`: A/B tests between versions of a prompt, on real traffic.

While an experiment runs on a label, the gateway serves each caller one of its variants in
place of the label's version, always the same one for the same user, key or header value
(`prompts/assignment.py`). Its status reads what the request events and the feedback say of
each variant and tests whether the difference is real (`prompts/experiment_stats.py`).
Stopping it may promote a variant: the label moves there, like any label move.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from capstan.clock import utcnow
from capstan.errors import Conflict, InvalidInput, NotFound
from capstan.identity.changes import ChangeRecorder, state_of
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.ids import parse_id
from capstan.prompts.assignment import parse_sticky
from capstan.prompts.documents import check_label
from capstan.prompts.service import Prompts
from capstan.store.engine import Store, is_duplicate
from capstan.store.schema import Prompt, PromptExperiment, PromptVersion

if TYPE_CHECKING:
    from capstan.prompts.experiment_stats import Verdict

MAX_VARIANTS = 5
DEFAULT_MIN_SAMPLES = 100


@dataclass(frozen=True, slots=True)
class ExperimentRequest:
    name: str
    prompt: str
    variants: list[tuple[int, int]]  # (version, weight); the first is the control
    label: str = "production"
    sticky_by: str = "user"
    min_samples: int = DEFAULT_MIN_SAMPLES


@dataclass(frozen=True)
class ExperimentStatus:
    experiment: PromptExperiment
    prompt: str
    verdict: Verdict


class Experiments:
    def __init__(self, store: Store, prompts: Prompts, changes: ChangeRecorder) -> None:
        self.store = store
        self.prompts = prompts
        self.changes = changes

    def start(self, principal: Principal, request: ExperimentRequest) -> PromptExperiment:
        principal.require(Permission.PROMPTS_WRITE)
        label = check_label(request.label)
        sticky = _sticky(request.sticky_by)
        _check(request)
        with self.store.write() as session:
            prompt = _prompt(session, principal.scope.org_id, request.prompt)
            for version, _ in request.variants:
                exists = session.scalars(
                    select(PromptVersion.id).where(
                        PromptVersion.prompt_id == prompt.id, PromptVersion.version == version
                    )
                ).first()
                if exists is None:
                    raise NotFound(
                        f"prompt {request.prompt!r} has no version {version}", field="variants"
                    )
            row = PromptExperiment(
                org_id=principal.scope.org_id,
                prompt_id=prompt.id,
                name=request.name,
                label=label,
                variants=[{"version": v, "weight": w} for v, w in request.variants],
                sticky_by=sticky,
                min_samples=request.min_samples,
                status="running",
                started_by=principal.actor,
            )
            session.add(row)
            try:
                self.changes.record(session, principal, "prompt.experiment.start", row, before=None)
            except IntegrityError as exc:
                if not is_duplicate(exc):
                    raise
                raise Conflict(
                    f"an experiment named {request.name!r} exists, or one already runs on "
                    f"{request.prompt}@{label}",
                    field="name",
                ) from exc
            return row

    def list(self, principal: Principal) -> list[tuple[PromptExperiment, str]]:
        principal.require(Permission.PROMPTS_READ)
        with self.store.read() as session:
            rows = session.execute(
                select(PromptExperiment, Prompt.name)
                .join(Prompt, Prompt.id == PromptExperiment.prompt_id)
                .where(PromptExperiment.org_id == principal.scope.org_id)
                .order_by(PromptExperiment.created_at.desc())
            ).all()
            return [(row, name) for row, name in rows]

    def status(self, principal: Principal, ref: str) -> ExperimentStatus:
        # scipy takes a second and ~80 MB to import: loaded by the first status, not by
        # every gateway process at start.
        from capstan.prompts.experiment_data import variant_data
        from capstan.prompts.experiment_stats import analyse

        principal.require(Permission.PROMPTS_READ)
        with self.store.read() as session:
            row = _find(session, principal.scope.org_id, ref)
            prompt = session.get(Prompt, row.prompt_id)
            assert prompt is not None
            versions = [int(v["version"]) for v in row.variants]
            data = variant_data(session, row.org_id, row.id, versions)
        return ExperimentStatus(row, prompt.name, analyse(data, min_samples=row.min_samples))

    def stop(
        self, principal: Principal, ref: str, *, promote: int | None = None
    ) -> tuple[PromptExperiment, str]:
        """Stop serving variants; with `promote`, move the experiment's label to that version
        (under the label's own rules: `production` may need an approver)."""
        principal.require(Permission.PROMPTS_WRITE)
        with self.store.read() as session:
            row = _find(session, principal.scope.org_id, ref)
            prompt = session.get(Prompt, row.prompt_id)
            assert prompt is not None
        if row.status != "running":
            raise Conflict(f"experiment {row.name!r} is not running", field="experiment")
        versions = [int(v["version"]) for v in row.variants]
        if promote is not None and promote not in versions:
            raise InvalidInput(
                f"version {promote} is not a variant of {row.name!r} ({versions})", field="promote"
            )
        if promote is not None:
            self.prompts.move_label(principal, prompt.name, row.label, promote)
        with self.store.write() as session:
            current = session.get(PromptExperiment, row.id)
            assert current is not None
            before = state_of(current)
            current.status = "stopped"
            current.stopped_at = utcnow()
            current.stopped_by = principal.actor
            current.promoted_version = promote
            self.changes.record(
                session, principal, "prompt.experiment.stop", current, before=before
            )
            return current, prompt.name


def _sticky(value: str) -> str:
    try:
        return parse_sticky(value)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="sticky_by") from exc


def _check(request: ExperimentRequest) -> None:
    if not request.name or len(request.name) > 100:
        raise InvalidInput("an experiment needs a name of 1 to 100 characters", field="name")
    variants = request.variants
    if not 2 <= len(variants) <= MAX_VARIANTS:
        raise InvalidInput(f"an experiment has 2 to {MAX_VARIANTS} variants", field="variants")
    if len({version for version, _ in variants}) != len(variants):
        raise InvalidInput("each variant is a different version", field="variants")
    if any(not 0 < weight <= 10_000 for _, weight in variants):
        raise InvalidInput("a variant's weight is a whole number from 1 to 10000", field="variants")
    if not 1 <= request.min_samples <= 1_000_000:
        raise InvalidInput("min_samples is from 1 to 1000000", field="min_samples")


def _prompt(session: Session, org_id: uuid.UUID, name: str) -> Prompt:
    prompt = session.scalars(
        select(Prompt).where(Prompt.org_id == org_id, Prompt.name == name)
    ).first()
    if prompt is None:
        raise NotFound(f"no prompt {name!r}", field="prompt")
    return prompt


def _find(session: Session, org_id: uuid.UUID, ref: str) -> PromptExperiment:
    experiment_id = parse_id(ref)
    condition = (
        PromptExperiment.id == experiment_id if experiment_id else PromptExperiment.name == ref
    )
    row = session.scalars(
        select(PromptExperiment).where(PromptExperiment.org_id == org_id, condition)
    ).first()
    if row is None:
        raise NotFound(f"no experiment {ref!r}", field="experiment")
    return row
