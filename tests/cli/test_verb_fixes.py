"""Small promises of the list verbs: os-features accumulate, flattening keeps index annotations,
no lock file outlives its draft, and a contradiction says which field differs."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import ok, pushed_digest, sha256_of
from tests.support.content import DOCKER_CONFIG, DOCKER_MANIFEST, Content, Pushed, config

ANNOTATIONS = {"org.opencontainers.image.source": "https://example.com/src", "org.example.team": "blue"}


@pytest.fixture(scope="module")
def images(registry) -> dict[str, Pushed]:
    """linux/amd64, linux/arm64 (OCI and Docker), windows/amd64 10.0.20348.2, all in fix/src."""
    c = Content(registry, "fix/src")
    docker = {
        "config_type": DOCKER_CONFIG,
        "media_type": DOCKER_MANIFEST,
        "layers": [(b"docker layer", "application/vnd.docker.image.rootfs.diff.tar.gzip", {})],
    }
    out = {
        "amd64": c.image(config("linux", "amd64"), tag="amd64"),
        "arm64": c.image(config("linux", "arm64"), tag="arm64"),
        "docker-amd64": c.image(config("linux", "amd64"), tag="docker-amd64", **docker),
        "docker-arm64": c.image(config("linux", "arm64"), tag="docker-arm64", **docker),
        "windows": c.image(config("windows", "amd64", **{"os.version": "10.0.20348.2"}), tag="windows"),
    }
    plat = {"amd64": ("linux", "amd64"), "arm64": ("linux", "arm64")}

    def index(tag: str, children: list[str], annotations: dict[str, str]) -> Pushed:
        entries = [out[k].descriptor(platform={"architecture": plat[k.split("-")[-1]][1], "os": "linux"}) for k in children]
        return c.index(entries, tag=tag, annotations=annotations)

    out["annotated"] = index("annotated", ["amd64", "arm64"], ANNOTATIONS)
    out["annotated-docker"] = index("annotated-docker", ["docker-amd64", "docker-arm64"], ANNOTATIONS)
    out["other-team"] = index("other-team", ["amd64"], {"org.example.team": "red", "org.example.extra": "x"})
    c.close()
    return out


def _draft(cli, target: str) -> dict:
    return json.loads(ok(cli("inspect", "--json", target)))


# ---- annotate --os-features ------------------------------------------------------------------


def test_os_features_accumulate_as_docker_does(cli, registry, images, unique_repo):
    target = registry.ref(unique_repo, "1")
    amd64 = images["amd64"].ref
    ok(cli("create", target, amd64))
    ok(cli("annotate", target, amd64, "--os-features", "a", "--os-features", "b"))
    assert _draft(cli, target)["manifests"][0]["platform"]["os.features"] == ["a", "b"]
    ok(cli("annotate", target, amd64, "--os-features", "c,d", "--os-features", "a"))  # added once each, kept
    assert _draft(cli, target)["manifests"][0]["platform"]["os.features"] == ["a", "b", "c", "d"]
    ok(cli("annotate", target, amd64, "--os-features", "", "--os-features", "e"))  # '' clears first
    assert _draft(cli, target)["manifests"][0]["platform"]["os.features"] == ["e"]
    ok(cli("annotate", target, amd64, "--os-features", ""))
    assert "os.features" not in _draft(cli, target)["manifests"][0]["platform"]


# ---- flattening keeps a list's index annotations ----------------------------------------------


def test_flattening_a_list_keeps_its_index_annotations(cli, registry, images, unique_repo, probe):
    target = registry.ref(unique_repo, "flat")
    ok(cli("create", target, images["annotated"].ref))
    assert _draft(cli, target)["annotations"] == ANNOTATIONS
    digest = pushed_digest(cli("push", target))
    r = probe(registry).get_manifest(unique_repo, "flat")
    assert sha256_of(r.content) == digest
    assert json.loads(r.content)["annotations"] == ANNOTATIONS


def test_annotations_a_docker_list_cannot_carry_are_refused_as_push_refuses_any(
    cli, registry, images, unique_repo, probe, one_line_error
):
    target = registry.ref(unique_repo, "flat")
    ok(cli("create", target, images["annotated-docker"].ref))  # Docker children: a Docker list by default
    one_line_error(cli("push", target), 2, "cannot carry index annotations", "--format oci")
    assert probe(registry).manifest_status(unique_repo, "flat") == 404
    pushed_digest(cli("push", "--format", "oci", target))
    assert json.loads(probe(registry).get_manifest(unique_repo, "flat").content)["annotations"] == ANNOTATIONS


def test_a_conflicting_annotation_keeps_the_first_value_and_says_so(cli, registry, images, unique_repo):
    target = registry.ref(unique_repo, "two")
    rc, _, err = cli("create", target, images["annotated"].ref, images["other-team"].ref)
    assert rc == 0, err
    assert "manifesto: warning: index annotation not kept key=org.example.team" in err and "red" in err, err
    assert _draft(cli, target)["annotations"] == {**ANNOTATIONS, "org.example.extra": "x"}


# ---- lock files ---------------------------------------------------------------------------------


def test_no_lock_file_outlives_its_draft(cli, registry, images, unique_repo, tmp_home, one_line_error):
    def leftovers() -> list[str]:
        return sorted(p.name for p in tmp_home.drafts.rglob("*.lock")) if tmp_home.drafts.exists() else []

    missing = registry.ref(unique_repo, "never-created")
    one_line_error(cli("rm", missing), 4, "no local manifest list")
    one_line_error(cli("annotate", missing, images["amd64"].ref, "--os", "linux"), 4, "no local manifest list")
    one_line_error(cli("push", "--purge", missing), 4, "no local manifest list")
    assert leftovers() == []

    target = registry.ref(unique_repo, "1")
    ok(cli("create", target, images["amd64"].ref))
    ok(cli("annotate", target, images["amd64"].ref, "--os-version", "1"))
    ok(cli("rm", target))
    assert leftovers() == []
    ok(cli("create", target, images["amd64"].ref))
    pushed_digest(cli("push", "--purge", target))
    assert leftovers() == []
    assert not list(tmp_home.drafts.rglob("*.json"))


# ---- contradictions name the field that differs ---------------------------------------------------


def test_an_os_version_contradiction_names_the_os_version(cli, registry, images, unique_repo, one_line_error):
    target = registry.ref(unique_repo, "win")
    ok(cli("create", target, images["windows"].ref))
    ok(cli("annotate", target, images["windows"].ref, "--os-version", "10.0.17763.1"))
    one_line_error(
        cli("push", target),
        2,
        "annotated as windows/amd64 (os.version 10.0.17763.1) but its config says windows/amd64 (os.version 10.0.20348.2)",
    )
