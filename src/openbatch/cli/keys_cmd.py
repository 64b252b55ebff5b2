"""``openbatch keys create|ls|rm``: manage the access keys and job role credentials in an auth file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from openbatch.auth.config import (
    AuthFileError,
    new_access_key_id,
    new_secret_access_key,
    parse_auth_document,
    read_document,
    write_document,
)
from openbatch.auth.policy import ALLOW_ALL

app = typer.Typer(help="Manage access keys and job role credentials in an auth file.", no_args_is_help=True)

AUTH_FILE = typer.Option(..., "--auth-file", envvar="OPENBATCH_AUTH_FILE", help="The server's --auth-file.")


def _load(path: Path) -> dict[str, Any]:
    try:
        document = read_document(path)
        parse_auth_document(document, str(path))
    except AuthFileError as exc:
        raise typer.BadParameter(str(exc), param_hint="--auth-file") from None
    if document is None:
        return {"keys": [], "roles": []}
    return {"keys": list(document.get("keys") or []), "roles": list(document.get("roles") or [])}


def _policy(value: str | None) -> Any:
    """A policy given as JSON text or as @path to a JSON/YAML file."""
    if value is None:
        return None
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        return json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint="--policy") from None


@app.command("create")
def create(
    auth_file: Path = AUTH_FILE,
    user: str | None = typer.Option(None, help="IAM user name shown in ARNs and AccessDenied messages."),
    policy: str | None = typer.Option(None, help="IAM policy as JSON, or @FILE. Without one the key has full access."),
    role_arn: str | None = typer.Option(
        None, help="Create credentials for this job role (a job definition's jobRoleArn) instead of a user key."
    ),
) -> None:
    """Add a key and print its secret (shown this once only)."""
    document = _load(auth_file)
    key_id = new_access_key_id("AROA" if role_arn else "AKIA")
    entry: dict[str, Any] = {"accessKeyId": key_id, "secretAccessKey": new_secret_access_key()}
    if role_arn:
        entry = {"roleArn": role_arn, **entry}
    elif user:
        entry["user"] = user
    parsed_policy = _policy(policy)
    if parsed_policy is not None:
        entry["policy"] = parsed_policy
    document["roles" if role_arn else "keys"].append(entry)
    try:
        parse_auth_document(document, str(auth_file))
    except AuthFileError as exc:
        raise typer.BadParameter(str(exc)) from None
    write_document(auth_file, document)
    typer.echo(f"AWS_ACCESS_KEY_ID={key_id}")
    typer.echo(f"AWS_SECRET_ACCESS_KEY={entry['secretAccessKey']}")
    typer.echo("The secret is shown only now; it is stored in the auth file.", err=True)


@app.command("ls")
def list_keys(auth_file: Path = AUTH_FILE) -> None:
    """List the keys and roles (never their secrets)."""
    document = _load(auth_file)
    config = parse_auth_document(document, str(auth_file))
    for key in config.keys:
        scope = "full access" if key.policy is ALLOW_ALL else f"policy with {len(key.policy.statements)} statement(s)"
        typer.echo(f"{key.access_key_id}\tuser/{key.user}\t{scope}")
    for role in config.roles:
        scope = "full access" if role.policy is ALLOW_ALL else f"policy with {len(role.policy.statements)} statement(s)"
        typer.echo(f"{role.access_key_id}\t{role.role_arn}\t{scope}")


@app.command("rm")
def remove(access_key_id: str = typer.Argument(..., help="The key to remove."), auth_file: Path = AUTH_FILE) -> None:
    """Remove a key (a running server stops accepting it within a second or two)."""
    document = _load(auth_file)
    kept = {kind: [e for e in document[kind] if e.get("accessKeyId") != access_key_id] for kind in ("keys", "roles")}
    if sum(map(len, kept.values())) == sum(map(len, (document["keys"], document["roles"]))):
        typer.echo(f"No key {access_key_id} in {auth_file}", err=True)
        raise typer.Exit(1)
    write_document(auth_file, kept)
    typer.echo(f"Removed {access_key_id}")
