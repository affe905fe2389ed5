"""A buildah image names its base, and a push into the base's registry mounts the base's layers
instead of uploading them; a base elsewhere, or a refused mount, uploads from the layout.

Real buildah (amd64, no RUN: no qemu) and real registries. The base's layer is compressed by
Python (tests/support/images.py): buildah's blob cache exports it as those very bytes, so the
built layout holds a blob with the base registry's digest (tests/builders/test_blob_cache.py).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import quote

import pytest

from manifesto.builders.base import BuiltImage
from manifesto.builders.bases import final_base
from manifesto.builders.buildah import BuildahBuilder
from manifesto.builders.runner import Runner
from manifesto.oci.digest import Digest
from manifesto.oci.platform import Platform, platform_args
from manifesto.store.layout import LayoutStore
from manifesto.store.overlay import Overlay, built_place
from manifesto.store.protocol import Store
from manifesto.store.registry.client import RegistryClient
from manifesto.store.registry.credential import Credential
from manifesto.store.registry.pool import Registries
from manifesto.transfer import Copier, Place, Stats
from tests.builders.test_build_cache import context, request
from tests.publish.conftest import AccessLog, Request
from tests.support import Registry, require
from tests.support.images import ArchImage, build_image, push_image

ALICE = ("alice", "alice-secret")
BUILTINS = platform_args(Platform.parse("linux/arm64"))


# ---- which image a build starts from ----------------------------------------------------------


@pytest.mark.parametrize(
    "dockerfile, args, target, expected",
    [
        ("FROM r.example/base:1\nCOPY a /a\n", {}, None, "r.example/base:1"),
        ("ARG V=2\nFROM r.example/base:${V}\n", {}, None, "r.example/base:2"),
        ("ARG V=2\nFROM r.example/base:${V}\n", {"V": "3"}, None, "r.example/base:3"),
        ("FROM r.example/a:1 AS build\nFROM r.example/b:1\nCOPY --from=build /x /x\n", {}, None, "r.example/b:1"),
        ("FROM r.example/a:1 AS one\nFROM one AS two\nFROM two\n", {}, None, "r.example/a:1"),
        ("FROM r.example/a:1 AS one\nFROM r.example/b:1 AS two\nFROM one\n", {}, "two", "r.example/b:1"),
        ("FROM r.example/a:1 AS build\nFROM scratch\nCOPY --from=build /x /x\n", {}, None, None),
        ("FROM --platform=$BUILDPLATFORM r.example/a:1 AS b\nFROM b\n", {}, None, None),
        ("FROM r.example/a-${TARGETARCH}:1\n", {}, None, "r.example/a-arm64:1"),
        ("FROM r.example/a:1 AS one\n", {}, "nosuchstage", None),
        ("FROM ${UNSET}\n", {}, None, None),
    ],
)
def test_the_base_is_the_image_the_final_stage_starts_from(
    dockerfile: str, args: dict[str, str], target: str | None, expected: str | None
) -> None:
    ref = final_base(dockerfile, args, BUILTINS, target)
    assert (str(ref) if ref else None) == expected


# ---- a built image, and pushes of it -------------------------------------------------------------


@pytest.fixture(scope="module")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> ArchImage:
    return build_image("amd64", tmp_path_factory.mktemp("base"), busybox=b"a base layer to mount\n" * 8192)


@pytest.fixture(scope="module")
def built(registry: Registry, base_image: ArchImage, tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """amd64 built by buildah FROM `mounts/base:1` in `registry` (no manifesto login needed)."""
    require("buildah")
    tmp = tmp_path_factory.mktemp("built")
    ref = push_image(base_image, "mounts/base:1", registry, creds=False)
    ctx = context(tmp, f"FROM {ref}\nCOPY app.txt /app.txt\n")
    buildah = BuildahBuilder(Runner(), storage=tmp / "storage", credentials=lambda host: None)
    return buildah.build(request(ctx, tmp / "out", source_date_epoch=1700000000), lambda line: None)


def test_a_buildah_image_names_its_base_pinned_to_the_digest_it_was_built_from(
    built: BuiltImage, registry: Registry, base_image: ArchImage
) -> None:
    assert built.base == f"{registry.host}/mounts/base@{base_image.manifest_digest}"
    manifest = LayoutStore(built.layout).manifest(built.tag)
    assert base_image.layer_digest in manifest.raw.decode()  # the base's layer, held as its own bytes


def push(built: BuiltImage, target: str, repo: str, base: str | None = None) -> Stats:
    """Push `built` as a publish does (store/overlay.built_place, then a Copier)."""

    async def main() -> Stats:
        async with Registries() as registries:
            copier = Copier(Place(registries.client(target), repo))
            fetched = LayoutStore(built.layout).manifest(built.tag)
            await copier.manifest(Place(*built_place(built.layout, base or built.base, registries)), fetched)
            return copier.stats

    return asyncio.run(main())


def uploads(requests: list[Request], repo: str) -> list[Request]:
    """The upload sessions' final PUTs into `repo` (each names its blob's digest)."""
    return [r for r in requests if r.method == "PUT" and r.path.startswith(f"/v2/{repo}/blobs/uploads/")]


def mounts(requests: list[Request], repo: str) -> list[Request]:
    return [r for r in requests if r.method == "POST" and r.path == f"/v2/{repo}/blobs/uploads/" and "mount=" in r.query]


def test_a_push_into_the_base_registry_mounts_the_base_layers(
    built: BuiltImage, registry: Registry, base_image: ArchImage, unique_repo: str
) -> None:
    log = AccessLog(registry)
    mark = log.mark()
    stats = push(built, registry.host, unique_repo)
    requests = log.since(mark)
    mounted = mounts(requests, unique_repo)
    assert [(r.status, f"from={quote('mounts/base', safe='')}" in r.query) for r in mounted] == [(201, True)], mounted
    layer = quote(base_image.layer_digest, safe="")
    assert layer in mounted[0].query
    put = uploads(requests, unique_repo)
    assert len(put) == 2 and not any(layer in r.query for r in put), put
    assert [r for r in requests if r.method == "PATCH" and r.path.startswith(f"/v2/{unique_repo}/")] == []
    assert (stats.blobs_mounted, stats.blobs_uploaded) == (1, 2)
    gets = [r for r in requests if r.method == "GET" and r.path.startswith("/v2/mounts/base/blobs/")]
    assert gets == []  # nothing of the base read back
    with registry.client() as c:
        assert c.head(f"/v2/{unique_repo}/blobs/{base_image.layer_digest}").status_code == 200
        accept = {"Accept": built.media_type}
        assert c.head(f"/v2/{unique_repo}/manifests/{built.digest}", headers=accept).status_code == 200


def test_a_push_into_another_registry_uploads_the_base_layers_from_the_layout(
    built: BuiltImage, registry: Registry, fresh_registry: Registry, base_image: ArchImage
) -> None:
    base_log, target_log = AccessLog(registry), AccessLog(fresh_registry)
    base_mark, target_mark = base_log.mark(), target_log.mark()
    stats = push(built, fresh_registry.host, "app")
    assert base_log.since(base_mark) == []  # not asked, not streamed from
    requests = target_log.since(target_mark)
    assert mounts(requests, "app") == [] and len(uploads(requests, "app")) == 3
    assert (stats.blobs_mounted, stats.blobs_uploaded) == (0, 3)
    with fresh_registry.client() as c:
        assert c.head(f"/v2/app/blobs/{base_image.layer_digest}").status_code == 200


def test_a_refused_mount_uploads_from_the_layout_into_the_session_it_opened(
    built: BuiltImage, registry: Registry, base_image: ArchImage, unique_repo: str
) -> None:
    """The base repository names the layer but no longer holds it (its link deleted): the
    registry answers the mount with 202 and an upload session, which the layer goes into."""
    push_image(base_image, "mounts/gone:1", registry, creds=False)
    with registry.client() as c:
        assert c.delete(f"/v2/mounts/gone/blobs/{base_image.layer_digest}").status_code == 202
    log = AccessLog(registry)
    mark = log.mark()
    stats = push(built, registry.host, unique_repo, base=f"{registry.host}/mounts/gone@{base_image.manifest_digest}")
    requests = log.since(mark)
    mounted = mounts(requests, unique_repo)
    assert [r.status for r in mounted] == [202], mounted
    posts = [r for r in requests if r.method == "POST" and r.path == f"/v2/{unique_repo}/blobs/uploads/"]
    assert len(posts) == 3  # one session per blob: the refused mount's is the layer's
    assert len(uploads(requests, unique_repo)) == 3 and (stats.blobs_mounted, stats.blobs_uploaded) == (0, 3)
    assert [r for r in requests if r.method == "GET" and "/blobs/" in r.path] == []
    with registry.client() as c:
        assert c.head(f"/v2/{unique_repo}/blobs/{base_image.layer_digest}").status_code == 200


def test_a_mount_refused_for_its_scope_uploads_from_the_layout(
    built: BuiltImage, token_registry: Registry, base_image: ArchImage, unique_repo: str, monkeypatch: Any
) -> None:
    """A token with push on the target never carries pull on the base (401 insufficient_scope on
    the mount) while the base itself stays readable: the layer is uploaded, the push succeeds."""
    reg, ts = token_registry, token_registry.token_server
    assert ts is not None
    push_image(base_image, "mounts/base:1", reg, creds=ALICE)
    target_key, original = f"repository:{unique_repo}", ts.grant

    def grant(user: Any, requested: Any) -> Any:
        granted = original(user, requested)
        if "push" in requested.get(target_key, ()):
            granted = {k: v for k, v in granted.items() if k == target_key}
        return granted

    monkeypatch.setattr(ts, "grant", grant)
    log = AccessLog(reg)
    mark = log.mark()

    async def main() -> tuple[Stats, int | None]:
        async with RegistryClient(reg.host, credential=Credential(*ALICE)) as client:
            source = Overlay(LayoutStore(built.layout), client, "mounts/base", Digest.parse(base_image.manifest_digest))
            copier = Copier(Place(client, unique_repo))
            await copier.manifest(Place(source, ""), LayoutStore(built.layout).manifest(built.tag))
            return copier.stats, await client.blob_size(unique_repo, Digest.parse(base_image.layer_digest))

    stats, held = asyncio.run(main())
    requests = log.since(mark)
    mounted = mounts(requests, unique_repo)  # (a challenge first, then the token's refusal)
    assert mounted and {r.status for r in mounted} == {401}, mounted
    assert all(quote(base_image.layer_digest, safe="") in r.query for r in mounted), mounted
    assert (stats.blobs_mounted, stats.blobs_uploaded) == (0, 3) and held == base_image.layer_size


def test_an_overlay_names_a_copy_only_in_the_store_it_is_over(
    built: BuiltImage, registry: Registry, base_image: ArchImage
) -> None:
    """Asked about another store (a layout target, another registry), the base is no mount
    source, and nothing is read from it."""

    async def main() -> list[str | None]:
        async with Registries() as registries:
            base = registries.client(registry.host)
            pin = Digest.parse(re.sub(r".*@", "", built.base or ""))
            overlay = Overlay(LayoutStore(built.layout), base, "mounts/base", pin)
            layer = Digest.parse(base_image.layer_digest)
            other: Store = LayoutStore(built.layout)
            return [await overlay.blob_copy(layer, other), await overlay.blob_copy(layer, base)]

    assert asyncio.run(main()) == [None, "mounts/base"]


def test_the_overlay_speaks_the_blob_origins_ability() -> None:
    """isinstance on the protocol looks at names only: the signatures are checked here."""
    import inspect

    from manifesto.store.protocol import BlobOrigins, LocalBlobs

    for ability in (BlobOrigins, LocalBlobs):
        for name in ("blob_origin", "blob_copy") if ability is BlobOrigins else ("blob_path",):
            declared, real = getattr(ability, name), getattr(Overlay, name)
            assert inspect.signature(real) == inspect.signature(declared), name
            assert inspect.iscoroutinefunction(real) == inspect.iscoroutinefunction(declared), name


def test_a_buildah_publish_mounts_its_base_layers_from_the_target_registry(
    registry: Registry, base_image: ArchImage, unique_repo: str, run_cli: Any, tmp_path: Any
) -> None:
    """End to end: `manifesto publish` with buildah, the base in the target's registry."""
    require("buildah")
    ref = push_image(base_image, "mounts/base:1", registry, creds=False)
    project = context(tmp_path, f"FROM {ref}\nCOPY app.txt /app.txt\n")
    spec = project / "platforms.yaml"
    spec.write_text(
        f"image: {registry.ref(unique_repo)}\ntags: ['1']\nbuild: {{builder: buildah}}\nplatforms: [linux/amd64]\n"
    )
    log = AccessLog(registry)
    mark = log.mark()
    rc, _, err = run_cli("publish", "-f", str(spec))
    assert rc == 0, err
    requests = log.since(mark)
    mounted = mounts(requests, unique_repo)
    layer = quote(base_image.layer_digest, safe="")
    assert [(r.status, layer in r.query) for r in mounted] == [(201, True)], mounted
    assert not any(layer in r.query for r in uploads(requests, unique_repo))


def test_a_base_mount_answered_403_uploads_from_the_layout(
    built: BuiltImage, registry: Registry, base_image: ArchImage, unique_repo: str
) -> None:
    """Some registries answer a cross-repository mount they will not do with 403 (or 404), not
    the 202 the spec asks for: the layer is here, so it is uploaded and the push succeeds."""
    from tests.support.faultproxy import FaultProxy, Respond

    assert built.base is not None
    base = built.base.replace(registry.host, "{host}", 1)
    with FaultProxy(registry.host) as proxy:
        refused = proxy.add(Respond(403, b'{"errors":[{"code":"DENIED","message":"no"}]}'), method="POST", path="mount=")
        stats = push(built, proxy.host, unique_repo, base=base.format(host=proxy.host))
    assert refused.hits == 1 and (stats.blobs_mounted, stats.blobs_uploaded) == (0, 3)
    with registry.client() as c:
        assert c.head(f"/v2/{unique_repo}/blobs/{base_image.layer_digest}").status_code == 200
