"""`capstan models register|list|show|alias|archive|status`: the model registry, through the
control API like every command (the artifact is uploaded, then the version registered).

`--train-data FILE.csv` records the training data's lineage (path and SHA-256) and its
reference profile, and gives tabular models their signature: one FP64 input of all the
file's feature columns, in order (the label column named by `--label` left out).
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Annotated, Any

import typer

from capstan.cli.client import control_client
from capstan.cli.output import CliError, print_json, print_listing
from capstan.cli.resources import JsonFlag, item_path

app = typer.Typer(help="The model registry: versions, aliases, lineage, serving status.")
app.info.no_args_is_help = True
MAX_SAMPLE_ROWS = 100_000


def _metrics(pairs: list[str]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            metrics[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise CliError(f"--metrics takes NAME=NUMBER, got {pair!r}")
    return metrics


def _columns(path: Path, label: str | None) -> dict[str, list[Any]]:
    """The CSV's columns (at most `MAX_SAMPLE_ROWS` rows): numbers where every value is one."""
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            rows = [row for _, row in zip(range(MAX_SAMPLE_ROWS), reader, strict=False)]
            names = list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CliError(f"cannot read the training data {path}: {exc}") from exc
    if not rows:
        raise CliError(f"the training data {path} has no rows")
    if label is not None and label not in names:
        raise CliError(f"the training data has no column {label!r}")
    columns: dict[str, list[Any]] = {}
    for name in names:
        if name == label:
            continue
        values = [row.get(name) or None for row in rows]
        try:
            columns[name] = [None if v is None else float(v) for v in values]
        except ValueError:
            columns[name] = values
    return columns


def _training(
    path: Path, label: str | None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(lineage, profile, signature) from a training sample."""
    from capstan.registry.profile import profile_of  # numpy: loaded only when needed

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    columns = _columns(path, label)
    lineage = {"train_data_uri": str(path.resolve()), "train_data_sha256": digest.hexdigest()}
    numeric = [
        name
        for name, values in columns.items()
        if all(v is None or isinstance(v, float) for v in values)
    ]
    signature = {
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, len(numeric)]}],
        "outputs": [],
        "columns": numeric,
    }
    return lineage, profile_of(columns), signature


@app.command("register")
def register(
    path: Annotated[Path, typer.Argument(help="The artifact: model.onnx, .skops, .json, .txt.")],
    name: Annotated[str, typer.Option(help="The registered model's name.")],
    flavor: Annotated[str, typer.Option(help="onnx, sklearn, xgboost or lightgbm.")],
    train_data: Annotated[
        Path | None, typer.Option(help="A CSV training sample: lineage, profile, signature.")
    ] = None,
    label: Annotated[
        str | None, typer.Option(help="The training data's label column (not a feature).")
    ] = None,
    metrics: Annotated[list[str], typer.Option(help="NAME=NUMBER, repeatable.")] = [],  # noqa: B006
    alias: Annotated[list[str], typer.Option(help="An alias to point here, repeatable.")] = [],  # noqa: B006
    description: Annotated[str | None, typer.Option()] = None,
    owner: Annotated[str | None, typer.Option()] = None,
    risk_tier: Annotated[str | None, typer.Option(help="low, medium, high or critical.")] = None,
    project: Annotated[str | None, typer.Option(help="The owning project.")] = None,
    code_commit: Annotated[str | None, typer.Option(help="The training code's commit.")] = None,
    parent_version: Annotated[
        int | None, typer.Option(help="The version this one was derived from.")
    ] = None,
    trust: Annotated[
        list[str],
        typer.Option(help="A type a skops artifact may load beyond sklearn/numpy/scipy."),
    ] = [],  # noqa: B006
    json: JsonFlag = False,
) -> None:
    """Register a new version: scanned, loaded once, stored with its SHA-256."""
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from exc
    body: dict[str, Any] = {
        "flavor": flavor,
        "metrics": _metrics(metrics),
        "aliases": alias,
        "description": description,
        "owner": owner,
        "risk_tier": risk_tier,
        "project": project,
        "lineage": {
            key: value
            for key, value in (("code_commit", code_commit), ("parent_version", parent_version))
            if value is not None
        },
        "trusted_types": trust,
    }
    if train_data is not None:
        lineage, profile, signature = _training(train_data, label)
        body["lineage"] |= lineage
        body["profile"] = profile
        if flavor == "onnx":  # the model describes its input; the sample names its columns
            body["columns"] = signature["columns"]
        else:
            body["signature"] = signature
    with control_client() as client:
        upload = client.upload("/uploads", content, {"x-capstan-filename": path.name})
        body["upload"] = upload["upload"]
        created = client.request("POST", item_path("/models", name) + "/versions", json=body)
    if json:
        print_json(created)
        return
    aliases = f" ({', '.join(created['aliases'])})" if created["aliases"] else ""
    digest = created["artifact_sha256"][:12]
    typer.echo(f"registered {name} v{created['version']}{aliases}, sha256 {digest}")


@app.command("list")
def list_models(json: JsonFlag = False) -> None:
    """Registered models, their latest version and aliases."""
    with control_client() as client:
        rows = client.request("GET", "/models")
    shown = [
        {**row, "aliases": ", ".join(f"{a}=v{v}" for a, v in sorted(row["aliases"].items()))}
        for row in rows
    ]
    columns = ("name", "latest_version", "aliases", "owner", "risk_tier", "description")
    print_listing(rows if json else shown, columns, as_json=json, title="Models")


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(metavar="NAME[@ALIAS|@VERSION]")], json: JsonFlag = False
) -> None:
    """One version (the newest when neither an alias nor a version is given)."""
    name, _, version = ref.partition("@")
    with control_client() as client:
        if version:
            row = client.request("GET", item_path("/models", name) + f"/versions/{version}")
        else:
            model = client.request("GET", item_path("/models", name))
            if not model["versions"]:
                raise CliError(f"model {name!r} has no version")
            row = model["versions"][0]
    if json:
        print_json(row)
        return
    for key in (
        "name",
        "version",
        "flavor",
        "status",
        "aliases",
        "artifact_sha256",
        "metrics",
        "lineage",
        "created_by",
        "created_at",
        "description",
    ):
        typer.echo(f"{key + ':':<16} {row.get(key)}")
    typer.echo(f"{'signature:':<16} {row['signature']}")


@app.command("alias")
def set_alias(name: str, alias: str, version: int) -> None:
    """Point an alias (`champion`, `challenger`, …) at a version."""
    with control_client() as client:
        client.request(
            "PUT", item_path("/models", name) + f"/aliases/{alias}", json={"version": version}
        )
    typer.echo(f"{name}@{alias} → v{version}")


@app.command("status")
def set_status(name: str, version: int, status: str) -> None:
    """Move a version along registered → staging → production → archived → retired."""
    with control_client() as client:
        client.request(
            "POST",
            item_path("/models", name) + f"/versions/{version}/status",
            json={"status": status},
        )
    typer.echo(f"{name} v{version} is {status}")


@app.command("archive")
def archive(name: str, version: int) -> None:
    """Archive a version (it stays servable by number until it is retired)."""
    set_status(name, version, "archived")


@app.command("card")
def card(
    ref: Annotated[str, typer.Argument(metavar="NAME@VERSION|NAME@ALIAS")],
    format: Annotated[str, typer.Option("--format", help="md or html.")] = "md",
    output: Annotated[Path | None, typer.Option(help="Write to this file.")] = None,
) -> None:
    """The version's model card, from the registry as it is now."""
    name, _, version = ref.partition("@")
    if not version:
        raise CliError("name the version or alias: NAME@VERSION or NAME@ALIAS")
    if format not in ("md", "html"):
        raise CliError("--format is md or html")
    path = item_path("/models", name) + f"/versions/{version}/card"
    with control_client() as client:
        text = "".join(client.stream(path, params={"format": format}))
    if output is None:
        typer.echo(text, nl=False)
        return
    output.write_text(text)
    typer.echo(f"wrote {output}")


@app.command("diff")
def diff(name: str, first: int, second: int, json: JsonFlag = False) -> None:
    """Two versions side by side: metrics, signature, lineage, parameters, profile."""
    from capstan.registry.cards import diff_text

    with control_client() as client:
        found = client.request(
            "GET", item_path("/models", name) + "/diff", params={"from": first, "to": second}
        )
    if json:
        print_json(found)
        return
    typer.echo(diff_text(found), nl=False)
