"""Scan names shown safely: one line per record in a table, no formulas in a CSV cell, widths as displayed.

File names are untrusted text: they may hold newlines, carriage returns, ANSI escape sequences, bidirectional
controls, bytes that are not UTF-8, wide (CJK) characters, or start with a character a spreadsheet reads
as a formula. JSON and JSONL keep names exact (JSON escapes them); the table and CSV use these rules.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
"""A CSV cell starting with one of these is read as a formula by spreadsheets (OWASP "CSV injection")."""
INVISIBLE_CATEGORIES = ("Cc", "Cf", "Cs", "Zl", "Zp")
"""Control, format (bidirectional overrides...), surrogate, line and paragraph separator characters."""


def not_utf8(path: str | Path) -> bool:
    """True when the file name's bytes are not valid UTF-8 (Python holds them as lone surrogates)."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def printable(text: str) -> str:
    """`text` with every invisible or control character written as a visible escape (\\n, \\x1b, \\u202e)."""
    if text.isprintable():
        return text
    shown = []
    for character in text:
        if unicodedata.category(character) not in INVISIBLE_CATEGORIES:
            shown.append(character)
        elif ord(character) < 0x100:
            shown.append(repr(character)[1:-1] if character in "\n\r\t" else f"\\x{ord(character):02x}")
        else:
            shown.append(f"\\u{ord(character):04x}")
    return "".join(shown)


def display_width(text: str) -> int:
    """Terminal columns `text` takes: wide and full-width characters count two, combining marks none."""
    width = 0
    for character in text:
        if unicodedata.combining(character):
            continue
        width += 2 if unicodedata.east_asian_width(character) in ("W", "F") else 1
    return width


def pad(text: str, width: int) -> str:
    """`text` padded with spaces to `width` display columns."""
    return text + " " * max(0, width - display_width(text))


def csv_cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: visible escapes, a leading ' before a formula start."""
    text = str(value)
    if text.startswith(FORMULA_STARTS):
        text = "'" + text
    return printable(text)
