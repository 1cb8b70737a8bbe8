"""The organization tree and its users: create and list, scoped and audited.

Names are unique within the organization at every level, so the CLI and the API can refer to a
department, team or project by name as well as by id.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from capstan.errors import Conflict, NotFound
from capstan.identity.changes import ChangeRecorder
from capstan.identity.principal import Principal
from capstan.identity.roles import Permission
from capstan.identity.scope import ScopePath, visible_to
from capstan.ids import parse_id
from capstan.store.engine import Store
from capstan.store.schema import Department, Organization, Project, Team, User

Row = TypeVar("Row", Department, Team, Project, User)


def project_scope(project: Project) -> ScopePath:
    return ScopePath(project.org_id, project.department_id, project.team_id, project.id)


def owner_scope(session: Session, org_id: uuid.UUID, project_id: uuid.UUID | None) -> ScopePath:
    """Where a resource owned by a project (or, without one, by the organization) sits, for
    `Principal.require_within`."""
    if project_id is None:
        return ScopePath(org_id)
    project = session.get(Project, project_id)
    if project is None:  # pragma: no cover - a foreign key keeps it
        raise NotFound("the owning project is gone", field="project")
    return project_scope(project)


def installation_organization(session: Session) -> Organization | None:
    """The installation's organization: the first one created (by `capstan init`)."""
    return session.scalars(select(Organization).order_by(Organization.created_at).limit(1)).first()


class Directory:
    def __init__(self, store: Store, changes: ChangeRecorder) -> None:
        self.store = store
        self.changes = changes

    # -- organization -------------------------------------------------------------------------

    def ensure_organization(self, session: Session, actor: str, name: str) -> Organization:
        """The installation's organization, created on first use (by `capstan init`)."""
        org = installation_organization(session)
        if org is None:
            org = Organization(name=name)
            session.add(org)
            self.changes.record(session, actor, "organization.create", org, before=None)
        return org

    def organization(self) -> Organization:
        with self.store.read() as session:
            org = installation_organization(session)
        if org is None:
            raise NotFound("no organization yet: run `capstan init`")
        return org

    # -- departments, teams, projects ---------------------------------------------------------

    def create_department(self, principal: Principal, name: str) -> Department:
        principal.require(Permission.ORG_WRITE)
        principal.require_within(ScopePath(principal.scope.org_id))
        with self.store.write() as session:
            self._unique(session, Department, principal.scope.org_id, name)
            row = Department(org_id=principal.scope.org_id, name=name)
            session.add(row)
            self._commit_new(session, principal, "department.create", row)
        return row

    def create_team(self, principal: Principal, name: str, department: str) -> Team:
        principal.require(Permission.ORG_WRITE)
        with self.store.write() as session:
            parent = self._resolve(
                session, Department, principal.scope.org_id, department, "department"
            )
            principal.require_within(ScopePath(parent.org_id, parent.id))
            self._unique(session, Team, parent.org_id, name)
            row = Team(org_id=parent.org_id, department_id=parent.id, name=name)
            session.add(row)
            self._commit_new(session, principal, "team.create", row)
        return row

    def create_project(
        self,
        principal: Principal,
        name: str,
        team: str,
        *,
        log_payloads: bool = False,
        prompt_approval: bool = False,
    ) -> Project:
        principal.require(Permission.ORG_WRITE)
        with self.store.write() as session:
            parent = self._resolve(session, Team, principal.scope.org_id, team, "team")
            principal.require_within(ScopePath(parent.org_id, parent.department_id, parent.id))
            self._unique(session, Project, parent.org_id, name)
            row = Project(
                org_id=parent.org_id,
                department_id=parent.department_id,
                team_id=parent.id,
                name=name,
                log_payloads=log_payloads,
                prompt_approval=prompt_approval,
            )
            session.add(row)
            self._commit_new(session, principal, "project.create", row)
        return row

    def create_user(
        self,
        principal: Principal,
        email: str,
        name: str,
        *,
        department: str | None = None,
        team: str | None = None,
    ) -> User:
        principal.require(Permission.USERS_WRITE)
        org_id = principal.scope.org_id
        with self.store.write() as session:
            department_id: uuid.UUID | None = None
            team_id: uuid.UUID | None = None
            if team is not None:
                team_row = self._resolve(session, Team, org_id, team, "team")
                department_id, team_id = team_row.department_id, team_row.id
            elif department is not None:
                department_id = self._resolve(
                    session, Department, org_id, department, "department"
                ).id
            principal.require_within(ScopePath(org_id, department_id, team_id))
            taken = session.scalars(
                select(User.id).where(User.org_id == org_id, User.email == email)
            ).first()
            if taken is not None:
                raise Conflict(f"a user with email {email!r} already exists", field="email")
            row = User(
                org_id=org_id, email=email, name=name, department_id=department_id, team_id=team_id
            )
            session.add(row)
            self._commit_new(session, principal, "user.create", row)
        return row

    # -- listings -----------------------------------------------------------------------------

    def list_departments(
        self, principal: Principal, after: uuid.UUID | None, limit: int
    ) -> Sequence[Department]:
        principal.require(Permission.ORG_READ)
        columns = {"org_id": Department.org_id, "department_id": Department.id}
        return self._page(select(Department), principal, columns, Department.id, after, limit)

    def list_teams(
        self, principal: Principal, after: uuid.UUID | None, limit: int
    ) -> Sequence[Team]:
        principal.require(Permission.ORG_READ)
        columns = {"org_id": Team.org_id, "department_id": Team.department_id, "team_id": Team.id}
        return self._page(select(Team), principal, columns, Team.id, after, limit)

    def list_projects(
        self, principal: Principal, after: uuid.UUID | None, limit: int
    ) -> Sequence[Project]:
        principal.require(Permission.ORG_READ)
        columns = {
            "org_id": Project.org_id,
            "department_id": Project.department_id,
            "team_id": Project.team_id,
            "project_id": Project.id,
        }
        return self._page(select(Project), principal, columns, Project.id, after, limit)

    def list_users(
        self, principal: Principal, after: uuid.UUID | None, limit: int
    ) -> Sequence[User]:
        principal.require(Permission.USERS_READ)
        columns = {
            "org_id": User.org_id,
            "department_id": User.department_id,
            "team_id": User.team_id,
        }
        return self._page(select(User), principal, columns, User.id, after, limit)

    # -- shared -------------------------------------------------------------------------------

    def resolve_scope(
        self,
        session: Session,
        org_id: uuid.UUID,
        *,
        department: str | None = None,
        team: str | None = None,
        project: str | None = None,
    ) -> ScopePath:
        """The scope named by at most one of department, team or project (name or id)."""
        if project is not None:
            p = self._resolve(session, Project, org_id, project, "project")
            return project_scope(p)
        if team is not None:
            t = self._resolve(session, Team, org_id, team, "team")
            return ScopePath(org_id, t.department_id, t.id)
        if department is not None:
            d = self._resolve(session, Department, org_id, department, "department")
            return ScopePath(org_id, d.id)
        return ScopePath(org_id)

    def resolve_user(self, session: Session, org_id: uuid.UUID, ref: str) -> User:
        """A user by id or email."""
        return self._resolve(session, User, org_id, ref, "user", by=User.email)

    def _page(
        self,
        statement: Select[Any],
        principal: Principal,
        columns: dict[str, Any],
        id_column: Any,
        after: uuid.UUID | None,
        limit: int,
    ) -> Sequence[Row]:
        statement = statement.where(visible_to(principal.scope, columns))
        if after is not None:
            statement = statement.where(id_column > after)
        with self.store.read() as session:
            rows: Sequence[Row] = session.scalars(statement.order_by(id_column).limit(limit)).all()
            return rows

    @staticmethod
    def _resolve(
        session: Session,
        model: type[Row],
        org_id: uuid.UUID,
        ref: str,
        field: str,
        *,
        by: InstrumentedAttribute[str] | None = None,
    ) -> Row:
        """The row `ref` names: its id, or else its name (or the `by` column)."""
        row_id = parse_id(ref)
        column = model.name if by is None else by
        condition = model.id == row_id if row_id else column == ref
        row = session.scalars(select(model).where(model.org_id == org_id, condition)).first()
        if row is None:
            raise NotFound(f"no {field} {ref!r}", field=field)
        return row

    @staticmethod
    def _unique(
        session: Session, model: type[Department | Team | Project], org_id: uuid.UUID, name: str
    ) -> None:
        taken = session.scalars(
            select(model.id).where(model.org_id == org_id, model.name == name)
        ).first()
        if taken is not None:
            raise Conflict(
                f"a {model.__tablename__[:-1]} named {name!r} already exists", field="name"
            )

    def _commit_new(self, session: Session, principal: Principal, action: str, row: Any) -> None:
        try:
            self.changes.record(session, principal, action, row, before=None)
        except IntegrityError as exc:  # a concurrent create won the race for the name
            raise Conflict(
                f"{row.__tablename__[:-1]} {row.name!r} already exists", field="name"
            ) from exc
