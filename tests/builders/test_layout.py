"""LayoutStore: the OCI image layout directory as a Store (image-spec image-layout.md)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from manifesto.errors import ContentError, DigestMismatch, NotFound, UsageError
from manifesto.oci import canonical, mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.store.layout import REF_NAME, LayoutStore
from tests.support.tools import require, run


def _run(coro):
    return asyncio.run(coro)


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


async def _collect(it: AsyncIterator[bytes]) -> list[bytes]:
    return [c async for c in it]


def _desc(data: bytes, media_type: str = mediatype.OCI_LAYER) -> Descriptor:
    return Descriptor(media_type, Digest.of(data), len(data))


def _image(store: LayoutStore, layer: bytes, arch: str = "amd64") -> tuple[bytes, Descriptor]:
    """Write a config and a layer, return the manifest bytes (not yet stored) and its descriptor."""
    config = canonical.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    cdesc, ldesc = _desc(config, mediatype.OCI_CONFIG), _desc(layer)
    _run(store.write_blob("ignored", cdesc, _chunks(config)))
    _run(store.write_blob("ignored", ldesc, _chunks(layer)))
    raw = canonical.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatype.OCI_MANIFEST,
            "config": cdesc.to_dict(),
            "layers": [ldesc.to_dict()],
        }
    )
    return raw, _desc(raw, mediatype.OCI_MANIFEST)


def _leftovers(store: LayoutStore) -> list[str]:
    return sorted(p.name for p in (store.path / "blobs").iterdir() if p.name.startswith(".tmp"))


def test_create_writes_an_empty_layout(tmp_path: Path) -> None:
    path = tmp_path / "new" / "layout"
    store = LayoutStore(path, create=True)
    assert store.exists()
    assert json.loads((path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((path / "index.json").read_text())
    assert index["schemaVersion"] == 2 and index["manifests"] == []
    assert (path / "blobs" / "sha256").is_dir()
    assert store.tags() == {}
    # create on an existing layout keeps it
    LayoutStore(path, create=True)
    assert store.tags() == {}


def test_construction_without_create_touches_nothing(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "absent")
    assert not store.exists()
    assert not (tmp_path / "absent").exists()


def test_round_trip_by_tag_and_digest(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "l", create=True)
    raw, mdesc = _image(store, b"layer-bytes")
    digest = _run(store.put_manifest("any/repo", "v1", raw, mediatype.OCI_MANIFEST))
    assert digest == Digest.of(raw)

    by_tag = _run(store.get_manifest("x", "v1"))
    assert (by_tag.raw, by_tag.media_type, by_tag.digest) == (raw, mediatype.OCI_MANIFEST, digest)
    by_digest = _run(store.get_manifest("x", str(digest)))
    assert by_digest == by_tag
    assert _run(store.head_manifest("x", "v1")) == Descriptor(mediatype.OCI_MANIFEST, digest, len(raw))
    assert _run(store.head_manifest("x", str(digest))) == Descriptor(mediatype.OCI_MANIFEST, digest, len(raw))

    layer = _desc(b"layer-bytes")
    assert _run(store.blob_size("x", layer.digest)) == len(b"layer-bytes")
    assert b"".join(_run(_collect(store.read_blob("x", layer.digest)))) == b"layer-bytes"

    tags = store.tags()
    assert list(tags) == ["v1"] and tags["v1"].digest == digest
    assert tags["v1"].annotations == {REF_NAME: "v1"}
    on_disk = json.loads((store.path / "index.json").read_text())["manifests"]
    assert on_disk == [
        {"mediaType": mediatype.OCI_MANIFEST, "digest": str(digest), "size": len(raw), "annotations": {REF_NAME: "v1"}}
    ]


def test_media_type_of_an_untagged_manifest_is_detected_from_its_bytes(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "l", create=True)
    raw, mdesc = _image(store, b"x")
    _run(store.put_manifest("r", str(mdesc.digest), raw, mediatype.OCI_MANIFEST))
    index = canonical.dumps({"schemaVersion": 2, "manifests": [mdesc.to_dict()]})  # no mediaType field
    _run(store.put_manifest("r", str(Digest.of(index)), index, mediatype.OCI_INDEX))
    assert _run(store.get_manifest("r", str(Digest.of(index)))).media_type == mediatype.OCI_INDEX
    assert _run(store.get_manifest("r", str(mdesc.digest))).media_type == mediatype.OCI_MANIFEST


def test_put_by_digest_stores_only_the_blob(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "l", create=True)
    raw, mdesc = _image(store, b"x")
    assert _run(store.put_manifest("r", str(mdesc.digest), raw, mediatype.OCI_MANIFEST)) == mdesc.digest
    assert store.blob_path(mdesc.digest).read_bytes() == raw
    assert store.tags() == {} and store.descriptors() == []
    wrong = Digest.of(b"something else")
    with pytest.raises(DigestMismatch):
        _run(store.put_manifest("r", str(wrong), raw, mediatype.OCI_MANIFEST))
    assert not store.blob_path(wrong).exists()


def test_put_under_a_tag_replaces_only_that_tag(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "l", create=True)
    a, _ = _image(store, b"a")
    b, _ = _image(store, b"b")
    c, _ = _image(store, b"c")
    _run(store.put_manifest("r", "first", a, mediatype.OCI_MANIFEST))
    _run(store.put_manifest("r", "moving", a, mediatype.OCI_MANIFEST))
    _run(store.put_manifest("r", "last", c, mediatype.OCI_MANIFEST))
    _run(store.put_manifest("r", "moving", b, mediatype.OCI_MANIFEST))
    names = [d.annotations[REF_NAME] for d in store.descriptors()]
    assert names == ["first", "moving", "last"]  # replaced in place, one entry per tag
    assert store.tags()["moving"].digest == Digest.of(b)
    assert store.tags()["first"].digest == Digest.of(a)
    assert _run(store.get_manifest("r", "moving")).raw == b


def test_put_manifest_keeps_unknown_index_fields(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "l", create=True)
    index_path = store.path / "index.json"
    doc = json.loads(index_path.read_text())
    doc["annotations"] = {"org.example": "kept"}
    index_path.write_text(json.dumps(doc))
    raw, _ = _image(store, b"a")
    _run(store.put_manifest("r", "t", raw, mediatype.OCI_MANIFEST))
    assert json.loads(index_path.read_text())["annotations"] == {"org.example": "kept"}


def test_put_manifest_refuses_missing_children_and_bad_tags(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "l", create=True)
    raw, _ = _image(store, b"a")
    dangling = canonical.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatype.OCI_INDEX,
            "manifests": [_desc(b"nope", mediatype.OCI_MANIFEST).to_dict()],
        }
    )
    with pytest.raises(ContentError, match="references blobs not in the layout"):
        _run(store.put_manifest("r", "t", dangling, mediatype.OCI_INDEX))
    with pytest.raises(UsageError, match="invalid tag"):
        _run(store.put_manifest("r", "bad tag!", raw, mediatype.OCI_MANIFEST))
    with pytest.raises(ContentError, match="mediaType"):
        _run(store.put_manifest("r", "t", raw, mediatype.OCI_INDEX))
    assert store.tags() == {}


def test_write_blob_from_a_path_copies(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "l", create=True)
    src = tmp_path / "src.bin"
    data = os.urandom(3 * 1024 * 1024 + 17)
    src.write_bytes(data)
    desc = _desc(data)
    _run(store.write_blob("r", desc, src))
    dest = store.blob_path(desc.digest)
    assert dest.read_bytes() == data
    assert dest.stat().st_ino != src.stat().st_ino  # a copy, not a hardlink
    chunks = _run(_collect(store.read_blob("r", desc.digest)))
    assert len(chunks) == 4 and max(map(len, chunks)) == 1024 * 1024
    # writing it again is a no-op
    _run(store.write_blob("r", desc, src))
    assert _leftovers(store) == []


def test_a_failing_digest_leaves_no_blob(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "l", create=True)
    claimed = _desc(b"what was announced")
    with pytest.raises(DigestMismatch):
        _run(store.write_blob("r", claimed, _chunks(b"what ", b"arrived")))
    assert not store.blob_path(claimed.digest).exists()
    src = tmp_path / "f"
    src.write_bytes(b"other bytes")
    with pytest.raises(DigestMismatch):
        _run(store.write_blob("r", claimed, src))
    assert not store.blob_path(claimed.digest).exists()
    assert _leftovers(store) == []


def test_a_wrong_size_or_a_broken_stream_leaves_no_blob(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "l", create=True)
    data = b"exact bytes"
    with pytest.raises(ContentError, match="expected 99 bytes"):
        _run(store.write_blob("r", _desc(data).with_(size=99), _chunks(data)))

    async def broken() -> AsyncIterator[bytes]:
        yield b"exact "
        raise ConnectionResetError("peer went away")

    with pytest.raises(ConnectionResetError):
        _run(store.write_blob("r", _desc(data), broken()))
    assert not store.blob_path(Digest.of(data)).exists()
    assert _leftovers(store) == []


def test_reads_are_verified(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "l", create=True)
    raw, mdesc = _image(store, b"layer")
    _run(store.put_manifest("r", "t", raw, mediatype.OCI_MANIFEST))
    layer = _desc(b"layer")
    store.blob_path(layer.digest).write_bytes(b"LAYER")
    stream = store.read_blob("r", layer.digest)
    with pytest.raises(DigestMismatch):
        _run(_collect(stream))
    store.blob_path(mdesc.digest).write_bytes(raw.replace(b"schemaVersion", b"schemaversion"))
    with pytest.raises(DigestMismatch):
        _run(store.get_manifest("r", "t"))
    with pytest.raises(DigestMismatch):
        _run(store.get_manifest("r", str(mdesc.digest)))


def test_not_found(tmp_path: Path) -> None:
    missing = LayoutStore(tmp_path / "nowhere")
    with pytest.raises(NotFound, match="no OCI image layout at .*does not exist"):
        _run(missing.get_manifest("r", "latest"))
    with pytest.raises(NotFound):
        missing.tags()
    store = LayoutStore(tmp_path / "l", create=True)
    with pytest.raises(NotFound, match="no tag 'latest'"):
        _run(store.get_manifest("r", "latest"))
    absent = Digest.of(b"absent")
    with pytest.raises(NotFound):
        _run(store.get_manifest("r", str(absent)))
    with pytest.raises(NotFound):
        _run(_collect(store.read_blob("r", absent)))
    with pytest.raises(NotFound):
        _run(store.write_blob("r", _desc(b"x"), tmp_path / "no-such-file"))
    assert _run(store.head_manifest("r", "latest")) is None
    assert _run(store.head_manifest("r", str(absent))) is None
    assert _run(store.blob_size("r", absent)) is None


@pytest.mark.parametrize(
    ("oci_layout", "index", "message"),
    [
        (None, "{}", "no oci-layout file"),
        ('{"imageLayoutVersion": "2.0.0"}', '{"schemaVersion":2,"manifests":[]}', "unsupported imageLayoutVersion"),
        ("not json", '{"schemaVersion":2,"manifests":[]}', "not valid JSON"),
        ('{"imageLayoutVersion": "1.0.0"}', None, "no index.json"),
        ('{"imageLayoutVersion": "1.0.0"}', "[1,", "not valid JSON"),
        (
            '{"imageLayoutVersion": "1.0.0"}',
            '{"schemaVersion":2,"manifests":[{"digest":"sha256:x"}]}',
            "missing mediaType",
        ),
    ],
)
def test_broken_layouts_are_content_errors(
    tmp_path: Path, oci_layout: str | None, index: str | None, message: str
) -> None:
    path = tmp_path / "broken"
    path.mkdir()
    if oci_layout is not None:
        (path / "oci-layout").write_text(oci_layout)
    if index is not None:
        (path / "index.json").write_text(index)
    with pytest.raises(ContentError, match=message):
        LayoutStore(path).tags()


def test_create_refuses_a_non_layout_directory(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(ContentError, match="not empty"):
        LayoutStore(tmp_path / "d", create=True)


def test_concurrent_taggers_lose_nothing(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "l", create=True)
    raw, _ = _image(store, b"shared")
    errors: list[BaseException] = []

    def tag(i: int) -> None:
        try:
            LayoutStore(store.path).put_manifest_sync(f"t{i}", raw, mediatype.OCI_MANIFEST)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=tag, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(store.tags()) == sorted(f"t{i}" for i in range(24))


def test_skopeo_reads_what_we_write(tmp_path: Path) -> None:
    skopeo = require("skopeo")
    store = LayoutStore(tmp_path / "l", create=True)
    raw, mdesc = _image(store, b"layer for skopeo", arch="s390x")
    _run(store.put_manifest("r", "v1", raw, mediatype.OCI_MANIFEST))
    got = run([skopeo, "inspect", "--raw", f"oci:{store.path}:v1"]).stdout
    assert got.encode() == raw
    info = json.loads(run([skopeo, "inspect", f"oci:{store.path}:v1"]).stdout)
    assert info["Architecture"] == "s390x"
    copy = tmp_path / "copy"
    run([skopeo, "copy", "--preserve-digests", f"oci:{store.path}:v1", f"oci:{copy}:again"])
    assert LayoutStore(copy).tags()["again"].digest == mdesc.digest
