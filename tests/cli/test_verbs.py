"""End to end: the `docker manifest`-style verbs against a real distribution 2.8 registry.

Every test runs the installed `manifesto` CLI as a subprocess (inside a private HOME) and
checks the outcome from outside manifesto: raw HTTP against the registry, the registry's
access log, and skopeo. One anonymous registry per module holds the docker-library style
source repos (amd64/busybox:1, arm64v8/busybox:1, ...); each test writes its own repos.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from tests.support import ARCHES, inspect_raw, push_image
from tests.support.cli import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    ok,
    plat,
    pushed_digest,
    sha256_of,
)


def entries(raw: bytes) -> dict[str, dict[str, Any]]:
    """digest -> descriptor of an index."""
    return {m["digest"]: m for m in json.loads(raw)["manifests"]}


# ---------------------------------------------------------------------------------------------
# module fixtures


@pytest.fixture(scope="module")
def docker_repos(registry, docker_arch_images) -> dict[str, str]:
    """Docker schema 2 busybox images pushed as dockerfmt/<namespace>/busybox:1 (arch -> ref)."""
    out = {}
    for arch in ("amd64", "arm64", "armhf"):
        img = docker_arch_images[arch]
        out[arch] = push_image(img, f"dockerfmt/{arch}/busybox:1", registry)
    return out


@pytest.fixture(scope="module")
def pushed_list(registry, library_repos, module_cli) -> dict[str, Any]:
    """A five-platform OCI index pushed once as lists/golang:alpine."""
    ref = registry.ref("lists/golang", "alpine")
    module_cli("create", ref, *[library_repos[a].ref for a in ARCHES])
    digest = module_cli("push", "--purge", ref).stdout.strip().splitlines()[-1]
    return {"ref": ref, "digest": digest, "raw": inspect_raw(ref)}


@pytest.fixture(scope="module")
def attested(registry, tmp_path_factory, index_layout) -> dict[str, Any]:
    """An index with amd64, arm64 and an attestation of amd64, pushed by `skopeo copy --all`."""
    from tests.support import skopeo

    lay = index_layout(tmp_path_factory.mktemp("attested") / "layout", ["amd64", "arm64"], attest="amd64")
    ref = registry.ref("att/busybox", "1")
    skopeo("copy", "--all", "--preserve-digests", "--quiet", "--dest-tls-verify=false", lay.oci_ref, f"docker://{ref}")
    raw = inspect_raw(ref)
    assert raw == lay.index_bytes
    return {"ref": ref, "layout": lay, "raw": raw}


# ---------------------------------------------------------------------------------------------
# 1. golang:alpine-style assembly from other repositories of the same registry


def test_golang_alpine_cross_repo_assembly_mounts_everything(cli, registry, library_repos, unique_repo, probe):
    target = registry.ref(unique_repo, "alpine")
    ok(cli("create", target, *[library_repos[a].ref for a in ARCHES]))
    p = probe(registry)
    mark = p.mark()

    digest = pushed_digest(cli("push", target))

    raw = inspect_raw(target)
    assert digest == sha256_of(raw), "printed digest is not sha256 of the registry's bytes"
    doc = json.loads(raw)
    assert doc["mediaType"] == OCI_INDEX
    assert {(m["digest"], plat(m["platform"])) for m in doc["manifests"]} == {
        (library_repos[a].digest, library_repos[a].image.platform) for a in ARCHES
    }
    children = p.assert_complete(unique_repo, raw)
    blobs = {b["digest"] for c in children for b in [c["config"], *c["layers"]]}
    assert len(blobs) == 10

    log = p.requests(since=mark)
    mine = [r for r in log if r.path.startswith(f"/v2/{unique_repo}/")]
    mounts = [r for r in mine if r.method == "POST" and "mount=" in r.query]
    assert len(mounts) == len(blobs), f"expected one mount per blob: {mounts}"
    assert all(r.status == 201 for r in mounts), mounts
    mounted = {re.search(r"mount=([^&]+)", r.query)[1].replace("%3A", ":") for r in mounts}
    assert mounted == blobs
    uploads = [r for r in mine if "/blobs/uploads/" in r.path and r.method in ("PUT", "PATCH")]
    assert uploads == [], f"blobs were uploaded although they could be mounted: {uploads}"
    child_puts = [r for r in mine if r.method == "PUT" and r.path.startswith(f"/v2/{unique_repo}/manifests/sha256:")]
    assert len(child_puts) == 5
    tag_puts = [r for r in mine if r.method == "PUT" and r.path == f"/v2/{unique_repo}/manifests/alpine"]
    assert len(tag_puts) == 1 and tag_puts[0].status == 201
    assert log.index(tag_puts[0]) > max(log.index(r) for r in child_puts), "index PUT before its children"


# ---------------------------------------------------------------------------------------------
# 2. list format


@pytest.mark.parametrize(
    "kind, create_flags, push_flags, expected",
    [
        ("mixed", [], [], OCI_INDEX),
        ("docker", [], [], DOCKER_LIST),
        ("docker", ["--format", "oci"], [], OCI_INDEX),
        ("docker", [], ["--format", "oci"], OCI_INDEX),
        ("oci", [], [], OCI_INDEX),
    ],
)
def test_list_format(cli, registry, library_repos, docker_repos, unique_repo, probe, kind, create_flags, push_flags, expected):
    if kind == "mixed":
        sources = [docker_repos["amd64"], library_repos["arm64"].ref, library_repos["s390x"].ref]
    elif kind == "docker":
        sources = [docker_repos[a] for a in ("amd64", "arm64", "armhf")]
    else:
        sources = [library_repos[a].ref for a in ("amd64", "arm64")]
    target = registry.ref(unique_repo, "v1")
    ok(cli("create", *create_flags, target, *sources))
    digest = pushed_digest(cli("push", *push_flags, target))

    r = probe(registry).get_manifest(unique_repo, "v1")
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == expected
    doc = json.loads(r.content)
    assert doc["mediaType"] == expected
    assert sha256_of(r.content) == digest
    child_types = {m["mediaType"] for m in doc["manifests"]}
    if kind == "docker":
        assert child_types == {DOCKER_MANIFEST}
    if kind == "mixed":
        assert child_types == {DOCKER_MANIFEST, OCI_MANIFEST}
    probe(registry).assert_complete(unique_repo, r.content)


def test_docker_format_with_oci_child_refused_unless_forced(cli, registry, library_repos, unique_repo, probe, one_line_error):
    target = registry.ref(unique_repo, "v1")
    ok(cli("create", "--format", "docker", target, library_repos["amd64"].ref, library_repos["arm64"].ref))
    p = probe(registry)

    line = one_line_error(cli("push", target), 2, "OCI manifest in a Docker manifest list")
    assert "--force" in line
    assert p.manifest_status(unique_repo, "v1") == 404
    for a in ("amd64", "arm64"):
        assert p.manifest_status(unique_repo, library_repos[a].digest) == 404, "a child was pushed before the refusal"

    rc, out, err = cli("push", "--force", target)
    digest = pushed_digest((rc, out, err))
    assert "OCI manifest in a Docker manifest list" in err, "a forced push should still warn"
    r = p.get_manifest(unique_repo, "v1")
    assert r.headers["content-type"].split(";")[0] == DOCKER_LIST
    assert json.loads(r.content)["mediaType"] == DOCKER_LIST
    assert sha256_of(r.content) == digest


# ---------------------------------------------------------------------------------------------
# 3. inspect


def test_inspect_raw_is_byte_identical(cli_bytes, registry, library_repos, docker_repos, pushed_list, probe):
    p = probe(registry)
    cases = {
        "index": (pushed_list["ref"], "lists/golang", "alpine", OCI_INDEX),
        "oci manifest": (library_repos["amd64"].ref, "amd64/busybox", "1", OCI_MANIFEST),
        "docker v2": (docker_repos["arm64"], "dockerfmt/arm64/busybox", "1", DOCKER_MANIFEST),
    }
    for name, (ref, repo, tag, media_type) in cases.items():
        expected = p.get_manifest(repo, tag)
        assert expected.status_code == 200
        assert json.loads(expected.content)["mediaType"] == media_type
        rc, out, err = cli_bytes("inspect", "--raw", ref)
        assert rc == 0, err
        assert out == expected.content, f"{name}: `inspect --raw` differs from the registry's bytes"
        digest = expected.headers["docker-content-digest"]
        rc, out, err = cli_bytes("inspect", "--raw", ref.rsplit(":", 1)[0] + "@" + digest)
        assert rc == 0 and out == expected.content, f"{name} by digest: {err}"


def test_inspect_table_json_and_verbose(cli, pushed_list, library_repos):
    ref, digest = pushed_list["ref"], pushed_list["digest"]
    out = ok(cli("inspect", "--no-trunc", ref))
    assert re.search(rf"^Digest:\s+{digest}$", out, re.M), out
    assert "(local draft)" not in out
    for a in ARCHES:
        lib = library_repos[a]
        assert re.search(rf"^{re.escape(lib.image.platform)}\s+{lib.digest}\s", out, re.M), f"no row for {a}:\n{out}"

    doc = json.loads(ok(cli("inspect", "--json", ref)))
    assert doc["digest"] == digest and doc["mediaType"] == OCI_INDEX and doc["local"] is False
    assert {m["digest"]: m["platform"] for m in doc["manifests"]} == {
        library_repos[a].digest: library_repos[a].image.platform_dict for a in ARCHES
    }

    verbose = ok(cli("inspect", "-v", "--no-trunc", ref))
    for a in ARCHES:
        lib = library_repos[a]
        row = next(line for line in verbose.splitlines() if lib.digest in line)
        assert f"config={lib.image.platform}" in row, row
        assert "cmd=/bin/uname -m" in row, row

    single = ok(cli("inspect", "-v", library_repos["arm64"].ref))
    assert re.search(r"^Platform:\s+linux/arm64/v8$", single, re.M), single
    assert re.search(r"^Cmd:\s+/bin/uname -m$", single, re.M), single
    assert re.search(rf"^Digest:\s+{library_repos['arm64'].digest}$", single, re.M), single


def test_inspect_several_refs(cli, pushed_list, library_repos, one_line_error):
    single = library_repos["s390x"].ref
    out = ok(cli("inspect", pushed_list["ref"], single))
    assert f"Name:      {pushed_list['ref']}" in out and f"Name:      {single}" in out
    assert re.search(r"^Platform:\s+linux/s390x$", out, re.M)

    docs = json.loads(ok(cli("inspect", "--json", pushed_list["ref"], single)))
    assert [d["digest"] for d in docs] == [pushed_list["digest"], library_repos["s390x"].digest]
    assert docs[1]["platform"] == {"architecture": "s390x", "os": "linux"}

    # one missing among several: the good one is shown, one error line, exit 4
    missing = pushed_list["ref"].rsplit(":", 1)[0] + ":no-such-tag"
    rc, out, err = cli("inspect", single, missing)
    assert rc == 4
    assert library_repos["s390x"].digest in out
    one_line_error((rc, out, err), 4, "no-such-tag")


def test_inspect_missing_tag(cli, registry, library_repos, one_line_error):
    rc, out, err = cli("inspect", registry.ref("amd64/busybox", "nope"))
    one_line_error((rc, out, err), 4, "not found")
    assert out == ""
    one_line_error(cli("inspect", registry.ref("no/such-repo", "1")), 4)

    # --debug adds the traceback; the exit code and the error line stay
    rc, out, err = cli("--debug", "inspect", registry.ref("amd64/busybox", "nope"))
    assert rc == 4, err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("manifesto: error:"), err


def test_inspect_local_draft(cli, cli_bytes, registry, library_repos, unique_repo, probe):
    target = registry.ref(unique_repo, "draft")
    ok(cli("create", target, library_repos["amd64"].ref, library_repos["armhf"].ref))
    out = ok(cli("inspect", "--no-trunc", target))
    assert "(local draft)" in out
    for a in ("amd64", "armhf"):
        lib = library_repos[a]
        assert re.search(rf"^{re.escape(lib.image.platform)}\s+{lib.digest}\s", out, re.M), out
    verbose = ok(cli("inspect", "-v", "--no-trunc", target))  # config facts read from the entries' own repos
    assert re.search(r"^linux/arm/v7\s.*config=linux/arm/v7 created=", verbose, re.M), verbose
    doc = json.loads(ok(cli("inspect", "--json", target)))
    assert doc["local"] is True
    assert {m["digest"] for m in doc["manifests"]} == {library_repos["amd64"].digest, library_repos["armhf"].digest}
    assert probe(registry).manifest_status(unique_repo, "draft") == 404, "inspect of a draft pushed it"

    # the draft's --raw is exactly what push then sends
    rc, draft_raw, err = cli_bytes("inspect", "--raw", target)
    assert rc == 0, err
    assert json.loads(draft_raw)["mediaType"] == OCI_INDEX
    assert pushed_digest(cli("push", target)) == sha256_of(draft_raw)
    assert probe(registry).get_manifest(unique_repo, "draft").content == draft_raw


# ---------------------------------------------------------------------------------------------
# 4. flattening and attestations


def test_create_from_an_index_flattens_it(cli, registry, library_repos, pushed_list, unique_repo, probe):
    target = registry.ref(unique_repo, "flat")
    ok(cli("create", target, pushed_list["ref"]))
    doc = json.loads(ok(cli("inspect", "--json", target)))
    got = {m["digest"]: m["platform"] for m in doc["manifests"]}
    assert got == {library_repos[a].digest: library_repos[a].image.platform_dict for a in ARCHES}
    assert pushed_list["digest"] not in got

    digest = pushed_digest(cli("push", target))
    raw = inspect_raw(target)
    assert sha256_of(raw) == digest
    assert set(entries(raw)) == set(got)
    probe(registry).assert_complete(unique_repo, raw)


def test_inspect_names_attestations(cli, attested):
    lay = attested["layout"]
    att = lay.attestation
    out = ok(cli("inspect", "--no-trunc", attested["ref"]))
    assert re.search(rf"^attestation of linux/amd64\s+{att['digest']}\s", out, re.M), out
    assert re.search(rf"^linux/amd64\s+{lay.images['amd64'].manifest_digest}\s", out, re.M), out
    assert re.search(rf"^linux/arm64/v8\s+{lay.images['arm64'].manifest_digest}\s", out, re.M), out
    assert "unknown/unknown" not in out, "an attestation was listed as a platform"

    doc = json.loads(ok(cli("inspect", "--json", attested["ref"])))
    by_digest = {m["digest"]: m for m in doc["manifests"]}
    assert by_digest[att["digest"]]["attestationOf"] == att["subject"]
    assert by_digest[lay.images["arm64"].manifest_digest]["attestationOf"] is None

    verbose = ok(cli("inspect", "-v", "--no-trunc", attested["ref"]))
    row = next(line for line in verbose.splitlines() if att["digest"] in line)
    assert row.startswith("attestation of linux/amd64") and "config=" not in row, row
    amd64_row = next(line for line in verbose.splitlines() if lay.images["amd64"].manifest_digest in line)
    assert "config=linux/amd64" in amd64_row, amd64_row


def test_create_and_push_carry_the_attestation(cli, registry, attested, unique_repo, probe):
    lay = attested["layout"]
    att = lay.attestation
    target = registry.ref(unique_repo, "1")
    ok(cli("create", target, attested["ref"]))
    draft = json.loads(ok(cli("inspect", "--json", target)))
    assert {m["digest"] for m in draft["manifests"]} == set(entries(attested["raw"]))

    digest = pushed_digest(cli("push", target))
    raw = inspect_raw(target)
    assert sha256_of(raw) == digest
    pushed = entries(raw)
    assert pushed[att["digest"]]["annotations"] == {
        "vnd.docker.reference.digest": att["subject"],
        "vnd.docker.reference.type": "attestation-manifest",
    }
    assert pushed[att["digest"]]["platform"] == {"architecture": "unknown", "os": "unknown"}
    p = probe(registry)
    r = p.get_manifest(unique_repo, att["digest"])
    assert r.status_code == 200 and r.content == att["manifest"]
    assert p.blob_status(unique_repo, att["config_digest"]) == 200
    assert p.blob_status(unique_repo, att["layer_digest"]) == 200
    p.assert_complete(unique_repo, raw)


# ---------------------------------------------------------------------------------------------
# 5. annotate


def test_annotate_sets_platform_fields_and_annotations(cli, registry, library_repos, unique_repo, probe):
    target = registry.ref(unique_repo, "v1")
    arm64 = library_repos["arm64"]
    ok(cli("create", target, library_repos["amd64"].ref, arm64.ref))
    ok(
        cli(
            "annotate", target, arm64.ref,
            "--os", "linux", "--arch", "aarch64", "--variant", "v8",
            "--os-version", "5.15", "--os-features", "sse4,fancy",
            "--annotation", "org.example.note=hello",
            "--annotation", "org.opencontainers.image.title=busybox arm64",
        )
    )
    expected_platform = {
        "architecture": "arm64",
        "os": "linux",
        "variant": "v8",
        "os.version": "5.15",
        "os.features": ["sse4", "fancy"],
    }
    expected_annotations = {"org.example.note": "hello", "org.opencontainers.image.title": "busybox arm64"}

    draft = json.loads(ok(cli("inspect", "--json", target)))
    entry = next(m for m in draft["manifests"] if m["digest"] == arm64.digest)
    assert entry["platform"] == expected_platform
    assert entry["annotations"] == expected_annotations
    untouched = next(m for m in draft["manifests"] if m["digest"] == library_repos["amd64"].digest)
    assert untouched["platform"] == {"architecture": "amd64", "os": "linux"} and "annotations" not in untouched

    digest = pushed_digest(cli("push", target))
    r = probe(registry).get_manifest(unique_repo, "v1")
    assert sha256_of(r.content) == digest
    pushed = entries(r.content)[arm64.digest]
    assert pushed["platform"] == expected_platform
    assert pushed["annotations"] == expected_annotations


def test_lying_annotation_refused_and_nothing_pushed(cli, registry, library_repos, unique_repo, probe, one_line_error):
    target = registry.ref(unique_repo, "v1")
    arm64 = library_repos["arm64"]
    ok(cli("create", target, library_repos["amd64"].ref, arm64.ref))
    ok(cli("annotate", target, arm64.ref, "--os", "linux", "--arch", "s390x"))
    p = probe(registry)
    mark = p.mark()

    one_line_error(cli("push", target), 2, "annotated as linux/s390x", "config says linux/arm64/v8")
    assert p.manifest_status(unique_repo, "v1") == 404
    for a in ("amd64", "arm64"):
        assert p.manifest_status(unique_repo, library_repos[a].digest) == 404
    writes = [r for r in p.requests(since=mark) if r.method in ("PUT", "POST", "PATCH")]
    assert writes == [], f"a refused push wrote to the registry: {writes}"

    digest = pushed_digest(cli("push", "--force", target))
    r = p.get_manifest(unique_repo, "v1")
    assert sha256_of(r.content) == digest
    assert entries(r.content)[arm64.digest]["platform"] == {"architecture": "s390x", "os": "linux"}


def test_duplicate_platforms_refused(cli, registry, library_repos, docker_repos, unique_repo, probe, one_line_error):
    target = registry.ref(unique_repo, "v1")
    ok(cli("create", target, library_repos["amd64"].ref, docker_repos["amd64"], library_repos["s390x"].ref))
    one_line_error(cli("push", target), 2, "duplicate platform linux/amd64")
    assert probe(registry).manifest_status(unique_repo, "v1") == 404

    # annotating one of them into a platform nobody else has, truthfully, is not possible:
    # the remedy is to drop one; rebuild the list without the duplicate and it pushes
    ok(cli("rm", target))
    ok(cli("create", target, library_repos["amd64"].ref, library_repos["s390x"].ref))
    pushed_digest(cli("push", target))


def test_index_annotations_need_oci(cli, registry, docker_repos, unique_repo, probe, one_line_error):
    target = registry.ref(unique_repo, "v1")
    ok(cli("create", target, docker_repos["amd64"], docker_repos["arm64"]))
    ok(cli("annotate", target, docker_repos["amd64"], "--index-annotation", "org.opencontainers.image.source=https://example.com/x"))
    p = probe(registry)
    one_line_error(cli("push", target), 2, "index annotations")
    assert p.manifest_status(unique_repo, "v1") == 404

    digest = pushed_digest(cli("push", "--format", "oci", target))
    r = p.get_manifest(unique_repo, "v1")
    doc = json.loads(r.content)
    assert sha256_of(r.content) == digest
    assert doc["mediaType"] == OCI_INDEX
    assert doc["annotations"] == {"org.opencontainers.image.source": "https://example.com/x"}


# ---------------------------------------------------------------------------------------------
# 6. tags, idempotence, purge, rm, amend


def test_push_tags_are_idempotent(cli, registry, library_repos, unique_repo, probe, tmp_home):
    target = registry.ref(unique_repo, "1.2.3")
    ok(cli("create", target, library_repos["amd64"].ref, library_repos["arm64"].ref))
    p = probe(registry)
    digest = pushed_digest(cli("push", "--tag", "1.2", "--tag", "1", "-t", "latest", target))
    for tag in ("1.2.3", "1.2", "1", "latest"):
        assert p.tag_digest(unique_repo, tag) == digest, tag

    mark = p.mark()
    rc, out, err = cli("push", "-t", "1.2", "-t", "1", "-t", "latest", target)
    assert pushed_digest((rc, out, err)) == digest
    assert "unchanged" in err, err
    puts = [r for r in p.requests(since=mark) if r.method in ("PUT", "POST", "PATCH")]
    assert puts == [], f"an identical push wrote to the registry: {puts}"

    assert json.loads(ok(cli("inspect", "--json", target)))["local"] is True
    assert pushed_digest(cli("push", "--purge", target)) == digest
    doc = json.loads(ok(cli("inspect", "--json", target)))
    assert doc["local"] is False and doc["digest"] == digest, "--purge left the draft behind"
    assert not any(tmp_home.drafts.rglob("*.json")), "--purge left a draft file behind"


def test_rm_create_amend(cli, registry, library_repos, unique_repo, one_line_error):
    target = registry.ref(unique_repo, "x")
    other = registry.ref(unique_repo, "y")
    ok(cli("create", target, library_repos["amd64"].ref))
    ok(cli("create", other, library_repos["amd64"].ref))

    one_line_error(cli("create", target, library_repos["arm64"].ref), 2, "already exists", "--amend")
    out = ok(cli("create", "--amend", target, library_repos["arm64"].ref, library_repos["s390x"].ref))
    assert "3 entries" in out
    doc = json.loads(ok(cli("inspect", "--json", target)))
    assert {m["digest"] for m in doc["manifests"]} == {library_repos[a].digest for a in ("amd64", "arm64", "s390x")}

    ok(cli("rm", target, other))
    one_line_error(cli("inspect", target), 4)  # neither a draft nor in the registry
    line = one_line_error(cli("rm", target), 4, "no local manifest list")
    assert unique_repo in line
    one_line_error(cli("push", target), 4, "no local manifest list")


# ---------------------------------------------------------------------------------------------
# 7. children on another registry


def test_children_copied_across_registries(cli, registry, registry_factory, library_repos, unique_repo, probe):
    other = registry_factory()
    target = other.ref(unique_repo, "v1")
    arches = ("amd64", "arm64", "ppc64el")
    ok(cli("create", target, *[library_repos[a].ref for a in arches]))
    digest = pushed_digest(cli("push", target))

    p = probe(other)
    r = p.get_manifest(unique_repo, "v1")
    assert r.status_code == 200 and sha256_of(r.content) == digest
    assert set(entries(r.content)) == {library_repos[a].digest for a in arches}
    p.assert_complete(unique_repo, r.content)
    log = p.requests()
    assert not [x for x in log if "mount=" in x.query], "mount attempted across registries"
    blob_puts = [x for x in log if x.method == "PUT" and "/blobs/uploads/" in x.path and x.status == 201]
    assert len(blob_puts) == 2 * len(arches)


# ---------------------------------------------------------------------------------------------
# 10. bad inputs


@pytest.mark.parametrize(
    "args, code, text",
    [
        (["inspect", "127.0.0.1:5000/Upper/Case:1"], 2, "Upper/Case"),
        (["inspect", "127.0.0.1:5000/repo@sha256:xyz"], 2, "sha256:xyz"),
        (["create", "127.0.0.1:5000/t/list:1", "127.0.0.1:5000/repo@sha256:abc"], 2, "sha256:abc"),
        (["create", "127.0.0.1:5000/t/list:bad tag", "127.0.0.1:5000/repo:1"], 2, "bad tag"),
        (["push", "127.0.0.1:5000/t/never-created:1"], 4, "no local manifest list"),
        (["inspect", "127.0.0.1:5000/repo:"], 2, "repo:"),
        (["create", "127.0.0.1:5000/t/list:1"], 2, "required"),
    ],
)
def test_bad_inputs(cli, args, code, text, one_line_error):
    one_line_error(cli(*args), code, text)


def test_bad_annotate_inputs(cli, registry, library_repos, unique_repo, one_line_error, probe):
    target = registry.ref(unique_repo, "v1")
    amd64 = library_repos["amd64"].ref
    ok(cli("create", target, amd64))
    one_line_error(cli("annotate", target, amd64, "--annotation", "novalue"), 2, "KEY=VALUE")
    one_line_error(cli("annotate", target, amd64, "--arch", "arm64", "--variant", "v7"), 2, "arm64")
    one_line_error(cli("annotate", target, library_repos["s390x"].ref, "--arch", "s390x"), 2, "not in the list")
    one_line_error(cli("annotate", registry.ref(unique_repo, "nope"), amd64, "--os", "linux"), 4, "no local manifest list")
    one_line_error(cli("push", "-t", "not a tag!", target), 2, "not a tag!")
    assert probe(registry).manifest_status(unique_repo, "v1") == 404, "pushed despite a bad --tag"
    # nothing above changed the draft
    doc = json.loads(ok(cli("inspect", "--json", target)))
    assert doc["manifests"][0]["platform"] == {"architecture": "amd64", "os": "linux"}
    assert "annotations" not in doc["manifests"][0]


def test_registry_answering_html_500(cli, html_500, one_line_error, registry, library_repos, unique_repo):
    started = time.monotonic()
    line = one_line_error(cli("inspect", f"{html_500.host}/some/repo:1"), None, "500")
    assert "<" not in line, f"HTML leaked into the error: {line}"
    assert "Internal Server Error" in line
    assert time.monotonic() - started < 60
    assert 1 <= html_500.hits <= 10, f"retries unbounded: {html_500.hits} requests"

    # pushing a list into the broken registry: one line, nothing half-done locally
    target = f"{html_500.host}/{unique_repo}:1"
    ok(cli("create", target, library_repos["amd64"].ref))
    one_line_error(cli("push", target), None, "500")
    assert json.loads(ok(cli("inspect", "--json", target)))["local"] is True
