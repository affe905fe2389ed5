"""Fail fast: publish and assemble ask for push access before building or uploading anything;
push and create --push, whose first write comes before any other work, are refused by it.

The probe is the one `doctor` uses (RegistryClient.check_push: open a blob upload session and
cancel it). Without credentials, or with a token user that may only pull (the target or an
arch-tag repository), the job is exit 3 within seconds: no build started, nothing read from
or written to the target. And `--dry-run` refuses what the real run would (unwritable --report
/ --digest-file); an empty `--platform` (an unset CI variable) is a usage error, never "all".
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from manifesto.builders.base import BuildRequest, BuiltImage, Problem
from manifesto.errors import AuthError
from manifesto.matrix import plan as planning
from manifesto.jobs.publish import Options, publish
from manifesto.matrix.spec import load
from manifesto.jobs.split import assemble
from manifesto.oci.digest import Digest
from manifesto.oci.platform import Platform
from tests.support import ArchImage, Registry, push_image, push_library_repos


def one_error(err: str) -> str:
    """The single `manifesto: error:` line; nothing else on stderr (no build output)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("manifesto: error:"), err
    return lines[0]


def spec(directory: Path, image: str, *, arch_tag: bool = False) -> Path:
    (directory / "ctx").mkdir(parents=True, exist_ok=True)
    (directory / "ctx" / "Dockerfile").write_text("FROM scratch\nLABEL built=yes\n")
    arch = 'arch_tag: "{registry}/{arch_ns}/{name}:{tag}"\n' if arch_tag else ""
    path = directory / "platforms.yaml"
    path.write_text(
        f'image: {image}\ntags: ["1.0"]\n{arch}build:\n  context: {directory / "ctx"}\n'
        "platforms: [linux/amd64, linux/arm64/v8]\n"
    )
    return path


def docker_login(tmp_home: Any, host: str, user: str, password: str) -> None:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (tmp_home.docker_config / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))


class RecordingBuilder:
    """Records every build it is asked for; builds by copying a prepared layout."""

    name = "recording"

    def __init__(self, images: dict[str, ArchImage]):
        self.by_platform = {Platform.parse(i.platform).key(): i for i in images.values()}
        self.builds: list[str] = []

    def check(self) -> list[Problem]:
        return []

    def build(self, request: BuildRequest, on_line: Callable[[str], None]) -> BuiltImage:
        self.builds.append(str(request.platform))
        image = self.by_platform[request.platform.key()]
        shutil.copytree(image.layout, request.output)
        return BuiltImage(request.platform, request.output, image.tag, Digest.parse(image.manifest_digest),
                          image.manifest_media_type)  # fmt: skip

    def cancel(self) -> None:  # the Builder protocol's: nothing runs outside this thread
        pass


def target_requests(registry: Registry, repo: str, since: int) -> list[str]:
    """Access-log lines after `since` that touch `repo` (as 'METHOD path')."""
    out = []
    for line in registry.log_text().splitlines()[since:]:
        if '"' in line and f"/v2/{repo}/" in line and "HTTP/" in line:
            out.append(line.split('"')[1].rsplit(" ", 1)[0])
    return out


# ---- publish ---------------------------------------------------------------------------------------


def test_publish_without_credentials_is_exit_3_before_any_build(
    run_cli, htpasswd_registry: Registry, tmp_path: Path
) -> None:
    path = spec(tmp_path, htpasswd_registry.ref("fast/fail"))
    started = time.monotonic()
    rc, out, err = run_cli("publish", "-f", path, cwd=tmp_path, env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert rc == 3, err
    line = one_error(err)  # no build output: the builder never started
    assert htpasswd_registry.host in line and "manifesto login" in line
    assert out == ""
    assert time.monotonic() - started < 20


def test_publish_library_asks_for_push_before_building(
    tmp_home, token_registry: Registry, arch_images: dict[str, ArchImage], tmp_path: Path
) -> None:
    docker_login(tmp_home, token_registry.host, *token_registry.creds)
    token_registry.token_server.configure(acl=lambda user, repo: {"pull"})  # a pull-only user
    builder = RecordingBuilder(arch_images)
    plan = planning.make_plan(load(spec(tmp_path, token_registry.ref("pull/only"))))
    with pytest.raises(AuthError) as e:
        publish(plan, Options(builder=builder))
    assert builder.builds == []
    assert "pull/only" in str(e.value)


def test_publish_asks_for_push_on_every_arch_tag_repository(
    tmp_home, token_registry: Registry, arch_images: dict[str, ArchImage], tmp_path: Path
) -> None:
    docker_login(tmp_home, token_registry.host, *token_registry.creds)
    # push on the index's repository only: arm64v8/archy is read-only for this user
    token_registry.token_server.configure(acl=lambda user, repo: {"pull", "push"} if repo == "team/archy" else {"pull"})
    builder = RecordingBuilder(arch_images)
    mark = len(token_registry.log_text().splitlines())
    plan = planning.make_plan(load(spec(tmp_path, token_registry.ref("team/archy"), arch_tag=True)))
    with pytest.raises(AuthError) as e:
        publish(plan, Options(builder=builder))
    assert builder.builds == []
    assert "archy" in str(e.value)
    writes = [r for r in target_requests(token_registry, "team/archy", mark) if r.startswith(("PUT", "PATCH"))]
    assert writes == []


# ---- assemble ------------------------------------------------------------------------------------


def test_assemble_asks_for_push_before_reading_the_children(
    tmp_home, token_registry: Registry, arch_images: dict[str, ArchImage], tmp_path: Path
) -> None:
    files = []
    for arch in ("amd64", "arm64"):
        image = arch_images[arch]
        push_image(image, f"split/pull-only:runner-{arch}", token_registry)
        entry = {"platform": image.platform, "digest": image.manifest_digest,
                 "size": len(image.manifest_bytes), "mediaType": image.manifest_media_type}  # fmt: skip
        files.append(tmp_path / f"{arch}.json")
        files[-1].write_text(json.dumps({"platforms": [entry]}))
    docker_login(tmp_home, token_registry.host, *token_registry.creds)
    token_registry.token_server.configure(acl=lambda user, repo: {"pull"})
    mark = len(token_registry.log_text().splitlines())
    plan = planning.make_plan(load(spec(tmp_path, token_registry.ref("split/pull-only"))))
    with pytest.raises(AuthError):
        assemble(plan, files)
    seen = target_requests(token_registry, "split/pull-only", mark)
    assert [r for r in seen if "/manifests/" in r] == [], seen  # nothing read: refused first


# ---- push ------------------------------------------------------------------------------------------


@pytest.fixture
def token_sources(token_registry: Registry, arch_images: dict[str, ArchImage]) -> dict:
    return push_library_repos({a: arch_images[a] for a in ("amd64", "arm64")}, token_registry)


def test_push_without_push_access_is_exit_3_and_writes_nothing(
    run_cli, tmp_home, token_registry: Registry, token_sources: dict
) -> None:
    docker_login(tmp_home, token_registry.host, *token_registry.creds)
    name = token_registry.ref("lists/pull-only", "1.0")
    rc, _, err = run_cli("create", name, *[r.ref for r in token_sources.values()])
    assert rc == 0, err
    token_registry.token_server.configure(acl=lambda user, repo: {"pull"})
    mark = len(token_registry.log_text().splitlines())
    rc, out, err = run_cli("push", name)
    assert rc == 3, err
    assert "lists/pull-only" in one_error(err)
    seen = target_requests(token_registry, "lists/pull-only", mark)
    # it read the tag (what it holds now); its first writes were refused: nothing was made there
    assert [r for r in seen if r.startswith(("PUT", "PATCH")) or "/blobs/sha256:" in r] == [], seen
    assert not (token_registry.storage / "docker/registry/v2/repositories/lists/pull-only").exists()


# ---- --dry-run refuses what the run would ----------------------------------------------------------


@pytest.mark.parametrize("flag", ["--report", "--digest-file"])
def test_dry_run_refuses_an_unwritable_output(run_cli, tmp_path: Path, flag: str) -> None:
    path = spec(tmp_path, "127.0.0.1:9/dry/outputs")
    (tmp_path / "a-directory").mkdir()
    by_digest = ["--push-by-digest"] if flag == "--digest-file" else []
    rc, out, err = run_cli("publish", "-f", path, "--dry-run", *by_digest, flag, tmp_path / "a-directory", cwd=tmp_path)
    assert rc == 2, err
    assert flag in one_error(err) and out == ""


def test_build_dry_run_refuses_an_unwritable_report(run_cli, tmp_path: Path) -> None:
    path = spec(tmp_path, "127.0.0.1:9/dry/build")
    (tmp_path / "a-file").write_text("x")
    report = tmp_path / "a-file" / "report.json"
    rc, out, err = run_cli("build", "-f", path, "--dry-run", "--report", report, cwd=tmp_path)
    assert rc == 2, err
    assert "--report" in one_error(err) and out == ""


# ---- --platform '' ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["publish", "--dry-run"], ["publish"], ["build", "--dry-run"], ["doctor"]],
    ids=["publish-dry-run", "publish", "build-dry-run", "doctor"],
)
@pytest.mark.parametrize("value", ["", " ", "linux/amd64,"], ids=["empty", "blank", "trailing-comma"])
def test_an_empty_platform_is_a_usage_error(run_cli, tmp_path: Path, command: list[str], value: str) -> None:
    path = spec(tmp_path, "127.0.0.1:9/empty/platform")
    rc, out, err = run_cli(*command, "-f", path, "--platform", value, cwd=tmp_path)
    assert rc == 2, out + err
    line = one_error(err)
    assert "--platform" in line and "empty" in line
    assert out == ""
