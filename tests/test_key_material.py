"""API key strings: format, encoding and hashing."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from capstan.identity.key_material import (
    ALPHABET,
    ENCODED_LENGTH,
    base62,
    display_prefix,
    generate_key,
    hash_key,
    looks_like_key,
)


def _decode(text: str) -> int:
    number = 0
    for char in text:
        number = number * 62 + ALPHABET.index(char)
    return number


@given(st.binary(min_size=32, max_size=32))
def test_base62_encodes_any_32_bytes_in_43_characters_that_decode_back(data: bytes) -> None:
    encoded = base62(data)
    assert len(encoded) == ENCODED_LENGTH
    assert _decode(encoded) == int.from_bytes(data, "big")


def test_a_generated_key_is_cap_prefix_plus_43_base62_characters() -> None:
    key = generate_key()
    assert key.startswith("cap_")
    assert looks_like_key(key)


def test_generated_keys_are_unique() -> None:
    assert len({generate_key() for _ in range(1000)}) == 1000


def test_the_stored_form_is_the_sha256_of_the_key() -> None:
    key = generate_key()
    assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
    assert key not in hash_key(key)


def test_the_display_prefix_reveals_only_a_few_characters() -> None:
    key = generate_key()
    assert display_prefix(key) == key[:12]


def test_strings_that_are_not_keys_are_recognised() -> None:
    assert not looks_like_key("sk-" + "a" * 43)
    assert not looks_like_key("cap_short")
    assert not looks_like_key("cap_" + "!" * 43)
