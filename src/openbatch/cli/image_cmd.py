"""``openbatch image import|load|ls|rm``: the local image store that container runtimes run jobs from."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from openbatch.containers.images import ImageError, ImageStore

app = typer.Typer(help="Images for containerised jobs (--container-runtime bwrap|podman).", no_args_is_help=True)

_DATA_DIR = typer.Option(
    Path(os.environ.get("OPENBATCH_DATA_DIR", Path.home() / ".openbatch")),
    help="The server's data dir (images live under <data dir>/images).",
)


def _store(data_dir: Path) -> ImageStore:
    # Imported here: the wiring pulls in the scheduler, which no other command needs at start-up.
    from openbatch.containers.wiring import images_of

    return images_of(data_dir)


def _fail(exc: ImageError) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(1)


@app.command("import")
def import_(
    source: Path = typer.Argument(..., help="A root filesystem: a directory or a tarball of one."),
    name: str = typer.Argument(
        ..., help="Image name, e.g. busybox or 123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1"
    ),
    data_dir: Path = _DATA_DIR,
) -> None:
    """Bring in a root filesystem as image NAME."""
    try:
        image = _store(data_dir).import_rootfs(source, name)
    except ImageError as exc:
        _fail(exc)
        return
    typer.echo(f"{image.name} {image.digest}")


@app.command("load")
def load(
    archive: Path = typer.Argument(..., help="A docker save / podman save (docker-archive) tarball."),
    name: list[str] = typer.Option([], "--name", help="Name(s) for the image instead of the archive's tags."),
    data_dir: Path = _DATA_DIR,
) -> None:
    """Bring in the images of a saved image archive."""
    try:
        images = _store(data_dir).load(archive, name or None)
    except ImageError as exc:
        _fail(exc)
        return
    for image in images:
        typer.echo(f"{image.name} {image.digest}")


@app.command("ls")
def ls(
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
    data_dir: Path = _DATA_DIR,
) -> None:
    """List the images."""
    images = sorted(_store(data_dir).images().values(), key=lambda i: i.name)
    if as_json:
        typer.echo(json.dumps([i.to_json() for i in images], indent=2))
        return
    for image in images:
        typer.echo(f"{image.name}\t{image.digest[:19]}\t{image.size // 1024} KiB")


@app.command("rm")
def rm(
    name: str = typer.Argument(..., help="Image name (as given to import or load)."), data_dir: Path = _DATA_DIR
) -> None:
    """Remove an image."""
    try:
        image = _store(data_dir).remove(name)
    except ImageError as exc:
        _fail(exc)
        return
    typer.echo(f"Untagged: {image.name}")
