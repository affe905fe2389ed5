"""The native builder end to end: layouts peers accept, publishes that mount base layers, reproducibility.

Real peers check what it writes: `umoci` unpacks and `oci-image-tool validate` accepts a native
`build -o DIR` layout; a native publish FROM a multi-arch base in a real registry mounts the base
layers (the access log shows no GET of them) and each platform, pulled back by buildah and run
(under qemu for the foreign one), prints its own `uname -m`. The same inputs give the same
digests with another work directory and other context mtimes (SOURCE_DATE_EPOCH); no buildah,
podman or qemu need be on PATH; `builder: auto` chooses per Dockerfile.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import textwrap
from pathlib import Path

import httpx
import pytest

from manifesto.builders import choose
from manifesto.builders.base import BuildRequest
from manifesto.builders.native import layer as layer_module
from manifesto.builders.native.builder import NativeBuilder
from manifesto.oci.platform import Platform
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
                COPY msg-${{TARGETARCH}}/msg /etc/
                ENV WHO=native
                CMD ["/bin/sh", "-c", "uname -m; cat /etc/msg"]
                """,
            "msg-amd64/msg": "built natively for amd64\n",
            "msg-arm64/msg": "built natively for arm64\n",
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


def test_build_o_from_a_registry_base_streams_the_base_layers_into_the_layout(
    tmp_path: Path, registry: Registry, arch_images: dict[str, ArchImage], state: State
) -> None:
    """`build -o DIR` FROM a registry base: the layout is complete (each base layer fetched
    once, into it), and umoci and oci-image-tool accept it."""
    umoci, validator = require("umoci"), require("oci-image-tool")
    base = _push_base(registry, arch_images, "native-o-base")
    project = tmp_path / "project"
    _write(project, {
        "Dockerfile": f"""\
            FROM {registry.host}/native-o-base:1
            ARG TARGETARCH
            COPY msg-${{TARGETARCH}}/msg /etc/
            """,
        "msg-amd64/msg": "amd64\n",
        "msg-arm64/msg": "arm64\n",
        "platforms.yaml": f"""\
            image: {registry.ref("unused")}
            tags: ["1"]
            build: {{builder: native}}
            platforms: [{", ".join(TWO)}]
            """,
    })  # fmt: skip
    out = tmp_path / "out"
    log = AccessLog(registry)
    mark = log.mark()
    rc, _, err = state.run("build", "-f", project / "platforms.yaml", "-o", out, env={"PATH": _no_tools_path(tmp_path)})
    assert rc == 0, err
    gets = [r.path.rsplit("/", 1)[1] for r in log.since(mark) if r.method == "GET" and "/blobs/" in r.path]
    layers = sorted(img.layer_digest for img in base.values())
    assert sorted(d for d in gets if d in layers) == layers  # each once: into the layout, never to build
    for digest in layers:
        assert (out / "blobs" / "sha256" / digest.split(":")[1]).is_file()
    index = json.loads((out / "index.json").read_text())
    (top,) = index["manifests"]
    children = json.loads((out / "blobs" / "sha256" / top["digest"].split(":")[1]).read_bytes())["manifests"]
    assert not [p for p in out.iterdir() if p.name not in ("blobs", "index.json", "oci-layout")]
    for platform, child in zip(TWO, children):
        name = platform.replace("/", "-")
        only = dict(index, manifests=[dict(child, annotations={"org.opencontainers.image.ref.name": name})])
        (out / "index.json").write_text(json.dumps(only))
        run([validator, "validate", "--type", "image", "--ref", f"name={name}", str(out)])
        bundle = tmp_path / f"bundle-{name}"
        run([umoci, "unpack", "--rootless", "--image", f"{out}:{name}", str(bundle)])
        assert (bundle / "rootfs" / "etc" / "msg").read_text() == f"{ARCH[platform]}\n"
        assert (bundle / "rootfs" / "bin" / "busybox").is_file()  # the base's layer


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


# ---- a base whose directories the build must leave alone -------------------------------------------


def _tar(entries: list[tuple[str, str, int, int, str]]) -> bytes:
    """A layer tar of (path, kind: dir|file, mode, uid=gid, content)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, kind, mode, uid, data in entries:
            info = tarfile.TarInfo(path)
            info.mode, info.uid, info.gid = mode, uid, uid
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data.encode())
                tar.addfile(info, io.BytesIO(data.encode()))
    return buf.getvalue()


def _base_layout(root: Path, working_dir: str = "", volumes: tuple[str, ...] = ()) -> Path:
    """An `oci:` layout tagged `1`: linux/amd64, one layer with /tmp 1777, /opt 0711 and
    /usr/local/bin holding a tool."""
    layout = root / "base"
    (layout / "blobs" / "sha256").mkdir(parents=True)

    def blob(data: bytes, media_type: str) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (layout / "blobs" / "sha256" / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    tar = _tar([
        ("opt", "dir", 0o711, 0, ""), ("tmp", "dir", 0o1777, 0, ""), ("usr", "dir", 0o755, 0, ""),
        ("usr/local", "dir", 0o755, 0, ""), ("usr/local/bin", "dir", 0o755, 0, ""),
        ("usr/local/bin/tool", "file", 0o755, 0, "tool\n"),
    ])  # fmt: skip
    inner: dict = {"Env": ["PATH=/usr/local/bin:/bin"]}
    if working_dir:
        inner["WorkingDir"] = working_dir
    if volumes:
        inner["Volumes"] = {v: {} for v in volumes}
    config = {"architecture": "amd64", "os": "linux", "config": inner,
              "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]}}  # fmt: skip
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": blob(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json"),
        "layers": [blob(gzip.compress(tar, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip")],
    }  # fmt: skip
    top = blob(json.dumps(manifest).encode(), manifest["mediaType"])
    top["annotations"] = {"org.opencontainers.image.ref.name": "1"}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return layout


def _native_build(project: Path, dockerfile: str, out: Path, builder: NativeBuilder | None = None):
    (project / "Dockerfile").write_text(textwrap.dedent(dockerfile))
    request = BuildRequest(Platform.parse("linux/amd64"), project, project / "Dockerfile", {}, out, tag="t",
                           source_date_epoch=int(EPOCH))  # fmt: skip
    return (builder or NativeBuilder()).build(request, lambda line: None)


def _applied(layout: Path, base: Path) -> tuple[dict[str, tuple[str, int, int, int]], list[list[str]]]:
    """The filesystem every layer gives, applied in order as a runtime does (a missing parent is
    made 0755 0:0): {path: (kind, mode, uid, gid)}; and the entries of each new layer."""
    (top,) = json.loads((layout / "index.json").read_text())["manifests"]
    manifest = json.loads((layout / "blobs" / "sha256" / top["digest"].split(":")[1]).read_bytes())
    tree: dict[str, tuple[str, int, int, int]] = {}
    new: list[list[str]] = []
    for n, descriptor in enumerate(manifest["layers"]):
        hexdigest = descriptor["digest"].split(":")[1]
        path = layout / "blobs" / "sha256" / hexdigest
        with tarfile.open(path if path.exists() else base / "blobs" / "sha256" / hexdigest, "r:*") as tar:
            members = tar.getmembers()
        if n:
            new.append([m.name for m in members])
        for m in members:
            parts = m.name.strip("/").split("/")
            for k in range(1, len(parts)):
                tree.setdefault("/" + "/".join(parts[:k]), ("dir", 0o755, 0, 0))
            tree["/" + m.name.strip("/")] = ("dir" if m.isdir() else "file", m.mode & 0o7777, m.uid, m.gid)
    return tree, new


def test_copy_and_add_leave_the_bases_directories_as_they_are(tmp_path: Path) -> None:
    """No entry for a destination or a parent the build did not make: /tmp stays 1777 and /opt
    0711 (with --chown), /usr/local/bin keeps its tool; a missing one is made 0755 0:0."""
    base = _base_layout(tmp_path)
    project = tmp_path / "project"
    _write(project, {"f": "f\n", "bin/app": "app\n", "conf/a.conf": "a\n"})
    tsrc = tmp_path / "tsrc"
    _write(tsrc, {"vendor/v": "v\n"})
    run(["tar", "--owner=0", "--group=0", "-C", tsrc, "-czf", project / "x.tar.gz", "vendor"])
    out = tmp_path / "out"
    _native_build(project, f"""\
        FROM oci:{base}:1
        COPY --chown=1000 f /tmp/
        ADD --chown=5:5 x.tar.gz /opt
        COPY bin /usr/local/bin
        COPY --chown=7:7 conf/ /etc/app/
        COPY f /usr/local/bin/
        """, out)  # fmt: skip
    tree, new = _applied(out, base)
    assert tree["/tmp"] == ("dir", 0o1777, 0, 0) and tree["/tmp/f"] == ("file", 0o644, 1000, 1000)
    assert tree["/opt"] == ("dir", 0o711, 0, 0) and tree["/opt/vendor/v"][0] == "file"
    assert tree["/usr/local/bin"] == ("dir", 0o755, 0, 0)
    assert {p for p in tree if p.startswith("/usr/local/bin/")} == {"/usr/local/bin/" + n for n in ("tool", "app", "f")}
    assert tree["/etc/app"] == ("dir", 0o755, 0, 0)  # the documented --chown difference: docker gives 7:7
    assert new == [["tmp/f"], ["opt/vendor", "opt/vendor/v"], ["usr/local/bin/app"], ["etc/app/a.conf"],
                   ["usr/local/bin/f"]]  # fmt: skip


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # a usual directory: copied INTO it, as docker does on any real base
        ("COPY bin/app /usr/local/bin", "/usr/local/bin/app"),
        # the base config's WorkingDir (/srv/www here) and a Volume (/data) are directories too
        ("COPY f /srv/www", "/srv/www/f"),
        ("COPY f /data", "/data/f"),
        # a path the base is not known to have as a directory: written as a file there
        ("COPY bin/app /usr/local/bin/app", "/usr/local/bin/app"),
        ("COPY f /hello.txt", "/hello.txt"),
        ("COPY f /made/\nADD f /made/f", "/made/f"),
        ("WORKDIR /w\nCOPY f out", "/w/out"),
    ],
)
def test_a_file_copied_without_a_trailing_slash_goes_where_docker_puts_it(
    tmp_path: Path, steps: str, expected: str
) -> None:
    base = _base_layout(tmp_path, working_dir="/srv/www", volumes=("/data",))
    project = tmp_path / "project"
    _write(project, {"f": "f\n", "bin/app": "app\n"})
    out = tmp_path / "out"
    _native_build(project, f"FROM oci:{base}:1\n{steps}\n", out)
    tree, _ = _applied(out, base)
    assert tree[expected][0] == "file", tree
    assert tree["/usr/local/bin"][0] == "dir" and "/usr/local/bin/tool" in tree  # the base's directory kept


def test_destinations_this_build_made_are_known(tmp_path: Path) -> None:
    """A file this build wrote may be written again, a directory it made is copied into; on
    scratch, a file destination needs no slash."""
    base = _base_layout(tmp_path)
    project = tmp_path / "project"
    _write(project, {"f": "f\n", "g": "g\n", "d/x": "x\n"})
    out = tmp_path / "out"
    _native_build(project, f"""\
        FROM oci:{base}:1
        COPY f /srv/f/
        COPY g /srv/f
        COPY d /data
        COPY g /data
        WORKDIR /w
        COPY f /w
        """, out)  # fmt: skip
    tree, _ = _applied(out, base)
    assert {"/srv/f/f", "/srv/f/g", "/data/x", "/data/g", "/w/f"} <= set(tree)
    scratch = _native_build(project, "FROM scratch\nCOPY f /usr/local/bin/f\n", tmp_path / "scratch")
    assert scratch.digest is not None


def test_layers_are_written_outside_blobs_and_renamed_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a layer is being written, blobs/sha256 holds no temporary file (a crash would
    leave one there, which layout validators refuse); nothing is left beside it after."""
    project = tmp_path / "project"
    _write(project, {"f": "f\n"})
    out = tmp_path / "out"
    seen: list[tuple[list[str], list[str]]] = []
    write = layer_module._Sink.write

    def spy(self, data: bytes) -> int:
        blobs = out / "blobs" / "sha256"
        seen.append(([p.name for p in blobs.iterdir()], [p.name for p in out.rglob(".layer-*")]))
        return write(self, data)

    monkeypatch.setattr(layer_module._Sink, "write", spy)
    _native_build(project, "FROM scratch\nCOPY f /f\n", out)
    assert seen and all(not any(n.startswith(".") for n in blobs) and temps for blobs, temps in seen)
    assert sorted(p.name for p in out.iterdir()) == ["blobs", "index.json", "oci-layout"]
