"""The native builder and buildah build the same image from the same Dockerfile.

Why: `builder: auto` swaps buildah for the native builder whenever a Dockerfile needs no
execution, so for those Dockerfiles what a container sees must not change. Each case builds one
project with `manifesto build -o DIR --builder native` and `--builder buildah` (two platforms),
then compares, per platform:

- the filesystem: every layer of the image (the base's too) applied in order, whiteouts
  honoured, as a runtime would; per path its type, mode, owner, link target and content, and
  which paths are hard links of one file. Not mtimes: with SOURCE_DATE_EPOCH buildah 1.28 sets
  every file's mtime to it, the native builder clamps (an older mtime stays), as buildkit does.
- the config facts: Env, Cmd, Entrypoint, WorkingDir, User, Labels, ExposedPorts, Volumes,
  StopSignal and os/architecture/variant. buildah adds its `io.buildah.version` label, which is
  left out; on `FROM scratch` without WORKDIR the native builder records WorkingDir "/" (as
  docker does) where buildah records none, which the scratch cases check as such. Env is
  compared as a set of one entry per name: an ENV of a name the base has replaces its entry in
  place (buildkit's order), where buildah moves it to the end.

Not compared, because the native builder cannot know the base's filesystem: the destination
directory of a `COPY --chown=N` onto a base that lacks it (docker makes it owned by N; the native
layer holds no entry for it, lest it rewrite a directory the base has, so it is made 0755 0:0),
which the cases that have one check as such.

Known differences the native builder documents (EXPOSE ranges, SHELL, HEALTHCHECK, history
texts) are kept out of these Dockerfiles; tests/builders/test_native_instructions.py covers them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import posixpath
import subprocess
import tarfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.publish.conftest import State
from tests.support import Registry, busybox_path, require
from tests.support.images import layer_tar

CONFIG_FACTS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "ExposedPorts", "Volumes", "StopSignal")
BUILDAH_LABEL = "io.buildah.version"
OCI = "application/vnd.oci.image."
BASE_ARCHES = {"linux/amd64": "amd64", "linux/arm64/v8": "arm64"}  # platform -> Debian arch of its busybox


# ---- reading a built layout ------------------------------------------------------------------------


def _blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / digest.replace(":", "/")


def _images(layout: Path) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """{platform: (manifest, config)} of the index the layout's one tag names."""
    (top,) = json.loads((layout / "index.json").read_text())["manifests"]
    out = {}
    for child in json.loads(_blob(layout, top["digest"]).read_bytes())["manifests"]:
        manifest = json.loads(_blob(layout, child["digest"]).read_bytes())
        config = json.loads(_blob(layout, manifest["config"]["digest"]).read_bytes())
        out[_platform(config)] = (manifest, config)
    return out


def _platform(config: dict[str, Any]) -> str:
    return "/".join(p for p in (config["os"], config["architecture"], config.get("variant")) if p)


@dataclass(frozen=True)
class Node:
    """One path of an applied filesystem: what a runtime would see there (not its mtime)."""

    kind: str  # dir, file, symlink, fifo, char, block
    mode: int
    uid: int
    gid: int
    link: str = ""  # a symlink's target
    content: str = ""  # sha256 of a file's bytes
    inode: int = 0  # files that are hard links of one another share it


def _filesystem(layout: Path, manifest: dict[str, Any]) -> dict[str, Node]:
    """Every layer of `manifest` applied in order, as a runtime's tar applier does: whiteouts
    remove, a missing parent is made 0755 0:0, a hard link shares its target's inode."""
    tree: dict[str, Node] = {}
    inodes = iter(range(1, 1 << 30))
    for layer in manifest["layers"]:
        with tarfile.open(_blob(layout, layer["digest"]), "r:*") as tar:
            for m in tar:
                path = posixpath.normpath("/" + m.name)
                parent, name = posixpath.split(path)
                if name == ".wh..wh..opq":
                    for p in [p for p in tree if p.startswith(parent.rstrip("/") + "/")]:
                        del tree[p]
                    continue
                if name.startswith(".wh."):
                    gone = posixpath.join(parent, name[4:])
                    for p in [p for p in tree if p == gone or p.startswith(gone + "/")]:
                        del tree[p]
                    continue
                for p in _ancestors(path):
                    tree.setdefault(p, Node("dir", 0o755, 0, 0))
                if m.islnk():
                    tree[path] = tree[posixpath.normpath("/" + m.linkname)]
                    continue
                old = tree.get(path)
                if old is not None and (old.kind != "dir" or not m.isdir()):
                    for p in [p for p in tree if p.startswith(path + "/")]:
                        del tree[p]
                mode, uid, gid = m.mode & 0o7777, m.uid, m.gid
                if m.isdir():
                    tree[path] = Node("dir", mode, uid, gid)
                elif m.isreg():
                    digest = hashlib.sha256(tar.extractfile(m).read()).hexdigest()  # type: ignore[union-attr]
                    tree[path] = Node("file", mode, uid, gid, content=digest, inode=next(inodes))
                elif m.issym():
                    tree[path] = Node("symlink", mode, uid, gid, link=m.linkname)
                else:
                    kind = {tarfile.FIFOTYPE: "fifo", tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block"}[m.type]
                    tree[path] = Node(kind, mode, uid, gid, link=f"{m.devmajor}:{m.devminor}")
    return tree


def _ancestors(path: str) -> list[str]:
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[: k + 1]) for k in range(len(parts))]


def _comparable(tree: dict[str, Node]) -> tuple[dict[str, Node], set[frozenset[str]]]:
    """The nodes without inode numbers (they differ by construction), and the hard-link groups."""
    groups: dict[int, set[str]] = {}
    for path, node in tree.items():
        if node.kind == "file":
            groups.setdefault(node.inode, set()).add(path)
    nodes = {path: Node(n.kind, n.mode, n.uid, n.gid, n.link, n.content) for path, n in tree.items()}
    return nodes, {frozenset(g) for g in groups.values() if len(g) > 1}


def _facts(config: dict[str, Any]) -> dict[str, Any]:
    inner = config.get("config") or {}
    facts = {key: inner.get(key) or None for key in CONFIG_FACTS}
    labels = {k: v for k, v in (facts["Labels"] or {}).items() if k != BUILDAH_LABEL}
    facts["Labels"] = labels or None
    env = facts["Env"] or []
    assert len({e.partition("=")[0] for e in env}) == len(env), env  # one entry per name
    facts["Env"] = sorted(env)  # the order: see the module's docstring
    facts["platform"] = _platform(config)
    return facts


# ---- building ------------------------------------------------------------------------------------


def _write(root: Path, files: dict[str, str | bytes], modes: dict[str, int] | None = None) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content))
    for name, mode in (modes or {}).items():
        (root / name).chmod(mode)


def _spec(root: Path, platforms: tuple[str, ...]) -> Path:
    path = root / "platforms.yaml"
    path.write_text(f"image: 127.0.0.1:5000/equivalence\ntags: ['1']\nplatforms: [{', '.join(platforms)}]\n")
    return path


def _build_both(state: State, spec: Path, tmp_path: Path) -> dict[str, dict[str, tuple[dict, dict]]]:
    """{builder: {platform: (manifest, config)}} and the layouts under tmp_path/out-<builder>."""
    built = {}
    for builder in ("native", "buildah"):
        out = tmp_path / f"out-{builder}"
        rc, _, err = state.run("build", "-q", "-f", spec, "--builder", builder, "-o", out)
        assert rc == 0, f"{builder}: {err}"
        built[builder] = _images(out)
    return built


def _compare(tmp_path: Path, built: dict[str, dict[str, tuple[dict, dict]]], platforms: tuple[str, ...],
             *, scratch_workdir: bool = False, chown_dests: dict[str, int] | None = None,
             ) -> dict[str, dict[str, Node]]:  # fmt: skip
    """Assert both builders gave each platform the same filesystem and config facts; return
    the native filesystems (so a case can also check what it expects to be there).
    `chown_dests` maps the destination directories of `COPY --chown=N` the base lacks to N."""
    assert set(built["native"]) == set(built["buildah"]) == set(platforms)
    trees = {}
    for platform in platforms:
        native = _filesystem(tmp_path / "out-native", built["native"][platform][0])
        buildah = _filesystem(tmp_path / "out-buildah", built["buildah"][platform][0])
        for path, uid in (chown_dests or {}).items():  # the documented difference, checked as such
            assert (native.pop(path), buildah.pop(path)) == (Node("dir", 0o755, 0, 0), Node("dir", 0o755, uid, uid))
        ours, theirs = _comparable(native), _comparable(buildah)
        only = sorted(set(ours[0]) ^ set(theirs[0]))
        assert not only, f"{platform}: paths in one image only: {only}"
        differ = {p: (ours[0][p], theirs[0][p]) for p in ours[0] if ours[0][p] != theirs[0][p]}
        assert not differ, f"{platform}: native vs buildah: {differ}"
        assert ours[1] == theirs[1], f"{platform}: hard links differ"
        facts_native = _facts(built["native"][platform][1])
        facts_buildah = _facts(built["buildah"][platform][1])
        if scratch_workdir:  # docker records "/" for a scratch stage without WORKDIR; buildah nothing
            assert (facts_native.pop("WorkingDir"), facts_buildah.pop("WorkingDir")) == ("/", None)
        assert facts_native == facts_buildah
        trees[platform] = native
    return trees


@pytest.fixture
def state(tmp_path: Path) -> State:
    require("buildah")
    return State.make(tmp_path / "state")


# ---- a multi-layer, two-platform base in a registry ---------------------------------------------------


def _tar(entries: list[tuple[str, str, int, int, str | bytes]]) -> bytes:
    """A deterministic layer tar of (path, kind: dir|file|symlink, mode, uid, content or link)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, kind, mode, uid, data in entries:
            info = tarfile.TarInfo(path)
            info.mode, info.uid, info.gid, info.mtime = mode, uid, uid, 1_600_000_000
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
                tar.addfile(info)
            else:
                raw = data.encode() if isinstance(data, str) else data
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def _base_layers(arch: str) -> list[bytes]:
    """busybox; a runtime with /etc, /usr/local and a /tmp of 1777; an update that replaces a
    file, removes one with a whiteout and adds a symlink and a 0750 /srv."""
    runtime = [
        ("etc", "dir", 0o755, 0, ""),
        ("etc/passwd", "file", 0o644, 0, "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n"),
        ("etc/motd", "file", 0o644, 0, "to be removed\n"),
        ("opt", "dir", 0o755, 0, ""),
        ("tmp", "dir", 0o1777, 0, ""),
        ("usr", "dir", 0o755, 0, ""),
        ("usr/local", "dir", 0o755, 0, ""),
        ("usr/local/bin", "dir", 0o755, 0, ""),
        ("usr/local/lib", "dir", 0o755, 0, ""),
        ("usr/local/lib/runtime", "dir", 0o755, 0, ""),
        ("usr/local/lib/runtime/core", "file", 0o644, 0, f"runtime 1 for {arch}\n"),
    ]
    update = [
        ("etc/.wh.motd", "file", 0o644, 0, ""),
        ("srv", "dir", 0o750, 0, ""),
        ("usr/local/bin/rt", "symlink", 0o777, 0, "../lib/runtime/core"),
        ("usr/local/lib/runtime/core", "file", 0o644, 0, f"runtime 2 for {arch}\n"),
    ]
    return [layer_tar(busybox_path(arch).read_bytes()), _tar(runtime), _tar(update)]


def _json_blob(layout: Path, doc: dict[str, Any], media_type: str) -> dict[str, Any]:
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return _raw_blob(layout, raw, media_type)


def _raw_blob(layout: Path, raw: bytes, media_type: str) -> dict[str, Any]:
    digest = hashlib.sha256(raw).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(raw)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(raw)}


@pytest.fixture(scope="module")
def base(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`eq-base:1` in the module's registry: an OCI index of amd64 and arm64/v8, three layers each."""
    skopeo = require("skopeo")
    layout = tmp_path_factory.mktemp("eq-base")
    (layout / "blobs" / "sha256").mkdir(parents=True)
    children = []
    for platform, arch in BASE_ARCHES.items():
        tars = _base_layers(arch)
        layers = [_raw_blob(layout, gzip.compress(t, mtime=0), OCI + "layer.v1.tar+gzip") for t in tars]
        os_, architecture, *variant = platform.split("/")
        plat = {"os": os_, "architecture": architecture, **({"variant": variant[0]} if variant else {})}
        config = {
            **plat,
            "created": "2020-09-13T12:26:40Z",
            "config": {
                "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"],
                "Cmd": ["/usr/local/bin/rt"],
                "Labels": {"org.example.base": "runtime"},
                "ExposedPorts": {"9000/tcp": {}},
                "WorkingDir": "/srv",
            },
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars]},
            "history": [{"created": "2020-09-13T12:26:40Z", "created_by": f"base layer {n}"} for n in range(3)],
        }
        manifest = {"schemaVersion": 2, "mediaType": OCI + "manifest.v1+json",
                    "config": _json_blob(layout, config, OCI + "config.v1+json"), "layers": layers}  # fmt: skip
        children.append({**_json_blob(layout, manifest, OCI + "manifest.v1+json"), "platform": plat})
    index = _json_blob(layout, {"schemaVersion": 2, "mediaType": OCI + "index.v1+json", "manifests": children},
                       OCI + "index.v1+json")  # fmt: skip
    index["annotations"] = {"org.opencontainers.image.ref.name": "1"}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [index]}))
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    ref = f"{registry.host}/eq-base:1"
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(layout.parent / "no-auth.json")}
    (layout.parent / "no-auth.json").write_text("{}")
    subprocess.run([skopeo, "--insecure-policy", "copy", "--quiet", "--all", "--preserve-digests",
                    "--dest-tls-verify=false", f"oci:{layout}:1", f"docker://{ref}"],
                   check=True, env=env, capture_output=True, timeout=120)  # fmt: skip
    return ref


# ---- the cases -------------------------------------------------------------------------------------


def test_scratch_with_a_static_binary_per_arch(tmp_path: Path, state: State) -> None:
    """FROM scratch + the platform's own busybox-static chosen by ${TARGETARCH}${TARGETVARIANT}."""
    platforms = ("linux/amd64", "linux/arm/v7")
    root = tmp_path / "project"
    _write(root, {
        "Dockerfile": """\
            FROM scratch
            ARG TARGETARCH
            ARG TARGETVARIANT
            COPY bin/hello-${TARGETARCH}${TARGETVARIANT} /usr/local/bin/hello
            COPY bin/hello-${TARGETARCH}${TARGETVARIANT} /bin/
            ENV GREETING=hello
            ENTRYPOINT ["/usr/local/bin/hello"]
            CMD ["echo", "hello"]
            """,
        "bin/hello-amd64": busybox_path("amd64").read_bytes(),
        "bin/hello-armv7": busybox_path("armhf").read_bytes(),
    }, {"bin/hello-amd64": 0o755, "bin/hello-armv7": 0o755})  # fmt: skip
    trees = _compare(tmp_path, _build_both(state, _spec(root, platforms), tmp_path), platforms, scratch_workdir=True)
    for platform, name in zip(platforms, ("hello-amd64", "hello-armv7")):
        binary = hashlib.sha256((root / "bin" / name).read_bytes()).hexdigest()
        hello = trees[platform]["/usr/local/bin/hello"]
        assert (hello.kind, hello.mode, hello.uid, hello.gid, hello.content) == ("file", 0o755, 0, 0, binary)
        assert trees[platform]["/bin/" + name].content == binary


def test_multi_layer_base_app_directory_and_config(tmp_path: Path, state: State, base: str) -> None:
    """A three-layer base from a registry (an index: each platform takes its child), an app
    directory with a hard link and a symlink, WORKDIR, every config instruction."""
    platforms = tuple(BASE_ARCHES)
    root = tmp_path / "project"
    _write(root, {
        "Dockerfile": f"""\
            FROM {base}
            ARG TARGETARCH
            ENV PATH=/app/bin:${{PATH}} APP_HOME=/app
            WORKDIR /app
            COPY app/ ./
            COPY tools/tool-${{TARGETARCH}} /usr/local/bin/
            COPY conf/app.conf conf/extra.conf /etc/app/
            LABEL org.opencontainers.image.title="equivalence app" org.example.arch=${{TARGETARCH}}
            EXPOSE 8080 8443/udp
            VOLUME ["/data", "/var/log/app"]
            USER 1000:1000
            STOPSIGNAL SIGINT
            ENTRYPOINT ["/app/bin/run"]
            CMD ["--serve", "--port=8080"]
            """,
        "app/bin/run": "#!/bin/sh\nexec echo serving \"$@\"\n",
        "app/lib/module.txt": "module\n",
        "app/lib/data/table.csv": "a,b\n1,2\n",
        "app/private/key": "k\n",
        "tools/tool-amd64": b"\x7fELF amd64 tool\n",
        "tools/tool-arm64": b"\x7fELF arm64 tool\n",
        "conf/app.conf": "port=8080\n",
        "conf/extra.conf": "debug=false\n",
    }, {"app/bin/run": 0o755, "app/private": 0o700, "app/private/key": 0o600, "tools/tool-amd64": 0o755,
        "tools/tool-arm64": 0o755, "conf/extra.conf": 0o640})  # fmt: skip
    os.symlink("lib/module.txt", root / "app" / "module")
    os.link(root / "app" / "lib" / "module.txt", root / "app" / "lib" / "module-again.txt")
    built = _build_both(state, _spec(root, platforms), tmp_path)
    tree = _compare(tmp_path, built, platforms)["linux/arm64/v8"]
    env = built["native"]["linux/arm64/v8"][1]["config"]["Env"]
    assert env == ["PATH=/app/bin:/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "APP_HOME=/app"]  # PATH in place
    assert tree["/usr/local/lib/runtime/core"].content == hashlib.sha256(b"runtime 2 for arm64\n").hexdigest()
    assert "/etc/motd" not in tree and tree["/tmp"].mode == 0o1777 and tree["/srv"].mode == 0o750
    assert tree["/app/private/key"].mode == 0o600 and tree["/app/module"].link == "lib/module.txt"
    assert tree["/usr/local/bin/tool-arm64"].kind == "file" and tree["/usr/local/bin"].kind == "dir"


def test_dockerignore(tmp_path: Path, state: State) -> None:
    """Patterns, `**`, a directory, and `!` exceptions decide what `COPY .` and a directory take."""
    platforms = ("linux/amd64", "linux/s390x")
    root = tmp_path / "project"
    _write(root, {
        "Dockerfile": "FROM scratch\nCOPY . /ctx/\nCOPY docs /docs\nCOPY --chown=7:8 docs /srv/www/docs\n",
        ".dockerignore": """\
            # build output and secrets stay out
            **/*.pyc
            **/__pycache__
            secrets
            docs/*.md
            !docs/README.md
            *.tmp
            Dockerfile
            """,
        "main.py": "print('hi')\n",
        "main.pyc": b"\x00compiled",
        "pkg/mod.py": "x = 1\n",
        "pkg/__pycache__/mod.cpython-311.pyc": b"\x00compiled",
        "pkg/deep/er/data.pyc": b"\x00compiled",
        "pkg/deep/er/data.json": "{}\n",
        "secrets/token": "s3cret\n",
        "docs/README.md": "read me\n",
        "docs/guide.md": "guide\n",
        "docs/img/logo.svg": "<svg/>\n",
        "scratch.tmp": "tmp\n",
    })  # fmt: skip
    trees = _compare(tmp_path, _build_both(state, _spec(root, platforms), tmp_path), platforms, scratch_workdir=True)
    paths = set(trees["linux/s390x"])
    assert {"/ctx/main.py", "/ctx/pkg/deep/er/data.json", "/ctx/docs/README.md", "/docs/README.md",
            "/docs/img/logo.svg", "/ctx/.dockerignore"} <= paths  # fmt: skip
    assert not {p for p in paths if p.endswith((".pyc", ".tmp", "guide.md")) or "secrets" in p or "__pycache__" in p}
    assert "/ctx/Dockerfile" not in paths
    www = trees["linux/amd64"]
    assert [(www[p].uid, www[p].gid) for p in ("/srv", "/srv/www", "/srv/www/docs/README.md")] == [(7, 8)] * 3


def test_chmod_and_numeric_chown(tmp_path: Path, state: State, base: str) -> None:
    """--chmod on files and directories (COPY and ADD), --chown by number, onto a base."""
    platforms = tuple(BASE_ARCHES)
    root = tmp_path / "project"
    _write(root, {
        "Dockerfile": f"""\
            FROM {base}
            COPY --chmod=0640 conf/ /etc/app/
            COPY --chmod=755 scripts/start /usr/local/bin/
            ADD --chmod=0600 app/secret /etc/app/
            COPY --chown=1000:1000 data/ /srv/data/
            COPY --chown=33 --chmod=0750 data/ /opt/www/
            """,
        "conf/a.conf": "a\n",
        "conf/sub/b.conf": "b\n",
        "scripts/start": "#!/bin/sh\necho start\n",
        "app/secret": "s\n",
        "data/one": "1\n",
        "data/nested/two": "2\n",
    }, {"conf/a.conf": 0o666, "scripts/start": 0o644, "data/nested": 0o700})  # fmt: skip
    built = _build_both(state, _spec(root, platforms), tmp_path)
    trees = _compare(tmp_path, built, platforms, chown_dests={"/srv/data": 1000, "/opt/www": 33})
    tree = trees["linux/amd64"]
    assert tree["/etc/app/sub/b.conf"].mode == 0o640 and tree["/usr/local/bin/start"].mode == 0o755
    assert (tree["/srv/data/nested/two"].uid, tree["/opt/www/one"].gid) == (1000, 33)
    assert tree["/opt/www/nested"].mode == 0o750 and tree["/srv"].mode == 0o750  # the base's /srv kept


def test_add_extracts_local_archives(tmp_path: Path, state: State, base: str) -> None:
    """ADD of a plain and a gzip tar (owners, modes, links as archived) into base directories;
    a file that only looks like an archive by name is copied as it is."""
    platforms = tuple(BASE_ARCHES)
    root = tmp_path / "project"
    _write(root, {"Dockerfile": f"""\
        FROM {base}
        ADD vendor.tar /opt/
        ADD assets.tgz /srv/assets/
        ADD fake.tar.gz /opt/
        """, "fake.tar.gz": "not an archive\n"})  # fmt: skip
    (root / "vendor.tar").write_bytes(_tar([
        ("vendor", "dir", 0o755, 0, ""),
        ("vendor/lib", "dir", 0o711, 7, ""),
        ("vendor/lib/v.so", "file", 0o755, 7, b"\x7fELF vendored\n"),
        ("vendor/lib/v.so.1", "symlink", 0o777, 0, "v.so"),
        ("vendor/LICENSE", "file", 0o444, 0, "MIT\n"),
    ]))  # fmt: skip
    (root / "assets.tgz").write_bytes(gzip.compress(_tar([
        ("css/site.css", "file", 0o644, 1000, "body{}\n"),
        ("img", "dir", 0o750, 1000, ""),
        ("img/logo.png", "file", 0o640, 1000, b"\x89PNG"),
    ]), mtime=0))  # fmt: skip
    trees = _compare(tmp_path, _build_both(state, _spec(root, platforms), tmp_path), platforms)
    tree = trees["linux/arm64/v8"]
    assert tree["/opt/vendor/lib"] == Node("dir", 0o711, 7, 7)
    assert tree["/opt/vendor/lib/v.so.1"].link == "v.so" and tree["/srv/assets/img/logo.png"].uid == 1000
    assert tree["/opt/fake.tar.gz"].content == hashlib.sha256(b"not an archive\n").hexdigest()


def test_copy_into_directories_of_the_base_keeps_them(tmp_path: Path, state: State, base: str) -> None:
    """A COPY or ADD into a directory the base has leaves that directory as the base made it
    (/tmp stays 1777, /srv 0750), as buildah and docker do; a destination the base lacks is
    made 0755 0:0 by the applier (docker would give it --chown's owner: the documented difference)."""
    platforms = tuple(BASE_ARCHES)
    root = tmp_path / "project"
    _write(root, {
        "Dockerfile": f"""\
            FROM {base}
            COPY conf/a.conf /tmp/
            COPY conf /srv
            ADD vendor.tar /srv/
            COPY --chown=1000:1000 conf/ /srv/conf/
            COPY conf/ /etc/conf/
            """,
        "conf/a.conf": "a\n",
    })  # fmt: skip
    (root / "vendor.tar").write_bytes(_tar([("vendor/v", "file", 0o644, 0, "v\n")]))
    built = _build_both(state, _spec(root, platforms), tmp_path)
    trees = _compare(tmp_path, built, platforms, chown_dests={"/srv/conf": 1000})
    tree = trees["linux/amd64"]
    assert tree["/tmp"] == Node("dir", 0o1777, 0, 0) and tree["/srv"] == Node("dir", 0o750, 0, 0)
    assert "/srv/conf" not in tree and tree["/etc/conf"] == Node("dir", 0o755, 0, 0)  # /srv/conf: checked in _compare
    assert tree["/srv/a.conf"].kind == tree["/srv/vendor/v"].kind == "file"
