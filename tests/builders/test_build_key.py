"""The build key: an unchanged build runs no builder process; any input that can change the
image (a context file, its mode, a build arg, the Dockerfile, SOURCE_DATE_EPOCH, the base a
tag names) builds again. Real buildah, amd64, contexts without RUN (no qemu)."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from manifesto.builders.buildah import BuildahBuilder
from manifesto.builders.buildkey import EXPORT_DIR, EXPORT_TAG, context_digest
from manifesto.builders.runner import Runner
from manifesto.oci.manifest import ImageManifest
from manifesto.oci.platform import Platform
from manifesto.store.layout import LayoutStore
from tests.builders.test_build_cache import CountingRunner, context, layer_file, request
from tests.support import Registry, require
from tests.support.images import build_image, push_image

PLAIN = "FROM scratch\nARG FLAVOUR=plain\nCOPY app.txt /app.txt\nLABEL flavour=$FLAVOUR\n"


@pytest.fixture
def buildah(tmp_path: Path) -> BuildahBuilder:
    require("buildah")
    return BuildahBuilder(CountingRunner(), storage=tmp_path / "storage")


def builds(builder: BuildahBuilder, ctx: Path, out: Path, **kw: Any) -> int:
    """How many `buildah build` processes one build of `ctx` ran (0: its last image reused)."""
    runner = builder.runner
    assert isinstance(runner, CountingRunner)
    before = runner.commands.count("build")
    args = kw.pop("args", {})
    req = replace(request(ctx, out, **kw), args=args)
    builder.build(req, lambda _: None)
    return runner.commands.count("build") - before


def test_each_input_that_can_change_the_image_builds_again(buildah: BuildahBuilder, tmp_path: Path) -> None:
    ctx = context(tmp_path, PLAIN)
    out = tmp_path / "out"
    assert builds(buildah, ctx, out) == 1
    assert builds(buildah, ctx, out) == 0  # nothing changed

    os.utime(ctx / "app.txt", (1, 1))  # a new mtime alone: buildah's layer cache ignores it too
    assert builds(buildah, ctx, out) == 0

    (ctx / "app.txt").write_text("two\n")
    assert builds(buildah, ctx, out) == 1
    assert builds(buildah, ctx, out) == 0
    (ctx / "app.txt").chmod(0o600)
    assert builds(buildah, ctx, out) == 1
    (ctx / "new.txt").write_text("a file no step copies is still part of the context\n")
    assert builds(buildah, ctx, out) == 1

    assert builds(buildah, ctx, out, args={"FLAVOUR": "spicy"}) == 1
    assert builds(buildah, ctx, out, args={"FLAVOUR": "spicy"}) == 0
    assert builds(buildah, ctx, out, source_date_epoch=1700000000) == 1
    assert builds(buildah, ctx, out, labels={"extra": "1"}) == 1

    (ctx / "Dockerfile").write_text(PLAIN + "CMD [\"/x\"]\n")
    assert builds(buildah, ctx, out) == 1
    assert builds(buildah, ctx, out) == 0
    assert builds(buildah, ctx, out, no_cache=True) == 1  # --no-cache never reuses
    assert builds(buildah, ctx, out) == 0  # ... and the key of its build is kept


def test_the_reused_image_is_the_last_one_built_byte_for_byte(buildah: BuildahBuilder, tmp_path: Path) -> None:
    ctx = context(tmp_path, PLAIN)
    first = buildah.build(request(ctx, tmp_path / "one", tag="a"), lambda _: None)
    again = buildah.build(request(ctx, tmp_path / "two", tag="b"), lambda _: None)
    assert buildah.runner.commands.count("build") == 1  # type: ignore[attr-defined]
    assert (again.digest, again.layout, again.tag) == (first.digest, tmp_path / "two", "b")
    assert layer_file(again, "app.txt") == b"one\n"
    # the layers are linked from the store's export, not copied (a large base is not rewritten)
    export = LayoutStore(buildah.store(Platform.parse("linux/amd64")) / EXPORT_DIR)
    fetched = export.manifest(EXPORT_TAG)
    layer = ImageManifest.parse(fetched.raw, fetched.media_type).layers[-1]
    linked = LayoutStore(again.layout).blob_path(layer.digest)
    assert linked.stat().st_ino == export.blob_path(layer.digest).stat().st_ino


def test_ignored_files_are_not_part_of_the_key(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "logs").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (ctx / "app.txt").write_text("one\n")
    (ctx / ".dockerignore").write_text("logs\n")
    before = context_digest(ctx, ctx / "Dockerfile")
    (ctx / "logs" / "today.log").write_text("ignored\n")
    assert context_digest(ctx, ctx / "Dockerfile") == before
    (ctx / ".dockerignore").write_text("logs\n*.md\n")
    assert context_digest(ctx, ctx / "Dockerfile") != before
    (ctx / "Dockerfile.dockerignore").write_text("logs\n")  # beside the Dockerfile: it wins
    assert context_digest(ctx, ctx / "Dockerfile") != before
    os.symlink("app.txt", ctx / "link")
    with_link = context_digest(ctx, ctx / "Dockerfile")
    os.remove(ctx / "link")
    os.symlink("Dockerfile", ctx / "link")
    assert context_digest(ctx, ctx / "Dockerfile") != with_link


def test_a_base_tag_that_moved_builds_again(tmp_home: Any, registry: Registry, tmp_path: Path) -> None:
    """buildah pulls a newer base by default, so the key holds what the tag names now."""
    require("buildah")
    ref = push_image(build_image("amd64", tmp_path / "base1", busybox=b"base one"), "key/base:1", registry, creds=False)
    ctx = context(tmp_path, f"FROM {ref}\nCOPY app.txt /app.txt\n")
    builder = BuildahBuilder(CountingRunner(), storage=tmp_path / "storage")
    out = tmp_path / "out"
    assert builds(builder, ctx, out) == 1
    assert builds(builder, ctx, out) == 0
    push_image(build_image("amd64", tmp_path / "base2", busybox=b"base two"), "key/base:1", registry, creds=False)
    fresh = BuildahBuilder(CountingRunner(), storage=tmp_path / "storage")  # a new run asks the registry again
    assert builds(fresh, ctx, out) == 1
    built = fresh.build(request(ctx, tmp_path / "check"), lambda _: None)
    assert layer_file(built, "bin/busybox") == b"base two"


def test_an_unresolvable_base_means_no_key(tmp_path: Path) -> None:
    """No key when a pulled image cannot be asked about: the build runs (and reports)."""
    (tmp_path / "Dockerfile").write_text("FROM 127.0.0.1:9/nothing/here:1\n")
    builder = BuildahBuilder(Runner(), storage=tmp_path / "s")
    req = request(tmp_path, tmp_path / "out")
    assert builder.build_key(req) is None
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    assert builder.build_key(req) is not None


def test_a_warm_publish_runs_no_buildah_and_gives_the_same_index(tmp_home: Any, tmp_path: Path) -> None:
    """Two platforms (no RUN: no qemu), published twice into a layout: the second publish starts
    no buildah process and moves no tag."""
    import manifesto
    from tests.jobs.conftest import write_matrix

    require("buildah")
    out = tmp_path / "out"
    plan = manifesto.plan(write_matrix(tmp_path, f"oci:{out}", platforms=("linux/amd64", "linux/s390x")))
    runner = CountingRunner()
    cold = manifesto.publish(plan, manifesto.Options(builder=BuildahBuilder(runner), source_date_epoch=1700000000))
    assert sorted(runner.commands) == ["build", "build", "push", "push"]
    runner.commands.clear()
    warm = manifesto.publish(plan, manifesto.Options(builder=BuildahBuilder(runner), source_date_epoch=1700000000))
    assert runner.commands == []
    assert cold.index is not None and warm.index is not None and warm.index.digest == cold.index.digest
    assert warm.tags_moved == () and warm.tags_unchanged == ("1.0", "latest")


def test_a_damaged_export_builds_again(buildah: BuildahBuilder, tmp_path: Path) -> None:
    ctx = context(tmp_path, PLAIN)
    first = buildah.build(request(ctx, tmp_path / "one"), lambda _: None)
    export = LayoutStore(buildah.store(Platform.parse("linux/amd64")) / EXPORT_DIR)
    fetched = export.manifest(EXPORT_TAG)
    export.blob_path(ImageManifest.parse(fetched.raw, fetched.media_type).layers[-1].digest).unlink()
    assert builds(buildah, ctx, tmp_path / "two") == 1
    again = buildah.build(request(ctx, tmp_path / "three"), lambda _: None)  # and the export is whole again
    assert again.digest == first.digest and buildah.runner.commands.count("build") == 2  # type: ignore[attr-defined]


def test_base_answers_are_asked_again_after_their_time(tmp_home: Any, registry: Registry, tmp_path: Path) -> None:
    from manifesto.builders.access import default_resolve
    from manifesto.builders.buildkey import PulledDigests
    from manifesto.oci.reference import Reference

    ref = push_image(build_image("amd64", tmp_path / "b1", busybox=b"one"), "key/ttl:1", registry, creds=False)
    kept, fresh = PulledDigests(default_resolve), PulledDigests(default_resolve, ttl=0)
    before = kept.digests([Reference.parse(ref)], False)
    assert before == fresh.digests([Reference.parse(ref)], False) and before is not None
    push_image(build_image("amd64", tmp_path / "b2", busybox=b"two"), "key/ttl:1", registry, creds=False)
    assert kept.digests([Reference.parse(ref)], False) == before  # once a run
    after = fresh.digests([Reference.parse(ref)], False)
    assert after is not None and after != before


# ---- inputs the key cannot hold, and inputs it missed ---------------------------------------


class Served:
    """A file served over HTTP on loopback, its bytes changeable between requests."""

    def __init__(self, body: bytes) -> None:
        import http.server
        import threading

        self.body = body
        served = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server hook's name)
                self.send_response(200)
                self.send_header("Content-Length", str(len(served.body)))
                self.end_headers()
                self.wfile.write(served.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/app.txt"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_an_add_of_a_url_builds_again_and_takes_what_it_serves_now(buildah: BuildahBuilder, tmp_path: Path) -> None:
    """The remote file is no part of the context: a key over the Dockerfile's text would reuse
    an image holding the file's old bytes."""
    served = Served(b"remote one\n")
    try:
        ctx = context(tmp_path, f"FROM scratch\nADD {served.url} /app.txt\n")
        out = tmp_path / "out"
        assert builds(buildah, ctx, out) == 1
        served.body = b"remote two\n"
        assert builds(buildah, ctx, out) == 1
        built = buildah.build(request(ctx, tmp_path / "check"), lambda _: None)
        assert layer_file(built, "app.txt") == b"remote two\n"
    finally:
        served.close()


@pytest.mark.parametrize(
    "step",
    [
        "ADD https://example.invalid/app.tar.gz /app/",
        "ADD git@github.com:example/app.git /app",
        "ADD https://github.com/example/app.git#v1 /app",
        "ADD --chown=1:1 $SOURCE /app",  # a variable may name a URL
        "RUN --mount=type=weird,target=/x true",
    ],
)
def test_an_input_the_key_cannot_hold_means_no_key(step: str, tmp_path: Path) -> None:
    require("buildah")
    (tmp_path / "Dockerfile").write_text(f"FROM scratch\nARG SOURCE=app.txt\n{step}\n")
    builder = BuildahBuilder(Runner(), storage=tmp_path / "s")
    assert builder.build_key(request(tmp_path, tmp_path / "out")) is None


def test_local_adds_and_known_mounts_keep_their_key(tmp_path: Path) -> None:
    require("buildah")
    (tmp_path / "Dockerfile").write_text(
        "FROM scratch\nADD app.tar /app/\nRUN --mount=type=cache,target=/c --mount=type=secret,id=s true\n"
    )
    builder = BuildahBuilder(Runner(), storage=tmp_path / "s")
    assert builder.build_key(request(tmp_path, tmp_path / "out")) is not None


def test_a_short_name_is_keyed_by_the_image_its_alias_names(
    tmp_home: Any, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """registries.conf sends `keybase` to another registry: the key asks that registry (a key
    over docker.io's image of that name would not move with the image buildah pulls)."""
    require("buildah")
    one = build_image("amd64", tmp_path / "b1", busybox=b"alias one")
    ref = push_image(one, "key/alias:1", registry, creds=False)
    conf = tmp_path / "registries.conf"
    alias = ref.rsplit(":", 1)[0]
    conf.write_text(f'unqualified-search-registries = ["docker.io"]\n[aliases]\n"keybase" = "{alias}"\n')
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(conf))
    ctx = context(tmp_path, "FROM keybase:1\nCOPY app.txt /app.txt\n")
    out = tmp_path / "out"
    assert builds(BuildahBuilder(CountingRunner(), storage=tmp_path / "storage"), ctx, out) == 1
    assert builds(BuildahBuilder(CountingRunner(), storage=tmp_path / "storage"), ctx, out) == 0
    push_image(build_image("amd64", tmp_path / "b2", busybox=b"alias two"), "key/alias:1", registry, creds=False)
    fresh = BuildahBuilder(CountingRunner(), storage=tmp_path / "storage")
    assert builds(fresh, ctx, out) == 1
    assert layer_file(fresh.build(request(ctx, tmp_path / "check"), lambda _: None), "bin/busybox") == b"alias two"


def test_a_short_name_registries_conf_may_send_elsewhere_is_unresolved(tmp_path: Path) -> None:
    from manifesto.builders.access import ShortNames, pulled_images

    several = ShortNames({"app": frozenset({"quay.io/a/app"})}, frozenset({("quay.io", "docker.io")}))
    unresolved: list[str] = []
    refs = pulled_images("FROM app:1\nFROM other:2\nFROM ghcr.io/x/y:3\n", {}, {}, "Dockerfile", several, unresolved)
    assert [str(r) for r in refs] == ["quay.io/a/app:1", "ghcr.io/x/y:3"] and unresolved == ["other:2"]
    disagree = ShortNames({"app": frozenset({"quay.io/a/app", "docker.io/library/app"})}, frozenset({("docker.io",)}))
    assert disagree.resolve("app:1") is None and disagree.resolve("other@sha256:ab") == "docker.io/other@sha256:ab"
    unresolved.clear()  # a --from naming a stage-local ARG the global scope leaves empty: not an image the key knows
    pulled_images("FROM ghcr.io/x/y:3\nARG IMG\nCOPY --from=$IMG /a /b\n", {}, {}, "Dockerfile", several, unresolved)
    assert unresolved == ["$IMG"]


def test_a_context_file_changed_while_the_build_ran_saves_no_key(tmp_path: Path) -> None:
    """The key is of the bytes before the build, the image of those buildah read later: saving
    it would hand that image out once the file is back as it was."""
    require("buildah")

    class Editing(CountingRunner):
        def run(self, argv, **kw):  # type: ignore[no-untyped-def]
            if "build" in [str(a) for a in argv]:
                (ctx / "app.txt").write_text("edited\n")
            return super().run(argv, **kw)

    ctx = context(tmp_path, PLAIN)
    editing = BuildahBuilder(Editing(), storage=tmp_path / "storage")
    assert layer_file(editing.build(request(ctx, tmp_path / "one"), lambda _: None), "app.txt") == b"edited\n"
    (ctx / "app.txt").write_text("one\n")
    builder = BuildahBuilder(CountingRunner(), storage=tmp_path / "storage")
    assert builds(builder, ctx, tmp_path / "two") == 1
    assert layer_file(builder.build(request(ctx, tmp_path / "three"), lambda _: None), "app.txt") == b"one\n"


def test_hard_links_and_extended_attributes_are_part_of_the_key(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (ctx / "a.txt").write_text("same\n")
    (ctx / "b.txt").write_text("same\n")
    apart = context_digest(ctx, ctx / "Dockerfile")
    os.remove(ctx / "b.txt")
    os.link(ctx / "a.txt", ctx / "b.txt")  # a layer's tar records b.txt as a link to a.txt
    linked = context_digest(ctx, ctx / "Dockerfile")
    assert linked != apart
    os.setxattr(ctx / "a.txt", "user.note", b"one")
    noted = context_digest(ctx, ctx / "Dockerfile")
    assert noted != linked
    os.setxattr(ctx / "a.txt", "user.note", b"two")
    assert context_digest(ctx, ctx / "Dockerfile") != noted


def test_builder_settings_and_manifesto_version_are_part_of_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from manifesto.builders import buildkey

    require("buildah")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    builder = BuildahBuilder(Runner(), storage=tmp_path / "s")
    req = request(tmp_path, tmp_path / "out")
    conf = tmp_path / "containers.conf"
    conf.write_text('[containers]\nenv = ["A=1"]\n')
    monkeypatch.setenv("CONTAINERS_CONF", str(conf))
    first = builder.build_key(req)
    conf.write_text('[containers]\nenv = ["A=2"]\n')  # the environment of every RUN step
    second = builder.build_key(req)
    monkeypatch.setenv("BUILDAH_LAYERS", "false")
    third = builder.build_key(req)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # newer buildah reads it from the environment
    fourth = builder.build_key(req)
    monkeypatch.setattr(buildkey, "own_version", lambda: "9.9.9")
    assert len({first, second, third, fourth, builder.build_key(req)}) == 5


def test_a_file_changed_just_now_is_read_again(tmp_path: Path) -> None:
    """Its times may not move when it is rewritten within one timestamp tick: no memo."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    old = tmp_path / "old.txt"
    old.write_text("old\n")
    (tmp_path / "new.txt").write_text("new\n")
    memo: dict[tuple[int, ...], str] = {}
    settled = time.time_ns() + 10_000_000_000
    with mock.patch("manifesto.builders.buildkey.time.time_ns", return_value=settled):
        context_digest(tmp_path, tmp_path / "Dockerfile", memo)
    assert len(memo) == 3  # settled: each file read once a run
    memo.clear()
    context_digest(tmp_path, tmp_path / "Dockerfile", memo)
    assert memo == {}


def test_every_ignore_file_buildah_may_pick_is_part_of_the_key(tmp_path: Path) -> None:
    """buildah 1.28 takes the first of Dockerfile.containerignore, Dockerfile.dockerignore,
    .containerignore, .dockerignore; BuildKit reads no .containerignore. A path only one of
    them leaves out is still in the key."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    for name in ("a", "b"):
        (ctx / name).write_text(f"{name}\n")
    (ctx / ".dockerignore").write_text("a\n")
    (ctx / ".containerignore").write_text("b\n")  # buildah's pick: it copies a
    before = context_digest(ctx, ctx / "Dockerfile")
    (ctx / "a").write_text("a changed\n")
    assert context_digest(ctx, ctx / "Dockerfile") != before
    before = context_digest(ctx, ctx / "Dockerfile")
    (ctx / "b").write_text("b changed\n")  # .dockerignore's reader copies b
    assert context_digest(ctx, ctx / "Dockerfile") != before
    before = context_digest(ctx, ctx / "Dockerfile")
    (ctx / "Dockerfile.containerignore").write_text("a\nb\n")  # buildah's first pick now
    assert context_digest(ctx, ctx / "Dockerfile") != before


def test_an_export_changed_through_an_output_is_built_again_not_reused(buildah: BuildahBuilder, tmp_path: Path) -> None:
    """The reused image's layers are hard links to the export's: one edited in place through a
    layout handed out before must not be linked into the next output; that platform builds."""
    ctx = context(tmp_path, PLAIN)
    first = buildah.build(request(ctx, tmp_path / "one", tag="a"), lambda _: None)
    fetched = LayoutStore(first.layout).manifest(first.tag)
    layer = ImageManifest.parse(fetched.raw, fetched.media_type).layers[-1]
    with LayoutStore(first.layout).blob_path(layer.digest).open("r+b") as f:
        f.write(b"\x00")  # the user's output, edited in place
    again = buildah.build(request(ctx, tmp_path / "two", tag="b"), lambda _: None)
    assert buildah.runner.commands.count("build") == 2  # type: ignore[attr-defined]
    assert again.digest == first.digest and layer_file(again, "app.txt") == b"one\n"
