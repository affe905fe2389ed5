"""What a build after a change costs, and what it must still guarantee: its push writes only
the blobs the previous export lacks, the export keeps one image and nothing else, layouts linked
to it stay intact, --no-cache starts from an empty one (podman's too); copies out of it link
where they can and copy where they cannot; builds starting together read their shared context
once, builds of other contexts do not wait for it; a build that reuses its image looks up no
credentials. Real buildah, podman and registry for the builds (amd64, no RUN: no qemu)."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from unittest import mock

from manifesto.builders import buildkey
from manifesto.builders.buildah import BuildahBuilder
from manifesto.builders.buildkey import EXPORT_DIR, EXPORT_TAG, copy_layout_image
from manifesto.builders.export import keep_last
from manifesto.builders.runner import Runner
from manifesto.oci import canonical, mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.manifest import ImageManifest
from manifesto.store.layout import LayoutStore
from tests.builders.test_blob_cache import AMD64, base, layers
from tests.builders.test_build_cache import EPOCH, build, context, layer_file, request
from tests.support import Registry, require


def image(layout: LayoutStore, tag: str, *contents: bytes) -> tuple[Digest, list[Digest]]:
    """An image of one layer per `contents` (not real tars: the layout does not look) in
    `layout` under `tag`: its manifest digest and its blobs' digests (config first)."""
    config = canonical.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    blobs = []
    for media_type, data in ((mediatype.OCI_CONFIG, config), *((mediatype.OCI_LAYER_GZIP, c) for c in contents)):
        d = Descriptor(media_type, Digest.of(data), len(data))
        path = layout.path / f"src-{d.digest.hex}"
        path.write_bytes(data)
        layout.add_blob(d, path)
        path.unlink()
        blobs.append(d)
    doc = {
        "schemaVersion": 2,
        "mediaType": mediatype.OCI_MANIFEST,
        "config": blobs[0].to_dict(),
        "layers": [b.to_dict() for b in blobs[1:]],
    }
    raw = canonical.dumps(doc)
    return layout.put_manifest_sync(tag, raw, mediatype.OCI_MANIFEST), [b.digest for b in blobs]


def blob_names(layout: LayoutStore) -> set[str]:
    return {p.name for p in (layout.path / "blobs" / "sha256").iterdir()}


def export_of(builder: BuildahBuilder) -> LayoutStore:
    return LayoutStore(builder.store(AMD64) / EXPORT_DIR)


# ---- keep_last: one image and nothing else ----------------------------------------------------


def test_keep_last_leaves_the_tagged_image_alone(tmp_path: Path) -> None:
    layout = LayoutStore(tmp_path / "export", create=True)
    old, old_blobs = image(layout, EXPORT_TAG, b"base", b"app v1")
    new, new_blobs = image(layout, EXPORT_TAG, b"base", b"app v2")  # replaces the tag; v1's blobs stay
    with layout.lock():  # what a push leaves: the image it replaced as an untagged entry
        doc = layout.descriptors()
        entries = [Descriptor(mediatype.OCI_MANIFEST, old, len(layout.read_bytes(old))).to_dict(), doc[0].to_dict()]
        (layout.path / "index.json").write_bytes(canonical.dumps({"schemaVersion": 2, "manifests": entries}))
    (layout.path / "oci-put-blob123").write_bytes(b"a killed push's temporary file")
    (layout.path / "blobs" / "sha512").mkdir()
    (layout.path / "blobs" / "sha512" / ("0" * 128)).write_bytes(b"named by no image")
    assert {b.hex for b in old_blobs} <= blob_names(layout)

    keep_last(layout.path, EXPORT_TAG, seal=True)  # after a push

    assert [d.digest for d in layout.descriptors()] == [new]
    assert blob_names(layout) == {new.hex, *(b.hex for b in new_blobs)}
    assert sorted(p.name for p in layout.path.iterdir()) == ["blobs", "index.json", "oci-layout"]
    assert sorted(p.parent.name for p in (layout.path / "blobs").rglob("*") if p.is_file()) == ["sha256"] * 4
    assert layout.manifest(EXPORT_TAG).digest == new


def test_keep_last_drops_a_blob_of_the_wrong_size_and_leaves_a_missing_one_to_the_push(tmp_path: Path) -> None:
    """The push would reuse a blob by its name alone: a truncated one must go (and be written
    again); a missing layer is the push's to write, not a reason to drop the rest."""
    layout = LayoutStore(tmp_path / "export", create=True)
    _, (config, truncated, missing, whole) = image(layout, EXPORT_TAG, b"truncated layer", b"missing layer", b"whole")
    layout.blob_path(truncated).write_bytes(b"trunc")
    layout.blob_path(missing).unlink()

    keep_last(layout.path, EXPORT_TAG, seal=True)

    assert not layout.blob_path(truncated).exists() and not layout.blob_path(missing).exists()
    assert layout.blob_path(whole).read_bytes() == b"whole" and layout.blob_path(config).is_file()


def test_a_sealed_export_loses_a_blob_changed_through_a_link_and_an_unsealed_one_goes_whole(tmp_path: Path) -> None:
    """Blobs are hard-linked into the layouts handed out: one changed in place there must not be
    reused by the next push; an export a push left unsealed (cut short) is not reused at all."""
    layout = LayoutStore(tmp_path / "export", create=True)
    _, (config, changed, kept) = image(layout, EXPORT_TAG, b"changed layer", b"kept layer")
    keep_last(layout.path, EXPORT_TAG, seal=True)
    out = tmp_path / "output-layer"
    os.link(layout.blob_path(changed), out)  # as a copy-out does
    os.link(layout.blob_path(kept), tmp_path / "other-output-layer")
    with out.open("r+b") as f:  # the user edits the output's layer in place
        f.write(b"C")

    keep_last(layout.path, EXPORT_TAG)  # before the next push

    assert not layout.blob_path(changed).exists()
    assert layout.blob_path(kept).read_bytes() == b"kept layer" and layout.blob_path(config).is_file()
    keep_last(layout.path, EXPORT_TAG)  # the push was cut short: nothing sealed it again
    assert not layout.path.exists()


def test_keep_last_removes_an_export_it_cannot_read_whole_and_any_with_fresh(tmp_path: Path) -> None:
    layout = LayoutStore(tmp_path / "export", create=True)
    digest, (config, *_) = image(layout, EXPORT_TAG, b"layer")
    keep_last(layout.path, "other-tag", seal=True)  # no such image: nothing of it can be trusted
    assert not layout.path.exists()

    layout = LayoutStore(tmp_path / "export", create=True)
    digest, (config, *_) = image(layout, EXPORT_TAG, b"layer")
    layout.blob_path(config).write_bytes(b"{}")  # a config that does not verify
    keep_last(layout.path, EXPORT_TAG, seal=True)
    assert not layout.path.exists()

    layout = LayoutStore(tmp_path / "export", create=True)
    image(layout, EXPORT_TAG, b"layer")
    keep_last(layout.path, EXPORT_TAG, fresh=True)
    assert not layout.path.exists()
    keep_last(layout.path, EXPORT_TAG)  # none at all: nothing to do


# ---- copies out of the export ---------------------------------------------------------------


def test_a_copy_out_links_layers_on_one_filesystem_and_copies_across_filesystems(tmp_path: Path) -> None:
    src = LayoutStore(tmp_path / "export", create=True)
    digest, (config, layer) = image(src, EXPORT_TAG, b"a large base layer")
    linked = LayoutStore(tmp_path / "linked", create=True)
    copy_layout_image(src, EXPORT_TAG, linked, "t")
    assert linked.blob_path(layer).stat().st_ino == src.blob_path(layer).stat().st_ino
    assert linked.blob_path(config).stat().st_ino != src.blob_path(config).stat().st_ino  # configs: copied

    real_link = os.link

    def cross_device(a: Any, b: Any, *args: Any, **kw: Any) -> None:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    copied = LayoutStore(tmp_path / "copied", create=True)
    with mock.patch("manifesto.builders.buildkey.os.link", side_effect=cross_device) as link:
        copy_layout_image(src, EXPORT_TAG, copied, "t")
    assert link.called and os.link is real_link
    assert copied.blob_path(layer).stat().st_ino != src.blob_path(layer).stat().st_ino
    assert copied.read_bytes(layer) == b"a large base layer" and copied.manifest("t").digest == digest


# ---- real builds ----------------------------------------------------------------------------


def test_a_changed_build_writes_only_new_blobs_into_the_export_it_keeps(
    tmp_home: Any, registry: Registry, tmp_path: Path
) -> None:
    require("buildah")
    ref, base_layer = base(registry, tmp_path, "export")
    ctx = context(tmp_path, f"FROM {ref}\nCOPY busybox /bin/busybox\nCOPY app.txt /app.txt\n")
    kw = {"source_date_epoch": EPOCH}
    buildah = BuildahBuilder(Runner(), storage=tmp_path / "storage")
    first, _ = build(buildah, request(ctx, tmp_path / "one", tag="first", **kw))
    export = export_of(buildah)
    kept = {d: export.blob_path(Digest.parse(d)).stat().st_ino for d in layers(first)}

    (ctx / "app.txt").write_text("two\n")
    changed, _ = build(buildah, request(ctx, tmp_path / "two", tag="changed", **kw))
    assert layers(changed)[:2] == layers(first)[:2] and layers(changed)[0] == base_layer
    for digest in layers(first)[:2]:  # the base and the busybox layer: reused where they were
        assert export.blob_path(Digest.parse(digest)).stat().st_ino == kept[digest]
    fetched = export.manifest(EXPORT_TAG)
    manifest = ImageManifest.parse(fetched.raw, fetched.media_type)
    assert fetched.digest == changed.digest and [d.digest for d in export.descriptors()] == [changed.digest]
    assert blob_names(export) == {fetched.digest.hex, *(b.digest.hex for b in manifest.blobs())}

    # the first output, linked to the export, is intact; the changed image is what a fresh store makes
    one = LayoutStore(first.layout)
    for digest in layers(first):
        one.read_bytes(Digest.parse(digest))  # verifies
    assert layer_file(first, "app.txt") == b"one\n" and layer_file(changed, "app.txt") == b"two\n"
    fresh, _ = build(BuildahBuilder(Runner(), storage=tmp_path / "fresh"), request(ctx, tmp_path / "f", tag="f", **kw))
    assert fresh.digest == changed.digest

    (ctx / "app.txt").write_text("three\n")  # --no-cache: an empty export, every blob written again
    uncached, _ = build(buildah, request(ctx, tmp_path / "three", tag="u", no_cache=True, **kw))
    assert layers(uncached)[0] == base_layer
    assert export.blob_path(Digest.parse(base_layer)).stat().st_ino != kept[base_layer]


def test_a_build_that_reuses_its_image_looks_up_no_credentials(
    tmp_home: Any, registry: Registry, tmp_path: Path
) -> None:
    """The lookup (which may load the keyring) waits until a build is sure to run."""
    require("buildah")
    ref, _ = base(registry, tmp_path, "creds")
    ctx = context(tmp_path, f"FROM {ref}\nCOPY app.txt /app.txt\n")
    asked: list[str] = []

    def resolve(host: str) -> None:
        asked.append(host)

    buildah = BuildahBuilder(Runner(), storage=tmp_path / "storage", credentials=resolve)
    build(buildah, request(ctx, tmp_path / "one"))
    assert asked == [registry.host]  # for the build's private auth file
    asked.clear()
    _, lines = build(buildah, request(ctx, tmp_path / "two"))
    assert any("unchanged since the last build" in line for line in lines) and asked == []


def test_builds_starting_together_read_their_shared_context_once(tmp_path: Path) -> None:
    require("buildah")
    ctx = context(tmp_path, "FROM scratch\nCOPY busybox /bin/busybox\nCOPY app.txt /app.txt\n")
    buildah = BuildahBuilder(Runner(), storage=tmp_path / "storage", storage_driver="vfs")
    platforms = ("linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/ppc64le", "linux/s390x")
    read: Counter[str] = Counter()
    real = buildkey._file_digest

    def slow(path: Path) -> str:
        if Path(path).parent == ctx and Path(path).exists():
            read[Path(path).name] += 1
            time.sleep(0.2)  # every build is under way before the first read ends
        return real(path)

    start = threading.Barrier(len(platforms))

    def key(platform: str) -> str | None:
        start.wait(timeout=30)
        return buildah.build_key(request(ctx, tmp_path / "out", platform))

    later = time.time_ns() + 60 * 10**9  # the files are older than a timestamp tick: the memo may keep them
    with (
        mock.patch("manifesto.builders.buildkey._file_digest", side_effect=slow),
        mock.patch("manifesto.builders.buildkey.time.time_ns", return_value=later),
    ):
        with ThreadPoolExecutor(len(platforms)) as pool:
            keys = list(pool.map(key, platforms))
    assert None not in keys and len(set(keys)) == len(platforms)
    assert read == {"busybox": 1, "app.txt": 1, "Dockerfile": 1}


def test_builds_of_different_contexts_do_not_wait_for_each_other(tmp_path: Path) -> None:
    require("buildah")
    one = context(tmp_path / "one", "FROM scratch\nCOPY app.txt /app.txt\n")
    two = context(tmp_path / "two", "FROM scratch\nCOPY app.txt /app.txt\n")
    buildah = BuildahBuilder(Runner(), storage=tmp_path / "storage", storage_driver="vfs")
    reading, release = threading.Event(), threading.Event()
    real = buildkey._file_digest

    def held(path: Path) -> str:
        if Path(path).parent == one and Path(path).exists():
            reading.set()
            assert release.wait(timeout=10)
        return real(path)

    with mock.patch("manifesto.builders.buildkey._file_digest", side_effect=held), ThreadPoolExecutor(1) as pool:
        first = pool.submit(buildah.build_key, request(one, tmp_path / "out"))
        assert reading.wait(timeout=30)
        assert buildah.build_key(request(two, tmp_path / "out", "linux/s390x")) is not None  # while `one` is read
        release.set()
        assert first.result(timeout=30) is not None


def test_a_podman_export_over_its_last_image_matches_a_fresh_store(tmp_path: Path) -> None:
    """podman 4.3 keeps no blob cache: its push compresses every layer and names it by that
    digest, which a kept export may already hold; the image is the same either way."""
    require("podman")
    from manifesto.builders.podman import PodmanBuilder

    ctx = context(tmp_path, "FROM scratch\nCOPY busybox /bin/busybox\nCOPY app.txt /app.txt\n")
    kw = {"source_date_epoch": EPOCH}
    podman = PodmanBuilder(Runner(), storage=tmp_path / "storage")
    first, _ = build(podman, request(ctx, tmp_path / "one", tag="first", **kw))
    (ctx / "app.txt").write_text("two\n")
    changed, _ = build(podman, request(ctx, tmp_path / "two", tag="changed", **kw))
    fresh, _ = build(PodmanBuilder(Runner(), storage=tmp_path / "fresh"), request(ctx, tmp_path / "f", tag="f", **kw))
    assert changed.digest == fresh.digest != first.digest and layers(changed)[0] == layers(first)[0]
    export = LayoutStore(podman.store(AMD64) / EXPORT_DIR)
    assert [d.digest for d in export.descriptors()] == [changed.digest]
