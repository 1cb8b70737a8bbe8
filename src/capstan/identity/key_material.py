"""API key strings: `cap_` + 32 random bytes in base62, shown once and stored as SHA-256.

Why a plain SHA-256 and not a password hash (bcrypt, argon2): a key carries 256 bits of
entropy from `secrets.token_bytes`, so there is no dictionary to try and brute force is out of
reach; slow hashing protects low-entropy passwords and would only add milliseconds to every
request. A fast, unsalted digest also lets the gateway find a key by an indexed equality lookup.
"""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "cap_"
KEY_BYTES = 32
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# 32 bytes < 62**43, so every key encodes in exactly 43 characters once left-padded.
ENCODED_LENGTH = 43
DISPLAY_LENGTH = 12


def base62(data: bytes, width: int = ENCODED_LENGTH) -> str:
    number = int.from_bytes(data, "big")
    digits: list[str] = []
    while number:
        number, remainder = divmod(number, 62)
        digits.append(ALPHABET[remainder])
    return "".join(reversed(digits)).rjust(width, ALPHABET[0])


def generate_key() -> str:
    return PREFIX + base62(secrets.token_bytes(KEY_BYTES))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def display_prefix(key: str) -> str:
    """The first characters, safe to show in listings and logs (`cap_7xQ2kd9a`)."""
    return key[:DISPLAY_LENGTH]


def looks_like_key(text: str) -> bool:
    return (
        text.startswith(PREFIX)
        and len(text) == len(PREFIX) + ENCODED_LENGTH
        and all(c in ALPHABET for c in text[len(PREFIX) :])
    )
