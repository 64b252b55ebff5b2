"""The local image store: Docker's name rules, rootfs import, docker-archive load (whiteouts), removal."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from openbatch.containers.images import ImageError, ImageStore, parse_reference


@pytest.mark.parametrize(
    ("name", "normalised"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("library/busybox:latest", "docker.io/library/busybox:latest"),
        ("docker.io/library/busybox", "docker.io/library/busybox:latest"),
        ("index.docker.io/library/busybox:1.36", "docker.io/library/busybox:1.36"),
        ("org/app:v1", "docker.io/org/app:v1"),
        ("localhost/app", "localhost/app:latest"),
        ("registry.local:5000/team/app:2", "registry.local:5000/team/app:2"),
        (
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:tag",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:tag",
        ),
        ("busybox@sha256:" + "a" * 64, "docker.io/library/busybox@sha256:" + "a" * 64),
    ],
)
def test_names_normalise_as_docker_does(name: str, normalised: str) -> None:
    assert str(parse_reference(name)) == normalised


@pytest.mark.parametrize("name", ["", "Busybox", "bad name", "repo:", "repo@sha256:12", "a//b", "-a"])
def test_malformed_names_are_refused(name: str) -> None:
    with pytest.raises(ImageError):
        parse_reference(name)


def _rootfs(path: Path) -> Path:
    (path / "etc").mkdir(parents=True)
    (path / "etc" / "os-release").write_text("ID=test\n")
    return path


def test_import_resolves_by_name_and_digest_and_removes(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    image = store.import_rootfs(_rootfs(tmp_path / "src"), "busybox")
    assert image.name == "docker.io/library/busybox:latest"
    assert store.resolve("library/busybox") == image
    assert store.resolve(f"busybox@{image.digest}") == image
    assert store.resolve("busybox@sha256:" + "0" * 64) is None
    assert store.resolve("other") is None
    assert (store.rootfs_of(image) / "etc" / "os-release").read_text() == "ID=test\n"
    for mount_point in ("proc", "dev", "tmp"):
        assert (store.rootfs_of(image) / mount_point).is_dir()
    store.remove("busybox")
    assert store.resolve("busybox") is None
    assert not store.rootfs_of(image).exists()
    with pytest.raises(ImageError, match="No such image"):
        store.remove("busybox")


def _tar(members: dict[str, bytes | None]) -> bytes:
    """A tar of files (bytes) and directories (None)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_load_applies_layers_and_whiteouts(tmp_path: Path) -> None:
    lower = _tar({"etc/": None, "etc/keep": b"1", "etc/gone": b"2", "opt/": None, "opt/old": b"3"})
    upper = _tar({"etc/.wh.gone": b"", "opt/": None, "opt/.wh..wh..opq": b"", "opt/new": b"4"})
    archive = {
        "manifest.json": json.dumps(
            [{"Config": "config.json", "RepoTags": ["example.com/app:1"], "Layers": ["l1/layer.tar", "l2/layer.tar"]}]
        ).encode(),
        "config.json": b"{}",
        "l1/": None,
        "l1/layer.tar": lower,
        "l2/": None,
        "l2/layer.tar": upper,
    }
    path = tmp_path / "app.tar"
    path.write_bytes(_tar(archive))
    store = ImageStore(tmp_path / "images")
    [image] = store.load(path)
    assert image.name == "example.com/app:1"
    root = store.rootfs_of(image)
    assert (root / "etc" / "keep").read_text() == "1"
    assert not (root / "etc" / "gone").exists()
    assert not (root / "opt" / "old").exists()
    assert (root / "opt" / "new").read_text() == "4"
    assert not list(root.rglob(".wh.*"))
