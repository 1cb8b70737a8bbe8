"""`Prompts`: pushing versions, reading them, moving labels and rolling them back, under the
caller's role and scope.

Every change is audited in its transaction and bumps the config version, so every gateway
replica serves a moved label from its next request on (within a second on other replicas).
"""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from capstan.clock import utcnow
from capstan.errors import Conflict, Forbidden, InvalidInput, NotFound
from capstan.identity.changes import ChangeRecorder, state_of
from capstan.identity.directory import Directory, owner_scope, project_scope
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission, role_can
from capstan.identity.scope import ScopePath
from capstan.prompts.documents import PromptDocument, check_label, version_document
from capstan.store.engine import Store, is_duplicate
from capstan.store.schema import Project, Prompt, PromptLabel, PromptLabelMove, PromptVersion

PRODUCTION = "production"
LATEST = "latest"  # not a stored label: the newest version


@dataclass(frozen=True)
class Pushed:
    prompt: Prompt
    version: PromptVersion
    created: bool  # False: the content was unchanged, `version` is the current one


@dataclass(frozen=True)
class PromptView:
    prompt: Prompt
    latest: int
    labels: dict[str, int]


@dataclass(frozen=True)
class History:
    prompt: Prompt
    versions: list[PromptVersion]
    labels: dict[str, int]
    moves: list[PromptLabelMove]


def parse_ref(ref: str | None) -> tuple[str | None, int | None]:
    """`production` → label; `7` → version 7; None → neither (the caller's default)."""
    if ref is None or ref == "":
        return None, None
    if ref.isdigit():
        return None, int(ref)
    return check_label(ref), None


class Prompts:
    def __init__(self, store: Store, directory: Directory, changes: ChangeRecorder) -> None:
        self.store = store
        self.directory = directory
        self.changes = changes

    # -- versions ---------------------------------------------------------------------------

    def push(self, principal: Principal, document: PromptDocument, message: str | None) -> Pushed:
        """A new version when the content changed (the first one creates the prompt); the
        current version, unchanged, when it did not."""
        principal.require(Permission.PROMPTS_WRITE)
        if message is not None and len(message) > 500:
            raise InvalidInput("a commit message is at most 500 characters", field="message")
        org_id = principal.scope.org_id
        digest = document.content_hash
        with self.store.write() as session:
            prompt = _prompt_or_none(session, org_id, document.name)
            if prompt is None:
                prompt = self._create(session, principal, document)
            else:
                principal.require_within(owner_scope(session, prompt.org_id, prompt.project_id))
                self._update_owner(session, principal, prompt, document)
            latest = _latest(session, prompt.id)
            if latest is not None and latest.content_hash == digest:
                return Pushed(prompt, latest, created=False)
            version = PromptVersion(
                prompt_id=prompt.id,
                version=(latest.version if latest is not None else 0) + 1,
                messages=document.messages,
                text=document.text,
                model=document.model,
                params=document.params,
                variables=document.variables,
                message=message,
                author=principal.actor,
                content_hash=digest,
            )
            session.add(version)
            try:
                # The bump lets `@latest` serve it from the next request.
                self.changes.record(
                    session, principal, "prompt.version.create", version, before=None
                )
            except IntegrityError as exc:
                if not is_duplicate(exc):
                    raise
                # A concurrent push took the number.
                raise Conflict(
                    f"prompt {document.name!r} changed while pushing; push again", field="name"
                ) from exc
            return Pushed(prompt, version, created=True)

    def _create(self, session: Session, principal: Principal, document: PromptDocument) -> Prompt:
        project = self._project(session, principal, document.project)
        path = project_scope(project) if project is not None else ScopePath(principal.scope.org_id)
        principal.require_within(path)
        prompt = Prompt(
            org_id=principal.scope.org_id,
            name=document.name,
            project_id=project.id if project is not None else None,
            description=document.description,
            created_by=principal.actor,
        )
        session.add(prompt)
        try:
            self.changes.record(
                session, principal, "prompt.create", prompt, before=None, bump=False
            )
        except IntegrityError as exc:
            if not is_duplicate(exc):
                raise
            raise Conflict(f"prompt {document.name!r} was created meanwhile; push again") from exc
        return prompt

    def _update_owner(
        self, session: Session, principal: Principal, prompt: Prompt, document: PromptDocument
    ) -> None:
        """Description and project are the prompt's, not a version's: changed in place."""
        project = self._project(session, principal, document.project)
        project_id = project.id if project is not None else None
        if document.project is not None and project_id != prompt.project_id:
            before = state_of(prompt)
            prompt.project_id = project_id
            self.changes.record(session, principal, "prompt.update", prompt, before=before)
        if document.description is not None and document.description != prompt.description:
            before = state_of(prompt)
            prompt.description = document.description
            self.changes.record(session, principal, "prompt.update", prompt, before=before)

    def _project(self, session: Session, principal: Principal, ref: str | None) -> Project | None:
        if ref is None:
            return None
        path = self.directory.resolve_scope(session, principal.scope.org_id, project=ref)
        project = session.get(Project, path.project_id)
        assert project is not None
        return project

    # -- reading ----------------------------------------------------------------------------

    def list(self, principal: Principal) -> list[PromptView]:
        principal.require(Permission.PROMPTS_READ)
        with self.store.read() as session:
            prompts = session.scalars(
                select(Prompt).where(Prompt.org_id == principal.scope.org_id).order_by(Prompt.name)
            ).all()
            latest = dict(
                session.execute(
                    select(PromptVersion.prompt_id, func.max(PromptVersion.version))
                    .join(Prompt, Prompt.id == PromptVersion.prompt_id)
                    .where(Prompt.org_id == principal.scope.org_id)
                    .group_by(PromptVersion.prompt_id)
                ).all()
            )
            labels: dict[uuid.UUID, dict[str, int]] = {}
            for label in session.scalars(
                select(PromptLabel)
                .join(Prompt, Prompt.id == PromptLabel.prompt_id)
                .where(Prompt.org_id == principal.scope.org_id)
            ):
                labels.setdefault(label.prompt_id, {})[label.name] = label.version
        return [PromptView(p, latest.get(p.id, 0), labels.get(p.id, {})) for p in prompts]

    def view(self, principal: Principal, name: str) -> PromptView:
        principal.require(Permission.PROMPTS_READ)
        with self.store.read() as session:
            prompt = _find(session, principal.scope.org_id, name)
            latest = _latest(session, prompt.id)
            return PromptView(prompt, latest.version if latest else 0, _labels(session, prompt.id))

    def version(
        self,
        principal: Principal,
        name: str,
        *,
        label: str | None = None,
        number: int | None = None,
    ) -> tuple[PromptVersion, dict[str, int]]:
        """A version by number, by label, or the newest (`latest`, or neither given); with the
        prompt's labels."""
        principal.require(Permission.PROMPTS_READ)
        with self.store.read() as session:
            prompt = _find(session, principal.scope.org_id, name)
            labels = _labels(session, prompt.id)
            if number is None and label is not None and label != LATEST:
                if label not in labels:
                    raise NotFound(f"prompt {name!r} has no label {label!r}", field="label")
                number = labels[label]
            found = (
                _latest(session, prompt.id)
                if number is None
                else _version(session, prompt.id, number)
            )
            if found is None:
                raise NotFound(f"prompt {name!r} has no version {number}", field="version")
            return found, labels

    def history(self, principal: Principal, name: str) -> History:
        principal.require(Permission.PROMPTS_READ)
        with self.store.read() as session:
            prompt = _find(session, principal.scope.org_id, name)
            versions = session.scalars(
                select(PromptVersion)
                .where(PromptVersion.prompt_id == prompt.id)
                .order_by(PromptVersion.version.desc())
            ).all()
            moves = session.scalars(
                select(PromptLabelMove)
                .where(PromptLabelMove.prompt_id == prompt.id)
                .order_by(PromptLabelMove.created_at.desc(), PromptLabelMove.id.desc())
            ).all()
            return History(prompt, list(versions), _labels(session, prompt.id), list(moves))

    def diff(self, principal: Principal, name: str, first: int, second: int) -> str:
        """A unified diff of two versions, as their YAML documents."""
        old, _ = self.version(principal, name, number=first)
        new, _ = self.version(principal, name, number=second)
        return "".join(
            difflib.unified_diff(
                _document(name, old).splitlines(keepends=True),
                _document(name, new).splitlines(keepends=True),
                fromfile=f"{name}@{first}",
                tofile=f"{name}@{second}",
            )
        )

    # -- labels -----------------------------------------------------------------------------

    def move_label(self, principal: Principal, name: str, label: str, version: int) -> PromptLabel:
        """Point `label` at `version` (creating the label); recorded, so it can be rolled back."""
        label = check_label(label)
        if label == LATEST:
            raise InvalidInput("`latest` always means the newest version", field="label")
        with self.store.write() as session:
            prompt = _find(session, principal.scope.org_id, name)
            self._may_move(session, principal, prompt, label)
            if _version(session, prompt.id, version) is None:
                raise NotFound(f"prompt {name!r} has no version {version}", field="version")
            return self._point(session, principal, prompt, label, version, kind="move")

    def rollback(self, principal: Principal, name: str, label: str) -> PromptLabel:
        """Undo the label's latest move that is not undone yet: it points where it did before."""
        with self.store.write() as session:
            prompt = _find(session, principal.scope.org_id, name)
            self._may_move(session, principal, prompt, label)
            last = session.scalars(
                select(PromptLabelMove)
                .where(
                    PromptLabelMove.prompt_id == prompt.id,
                    PromptLabelMove.label == label,
                    PromptLabelMove.kind == "move",
                    PromptLabelMove.undone.is_(False),
                )
                .order_by(PromptLabelMove.created_at.desc(), PromptLabelMove.id.desc())
                .limit(1)
            ).first()
            if last is None or last.from_version is None:
                raise Conflict(
                    f"label {label!r} of prompt {name!r} has no earlier version to go back to",
                    field="label",
                )
            session.execute(
                update(PromptLabelMove).where(PromptLabelMove.id == last.id).values(undone=True)
            )
            return self._point(
                session, principal, prompt, label, last.from_version, kind="rollback"
            )

    def _may_move(self, session: Session, principal: Principal, prompt: Prompt, label: str) -> None:
        """Writers move labels within their scope; `production` of a project that asks for
        approval is moved by an approver only."""
        if label == PRODUCTION and prompt.project_id is not None:
            project = session.get(Project, prompt.project_id)
            if project is not None and project.prompt_approval:
                if not role_can(principal.role, Permission.APPROVE):
                    raise Forbidden(
                        f"project {project.name!r} asks for approval: only an approver moves "
                        f"the `production` label of its prompts"
                    )
                principal.require_within(project_scope(project))
                return
        principal.require(Permission.PROMPTS_WRITE)
        principal.require_within(owner_scope(session, prompt.org_id, prompt.project_id))

    def _point(
        self,
        session: Session,
        principal: Principal,
        prompt: Prompt,
        label: str,
        version: int,
        *,
        kind: str,
    ) -> PromptLabel:
        row = session.scalars(
            select(PromptLabel).where(PromptLabel.prompt_id == prompt.id, PromptLabel.name == label)
        ).first()
        before = state_of(row) if row is not None else None
        previous = row.version if row is not None else None
        if row is None:
            row = PromptLabel(prompt_id=prompt.id, name=label, version=version)
            session.add(row)
        row.version = version
        row.updated_at = utcnow()
        row.updated_by = principal.actor
        session.add(
            PromptLabelMove(
                prompt_id=prompt.id,
                label=label,
                from_version=previous,
                to_version=version,
                kind=kind,
                moved_by=principal.actor,
            )
        )
        action = "prompt.label.rollback" if kind == "rollback" else "prompt.label.move"
        try:
            self.changes.record(session, principal, action, row, before=before)
        except IntegrityError as exc:
            if not is_duplicate(exc):
                raise
            raise Conflict(f"label {label!r} moved meanwhile; try again", field="label") from exc
        return row


def _prompt_or_none(session: Session, org_id: uuid.UUID, name: str) -> Prompt | None:
    return session.scalars(
        select(Prompt).where(Prompt.org_id == org_id, Prompt.name == name)
    ).first()


def _find(session: Session, org_id: uuid.UUID, name: str) -> Prompt:
    prompt = _prompt_or_none(session, org_id, name)
    if prompt is None:
        raise NotFound(f"no prompt {name!r}", field="name")
    return prompt


def _latest(session: Session, prompt_id: uuid.UUID) -> PromptVersion | None:
    return session.scalars(
        select(PromptVersion)
        .where(PromptVersion.prompt_id == prompt_id)
        .order_by(PromptVersion.version.desc())
        .limit(1)
    ).first()


def _version(session: Session, prompt_id: uuid.UUID, number: int) -> PromptVersion | None:
    return session.scalars(
        select(PromptVersion).where(
            PromptVersion.prompt_id == prompt_id, PromptVersion.version == number
        )
    ).first()


def _labels(session: Session, prompt_id: uuid.UUID) -> dict[str, int]:
    rows = session.execute(
        select(PromptLabel.name, PromptLabel.version).where(PromptLabel.prompt_id == prompt_id)
    ).all()
    return {name: version for name, version in rows}


def _document(name: str, version: PromptVersion) -> str:
    return version_document(
        name,
        messages=version.messages,
        text=version.text,
        model=version.model,
        params=version.params,
        variables=version.variables,
    )


def labels_of(moves: Sequence[PromptLabelMove]) -> list[dict[str, Any]]:
    """Label moves as the API and CLI show them, newest first."""
    return [
        {
            "label": move.label,
            "from_version": move.from_version,
            "to_version": move.to_version,
            "kind": move.kind,
            "undone": move.undone,
            "moved_by": move.moved_by,
            "at": move.created_at,
        }
        for move in moves
    ]
