"""`manifesto copy`: an index and all its children, registry <-> OCI layout, byte for byte.

The source is a five-arch busybox OCI image index (and, for the layout round trip, a Docker
manifest list too) pushed into a real registry. Copies must keep every manifest's exact bytes (so every digest), carry every
blob, mount blobs when both ends are repositories of one registry, and refuse an ambiguous
layout source with one line.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.publish.conftest import (
    DIGEST_LINE,
    AccessLog,
    head_status,
    manifest_raw,
    one_error_line,
    sha256,
    tags_of,
)
from tests.support import ArchImage, Registry, inspect_raw, push_image, skopeo
from tests.support.images import MT_DOCKER_LIST, MT_OCI_INDEX, canonical_json
from tests.support.tools import CliResult


@dataclasses.dataclass(frozen=True)
class SourceIndex:
    registry: Registry
    repo: str
    tag: str
    raw: bytes
    digest: str
    images: tuple[ArchImage, ...]

    @property
    def ref(self) -> str:
        return self.registry.ref(self.repo, self.tag)

    def blobs(self) -> set[str]:
        return {d for img in self.images for d in (img.config_digest, img.layer_digest)}


def push_index(registry: Registry, repo: str, tag: str, images: list[ArchImage], media_type: str) -> SourceIndex:
    """Push each image (under a helper tag), then PUT an index of them by tag, byte-exact."""
    for img in images:
        push_image(img, f"{repo}:child-{img.arch}", registry)
    raw = canonical_json({"schemaVersion": 2, "mediaType": media_type, "manifests": [i.descriptor() for i in images]})
    with registry.client() as c:
        r = c.put(f"/v2/{repo}/manifests/{tag}", content=raw, headers={"Content-Type": media_type})
    assert r.status_code == 201, r.text
    assert r.headers["docker-content-digest"] == sha256(raw)
    return SourceIndex(registry, repo, tag, raw, sha256(raw), tuple(images))


@pytest.fixture(scope="module")
def source(registry: Registry, arch_images: dict[str, ArchImage]) -> SourceIndex:
    """The five busybox images behind one OCI image index in `registry` (src/oci:1.0)."""
    return push_index(registry, "src/oci", "1.0", list(arch_images.values()), MT_OCI_INDEX)


@pytest.fixture(scope="module")
def docker_source(registry: Registry, docker_arch_images: dict[str, ArchImage]) -> SourceIndex:
    """The same as Docker schema 2 images behind a Docker manifest list (src/docker:1.0)."""
    return push_index(registry, "src/docker", "1.0", list(docker_arch_images.values()), MT_DOCKER_LIST)


def assert_same_content(src: SourceIndex, registry: Registry, repo: str, tag: str) -> None:
    """`registry/repo:tag` holds the source index's bytes, every child's bytes, every blob."""
    assert inspect_raw(registry.ref(repo, tag)) == src.raw
    for img in src.images:
        child, _ = manifest_raw(registry, repo, img.manifest_digest)
        assert child == img.manifest_bytes
        for blob in (img.config_digest, img.layer_digest):
            assert head_status(registry, repo, "blobs", blob) == 200, (repo, blob)


def copied_digest(result: CliResult) -> str:
    rc, out, err = result
    assert rc == 0, err[-3000:]
    digest = out.strip().splitlines()[-1]
    assert DIGEST_LINE.match(digest)
    return digest


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_registry_to_layout_to_another_registry_keeps_every_byte(
    fmt: str, request: pytest.FixtureRequest, registry_factory: Callable[..., Registry],
    run_cli: Callable[..., CliResult], tmp_path: Path,
) -> None:
    source: SourceIndex = request.getfixturevalue("source" if fmt == "oci" else "docker_source")
    layout = tmp_path / "layout"
    assert copied_digest(run_cli("copy", source.ref, f"oci:{layout}:1.0")) == source.digest

    # the layout: the index and every manifest and blob are files with their exact bytes
    blobs = layout / "blobs" / "sha256"
    assert (blobs / source.digest.split(":")[1]).read_bytes() == source.raw
    if json.loads(source.raw)["mediaType"] == MT_OCI_INDEX:  # skopeo 1.9's oci: finds OCI types only
        assert skopeo("inspect", "--raw", f"oci:{layout}:1.0").stdout.encode() == source.raw
    entries = json.loads((layout / "index.json").read_text())["manifests"]
    assert [(e["digest"], e["annotations"]["org.opencontainers.image.ref.name"]) for e in entries] == [
        (source.digest, "1.0")
    ]
    for img in source.images:
        assert (blobs / img.manifest_digest.split(":")[1]).read_bytes() == img.manifest_bytes
        assert (blobs / img.config_digest.split(":")[1]).read_bytes() == img.config_bytes
        assert sha256((blobs / img.layer_digest.split(":")[1]).read_bytes()) == img.layer_digest

    other = registry_factory()
    dest = other.ref("dst/hello", "1.0")
    assert copied_digest(run_cli("copy", f"oci:{layout}:1.0", dest)) == source.digest
    assert_same_content(source, other, "dst/hello", "1.0")


def test_registry_to_registry_across_two_instances(
    source: SourceIndex, registry_factory: Callable[..., Registry], run_cli: Callable[..., CliResult]
) -> None:
    other = registry_factory()
    assert copied_digest(run_cli("copy", source.ref, f"docker://{other.ref('mirror/hello', '2.0')}")) == source.digest
    assert_same_content(source, other, "mirror/hello", "2.0")
    assert tags_of(other, "mirror/hello") == ["2.0"]  # children went by digest only


def test_same_registry_cross_repo_copy_mounts_instead_of_uploading(
    source: SourceIndex, run_cli: Callable[..., CliResult], unique_repo: str
) -> None:
    log = AccessLog(source.registry)
    mark = log.mark()
    assert copied_digest(run_cli("copy", source.ref, source.registry.ref(unique_repo, "1.0"))) == source.digest
    requests = log.since(mark)
    mounts = [r for r in requests if r.method == "POST" and "mount=" in r.query]
    assert {r.status for r in mounts} == {201}, mounts
    assert len(mounts) == len(source.blobs())
    assert all(f"from={source.repo.replace('/', '%2F')}" in r.query or f"from={source.repo}" in r.query for r in mounts)
    uploads = [r for r in requests if r.path.startswith(f"/v2/{unique_repo}/blobs/uploads/") and r.method in ("PUT", "PATCH")]
    assert uploads == []
    assert_same_content(source, source.registry, unique_repo, "1.0")


def test_a_layout_with_one_tag_needs_no_tag(
    source: SourceIndex, run_cli: Callable[..., CliResult], tmp_path: Path, unique_repo: str
) -> None:
    layout = tmp_path / "one"
    copied_digest(run_cli("copy", source.ref, f"oci:{layout}:only"))
    assert copied_digest(run_cli("copy", f"oci:{layout}", source.registry.ref(unique_repo, "x"))) == source.digest
    assert inspect_raw(source.registry.ref(unique_repo, "x")) == source.raw


def test_a_layout_with_several_tags_and_no_tag_is_a_one_line_error(
    source: SourceIndex, run_cli: Callable[..., CliResult], tmp_path: Path, unique_repo: str
) -> None:
    layout = tmp_path / "multi"
    for tag in ("a", "b"):
        copied_digest(run_cli("copy", source.ref, f"oci:{layout}:{tag}"))
    log = AccessLog(source.registry)
    mark = log.mark()
    rc, out, err = run_cli("copy", f"oci:{layout}", source.registry.ref(unique_repo, "1"))
    assert rc == 2
    line = one_error_line(err)
    assert "2 tags" in line and "oci:DIR:TAG" in line
    assert out == ""
    assert [r for r in log.since(mark) if r.is_write] == []
    assert tags_of(source.registry, unique_repo) is None
