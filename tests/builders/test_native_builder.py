"""The native builder end to end: layouts peers accept, publishes that mount base layers, reproducibility.

Real peers check what it writes: `umoci` unpacks and `oci-image-tool validate` accepts a native
`build -o DIR` layout; a native publish FROM a multi-arch base in a real registry mounts the base
layers (the access log shows no GET of them) and each platform, pulled back by buildah and run
(under qemu for the foreign one), prints its own `uname -m`. The same inputs give the same
digests with another work directory and other context mtimes (SOURCE_DATE_EPOCH); no buildah,
podman or qemu need be on PATH; `builder: auto` chooses per Dockerfile.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import httpx
import pytest

from manifesto.builders import choose
from tests.publish.conftest import AccessLog, State, buildah_runner, index_platforms
from tests.support import ArchImage, Registry, inspect_raw, push_image, require, run

EPOCH = "1700000000"
TWO = ("linux/amd64", "linux/arm64/v8")
UNAME = {"linux/amd64": "x86_64", "linux/arm64/v8": "aarch64"}
ARCH = {"linux/amd64": "amd64", "linux/arm64/v8": "arm64"}


def _write(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def _scratch_project(root: Path, target: str) -> Path:
    """A scratch image with a per-arch "binary", a directory and config instructions."""
    _write(
        root,
        {
            "Dockerfile": """\
                FROM scratch
                ARG TARGETARCH
                COPY bin/hello-${TARGETARCH} /usr/local/bin/hello
                COPY etc/ /etc/hello/
                WORKDIR /srv
                ENV GREETING=hi
                LABEL org.example.kind=test
                EXPOSE 8080
                USER 1000:1000
                ENTRYPOINT ["/usr/local/bin/hello"]
                CMD ["--help"]
                """,
            "bin/hello-amd64": "amd64 binary\n",
            "bin/hello-arm64": "arm64 binary\n",
            "etc/a.conf": "a=1\n",
            "etc/sub/b.conf": "b=2\n",
            ".dockerignore": "**/*.tmp\n",
            "etc/skip.tmp": "ignored\n",
            "platforms.yaml": f"""\
                image: {target}
                tags: ["1"]
                build: {{builder: native}}
                platforms: [{", ".join(TWO)}]
                """,
        },
    )
    for name in ("hello-amd64", "hello-arm64"):
        (root / "bin" / name).chmod(0o755)
    return root / "platforms.yaml"


@pytest.fixture
def state(tmp_path: Path) -> State:
    return State.make(tmp_path / "state")


def _no_tools_path(tmp_path: Path) -> str:
    """A PATH with none of buildah, podman, qemu-*, docker: just an empty directory."""
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    return str(empty)


# ---- a scratch image into a layout ---------------------------------------------------------------


def test_build_o_layout_is_accepted_by_umoci_and_oci_image_tool(tmp_path: Path, state: State) -> None:
    umoci, validator = require("umoci"), require("oci-image-tool")
    spec = _scratch_project(tmp_path / "project", "localhost:5000/unused")
    out = tmp_path / "out"
    rc, stdout, err = state.run("build", "-f", spec, "-o", out, env={"PATH": _no_tools_path(tmp_path)})
    assert rc == 0, err
    index = json.loads((out / "index.json").read_text())
    tags = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}
    assert "1" in tags
    run([validator, "validate", "--type", "image", "--ref", "name=1", str(out)])
    children = json.loads((out / "blobs" / "sha256" / tags["1"]["digest"].split(":")[1]).read_bytes())["manifests"]
    assert [c["platform"]["architecture"] for c in children] == ["amd64", "arm64"]
    for platform, child in zip(TWO, children):
        name = platform.replace("/", "-")
        # the peers name one image by a tag: an index.json holding just this child, so tagged
        only = dict(index, manifests=[dict(child, annotations={"org.opencontainers.image.ref.name": name})])
        (out / "index.json").write_text(json.dumps(only))
        run([validator, "validate", "--type", "image", "--ref", f"name={name}", str(out)])
        bundle = tmp_path / f"bundle-{name}"
        run([umoci, "unpack", "--rootless", "--image", f"{out}:{name}", str(bundle)])
        rootfs = bundle / "rootfs"
        hello = rootfs / "usr" / "local" / "bin" / "hello"
        assert hello.read_text() == f"{ARCH[platform]} binary\n"
        assert os.stat(hello).st_mode & 0o777 == 0o755
        assert (rootfs / "etc" / "hello" / "sub" / "b.conf").read_text() == "b=2\n"
        assert not (rootfs / "etc" / "hello" / "skip.tmp").exists()  # .dockerignore
        assert (rootfs / "srv").is_dir()
        runtime = json.loads((bundle / "config.json").read_text())
        assert runtime["process"]["args"] == ["/usr/local/bin/hello", "--help"]
        assert runtime["process"]["cwd"] == "/srv"
        assert "GREETING=hi" in runtime["process"]["env"]


def test_same_inputs_same_digests_with_other_work_dirs_and_mtimes(tmp_path: Path) -> None:
    digests = []
    for n in (1, 2):
        state = State.make(tmp_path / f"state{n}")
        spec = _scratch_project(tmp_path / f"project{n}", "localhost:5000/unused")
        for path in (tmp_path / f"project{n}").rglob("*"):
            os.utime(path, (1_600_000_000 + n * 1000, 1_800_000_000 + n * 1000))  # newer than the epoch
        report = tmp_path / f"R{n}.json"
        rc, _, err = state.run("build", "-f", spec, "-o", tmp_path / f"out{n}", "--report", report)
        assert rc == 0, err
        data = json.loads(report.read_text())
        digests.append((data["index"]["digest"], [p["digest"] for p in data["platforms"]]))
    assert digests[0] == digests[1]
    assert len(set(digests[0][1])) == 2  # the two platforms differ


# ---- FROM a multi-arch base in a registry ----------------------------------------------------------


def _push_base(registry: Registry, images: dict[str, ArchImage], repo: str) -> dict[str, ArchImage]:
    """Push the amd64 and arm64 busybox images into `repo` and an OCI index of them as `repo:1`."""
    chosen = {p: images[ARCH[p]] for p in TWO}
    descriptors = []
    for image in chosen.values():
        push_image(image, f"{repo}@{image.manifest_digest}", registry)
        descriptors.append(image.descriptor())
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": descriptors}
    with httpx.Client(base_url=registry.url) as c:
        r = c.put(f"/v2/{repo}/manifests/1", content=json.dumps(index).encode(),
                  headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
        assert r.status_code == 201, r.text
    return chosen


def test_native_publish_mounts_base_layers_and_every_platform_runs(
    tmp_path: Path, registry: Registry, arch_images: dict[str, ArchImage], state: State
) -> None:
    require("buildah")
    base = _push_base(registry, arch_images, "native-base")
    project = tmp_path / "project"
    _write(
        project,
        {
            "Dockerfile": f"""\
                FROM {registry.host}/native-base:1
                ARG TARGETARCH
                COPY msg-${{TARGETARCH}} /etc/msg
                ENV WHO=native
                CMD ["/bin/sh", "-c", "uname -m; cat /etc/msg"]
                """,
            "msg-amd64": "built natively for amd64\n",
            "msg-arm64": "built natively for arm64\n",
            "platforms.yaml": f"""\
                image: {registry.ref("native-app")}
                tags: ["1"]
                platforms: [{", ".join(TWO)}]
                """,
        },
    )
    spec = project / "platforms.yaml"
    rc, out, _ = state.run("publish", "-f", spec, "--dry-run")
    assert rc == 0 and out.count("native (auto: no instruction needs execution)") == 2, out

    log = AccessLog(registry)
    mark = log.mark()
    rc, out, err = state.run("publish", "-f", spec, env={"PATH": _no_tools_path(tmp_path)})
    assert rc == 0, err
    requests = log.since(mark)
    base_layers = {img.layer_digest for img in base.values()}
    gets = [r for r in requests if r.method == "GET" and any(r.path.endswith(d) for d in base_layers)]
    assert gets == [], gets  # never downloaded, neither to build nor to push
    mounts = [r for r in requests if r.method == "POST" and "mount=" in r.query and "from=native-base" in r.query]
    assert {r.status for r in mounts} == {201} and len(mounts) == len(base_layers), mounts

    ref = registry.ref("native-app", "1")
    children = index_platforms(inspect_raw(ref))
    assert list(children) == list(TWO)
    b = buildah_runner(tmp_path / "buildah")
    for platform in TWO:
        os_, arch, *variant = platform.split("/")
        name = f"native-{arch}"
        b("from", "--quiet", "--name", name, "--tls-verify=false", "--authfile", str(b.authfile),
          "--os", os_, "--arch", arch, *(["--variant", variant[0]] if variant else []), f"docker://{ref}")  # fmt: skip
        try:
            got = b("run", "--isolation", "chroot", name, "/bin/sh", "-c", "uname -m; cat /etc/msg; echo $WHO").stdout
            assert got.split("\n")[:3] == [UNAME[platform], f"built natively for {ARCH[platform]}", "native"], got
        finally:
            b("rm", name, check=False)


# ---- builder: auto -----------------------------------------------------------------------------------


def test_auto_picks_native_without_run_and_buildah_with_run(tmp_path: Path, state: State) -> None:
    _write(tmp_path, {"Dockerfile.plain": "FROM scratch\nCOPY a /a\n", "Dockerfile.run": "FROM alpine\n\nRUN true\n"})
    assert choose("auto", tmp_path / "Dockerfile.plain").builder == "native"
    chosen = choose("auto", tmp_path / "Dockerfile.run")
    assert chosen.builder == "buildah" and "Dockerfile.run:3" in chosen.reason and "RUN" in chosen.reason
    assert choose("buildah", tmp_path / "Dockerfile.plain").builder == "buildah"  # named, not chosen
    _write(
        tmp_path,
        {
            "platforms.yaml": """\
                image: localhost:5000/auto
                tags: ["1"]
                platforms:
                  - platform: linux/amd64
                    dockerfile: Dockerfile.plain
                  - platform: linux/arm64
                    dockerfile: Dockerfile.run
                """,
        },
    )
    rc, out, err = state.run("publish", "-f", tmp_path / "platforms.yaml", "--dry-run")
    assert rc == 0, err
    amd = next(line for line in out.splitlines() if line.startswith("  linux/amd64"))
    arm = next(line for line in out.splitlines() if line.startswith("  linux/arm64"))
    assert "native (auto: no instruction needs execution)" in amd
    assert "buildah (auto: Dockerfile.run:3: RUN needs a builder that executes commands)" in arm
