"""`capstan secrets set|list|delete|rotate-master-key`.

A value never travels as a command-line argument: argv is visible to every user through `ps`
and lands in shell history. It comes from stdin (typed without echo on a terminal, or piped) or
from a named environment variable.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from capstan.cli.client import control_client, local_principal
from capstan.cli.output import CliError, print_listing
from capstan.cli.resources import JsonFlag, delete, item_path
from capstan.config import load_settings
from capstan.services import Services

app = typer.Typer(
    help="Secrets encrypted at rest (provider keys, tokens): write-only, never shown.",
    no_args_is_help=True,
)

COLUMNS = ["name", "description", "key_id", "updated_at"]


def read_stdin(prompt: str, *, when_empty: str) -> str:
    """A value typed without echo on a terminal, or piped on stdin (less the one newline that
    `echo value |` adds); `CliError(when_empty)` if there is none."""
    if sys.stdin.isatty():
        value = str(typer.prompt(prompt, hide_input=True, prompt_suffix=": "))
    else:
        value = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    if not value:
        raise CliError(when_empty)
    return value


def _read_value(from_env: str | None) -> str:
    if from_env is None:
        empty = "the secret value is empty: pipe it on stdin or use --from-env VAR"
        return read_stdin("value", when_empty=empty)
    value = os.environ.get(from_env)
    if not value:
        raise CliError(f"--from-env: the environment variable {from_env} is not set or empty")
    return value


@app.command("set")
def set_secret(
    name: Annotated[str, typer.Argument(help="Secret name: letters, digits, '.', '_', '-'.")],
    description: Annotated[str, typer.Option(help="What the secret is for.")] = "",
    from_env: Annotated[
        str | None,
        typer.Option("--from-env", metavar="VAR", help="Read the value from this variable."),
    ] = None,
) -> None:
    """Create or replace a secret; the value is read from stdin or --from-env."""
    value = _read_value(from_env)
    with control_client() as client:
        stored = client.request(
            "PUT", item_path("/secrets", name), json={"value": value, "description": description}
        )
    typer.echo(f"stored secret {stored['name']} (sealed under key {stored['key_id']})")


@app.command("list")
def list_secrets(json: JsonFlag = False) -> None:
    """List secrets (names and metadata; values are never shown)."""
    with control_client() as client:
        rows = client.request("GET", "/secrets")["items"]
    print_listing(rows, COLUMNS, as_json=json, title="Secrets")


@app.command("delete")
def delete_secret(name: Annotated[str, typer.Argument(help="Secret name.")]) -> None:
    """Delete a secret."""
    delete(item_path("/secrets", name), "secret", name)


@app.command("rotate-master-key")
def rotate_master_key() -> None:
    """Re-encrypt every secret under a new master key (run it where the master key lives)."""
    if os.environ.get("CAPSTAN_URL"):
        raise CliError(
            "rotate-master-key runs on the Capstan host, where the master key lives, never "
            "through a server: unset CAPSTAN_URL and run it there"
        )
    services = Services.build(load_settings())
    try:
        count = services.vault.rotate_master_key(local_principal(services))
        keyring = services.vault.keyring
    finally:
        services.close()
    typer.echo(f"re-encrypted {count} secrets under key {keyring.current_key_id}")
    if keyring.source == "env":
        typer.echo(
            f"the new key is in {keyring.staging_file}: set CAPSTAN_MASTER_KEY to its contents, "
            "add the old key to CAPSTAN_PREVIOUS_MASTER_KEYS (a JSON list), restart every "
            "replica, then delete the file"
        )
