"""Counting a spool segment's events in place: what the SQLite fast path reports as inserted."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from capstan.events.spool import count_lines

# Event lines as the spool writes them: JSON objects, never holding a raw newline.
LINES = st.lists(st.binary(min_size=1).map(lambda b: b.replace(b"\n", b" ")), max_size=20)


@given(LINES, st.integers(min_value=0, max_value=3))
def test_a_segment_counts_one_event_per_line_whatever_blank_lines_end_it(
    lines: list[bytes], blank_lines_after: int
) -> None:
    content = b"".join(line + b"\n" for line in lines) + b"\n" * blank_lines_after
    assert count_lines(content) == len(lines)


def test_a_last_line_without_its_newline_still_counts() -> None:
    assert count_lines(b'{"id":1}\n{"id":2}') == 2
