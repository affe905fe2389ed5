"""Peers check manifesto, and manifesto checks peers.

Lists manifesto pushes are read by `skopeo inspect --raw` and `docker manifest inspect`
(the docker CLI only; no daemon) and must agree on bytes, digests and platforms. Lists skopeo
(`copy --all` of an OCI layout index) and buildah (`manifest create/add/push --all`) push are
read by `manifesto inspect`, whose `--raw` must be byte-identical to what skopeo reads.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support import ARCHES, inspect_raw, push_image, require, run, skopeo
from tests.support.cli import DOCKER_LIST, OCI_INDEX, ok, plat, sha256_of


def summary(raw: bytes) -> set[tuple[str, str]]:
    """{(digest, os/arch[/variant])} of an index."""
    return {(m["digest"], plat(m["platform"])) for m in json.loads(raw)["manifests"]}


def docker_manifest_inspect(ref: str, docker_config: Path) -> dict[str, Any]:
    docker = require("docker")
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
    env["DOCKER_CONFIG"] = str(docker_config)
    proc = run([docker, "manifest", "inspect", "--insecure", ref], env=env, timeout=120)
    return json.loads(proc.stdout)


def assert_manifesto_reads(cli, cli_bytes, ref: str, raw: bytes) -> None:
    """manifesto's table, JSON and --raw agree with the bytes a peer pushed."""
    rc, out, err = cli_bytes("inspect", "--raw", ref)
    assert rc == 0, err
    assert out == raw, "manifesto inspect --raw differs from skopeo inspect --raw"
    table = ok(cli("inspect", "--no-trunc", ref))
    assert re.search(rf"^Digest:\s+{sha256_of(raw)}$", table, re.M), table
    for digest, platform in summary(raw):
        assert re.search(rf"^{re.escape(platform)}\s+{digest}\s", table, re.M), f"no row {platform}:\n{table}"
    doc = json.loads(ok(cli("inspect", "--json", ref)))
    assert doc["digest"] == sha256_of(raw)
    assert {(m["digest"], plat(m["platform"])) for m in doc["manifests"]} == summary(raw)


# ---------------------------------------------------------------------------------------------
# peers read what we push


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_skopeo_and_docker_read_our_list(
    cli, registry, library_repos, docker_arch_images, unique_repo, tmp_home, fmt
):
    if fmt == "oci":
        sources = {a: library_repos[a].ref for a in ARCHES}
        images = {a: library_repos[a].image for a in ARCHES}
    else:
        images = {a: docker_arch_images[a] for a in ("amd64", "arm64", "armhf")}
        sources = {a: push_image(img, f"{unique_repo}-src/{a}:1", registry) for a, img in images.items()}
    target = registry.ref(unique_repo, "multi")
    ok(cli("create", target, *sources.values()))
    digest = ok(cli("push", target)).strip().splitlines()[-1]
    expected = {(img.manifest_digest, img.platform) for img in images.values()}

    raw = inspect_raw(target)
    assert sha256_of(raw) == digest
    assert json.loads(raw)["mediaType"] == (OCI_INDEX if fmt == "oci" else DOCKER_LIST)
    assert summary(raw) == expected
    for img in images.values():  # skopeo reads each child from the target repo, byte-exact
        assert inspect_raw(registry.ref(unique_repo, img.manifest_digest)) == img.manifest_bytes

    seen = docker_manifest_inspect(target, tmp_home.docker_config)
    assert seen["mediaType"] == json.loads(raw)["mediaType"]
    assert {(m["digest"], plat(m["platform"])) for m in seen["manifests"]} == expected
    assert {m["size"] for m in seen["manifests"]} == {len(img.manifest_bytes) for img in images.values()}
    child = images["arm64"]
    one = docker_manifest_inspect(registry.ref(unique_repo, child.manifest_digest), tmp_home.docker_config)
    assert one["config"]["digest"] == child.config_digest
    assert [layer["digest"] for layer in one["layers"]] == [child.layer_digest]


# ---------------------------------------------------------------------------------------------
# we read what peers push


def test_we_read_what_skopeo_pushed(cli, cli_bytes, registry, unique_repo, tmp_path, index_layout):
    lay = index_layout(tmp_path / "layout", ["amd64", "armhf", "s390x"])
    ref = registry.ref(unique_repo, "1")
    skopeo("copy", "--all", "--preserve-digests", "--quiet", "--dest-tls-verify=false", lay.oci_ref, f"docker://{ref}")
    raw = inspect_raw(ref)
    assert raw == lay.index_bytes
    assert summary(raw) == {(img.manifest_digest, img.platform) for img in lay.images.values()}
    assert_manifesto_reads(cli, cli_bytes, ref, raw)

    # and it can be re-assembled: the children, flattened, pushed under a new name
    target = registry.ref(unique_repo + "-copy", "1")
    ok(cli("create", target, ref))
    digest = ok(cli("push", target)).strip().splitlines()[-1]
    assert summary(inspect_raw(target)) == summary(raw)
    assert sha256_of(inspect_raw(target)) == digest


def test_we_read_what_buildah_pushed(cli, cli_bytes, registry, arch_images, unique_repo, tmp_path):
    buildah = require("buildah")
    store = ["--storage-driver", "vfs", "--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "runroot")]
    auth = tmp_path / "auth.json"
    auth.write_text("{}")
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE")}
    env.update(REGISTRY_AUTH_FILE=str(auth), HOME=str(tmp_path), XDG_RUNTIME_DIR=str(tmp_path / "xdg"))
    (tmp_path / "xdg").mkdir(mode=0o700)

    def bh(*args: str) -> str:
        return run([buildah, *store, *args], env=env, timeout=180).stdout

    arches = ("amd64", "arm64", "ppc64el", "s390x")
    bh("manifest", "create", "busybox-list")
    for a in arches:
        bh("manifest", "add", "busybox-list", arch_images[a].oci_ref)
    ref = registry.ref(unique_repo, "1")
    bh("manifest", "push", "--all", "--tls-verify=false", "busybox-list", f"docker://{ref}")

    raw = inspect_raw(ref)
    assert summary(raw) == {(arch_images[a].manifest_digest, arch_images[a].platform) for a in arches}
    assert_manifesto_reads(cli, cli_bytes, ref, raw)
    for a in ("arm64", "s390x"):
        img = arch_images[a]
        single = ok(cli("inspect", registry.ref(unique_repo, img.manifest_digest)))
        assert re.search(rf"^Platform:\s+{re.escape(img.platform)}$", single, re.M), single
