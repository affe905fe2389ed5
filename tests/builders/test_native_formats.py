"""The native builder's output goes wherever any builder's goes: `format: docker` lists and a
split publish (push-by-digest on separate runners, then assemble), with no tools on PATH."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from manifesto.oci import mediatype
from tests.builders.test_native_builder import ARCH, TWO, _no_tools_path, _push_base, _write
from tests.publish.conftest import State
from tests.support import ArchImage, Registry, inspect_raw, require


@pytest.fixture
def state(tmp_path: Path) -> State:
    return State.make(tmp_path / "state")


def _project(root: Path, registry: Registry, repo: str, fmt: str) -> Path:
    _write(
        root,
        {
            "Dockerfile": f"""\
                FROM {registry.host}/native-fmt-base:1
                ARG TARGETARCH
                COPY msg-${{TARGETARCH}}/msg /etc/
                CMD ["/bin/sh"]
                """,
            "msg-amd64/msg": "amd64\n",
            "msg-arm64/msg": "arm64\n",
            "platforms.yaml": f"""\
                image: {registry.ref(repo)}
                tags: ["1"]
                format: {fmt}
                build: {{builder: native}}
                platforms: [{", ".join(TWO)}]
                """,
        },
    )
    return root / "platforms.yaml"


def _get(registry: Registry, repo: str, digest: str) -> bytes:
    with httpx.Client(base_url=registry.url) as c:
        r = c.get(f"/v2/{repo}/manifests/{digest}", headers={"Accept": mediatype.ACCEPT_MANIFESTS})
        assert r.status_code == 200, r.text
        return r.content


def test_format_docker_gives_a_docker_list_of_docker_images(
    tmp_path: Path, registry: Registry, arch_images: dict[str, ArchImage], state: State
) -> None:
    _push_base(registry, arch_images, "native-fmt-base")
    spec = _project(tmp_path / "p", registry, "native-docker", "docker")
    rc, _, err = state.run("publish", "-f", spec, env={"PATH": _no_tools_path(tmp_path)})
    assert rc == 0, err
    index = json.loads(inspect_raw(registry.ref("native-docker", "1")))
    assert index["mediaType"] == mediatype.DOCKER_LIST
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64", "arm64"]
    for entry in index["manifests"]:
        assert entry["mediaType"] == mediatype.DOCKER_MANIFEST
        child = json.loads(_get(registry, "native-docker", entry["digest"]))
        assert child["mediaType"] == mediatype.DOCKER_MANIFEST
        assert child["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
        assert {layer["mediaType"] for layer in child["layers"]} == {"application/vnd.docker.image.rootfs.diff.tar.gzip"}
    docker = require("docker")
    shown = subprocess.run(
        [docker, "manifest", "inspect", "--insecure", registry.ref("native-docker", "1")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["mediaType"] == mediatype.DOCKER_LIST


def test_a_split_native_publish_gives_the_index_of_a_single_one(
    tmp_path: Path, registry: Registry, arch_images: dict[str, ArchImage]
) -> None:
    _push_base(registry, arch_images, "native-fmt-base")
    path = {"PATH": _no_tools_path(tmp_path)}
    single = _project(tmp_path / "single", registry, "native-single", "oci")
    rc, out, err = State.make(tmp_path / "s0").run("publish", "-f", single, env=path)
    assert rc == 0, err
    whole = out.strip().splitlines()[-1]

    split = _project(tmp_path / "split", registry, "native-split", "oci")
    files = []
    for i, platform in enumerate(TWO):
        digest_file = tmp_path / f"{ARCH[platform]}.json"
        rc, _, err = State.make(tmp_path / f"r{i}").run(
            "publish", "-f", split, "--platform", platform, "--push-by-digest", "--digest-file", digest_file, env=path
        )
        assert rc == 0, err
        files.append(digest_file)
    rc, out, err = State.make(tmp_path / "a").run("assemble", "-f", split, *reversed(files), env=path)
    assert rc == 0, err
    assert out.strip().splitlines()[-1] == whole  # same children, same order, same index bytes
