"""The local image store: root filesystem directories under ``<data dir>/images``, found by Docker-style names.

Names resolve as Docker's do (``busybox`` → ``docker.io/library/busybox:latest``; a first component with a dot,
a colon or ``localhost`` is a registry, so ECR names such as ``123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:tag``
stay as they are; ``name@sha256:…`` picks the image of that name with that digest). Images come in with
``openbatch image import`` (a root filesystem directory or tarball) or ``openbatch image load`` (a ``docker save`` /
``podman save`` archive). Both runtimes run these directories (podman with ``--rootfs``), so there is one store.
No registry is contacted: an image that is not here fails its attempt with ``CannotPullContainerError``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DOMAIN = "docker.io"
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,}")
_DOMAIN = re.compile(r"(?:[a-zA-Z0-9-]+)(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?")
_INDEX = "index.json"


class ImageError(ValueError):
    """A bad image name, or an image the store cannot take."""


@dataclass(frozen=True, slots=True)
class Reference:
    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def repository(self) -> str:
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        text = self.repository
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def parse_reference(name: str) -> Reference:
    """Docker's normalised form of an image name; raises ImageError for a name Docker would refuse."""
    text = name.strip()
    if not text or len(text) > 255 + 128 + 80:
        raise ImageError(f"invalid reference format: {name!r}")
    digest: str | None = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise ImageError(f"invalid reference format: bad digest in {name!r}")
    tag: str | None = None
    last_slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > last_slash:
        text, tag = text[:colon], text[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise ImageError(f"invalid reference format: bad tag in {name!r}")
    first, _, rest = text.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        if not _DOMAIN.fullmatch(first):
            raise ImageError(f"invalid reference format: bad registry in {name!r}")
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, text
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    if not all(_COMPONENT.fullmatch(part) for part in path.split("/")):
        raise ImageError(
            f"invalid reference format: repository name must be lowercase letters, digits and separators: {name!r}"
        )
    if tag is None and digest is None:
        tag = "latest"
    return Reference(domain, path, tag, digest)


@dataclass(frozen=True, slots=True)
class Image:
    name: str
    """Normalised reference (with tag)."""
    id: str
    digest: str
    created_at: int
    size: int

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "id": self.id,
            "digest": self.digest,
            "createdAt": self.created_at,
            "size": self.size,
        }


class ImageStore:
    """``<root>/index.json`` (name → image) and ``<root>/rootfs/<id>/`` per image."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: tuple[float, dict[str, Image]] | None = None

    # --- reading (the server resolves a name per attempt: one stat while nothing changed) --------

    def images(self) -> dict[str, Image]:
        path = self.root / _INDEX
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return {}
        if self._cache is not None and self._cache[0] == mtime:
            return self._cache[1]
        data = json.loads(path.read_text())
        images = {
            name: Image(
                name=name,
                id=entry["id"],
                digest=entry["digest"],
                created_at=int(entry["createdAt"]),
                size=int(entry["size"]),
            )
            for name, entry in data.items()
        }
        self._cache = (mtime, images)
        return images

    def rootfs_of(self, image: Image) -> Path:
        return self.root / "rootfs" / image.id

    def resolve(self, name: str) -> Image | None:
        """The stored image ``name`` stands for, or None. Raises ImageError for a malformed name."""
        ref = parse_reference(name)
        images = self.images()
        if ref.digest is None:
            return images.get(str(ref))
        candidates = [i for i in images.values() if i.digest == ref.digest or i.id == ref.digest.split(":", 1)[1]]
        named = [i for i in candidates if parse_reference(i.name).repository == ref.repository]
        if ref.tag is not None:
            named = [i for i in named if i.name == f"{ref.repository}:{ref.tag}"]
        return named[0] if named else None

    # --- writing (the CLI) --------------------------------------------------------------

    def import_rootfs(self, source: Path, name: str) -> Image:
        """Bring in a root filesystem: a directory (copied) or a tarball of one (unpacked)."""
        ref = parse_reference(name)
        if ref.digest is not None:
            raise ImageError("import names an image by repository and tag, not by digest")
        if not source.exists():
            raise ImageError(f"{source}: no such file or directory")
        staging = self._staging()
        try:
            if source.is_dir():
                digest = _tree_digest(source)
                _copy_tree(source, staging)
            else:
                digest = _file_digest(source)
                _untar(source, staging)
            return self._commit(staging, digest, [str(ref)])
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def load(self, archive: Path, names: list[str] | None = None) -> list[Image]:
        """Bring in the images of a ``docker save``/``podman save`` archive (its layers applied in order)."""
        if not archive.is_file():
            raise ImageError(f"{archive}: no such file")
        loaded: list[Image] = []
        with tempfile.TemporaryDirectory(dir=self._ensure_root()) as unpacked:
            work = Path(unpacked)
            _untar(archive, work)
            try:
                manifest = json.loads((work / "manifest.json").read_text())
            except (OSError, ValueError) as exc:
                raise ImageError(f"{archive} is not a docker-archive (no readable manifest.json)") from exc
            for entry in manifest:
                tags = list(names or entry.get("RepoTags") or [])
                if not tags:
                    raise ImageError(f"{archive}: an image has no name; give one with --name")
                refs = [str(parse_reference(tag)) for tag in tags]
                staging = self._staging()
                try:
                    for layer in entry["Layers"]:
                        _apply_layer(work / layer, staging)
                    digest = "sha256:" + hashlib.sha256((work / entry["Config"]).read_bytes()).hexdigest()
                    loaded.append(self._commit(staging, digest, refs))
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
        return loaded

    def remove(self, name: str) -> Image:
        image = self.resolve(name)
        if image is None:
            raise ImageError(f"No such image: {name}")
        index = {n: i for n, i in self.images().items() if n != image.name}
        self._write_index(index)
        if not any(i.id == image.id for i in index.values()):
            shutil.rmtree(self.rootfs_of(image), ignore_errors=True)
        return image

    def _ensure_root(self) -> Path:
        (self.root / "rootfs").mkdir(parents=True, exist_ok=True)
        return self.root

    def _staging(self) -> Path:
        return Path(tempfile.mkdtemp(prefix=".staging-", dir=self._ensure_root() / "rootfs"))

    def _commit(self, staging: Path, digest: str, names: list[str]) -> Image:
        image_id = digest.split(":", 1)[1][:64]
        target = self.root / "rootfs" / image_id
        # Mount points the runtimes bind over, so a read-only root needs nothing created at start.
        for mount_point in ("proc", "dev", "sys", "tmp", "etc"):
            (staging / mount_point).mkdir(exist_ok=True)
        (staging / "tmp").chmod(0o1777)
        # Jobs may run as an unprivileged user of the host: the image must be readable to it.
        staging.chmod(0o755)
        if target.exists():
            shutil.rmtree(staging)
        else:
            staging.rename(target)
        size = sum(entry.stat(follow_symlinks=False).st_size for entry in _walk(target))
        now = int(time.time() * 1000)
        index = dict(self.images())
        made = [Image(name=n, id=image_id, digest=digest, created_at=now, size=size) for n in names]
        index.update({i.name: i for i in made})
        self._write_index(index)
        return made[0]

    def _write_index(self, index: dict[str, Image]) -> None:
        path = self._ensure_root() / _INDEX
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({n: i.to_json() for n, i in sorted(index.items())}, indent=1))
        os.replace(temporary, path)
        self._cache = None


def _walk(root: Path) -> Iterator[os.DirEntry[str]]:
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                yield entry
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)


def _tree_digest(root: Path) -> str:
    """A digest of a directory's names, modes, sizes and link targets (contents of regular files too)."""
    digest = hashlib.sha256()
    for entry in sorted(_walk(root), key=lambda e: e.path):
        stat = entry.stat(follow_symlinks=False)
        digest.update(f"{os.path.relpath(entry.path, root)}\0{stat.st_mode}\0{stat.st_size}\0".encode())
        if entry.is_symlink():
            digest.update(os.readlink(entry.path).encode())
        elif entry.is_file(follow_symlinks=False):
            with open(entry.path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _copy_tree(source: Path, target: Path) -> None:
    # cp keeps owners, modes, links and device nodes, as an image needs.
    _run(["cp", "-a", "--", f"{source}/.", str(target)])


def _untar(archive: Path, target: Path) -> None:
    # GNU tar, not tarfile: it defers links that point outside the target until everything else is written,
    # so a crafted archive cannot write through a symlink to the host.
    _run(["tar", "-x", "--numeric-owner", "-f", str(archive), "-C", str(target)])


def _apply_layer(layer: Path, target: Path) -> None:
    """Apply one image layer: its whiteouts delete from the layers below, then its files are written."""
    with tarfile.open(layer) as tar:
        names = tar.getnames()
    for name in names:
        parent, _, base = name.rstrip("/").rpartition("/")
        if base == ".wh..wh..opq":
            directory = target / parent
            if directory.is_dir() and not directory.is_symlink():
                for child in directory.iterdir():
                    _remove(child)
        elif base.startswith(".wh."):
            _remove(target / parent / base[len(".wh.") :])
    _run(["tar", "-x", "--numeric-owner", "--exclude=.wh.*", "-f", str(layer), "-C", str(target)])


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ImageError(f"{argv[0]} failed: {result.stderr.strip() or result.returncode}")
