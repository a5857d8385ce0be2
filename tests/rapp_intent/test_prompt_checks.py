"""Prompt validation of the service (pure logic, no model): characters, UTF-8, size."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from rapp_intent.service import InvalidInput, _bad_characters, check_prompt


def test_control_set_is_exactly_category_cc_without_tab_newline_return():
    every = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)
    expected = sorted(
        f"U+{ord(ch):04X}"
        for ch in every
        if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r"
    )
    assert _bad_characters(every) == expected


@pytest.mark.parametrize(
    ("prompt", "needle"),
    [
        ("next line\x85here", "U+0085"),  # C1 control (NEL)
        ("del\x7f", "U+007F"),
        ("csi\x9b[2J", "U+009B"),
        ("lone \ud800 surrogate", "lone surrogate"),
        (b"\xc3\x28", "not valid UTF-8 (byte 0)"),
        ("\u3000\u2003 \n", "empty"),  # only (Unicode) white space
    ],
)
def test_bad_prompts_are_refused_with_the_reason(prompt, needle):
    with pytest.raises(InvalidInput) as err:
        check_prompt(prompt, 4096)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    "prompt",
    [
        "tab\tnew line\ncarriage\r return",
        "zero\u200bwidth and \u200fright-to-left mark",  # format characters (Cf) are text
        "émoji 🎮 and 中文",
        b"bytes \xc3\xa9 decoded",
    ],
)
def test_legitimate_text_is_accepted(prompt):
    out = check_prompt(prompt, 4096)
    assert isinstance(out, str) and out.strip()


def test_size_is_counted_in_utf8_bytes():
    assert check_prompt("é" * 2048, 4096)
    with pytest.raises(InvalidInput, match="4098 bytes; the limit is 4096"):
        check_prompt("é" * 2049, 4096)
