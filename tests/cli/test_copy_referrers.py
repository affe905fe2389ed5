"""`copy --referrers` carries signatures, SBOMs and attestations; `inspect --referrers` lists them.

The content (tests/support/signed.py) is a two-platform index with an SBOM of the index, a
signature of the SBOM (a referrer's referrer) and a cosign `.sig` tag signing the amd64 image.
distribution 2.8 has no referrers API: the tag schema is tested against it as it is, and the API
with a recorded answer (tests/store/fixtures/referrers-api.json) replayed by a proxy in front of
the source registry. The destination is distribution 2.8 too, so the referrers index tags must
be written there (merged with one already there).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.support.cli import ok
from tests.support.content import OCI_EMPTY, OCI_INDEX, Content, Pushed, sha256
from tests.support.faultproxy import FaultProxy, Respond
from tests.support.signed import SBOM, SIG, Signed, api_answer, dashed, replay_api, write

FIXTURE = Path(__file__).parents[1] / "store" / "fixtures" / "referrers-api.json"


def _carried(probe, repo: str, s: Signed) -> dict:
    """Check every referrer is in `repo` by digest (exact bytes, blobs) and the tags that find
    them; the referrers index tags as JSON, by subject name."""
    for p in (s.sbom, s.sbom_sig, s.amd64_sig):
        r = probe.get_manifest(repo, p.digest)
        assert r.status_code == 200 and r.content == p.raw, f"{p.digest}: {r.status_code}"
        for blob in [json.loads(p.raw)["config"], *json.loads(p.raw)["layers"]]:
            assert probe.blob_status(repo, blob["digest"]) == 200
    sig = probe.get_manifest(repo, dashed(s.amd64.digest) + ".sig")
    assert sig.status_code == 200 and sig.content == s.amd64_sig.raw  # cosign's tag, same name
    out = {}
    for name, subject in (("index", s.index), ("sbom", s.sbom)):
        r = probe.get_manifest(repo, dashed(subject.digest))
        assert r.status_code == 200, f"no referrers index tag for the {name}"
        out[name] = json.loads(r.content)
        assert out[name]["mediaType"] == OCI_INDEX
    return out


def test_copy_carries_referrers_by_tag_schema(registry, cli, probe, unique_repo) -> None:
    s = write(Content(registry, f"{unique_repo}/src"), tag_schema=True)
    rc, out, err = cli("copy", "--referrers", registry.ref(f"{unique_repo}/src", "v1"), registry.ref(f"{unique_repo}/dst", "v1"))
    assert rc == 0, err
    assert out.strip().splitlines()[-1] == s.index.digest
    assert "3 referrers copied" in err
    p = probe(registry)
    indexes = _carried(p, f"{unique_repo}/dst", s)
    assert indexes["index"]["manifests"] == s.listing(s.index)  # as listed at the source: artifactType, annotations
    assert indexes["sbom"]["manifests"] == s.listing(s.sbom)
    assert p.tag_digest(f"{unique_repo}/dst", "v1") == s.index.digest


def test_copy_without_the_flag_leaves_referrers(registry, cli, probe, unique_repo) -> None:
    s = write(Content(registry, f"{unique_repo}/src"), tag_schema=True)
    ok(cli("copy", registry.ref(f"{unique_repo}/src", "v1"), registry.ref(f"{unique_repo}/dst", "v1")))
    p = probe(registry)
    assert p.manifest_status(f"{unique_repo}/dst", s.sbom.digest) == 404
    assert p.manifest_status(f"{unique_repo}/dst", dashed(s.index.digest)) == 404


def test_an_existing_referrers_index_is_merged(registry, cli, probe, unique_repo) -> None:
    """The destination's own referrers of the image stay listed, first; ours are added once."""
    s = write(Content(registry, f"{unique_repo}/src"), tag_schema=True)
    dst = Content(registry, f"{unique_repo}/dst")
    theirs = _theirs(dst, s.index)
    dst.index([theirs.descriptor(artifactType="application/vnd.example.vex")], tag=dashed(s.index.digest))
    for _ in range(2):  # a second copy adds nothing: no duplicate entries
        ok(cli("copy", "--referrers", registry.ref(f"{unique_repo}/src", "v1"), registry.ref(f"{unique_repo}/dst", "v1")))
        listed = _carried(probe(registry), f"{unique_repo}/dst", s)["index"]["manifests"]
        assert [m["digest"] for m in listed] == [theirs.digest, s.sbom.digest]
        assert listed[0]["artifactType"] == "application/vnd.example.vex"


def _theirs(c: Content, subject: Pushed) -> Pushed:
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.vex",
        "config": c.blob(b"{}", OCI_EMPTY),
        "layers": [c.blob(b'{"vex": "theirs"}', "application/vnd.example.vex")],
        "subject": subject.descriptor(),
    }
    return c.manifest(doc)


def test_copy_finds_referrers_through_the_api(registry, cli, probe, unique_repo) -> None:
    """No referrers index tags at the source: only the (recorded) API answer names the SBOM and
    its signature; the destination has no API, so it gets the tags."""
    s = write(Content(registry, f"{unique_repo}/src"), tag_schema=False)
    with FaultProxy(registry.host) as proxy:
        replay_api(proxy, FIXTURE)
        rc, out, err = cli("copy", "--referrers", proxy.ref(f"{unique_repo}/src", "v1"), registry.ref(f"{unique_repo}/dst", "v1"))
        asked = {p.path.rsplit("/", 1)[1] for p in proxy.requests("GET", r"/referrers/")}
    assert rc == 0, err
    assert "3 referrers copied" in err
    assert {s.index.digest, s.amd64.digest, s.arm64.digest, s.sbom.digest} <= asked
    indexes = _carried(probe(registry), f"{unique_repo}/dst", s)
    assert indexes["index"]["manifests"] == s.listing(s.index)
    assert indexes["sbom"]["manifests"] == s.listing(s.sbom)


def test_a_referrer_that_does_not_match_its_digest_is_refused(registry, cli, probe, one_line_error, unique_repo) -> None:
    s = write(Content(registry, f"{unique_repo}/src"), tag_schema=False)
    with FaultProxy(registry.host) as proxy:
        replay_api(proxy, FIXTURE)
        other = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
        proxy.add(Respond(200, s.sbom_sig.raw, other), method="GET", path=re.escape(f"/manifests/{s.sbom.digest}"))
        result = cli("copy", "--referrers", proxy.ref(f"{unique_repo}/src", "v1"), registry.ref(f"{unique_repo}/dst", "v1"))
    line = one_line_error(result, 1, s.sbom.digest)
    assert "digest" in line
    p = probe(registry)
    assert p.tag_digest(f"{unique_repo}/dst", "v1") is None  # nothing tagged: the copy failed first
    assert p.manifest_status(f"{unique_repo}/dst", dashed(s.index.digest)) == 404
    assert sha256(s.sbom_sig.raw) != s.sbom.digest


def test_inspect_lists_referrers(registry, cli, unique_repo) -> None:
    s = write(Content(registry, f"{unique_repo}/src"), tag_schema=True)
    ref = registry.ref(f"{unique_repo}/src", "v1")
    listed = json.loads(ok(cli("inspect", "--referrers", "--json", ref)))
    rows = {(r["digest"], r["subject"], r["artifactType"], r["size"], r["found"], r["depth"]) for r in listed}
    assert rows == {
        (s.sbom.digest, s.index.digest, SBOM, len(s.sbom.raw), "tag", 1),
        (s.sbom_sig.digest, s.sbom.digest, SIG, len(s.sbom_sig.raw), "tag", 2),
        (s.amd64_sig.digest, s.amd64.digest, "application/vnd.dev.cosign.simplesigning.v1+json", len(s.amd64_sig.raw), "tag", 1),
    }
    text = ok(cli("inspect", "--referrers", "--no-trunc", ref))
    lines = text.splitlines()
    assert lines[0] == ref and lines[1].split() == ["SUBJECT", "ARTIFACT", "TYPE", "DIGEST", "SIZE", "FOUND"]
    sbom_row = next(line for line in lines if s.sbom.digest in line)
    assert sbom_row.split()[:2] == ["index", SBOM] and sbom_row.rstrip().endswith("tag")
    sig_row = next(line for line in lines if s.amd64_sig.digest in line)
    assert sig_row.startswith("linux/amd64") and sig_row.rstrip().endswith("tag (.sig)")


def test_inspect_says_api_when_the_registry_has_it(registry, cli, unique_repo) -> None:
    s = write(Content(registry, f"{unique_repo}/src"), tag_schema=False)
    with FaultProxy(registry.host) as proxy:
        replay_api(proxy, FIXTURE)
        listed = json.loads(ok(cli("inspect", "--referrers", "--json", proxy.ref(f"{unique_repo}/src", "v1"))))
    found = {r["digest"]: r["found"] for r in listed}
    assert found == {s.sbom.digest: "api", s.sbom_sig.digest: "api", s.amd64_sig.digest: "tag"}
    tagged = next(r for r in listed if r["digest"] == s.amd64_sig.digest)
    assert tagged["tags"] == [dashed(s.amd64.digest) + ".sig"]


def test_referrers_into_a_layout_and_back(registry, cli, probe, tmp_path, unique_repo) -> None:
    """An OCI layout has no API: the copy writes the tag schema there, and it is read from there."""
    s = write(Content(registry, f"{unique_repo}/src"), tag_schema=True)
    layout = tmp_path / "out"
    ok(cli("copy", "--referrers", registry.ref(f"{unique_repo}/src", "v1"), f"oci:{layout}:v1"))
    listed = json.loads(ok(cli("inspect", "--referrers", "--json", f"oci:{layout}:v1")))
    assert {r["digest"] for r in listed} == {s.sbom.digest, s.sbom_sig.digest, s.amd64_sig.digest}
    ok(cli("copy", "--referrers", f"oci:{layout}:v1", registry.ref(f"{unique_repo}/back", "v1")))
    _carried(probe(registry), f"{unique_repo}/back", s)


def test_inspect_referrers_refuses_raw(registry, cli, one_line_error) -> None:
    one_line_error(cli("inspect", "--referrers", "--raw", registry.ref("x/y", "v1")), 2, "--referrers")


def test_a_destination_with_the_api_gets_no_referrers_index_tag(registry, cli, probe, unique_repo) -> None:
    """A registry with the API indexes pushed subjects itself; cosign's tags are still written."""
    s = write(Content(registry, f"{unique_repo}/src"), tag_schema=True)
    with FaultProxy(registry.host) as proxy:
        proxy.add(Respond(200, api_answer([]), {"Content-Type": OCI_INDEX}), method="GET", path=r"/referrers/")
        ok(cli("copy", "--referrers", registry.ref(f"{unique_repo}/src", "v1"), proxy.ref(f"{unique_repo}/dst", "v1")))
    p = probe(registry)
    assert p.manifest_status(f"{unique_repo}/dst", s.sbom.digest) == 200
    assert p.manifest_status(f"{unique_repo}/dst", dashed(s.index.digest)) == 404
    assert p.tag_digest(f"{unique_repo}/dst", dashed(s.amd64.digest) + ".sig") == s.amd64_sig.digest


def test_stripping_attestations_says_the_index_referrers_stay_behind(registry, cli, probe, unique_repo) -> None:
    """`--attestations strip` makes a new index: what referred to the old one cannot come along."""
    c = Content(registry, f"{unique_repo}/src")
    s = write(c, tag_schema=True)
    attestation = s.arm64.descriptor(
        platform={"os": "unknown", "architecture": "unknown"},
        annotations={"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": s.amd64.digest},
    )
    v2 = c.index([*json.loads(s.index.raw)["manifests"], attestation], tag="v2")
    c.index(s.listing(s.index), tag=dashed(v2.digest))  # the SBOM listed for v2 as well
    rc, out, err = cli(
        "copy", "--referrers", "--attestations", "strip", registry.ref(f"{unique_repo}/src", "v2"), registry.ref(f"{unique_repo}/dst", "v2")
    )
    assert rc == 0, err
    assert "1 referrer(s) of the index not copied" in err
    assert "1 referrer copied" in err  # the amd64 signature: the children are the same
    assert probe(registry).tag_digest(f"{unique_repo}/dst", dashed(s.amd64.digest) + ".sig") == s.amd64_sig.digest
