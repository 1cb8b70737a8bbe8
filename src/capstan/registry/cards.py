"""Model cards and version diffs, drawn from the registry's current state.

A card is never stored: it is rendered from the model and version as the API reads them now,
so a status, an alias or an approval that changes shows on the next card and no copy can go
stale. Everything on a card came from whoever registered the model, so all of it is untrusted
text: HTML autoescapes it, Markdown escapes whatever could break a table or inject markup, and
plain text shows control characters as escapes so they cannot drive a terminal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

import jinja2

NOT_STATED = "Not stated."
LINEAGE = ("train_data_uri", "train_data_sha256", "code_commit", "parent_version")

# Inline markup CommonMark would act on, escaped only where it could act so that names and
# shapes stay readable: `_` not inside a word (`debt_ratio` never emphasises), `]` only where
# it could close a link or image (`[-1, 3]` alone is text).
_MD_SPECIAL = re.compile(r"[\\`*<>|]|\](?=[(\[:])|(?<![^\W_])_|_(?![^\W_])")


def card_markdown(
    model: Mapping[str, Any], version: Mapping[str, Any], *, audit: Sequence[Mapping[str, Any]] = ()
) -> str:
    """The card as Markdown, for READMEs, pull requests and the CLI."""
    return _template("card.md.j2").render(_card(model, version, audit))


def card_html(
    model: Mapping[str, Any], version: Mapping[str, Any], *, audit: Sequence[Mapping[str, Any]] = ()
) -> str:
    """The card as one self-contained page: reviewers open it without the console."""
    return _template("card.html.j2").render(_card(model, version, audit))


def version_diff(name: str, first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """What changed from `first` to `second`, for deciding whether to promote `second`.

    Metrics and profile columns are listed side by side whether or not they moved (an
    unchanged metric is evidence too); signature, lineage and params list differences only.
    """
    v1, v2 = first["version"], second["version"]
    m1, m2 = first.get("metrics") or {}, second.get("metrics") or {}
    metrics = [p | {"change": _minus(p["second"], p["first"])} for p in _pairs("name", m1, m2)]
    l1, l2 = first.get("lineage") or {}, second.get("lineage") or {}
    fields = [*LINEAGE, *sorted((set(l1) | set(l2)) - set(LINEAGE))]
    p1, p2 = first.get("params") or {}, second.get("params") or {}
    return {
        "name": name,
        "versions": [v1, v2],
        "metrics": metrics,
        "signature": _signature_diff(first.get("signature") or {}, second.get("signature") or {}),
        "lineage": [p for p in _pairs("field", l1, l2, fields) if _differs(p["field"], l1, l2)],
        "params": [p for p in _pairs("name", p1, p2) if _differs(p["name"], p1, p2)],
        "profiled": [first.get("profile") is not None, second.get("profile") is not None],
        "profile": _profile_diff(first.get("profile"), second.get("profile"), v1, v2),
    }


def diff_text(diff: Mapping[str, Any]) -> str:
    """A version diff as aligned plain text for a terminal."""
    v1, v2 = (f"v{v}" for v in diff["versions"])
    lines = [f"{_plain(diff['name'])}: {v1} -> {v2}"]
    metrics = [
        [m["name"], _num(m["first"]), _num(m["second"]), _num(m["change"], sign=True)]
        for m in diff["metrics"]
    ]
    lines += _section("Metrics", ["metric", v1, v2, "change"], metrics, "no metrics")
    signature, changes = diff["signature"], []
    for side in ("input", "output"):
        specs = [("added", None, s) for s in signature[f"{side}s_added"]]
        specs += [("removed", s, None) for s in signature[f"{side}s_removed"]]
        specs += [("changed", c["first"], c["second"]) for c in signature[f"{side}s_changed"]]
        changes += [[f"{side} {how}", (a or b)["name"], _spec(a), _spec(b)] for how, a, b in specs]
    changes += [["column added", c, "-", "present"] for c in signature["columns_added"]]
    changes += [["column removed", c, "present", "-"] for c in signature["columns_removed"]]
    changes += [["columns reordered", "", "", ""]] if signature["columns_reordered"] else []
    lines += _section("Signature", ["change", "name", v1, v2], changes, "no changes")
    lineage = [[d["field"], _num(d["first"]), _num(d["second"])] for d in diff["lineage"]]
    lines += _section("Lineage", ["field", v1, v2], lineage, "no changes")
    params = [[d["name"], _num(d["first"]), _num(d["second"])] for d in diff["params"]]
    lines += _section("Parameters", ["param", v1, v2], params, "no changes")
    columns = [
        [
            c["column"],
            *map(_num, (c["first_mean"], c["second_mean"])),
            _num(c["mean_change"], sign=True),
            *map(_percent, (c["first_missing"], c["second_missing"])),
            c["note"] or "",
        ]
        for c in diff["profile"]
    ]
    header = ["column", f"{v1} mean", f"{v2} mean", "change", f"{v1} missing", f"{v2} missing"]
    unprofiled = [v for v, done in zip((v1, v2), diff["profiled"], strict=True) if not done]
    empty = f"not profiled: {', '.join(unprofiled)}" if unprofiled else "no columns"
    lines += _section("Reference data profile", [*header, "note"], columns, empty)
    return "\n".join(lines) + "\n"


# --- cards -----------------------------------------------------------------------------------


class _Raw(str):
    """Markdown this module built itself, which the template must not escape again."""


@cache
def _template(name: str) -> jinja2.Template:
    source = resources.files("capstan.registry").joinpath("templates", name).read_text("utf-8")
    if name.endswith(".html.j2"):
        environment = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    else:  # every printed value escaped unless this module marked it as its own Markdown
        environment = jinja2.Environment(
            autoescape=False,  # noqa: S701 (HTML escaping would mangle Markdown)
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            finalize=_md_inline,
        )
        environment.filters["block"] = _md_block
        environment.globals["table"] = _md_table
    environment.undefined = jinja2.StrictUndefined
    return environment.from_string(source)


def _card(
    model: Mapping[str, Any], version: Mapping[str, Any], audit: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    lineage = version.get("lineage") or {}
    signature = version.get("signature") or {}
    profile = version.get("profile")
    parent = lineage.get("parent_version")
    history = [
        [_when(e.get("time")), _stated(e.get("actor")), _stated(e.get("action"))] for e in audit
    ]
    return {
        "name": _stated(version.get("name") or model.get("name")),
        "version": version["version"],
        "status": _stated(version.get("status")),
        "aliases": [str(a) for a in version.get("aliases") or ()],
        "description": _text(model.get("description")),
        "version_description": _text(version.get("description")),
        "intended_use": _stated(model.get("intended_use")),
        "ownership": [
            ["Owner", _stated(model.get("owner"))],
            ["Risk tier", _stated(model.get("risk_tier"))],
            ["Project", _stated(model.get("project_id"))],
        ],
        "lineage": [
            ["Training data", _stated(lineage.get("train_data_uri"))],
            ["Training data SHA-256", _stated(lineage.get("train_data_sha256"))],
            ["Code commit", _stated(lineage.get("code_commit"))],
            ["Parent version", NOT_STATED if parent is None else f"v{parent}"],
            ["Registered by", _stated(version.get("created_by"))],
            ["Registered at", _when(version.get("created_at"))],
        ],
        "metrics": [[str(k), _num(v)] for k, v in (version.get("metrics") or {}).items()],
        "inputs": [_tensor(s) for s in signature.get("inputs") or ()],
        "outputs": [_tensor(s) for s in signature.get("outputs") or ()],
        "columns": [str(c) for c in signature.get("columns") or ()],
        "profile_rows": None if profile is None else _num(profile.get("rows")),
        "profile": [] if profile is None else [_profile_row(r) for r in _summary(profile)],
        "params": [[str(k), _num(v)] for k, v in (version.get("params") or {}).items()],
        "artifact": [
            ["Flavor", _stated(version.get("flavor"))],
            ["Size", _size(version.get("artifact_size"))],
            ["SHA-256", _stated(version.get("artifact_sha256"))],
            ["URI", _stated(version.get("artifact_uri"))],
        ],
        "approvals": [row for row in history if "approve" in row[2].lower()],
        "history": history,
    }


def _profile_row(row: Mapping[str, Any]) -> list[str]:
    if row["type"] == "numeric":
        stats = f"mean {_num(row['mean'])}, min {_num(row['min'])}, max {_num(row['max'])}"
        stats = "no values" if row["mean"] is None else stats
    else:
        top = ", ".join(str(value) for value in row["top"])
        stats = f"{row['distinct']} distinct" + (f"; top: {top}" if top else "")
    return [str(row["name"]), str(row["type"]), _percent(row["missing_share"]), stats]


def _tensor(spec: Mapping[str, Any]) -> list[str]:
    return [str(spec.get("name")), str(spec.get("datatype")), _shape(spec.get("shape"))]


def _md_inline(value: Any) -> str:
    if isinstance(value, _Raw):
        return value
    text = _visible(str(value))
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(), text).replace("\n", "<br>")


def _md_block(value: Any) -> _Raw:
    """Free text keeps its paragraphs and line breaks, but no line may start a heading, list,
    quote, rule or code block: only the template decides the card's structure."""
    lines = []
    for line in _visible(str(value)).strip().split("\n"):
        line = _MD_SPECIAL.sub(lambda m: "\\" + m.group(), line.strip())
        line = re.sub(r"^(\d+)([.)])", r"\1\\\2", re.sub(r"^([#+=~-])", r"\\\1", line))
        lines.append(line)
    text = "  \n".join(lines)
    return _Raw(re.sub(r"(  \n){2,}", "\n\n", text))


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> _Raw:
    lines = [header, ["---"] * len(header), *rows]
    return _Raw("\n".join("| " + " | ".join(map(_md_inline, line)) + " |" for line in lines))


# --- diffs -----------------------------------------------------------------------------------


def _signature_diff(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    diff: dict[str, Any] = {}
    for side in ("inputs", "outputs"):
        fields = ("name", "datatype", "shape")
        a = {str(s["name"]): {k: s.get(k) for k in fields} for s in first.get(side) or ()}
        b = {str(s["name"]): {k: s.get(k) for k in fields} for s in second.get(side) or ()}
        diff[f"{side}_added"] = [b[n] for n in b if n not in a]
        diff[f"{side}_removed"] = [a[n] for n in a if n not in b]
        diff[f"{side}_changed"] = [
            {"name": n, "first": a[n], "second": b[n]} for n in a if n in b and a[n] != b[n]
        ]
    c1 = [str(c) for c in first.get("columns") or ()]
    c2 = [str(c) for c in second.get("columns") or ()]
    diff["columns_added"] = [c for c in c2 if c not in c1]
    diff["columns_removed"] = [c for c in c1 if c not in c2]
    # Order matters: the records form builds the feature tensor in this order.
    diff["columns_reordered"] = [c for c in c1 if c in c2] != [c for c in c2 if c in c1]
    return diff


def _profile_diff(
    first: Mapping[str, Any] | None, second: Mapping[str, Any] | None, v1: Any, v2: Any
) -> list[dict[str, Any]]:
    if first is None or second is None:
        return []
    a = {str(r["name"]): r for r in _summary(first)}
    b = {str(r["name"]): r for r in _summary(second)}
    rows = []
    for column in _keys(a, b):
        x, y = a.get(column, {}), b.get(column, {})
        note = None
        if not x or not y:
            note = f"only in v{v1 if x else v2}"
        elif x["type"] != y["type"]:
            note = f"type {x['type']} -> {y['type']}"
        row = {"column": column, "mean_change": _minus(y.get("mean"), x.get("mean")), "note": note}
        for key, field in (("type", "type"), ("mean", "mean"), ("missing", "missing_share")):
            row[f"first_{key}"], row[f"second_{key}"] = x.get(field), y.get(field)
        rows.append(row)
    return rows


def _section(title: str, header: list[str], rows: list[list[Any]], empty: str) -> list[str]:
    """Every cell becomes one line of plain text, so registry values cannot break the
    alignment or reach the terminal as control sequences."""
    if not rows:
        return ["", title, f"  {empty}"]
    table = [[_plain(cell) for cell in row] for row in (header, *rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in table)
    return ["", title, *(line.rstrip() for line in lines)]


# --- values ----------------------------------------------------------------------------------


def _keys(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[str]:
    return [*first, *(key for key in second if key not in first)]


def _pairs(
    label: str, first: Mapping[str, Any], second: Mapping[str, Any], keys: Sequence[str] = ()
) -> list[dict[str, Any]]:
    return [
        {label: key, "first": first.get(key), "second": second.get(key)}
        for key in keys or _keys(first, second)
    ]


def _differs(key: str, first: Mapping[str, Any], second: Mapping[str, Any]) -> bool:
    """True == 1 in Python, but a param flipping to a bool is a change, and so is one that
    appears with the value None."""
    a, b = first.get(key), second.get(key)
    alike = isinstance(a, bool) == isinstance(b, bool) and (key in first) == (key in second)
    return not (alike and bool(a == b))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _minus(second: Any, first: Any) -> float | int | None:
    return second - first if _is_number(first) and _is_number(second) else None


def _text(value: Any) -> str | None:
    return None if value is None or not str(value).strip() else str(value)


def _stated(value: Any) -> str:
    return _text(value) or NOT_STATED


def _num(value: Any, *, sign: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:+d}" if sign and value else str(value)
    if isinstance(value, float):
        return f"{value:+.6g}" if sign and value else f"{value:.6g}"
    return str(value) if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _percent(share: Any) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def _shape(shape: Any) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]" if isinstance(shape, list | tuple) else "-"


def _spec(spec: Mapping[str, Any] | None) -> str:
    return "-" if spec is None else f"{spec.get('datatype')} {_shape(spec.get('shape'))}"


def _size(size: Any) -> str:
    if not _is_number(size):
        return _stated(size)
    power = next(p for p in range(4, -1, -1) if size >= 1024**p or p == 0)
    unit = ("bytes", "KiB", "MiB", "GiB", "TiB")[power]
    return f"{size:,} bytes" if power == 0 else f"{size / 1024**power:.1f} {unit} ({size:,} bytes)"


def _when(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        moment = value.astimezone(UTC) if value.tzinfo else value
        return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return _stated(value)


def _visible(text: str) -> str:
    """Line breaks kept, every other control or invisible character (an ESC that could drive
    a terminal, a bidi override that reorders what is read) shown as its escape."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(
        c if c.isprintable() or c == "\n" else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


def _plain(value: Any) -> str:
    """One line of plain text: a newline in a value must not break the alignment."""
    return _visible(str(value)).replace("\n", "\\n")


def _summary(profile: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`profile.summary`, imported when a card is drawn: that module loads numpy, which the
    control API does not otherwise need at start."""
    from capstan.registry.profile import summary

    return summary(profile)
