"""Usage for a served call whose provider reported none (a stream cut short, an upstream that
leaves `usage` out): the prompt and the output counted with the model family's tokenizer, so
its cost is close to the truth rather than the reservation's worst case. Marked estimated.

Counting never stalls the event loop: an encoding not loaded yet starts loading in a thread,
and until it is there the caller keeps its fallback (the reservation). Reasoning models bill
hidden reasoning tokens that never reach the client, so their output is taken at the call's
output cap, as the reservation does: an estimate may overstate what was spent, never
understate it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from capstan.finops.costing import Usage
from capstan.finops.encodings import load_in_background, ready
from capstan.finops.tokens import count_text_tokens, count_tokens, encoding_name

# Families whose billed output includes reasoning the client never sees.
_REASONING = ("o1", "o3", "o4", "gpt-5", "gpt-oss")


def counted_usage(
    model: str, body: Mapping[str, Any] | None, output: str, max_output: int
) -> Usage | None:
    """The call's usage counted offline; None when `model` has no offline tokenizer (loaded
    yet), the prompt holds parts no tokenizer measures, or nothing textual came back (a tool
    call, say), which leaves the caller's own estimate."""
    name = encoding_name(model)
    if name is None or body is None:
        return None
    if not ready(name):
        load_in_background(name)
        return None
    prompt = count_tokens(model, body)
    if prompt is None:
        return None
    if _reasons(model):
        return Usage(prompt_tokens=prompt, completion_tokens=max_output)
    if not output:
        return None
    completion = count_text_tokens(model, output)
    return None if completion is None else Usage(prompt_tokens=prompt, completion_tokens=completion)


def _reasons(model: str) -> bool:
    return model.rsplit("/", 1)[-1].lower().startswith(_REASONING)


def reply_text(response: Any) -> str:
    """The text of a whole reply, OpenAI chat (`choices[].message.content`) or Anthropic
    (`content[].text`); empty when it has none."""
    if not isinstance(response, dict):
        return ""
    texts: list[str] = []
    for choice in response.get("choices") or ():
        content = (choice.get("message") or {}).get("content") if isinstance(choice, dict) else None
        if isinstance(content, str):
            texts.append(content)
    blocks = response.get("content")
    if isinstance(blocks, list):
        for block in blocks:
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                texts.append(block["text"])
    return "".join(texts)
