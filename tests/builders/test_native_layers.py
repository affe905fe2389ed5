"""Native layers: build context, .dockerignore, COPY/ADD semantics and deterministic tar+gzip.

Why: a layer the native builder writes must hold what buildah writes for the same COPY on
`FROM scratch` (paths, types, modes, owners, link targets, contents), byte-identical across
machines when SOURCE_DATE_EPOCH is set, with memory flat whatever the size of the files.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from manifesto.builders.native.context import Context, Ignore
from manifesto.builders.native.layer import write_layer
from manifesto.builders.native.steps import CopyStep, Where
from manifesto.errors import UsageError
from tests.support.tools import REPO_ROOT, require, run

WHERE = Where("Dockerfile", 7)
OLD = 978307200  # 2001-01-01, a file mtime older than any epoch used here


def step(*sources: str, dest: str, **kw) -> CopyStep:
    return CopyStep(tuple(sources), dest, WHERE, **kw)


def _make_context(root: Path) -> Path:
    """A context with nested dirs, odd modes, symlinks, a hard link, long names, archives."""
    (root / "dir/sub").mkdir(parents=True)
    (root / "priv").mkdir()
    (root / "d/e").mkdir(parents=True)
    (root / "a.txt").write_text("hello\n")
    (root / "b.txt").write_text("b\n")
    (root / "b.txt").chmod(0o640)
    (root / "c1.txt").write_text("c\n")
    (root / "dir/x").write_text("x\n")
    (root / "dir/sub/y").write_text("y\n")
    (root / "dir/sub").chmod(0o700)
    (root / "dir").chmod(0o750)
    (root / "d/top").write_text("top\n")
    (root / "d/e/in").write_text("in\n")
    os.symlink("a.txt", root / "link")
    os.symlink("d", root / "dlink")
    os.symlink("../a.txt", root / "dir/uplink")
    os.link(root / "dir/x", root / "dir/hard")
    (root / "priv/secret").write_text("s\n")
    (root / "priv/keep").write_text("k\n")
    long = "n" * 120
    (root / "g" / long).mkdir(parents=True)
    (root / "g" / long / long).write_text("long\n")
    (root / ".dockerignore").write_text("# secrets stay out\npriv\n!priv/keep\n")
    os.utime(root / "a.txt", (OLD, OLD))
    tsrc = root.parent / (root.name + "-tar")
    (tsrc / "top/inner").mkdir(parents=True)
    (tsrc / "top/inner/f").write_text("t\n")
    (tsrc / "top/u").write_text("u\n")
    (tsrc / "top/inner").chmod(0o711)
    os.symlink("u", tsrc / "top/sl")
    os.link(tsrc / "top/u", tsrc / "top/hl")
    run(["tar", "--owner=7", "--group=8", "-C", tsrc, "-cf", root / "a.tar", "top"])
    run(["tar", "-C", tsrc, "-czf", root / "a.tgz", "top/inner/f"])
    run(["cp", root / "a.tgz", root / "weird.bin"])
    run(["tar", "--owner=0", "--group=0", "-C", tsrc, "-cJf", root / "a.tar.xz", "./top"])
    (root / "plain.gz").write_text("not gzip\n")
    return root


def listing(tar_path: Path, *, mtimes: bool = False) -> list[tuple]:
    """What a layer holds, as comparable facts: path, type, mode, owner, link, content digest."""
    out = []
    with tarfile.open(tar_path, "r:*") as t:
        for m in t:
            content = hashlib.sha256(t.extractfile(m).read()).hexdigest()[:16] if m.isreg() else ""
            fact = (m.name.rstrip("/"), m.type, oct(m.mode & 0o7777),  # Go's writers add type bits
            m.uid, m.gid, m.linkname, content)
            if mtimes and (m.isreg() or m.issym()):
                fact += (m.mtime,)
            out.append(fact)
    return out


def _instruction(s: CopyStep) -> str:
    flags = []
    if s.chown:
        flags.append(f"--chown={s.chown[0]}:{s.chown[1]}")
    if s.chmod is not None:
        flags.append(f"--chmod={s.chmod:04o}")
    return " ".join(["ADD" if s.add else "COPY", *flags, *s.sources, s.dest])


@pytest.fixture(scope="module")
def ctx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_context(tmp_path_factory.mktemp("layers") / "ctx")


@pytest.fixture(scope="module")
def buildah_layer(tmp_path_factory: pytest.TempPathFactory):
    """Build `FROM scratch` + one instruction with buildah; return the path of its layer."""
    require("buildah")
    work = tmp_path_factory.mktemp("buildah")
    count = iter(range(1000))

    def build(ctx: Path, instruction: str) -> Path:
        n = next(count)
        dockerfile = work / f"Dockerfile.{n}"
        dockerfile.write_text(f"FROM scratch\n{instruction}\n")
        out = work / f"out{n}"
        run([
            "buildah", "--root", work / "root", "--runroot", work / "runroot", "--storage-driver", "vfs",
            "build", "--layers", "--isolation", "chroot", "-f", dockerfile, "-t", f"oci:{out}:latest", ctx,
        ])  # fmt: skip
        index = json.loads((out / "index.json").read_text())

        def blob(digest: str) -> Path:
            return out / "blobs" / digest.replace(":", "/")

        manifest = json.loads(blob(index["manifests"][0]["digest"]).read_text())
        return blob(manifest["layers"][-1]["digest"])

    return build


CASES = [
    step("dir", dest="/d1"),
    step("dir", dest="/d2/"),
    step("a.txt", dest="/f1"),
    step("a.txt", dest="/deep/f2/"),
    step("a.txt", "b.txt", dest="/multi/"),
    step("link", dest="/l1"),
    step("dlink", dest="/x"),
    step(".", dest="/all/"),
    step("dir", dest="/ch", chmod=0o600),
    step("dir", dest="/own/nested/", chown=(5, 6)),
    step("[ab]?txt", "c*", dest="/glob/"),
    step("*/e", dest="/x/"),
    step("d/*", dest="/x/"),
    step("priv", dest="/p"),
    step("g", dest="/g"),
    step("a.tgz", dest="/c"),
    step("a.tar", dest="/x", add=True),
    step("a.tgz", dest="/x/", add=True),
    step("weird.bin", dest="/w", add=True),
    step("a.tar.xz", dest="/", add=True),
    step("a.tar", dest="/y", add=True, chown=(3, 4), chmod=0o600),
    step("plain.gz", dest="/p", add=True),
    step("a.txt", dest="/m", add=True, chmod=0o755),
]


@pytest.mark.parametrize("s", CASES, ids=_instruction)
def test_layer_holds_what_buildah_writes(s: CopyStep, ctx_dir: Path, buildah_layer, tmp_path: Path):
    ours = write_layer(Context.load(ctx_dir), s, tmp_path, None)
    theirs = buildah_layer(ctx_dir, _instruction(s))
    assert listing(ours.path, mtimes=True) == listing(theirs, mtimes=True)


def test_layer_is_gzip_with_fixed_header_and_true_digests(ctx_dir: Path, tmp_path: Path):
    layer = write_layer(Context.load(ctx_dir), step(".", dest="/app/"), tmp_path, 1_700_000_000)
    data = layer.path.read_bytes()
    assert data[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"  # no name, mtime 0, level 1, OS unknown
    assert layer.path.name == layer.digest.hex and layer.size == len(data)
    assert str(layer.digest) == "sha256:" + hashlib.sha256(data).hexdigest()
    assert str(layer.diff_id) == "sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest()
    with tarfile.open(layer.path) as t:
        members = t.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=str.encode) and names[0] == "app"
    assert all(m.uname == "" and m.gname == "" and not m.pax_headers.keys() - {"path", "linkpath"} for m in members)
    assert max(m.mtime for m in members) == 1_700_000_000
    assert next(m for m in members if m.name == "app/a.txt").mtime == OLD  # older than the epoch: kept
    assert not list(tmp_path.glob(".layer-*")) and not list(tmp_path.glob(".archive-*"))


def test_same_bytes_from_two_copies_with_other_mtimes(tmp_path: Path):
    one = _make_context(tmp_path / "one" / "ctx")
    (tmp_path / "two").mkdir()
    two = tmp_path / "two" / "elsewhere"
    run(["cp", "-a", one, two])  # the same files (archives hold their own times) in another place
    for root, when in ((one, 1_700_000_000), (two, 1_800_000_000)):  # both newer than the epoch
        for path in root.rglob("*"):
            os.utime(path, (when, when), follow_symlinks=False)
    epoch = 1_600_000_000
    for s in (step(".", dest="/app/"), step("a.tar", dest="/opt", add=True), step("dir", dest="/d", chown=(1, 2))):
        a = write_layer(Context.load(one), s, tmp_path / "out1", epoch)
        b = write_layer(Context.load(two), s, tmp_path / "out2", epoch)
        assert a.digest == b.digest and a.diff_id == b.diff_id
        assert a.path.read_bytes() == b.path.read_bytes()


def test_memory_stays_flat_for_a_large_file(tmp_path: Path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    with open(ctx / "big.bin", "wb") as f:
        f.truncate(400 << 20)  # sparse: 400 MiB read as zeros
    (ctx / "random.bin").write_bytes(os.urandom(8 << 20))
    script = textwrap.dedent(f"""
        import re
        from pathlib import Path
        from manifesto.builders.native.context import Context
        from manifesto.builders.native.layer import write_layer
        from manifesto.builders.native.steps import CopyStep, Where
        layer = write_layer(Context.load(Path({str(ctx)!r})), CopyStep(('.',), '/data/', Where('Dockerfile', 2)),
                            Path({str(tmp_path / 'out')!r}), 0)
        # this process's high-water mark (ru_maxrss would count the forking parent's)
        print(layer.size, re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    size, peak_kib = map(int, proc.stdout.split())
    assert size > 8 << 20  # the random part does not compress
    assert peak_kib < 100 * 1024, f"peak RSS {peak_kib} KiB"


def test_memory_stays_small_for_many_small_files(tmp_path: Path):
    """20k files: the layer writer keeps no tar header per file written, and one small entry
    per file planned (the growth of peak RSS over the interpreter's stays under 16 MiB)."""
    ctx = tmp_path / "ctx"
    for d in range(200):
        (ctx / f"d{d:03}").mkdir(parents=True)
        for f in range(100):
            (ctx / f"d{d:03}" / f"f{f:03}.txt").write_text("x")
    script = textwrap.dedent(f"""
        import re, tarfile
        from pathlib import Path
        from manifesto.builders.native.context import Context
        from manifesto.builders.native.layer import write_layer
        from manifesto.builders.native.steps import CopyStep, Where
        def peak_kib():  # this process's high-water mark (ru_maxrss would count the forking parent's)
            return int(re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1))
        before = peak_kib()
        layer = write_layer(Context.load(Path({str(ctx)!r})), CopyStep(('.',), '/data/', Where('Dockerfile', 2)),
                            Path({str(tmp_path / 'out')!r}), 0)
        after = peak_kib()
        with tarfile.open(layer.path) as t:
            print(sum(1 for _ in t), after - before)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    count, growth_kib = map(int, proc.stdout.split())
    assert count == 20_000 + 200 + 1  # the files, their directories and /data
    assert growth_kib < 16 * 1024, f"peak RSS grew by {growth_kib} KiB"


# --- .dockerignore ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "path", "ignored"),
    [
        (["*/temp*"], "somedir/temporary.txt", True),
        (["*/temp*"], "somedir/temp", True),
        (["*/temp*"], "temp", False),
        (["*/*/temp*"], "somedir/subdir/temporary.txt", True),
        (["temp?"], "tempa", True),
        (["temp?"], "temp", False),
        (["**/*.go"], "main.go", True),
        (["**/*.go"], "a/b/c.go", True),
        (["a/**"], "a/b/c", True),
        (["a/**/z"], "a/z", True),
        (["*.md", "!README.md"], "README.md", False),
        (["*.md", "!README.md"], "CHANGES.md", True),
        (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
        (["*.md", "README-secret.md", "!README*.md"], "README-secret.md", False),
        (["/foo/bar"], "foo/bar", True),
        (["./foo/bar"], "foo/bar/deep", True),
        (["foo/bar"], "x/foo/bar", False),
        (["  spaced  "], "spaced", True),
        (["# comment"], "# comment", False),
        (["[a-c]x"], "bx", True),
        (["[^a-c]x"], "bx", False),
        (["\\*x"], "*x", True),
        (["\\*x"], "ax", False),
        (["build", "!build/keep"], "build/keep/f", False),
        (["*", "!src"], "src/a/b.py", False),
    ],
)
def test_ignore_patterns(lines: list[str], path: str, ignored: bool):
    assert Ignore.parse("\n".join(lines)).ignored(path) is ignored


def test_bad_ignore_pattern_names_its_line():
    with pytest.raises(UsageError, match=r"^\.dockerignore:2: .*bad pattern"):
        Ignore.parse("ok\n[abc\n")


@pytest.fixture(scope="module")
def ignore_ctx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ignore") / "ctx"
    for rel in ("README.md", "docs/a.md", "docs/sub/b.md", "docs/c.txt", "dd1/f", "dd2/g", "Dockerfile"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel + "\n")
    (root / ".dockerignore").write_text("# c\n**/*.md\n!README.md\n/docs/c.txt\n./dd2\nDockerfile\n")
    return root


@pytest.mark.parametrize("s", [step(".", dest="/all/"), step("docs", dest="/x"), step("dd*", dest="/x")], ids=_instruction)
def test_ignored_files_are_not_copied_as_buildah(s: CopyStep, ignore_ctx: Path, buildah_layer, tmp_path: Path):
    ours = write_layer(Context.load(ignore_ctx), s, tmp_path, None)
    assert listing(ours.path) == listing(buildah_layer(ignore_ctx, _instruction(s)))


def test_dockerfile_specific_ignore_file_wins(ignore_ctx: Path, tmp_path: Path):
    df = tmp_path / "app.Dockerfile"
    df.write_text("FROM scratch\n")
    Path(f"{df}.dockerignore").write_text("dd1\n")
    ctx = Context.load(ignore_ctx, df)
    assert ctx.ignore.ignored("dd1/f") and not ctx.ignore.ignored("docs/a.md")


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("s", "message"),
    [
        (step("../x", dest="/x"), r"^Dockerfile:7: COPY source '\.\./x' is outside the build context$"),
        (step("a/../../x", dest="/x"), "outside the build context"),
        (step("nothere", dest="/x"), r"^Dockerfile:7: COPY source 'nothere' not found in the build context$"),
        (step("nomatch*", dest="/x/", add=True), r"^Dockerfile:7: ADD source 'nomatch\*': no file in the build context matches$"),
        (step("priv/secret", dest="/x"), r"not found in the build context \(excluded by \.dockerignore\)$"),
        (step("a.txt", "b.txt", dest="/m"), r"more than one source file needs a destination directory ending in '/'"),
        (step("*.txt", dest="/m"), r"more than one source file"),
    ],
)
def test_refused_sources_name_file_and_line(s: CopyStep, message: str, ctx_dir: Path, tmp_path: Path):
    with pytest.raises(UsageError, match=message):
        write_layer(Context.load(ctx_dir), s, tmp_path, None)
    assert not list(tmp_path.iterdir())


def test_archive_member_outside_is_refused(tmp_path: Path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    with tarfile.open(ctx / "evil.tar", "w") as t:
        info = tarfile.TarInfo("../escape")
        t.addfile(info)
    with pytest.raises(UsageError, match=r"^Dockerfile:7: ADD: archive member '\.\./escape' is outside the archive$"):
        write_layer(Context.load(ctx), step("evil.tar", dest="/x", add=True), tmp_path / "out", None)


# --- choices beyond buildah -----------------------------------------------------------------------


def test_setuid_bits_are_kept(tmp_path: Path):
    """docker keeps setuid/setgid bits of context files (buildah 1.28 strips them)."""
    ctx = tmp_path / "ctx"
    (ctx / "sg").mkdir(parents=True)
    (ctx / "suid").write_text("s\n")
    (ctx / "suid").chmod(0o4755)
    (ctx / "sg").chmod(0o2775)
    layer = write_layer(Context.load(ctx), step(".", dest="/x/"), tmp_path / "out", None)
    modes = {name: int(mode, 8) for name, _, mode, *_ in listing(layer.path)}
    assert modes["x/suid"] == 0o4755 and modes["x/sg"] == 0o2775


def test_existing_directory_destination(ctx_dir: Path, tmp_path: Path):
    """A file copied to a directory the image already has goes inside it, which is left alone."""
    layer = write_layer(Context.load(ctx_dir), step("a.txt", dest="/etc"), tmp_path, 5, existing_dirs={"/etc"})
    assert [e[0] for e in listing(layer.path)] == ["etc/a.txt"]
    plain = write_layer(Context.load(ctx_dir), step("a.txt", dest="/etc"), tmp_path, 5)
    assert [e[0] for e in listing(plain.path)] == ["etc"]
