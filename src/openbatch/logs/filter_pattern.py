"""CloudWatch Logs filter patterns for unstructured log events.

The grammar CloudWatch documents for matching terms in plain text:

- ``ERROR`` — events containing the term (case sensitive);
- ``ERROR Exception`` — every term must occur (AND);
- ``"Out of memory"`` — a quoted phrase, matched as is (``\\"`` for a quote);
- ``ERROR -Exiting`` / ``-"phrase"`` — events containing the others but not this;
- ``?ERROR ?WARN`` — at least one of the ``?`` terms (OR);
- ``%regex%`` — a regular expression;
- an empty pattern matches every event.

JSON (``{ $.x = ... }``) and space-delimited (``[a, b]``) patterns are for
structured logs and are refused with a clear message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_PATTERN = 1024


class FilterPatternError(ValueError):
    """An invalid filter pattern (CloudWatch's InvalidParameterException)."""


@dataclass(frozen=True, slots=True)
class FilterPattern:
    required: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = field(default=None)

    @classmethod
    def parse(cls, text: str) -> FilterPattern:
        if len(text) > MAX_PATTERN:
            raise FilterPatternError(f"filterPattern must be at most {MAX_PATTERN} characters")
        stripped = text.strip()
        if stripped.startswith("{") or stripped.startswith("["):
            raise FilterPatternError(
                "Only filter patterns for unstructured logs (terms, quoted phrases, -exclusions, ?alternatives, "
                "%regex%) are supported"
            )
        if len(stripped) >= 2 and stripped.startswith("%") and stripped.endswith("%"):
            try:
                return cls(regex=re.compile(stripped[1:-1]))
            except re.error as exc:
                raise FilterPatternError(f"Invalid regular expression in filterPattern: {exc}") from None
        required: list[str] = []
        excluded: list[str] = []
        any_of: list[str] = []
        for sign, term in _tokens(stripped):
            {"-": excluded, "?": any_of}.get(sign, required).append(term)
        return cls(tuple(required), tuple(excluded), tuple(any_of))

    def matches(self, message: str) -> bool:
        if self.regex is not None:
            return self.regex.search(message) is not None
        for term in self.required:
            if term not in message:
                return False
        for term in self.excluded:
            if term in message:
                return False
        if self.any_of:
            return any(term in message for term in self.any_of)
        return True


def _tokens(text: str) -> list[tuple[str, str]]:
    """``(sign, term)`` pairs where sign is ``""``, ``"-"`` or ``"?"``."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        sign = ""
        if text[i] in "-?" and i + 1 < n and not text[i + 1].isspace():
            sign = text[i]
            i += 1
        if text[i] == '"':
            i += 1
            chars: list[str] = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(text[i])
                i += 1
            if i >= n:
                raise FilterPatternError("Unterminated quoted phrase in filterPattern")
            i += 1
            term = "".join(chars)
        else:
            start = i
            while i < n and not text[i].isspace():
                i += 1
            term = text[start:i]
        if term:
            out.append((sign, term))
    return out
