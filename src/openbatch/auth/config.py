"""The auth file: access keys with their policies, and the credentials of job roles.

```yaml
keys:
  - accessKeyId: AKIA...
    secretAccessKey: ...
    user: alice            # IAM user name in ARNs and AccessDenied messages (optional)
    policy: {Version: "2012-10-17", Statement: [...]}   # omitted: full access
roles:
  - roleArn: arn:aws:iam::123456789012:role/JobRole
    accessKeyId: ASIA...
    secretAccessKey: ...
    policy: {...}          # what requests signed with the role's credentials may do (omitted: full access)
```

YAML or JSON (JSON is YAML). The file is re-read when it changes, so keys can be added
or removed without a restart; a broken edit keeps the last good version in force.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import string
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from openbatch.auth.policy import ALLOW_ALL, Policy, PolicyError, parse_policy

logger = logging.getLogger(__name__)

_KEY_ID = re.compile(r"^[A-Za-z0-9_+=.@-]{4,128}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/(?:[\w+=,.@-]+/)*(?P<name>[\w+=,.@-]{1,64})$")
_USER = re.compile(r"^[\w+=,.@-]{1,64}$")
_RELOAD_INTERVAL_S = 1.0


class AuthFileError(ValueError):
    """The auth file cannot be read or does not follow the documented shape."""


@dataclass(frozen=True, slots=True)
class AccessKey:
    access_key_id: str
    secret_access_key: str
    user: str
    policy: Policy
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    def __repr__(self) -> str:  # never print a secret, even in a traceback
        return f"AccessKey({self.access_key_id!r}, user={self.user!r})"


@dataclass(frozen=True, slots=True)
class RoleCredentials:
    role_arn: str
    access_key_id: str
    secret_access_key: str
    policy: Policy
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def role_name(self) -> str:
        match = _ROLE_ARN.match(self.role_arn)
        return match["name"] if match else self.role_arn.rsplit("/", 1)[-1]

    def __repr__(self) -> str:
        return f"RoleCredentials({self.role_arn!r}, {self.access_key_id!r})"


@dataclass(frozen=True)
class AuthConfig:
    keys: tuple[AccessKey, ...] = ()
    roles: tuple[RoleCredentials, ...] = ()
    _keys_by_id: dict[str, AccessKey] = field(init=False, repr=False, compare=False)
    _roles_by_id: dict[str, RoleCredentials] = field(init=False, repr=False, compare=False)
    _roles_by_arn: dict[str, RoleCredentials] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_keys_by_id", {k.access_key_id: k for k in self.keys})
        object.__setattr__(self, "_roles_by_id", {r.access_key_id: r for r in self.roles})
        object.__setattr__(self, "_roles_by_arn", {r.role_arn: r for r in self.roles})

    def key(self, access_key_id: str) -> AccessKey | None:
        return self._keys_by_id.get(access_key_id)

    def role_by_key(self, access_key_id: str) -> RoleCredentials | None:
        return self._roles_by_id.get(access_key_id)

    def role(self, role_arn: str) -> RoleCredentials | None:
        return self._roles_by_arn.get(role_arn)

    def to_document(self) -> dict[str, Any]:
        return {"keys": [dict(k.raw) for k in self.keys], "roles": [dict(r.raw) for r in self.roles]}


def parse_auth_document(document: Any, source: str = "auth file") -> AuthConfig:
    if document is None:
        return AuthConfig()
    if not isinstance(document, Mapping):
        raise AuthFileError(f"{source}: expected a mapping with 'keys' and 'roles'")
    unknown = set(document) - {"keys", "roles"}
    if unknown:
        raise AuthFileError(f"{source}: unknown member(s) {', '.join(sorted(unknown))}; expected 'keys' and 'roles'")
    keys = tuple(_key(item, f"{source}: keys[{i}]") for i, item in enumerate(_list(document, "keys", source)))
    roles = tuple(_role(item, f"{source}: roles[{i}]") for i, item in enumerate(_list(document, "roles", source)))
    seen: set[str] = set()
    for key_id in [k.access_key_id for k in keys] + [r.access_key_id for r in roles]:
        if key_id in seen:
            raise AuthFileError(f"{source}: access key id {key_id!r} appears more than once")
        seen.add(key_id)
    arns = [r.role_arn for r in roles]
    if len(arns) != len(set(arns)):
        raise AuthFileError(f"{source}: a roleArn appears more than once")
    return AuthConfig(keys, roles)


def _list(document: Mapping[str, Any], name: str, source: str) -> list[Any]:
    value = document.get(name) or []
    if not isinstance(value, list):
        raise AuthFileError(f"{source}: '{name}' must be a list")
    return value


def _credentials(item: Any, where: str, allowed: set[str]) -> tuple[str, str, Policy]:
    if not isinstance(item, Mapping):
        raise AuthFileError(f"{where} must be a mapping")
    unknown = set(item) - allowed
    if unknown:
        raise AuthFileError(f"{where}: unknown member(s) {', '.join(sorted(unknown))}")
    key_id, secret = item.get("accessKeyId"), item.get("secretAccessKey")
    if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
        raise AuthFileError(f"{where}: accessKeyId must be 4-128 characters of letters, digits and _+=.@-")
    if not isinstance(secret, str) or not secret or any(c.isspace() for c in secret):
        raise AuthFileError(f"{where} ({key_id}): secretAccessKey must be a non-empty string without spaces")
    policy = ALLOW_ALL
    if item.get("policy") is not None:
        try:
            policy = parse_policy(item["policy"])
        except PolicyError as exc:
            raise AuthFileError(f"{where} ({key_id}): policy: {exc}") from None
    return key_id, secret, policy


def _key(item: Any, where: str) -> AccessKey:
    key_id, secret, policy = _credentials(item, where, {"accessKeyId", "secretAccessKey", "user", "policy"})
    user = item.get("user") or key_id
    if not isinstance(user, str) or not _USER.match(user):
        raise AuthFileError(f"{where} ({key_id}): user must be an IAM user name (letters, digits, _+=,.@-)")
    return AccessKey(key_id, secret, user, policy, dict(item))


def _role(item: Any, where: str) -> RoleCredentials:
    key_id, secret, policy = _credentials(item, where, {"roleArn", "accessKeyId", "secretAccessKey", "policy"})
    role_arn = item.get("roleArn")
    if not isinstance(role_arn, str) or not _ROLE_ARN.match(role_arn):
        raise AuthFileError(f"{where} ({key_id}): roleArn must look like arn:aws:iam::123456789012:role/Name")
    return RoleCredentials(role_arn, key_id, secret, policy, dict(item))


def read_document(path: Path) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AuthFileError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AuthFileError(f"{path} is neither valid YAML nor JSON: {exc}") from None


def load_auth_file(path: Path) -> AuthConfig:
    return parse_auth_document(read_document(path), str(path))


def write_document(path: Path, document: Mapping[str, Any]) -> None:
    """Replace the file atomically, readable by its owner only (it holds secrets)."""
    if path.suffix.lower() == ".json":
        text = json.dumps(document, indent=2) + "\n"
    else:
        text = yaml.safe_dump(dict(document), sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def new_access_key_id(prefix: str = "AKIA") -> str:
    alphabet = string.ascii_uppercase + "234567"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(16))


def new_secret_access_key() -> str:
    alphabet = string.ascii_letters + string.digits + "+/"
    return "".join(secrets.choice(alphabet) for _ in range(40))


class AuthFile:
    """The auth file as the server sees it: parsed once, re-read when its modification time changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._config = load_auth_file(path)
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def current(self) -> AuthConfig:
        now = time.monotonic()
        if now - self._checked < _RELOAD_INTERVAL_S:
            return self._config
        with self._lock:
            self._checked = now
            stamp = self._stat()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._config = load_auth_file(self.path)
                    logger.info(
                        "auth file %s reloaded: %d key(s), %d role(s)",
                        self.path,
                        len(self._config.keys),
                        len(self._config.roles),
                    )
                except AuthFileError as exc:
                    logger.error("auth file changed but was not reloaded (keeping the previous keys): %s", exc)
        return self._config
