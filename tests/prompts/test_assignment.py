"""Sticky assignment of subjects to experiment variants, and what a request is sticky by."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capstan.prompts.assignment import Variant, assign, parse_sticky, subject_of

HALVES = (Variant(version=1, weight=1), Variant(version=2, weight=1))
SUBJECTS = [f"user-{i}" for i in range(10_000)]


def shares(experiment_id: str, variants: tuple[Variant, ...]) -> dict[int, float]:
    counts = Counter(assign(experiment_id, subject, variants).version for subject in SUBJECTS)
    return {version: count / len(SUBJECTS) for version, count in counts.items()}


def test_a_subject_gets_the_same_variant_on_every_call() -> None:
    first = assign("exp-1", "user-42", HALVES)

    assert all(assign("exp-1", "user-42", HALVES) == first for _ in range(100))


def test_assignments_are_pinned_across_processes_and_releases() -> None:
    # Fixed by BLAKE2b of "exp-1\x00user-N": a change here moves live users between variants.
    versions = [assign("exp-1", f"user-{i}", HALVES).version for i in range(8)]

    assert versions == [1, 2, 2, 2, 1, 2, 2, 2]


@given(st.text(), st.text(), st.lists(st.integers(1, 1000), min_size=1, max_size=5))
def test_the_variant_is_always_one_of_those_offered(
    experiment_id: str, subject: str, weights: list[int]
) -> None:
    variants = tuple(Variant(version=i, weight=w) for i, w in enumerate(weights))

    assert assign(experiment_id, subject, variants) in variants


def test_equal_weights_split_subjects_in_half() -> None:
    split = shares("exp-1", HALVES)

    assert split[1] == pytest.approx(0.5, abs=0.02)
    assert split[2] == pytest.approx(0.5, abs=0.02)


def test_a_90_10_split_sends_a_tenth_of_subjects_to_the_second_variant() -> None:
    split = shares("exp-1", (Variant(version=1, weight=90), Variant(version=2, weight=10)))

    assert split[1] == pytest.approx(0.9, abs=0.02)
    assert split[2] == pytest.approx(0.1, abs=0.02)


def test_three_variants_split_by_their_weights() -> None:
    variants = (Variant(1, 1), Variant(2, 1), Variant(3, 2))

    split = shares("exp-1", variants)

    assert split[1] == pytest.approx(0.25, abs=0.02)
    assert split[2] == pytest.approx(0.25, abs=0.02)
    assert split[3] == pytest.approx(0.5, abs=0.02)


def test_two_experiments_split_the_same_subjects_independently() -> None:
    in_a_of_both = sum(
        assign("exp-1", subject, HALVES).version == 1
        and assign("exp-2", subject, HALVES).version == 1
        for subject in SUBJECTS
    )

    assert in_a_of_both / len(SUBJECTS) == pytest.approx(0.25, abs=0.02)


def test_an_experiment_without_variants_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one variant"):
        assign("exp-1", "user-42", ())


@pytest.mark.parametrize("weight", [0, -1])
def test_a_variant_needs_a_positive_weight(weight: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        Variant(version=1, weight=weight)


def test_sticky_by_user_hashes_the_user_id() -> None:
    assert subject_of("user", user_id="u-1", key_id="k-1", headers={}) == "u-1"


def test_sticky_by_user_falls_back_to_the_key_without_a_user() -> None:
    assert subject_of("user", user_id=None, key_id="k-1", headers={}) == "k-1"


def test_sticky_by_key_hashes_the_key_id_even_with_a_user() -> None:
    assert subject_of("key", user_id="u-1", key_id="k-1", headers={}) == "k-1"


def test_sticky_by_header_hashes_the_header_value() -> None:
    headers = {"x-session-id": "s-9"}

    assert subject_of("header:x-session-id", user_id="u-1", key_id="k-1", headers=headers) == "s-9"


def test_sticky_by_header_finds_the_header_whatever_the_case_of_its_name() -> None:
    headers = {"x-session-id": "s-9"}

    assert subject_of("header:X-Session-Id", user_id=None, key_id="k-1", headers=headers) == "s-9"


def test_sticky_by_header_falls_back_to_the_key_without_the_header() -> None:
    assert subject_of("header:x-session-id", user_id="u-1", key_id="k-1", headers={}) == "k-1"


def test_an_empty_header_counts_as_missing() -> None:
    headers = {"x-session-id": " "}

    assert subject_of("header:x-session-id", user_id=None, key_id="k-1", headers=headers) == "k-1"


def test_a_request_with_nothing_to_stick_by_has_no_subject() -> None:
    assert subject_of("user", user_id=None, key_id=None, headers={}) is None
    assert subject_of("header:x-session-id", user_id=None, key_id=None, headers={}) is None


def test_subject_of_refuses_an_unknown_sticky_form() -> None:
    with pytest.raises(ValueError, match="sticky-by"):
        subject_of("users", user_id="u-1", key_id="k-1", headers={})


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("user", "user"),
        ("key", "key"),
        (" User ", "user"),
        ("header:X-Session-Id", "header:x-session-id"),
        ("header:" + "a" * 64, "header:" + "a" * 64),
    ],
)
def test_parse_sticky_accepts_and_canonicalises_the_known_forms(value: str, canonical: str) -> None:
    assert parse_sticky(value) == canonical


@pytest.mark.parametrize(
    "value", ["", "users", "session", "header", "user:1", "keys", "cookie:x-session"]
)
def test_parse_sticky_refuses_anything_else_and_lists_the_choices(value: str) -> None:
    with pytest.raises(ValueError, match=r'must be "user" .*"key" .* "header:NAME"'):
        parse_sticky(value)


@pytest.mark.parametrize(
    "name", ["", "x session", "x_session", "x.session", "a" * 65, "sessión", " x-id"]
)
def test_parse_sticky_refuses_a_header_name_that_is_not_a_token(name: str) -> None:
    with pytest.raises(ValueError, match="not a header name"):
        parse_sticky("header:" + name)
