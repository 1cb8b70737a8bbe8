"""Scopes: where in organization → department → team → project a key or a resource sits.

A scope is the path of ids from the organization down; one scope contains another when every
level it names is the same in the other. A key acts only on resources its scope contains, and
sees in listings the resources its scope contains plus its own ancestors.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, and_, true


class Level(StrEnum):
    ORGANIZATION = "organization"
    DEPARTMENT = "department"
    TEAM = "team"
    PROJECT = "project"


@dataclass(frozen=True, slots=True)
class ScopePath:
    org_id: uuid.UUID
    department_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None
    project_id: uuid.UUID | None = None

    @property
    def level(self) -> Level:
        if self.project_id is not None:
            return Level.PROJECT
        if self.team_id is not None:
            return Level.TEAM
        if self.department_id is not None:
            return Level.DEPARTMENT
        return Level.ORGANIZATION

    def named_levels(self) -> dict[str, uuid.UUID]:
        names = ("org_id", "department_id", "team_id", "project_id")
        return {n: v for n in names if (v := getattr(self, n)) is not None}

    def contains(self, other: ScopePath) -> bool:
        return all(getattr(other, name) == value for name, value in self.named_levels().items())


def visible_to(scope: ScopePath, columns: dict[str, Any]) -> ColumnElement[bool]:
    """SQL condition for rows a `scope` may list; `columns` maps level names to the table's
    columns for the levels it has (a team table has org_id, department_id and team_id)."""
    conditions = [
        columns[name] == value for name, value in scope.named_levels().items() if name in columns
    ]
    return and_(true(), *conditions)
