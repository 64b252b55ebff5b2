"""The command-line reference as Markdown, rendered from the Typer app itself (the docs site's CLI page).

Rendering from the app keeps the reference in step with the code: every command, argument
and option, with its help, environment variable and default, exactly as ``--help`` knows them.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer


def command_tree(app: typer.Typer, root: str = "openbatch") -> Iterator[tuple[str, Any]]:
    """``(path, command)`` for the root and every command under it, depth first, hidden ones left out."""

    def walk(path: str, cmd: Any) -> Iterator[tuple[str, Any]]:
        yield path, cmd
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            if not getattr(sub, "hidden", False):
                yield from walk(f"{path} {name}", sub)

    yield from walk(root, typer.main.get_command(app))


def _cell(text: str) -> str:
    return html.escape(" ".join(text.split()), quote=False).replace("|", "\\|")


def _default(param: Any) -> str:
    if getattr(param, "show_default", None) is False or param.default is None or param.default is False:
        return ""
    if isinstance(param.default, list | tuple) and not param.default:
        return ""
    value = str(param.default)
    # Defaults under the home directory of whoever built the docs: show them as ~.
    home = str(Path.home())
    if value.startswith(home + "/"):
        value = "~" + value[len(home) :]
    return f"`{value}`"


def _metavar(argument: Any) -> str:
    return str(argument.metavar or str(argument.name).upper())


def _usage(path: str, cmd: Any, arguments: list[Any]) -> str:
    """The usage line as --help prints it: options, then each argument (optional ones in brackets)."""
    words = [path, "[OPTIONS]"]
    for argument in arguments:
        word = _metavar(argument)
        if argument.nargs == -1 and "..." not in word:
            word += "..."
        words.append(word if argument.required or word.startswith("[") else f"[{word}]")
    if getattr(cmd, "commands", None):
        words += ["COMMAND", "[ARGS]..."]
    return " ".join(words)


def render(app: typer.Typer, root: str = "openbatch") -> str:
    """Markdown: a section per command with its usage, description, arguments and options."""
    sections: list[str] = []
    for path, cmd in command_tree(app, root):
        level = "#" * min(2 + path.count(" "), 4)
        lines = [f"{level} `{path}`", ""]
        if cmd.help:
            lines += [cmd.help.strip(), ""]
        arguments = [p for p in cmd.params if p.param_type_name == "argument"]
        lines += ["```text", _usage(path, cmd, arguments), "```", ""]
        options = [p for p in cmd.params if p.param_type_name == "option" and not getattr(p, "hidden", False)]
        if arguments:
            lines += ["| Argument | Description |", "| --- | --- |"]
            for p in arguments:
                name = _metavar(p)
                required = "" if p.required else " (optional)"
                lines.append(f"| `{name}` | {_cell(getattr(p, 'help', None) or '')}{required} |")
            lines.append("")
        if options:
            lines += ["| Option | Description | Default |", "| --- | --- | --- |"]
            for p in options:
                names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
                envvar = p.envvar if isinstance(p.envvar, str) else ", ".join(p.envvar or [])
                described = _cell(p.help or "") + (" (required)" if p.required else "")
                described += f" Environment: `{envvar}`." if envvar else ""
                lines.append(f"| {names} | {described} | {_default(p)} |")
            lines.append("")
        if cmd.epilog:
            lines += [_cell(cmd.epilog) if "\n" not in cmd.epilog else "```text\n" + cmd.epilog.strip() + "\n```", ""]
        sections.append("\n".join(lines))
    return "\n".join(sections)
