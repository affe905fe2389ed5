"""`assemble` and `verify -f` read a matrix's `image:` entries as publish does, and say so when
they leave attestations out (`attestations: strip`, the default), as publish says it.

The `image:` entry is a real list in a real registry: amd64 and arm64/v8 busybox, and a
buildkit-style attestation of the arm64 image.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import manifesto
from tests.publish.conftest import State
from tests.support import ArchImage, Registry
from tests.support.content import OCI_INDEX, Content


@pytest.fixture(scope="module")
def source(registry: Registry, arch_images: dict[str, ArchImage]) -> str:
    """`notice/source:1`: amd64 and arm64/v8, the arm64 image attested."""
    with Content(registry, "notice/source") as content:
        entries = [content.arch_image(arch_images[a]) for a in ("amd64", "arm64")]
        entries.append(content.attestation(arch_images["arm64"].manifest_digest))
        return content.index(entries, tag="1", media_type=OCI_INDEX).ref


def _left_out(source: str) -> str:
    return f"image: {source}: 1 attestation left out (keep with attestations: keep)"


def test_assemble_says_what_it_left_out_of_an_image_entry(
    tmp_path: Path, registry: Registry, arch_images: dict[str, ArchImage], source: str
) -> None:
    amd64 = arch_images["amd64"]
    with Content(registry, "notice/target") as content:  # what a runner pushed by digest
        content.arch_image(amd64)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    spec = tmp_path / "platforms.yaml"
    spec.write_text(
        f'image: {registry.host}/notice/target\ntags: ["1"]\n'
        f"platforms:\n  - linux/amd64\n  - image: {source}\n    platform: linux/arm64/v8\n"
    )
    digests = tmp_path / "amd64.json"
    record = {"platform": "linux/amd64", "digest": amd64.manifest_digest, "size": len(amd64.manifest_bytes), "mediaType": amd64.manifest_media_type}
    digests.write_text(json.dumps({"platforms": [record]}))

    rc, out, err = State.make(tmp_path / "state").run("assemble", "-f", spec, digests, cwd=tmp_path)
    assert rc == 0, err
    assert _left_out(source) in err.splitlines(), err

    notes: list[str] = []
    result = manifesto.assemble(manifesto.plan(spec), [digests], on_notice=notes.append)
    assert result.index is not None and notes == [_left_out(source)]


def test_verify_with_a_matrix_says_what_it_left_out_of_an_image_entry(tmp_path: Path, source: str) -> None:
    spec = tmp_path / "platforms.yaml"
    spec.write_text(f'image: {source.rsplit(":", 1)[0]}\ntags: ["1"]\nplatforms:\n  - image: {source}\n')
    state = State.make(tmp_path / "state")
    rc, out, err = state.run("verify", source, "-f", spec)
    assert rc == 0, out + err
    assert _left_out(source) in err.splitlines(), err
    rc, out, err = state.run("verify", "-q", source, "-f", spec)
    assert rc == 0 and "left out" not in err, out + err
