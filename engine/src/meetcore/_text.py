"""Text as it may be printed on one line of a terminal or a log, and whether a store
can keep it."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["is_text", "one_line"]

#: The longest word (a path, a URL) an error line shows whole; longer ones are cut.
LONGEST_WORD: Final = 200

_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def is_text(value: str) -> bool:
    """Whether `value` can be stored as text: UTF-8 has no lone surrogates."""
    return _SURROGATE.search(value) is None


def _printable(text: str) -> str:
    """`text` with its control characters escaped (a hostile id must not break lines)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def one_line(text: str, limit: int | None = None) -> str:
    """`text` as one printable line, for a terminal or a log: whitespace runs become a
    space, control characters are escaped, a word longer than LONGEST_WORD is cut in the
    middle, and with `limit` a longer line is cut to `limit` characters, "..." included."""
    words = []
    for word in text.split():
        word = _printable(word)
        if len(word) > LONGEST_WORD:
            word = f"{word[:120]}...({len(word):,} characters)...{word[-40:]}"
        words.append(word)
    line = " ".join(words)
    if limit is not None and len(line) > limit:
        line = f"{line[: max(limit - 3, 0)]}..."
    return line
