"""The one push path at library level, into an in-memory store: verify from the target, refuse
through the surface's own words, and move the index's tags only when every child is sound."""

from __future__ import annotations

import asyncio
import json

import pytest

from manifesto.errors import VerificationError
from manifesto.lists import push as lists
from manifesto.lists.entry import Entry
from manifesto.lists.rules import Problem
from manifesto.oci import canonical, mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.platform import Platform
from manifesto.store.registry.pool import Registries
from manifesto.transfer import Place
from tests.support.memstore import MemoryStore

REPO = "team/app"


def put_image(store: MemoryStore, arch: str, *, config_arch: str | None = None, media_type: str = mediatype.OCI_MANIFEST) -> Digest:
    """An image in `store` whose config says linux/`config_arch` (default: `arch`)."""
    config = canonical.dumps({"architecture": config_arch or arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    store.blobs[(REPO, Digest.of(config))] = config
    config_type = mediatype.OCI_CONFIG if media_type == mediatype.OCI_MANIFEST else mediatype.DOCKER_CONFIG
    manifest = canonical.dumps({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "digest": str(Digest.of(config)), "size": len(config)},
        "layers": [],
    })  # fmt: skip
    return asyncio.run(store.put_manifest(REPO, str(Digest.of(manifest)), manifest, media_type))


def claim(store: MemoryStore, digest: Digest, platform: str, origin: str = "") -> Entry:
    """An entry as a digest file claims it (already in the target, no source, no bytes)."""
    raw, media_type = store.manifests[(REPO, digest)]
    return Entry(None, Descriptor(media_type, digest, len(raw), Platform.parse(platform)), origin=origin)


def refuse(found: list[Problem]) -> None:
    raise VerificationError("; ".join(p.text("format: oci in platforms.yaml") for p in found))


def run_push(store: MemoryStore, entries: list[Entry], media_type: str = mediatype.OCI_INDEX) -> lists.Pushed:
    async def go() -> lists.Pushed:
        async with Registries() as regs:  # no entry is read from a registry: none is opened
            return await lists.push(
                regs, Place(store, REPO), "memory/team/app", entries,
                media_type=media_type, annotations={}, tags=["1.0", "latest"], refuse=refuse,
            )  # fmt: skip

    return asyncio.run(go())


def test_entries_in_the_target_become_an_index_under_every_tag() -> None:
    store = MemoryStore()
    amd, arm = put_image(store, "amd64"), put_image(store, "arm64")
    pushed = run_push(store, [claim(store, amd, "linux/amd64"), claim(store, arm, "linux/arm64")])
    assert pushed.tags_moved == ("1.0", "latest") and pushed.tags_unchanged == ()
    assert store.tags[(REPO, "1.0")] == store.tags[(REPO, "latest")] == pushed.index.digest
    doc = json.loads(pushed.index.raw)
    assert [m["digest"] for m in doc["manifests"]] == [str(amd), str(arm)]
    assert [str(e.config_platform) for e in pushed.entries] == ["linux/amd64", "linux/arm64"]  # read back
    again = run_push(store, [claim(store, amd, "linux/amd64"), claim(store, arm, "linux/arm64")])
    assert (again.tags_moved, again.tags_unchanged) == ((), ("1.0", "latest"))


def test_a_config_that_contradicts_the_entry_is_refused_and_no_tag_moves() -> None:
    store = MemoryStore()
    liar = put_image(store, "arm64", config_arch="amd64")
    with pytest.raises(VerificationError) as e:
        run_push(store, [claim(store, liar, "linux/arm64")])
    assert str(e.value) == (
        "linux/arm64 (built): annotated as linux/arm64 but its config says linux/amd64; index not pushed"
    )
    assert store.tags == {}


def test_a_claim_the_target_contradicts_is_refused_naming_the_file() -> None:
    store = MemoryStore()
    amd = put_image(store, "amd64")
    edited = Entry(None, claim(store, amd, "linux/amd64").descriptor.with_(size=1), origin="amd64.json")
    with pytest.raises(VerificationError, match=r"^amd64\.json: linux/amd64 .* as the file says; index not pushed$"):
        run_push(store, [edited])
    assert store.tags == {}


def test_a_missing_child_is_refused() -> None:
    store = MemoryStore()
    ghost = Digest.of(b"an image nobody pushed")
    entry = Entry(None, Descriptor(mediatype.OCI_MANIFEST, ghost, 10, Platform.parse("linux/amd64")))
    with pytest.raises(VerificationError, match=f"linux/amd64: {ghost} is not in memory/team/app; index not pushed"):
        run_push(store, [entry])


def test_the_surface_words_the_rules_problems() -> None:
    """Docker list of an OCI child: the rules say what, the surface says how to ask for OCI."""
    store = MemoryStore()
    amd = put_image(store, "amd64")
    with pytest.raises(VerificationError) as e:
        run_push(store, [claim(store, amd, "linux/amd64")], mediatype.DOCKER_LIST)
    assert str(e.value) == (
        "linux/amd64 (built): an OCI manifest in a Docker manifest list (use format: oci in platforms.yaml)"
    )
    assert store.tags == {}


def test_duplicates_among_entries_in_the_target_are_refused_before_anything_is_written() -> None:
    store = MemoryStore()
    one, two = put_image(store, "arm64"), put_image(store, "arm64", media_type=mediatype.DOCKER_MANIFEST)
    with pytest.raises(VerificationError, match="^duplicate platform linux/arm64/v8: linux/arm64 .built. and "):
        run_push(store, [claim(store, one, "linux/arm64"), claim(store, two, "linux/arm64/v8")])
    assert store.tags == {}


class CountingStore(MemoryStore):
    """A MemoryStore that counts the HEADs of manifests asked of it."""

    def __init__(self) -> None:
        super().__init__("counting")
        self.heads = 0

    async def head_manifest(self, repo, reference):
        self.heads += 1
        return await super().head_manifest(repo, reference)


def test_a_child_this_runs_copier_put_is_not_asked_for_again() -> None:
    """Without read-back, a child the push's own Copier put (or found) in the target this run is
    known to be there: no second HEAD for it; a child it did not copy is still asked."""
    from manifesto.transfer import Copier

    source, target = MemoryStore("source"), CountingStore()
    digest = put_image(source, "arm64")
    raw, media_type = source.manifests[(REPO, digest)]
    entry = Entry(None, Descriptor(media_type, digest, len(raw), Platform.parse("linux/arm64")))

    async def go() -> tuple[int, int]:
        copier = Copier(Place(target, REPO))
        await copier.manifest(Place(source, REPO), lists.Fetched(raw, media_type, digest))
        before = target.heads  # the copier's own look before copying
        await lists.verify(Place(target, REPO), "t", [entry], read_back=False, copied=copier)
        known = target.heads - before
        await lists.verify(Place(target, REPO), "t", [entry], read_back=False)
        return known, target.heads - before - known

    assert asyncio.run(go()) == (0, 1)
