"""Builders: real buildah/podman builds of examples/hello (under qemu), runner, buildx, doctor."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from manifesto.jobs import doctor
from manifesto.builders import BUILDER_NAMES, binfmt, get_builder
from manifesto.builders.base import (
    BuildRequest,
    BuiltImage,
    Problem,
    load_built,
    verify_platform,
)
from manifesto.builders.binfmt import check as binfmt_check
from manifesto.builders.binfmt import fix as binfmt_fix
from manifesto.builders.buildah import BuildahBuilder, trim_unconsumed_warning
from manifesto.builders.dirimage import docker_config_fixed
from manifesto.builders.buildx import CONTAINER_DRIVER_FIX, BuildxBuilder
from manifesto.builders.podman import PodmanBuilder
from manifesto.builders.runner import Captured, Completed, Runner
from manifesto.errors import BuildError, UsageError, VerificationError
from manifesto.oci import canonical, mediatype
from manifesto.oci.config import ImageConfig
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageManifest
from manifesto.oci.platform import Platform
from manifesto.store.layout import LayoutStore
from tests.support.tools import REPO_ROOT, missing, require, run

HELLO = REPO_ROOT / "examples" / "hello"
EPOCH = 1700000000


# ---- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def hello() -> Path:
    """examples/hello with its per-arch rootfs laid out by prepare.sh."""
    done = run(["bash", HELLO / "prepare.sh"], check=False, timeout=600)
    if done.returncode != 0:
        missing(f"examples/hello/prepare.sh failed (needs busybox-static .debs): {done.stderr[-800:]}")
    return HELLO


@pytest.fixture(scope="session")
def emulation() -> None:
    """qemu binfmt usable for the foreign example platforms (fixed as root if needed)."""
    platforms = [Platform.parse(p) for p in ("linux/arm64/v8", "linux/arm/v7", "linux/s390x", "linux/ppc64le")]
    problems = binfmt_check(platforms)
    if problems and os.geteuid() == 0:
        binfmt_fix(problems)
        problems = binfmt_check(platforms)
    if problems:
        missing("qemu binfmt not usable: " + "; ".join(map(str, problems)))


@pytest.fixture(scope="session")
def buildah(tmp_path_factory: pytest.TempPathFactory) -> BuildahBuilder:
    require("buildah")
    b = BuildahBuilder(Runner(), storage=tmp_path_factory.mktemp("buildah-storage"))
    assert b.check() == []
    return b


def request(ctx: Path, platform: str, output: Path, **kw: object) -> BuildRequest:
    return BuildRequest(Platform.parse(platform), ctx, ctx / "Dockerfile", {}, output, **kw)  # type: ignore[arg-type]


def layer_file(store: LayoutStore, built: BuiltImage, name: str) -> bytes:
    """A file's bytes from the image's layers (last layer wins)."""
    manifest = ImageManifest.parse(store.manifest(built.tag).raw, built.media_type)
    found = None
    for layer in manifest.layers:
        data = store.read_bytes(layer.digest, "layer")
        if layer.media_type.endswith("+gzip"):
            data = gzip.decompress(data)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                if member.name.lstrip("./") == name and member.isfile():
                    found = tar.extractfile(member).read()  # type: ignore[union-attr]
    assert found is not None, f"{name} not in any layer"
    return found


def config_of(store: LayoutStore, built: BuiltImage) -> ImageConfig:
    manifest = ImageManifest.parse(store.manifest(built.tag).raw, built.media_type)
    return ImageConfig.parse(store.read_bytes(manifest.config.digest))


# ---- real builds --------------------------------------------------------------------------------


@pytest.mark.slow
def test_buildah_builds_arm64_under_qemu_reproducibly(
    buildah: BuildahBuilder, hello: Path, emulation: None, tmp_path: Path
) -> None:
    lines: list[str] = []
    out = tmp_path / "layout"
    built = buildah.build(request(hello, "linux/arm64/v8", out, tag="arm64v8", source_date_epoch=EPOCH), lines.append)

    assert built.media_type == mediatype.OCI_MANIFEST
    store = LayoutStore(out)
    assert store.tags()["arm64v8"].digest == built.digest
    config = config_of(store, built)
    assert (config.platform.os, config.platform.architecture, config.platform.variant) == ("linux", "arm64", "v8")
    assert config.cmd == ("/bin/sh", "-c", "echo hello from $(cat /etc/built-on)")
    assert config.created == "2023-11-14T22:13:20Z"
    # the RUN step really ran under qemu-aarch64
    assert layer_file(store, built, "etc/built-on") == b"aarch64\n"
    assert "built on aarch64" in lines
    # nothing left in the builder's storage
    images = run(buildah.command("images", "--quiet")).stdout.split()
    assert images == []

    # same inputs + SOURCE_DATE_EPOCH: same manifest digest, into another layout and tag
    again = buildah.build(
        request(hello, "linux/arm64/v8", tmp_path / "again", tag="second", source_date_epoch=EPOCH), lambda _: None
    )
    assert again.digest == built.digest
    # peer check: skopeo reads the layout buildah wrote through our store
    skopeo = shutil.which("skopeo")
    if skopeo:
        info = json.loads(run([skopeo, "inspect", f"oci:{out}:arm64v8"]).stdout)
        assert (info["Architecture"], info["Os"]) == ("arm64", "linux")


@pytest.mark.slow
def test_buildah_builds_two_platforms_at_once_into_one_layout(
    buildah: BuildahBuilder, hello: Path, emulation: None, tmp_path: Path
) -> None:
    out = tmp_path / "layout"
    platforms = {"linux/arm/v7": "armv7l", "linux/s390x": "s390x"}

    def one(p: str) -> tuple[str, BuiltImage]:
        return p, buildah.build(request(hello, p, out, tag=p.replace("/", "-")), lambda _: None)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, platforms))
    store = LayoutStore(out)
    assert sorted(store.tags()) == ["linux-arm-v7", "linux-s390x"]
    for p, built in results:
        assert store.tags()[built.tag].digest == built.digest
        assert config_of(store, built).platform.architecture == Platform.parse(p).architecture
        assert layer_file(store, built, "etc/built-on") == f"{platforms[p]}\n".encode()


@pytest.mark.slow
def test_podman_builds_ppc64le(hello: Path, emulation: None, tmp_path: Path) -> None:
    require("podman")
    podman = PodmanBuilder(Runner(), storage=tmp_path / "storage")
    assert podman.check() == []
    built = podman.build(request(hello, "linux/ppc64le", tmp_path / "layout", source_date_epoch=EPOCH), lambda _: None)
    store = LayoutStore(tmp_path / "layout")
    assert built.tag == "latest" and built.media_type == mediatype.OCI_MANIFEST
    assert config_of(store, built).platform.architecture == "ppc64le"
    assert layer_file(store, built, "etc/built-on") == b"ppc64le\n"
    assert run(podman.command("images", "--quiet")).stdout.split() == []
    shutil.rmtree(podman.runroot, ignore_errors=True)  # may live outside tmp_path (50-char limit)


def test_failing_dockerfile_raises_with_the_commands_output(
    buildah: BuildahBuilder, hello: Path, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    shutil.copytree(hello / "rootfs-amd64", ctx / "rootfs-amd64", symlinks=True)
    (ctx / "Dockerfile").write_text(
        'FROM scratch\nCOPY rootfs-amd64/ /\nRUN ["/bin/busybox", "sh", "-c", "echo boom-marker-7f3; exit 3"]\n'
    )
    lines: list[str] = []
    with pytest.raises(BuildError) as info:
        buildah.build(request(ctx, "linux/amd64", tmp_path / "out"), lines.append)
    assert str(info.value) == "linux/amd64: buildah exited 3"
    assert "boom-marker-7f3" in info.value.log_tail
    assert "boom-marker-7f3" in lines
    assert not (tmp_path / "out").exists()


def test_build_args_and_labels_reach_the_image(buildah: BuildahBuilder, hello: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    shutil.copytree(hello / "rootfs-amd64", ctx / "rootfs-amd64", symlinks=True)
    (ctx / "Dockerfile").write_text(
        "FROM scratch\nARG GREETING\nARG SOURCE_DATE_EPOCH\nARG TARGETPLATFORM\nCOPY rootfs-amd64/ /\n"
        'RUN ["/bin/busybox", "sh", "-c", "echo $GREETING $SOURCE_DATE_EPOCH $TARGETPLATFORM > /etc/greeting"]\n'
    )
    req = BuildRequest(
        Platform.parse("linux/amd64"), ctx, ctx / "Dockerfile", {"GREETING": "hi there"}, tmp_path / "out",
        source_date_epoch=42, labels={"org.opencontainers.image.title": "t"},
    )  # fmt: skip
    built = buildah.build(req, lambda _: None)
    store = LayoutStore(tmp_path / "out")
    assert layer_file(store, built, "etc/greeting") == b"hi there 42 linux/amd64\n"
    assert config_of(store, built).labels["org.opencontainers.image.title"] == "t"


PLAN_ARGS = {  # what the plan passes for linux/arm64/v8 (matrix/plan.py platform_args)
    "TARGETPLATFORM": "linux/arm64/v8",
    "TARGETOS": "linux",
    "TARGETARCH": "arm64",
    "TARGETVARIANT": "v8",
}


@pytest.mark.parametrize("tool", ["buildah", "podman"])
def test_docker_format_builds_give_a_docker_manifest_reproducibly(
    buildah: BuildahBuilder, hello: Path, tmp_path: Path, tool: str
) -> None:
    if tool == "podman":
        require("podman")
        builder: BuildahBuilder = PodmanBuilder(Runner(), storage=tmp_path / "podman-storage")
    else:
        builder = buildah
    out = tmp_path / "layout"
    # an OCI image already in the layout keeps its tag next to the docker-format one
    oci = builder.build(request(hello, "linux/amd64", out, tag="oci", source_date_epoch=EPOCH), lambda _: None)
    assert oci.media_type == mediatype.OCI_MANIFEST
    built = builder.build(
        request(hello, "linux/amd64", out, tag="docker", source_date_epoch=EPOCH, media_format="docker"),
        lambda _: None,
    )
    assert built.media_type == mediatype.DOCKER_MANIFEST
    store = LayoutStore(out)
    assert {t: d.media_type for t, d in store.tags().items()} == {
        "oci": mediatype.OCI_MANIFEST,
        "docker": mediatype.DOCKER_MANIFEST,
    }
    raw = store.manifest("docker").raw
    manifest = ImageManifest.parse(raw, mediatype.DOCKER_MANIFEST)
    assert json.loads(raw)["mediaType"] == mediatype.DOCKER_MANIFEST
    assert manifest.config.media_type == mediatype.DOCKER_CONFIG
    assert [layer.media_type for layer in manifest.layers] == [mediatype.DOCKER_LAYER] * 2  # COPY, RUN (--layers)
    config = config_of(store, built)
    assert (config.platform.architecture, config.created) == ("amd64", "2023-11-14T22:13:20Z")
    assert layer_file(store, built, "etc/built-on") == b"x86_64\n"
    doc = json.loads(store.read_bytes(manifest.config.digest))
    assert "container" not in doc and doc["config"]["Hostname"] == "sandbox"  # fixed, not per build
    # same layer bytes as the OCI build: only the manifest and config types differ
    assert manifest.layers[0].digest == ImageManifest.parse(store.manifest("oci").raw, oci.media_type).layers[0].digest
    # reproducible with --timestamp, and nothing left behind next to the layout or in storage
    again = builder.build(
        request(hello, "linux/amd64", tmp_path / "again", tag="d2", source_date_epoch=EPOCH, media_format="docker"),
        lambda _: None,
    )
    assert again.digest == built.digest
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".manifesto-")]
    assert run(builder.command("images", "--quiet")).stdout.split() == []
    if tool == "podman":
        shutil.rmtree(builder.runroot, ignore_errors=True)


def test_a_failed_docker_format_build_leaves_nothing(buildah: BuildahBuilder, hello: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY missing-file /\n")
    out = tmp_path / "out" / "layout"
    with pytest.raises(BuildError):
        buildah.build(request(ctx, "linux/amd64", out, media_format="docker"), lambda _: None)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(("platform", "seen"), [("linux/arm64/v8", "arm64/v8"), ("linux/amd64", "amd64/")])
def test_target_args_are_buildahs_own_and_its_warning_names_only_ours(
    buildah: BuildahBuilder, hello: Path, emulation: None, tmp_path: Path, platform: str, seen: str
) -> None:
    """The plan's TARGET* args are not passed again: buildah sets them from --platform, and
    buildah 1.28 would warn that they were "not consumed"; a Dockerfile still sees the values."""
    arch = Platform.parse(platform).architecture
    ctx = tmp_path / "ctx"
    shutil.copytree(hello / f"rootfs-{arch}", ctx / f"rootfs-{arch}", symlinks=True)
    (ctx / "Dockerfile").write_text(
        "FROM scratch\nARG TARGETARCH\nARG TARGETVARIANT\nCOPY rootfs-${TARGETARCH}/ /\n"
        'RUN ["/bin/busybox", "sh", "-c", "echo $TARGETARCH/$TARGETVARIANT > /etc/seen"]\n'
    )
    p = Platform.parse(platform)
    args = {
        "TARGETPLATFORM": str(p), "TARGETOS": p.os, "TARGETARCH": p.architecture, "TARGETVARIANT": p.variant or "",
        "UNUSED_BY_THE_DOCKERFILE": "1",
    }  # fmt: skip
    req = BuildRequest(p, ctx, ctx / "Dockerfile", args, tmp_path / "out")
    lines: list[str] = []
    built = buildah.build(req, lines.append)
    assert layer_file(LayoutStore(tmp_path / "out"), built, "etc/seen") == f"{seen}\n".encode()
    warnings = [line for line in lines if "not consumed" in line]
    assert warnings == ["[Warning] one or more build args were not consumed: [UNUSED_BY_THE_DOCKERFILE]"]
    assert not [line for line in lines if "TARGETOS" in line or "TARGETPLATFORM" in line or "missing" in line]


def test_target_args_left_out_of_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nARG TARGETVARIANT\n")
    b = BuildahBuilder(Runner(), storage=tmp_path / "s")
    def req_with(platform: str, args: dict[str, str]) -> BuildRequest:
        return BuildRequest(Platform.parse(platform), tmp_path, tmp_path / "Dockerfile", args, tmp_path / "o")

    arm = req_with("linux/arm64/v8", {**PLAN_ARGS, "A": "1"})
    assert b.build_arg_values(arm) == {"A": "1"}
    assert b.implicit_args(arm) == frozenset(PLAN_ARGS)
    # an empty TARGETVARIANT stays when the Dockerfile names it: buildah sets none and would
    # warn that the declared ARG has no value
    amd = {"TARGETPLATFORM": "linux/amd64", "TARGETOS": "linux", "TARGETARCH": "amd64", "TARGETVARIANT": ""}
    req = req_with("linux/amd64", amd)
    assert b.build_arg_values(req) == {"TARGETVARIANT": ""}
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    assert b.build_arg_values(req) == {}
    # a value that differs from the platform's is the caller's: kept, and warned about
    odd = req_with("linux/arm64/v8", {**PLAN_ARGS, "TARGETARCH": "x"})
    assert b.build_arg_values(odd) == {"TARGETARCH": "x"}
    assert "TARGETARCH" not in b.implicit_args(odd)
    argv = b.build_args(odd)
    assert "TARGETARCH=x" in argv and not [a for a in argv if a.startswith(("TARGETOS=", "TARGETPLATFORM="))]

    seen: list[str] = []
    trim = trim_unconsumed_warning(seen.append, b.implicit_args(odd))
    for line in (
        "[Warning] one or more build args were not consumed: [TARGETOS TARGETPLATFORM TARGETVARIANT]",
        "[Warning] one or more build args were not consumed: [A TARGETARCH TARGETOS]",
        "STEP 1/2: FROM scratch",
    ):
        trim(line)
    assert seen == ["[Warning] one or more build args were not consumed: [A TARGETARCH]", "STEP 1/2: FROM scratch"]


def test_docker_config_fixed() -> None:
    raw = (
        b'{"created":"2023-11-14T22:13:20Z","container":"9ec3e2e0","container_config":{"Hostname":"18e83c39",'
        b'"Cmd":["sh"]},"config":{"Hostname":"18e83c39","Domainname":"","Labels":{"a":"\xc3\xa9"}},"os":"linux"}'
    )
    assert docker_config_fixed(raw) == (
        b'{"created":"2023-11-14T22:13:20Z","container_config":{"Hostname":"sandbox","Cmd":["sh"]},'
        b'"config":{"Hostname":"sandbox","Domainname":"","Labels":{"a":"\xc3\xa9"}},"os":"linux"}'
    )
    already = b'{"config": {"Hostname": "sandbox"}, "os": "linux"}'
    assert docker_config_fixed(already) is already  # nothing to fix: the bytes as they were


def test_format_flag_follows_the_request(tmp_path: Path) -> None:
    b = BuildahBuilder(Runner(), storage=tmp_path / "s")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    oci = request(tmp_path, "linux/amd64", tmp_path / "o")
    argv = b.build_args(oci)
    assert argv[argv.index("--format") + 1] == "oci" and argv[argv.index("-t") + 1] == f"oci:{tmp_path / 'o'}:latest"
    argv = PodmanBuilder(Runner(), storage=tmp_path / "p").build_args(
        request(tmp_path, "linux/amd64", tmp_path / "o", media_format="docker"), "dir:/x"
    )
    assert argv[argv.index("--format") + 1] == "docker" and argv[argv.index("-t") + 1] == "dir:/x"
    with pytest.raises(UsageError, match="v2s2"):
        b.build(request(tmp_path, "linux/amd64", tmp_path / "o", media_format="v2s2"), lambda _: None)


# ---- verification -----------------------------------------------------------------------------


def test_verify_platform_equivalences() -> None:
    p = Platform.parse
    verify_platform(p("linux/arm64/v8"), Platform("linux", "arm64"), "x")
    verify_platform(p("linux/arm64"), Platform("linux", "arm64", "v8"), "x")
    verify_platform(p("linux/arm/v7"), Platform("linux", "arm"), "x")
    verify_platform(p("linux/amd64"), Platform("linux", "x86_64"), "x")  # normalized like containerd
    with pytest.raises(VerificationError, match="built for linux/amd64, but linux/arm64/v8 was requested"):
        verify_platform(p("linux/arm64/v8"), Platform("linux", "amd64"), "x")
    with pytest.raises(VerificationError):
        verify_platform(p("linux/arm/v6"), Platform("linux", "arm", "v7"), "x")


def _fake_layout(path: Path, arch: str, tag: str, *, docker: bool = False) -> None:
    """A layout holding one image whose config says `arch` (no build needed)."""
    store = LayoutStore(path, create=True)
    config = canonical.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    cdesc = Descriptor(mediatype.DOCKER_CONFIG if docker else mediatype.OCI_CONFIG, Digest.of(config), len(config))
    source = path.parent / f".config-{uuid.uuid4().hex}.json"
    source.write_bytes(config)
    store.add_blob(cdesc, source)
    source.unlink()
    media_type = mediatype.DOCKER_MANIFEST if docker else mediatype.OCI_MANIFEST
    raw = canonical.dumps({"schemaVersion": 2, "mediaType": media_type, "config": cdesc.to_dict(), "layers": []})
    store.put_manifest_sync(tag, raw, media_type)


def test_a_layout_that_lies_about_its_platform_fails_verification(tmp_path: Path) -> None:
    _fake_layout(tmp_path / "l", "amd64", "t")
    ctx = tmp_path
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    req = BuildRequest(Platform.parse("linux/arm64/v8"), ctx, ctx / "Dockerfile", {}, tmp_path / "l", tag="t")
    with pytest.raises(VerificationError, match="linux/arm64/v8: buildah image .*built for linux/amd64"):
        load_built(req, "buildah")
    ok = load_built(
        BuildRequest(Platform.parse("linux/amd64"), ctx, ctx / "Dockerfile", {}, tmp_path / "l", tag="t"), "buildah"
    )
    assert ok.digest == LayoutStore(tmp_path / "l").tags()["t"].digest


def test_requests_are_validated_before_any_tool_runs(buildah: BuildahBuilder, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(UsageError, match="not a directory"):
        buildah.build(request(tmp_path / "nope", "linux/amd64", tmp_path / "o"), lambda _: None)
    with pytest.raises(UsageError, match="does not exist"):
        buildah.build(
            BuildRequest(Platform.parse("linux/amd64"), tmp_path, tmp_path / "Missingfile", {}, tmp_path / "o"),
            lambda _: None,
        )
    with pytest.raises(UsageError, match="must not contain ':'"):
        buildah.build(request(tmp_path, "linux/amd64", tmp_path / "a:b"), lambda _: None)
    with pytest.raises(UsageError, match="invalid tag"):
        buildah.build(request(tmp_path, "linux/amd64", tmp_path / "o", tag="no spaces"), lambda _: None)


# ---- missing tools, buildx, runner ----------------------------------------------------------


def test_missing_tool(tmp_path: Path) -> None:
    b = BuildahBuilder(Runner(), storage=tmp_path / "s", executable="/nonexistent/bin/buildah")
    (problem,) = b.check()
    assert "apt-get install buildah" in str(problem)
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(
        BuildError, match=r"^linux/amd64: /nonexistent/bin/buildah is not installed .*\(apt-get install buildah\)"
    ):
        b.build(request(tmp_path, "linux/amd64", tmp_path / "o"), lambda _: None)


def test_buildx_without_an_engine(tmp_path: Path) -> None:
    require("docker")
    b = BuildxBuilder(Runner())
    if run(["docker", "info"], check=False).returncode == 0:
        pytest.skip("a docker engine is reachable here")
    problems = b.check()
    assert problems and problems[0].message.startswith("no docker engine reachable")
    assert "systemctl start docker" in (problems[0].fix or "")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(BuildError, match="linux/arm64: buildx cannot build here: no docker engine reachable") as info:
        b.build(request(tmp_path, "linux/arm64", tmp_path / "o"), lambda _: None)
    assert "no docker engine reachable" in info.value.log_tail


def test_buildx_command_line(tmp_path: Path) -> None:
    b = BuildxBuilder(Runner(), builder="multi")
    req = BuildRequest(
        Platform.parse("linux/arm/v7"), tmp_path, tmp_path / "Dockerfile", {"A": "1"}, tmp_path / "o",
        tag="v1", source_date_epoch=7, labels={"l": "x"},
    )  # fmt: skip
    argv = b.build_args(req, tmp_path / "dest")
    assert argv[:5] == ["docker", "buildx", "build", "--builder", "multi"]
    assert argv[argv.index("--platform") + 1] == "linux/arm/v7"
    # with SOURCE_DATE_EPOCH, files made by RUN steps get the epoch mtime too (BuildKit >= 0.13)
    assert argv[argv.index("--output") + 1] == (
        f"type=oci,dest={tmp_path / 'dest'},tar=false,name=v1,rewrite-timestamp=true"
    )
    assert "SOURCE_DATE_EPOCH=7" in argv and "A=1" in argv and "l=x" in argv and argv[-1] == str(tmp_path)
    # without it nothing is rewritten; a docker-format request turns off the OCI media types
    plain = BuildRequest(Platform.parse("linux/s390x"), tmp_path, tmp_path / "Dockerfile", {}, tmp_path / "o")
    argv = BuildxBuilder(Runner()).build_args(plain, tmp_path / "dest")
    assert argv[argv.index("--output") + 1] == f"type=oci,dest={tmp_path / 'dest'},tar=false,name=latest"
    assert "--builder" not in argv and not [a for a in argv if "SOURCE_DATE_EPOCH" in a]
    docker = replace(plain, media_format="docker", source_date_epoch=9)
    argv = BuildxBuilder(Runner()).build_args(docker, tmp_path / "dest")
    assert argv[argv.index("--output") + 1] == (
        f"type=oci,dest={tmp_path / 'dest'},tar=false,name=latest,oci-mediatypes=false,rewrite-timestamp=true"
    )


INSPECT_CONTAINER = """Name:          multi
Driver:        docker-container
Last Activity: 2024-05-02 10:00:00 +0000 UTC

Nodes:
Name:                  multi0
Endpoint:              unix:///var/run/docker.sock
Status:                running
BuildKit daemon flags: --allow-insecure-entitlement=network.host
BuildKit version:      v0.13.2
Platforms:             linux/amd64, linux/arm64
"""
INSPECT_DEFAULT = """Name:   default
Driver: docker

Nodes:
Name:      default
Endpoint:  default
Status:    running
Buildkit:  v0.12.5
Platforms: linux/amd64
"""


class FakeDocker:
    """Stands in for Runner with a docker CLI: canned answers for capture(), scripted run()."""

    def __init__(self, inspect: str, *, inspect_code: int = 0, on_build: object = None):
        self.captured: list[list[str]] = []
        self.ran: list[tuple[list[str], dict[str, str] | None]] = []
        self.inspect, self.inspect_code, self.on_build = inspect, inspect_code, on_build

    def capture(self, argv: list[str], **kw: object) -> Captured:
        self.captured.append(list(argv))
        answers = {
            "info": Captured(0, "26.1.0\n", ""),
            "buildx version": Captured(0, "github.com/docker/buildx v0.14.0\n", ""),
            "buildx inspect": Captured(self.inspect_code, self.inspect, "ERROR: no builder \"gone\" found\n"),
        }
        for words, answer in answers.items():
            if argv[1 : 1 + len(words.split())] == words.split():
                return answer
        raise AssertionError(f"unexpected query {argv}")

    def run(self, argv: list[str], *, env: dict[str, str] | None = None, **kw: object) -> Completed:
        self.ran.append((list(argv), env))
        if callable(self.on_build):
            self.on_build(argv)
        return Completed(0, ())


def test_buildx_check_rejects_the_docker_driver(tmp_path: Path) -> None:
    fake = FakeDocker(INSPECT_DEFAULT)
    b = BuildxBuilder(fake, executable="/bin/true")  # type: ignore[arg-type]
    (problem,) = b.check()
    assert problem.message == (
        "the current buildx builder uses the docker driver, which cannot export an OCI layout (--output type=oci)"
    )
    assert problem.fix == CONTAINER_DRIVER_FIX == "docker buildx create --driver docker-container --use"
    assert fake.captured[-1] == ["/bin/true", "buildx", "inspect"]
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(BuildError, match="linux/arm64: buildx cannot build here: the current buildx builder uses"):
        b.build(request(tmp_path, "linux/arm64", tmp_path / "o"), lambda _: None)
    assert fake.ran == []  # refused before anything ran

    good = FakeDocker(INSPECT_CONTAINER)
    b = BuildxBuilder(good, executable="/bin/true", builder="multi")  # type: ignore[arg-type]
    assert b.check() == []
    assert good.captured[-1] == ["/bin/true", "buildx", "inspect", "multi"] and b.buildkit == (0, 13)

    gone = FakeDocker("", inspect_code=1)
    (problem,) = BuildxBuilder(gone, executable="/bin/true", builder="gone").check()  # type: ignore[arg-type]
    assert problem.message == 'buildx builder gone cannot be inspected: ERROR: no builder "gone" found'
    assert problem.fix == "docker buildx create --name gone --driver docker-container"


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_buildx_build_copies_the_exported_image_in_the_requested_format(tmp_path: Path, fmt: str) -> None:
    """What BuildKit would export (faked: no docker engine here) lands in the layout under the tag;
    an export in the other format is refused."""
    want = mediatype.DOCKER_MANIFEST if fmt == "docker" else mediatype.OCI_MANIFEST

    def export(argv: list[str]) -> None:
        options = dict(kv.split("=", 1) for kv in argv[argv.index("--output") + 1].split(","))
        docker = options.get("oci-mediatypes") == "false"
        _fake_layout(Path(options["dest"]), "arm64", options["name"], docker=docker)

    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    fake = FakeDocker(INSPECT_CONTAINER, on_build=export)
    b = BuildxBuilder(fake, executable="/bin/true")  # type: ignore[arg-type]
    req = request(tmp_path, "linux/arm64", tmp_path / "out" / "l", tag="v1", source_date_epoch=5, media_format=fmt)
    built = b.build(req, lambda _: None)
    assert built.media_type == want and LayoutStore(tmp_path / "out" / "l").tags()["v1"].media_type == want
    ((_, env),) = fake.ran
    assert env == {"SOURCE_DATE_EPOCH": "5"}
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["l"]  # the private export layout is gone

    def wrong(argv: list[str]) -> None:
        options = dict(kv.split("=", 1) for kv in argv[argv.index("--output") + 1].split(","))
        _fake_layout(Path(options["dest"]), "arm64", options["name"], docker=fmt == "oci")

    b = BuildxBuilder(FakeDocker(INSPECT_CONTAINER, on_build=wrong), executable="/bin/true")  # type: ignore[arg-type]
    with pytest.raises(VerificationError, match=f"{fmt} format was requested, but its manifest is"):
        b.build(replace(req, output=tmp_path / "other"), lambda _: None)


def test_runner_streams_lines_and_keeps_a_tail() -> None:
    lines: list[str] = []
    script = "for i in $(seq 1 100); do echo line-$i; done; echo to-stderr >&2; exit 4"
    with pytest.raises(BuildError) as info:
        Runner().run(["sh", "-c", script], on_line=lines.append, label="linux/s390x")
    assert str(info.value) == "linux/s390x: sh exited 4"
    tail = info.value.log_tail.splitlines()
    assert len(tail) == 60 and tail[0] == "line-42" and tail[-1] == "to-stderr"
    assert len(lines) == 101
    done = Runner().run(["sh", "-c", "printf 'a\\rb\\n'; exit 2"], check=False)
    assert (done.returncode, done.tail) == (2, ("a", "b"))


def test_runner_kills_a_command_past_its_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(BuildError, match="sh did not finish within 0.5s") as info:
        # the child sleep holds the output pipe too: the whole group must go
        Runner().run(["sh", "-c", "echo started; sleep 30; echo never"], timeout=0.5, label="linux/arm64")
    assert "started" in info.value.log_tail
    assert time.monotonic() - started < 10


def test_runner_with_a_timeout_reports_a_failure_as_a_failure() -> None:
    """A command that fails quickly is not "stopped after the timeout" just because one was set."""
    with pytest.raises(BuildError) as info:
        Runner().run(["sh", "-c", "echo oops; exit 3"], timeout=30, label="linux/arm64")
    assert str(info.value) == "linux/arm64: sh exited 3" and info.value.log_tail == "oops"
    done = Runner().run(["sh", "-c", "echo oops; exit 3"], timeout=30, check=False)
    assert (done.returncode, done.tail) == (3, ("oops",))
    # past the timeout it is stopped and said so, even with check=False
    with pytest.raises(BuildError, match="did not finish within 0.3s"):
        Runner().run(["sh", "-c", "sleep 30"], timeout=0.3, check=False)


def test_runner_cancel_stops_running_commands() -> None:
    runner = Runner()
    errors: list[BaseException] = []

    def build() -> None:
        try:
            runner.run(["sh", "-c", "sleep 30; sleep 30"])
        except BaseException as e:
            errors.append(e)

    worker = threading.Thread(target=build)
    worker.start()
    time.sleep(0.3)
    runner.cancel()
    worker.join(10)
    assert not worker.is_alive()
    assert [str(e) for e in errors] == ["sh was cancelled"]


def test_runner_names_the_package_of_a_missing_tool() -> None:
    with pytest.raises(BuildError, match=r"update-binfmts is not installed .*\(apt-get install binfmt-support\)"):
        Runner(env={"PATH": "/nonexistent"}).run(["update-binfmts", "--display"])
    with pytest.raises(BuildError, match="podman is not installed"):
        Runner(env={"PATH": "/nonexistent"}).capture(["podman", "info"])


def test_get_builder() -> None:
    assert BUILDER_NAMES == ("auto", "buildah", "podman", "buildx", "native")
    assert isinstance(get_builder("buildah"), BuildahBuilder)
    assert isinstance(get_builder("podman"), PodmanBuilder)
    assert isinstance(get_builder("docker"), BuildxBuilder)
    runner = Runner()
    b = get_builder("buildah", runner=runner, storage_driver="overlay")
    assert b.runner is runner and "--storage-driver" in b.global_args() and "overlay" in b.global_args()  # type: ignore[attr-defined]
    with pytest.raises(UsageError, match="unknown builder 'kaniko'"):
        get_builder("kaniko")


def test_default_storage_follows_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert BuildahBuilder().storage == tmp_path / "manifesto" / "buildah"
    assert PodmanBuilder().storage == tmp_path / "manifesto" / "podman"


# ---- doctor ------------------------------------------------------------------------------------


def test_doctor_combines_checks(tmp_path: Path, emulation: None) -> None:
    require("buildah")
    platforms = [Platform.parse(p) for p in ("linux/amd64", "linux/arm64/v8", "linux/s390x")]
    options = {"storage": tmp_path / "s"}
    assert doctor.run_checks("buildah", platforms, builder_options=options) == []
    registry = Problem("registry localhost:1 unreachable", "start it")
    assert doctor.run_checks("buildah", platforms, lambda: [registry], builder_options=options) == [registry]
    unmounted = tmp_path / "binfmt"
    unmounted.mkdir()
    problems = doctor.run_checks("buildah", platforms, binfmt_root=unmounted, builder_options=options)
    assert [p.message for p in problems] == [
        f"binfmt_misc is not mounted at {unmounted}: foreign-platform RUN steps cannot execute"
    ]
    bad = doctor.run_checks(
        "buildah", platforms, builder_options={"executable": "/nonexistent/buildah", "storage": tmp_path / "s"}
    )
    assert len(bad) == 1 and "apt-get install buildah" in str(bad[0])


def test_doctor_fix_updates_apt_first_and_says_why_a_fix_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(binfmt.os, "geteuid", lambda: 0)

    class Apt:
        """Stands in for Runner: apt-get update works, the install fails like on a bare host."""

        def __init__(self) -> None:
            self.calls: list[tuple[str, ...]] = []

        def run(self, argv: tuple[str, ...], **kw: object) -> Completed:
            self.calls.append(tuple(argv))
            if argv[:2] == ("apt-get", "install"):
                return Completed(100, ("Reading package lists...", "E: Unable to locate package buildah"))
            return Completed(0, ())

    apt = Apt()
    options = {"executable": "/nonexistent/buildah", "storage": tmp_path / "s"}
    runner: Runner = apt  # type: ignore[assignment]
    (problem,) = doctor.run_checks("buildah", [], fix=True, runner=runner, builder_options=options)
    assert apt.calls == [("apt-get", "update"), ("apt-get", "install", "-y", "buildah")]
    head, *why = problem.message.splitlines()
    assert "buildah is not installed" in head
    assert why == [
        "    `apt-get install -y buildah` exited 100:",
        "      Reading package lists...",
        "      E: Unable to locate package buildah",
    ]
    assert problem.fix == "apt-get install buildah"

    monkeypatch.setattr(binfmt.os, "geteuid", lambda: 1000)
    apt.calls.clear()
    (problem,) = doctor.run_checks("buildah", [], fix=True, runner=runner, builder_options=options)
    assert apt.calls == []
    assert problem.message.endswith("\n    not fixed: fixes run only as root (run `manifesto doctor --fix` as root)")
    # without --fix nothing runs and nothing is added
    (problem,) = doctor.run_checks("buildah", [], runner=runner, builder_options=options)
    assert "\n" not in problem.message and apt.calls == []
