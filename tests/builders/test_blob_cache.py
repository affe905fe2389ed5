"""The blob cache of a buildah store: an export takes each pulled base layer's compressed bytes
from it instead of compressing the layer again, and digests stay the same cached, uncached and
from a fresh store. Real buildah and registry, amd64, no RUN (no qemu).

Observable: the base here is gzip-compressed by Python (tests/support/images.py), whose bytes
differ from what buildah's Go compressor makes of the same tar; an exported base layer with the
registry's digest can only have come from the blob cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from manifesto.builders.base import BuiltImage
from manifesto.builders.buildah import BuildahBuilder
from manifesto.builders.buildkey import forget
from manifesto.builders.cache import BLOB_CACHE
from manifesto.builders.podman import PodmanBuilder
from manifesto.builders.runner import Runner
from manifesto.oci.manifest import ImageManifest
from manifesto.oci.platform import Platform
from manifesto.store.layout import LayoutStore
from tests.builders.test_build_cache import EPOCH, build, context, hits, layer_file, request
from tests.support import Registry, require
from tests.support.images import build_image, push_image

AMD64 = Platform.parse("linux/amd64")


def layers(built: BuiltImage) -> list[str]:
    store = LayoutStore(built.layout)
    manifest = ImageManifest.parse(store.manifest(built.tag).raw, built.media_type)
    return [str(layer.digest) for layer in manifest.layers]


def base(registry: Registry, tmp_path: Path, repo: str) -> tuple[str, str]:
    """A one-layer base pushed to `registry`: its reference and its layer's digest."""
    image = build_image("amd64", tmp_path / f"base-{repo}", busybox=b"a base layer\n" * 4096)
    return push_image(image, f"blobs/{repo}:1", registry, creds=False), image.layer_digest


def test_exports_take_base_layers_from_the_blob_cache_and_digests_stay_equal(
    tmp_home: Any, registry: Registry, tmp_path: Path
) -> None:
    require("buildah")
    ref, base_layer = base(registry, tmp_path, "equal")
    ctx = context(tmp_path, f"FROM {ref}\nCOPY app.txt /app.txt\n")
    kw = {"source_date_epoch": EPOCH}
    buildah = BuildahBuilder(Runner(), storage=tmp_path / "storage")
    out = tmp_path / "out"
    first, _ = build(buildah, request(ctx, out, tag="first", **kw))
    assert layers(first)[0] == base_layer
    blobs = buildah.store(AMD64) / BLOB_CACHE
    assert (blobs / base_layer).is_file()  # the pull kept the compressed bytes, in the store

    (ctx / "app.txt").write_text("two\n")  # the base is unchanged: buildah runs, the push reuses
    changed, lines = build(buildah, request(ctx, out, tag="changed", **kw))
    assert hits(lines) == 0 and "unchanged since" not in "".join(lines), lines
    assert layers(changed)[0] == base_layer and layer_file(changed, "app.txt") == b"two\n"
    assert changed.digest != first.digest

    forget(buildah.store(AMD64))
    cached, lines = build(buildah, request(ctx, out, tag="cached", **kw))
    assert hits(lines) >= 1, lines
    uncached, lines = build(buildah, request(ctx, out, tag="uncached", no_cache=True, **kw))
    assert hits(lines) == 0, lines
    fresh, _ = build(BuildahBuilder(Runner(), storage=tmp_path / "elsewhere"), request(ctx, out, tag="fresh", **kw))
    assert changed.digest == cached.digest == uncached.digest == fresh.digest


def test_a_store_filled_before_its_blob_cache_builds_once_from_nothing(
    tmp_home: Any, registry: Registry, tmp_path: Path
) -> None:
    """A store whose base was pulled without a blob cache would export that base compressed
    again (other bytes than a fresh store's): it is emptied once, and then agrees."""
    require("buildah")
    ref, base_layer = base(registry, tmp_path, "old")
    ctx = context(tmp_path, f"FROM {ref}\nCOPY app.txt /app.txt\nCOPY busybox /b\n")
    kw = {"source_date_epoch": EPOCH}

    class WithoutBlobCache(BuildahBuilder):
        def blob_cache(self, store: Path) -> Path | None:
            return None

    old = WithoutBlobCache(Runner(), storage=tmp_path / "storage")
    before, _ = build(old, request(ctx, tmp_path / "out", tag="old", **kw))
    assert layers(before)[0] != base_layer  # compressed again by buildah: what the cache saves
    store = old.store(AMD64)
    assert (store / "root").is_dir() and not (store / BLOB_CACHE).exists()
    forget(store)

    now = BuildahBuilder(Runner(), storage=tmp_path / "storage")
    again, lines = build(now, request(ctx, tmp_path / "out", tag="now", **kw))
    fresh, _ = build(BuildahBuilder(Runner(), storage=tmp_path / "fresh"), request(ctx, tmp_path / "out", tag="f", **kw))
    assert layers(again)[0] == base_layer and again.digest == fresh.digest
    assert hits(lines) == 0, lines  # emptied: nothing cached from before


def test_the_blob_cache_reaches_build_and_push_and_podman_keeps_none(tmp_path: Path) -> None:
    """buildah gets the store's own blob cache on both commands; podman 4.3's push has no
    --blob-cache, so podman passes it to neither."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    req = request(tmp_path, tmp_path / "out")
    b = BuildahBuilder(Runner(), storage=tmp_path / "s")
    blobs = b.blob_cache(b.store(AMD64))
    assert blobs == b.store(AMD64) / BLOB_CACHE
    for argv in (b.build_args(req, "x", None, blobs), b.push_args("oci:/d:t", tmp_path / "auth.json", blobs)):
        assert argv[argv.index("--blob-cache") + 1] == str(blobs)
    assert "--blob-cache" not in b.build_args(req)  # the build key's command line has no path
    p = PodmanBuilder(Runner(), storage=tmp_path / "p")
    assert p.blob_cache(p.store(AMD64)) is None
    assert "--blob-cache" not in p.push_args("dir:/d", tmp_path / "auth.json", p.blob_cache(p.store(AMD64)))
