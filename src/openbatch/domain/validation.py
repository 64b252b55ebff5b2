"""Input rules shared by several operations (names, tags, ranges)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from openbatch.domain.errors import ValidationError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
MAX_TAGS = 50
_NOT_TEXT = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Characters outside XML 1.0's ``Char`` production, the text AWS's services accept: C0 control
characters other than tab, newline and carriage return (NUL included: commands and environment
become C strings, and PostgreSQL text cannot hold it), U+FFFE/U+FFFF, and lone UTF-16 surrogates
(JSON's ``"\\ud800"`` decodes to one; it is not a Unicode character and cannot be encoded to UTF-8)."""


def check_text(member: str, value: str) -> str:
    """Every string a request carries: Unicode text without control characters (tab and newlines aside)."""
    bad = _NOT_TEXT.search(value)
    if bad is not None:
        code = ord(bad.group())
        if 0xD800 <= code <= 0xDFFF:
            kind = "a lone UTF-16 surrogate"
        else:
            kind = "a NUL character" if code == 0 else "a control character"
        raise ValidationError(f"{member} contains {kind} (U+{code:04X}) at position {bad.start()}")
    return value


def check_name(kind: str, value: str) -> str:
    """Names are up to 128 letters, digits, hyphens and underscores, starting alphanumeric."""
    if not _NAME.fullmatch(value):
        raise ValidationError(
            f"{kind} name {value!r} is invalid: use up to 128 letters (uppercase and lowercase), "
            "numbers, hyphens and underscores, starting with a letter or number"
        )
    return value


def check_tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    if not tags:
        return {}
    if len(tags) > MAX_TAGS:
        raise ValidationError(f"A resource can have at most {MAX_TAGS} tags; {len(tags)} were given")
    for key, value in tags.items():
        if not 1 <= len(key) <= 128:
            raise ValidationError(f"Tag key {key!r} must be 1 to 128 characters long")
        if key.lower().startswith("aws:"):
            raise ValidationError(f"Tag key {key!r} uses the reserved prefix 'aws:'")
        if len(value) > 256:
            raise ValidationError(f"Tag value for key {key!r} must be at most 256 characters long")
    return dict(tags)


def check_range(member: str, value: int | float | None, low: float, high: float) -> None:
    if value is not None and not low <= value <= high:
        raise ValidationError(f"{member} must be between {low:g} and {high:g}; got {value}")
