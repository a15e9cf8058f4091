"""Text files read line by line, with a ``file:line`` error for bytes that are not UTF-8.

Python's text mode decodes in blocks, so a bad byte surfaces as a ``UnicodeDecodeError`` that
names neither the file nor the line. These readers decode each line on its own instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from irdistill.errors import InputError

__all__ = ["decode_line", "read_lines", "read_text"]


def _not_utf8(path: object, number: int, raw: bytes, err: UnicodeDecodeError) -> InputError:
    bad = raw[err.start : err.end].hex(" ")
    return InputError(
        f"{path}:{number}: not valid UTF-8 (byte {bad} at column {err.start + 1}); "
        "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
    )


def decode_line(path: object, number: int, raw: bytes) -> str:
    """``raw`` decoded as UTF-8 (a leading byte-order mark on line 1 dropped), or an InputError."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _not_utf8(path, number, raw, err) from None
    return text.removeprefix("\ufeff") if number == 1 else text


def read_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` for every line of ``path`` (1-based, ``\\n`` kept), streamed."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    with p.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            yield number, decode_line(p, number, raw)


def read_text(path: str | os.PathLike[str]) -> str:
    """The whole of a small text file (a recipe), or an InputError naming the bad line."""
    p = Path(path)
    raw = p.read_bytes()
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:  # decode the bad line alone: the error names line and column
        number = raw.count(b"\n", 0, err.start) + 1
        decode_line(p, number, raw.split(b"\n")[number - 1])
        raise  # not reached: that line does not decode either
