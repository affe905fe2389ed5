"""`manifesto publish` to several targets: an `image:` list in platforms.yaml, or --image repeated.

examples/hello-native (the native builder: fast, no qemu) publishes amd64 and arm64/v8 to two
real registries. The plan `--dry-run` prints names both targets; a publish puts the same index
under the same tags in both, says so per target on stderr and in the --report; a mirror that
answers 500 to every manifest PUT fails the run (one error line naming the children pushed
untagged), the report lists both targets, and neither registry has a tag.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli.conftest import hello_native
from tests.publish.conftest import State, one_error_line, tag_held
from tests.support import Registry
from tests.support.faultproxy import FaultProxy, Respond

TAGS = ("1.0.0", "latest")



@pytest.fixture
def second(registry_factory) -> Registry:
    return registry_factory()


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A copy of examples/hello-native for amd64 and arm64/v8; its image: line left to the test."""
    return hello_native(tmp_path)


def _targets(spec: Path, *images: str) -> None:
    text = spec.read_text()
    spec.write_text(re.sub(r"(?m)^image: .*$", "image:\n" + "".join(f"  - {i}\n" for i in images).rstrip(), text))


def test_an_image_list_is_planned_and_published_to_every_target(
    tmp_path: Path, registry: Registry, second: Registry, example: Path, unique_repo: str
) -> None:
    first, mirror = registry.ref(unique_repo), second.ref(unique_repo + "-mirror")
    _targets(example, first, mirror)
    state = State.make(tmp_path / "state")

    rc, out, err = state.run("publish", "-f", example, "--dry-run")
    assert rc == 0, err
    assert re.search(rf"targets\s+{re.escape(first)}\n\s+{re.escape(mirror)}\n", out), out
    assert f"{first}@<digest>" in out and f"{mirror}@<digest>" in out

    report = tmp_path / "report.json"
    rc, out, err = state.run("publish", "-f", example, "--report", report)
    assert rc == 0, err
    digest = out.strip().splitlines()[-1]
    assert f"index {digest} -> {first} tags: 1.0.0, latest" in err
    assert f"index {digest} -> {mirror} tags: 1.0.0, latest" in err
    for host, repo in ((registry.host, unique_repo), (second.host, unique_repo + "-mirror")):
        assert [tag_held(host, repo, t) for t in TAGS] == [digest, digest]
    data = json.loads(report.read_text())
    assert data["target"] == first and data["index"]["digest"] == digest
    assert data["targets"] == [
        {"target": first, "tagsMoved": list(TAGS), "tagsUnchanged": []},
        {"target": mirror, "tagsMoved": list(TAGS), "tagsUnchanged": []},
    ]


def test_image_repeated_on_the_command_line_publishes_to_each(
    tmp_path: Path, registry: Registry, second: Registry, example: Path, unique_repo: str
) -> None:
    state = State.make(tmp_path / "state")
    rc, out, err = state.run(
        "publish", "-f", example, "-q", "--image", registry.ref(unique_repo), "--image", second.ref(unique_repo)
    )
    assert rc == 0, err
    digest = out.strip()
    for host in (registry.host, second.host):
        assert [tag_held(host, unique_repo, t) for t in TAGS] == [digest, digest]


def test_a_failing_mirror_fails_the_run_and_moves_no_tag_anywhere(
    tmp_path: Path, registry: Registry, second: Registry, example: Path, unique_repo: str
) -> None:
    state = State.make(tmp_path / "state")
    report = tmp_path / "report.json"
    with FaultProxy(second.host) as proxy:
        proxy.add(Respond(500, headers={"Retry-After": "0"}), method="PUT", path=r"/manifests/")
        _targets(example, registry.ref(unique_repo), proxy.ref(unique_repo))
        rc, out, err = state.run("publish", "-f", example, "-q", "--report", report)

    assert rc == 1, err
    line = one_error_line(err)
    assert "HTTP 500" in line and "pushed by digest, untagged:" in line and "no tag moved" in line, line
    assert {p for p in re.findall(r"(linux/[a-z0-9/]+) sha256:", line)} == {"linux/amd64", "linux/arm64/v8"}
    for host in (registry.host, second.host):
        assert [tag_held(host, unique_repo, t) for t in TAGS] == [None, None]
    data = json.loads(report.read_text())
    assert data["status"] == "failed" and data["targets"] == [
        {"target": registry.ref(unique_repo)},
        {"target": proxy.ref(unique_repo)},
    ]


def test_doctor_asks_every_target_for_push_access(
    tmp_path: Path, registry: Registry, registry_factory, example: Path, unique_repo: str
) -> None:
    guarded = registry_factory("htpasswd")
    first, mirror = registry.ref(unique_repo), guarded.ref(unique_repo + "-mirror")
    _targets(example, first, mirror)
    state = State.make(tmp_path / "state")
    rc, out, err = state.run("doctor", "-f", example, "--platform", "linux/amd64")
    assert rc == 1, out + err
    assert f"registry {guarded.host}: cannot push to {mirror}" in out and f"manifesto login {guarded.host}" in out
    assert f"cannot push to {first}" not in out
