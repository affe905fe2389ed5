"""The build cache: buildah/podman layer stores per platform, --no-cache, the registry cache,
`cache prune`, and `build.cache` in platforms.yaml. Real buildah, busybox contexts."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from manifesto.builders.base import BuildRequest, BuiltImage
from manifesto.builders.buildah import BuildahBuilder
from manifesto.builders.buildkey import forget
from manifesto.builders.cache import prune, store_lock
from manifesto.builders.runner import Runner
from manifesto.errors import SpecError, UsageError
from manifesto.matrix.buildcache import cache_repository
from manifesto.matrix.spec import loads
from manifesto.oci.config import ImageConfig
from manifesto.oci.manifest import ImageManifest
from manifesto.oci.platform import Platform
from manifesto.store.layout import LayoutStore
from tests.support import Registry, require
from tests.support.images import busybox_path
from tests.support.tools import REPO_ROOT

EPOCH = 1700000000
SH = '["/bin/busybox", "sh", "-c"'

# Each RUN writes 16 random bytes' digest: a step that ran again always writes another (busybox
# `date` has whole seconds only, and two builds on overlay storage can fall in one second).
STAMP = "/bin/busybox head -c 16 /dev/urandom | /bin/busybox md5sum"
STAMPED = f"""FROM scratch
COPY busybox /bin/busybox
RUN {SH}, "{STAMP} > /stamp"]
COPY app.txt /app.txt
RUN {SH}, "{STAMP} > /later"]
"""


def context(tmp: Path, dockerfile: str, arch: str = "amd64") -> Path:
    ctx = tmp / "ctx"
    ctx.mkdir(parents=True)
    shutil.copy(busybox_path(arch), ctx / "busybox")
    (ctx / "app.txt").write_text("one\n")
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def request(ctx: Path, output: Path, platform: str = "linux/amd64", **kw: object) -> BuildRequest:
    return BuildRequest(Platform.parse(platform), ctx, ctx / "Dockerfile", {}, output, **kw)  # type: ignore[arg-type]


def layer_file(built: BuiltImage, name: str) -> bytes | None:
    """A file's bytes from the image's layers (last layer wins); None when absent."""
    store = LayoutStore(built.layout)
    manifest = ImageManifest.parse(store.manifest(built.tag).raw, built.media_type)
    found = None
    for layer in manifest.layers:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(store.read_bytes(layer.digest, "layer")))) as tar:
            for member in tar.getmembers():
                if member.name.lstrip("./") == name:
                    found = tar.extractfile(member).read()  # type: ignore[union-attr]
    return found


def config_of(built: BuiltImage) -> ImageConfig:
    store = LayoutStore(built.layout)
    manifest = ImageManifest.parse(store.manifest(built.tag).raw, built.media_type)
    return ImageConfig.parse(store.read_bytes(manifest.config.digest, "config"))


@pytest.fixture
def buildah(tmp_path: Path) -> BuildahBuilder:
    require("buildah")
    return BuildahBuilder(Runner(), storage=tmp_path / "storage")


def build(builder: BuildahBuilder, req: BuildRequest) -> tuple[BuiltImage, list[str]]:
    lines: list[str] = []
    return builder.build(req, lines.append), lines


def hits(lines: list[str]) -> int:
    return sum(line.startswith("--> Using cache") for line in lines)


# ---- the layer store ------------------------------------------------------------------------


class CountingRunner(Runner):
    """A Runner that records the subcommand (build, push, ...) of every command it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.commands: list[str] = []

    def run(self, argv, **kw):  # type: ignore[no-untyped-def, override]
        args = [str(a) for a in argv]
        self.commands.append(next(a for a in args if a in ("build", "push", "pull", "commit")))
        return super().run(argv, **kw)


def test_a_rebuild_reruns_no_step_and_a_change_reruns_only_later_steps(buildah: BuildahBuilder, tmp_path: Path) -> None:
    ctx = context(tmp_path, STAMPED)
    buildah.runner = runner = CountingRunner()
    first, _ = build(buildah, request(ctx, tmp_path / "out", tag="one"))
    assert runner.commands == ["build", "push"]
    again, lines = build(buildah, request(ctx, tmp_path / "out", tag="two"))
    assert runner.commands == ["build", "push"], lines  # unchanged: no buildah process at all
    assert again.digest == first.digest and any("unchanged since the last build" in line for line in lines), lines
    assert layer_file(again, "stamp") == layer_file(first, "stamp")
    assert layer_file(again, "later") == layer_file(first, "later")

    (ctx / "app.txt").write_text("two\n")  # COPY'd after the first RUN
    changed, lines = build(buildah, request(ctx, tmp_path / "out", tag="three"))
    assert hits(lines) == 2, lines  # COPY busybox and the first RUN
    assert layer_file(changed, "stamp") == layer_file(first, "stamp")
    assert layer_file(changed, "app.txt") == b"two\n"
    assert layer_file(changed, "later") != layer_file(first, "later")

    fresh, lines = build(buildah, request(ctx, tmp_path / "out", tag="four", no_cache=True))
    assert hits(lines) == 0, lines
    assert layer_file(fresh, "stamp") != layer_file(first, "stamp")
    assert layer_file(fresh, "later") != layer_file(changed, "later")


def test_cached_and_uncached_builds_give_the_same_digest(buildah: BuildahBuilder, tmp_path: Path) -> None:
    ctx = context(tmp_path, f'FROM scratch\nCOPY busybox /bin/busybox\nRUN {SH}, "echo hi > /f"]\nCOPY app.txt /\n')
    kw = {"source_date_epoch": EPOCH}
    first, _ = build(buildah, request(ctx, tmp_path / "out", tag="a", **kw))
    reused, lines = build(buildah, request(ctx, tmp_path / "out", tag="r", **kw))
    assert any("unchanged since the last build" in line for line in lines), lines
    forget(buildah.store(Platform.parse("linux/amd64")))  # buildah runs again, on its cached layers
    cached, lines = build(buildah, request(ctx, tmp_path / "out", tag="b", **kw))
    assert hits(lines) >= 2, lines
    uncached, lines = build(buildah, request(ctx, tmp_path / "out", tag="c", no_cache=True, **kw))
    assert hits(lines) == 0, lines
    other = BuildahBuilder(Runner(), storage=tmp_path / "elsewhere")
    cold, _ = build(other, request(ctx, tmp_path / "out", tag="d", **kw))
    assert first.digest == reused.digest == cached.digest == uncached.digest == cold.digest


@pytest.mark.slow
def test_two_platforms_never_share_cached_layers(buildah: BuildahBuilder, tmp_path: Path) -> None:
    """No RUN (no qemu): the same instructions on the same files, for two platforms."""
    ctx = context(tmp_path, 'FROM scratch\nCOPY app.txt /app.txt\nCMD ["/app"]\n')
    for platform in ("linux/arm64/v8", "linux/s390x", "linux/arm64/v8"):
        built, _ = build(buildah, request(ctx, tmp_path / "out", platform, tag=platform.replace("/", "-")))
        assert config_of(built).platform == Platform.parse(platform)
    assert sorted(p.name for p in (buildah.storage_root).iterdir() if p.name.startswith("linux")) == [
        "linux-arm64-v8",
        "linux-s390x",
    ]


def test_a_build_waits_for_the_lock_of_its_store(buildah: BuildahBuilder, tmp_path: Path) -> None:
    ctx = context(tmp_path, "FROM scratch\nCOPY app.txt /app.txt\n")
    done = threading.Event()
    with store_lock(buildah.store(Platform.parse("linux/amd64"))):
        worker = threading.Thread(target=lambda: (build(buildah, request(ctx, tmp_path / "out")), done.set()))
        worker.start()
        assert not done.wait(2.0), "the build ran while another run held its store"
    worker.join(timeout=60)
    assert done.is_set()


def test_cache_prune_frees_the_stores(tmp_path: Path) -> None:
    require("buildah")
    xdg = tmp_path / "xdg"
    env = {"XDG_CACHE_HOME": str(xdg)}
    ctx = context(tmp_path, "FROM scratch\nCOPY busybox /bin/busybox\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(xdg))
        builder = BuildahBuilder(Runner())
        build(builder, request(ctx, tmp_path / "out"))
        store = builder.store(Platform.parse("linux/amd64"))
        assert store.is_relative_to(xdg / "manifesto" / "buildah") and (store / "root").is_dir()
        with store_lock(store):  # a running build keeps its store
            busy = prune()
        assert [p.busy for p in busy] == [True] and store.is_dir()
    done = subprocess.run(
        [sys.executable, "-m", "manifesto", "cache", "prune"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"removed {store} (" in done.stdout, done.stdout
    assert done.stdout.splitlines()[-1].startswith("freed ") and "freed 0 B" not in done.stdout, done.stdout
    left = [p for p in (xdg / "manifesto" / "buildah").rglob("*") if not p.is_dir()]
    # lock files stay (a waiting build holds one); the storage driver verdict is forgotten
    assert sorted(p.name for p in left) == ["driver.lock", "lock"], left


def test_a_build_waiting_for_another_runs_store_can_be_cancelled(tmp_path: Path) -> None:
    """Waiting for a store another run holds is a poll, not a blocking flock: a cancel (Ctrl-C,
    SIGTERM) ends it at once, and the wait is said once."""
    import threading
    import time

    from manifesto.errors import BuildError

    store = tmp_path / "store"
    cancelled = threading.Event()
    said: list[str] = []
    outcome: list[BaseException] = []

    def waiter() -> None:
        try:
            with store_lock(store, cancelled=cancelled.is_set, on_wait=said.append):
                pass
        except BaseException as e:  # noqa: BLE001 — the test inspects it
            outcome.append(e)

    with store_lock(store) as held:  # another run is building there
        assert held
        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive() and len(said) == 1 and "waiting for the build cache" in said[0]
        started = time.monotonic()
        cancelled.set()
        thread.join(timeout=5)
    assert not thread.is_alive() and time.monotonic() - started < 2
    assert len(outcome) == 1 and isinstance(outcome[0], BuildError) and "cancelled" in str(outcome[0])


# ---- the registry cache --------------------------------------------------------------------------


def test_cache_to_pushes_layers_and_cache_from_reads_them(registry: Registry, tmp_path: Path) -> None:
    require("buildah")
    ctx = context(tmp_path, STAMPED)
    repo = registry.ref("cache/stamped")
    one = BuildahBuilder(Runner(), storage=tmp_path / "one")
    first, _ = build(one, request(ctx, tmp_path / "out", tag="a", cache_to=repo))
    assert "PUT /v2/cache/stamped/manifests/" in registry.log_text()

    other = BuildahBuilder(Runner(), storage=tmp_path / "two")  # a runner that shares nothing
    second, lines = build(other, request(ctx, tmp_path / "out", tag="b", cache_from=repo))
    assert hits(lines) >= 1, lines
    assert layer_file(second, "stamp") == layer_file(first, "stamp")


def test_cache_flags_reach_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    b = BuildahBuilder(Runner(), storage=tmp_path / "s", storage_driver="vfs")  # chosen: nothing probed
    req = request(tmp_path, tmp_path / "out", cache_from="localhost:5000/c", cache_to="localhost:5000/d", no_cache=True)
    args = b.build_args(req)
    assert "--layers" in args and "--no-cache" in args
    assert args[args.index("--cache-from") + 1] == "localhost:5000/c"
    assert args[args.index("--cache-to") + 1] == "localhost:5000/d"
    assert "--no-cache" not in b.build_args(request(tmp_path, tmp_path / "out"))
    root = b.command("build", platform=Platform.parse("linux/arm64"))
    assert root[root.index("--root") + 1] == str(tmp_path / "s" / "vfs" / "linux-arm64" / "root")


# ---- build.cache in platforms.yaml --------------------------------------------------------------

SPEC = "image: localhost:5000/x\ntags: [a]\nbuild:\n  cache: {cache}\nplatforms: [linux/amd64]\n"


def test_build_cache_is_read_from_the_spec(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    spec = loads(SPEC.format(cache="{from: localhost:5000/c, to: localhost:5000/d}"), tmp_path / "p.yaml")
    assert (spec.build.cache_from, spec.build.cache_to) == ("localhost:5000/c", "localhost:5000/d")


@pytest.mark.parametrize(
    ("cache", "message"),
    [
        ("{}", "build.cache needs 'from', 'to' or both"),
        ("{frm: x}", "unknown key 'frm' in build.cache (did you mean 'from'?)"),
        ('{from: "localhost:5000/c:t"}', "must be a repository without tag or digest"),
        ("{to: 5}", "build.cache.to must be a string, got a number"),
        ("oci:x", "build.cache ({from: REPO, to: REPO}) must be a mapping, got a string"),
        ('{from: "oci:dir"}', "must be a registry repository"),
    ],
)
def test_build_cache_errors_name_the_line(tmp_path: Path, cache: str, message: str) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(SpecError) as e:
        loads(SPEC.format(cache=cache), tmp_path / "p.yaml")
    assert str(e.value).startswith(f"{tmp_path / 'p.yaml'}:4: ") and message in str(e.value), str(e.value)


def test_cache_flags_are_checked_like_the_spec() -> None:
    assert cache_repository("localhost:5000/c", "--cache-to") == "localhost:5000/c"
    with pytest.raises(UsageError, match="--cache-to 'localhost:5000/c:t' must be a repository without tag"):
        cache_repository("localhost:5000/c:t", "--cache-to")


def test_the_ci_examples_use_the_registry_cache() -> None:
    for name in ("github-actions.yml", "gitlab-ci.yml"):
        text = (REPO_ROOT / "examples" / "ci" / name).read_text()
        text = text.replace("${{ env.IMAGE }}", "$IMAGE").replace('"', "")  # the action's form, the shell's
        assert "--cache-from $IMAGE-cache --cache-to $IMAGE-cache" in text, name



# ---- from the matrix and the flags to each build -------------------------------------------------


def test_the_matrix_cache_reaches_every_build_and_the_flags_override_it(tmp_path: Path) -> None:
    import manifesto
    from manifesto.jobs.builds import Options, build_all
    from tests.jobs.conftest import FakeBuilder, write_matrix

    cache = "  cache: {from: localhost:5000/c, to: localhost:5000/c}\n"  # inside build:
    plan = manifesto.plan(write_matrix(tmp_path, f"oci:{tmp_path / 'out'}", extra=cache))
    fake = FakeBuilder()
    build_all(plan, Options(builder=fake, jobs=1), tmp_path / "w1")
    assert {(r.cache_from, r.cache_to, r.no_cache) for r in fake.requests} == {("localhost:5000/c", "localhost:5000/c", False)}
    fake = FakeBuilder()
    build_all(plan, Options(builder=fake, jobs=1, no_cache=True, cache_to="localhost:5000/d"), tmp_path / "w2")
    assert {(r.cache_from, r.cache_to, r.no_cache) for r in fake.requests} == {("localhost:5000/c", "localhost:5000/d", True)}


def test_the_cli_flags_reach_the_options(tmp_path: Path) -> None:
    import argparse

    from manifesto.cli import publishing

    args = argparse.Namespace(jobs=None, insecure=False, keep_work=False, quiet=True, no_cache=True,
                              cache_from="localhost:5000/c", cache_to=None)  # fmt: skip
    options = publishing._options(args, None, None)  # type: ignore[arg-type]
    assert (options.no_cache, options.cache_from, options.cache_to) == (True, "localhost:5000/c", None)
    with pytest.raises(UsageError, match="--cache-from 'x:1' must be a repository without tag"):
        publishing._options(argparse.Namespace(**{**vars(args), "cache_from": "x:1"}), None, None)  # type: ignore[arg-type]
