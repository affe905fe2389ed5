"""Round trips a copy within one registry spends: a blob is mounted without a HEAD first.

distribution answers a mount with 201 whether or not the target already links the blob, so a
HEAD before it only adds a round trip per blob (ten of a five-platform copy's ~40 requests). A
refused mount (202: the source lacks it) is followed by that HEAD, so a blob the target has is
still not uploaded again.
"""

from __future__ import annotations

import httpx

from manifesto.jobs.copy import copy
from manifesto.oci.manifest import ImageManifest, parse
from manifesto.transfer import Copier, Place
from tests.store.test_client_faults import BLOB, BLOB_DESC, Fake, run
from tests.support.faultproxy import FaultProxy


def test_a_same_registry_copy_mounts_every_blob_and_heads_none(registry, arch_images, unique_repo) -> None:
    a = arch_images["amd64"]
    source = f"{registry.host}/{unique_repo}:1"
    copy(f"oci:{a.layout}:{a.tag}", source)
    with FaultProxy(registry.host) as proxy:
        digest = copy(proxy.ref(unique_repo, "1"), proxy.ref(f"{unique_repo}-to", "1"), insecure=True)
        mounts = proxy.requests("POST", r"mount=")
        heads = proxy.requests("HEAD", r"/blobs/")
    raw = httpx.get(
        f"http://{registry.host}/v2/{unique_repo}-to/manifests/{digest}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"},
    )
    doc = parse(raw.content, raw.headers["content-type"], "copied")
    assert isinstance(doc, ImageManifest)
    assert heads == []
    assert sorted(m.status for m in mounts) == [201] * len(doc.blobs())
    for blob in doc.blobs():  # really there: the registry serves each one from the target
        r = httpx.head(f"http://{registry.host}/v2/{unique_repo}-to/blobs/{blob.digest}")
        assert r.status_code == 200


def test_a_refused_mount_of_a_blob_the_target_has_uploads_nothing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":  # the source lacks it: an upload session instead
            return httpx.Response(202, headers={"Location": "/v2/dst/blobs/uploads/m1?_state=q"})
        if request.method == "HEAD":  # ...but the target has it already
            return httpx.Response(200, headers={"Content-Length": str(len(BLOB))})
        return httpx.Response(500)

    fake = Fake(handler)

    async def go(c):
        copier = Copier(Place(c, "dst"))
        await copier.blob(Place(c, "src"), BLOB_DESC)
        return copier.stats

    stats = run(fake, go)
    assert [r.method for r in fake.seen] == ["POST", "HEAD"]
    assert (stats.blobs_mounted, stats.blobs_skipped, stats.blobs_uploaded) == (0, 1, 0)
