"""Finding referrers: the OCI 1.1 referrers API where a registry has it, else the tag schema.

distribution 2.8 has no referrers API (it answers 404), so the tag schema (`sha256-<hex>`
referrers index tags, cosign's `.sig`/`.att`/`.sbom`) is tested against it directly, and the API
with a recorded answer (tests/store/fixtures/referrers-api.json) replayed by a proxy in front
of it: the manifests the answer names are the real ones in the registry behind.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from manifesto.errors import ContentError, DigestMismatch
from manifesto.oci import mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageIndex, ImageManifest
from manifesto.oci.referrers import API, TAG, cosign_tags, describe, fallback_tag, kind_of, merged
from manifesto.store.referrers import Finder, Referrer
from manifesto.store.registry.client import RegistryClient
from manifesto.store.registry.referrers import list_referrers
from tests.support.content import Content, sha256
from tests.support.faultproxy import FaultProxy, Respond
from tests.support.signed import SBOM, SIG, SIMPLESIGNING, api_answer, dashed, replay_api, write

FIXTURE = Path(__file__).parent / "fixtures" / "referrers-api.json"
HEX = "ab" * 32


def _d(n: int, **extra) -> Descriptor:
    return Descriptor(mediatype.OCI_MANIFEST, Digest("sha256", f"{n:064x}"), 100 + n, extra=extra)


# -- pure: names, descriptions, merging ------------------------------------------------------


def test_tag_schema_names() -> None:
    assert fallback_tag(Digest("sha256", HEX)) == f"sha256-{HEX}"
    assert cosign_tags(Digest("sha256", HEX)) == (f"sha256-{HEX}.sig", f"sha256-{HEX}.att", f"sha256-{HEX}.sbom")
    long = Digest("sha512", "c" * 128)  # the spec truncates the encoded part to 64 characters
    assert fallback_tag(long) == "sha512-" + "c" * 64


def test_merge_keeps_theirs_adds_ours_once() -> None:
    theirs = ImageIndex.build(mediatype.OCI_INDEX, [_d(1, artifactType="x/theirs")], {"org.example": "kept"})
    out = merged(theirs, [_d(2, artifactType="x/ours"), _d(1, artifactType="x/theirs"), _d(2, artifactType="x/ours")])
    assert out is not None
    assert [d.digest for d in out.manifests] == [_d(1).digest, _d(2).digest]
    assert out.annotations == {"org.example": "kept"}
    assert json.loads(out.raw)["manifests"][1]["artifactType"] == "x/ours"
    assert merged(out, [_d(1), _d(2)]) is None  # nothing new: nothing to write
    fresh = merged(None, [_d(3)])
    assert fresh is not None and fresh.media_type == mediatype.OCI_INDEX and len(fresh.manifests) == 1


def test_describe_and_kind_follow_the_spec() -> None:
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatype.OCI_MANIFEST,
            "config": {"mediaType": mediatype.OCI_CONFIG, "digest": str(_d(5).digest), "size": 2},
            "layers": [{"mediaType": SIMPLESIGNING, "digest": str(_d(6).digest), "size": 3}],
            "annotations": {"a": "b"},
        }
    ).encode()
    doc = ImageManifest.parse(raw, mediatype.OCI_MANIFEST)
    d = describe(doc)  # no artifactType: the config's media type, as the spec lists it
    assert (d.digest, d.size, d.artifact_type, d.annotations) == (doc.digest, len(raw), mediatype.OCI_CONFIG, {"a": "b"})
    assert kind_of(d, doc) == SIMPLESIGNING  # people see what a cosign signature is, not "image config"
    assert kind_of(_d(1, artifactType=SBOM)) == SBOM


# -- the tag schema against distribution 2.8 --------------------------------------------------


def _find(host: str, repo: str, subjects: list[str], api: bool) -> list[Referrer]:
    async def run() -> list[Referrer]:
        async with RegistryClient(host) as client:
            lookup = (lambda r, d: list_referrers(client, r, d)) if api else None
            return await Finder(client, repo, lookup).walk([Digest.parse(s) for s in subjects])

    return asyncio.run(run())


def _summary(found: list[Referrer]) -> set[tuple[str, str, str, tuple[str, ...], int]]:
    return {(str(r.descriptor.digest), str(r.subject), r.found, r.tags, r.depth) for r in found}


def test_distribution_has_no_api(registry) -> None:
    async def run():
        async with RegistryClient(registry.host) as client:
            return await list_referrers(client, "no/api", Digest("sha256", HEX))

    assert asyncio.run(run()) is None


def test_tag_schema_finds_listed_cosign_and_nested(registry) -> None:
    s = write(Content(registry, "tags/app"), tag_schema=True)
    with FaultProxy(registry.host) as proxy:  # passes everything: counts what is asked
        found = _find(proxy.host, "tags/app", [s.index.digest, s.amd64.digest, s.arm64.digest], api=True)
        asked = proxy.requests("GET", r"/referrers/")
    assert len(asked) == 1 and asked[0].status == 404  # the first 404 says there is no API: not asked again
    assert _summary(found) == {
        (s.sbom.digest, s.index.digest, TAG, (), 1),
        (s.amd64_sig.digest, s.amd64.digest, TAG, (dashed(s.amd64.digest) + ".sig",), 1),
        (s.sbom_sig.digest, s.sbom.digest, TAG, (), 2),  # a referrer's referrer
    }
    by = {str(r.descriptor.digest): r for r in found}
    assert by[s.sbom.digest].descriptor.artifact_type == SBOM and by[s.sbom.digest].listed
    assert not by[s.amd64_sig.digest].listed  # a cosign tag alone names it


def test_a_cycle_in_tag_indexes_ends(registry) -> None:
    """A referrers index may list anything, its own subject too: each manifest is visited once."""
    c = Content(registry, "tags/cycle")
    s = write(c, tag_schema=True)
    c.index([s.index.descriptor()], tag=dashed(s.sbom_sig.digest))  # sbom_sig "refers back" to the index
    found = _find(registry.host, "tags/cycle", [s.index.digest], api=False)
    assert sorted(str(r.descriptor.digest) for r in found) == sorted([s.sbom.digest, s.sbom_sig.digest])
    c.index(s.listing(s.index), tag=dashed(s.arm64.digest))  # the SBOM listed for arm64 too: there for both
    found = _find(registry.host, "tags/cycle", [s.index.digest, s.arm64.digest], api=False)
    assert sorted((str(r.descriptor.digest), str(r.subject)) for r in found) == sorted(
        [(s.sbom.digest, s.index.digest), (s.sbom.digest, s.arm64.digest), (s.sbom_sig.digest, s.sbom.digest)]
    )


# -- the API, from a recorded answer ----------------------------------------------------------


def test_recorded_answer_names_this_content(registry) -> None:
    """The fixture was recorded for tests/support/signed.py's bytes: it must still name them."""
    s = write(Content(registry, "signed/app"), tag_schema=False)
    recorded = json.loads(FIXTURE.read_text())["exchanges"]
    assert [e["request"].rsplit("/", 1)[1] for e in recorded][:2] == [s.index.digest, s.sbom.digest]
    assert recorded[0]["body"]["manifests"] == s.listing(s.index)
    assert recorded[1]["body"]["manifests"] == s.listing(s.sbom)


def test_api_answer_is_used_and_tags_are_not(registry) -> None:
    s = write(Content(registry, "api/app"), tag_schema=True)  # tag indexes there, but the API wins
    with FaultProxy(registry.host) as proxy:
        replay_api(proxy, FIXTURE)
        found = _find(proxy.host, "api/app", [s.index.digest, s.amd64.digest], api=True)
        asked = [p.path for p in proxy.requests("GET", r"/manifests/sha256-")]
    assert _summary(found) == {
        (s.sbom.digest, s.index.digest, API, (), 1),
        (s.sbom_sig.digest, s.sbom.digest, API, (), 2),
        (s.amd64_sig.digest, s.amd64.digest, TAG, (dashed(s.amd64.digest) + ".sig",), 1),  # cosign tags: always
    }
    assert asked and all(path.endswith((".sig", ".att", ".sbom")) for path in asked)  # no sha256-<hex> index read


def _page(listed: list[Descriptor]) -> bytes:
    return api_answer([d.to_dict() for d in listed])


def test_api_pages_and_filter(registry) -> None:
    subject = f"sha256:{HEX}"
    with FaultProxy(registry.host) as proxy:
        nxt = {"Content-Type": mediatype.OCI_INDEX, "Link": f'</v2/p/app/referrers/{subject}?page=2>; rel="next"'}
        proxy.add(Respond(200, _page([_d(2, artifactType=SIG)]), {"Content-Type": mediatype.OCI_INDEX}), path=r"page=2")
        proxy.add(Respond(200, _page([_d(1, artifactType=SBOM), _d(3, artifactType=SIG)]), nxt), path=r"/referrers/")

        async def run(kind: str | None):
            async with RegistryClient(proxy.host) as client:
                return await list_referrers(client, "p/app", Digest.parse(subject), artifact_type=kind)

        everything = asyncio.run(run(None))
        filtered = asyncio.run(run(SIG))  # the registry did not filter (no OCI-Filters-Applied): we do
        queries = [p.query for p in proxy.requests("GET", r"/referrers/")]
    assert everything is not None and [d.size for d in everything] == [101, 103, 102]
    assert filtered is not None and [d.size for d in filtered] == [103, 102]
    assert any("artifactType=" in q for q in queries)


def test_api_answer_that_is_not_an_index_is_refused(registry) -> None:
    with FaultProxy(registry.host) as proxy:
        proxy.add(Respond(200, b"<html>welcome</html>", {"Content-Type": "text/html"}), path=r"/referrers/")

        async def run():
            async with RegistryClient(proxy.host) as client:
                return await list_referrers(client, "p/app", Digest("sha256", HEX))

        with pytest.raises(ContentError, match="referrers of"):
            asyncio.run(run())


def test_a_listed_referrer_that_does_not_match_is_refused(registry) -> None:
    s = write(Content(registry, "bad/app"), tag_schema=False)
    listed = Descriptor.from_dict(s.listing(s.index)[0])

    async def fetch(host: str, descriptor: Descriptor):
        async with RegistryClient(host) as client:
            return await Finder(client, "bad/app").fetch(Referrer(descriptor, Digest.parse(s.index.digest), API))

    with FaultProxy(registry.host) as proxy:  # the registry serves other bytes under the digest
        headers = {"Content-Type": mediatype.OCI_MANIFEST}
        proxy.add(Respond(200, s.sbom_sig.raw, headers), method="GET", path=re.escape(f"/manifests/{s.sbom.digest}"))
        with pytest.raises(DigestMismatch):
            asyncio.run(fetch(proxy.host, listed))
    with pytest.raises(ContentError, match="listed as 1 bytes"):  # listed with another size
        asyncio.run(fetch(registry.host, listed.with_(size=1)))
    assert asyncio.run(fetch(registry.host, listed)).raw == s.sbom.raw
    assert sha256(s.sbom.raw) == s.sbom.digest
