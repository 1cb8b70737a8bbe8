"""What the resource commands share: their `--json` and `--limit` options, and the requests
that list every page, create, and delete a resource through the control API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote

import typer

from capstan.cli.client import control_client
from capstan.cli.output import print_json

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Limit = Annotated[int, typer.Option(min=1, max=500, help="Rows per page.")]


def item_path(collection: str, name: str) -> str:
    """`/providers/<name>`, the name quoted whole, so a bad name reaches the server's
    validation instead of another route."""
    return f"{collection}/" + quote(name, safe="")


def all_pages(path: str, limit: int, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    with control_client() as client:
        while True:
            page = client.request(
                "GET", path, params={**(params or {}), "limit": limit, "cursor": cursor}
            )
            rows.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return rows


def create(path: str, body: dict[str, Any], as_json: bool, label: str) -> None:
    with control_client() as client:
        created = client.request("POST", path, json=body)
    if as_json:
        print_json(created)
    else:
        typer.echo(f"created {label} {created.get('name', '')} ({created['id']})")


def delete(path: str, label: str, name: str) -> None:
    with control_client() as client:
        client.request("DELETE", path)
    typer.echo(f"deleted {label} {name}")


def show(
    collection: str,
    ref: str,
    as_json: bool,
    shown: Callable[[dict[str, Any]], dict[str, Any]] = lambda row: row,
) -> None:
    """One item: JSON, or a `field: value` line per field of `shown(row)`."""
    with control_client() as client:
        row = client.request("GET", item_path(collection, ref))
    if as_json:
        print_json(row)
        return
    for key, value in shown(row).items():
        typer.echo(f"{key + ':':<15} {'-' if value is None else value}")
