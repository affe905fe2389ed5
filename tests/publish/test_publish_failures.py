"""What a publish refuses, and what it leaves behind when it does: nothing under a tag.

A platform whose RUN step fails fails the whole publish with that platform's log tail; a
platform already pushed by digest (while the other built) stays untagged and is named. An assemble-only entry whose image config contradicts the platform it is
listed as is refused and no index is pushed. Spec problems (unknown builder, missing
Dockerfile) are one `file:line` error with exit 2; buildx without a docker engine says so.
`doctor` says ok when all is well, and names `manifesto login` when the registry wants it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.publish.conftest import AccessLog, State, one_error_line, spec_file, stored_writes, tags_of
from tests.support import ArchImage, Registry, build_image, push_image, skopeo
from tests.support.images import MT_OCI_INDEX, _write_blob, canonical_json

pytestmark = pytest.mark.slow

MARKER = "manifesto-test-failure-marker"
FAILING_DOCKERFILE = f"""\
FROM scratch
ARG TARGETARCH
COPY rootfs-${{TARGETARCH}}/ /
RUN ["/bin/busybox", "sh", "-c", "echo about to fail on $(uname -m); echo {MARKER} >&2; exit 3"]
"""


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> State:
    """One machine's state shared by this module's publishes (warm buildah storage)."""
    return State.make(tmp_path_factory.mktemp("failures-state"))


def assert_nothing_pushed(registry: Registry, repo: str, requests: list) -> None:
    assert tags_of(registry, repo) in (None, []), "a tag was pushed"
    assert [r for r in requests if r.is_tag_put] == []


# ---- a failing build ------------------------------------------------------------------------------


def test_one_failing_platform_fails_the_publish_and_nothing_is_pushed(
    hello: Path, registry: Registry, state: State, tmp_path: Path
) -> None:
    repo = "fails/hello"
    spec = spec_file(
        tmp_path,
        f"""\
        image: {registry.ref(repo)}
        tags: ["1.0", "latest"]
        build:
          context: {hello}
        platforms:
          - linux/amd64
          - platform: linux/arm64/v8
            dockerfile: {tmp_path / "Dockerfile.fail"}
        """,
        Dockerfile_fail=FAILING_DOCKERFILE,
    )
    log = AccessLog(registry)
    mark = log.mark()
    rc, out, err = state.run("publish", "-f", spec, "-q", cwd=tmp_path)
    assert rc == 1, err
    assert out == ""  # no index digest
    first = next(line for line in err.splitlines() if line.startswith("manifesto: error:"))
    assert "linux/arm64/v8" in first and "build failed" in first
    tail = err.split(first, 1)[1]
    assert MARKER in tail and "about to fail on aarch64" in tail  # the tail of that platform's log
    assert "Traceback" not in err
    requests = log.since(mark)
    assert_nothing_pushed(registry, repo, requests)  # no tag, no index
    # amd64 may have been pushed by digest while arm64 built: then the error names it
    for put in [r for r in requests if r.is_manifest_put]:
        assert f"linux/amd64 {put.manifest_ref()}" in first, (first, put)
    assert tags_of(registry, f"arm64v8/{repo.split('/')[-1]}") is None


# ---- a lying image --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def liars(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Images in `registry`: an honest amd64, an arm64 busybox whose config says amd64, and an
    index whose entry says linux/arm64/v8 for an image whose config says linux/amd64."""
    base = tmp_path_factory.mktemp("liars")
    honest = build_image("amd64", base / "honest")
    lying = build_image("arm64", base / "liar", config_overrides={"architecture": "amd64", "variant": None})
    assert json.loads(lying.config_bytes)["architecture"] == "amd64"
    refs = {
        "honest": push_image(honest, "honest:1", registry),
        "liar": push_image(lying, "liar:1", registry),
        "lying-index": push_lying_index(honest, base / "index", registry),
    }
    return refs


def push_lying_index(image: ArchImage, layout: Path, registry: Registry) -> str:
    """An OCI index whose only entry claims linux/arm64/v8 for `image` (an amd64 config)."""
    shutil.copytree(image.layout, layout)
    descriptor = dict(image.descriptor(), platform={"architecture": "arm64", "os": "linux", "variant": "v8"})
    index = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [descriptor]})
    digest = _write_blob(layout, index)
    ref = {"mediaType": MT_OCI_INDEX, "digest": digest, "size": len(index),
           "annotations": {"org.opencontainers.image.ref.name": "1"}}
    (layout / "index.json").write_bytes(canonical_json({"schemaVersion": 2, "manifests": [ref]}))
    dest = registry.ref("lying-index", "1")
    skopeo("copy", "--quiet", "--all", "--preserve-digests", "--dest-tls-verify=false",
           f"oci:{layout}:1", f"docker://{dest}")
    return dest


@pytest.mark.parametrize("liar", ["liar", "lying-index"])
def test_an_image_whose_config_contradicts_its_entry_is_refused(
    registry: Registry, state: State, liars: dict[str, str], tmp_path: Path, liar: str
) -> None:
    repo = f"refused/{liar}"
    spec = spec_file(
        tmp_path,
        f"""\
        image: {registry.ref(repo)}
        tags: ["1"]
        platforms:
          - image: {liars["honest"]}
          - image: {liars[liar]}
            platform: linux/arm64/v8
        """,
    )
    log = AccessLog(registry)
    mark = log.mark()
    rc, out, err = state.run("publish", "-f", spec, cwd=tmp_path)
    assert rc == 1, err
    line = one_error_line(err)
    assert liar in line and "linux/arm64/v8" in line
    assert "linux/amd64" in line  # says what the config really is
    assert out == ""
    assert_nothing_pushed(registry, repo, log.since(mark))


# ---- spec and builder errors ------------------------------------------------------------------------


def test_unknown_builder_is_a_file_line_error(registry: Registry, state: State, hello: Path, tmp_path: Path) -> None:
    spec = spec_file(
        tmp_path,
        f"""\
        image: {registry.ref("ub")}
        tags: ["1"]
        build:
          context: {hello}
          builder: kaniko
        platforms: [linux/amd64]
        """,
    )
    rc, _, err = state.run("publish", "-f", spec, cwd=tmp_path)
    assert rc == 2
    line = one_error_line(err)
    assert re.match(r"manifesto: error: (\S*/)?platforms\.yaml:5: unknown builder 'kaniko'", line), line
    assert "buildah" in line  # says what is allowed


def test_missing_dockerfile_is_a_file_line_error(registry: Registry, state: State, hello: Path, tmp_path: Path) -> None:
    spec = spec_file(
        tmp_path,
        f"""\
        image: {registry.ref("md")}
        tags: ["1"]
        build:
          context: {hello}
        platforms:
          - linux/amd64
          - platform: linux/arm64/v8
            dockerfile: Dockerfile.missing
        """,
    )
    log = AccessLog(registry)
    mark = log.mark()
    rc, _, err = state.run("publish", "-f", spec, cwd=tmp_path)
    assert rc == 2
    line = one_error_line(err)
    assert re.match(r"manifesto: error: (\S*/)?platforms\.yaml:8: Dockerfile not found: \S*Dockerfile\.missing", line), line
    assert log.since(mark) == []


def docker_engine_reachable() -> bool:
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def test_buildx_without_a_docker_engine_is_a_clear_error(
    registry: Registry, state: State, hello: Path, tmp_path: Path
) -> None:
    if docker_engine_reachable():
        pytest.skip("a docker engine is reachable here; this test is about machines without one")
    spec = spec_file(
        tmp_path,
        f"""\
        image: {registry.ref("bx")}
        tags: ["1"]
        build:
          context: {hello}
          builder: buildx
        platforms: [linux/amd64]
        """,
    )
    log = AccessLog(registry)
    mark = log.mark()
    rc, _, err = state.run("publish", "-f", spec, cwd=tmp_path)
    assert rc == 1
    assert "Traceback" not in err
    first = next(line for line in err.splitlines() if line.startswith("manifesto: error:"))  # after the phase lines
    assert first.startswith("manifesto: error: linux/amd64:") and "buildx" in first, err
    assert re.search(r"docker (engine|daemon)|docker.*(not (installed|found))", first), first
    assert "--builder buildah" in err  # the way out
    assert stored_writes(log.since(mark)) == []


# ---- doctor -------------------------------------------------------------------------------------------


def test_doctor_says_ok_for_a_reachable_registry(registry: Registry, state: State, hello: Path) -> None:
    matrix = hello.parent.parent / "platforms.yaml"
    rc, out, err = state.run("doctor", "-f", matrix, "--image", registry.ref("x"), cwd=matrix.parent)
    assert rc == 0, out + err
    assert out.startswith("ok")
    for platform in ("linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/ppc64le", "linux/s390x"):
        assert platform in out


def test_doctor_names_the_login_fix_for_a_registry_that_wants_credentials(
    htpasswd_registry: Registry, state: State, hello: Path
) -> None:
    matrix = hello.parent.parent / "platforms.yaml"
    rc, out, err = state.run("doctor", "-f", matrix, "--image", htpasswd_registry.ref("x"), cwd=matrix.parent)
    assert rc == 1, out + err
    problems = [line for line in out.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1, out
    assert htpasswd_registry.host in problems[0]
    assert f"fix: manifesto login {htpasswd_registry.host}" in out
    assert "doctor --fix" not in out  # --fix cannot log in for you
    assert "Traceback" not in err


def test_doctor_wants_push_access_on_a_token_registry(token_registry: Registry, hello: Path, tmp_path: Path) -> None:
    """A token registry hands anonymous pull tokens to anyone: only asking for push on the
    target repository tells whether the stored credentials can publish."""
    machine = State.make(tmp_path / "machine")  # no logins yet
    matrix = hello.parent.parent / "platforms.yaml"
    args = ("doctor", "-f", matrix, "--image", token_registry.ref("doctor/hello"))
    rc, out, err = machine.run(*args, cwd=matrix.parent)
    assert rc == 1, out + err
    [problem] = [line for line in out.splitlines() if line.startswith("problem:")]
    assert token_registry.host in problem and "doctor/hello" in problem
    assert f"fix: manifesto login {token_registry.host}" in out
    assert "Traceback" not in err

    rc, _, err = machine.run(
        "login", token_registry.host, "-u", token_registry.username, "--password-stdin", input=token_registry.password
    )
    assert rc == 0, err
    rc, out, err = machine.run(*args, cwd=matrix.parent)
    assert rc == 0, out + err
    assert out.startswith("ok") and "doctor/hello" in out
    granted = [r for r in token_registry.token_server.requests
               if r.wants("doctor/hello", "pull", "push") and "push" in r.granted.get("repository:doctor/hello", ())]
    assert granted, "doctor never got a push token for the repository"  # fmt: skip


def test_doctor_image_is_checked_without_a_platforms_yaml(htpasswd_registry: Registry, state: State, tmp_path: Path) -> None:
    empty = tmp_path / "no-matrix-here"
    empty.mkdir()
    rc, out, err = state.run("doctor", "--image", htpasswd_registry.ref("x"), cwd=empty)
    assert rc == 1, out + err
    assert f"fix: manifesto login {htpasswd_registry.host}" in out


def test_doctor_says_cannot_reach_for_a_registry_that_is_not_there(state: State, hello: Path) -> None:
    from tests.support import free_port

    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    matrix = hello.parent.parent / "platforms.yaml"
    rc, out, err = state.run("doctor", "-f", matrix, "--image", f"{host}/x", cwd=matrix.parent)
    assert rc == 1, out + err
    [problem] = [line for line in out.splitlines() if line.startswith("problem:")]
    assert f"cannot reach {host}" in problem
    assert "manifesto login" not in out  # logging in would not help
    assert "Traceback" not in err


@pytest.mark.parametrize("second", ["liar", "duplicate"])
def test_a_refused_publish_moves_no_arch_tag_either(
    hello: Path, registry: Registry, state: State, liars: dict[str, str], tmp_path: Path, second: str
) -> None:
    """A built platform with arch_tag next to an entry that gets the publish refused (a lying
    image; an image whose config makes a second linux/amd64): no index, and the built
    platform's docker-library tag (amd64/<name>:1) must not move either."""
    name = f"mixed-{second}"
    entry = (
        f"- image: {liars['liar']}\n            platform: linux/arm64/v8"
        if second == "liar"
        else f"- image: {liars['honest']}"
    )
    spec = spec_file(
        tmp_path,
        f"""\
        image: {registry.ref("refused/" + name)}
        tags: ["1"]
        arch_tag: "{{registry}}/{{arch_ns}}/{{name}}:{{tag}}"
        build:
          context: {hello}
        platforms:
          - linux/amd64
          {entry}
        """,
    )
    log = AccessLog(registry)
    mark = log.mark()
    rc, out, err = state.run("publish", "-f", spec, "-q", cwd=tmp_path)
    assert rc == 1, err
    errors = [line for line in err.splitlines() if line.startswith("manifesto: error:")]
    assert len(errors) == 1 and ("liar" in errors[0] or "duplicate platform linux/amd64" in errors[0]), err
    assert out == ""
    requests = log.since(mark)
    assert [r for r in requests if r.is_tag_put] == [], "a tag moved although the publish was refused"
    assert tags_of(registry, f"amd64/{name}") in (None, [])
    assert tags_of(registry, f"refused/{name}") in (None, [])
