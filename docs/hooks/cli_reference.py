"""MkDocs hook: fills the CLI reference page from the `openbatch` Typer app (every command, argument and option)."""

from __future__ import annotations

from typing import Any

MARKER = "<!-- cli-reference -->"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in markdown:
        return markdown
    from openbatch.cli.main import app
    from openbatch.cli.reference import render

    return markdown.replace(MARKER, render(app))
