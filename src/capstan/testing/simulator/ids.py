"""The random ids the simulated vendors put on their answers (`chatcmpl-…`, `msg_01…`,
`req_…`, Gemini's `responseId`): each vendor chooses the prefix, length and alphabet that its
real ids have, and draws the rest here."""

from __future__ import annotations

import secrets
import string

ALPHANUMERIC = string.ascii_letters + string.digits
BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
HEX = "0123456789abcdef"
URL_SAFE = ALPHANUMERIC + "-_"


def random_id(length: int, alphabet: str = ALPHANUMERIC) -> str:
    """`length` characters drawn from `alphabet`."""
    return "".join(secrets.choice(alphabet) for _ in range(length))
