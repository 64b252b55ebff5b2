"""The documentation and the command line agree: every command is documented, every command line shown exists.

The site's reference page is rendered from the Typer app (``openbatch.cli.reference``); these
tests hold the hand-written pages to the same app, so a renamed option or a new command
without a word in the guide fails here rather than in a reader's terminal.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml

from openbatch.cli.main import app
from openbatch.cli.reference import command_tree, render
from openbatch.cli.resources_cmd import load_documents
from openbatch.workflows.spec import validate

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
COMMANDS = dict(command_tree(app))


def _pages() -> dict[Path, str]:
    return {page: page.read_text() for page in sorted(DOCS.rglob("*.md"))}


def _options(cmd: Any) -> set[str]:
    return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")} | {"--help"}


def _command_lines(text: str) -> list[str]:
    """Every ``openbatch …`` invocation in the pages' shell blocks, continuation lines joined."""
    lines: list[str] = []
    for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"\s#.*$", "", line)
            for segment in re.split(r"\s*(?:&&|\|\||;|\|)\s*", line):
                words = segment.split()
                while words and ("=" in words[0] or words[0].startswith("$(")):
                    words = words[1:]  # VAR=value prefixes
                if words and words[0].rsplit("/", 1)[-1] == "openbatch":
                    lines.append(" ".join(["openbatch", *words[1:]]))
    return lines


def _resolve(words: list[str]) -> tuple[str, list[str]]:
    """The longest command path that ``words`` start with, and the words after it."""
    path, rest = "openbatch", words[1:]
    while rest and f"{path} {rest[0]}" in COMMANDS:
        path, rest = f"{path} {rest[0]}", rest[1:]
    return path, rest


def test_every_command_is_described_in_the_guide_pages() -> None:
    written = "\n".join(text for page, text in _pages().items() if page.name != "cli-reference.md")
    missing = [
        path
        for path, cmd in COMMANDS.items()
        if path != "openbatch" and not getattr(cmd, "commands", None) and path not in written
    ]
    assert not missing, f"commands no page mentions: {missing}"


def test_the_reference_renders_every_command_and_option() -> None:
    reference = render(app)
    for path, cmd in COMMANDS.items():
        assert f"`{path}`" in reference, path
        for option in _options(cmd) - {"--help"}:
            assert f"`{option}`" in reference, (path, option)
    assert "<!-- cli-reference -->" in (DOCS / "cli-reference.md").read_text()


def test_every_command_line_in_the_docs_exists() -> None:
    problems: list[str] = []
    checked = 0
    for page, text in _pages().items():
        for line in _command_lines(text):
            try:
                words = shlex.split(line)
            except ValueError:
                words = line.split()
            path, rest = _resolve(words)
            cmd = COMMANDS[path]
            if getattr(cmd, "commands", None) and rest and not rest[0].startswith("-"):
                problems.append(f"{page.name}: {line!r}: no command {path} {rest[0]}")
                continue
            known = _options(cmd)
            for word in rest:
                if word == "--":
                    break
                option = word.split("=", 1)[0]
                if option.startswith("-") and not re.fullmatch(r"-\d.*", option) and option not in known:
                    problems.append(f"{page.name}: {line!r}: {path} has no option {option}")
            checked += 1
    assert not problems, "\n".join(problems)
    assert checked > 50  # the pages do show commands; the parsing found them


def test_every_resource_file_and_workflow_in_the_docs_is_valid(tmp_path: Path) -> None:
    """YAML examples with ``kind:`` pass apply's checks (AWS's request model, the workflow rules);
    workflow files (``name`` and ``steps``) pass the workflow validation."""
    # Only the service model is used; nothing is sent.
    batch: Any = botocore.session.Session().create_client(
        "batch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    resource_files = workflows = 0
    for page, text in _pages().items():
        for number, block in enumerate(re.findall(r"```yaml\n(.*?)```", text, re.S)):
            documents = [d for d in yaml.safe_load_all(block) if d is not None]
            if all(isinstance(d, dict) and "kind" in d for d in documents):
                path = tmp_path / f"{page.stem}-{number}.yaml"
                path.write_text(block)
                load_documents(path, batch)  # raises, with every problem, when a document is invalid
                resource_files += 1
            elif len(documents) == 1 and {"name", "steps"} <= set(documents[0]):
                validate(documents[0])
                workflows += 1
    assert resource_files >= 2 and workflows >= 1


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("openbatch get queues -o wide  # all of them\n", ["openbatch get queues -o wide"]),
        ("X=1 .venv/bin/openbatch ls | head\n", ["openbatch ls"]),
        ("openbatch submit -q q \\\n  --wait -- echo hi\n", ["openbatch submit -q q --wait -- echo hi"]),
    ],
)
def test_command_lines_are_found_in_shell_blocks(block: str, expected: list[str]) -> None:
    assert _command_lines(f"```bash\n{block}```") == expected
