"""`create` with nested indexes (flattened at any depth, or kept with --keep-nested) and
`--attestations keep|strip` on `create` and `copy`, against a real registry."""

from __future__ import annotations

import asyncio
import json

import pytest

from manifesto.errors import ContentError
from manifesto.lists.sources import read_source
from manifesto.oci import mediatype
from manifesto.oci.digest import Digest
from manifesto.oci.reference import Reference
from manifesto.store.protocol import Fetched
from manifesto.store.registry.pool import Registries
from tests.cli.test_index_edit import attestation, image, platform_of
from tests.support.cli import OCI_INDEX, ok, pushed_digest
from tests.support.content import Content


@pytest.fixture
def content(registry, unique_repo):
    c = Content(registry, unique_repo)
    yield c
    c.close()


def nested(c: Content):
    """outer -> middle -> (inner -> amd64, arm64): an image three indexes down."""
    amd, arm = image(c, "amd64"), image(c, "arm64")
    inner = c.index([amd.descriptor(platform=platform_of("amd64"))], tag="inner")
    middle = c.index([inner.descriptor(), arm.descriptor(platform=platform_of("arm64"))], tag="middle")
    outer = c.index([middle.descriptor()], tag="outer")
    return amd, arm, middle, outer


def digests(c: Content, tag: str) -> list[str]:
    return [m["digest"] for m in json.loads(c.get(tag).content)["manifests"]]


def test_create_flattens_indexes_at_any_depth(cli, registry, content):
    amd, arm, _, outer = nested(content)
    target = registry.ref(content.repo, "flat")
    ok(cli("create", target, outer.ref))
    pushed_digest(cli("push", target))
    assert digests(content, "flat") == [amd.digest, arm.digest]


def test_create_keep_nested_keeps_an_index_as_an_entry(cli, registry, content, unique_repo):
    _, _, middle, outer = nested(content)
    target = f"{registry.host}/{unique_repo}-dst:kept"
    ok(cli("create", "--keep-nested", target, outer.ref))
    pushed_digest(cli("push", target))
    dst = Content(registry, unique_repo + "-dst")
    doc = json.loads(dst.get("kept").content)
    assert doc["mediaType"] == OCI_INDEX
    assert [m["digest"] for m in doc["manifests"]] == [middle.digest]
    assert doc["manifests"][0]["mediaType"] == OCI_INDEX
    assert dst.get(middle.digest).status_code == 200  # the nested index went along, children first
    dst.close()


def test_flattening_stops_at_the_depth_limit(registry, content):
    *_, outer = nested(content)

    async def read(depth: int):
        async with Registries() as regs:
            return await read_source(regs, Reference.parse(outer.ref), max_depth=depth)

    with pytest.raises(ContentError, match="nested more than 2 deep"):
        asyncio.run(read(2))
    assert len(asyncio.run(read(3)).entries) == 2


class _Loop:
    """A client serving an index that names itself (a registry that lies about digests)."""

    def __init__(self) -> None:
        self.raw = b'{"schemaVersion":2,"mediaType":"%s","manifests":[{"mediaType":"%s","digest":"%s","size":1}]}'
        self.loop = Digest.of(b"loop")

    async def get_manifest(self, repo: str, reference: str) -> Fetched:
        raw = self.raw % (mediatype.OCI_INDEX.encode(), mediatype.OCI_INDEX.encode(), str(self.loop).encode())
        return Fetched(raw, mediatype.OCI_INDEX, self.loop)

    def client(self, ref: Reference) -> _Loop:
        return self


def test_an_index_naming_itself_is_refused_not_followed() -> None:
    with pytest.raises(ContentError, match="names itself"):
        asyncio.run(read_source(_Loop(), Reference.parse("r.example/loop:1")))  # type: ignore[arg-type]


def test_create_strips_attestations_when_asked_and_says_so(cli, registry, content):
    amd, arm = image(content, "amd64"), image(content, "arm64")
    _, att = attestation(content, amd)
    src = content.index([amd.descriptor(platform=platform_of("amd64")), att, arm.descriptor(platform=platform_of("arm64"))], tag="att")
    kept, stripped = registry.ref(content.repo, "kept"), registry.ref(content.repo, "stripped")
    rc, _, err = cli("create", kept, src.ref)
    assert rc == 0 and "attestation" not in err
    rc, _, err = cli("create", "--attestations", "strip", stripped, src.ref)
    assert rc == 0, err
    assert f"{content.repo}:att: 1 attestation left out (keep with --attestations keep)" in err
    pushed_digest(cli("push", kept))
    pushed_digest(cli("push", stripped))
    assert digests(content, "kept") == [amd.digest, att["digest"], arm.digest]
    assert digests(content, "stripped") == [amd.digest, arm.digest]


def test_copy_strips_attestations_when_asked_keeping_the_rest_of_the_index(cli, registry, content, unique_repo):
    amd, arm = image(content, "amd64"), image(content, "arm64")
    att_manifest, att = attestation(content, amd)
    src = content.index([amd.descriptor(platform=platform_of("amd64")), att, arm.descriptor(platform=platform_of("arm64"))],
                        tag="att", annotations={"org.example": "kept"})
    dst = Content(registry, unique_repo + "-dst")
    rc, out, err = cli("copy", src.ref, f"{registry.host}/{dst.repo}:all")
    assert rc == 0 and "attestation" not in err
    assert dst.get("all").content == src.raw  # keep (the default): the exact bytes
    rc, out, err = cli("copy", "--attestations", "strip", src.ref, f"{registry.host}/{dst.repo}:slim")
    assert rc == 0, err
    assert "1 attestation left out" in err
    doc = json.loads(dst.get("slim").content)
    assert [m["digest"] for m in doc["manifests"]] == [amd.digest, arm.digest]
    assert doc["annotations"] == {"org.example": "kept"}
    assert out.strip().splitlines()[-1] == Digest.of(dst.get("slim").content).__str__()
    dst.close()


@pytest.mark.parametrize("key, kept", [("attestations: keep", True), ("", False)], ids=["keep", "strip-by-default"])
def test_a_matrix_image_entry_keeps_or_strips_attestations(cli, registry, content, unique_repo, tmp_path, key, kept):
    amd, arm = image(content, "amd64"), image(content, "arm64")
    _, att = attestation(content, amd)
    src = content.index([amd.descriptor(platform=platform_of("amd64")), att, arm.descriptor(platform=platform_of("arm64"))], tag="att")
    spec = tmp_path / "platforms.yaml"
    extra = f"\n    {key}" if key else ""
    spec.write_text(
        f"image: {registry.host}/{unique_repo}-dst\ntags: [\"1\"]\nplatforms:\n"
        f"  - image: {src.ref}\n    platform: linux/amd64{extra}\n  - image: {src.ref}\n    platform: linux/arm64/v8\n"
    )
    rc, out, err = cli("publish", "-f", spec)
    assert rc == 0, err
    dst = Content(registry, unique_repo + "-dst")
    want = [amd.digest, att["digest"], arm.digest] if kept else [amd.digest, arm.digest]
    assert digests(dst, "1") == want
    said = f"image: {src.ref}: 1 attestation left out (keep with attestations: keep)"
    assert (said in err) is not kept, err
    dst.close()
