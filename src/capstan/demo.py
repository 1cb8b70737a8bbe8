"""Demo data for `make demo`: a small bank, insurer and hospital sharing one Capstan."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial

from capstan.errors import Conflict
from capstan.finops.budgets import BudgetRequest
from capstan.finops.ratelimits import RateLimitRequest
from capstan.identity.api_keys import IssuedKey, KeyRequest
from capstan.identity.principal import Principal
from capstan.identity.roles import Role
from capstan.prompts.documents import parse_document
from capstan.prompts.experiments import ExperimentRequest
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

# FinOps to look at: a department's monthly budget that alerts (it never refuses a demo call),
# and a project's rate limit, shown by `capstan budgets list` and `capstan ratelimits list`.
BUDGETS = [
    BudgetRequest(
        name="retail-banking-monthly",
        scope="department:retail-banking",
        period="monthly",
        limit_usd="250",
        action="alert-only",
    )
]
RATE_LIMITS = [
    RateLimitRequest(
        name="support-assistant-per-minute",
        scope="project:support-assistant",
        period="minute",
        requests=600,
        tokens=200_000,
    )
]


# A prompt to serve by name (`"prompt": {"name": "support-reply", ...}` on chat-default), with
# two versions split 50/50 by an experiment, sticky per user.
SUPPORT_REPLY = {
    "name": "support-reply",
    "description": "First answer to a customer's question about a banking product.",
    "project": "support-assistant",
    "model": "chat-default",
    "params": {"temperature": 0.2, "max_tokens": 400},
    "variables": {
        "product": "string",
        "tier": {"type": "string", "enum": ["free", "pro"], "default": "free"},
    },
}
SUPPORT_REPLY_VERSIONS = [
    (
        "You answer questions about {{ product }} for {{ tier }} customers. Be accurate.",
        "first version",
    ),
    (
        "You answer questions about {{ product }} for {{ tier }} customers in three sentences "
        "at most, and say where in the manual the answer is.",
        "shorter answers that cite the manual",
    ),
]


def seed(services: Services, admin: Principal) -> None:
    """Create the demo organization tree, people, a budget, a rate limit, a prompt with an
    experiment and the credit-risk model (trained now, served at `/v2/models/credit-risk`);
    existing entries are left as they are."""
    directory = services.directory
    for department, teams in TREE.items():
        _tolerate_existing(partial(directory.create_department, admin, department))
        for team, projects in teams.items():
            _tolerate_existing(partial(directory.create_team, admin, team, department))
            for project in projects:
                _tolerate_existing(partial(directory.create_project, admin, project, team))
    for email, name, team in PEOPLE:
        _tolerate_existing(partial(directory.create_user, admin, email, name, team=team))
    for budget in BUDGETS:
        _tolerate_existing(partial(services.budgets.create, admin, budget))
    for limit in RATE_LIMITS:
        _tolerate_existing(partial(services.rate_limits.create, admin, limit))
    _seed_prompts(services, admin)
    from capstan.demo_models import register_credit_risk  # numpy, scikit-learn: demo only

    register_credit_risk(services, admin, services.settings.home)


def _seed_prompts(services: Services, admin: Principal) -> None:
    for system, message in SUPPORT_REPLY_VERSIONS:
        document = {**SUPPORT_REPLY, "messages": [{"role": "system", "content": system}]}
        services.prompts.push(admin, parse_document(document), message)
    view = services.prompts.view(admin, "support-reply")
    if "production" not in view.labels:
        services.prompts.move_label(admin, "support-reply", "production", 1)
    experiment = ExperimentRequest(
        name="support-reply-shorter",
        prompt="support-reply",
        variants=[(1, 50), (2, 50)],
        sticky_by="user",
        min_samples=50,
    )
    _tolerate_existing(partial(services.experiments.start, admin, experiment))


def demo_admin_key(services: Services, admin: Principal) -> IssuedKey:
    """A fresh admin key for this demo run (the bootstrap key was shown only once)."""
    return services.keys.create(
        admin, KeyRequest(role=Role.ADMIN, name="demo admin", service="demo")
    )


def _tolerate_existing(create: Callable[[], object]) -> None:
    with contextlib.suppress(Conflict):
        create()
