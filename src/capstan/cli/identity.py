"""`capstan departments|teams|projects|users|keys …`: the organization tree and its keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from capstan.cli.client import control_client
from capstan.cli.output import CliError, print_json, print_listing
from capstan.cli.resources import JsonFlag, Limit, all_pages, create

departments = typer.Typer(help="Departments of the organization.", no_args_is_help=True)
teams = typer.Typer(help="Teams, inside departments.", no_args_is_help=True)
projects = typer.Typer(help="Projects, inside teams.", no_args_is_help=True)
users = typer.Typer(help="People who own keys and approve changes.", no_args_is_help=True)
keys = typer.Typer(help="API keys: shown once, stored as hashes.", no_args_is_help=True)


@departments.command("create")
def department_create(name: str, json: JsonFlag = False) -> None:
    """Create a department."""
    create("/departments", {"name": name}, json, "department")


@departments.command("list")
def department_list(json: JsonFlag = False, limit: Limit = 100) -> None:
    """List departments."""
    print_listing(
        all_pages("/departments", limit),
        ["id", "name", "created_at"],
        as_json=json,
        title="Departments",
    )


@teams.command("create")
def team_create(
    name: str,
    department: Annotated[str, typer.Option("--department", "-d", help="Department name or id.")],
    json: JsonFlag = False,
) -> None:
    """Create a team in a department."""
    create("/teams", {"name": name, "department": department}, json, "team")


@teams.command("list")
def team_list(json: JsonFlag = False, limit: Limit = 100) -> None:
    """List teams."""
    rows = all_pages("/teams", limit)
    print_listing(rows, ["id", "name", "department_id", "created_at"], as_json=json, title="Teams")


@projects.command("create")
def project_create(
    name: str,
    team: Annotated[str, typer.Option("--team", "-t", help="Team name or id.")],
    log_payloads: Annotated[
        bool, typer.Option(help="Record request payloads (off by default).")
    ] = False,
    prompt_approval: Annotated[
        bool,
        typer.Option(help="Moving the production label of its prompts needs an approver."),
    ] = False,
    json: JsonFlag = False,
) -> None:
    """Create a project in a team."""
    body = {
        "name": name,
        "team": team,
        "log_payloads": log_payloads,
        "prompt_approval": prompt_approval,
    }
    create("/projects", body, json, "project")


@projects.command("list")
def project_list(json: JsonFlag = False, limit: Limit = 100) -> None:
    """List projects."""
    rows = all_pages("/projects", limit)
    columns = ["id", "name", "team_id", "log_payloads", "prompt_approval", "created_at"]
    print_listing(rows, columns, as_json=json, title="Projects")


@users.command("create")
def user_create(
    email: str,
    name: Annotated[str, typer.Option("--name", "-n", help="Display name.")],
    department: Annotated[str | None, typer.Option(help="Department name or id.")] = None,
    team: Annotated[str | None, typer.Option(help="Team name or id.")] = None,
    json: JsonFlag = False,
) -> None:
    """Create a user."""
    body = {"email": email, "name": name, "department": department, "team": team}
    create("/users", body, json, "user")


@users.command("list")
def user_list(json: JsonFlag = False, limit: Limit = 100) -> None:
    """List users."""
    rows = all_pages("/users", limit)
    print_listing(
        rows, ["id", "email", "name", "department_id", "team_id"], as_json=json, title="Users"
    )


def _expiry(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).isoformat()
    except ValueError as exc:
        raise CliError(f"--expires: {text!r} is not a date (YYYY-MM-DD) or ISO datetime") from exc


@keys.command("create")
def key_create(
    role: Annotated[str, typer.Option(help="admin | approver | developer | analyst | service")],
    name: Annotated[str | None, typer.Option(help="A label for the key.")] = None,
    project: Annotated[str | None, typer.Option(help="Scope to a project (name or id).")] = None,
    team: Annotated[str | None, typer.Option(help="Scope to a team (name or id).")] = None,
    department: Annotated[str | None, typer.Option(help="Scope to a department.")] = None,
    user: Annotated[str | None, typer.Option(help="Owning user (email or id).")] = None,
    service: Annotated[str | None, typer.Option(help="Owning service name.")] = None,
    expires: Annotated[
        str | None, typer.Option(help="Expiry: YYYY-MM-DD or ISO datetime (UTC).")
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Create a key. The key is printed once and cannot be shown again."""
    body = {
        "role": role,
        "name": name,
        "project": project,
        "team": team,
        "department": department,
        "user": user,
        "service": service,
        "expires_at": _expiry(expires),
    }
    with control_client() as client:
        issued = client.request(
            "POST", "/keys", json={k: v for k, v in body.items() if v is not None}
        )
    _show_issued(issued, json)


def _show_issued(issued: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json({"id": issued["id"], "key": issued["key"]})
        return
    typer.echo(f"key id: {issued['id']}  role: {issued['role']}  scope: {issued['scope']}")
    typer.echo(f"key:    {issued['key']}")
    typer.echo("Store it now: Capstan keeps only its hash and cannot show it again.", err=True)


@keys.command("list")
def key_list(
    include_revoked: Annotated[bool, typer.Option(help="Show revoked keys too.")] = False,
    json: JsonFlag = False,
    limit: Limit = 100,
) -> None:
    """List keys (never the keys themselves: their prefix, role and scope)."""
    rows = all_pages("/keys", limit, {"include_revoked": include_revoked})
    columns = ["id", "prefix", "name", "role", "scope", "expires_at", "revoked_at"]
    print_listing(rows, columns, as_json=json, title="API keys")


@keys.command("revoke")
def key_revoke(key_id: str, json: JsonFlag = False) -> None:
    """Revoke a key: every replica refuses it within a second."""
    with control_client() as client:
        revoked = client.request("POST", f"/keys/{key_id}/revoke")
    if json:
        print_json(revoked)
    else:
        typer.echo(f"revoked {revoked['id']} at {revoked['revoked_at']}")


@keys.command("rotate")
def key_rotate(
    key_id: str,
    grace: Annotated[int, typer.Option(help="Seconds the old key keeps working.", min=0)] = 0,
    json: JsonFlag = False,
) -> None:
    """Replace a key with a new one of the same role, owner and scope."""
    with control_client() as client:
        issued = client.request("POST", f"/keys/{key_id}/rotate", json={"grace_seconds": grace})
    _show_issued(issued, json)
