"""The `capstan` entry point: wires the command groups and turns every failure into one line."""

from __future__ import annotations

import sys

import click
import typer
from sqlalchemy.exc import SQLAlchemyError

from capstan.cli import audit, gateway, identity, prompt_experiments, server
from capstan.cli import finops as finops_cli
from capstan.cli import models as models_cli
from capstan.cli import prompts as prompts_cli
from capstan.cli import ratelimits as ratelimits_cli
from capstan.cli import recommend as recommend_cli
from capstan.cli import report as report_cli
from capstan.cli import requests as requests_cli
from capstan.cli import secrets as secrets_cli
from capstan.cli import upstream_sim as upstream_sim_cli
from capstan.cli.output import CliError, errors
from capstan.errors import CapstanError

app = typer.Typer(
    name="capstan",
    help="Capstan: one control plane for every AI model a company runs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("init")(server.init)
app.command("serve")(server.serve)
app.command("demo")(server.demo)
app.command("upstream-sim")(upstream_sim_cli.upstream_sim)
app.add_typer(identity.departments, name="departments")
app.add_typer(identity.teams, name="teams")
app.add_typer(identity.projects, name="projects")
app.add_typer(identity.users, name="users")
app.add_typer(identity.keys, name="keys")
app.add_typer(audit.app, name="audit")
app.add_typer(requests_cli.app, name="requests")
app.add_typer(finops_cli.budgets, name="budgets")
app.add_typer(finops_cli.prices, name="prices")
app.add_typer(report_cli.app, name="report")
app.add_typer(finops_cli.pauses, name="pauses")
app.add_typer(ratelimits_cli.app, name="ratelimits")
app.add_typer(prompts_cli.app, name="prompts")
app.add_typer(models_cli.app, name="models")
prompts_cli.app.add_typer(prompt_experiments.app, name="experiment")
app.command("pause")(finops_cli.pause)
app.command("resume")(finops_cli.resume)
app.command("recommend")(recommend_cli.recommend)
app.add_typer(secrets_cli.app, name="secrets")
app.add_typer(gateway.providers, name="providers")
app.add_typer(gateway.deployments, name="deployments")
app.add_typer(gateway.aliases, name="aliases")
app.command("apply")(gateway.apply_file)
app.command("catalog")(gateway.catalog)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI; bad arguments and failed calls print one line on stderr, never a traceback."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="capstan", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        errors.print("error: aborted")
        return 130
    except (typer.TyperException, click.ClickException) as exc:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        errors.print(f"error: {message}", markup=False)
        return int(getattr(exc, "exit_code", 2))
    except CliError as exc:
        errors.print(f"error: {exc.message}", markup=False)
        return exc.code
    except CapstanError as exc:
        errors.print(f"error: {exc.detail}", markup=False)
        return 1
    except SQLAlchemyError as exc:
        errors.print(
            f"error: database: {type(exc).__name__}: {str(exc).splitlines()[0]}", markup=False
        )
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: still one line, no traceback
        errors.print(f"error: {type(exc).__name__}: {exc}", markup=False)
        return 1
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
