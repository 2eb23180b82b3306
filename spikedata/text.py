"""Text that came from file names: shown and stored as valid Unicode, its original bytes kept.

Python decodes a file name that is not valid UTF-8 (a class folder ``caf\\xe9/`` written in Latin-1) with the
`surrogateescape` handler: every undecodable byte becomes a lone surrogate (``'caf\\udce9'``). Such a string cannot
be encoded as UTF-8, so it breaks JSON writers, terminals and matplotlib. `printable` turns it into valid text in
which each undecodable byte is written as the escape ``\\xNN`` (``'caf\\\\xe9'``, 7 characters), and `raw_bytes`
gives the name's original bytes back. A spike store holds only printable text and records the original bytes of
every name it changed (`docs/store.md`, attribute ``raw_names``).
"""

from __future__ import annotations

import re

__all__ = ["has_undecodable", "printable", "raw_bytes"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def has_undecodable(text: str) -> bool:
    """True when `text` holds lone surrogates (undecodable bytes of a file name, or broken text)."""
    return _SURROGATE.search(text) is not None


def raw_bytes(text: str) -> bytes:
    """The bytes a file name decoded with `surrogateescape` came from (UTF-8 for ordinary text)."""
    return text.encode("utf-8", "surrogateescape")


def printable(text: str) -> str:
    """`text` as valid Unicode: every undecodable byte of a file name shown as ``\\xNN``, any other lone surrogate
    as ``\\udNNN``; ordinary text is returned unchanged."""
    if not has_undecodable(text):
        return text
    try:
        return raw_bytes(text).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate surrogateescape did not make (e.g. from JSON "\ud800")
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
