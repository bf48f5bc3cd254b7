"""Property tests of the reversal on CPython (the same code runs on the board)."""

from __future__ import annotations

from types import ModuleType

from hypothesis import given
from hypothesis import strategies as st

# Code points that may join a neighbour; text without them reverses by code point.
JOINING = [
    (0x0300, 0x036F), (0x0483, 0x0489), (0x0591, 0x05BD), (0x0610, 0x061A), (0x064B, 0x065F),
    (0x0900, 0x0903), (0x093A, 0x094F), (0x0E31, 0x0E4E), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF),
    (0x200C, 0x200D), (0x20D0, 0x20FF), (0xFE00, 0xFE0F), (0xFE20, 0xFE2F),
    (0x1F1E6, 0x1F1FF), (0x1F3FB, 0x1F3FF), (0xE0000, 0xE01EF), (13, 13),
]  # fmt: skip
# Whole user-perceived characters: reversing their concatenation reverses the list.
CLUSTERS = [
    "a", "Z", " ", ".", "é", "e\u0301", "語", "😀", "👍🏽", "🇫🇷", "🇩🇪", "1\ufe0f\u20e3", "\r\n",
    "👨\u200d👩\u200d👧", "🏳\ufe0f\u200d🌈", "❤\ufe0f", "\n", "क\u093f",
]  # fmt: skip
TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=60)
PLAIN = st.text(
    alphabet=st.characters(
        exclude_categories=["Cs"],
        exclude_characters="".join(chr(c) for a, b in JOINING for c in range(a, b + 1)),
    ),
    max_size=60,
)


@given(TEXT)
def test_reverse_is_a_permutation(board_cpython: dict[str, ModuleType], s: str) -> None:
    out = board_cpython["smstext"].reverse(s)
    assert sorted(out) == sorted(s)
    assert len(out.encode()) == len(s.encode())


@given(PLAIN)
def test_plain_text_reverses_by_code_point(board_cpython: dict[str, ModuleType], s: str) -> None:
    assert board_cpython["smstext"].reverse(s) == s[::-1]


@given(st.lists(st.sampled_from(CLUSTERS), max_size=30))
def test_clusters_stay_whole(board_cpython: dict[str, ModuleType], parts: list[str]) -> None:
    reverse = board_cpython["smstext"].reverse
    s = "".join(parts)
    assert reverse(s) == "".join(reversed(parts))
    assert reverse(reverse(s)) == s
