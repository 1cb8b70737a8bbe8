"""Images and files inside OpenAI content parts: the URL of an `image_url` part, and a base64
`data:` URL split into its media type and data, for the vendors that take media inline."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

__all__ = ["InlineData", "image_url", "inline_data"]

# RFC 2397: data:[<mediatype>][;param=value]*[;base64],<data>
_BASE64_DATA_URL = re.compile(
    r"^data:(?P<mime>[^;,]*)(?:;[^;,]*)*;base64,(?P<data>.+)$", re.S | re.IGNORECASE
)


class InlineData(NamedTuple):
    media_type: str  # empty when the URL names none
    data: str  # base64, whitespace removed


def inline_data(url: str) -> InlineData | None:
    """The media type and base64 data of a non-empty base64 `data:` URL; None for any other
    URL (http(s), or a data URL that is not base64), which each adapter treats its own way."""
    match = _BASE64_DATA_URL.match(url)
    if match is None:
        return None
    return InlineData(match["mime"].strip(), "".join(match["data"].split()))


def image_url(part: dict[str, Any]) -> str:
    """The URL of an `image_url` content part (an object with `url`, or a bare string)."""
    image = part.get("image_url") or {}
    url = image.get("url") if isinstance(image, dict) else image
    return str(url or "")
