"""What `publish` refuses up front, what its dry run says, and what format it writes.

- `--platform` without `--push-by-digest` would move every tag to a partial index: refused
  (exit 2, nothing written) unless `--allow-partial`; `--dry-run` refuses the same way.
- `--dry-run` names the builder that would run (`--builder`) and, with `--push-by-digest`,
  shows neither tags nor arch tags (that run moves none).
- An empty `SOURCE_DATE_EPOCH` is an error, not "unset" (reproducibility silently lost).
- `--report` / `--digest-file` that cannot be written are refused before anything is built.
- `--keep-work` says where the work directory is.
- After a build fails, builds still queued do not start.
- `format: docker`: a Docker manifest list of Docker schema 2 children; an OCI child (here an
  `image:` entry) is refused before any tag moves, as `manifesto push` refuses it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.publish.conftest import (
    DIGEST_LINE,
    FIVE,
    AccessLog,
    State,
    manifest_raw,
    one_error_line,
    sha256,
    spec_file,
    tags_of,
)
from tests.support import ArchImage, Registry, inspect_raw, push_image
from tests.support.images import MT_DOCKER_LIST, MT_DOCKER_MANIFEST

pytestmark = pytest.mark.slow

FAILING_DOCKERFILE = """\
FROM scratch
ARG TARGETARCH
COPY rootfs-${TARGETARCH}/ /
RUN ["/bin/busybox", "sh", "-c", "echo failing on purpose; exit 3"]
"""


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> State:
    """One machine's state for this module (warm buildah storage across its publishes)."""
    return State.make(tmp_path_factory.mktemp("rules-state"))


def five_arch_spec(directory: Path, registry: Registry, repo: str) -> Path:
    """A five-platform matrix with arch_tag aimed at `repo`, for runs that must build nothing."""
    context = directory / "ctx"
    context.mkdir(parents=True, exist_ok=True)
    (context / "Dockerfile").write_text("FROM scratch\n")
    return spec_file(
        directory,
        f"""\
        image: {registry.ref(repo)}
        tags: ["1.0", "latest"]
        arch_tag: "{{registry}}/{{arch_ns}}/{{name}}:{{tag}}"
        build:
          context: {context}
        platforms: [{", ".join(FIVE)}]
        """,
    )


# ---- --platform without --push-by-digest ------------------------------------------------------------


@pytest.mark.parametrize("dry_run", [False, True], ids=["publish", "dry-run"])
def test_a_platform_filter_without_push_by_digest_is_refused(
    registry: Registry, state: State, tmp_path: Path, dry_run: bool
) -> None:
    spec = five_arch_spec(tmp_path, registry, "partial/refused")
    log = AccessLog(registry)
    mark = log.mark()
    extra = ["--dry-run"] if dry_run else []
    rc, out, err = state.run("publish", "-f", spec, "--platform", "linux/arm64/v8", *extra, cwd=tmp_path)
    assert rc == 2, err
    line = one_error_line(err)
    assert "--push-by-digest" in line and "--allow-partial" in line
    assert "linux/amd64" in line  # names what would be left out
    assert out == ""
    assert log.since(mark) == []


def test_allow_partial_dry_run_says_the_index_is_partial(registry: Registry, state: State, tmp_path: Path) -> None:
    spec = five_arch_spec(tmp_path, registry, "partial/allowed")
    rc, out, err = state.run(
        "publish", "-f", spec, "--platform", "linux/s390x", "--allow-partial", "--dry-run", cwd=tmp_path
    )
    assert rc == 0, err
    assert re.search(r"^  partial +only 1 of 5 entries", out, re.MULTILINE), out


# ---- the dry run says what the run does -----------------------------------------------------------


def test_dry_run_names_the_builder_given_on_the_command_line(registry: Registry, state: State, tmp_path: Path) -> None:
    spec = five_arch_spec(tmp_path, registry, "dry/builder")
    rc, out, err = state.run("publish", "-f", spec, "--builder", "podman", "--dry-run", cwd=tmp_path)
    assert rc == 0, err
    assert out.splitlines()[0].endswith("builder podman"), out


def test_dry_run_with_push_by_digest_shows_no_tags(registry: Registry, state: State, tmp_path: Path) -> None:
    spec = five_arch_spec(tmp_path, registry, "dry/bydigest")
    rc, out, err = state.run(
        "publish", "-f", spec, "--platform", "linux/arm64/v8", "--push-by-digest", "--dry-run", cwd=tmp_path
    )
    assert rc == 0, err
    assert f"{registry.ref('dry/bydigest')}@<digest>" in out
    assert "arm64v8/bydigest" not in out  # no arch tag moves in this run
    assert not re.search(r"^  tags ", out, re.MULTILINE)  # and no index tag
    assert "manifesto assemble" in out


# ---- SOURCE_DATE_EPOCH ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dry_run", [False, True], ids=["publish", "dry-run"])
def test_an_empty_source_date_epoch_is_an_error(registry: Registry, state: State, tmp_path: Path, dry_run: bool) -> None:
    spec = five_arch_spec(tmp_path, registry, "epoch/empty")
    log = AccessLog(registry)
    mark = log.mark()
    extra = ["--dry-run"] if dry_run else []
    rc, out, err = state.run("publish", "-f", spec, *extra, env={"SOURCE_DATE_EPOCH": ""}, cwd=tmp_path)
    assert rc == 2, err
    assert "SOURCE_DATE_EPOCH is set but empty" in one_error_line(err)
    assert out == ""
    assert log.since(mark) == []


# ---- outputs that cannot be written -----------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--report", "--digest-file"])
@pytest.mark.parametrize("where", ["a-directory", "under-a-file"])
def test_an_unwritable_output_is_refused_before_building(
    registry: Registry, state: State, tmp_path: Path, flag: str, where: str
) -> None:
    spec = five_arch_spec(tmp_path, registry, "outputs/refused")
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "a-file").write_text("x")
    path = tmp_path / "a-directory" if where == "a-directory" else tmp_path / "a-file" / "out.json"
    by_digest = ["--push-by-digest"] if flag == "--digest-file" else []
    log = AccessLog(registry)
    mark = log.mark()
    rc, out, err = state.run(
        "publish", "-f", spec, "--platform", "linux/amd64", "--allow-partial", *by_digest, flag, path, cwd=tmp_path
    )
    assert rc == 2, err
    line = one_error_line(err)  # no build output: nothing was built
    assert flag in line and str(path) in line
    assert log.since(mark) == []


# ---- builds ---------------------------------------------------------------------------------------------


def test_keep_work_says_where_the_work_is(hello: Path, registry: Registry, state: State, tmp_path: Path) -> None:
    spec = spec_file(
        tmp_path,
        f"""\
        image: {registry.ref("keep/work")}
        tags: ["1"]
        build:
          context: {hello}
        platforms: [linux/amd64]
        """,
    )
    rc, out, err = state.run("publish", "-f", spec, "--keep-work", "-q", cwd=tmp_path)
    assert rc == 0, err[-3000:]
    m = re.search(r"keeping the work directory (\S+)", err)
    assert m, err
    work = Path(m.group(1))
    assert (work / "linux-amd64" / "oci-layout").is_file()  # the platform's OCI layout is there


def test_after_a_failed_build_queued_builds_do_not_start(
    hello: Path, registry: Registry, state: State, tmp_path: Path
) -> None:
    spec = spec_file(
        tmp_path,
        f"""\
        image: {registry.ref("fails/queued")}
        tags: ["1"]
        build:
          context: {hello}
        platforms:
          - platform: linux/amd64
            dockerfile: {tmp_path / "Dockerfile.fail"}
          - linux/arm64/v8
          - linux/s390x
        """,
        Dockerfile_fail=FAILING_DOCKERFILE,
    )
    rc, out, err = state.run("publish", "-f", spec, "-j", "1", cwd=tmp_path)
    assert rc == 1, err
    first = next(line for line in err.splitlines() if line.startswith("manifesto: error:"))
    assert "linux/amd64" in first and "build failed" in first
    assert "[linux/arm64/v8]" not in err and "[linux/s390x]" not in err  # they never ran
    assert "2 queued build(s) not started" in first
    assert out == ""


# ---- format: docker -------------------------------------------------------------------------------------


def test_format_docker_refuses_an_oci_child(
    registry: Registry, state: State, arch_images: dict[str, ArchImage], tmp_path: Path
) -> None:
    oci_amd64 = push_image(arch_images["amd64"], "oci-children/amd64:1", registry)
    spec = spec_file(
        tmp_path,
        f"""\
        image: {registry.ref("docker-format/refused")}
        tags: ["1"]
        format: docker
        platforms:
          - image: {oci_amd64}
        """,
    )
    log = AccessLog(registry)
    mark = log.mark()
    rc, out, err = state.run("publish", "-f", spec, cwd=tmp_path)
    assert rc == 1, err
    line = one_error_line(err)
    assert "OCI manifest in a Docker manifest list" in line and "format: oci" in line
    assert out == ""
    assert [r for r in log.since(mark) if r.is_tag_put] == []
    assert tags_of(registry, "docker-format/refused") in (None, [])


def test_format_docker_with_docker_children_is_a_docker_list(
    registry: Registry, state: State, docker_arch_images: dict[str, ArchImage], tmp_path: Path
) -> None:
    ref = push_image(docker_arch_images["arm64"], "docker-children/arm64:1", registry)
    spec = spec_file(
        tmp_path,
        f"""\
        image: {registry.ref("docker-format/assembled")}
        tags: ["1"]
        format: docker
        platforms:
          - image: {ref}
        """,
    )
    rc, out, err = state.run("publish", "-f", spec, cwd=tmp_path)
    assert rc == 0, err
    raw, media_type = manifest_raw(registry, "docker-format/assembled", "1")
    assert media_type == MT_DOCKER_LIST and sha256(raw) == out.strip().splitlines()[-1]
    assert [d["mediaType"] for d in json.loads(raw)["manifests"]] == [MT_DOCKER_MANIFEST]


def test_format_docker_builds_docker_manifests(hello: Path, registry: Registry, state: State, tmp_path: Path) -> None:
    """The builder is asked for Docker schema 2 (BuildRequest.media_format="docker")."""
    repo = "docker-format/built"
    spec = spec_file(
        tmp_path,
        f"""\
        image: {registry.ref(repo)}
        tags: ["1"]
        format: docker
        build:
          context: {hello}
        platforms: [linux/amd64, linux/arm64/v8]
        """,
    )
    rc, out, err = state.run("publish", "-f", spec, "-q", cwd=tmp_path)
    # Needs the builder to honour BuildRequest.media_format (buildah --format docker); without
    # that, publish refuses the OCI children ("an OCI manifest in a Docker manifest list").
    assert rc == 0, err[-3000:]
    digest = out.strip().splitlines()[-1]
    assert DIGEST_LINE.match(digest)
    raw = inspect_raw(registry.ref(repo, "1"))
    assert sha256(raw) == digest
    doc = json.loads(raw)
    assert doc["mediaType"] == MT_DOCKER_LIST
    assert [d["mediaType"] for d in doc["manifests"]] == [MT_DOCKER_MANIFEST] * 2
    for d in doc["manifests"]:
        child, media_type = manifest_raw(registry, repo, d["digest"])
        assert media_type == MT_DOCKER_MANIFEST and len(child) == d["size"]
        assert json.loads(child)["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
