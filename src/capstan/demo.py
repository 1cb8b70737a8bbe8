"""Demo data for `make demo`: a small bank, insurer and hospital sharing one Capstan."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial

from capstan.errors import Conflict
from capstan.identity.api_keys import IssuedKey, KeyRequest
from capstan.identity.principal import Principal
from capstan.identity.roles import Role
from capstan.services import Services

TREE = {
    "retail-banking": {
        "credit-risk": ["loan-decisions", "adverse-action-letters"],
        "customer-service": ["support-assistant"],
    },
    "claims": {"claims-automation": ["claims-triage"]},
    "clinical": {"clinical-informatics": ["discharge-summaries"]},
}
PEOPLE = [
    ("ana.ruiz@example.com", "Ana Ruiz", "credit-risk"),
    ("ben.okafor@example.com", "Ben Okafor", "claims-automation"),
    ("chloe.martin@example.com", "Chloe Martin", "clinical-informatics"),
]


def seed(services: Services, admin: Principal) -> None:
    """Create the demo organization tree and people; existing entries are left as they are."""
    directory = services.directory
    for department, teams in TREE.items():
        _tolerate_existing(partial(directory.create_department, admin, department))
        for team, projects in teams.items():
            _tolerate_existing(partial(directory.create_team, admin, team, department))
            for project in projects:
                _tolerate_existing(partial(directory.create_project, admin, project, team))
    for email, name, team in PEOPLE:
        _tolerate_existing(partial(directory.create_user, admin, email, name, team=team))


def demo_admin_key(services: Services, admin: Principal) -> IssuedKey:
    """A fresh admin key for this demo run (the bootstrap key was shown only once)."""
    return services.keys.create(
        admin, KeyRequest(role=Role.ADMIN, name="demo admin", service="demo")
    )


def _tolerate_existing(create: Callable[[], object]) -> None:
    with contextlib.suppress(Conflict):
        create()
