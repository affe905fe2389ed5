"""The build key: an unchanged build runs no builder process; any input that can change the
image (a context file, its mode, a build arg, the Dockerfile, SOURCE_DATE_EPOCH, the base a
tag names) builds again. Real buildah, amd64, contexts without RUN (no qemu)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

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
