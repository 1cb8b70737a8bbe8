"""Sticky assignment of a request to one variant of a prompt experiment.

A subject (a user, a key, or a header value such as a session id) must see the same prompt
version for the whole experiment, on every replica and after every restart, or its feedback
mixes two variants and the comparison means nothing. So the variant is a pure function of the
experiment id and the subject: their BLAKE2b digest (never Python's `hash()`, which is salted
per process) mapped onto the cumulative weights. Nothing is stored and nothing is shared between
replicas, and the experiment id in the hashed text makes each experiment split subjects
independently of every other one, so being in the treatment group of one experiment says
nothing about another.

It runs on the request path, so it is about a microsecond of arithmetic with no global state.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from hashlib import blake2b

STICKY_CHOICES = (
    '"user" (the calling user), "key" (the API key) or "header:NAME" (the value of request '
    "header NAME: letters, digits and dashes, at most 64); without the user or the header a "
    "request sticks by its key"
)
"""Help text for the forms `parse_sticky` accepts."""

_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}", re.ASCII)
_HEADER_PREFIX = "header:"


@dataclass(frozen=True, slots=True)
class Variant:
    """One arm of an experiment: a prompt version and its share of subjects.

    Weights are integers so that the split is exact arithmetic on the 64-bit hash, with no
    float rounding that could move a subject from one variant to another between releases.
    """

    version: int
    weight: int

    def __post_init__(self) -> None:
        if self.weight <= 0:
            raise ValueError(
                f"a variant's weight must be a positive integer: version {self.version} has "
                f"{self.weight}"
            )


def assign(experiment_id: str, subject: str, variants: Sequence[Variant]) -> Variant:
    """The variant `subject` sees in `experiment_id`: the same one forever, on every machine.

    The digest is read as a 64-bit integer h, and `h * total // 2**64` is a point spread
    uniformly over [0, total) (the bias is at most total / 2**64), which then falls in one
    variant's slice of the cumulative weights. The order of `variants` matters: reordering
    them, or changing a weight, moves subjects, so an experiment's variants must be kept in a
    stable order while it runs.
    """
    if not variants:
        raise ValueError("an experiment needs at least one variant to assign")
    digest = blake2b((experiment_id + "\x00" + subject).encode(), digest_size=8).digest()
    total = 0
    for variant in variants:
        total += variant.weight
    point = (int.from_bytes(digest, "big") * total) >> 64
    for variant in variants:
        point -= variant.weight
        if point < 0:
            return variant
    raise AssertionError("unreachable: the point is always below the total weight")


def parse_sticky(value: str) -> str:
    """The canonical form of a sticky-by setting, or a `ValueError` saying what is accepted.

    Validated when an experiment is created, not on each request, so a typo such as "users" or
    "header:x session" is an operator's error message instead of an experiment that silently
    sticks every request by its key. Keywords and header names are lower-cased because HTTP
    header names are case-insensitive and the gateway looks them up lower-cased.
    """
    text = value.strip().lower()
    if text in ("user", "key"):
        return text
    if text.startswith(_HEADER_PREFIX):
        name = text[len(_HEADER_PREFIX) :]
        if _HEADER_NAME.fullmatch(name):
            return _HEADER_PREFIX + name
        raise ValueError(
            f"not a header name (letters, digits and dashes, 1 to 64 of them): {name!r} "
            f"in {value!r}"
        )
    raise ValueError(f"sticky-by must be {STICKY_CHOICES}; got {value!r}")


def subject_of(
    sticky_by: str,
    *,
    user_id: str | None,
    key_id: str | None,
    headers: Mapping[str, str],
) -> str | None:
    """The text a request is assigned by, falling back to its key id when it lacks its own.

    - "user": the user id; a request made without one (a service key) sticks by its key id.
    - "key": the key id.
    - "header:NAME": the value of header NAME (looked up lower-cased in `headers`, which must
      have lower-cased names); a request without the header, or with it empty, sticks by its
      key id.

    An authenticated request always has a key id, so the result is None only where nothing at
    all identifies the caller (tests, or an unauthenticated path), and the caller then has
    nothing to be sticky by. Empty values count as missing: hashing "" would put every such
    request in one variant together.
    `sticky_by` must be a form `parse_sticky` accepts; anything else is a `ValueError`.
    """
    fallback = key_id or None
    if sticky_by == "key":
        return fallback
    if sticky_by == "user":
        return user_id or fallback
    if sticky_by.startswith(_HEADER_PREFIX):
        value = headers.get(sticky_by[len(_HEADER_PREFIX) :].lower())
        return value if value and value.strip() else fallback
    raise ValueError(f"sticky-by must be {STICKY_CHOICES}; got {sticky_by!r}")
