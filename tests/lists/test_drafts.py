"""Local drafts: round trips, corruption and tampering caught, atomic writes, and a lock that works."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
from pathlib import Path

import pytest

from manifesto.errors import ContentError, DigestMismatch, NotFound, UsageError
from manifesto.oci import mediatype
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.platform import Platform
from manifesto.lists.entry import Entry
from manifesto.oci.reference import Reference
from manifesto.lists.drafts import (
    Draft,
    DraftStore,
    default_root,
    find_entry,
)

LIST = Reference.parse("localhost:5000/team/app:1.0")


def entry(n: int, source: str | None = None, platform: str = "linux/amd64") -> Entry:
    raw = json.dumps({"schemaVersion": 2, "mediaType": mediatype.OCI_MANIFEST, "n": n}).encode()
    digest = Digest.of(raw)
    return Entry(
        source=Reference.parse(source or f"localhost:5000/src/img{n}:v{n}"),
        descriptor=Descriptor(
            mediatype.OCI_MANIFEST,
            digest,
            len(raw),
            Platform.parse(platform),
            {"org.example.n": str(n)},
            {"artifactType": "application/x-example"},
        ),
        raw=raw,
        config_platform=Platform.parse(platform),
    )


def test_save_load_round_trip(tmp_path: Path) -> None:
    store = DraftStore(tmp_path)
    draft = Draft(LIST, (entry(1), entry(2, platform="linux/arm64/v8")), "oci", {"org.opencontainers.image.title": "x"}, True)
    store.save(draft)
    assert store.exists(LIST)
    loaded = store.load(LIST)
    assert loaded == draft
    assert loaded.entries[1].raw == entry(2).raw  # exact bytes back
    assert str(loaded.entries[1].descriptor.platform) == "linux/arm64/v8"
    assert loaded.entries[0].descriptor.extra == {"artifactType": "application/x-example"}


def test_defaults_round_trip(tmp_path: Path) -> None:
    store = DraftStore(tmp_path)
    store.save(Draft(LIST))
    loaded = store.load(LIST)
    assert (loaded.entries, loaded.format, loaded.annotations, loaded.insecure) == ((), None, {}, False)


def test_names_lists_every_saved_draft_sorted(tmp_path: Path) -> None:
    store = DraftStore(tmp_path)
    names = [Reference.parse(n) for n in ("example.com/b:2", "localhost:5000/a:1", "golang:alpine", "[::1]:5000/x:y")]
    for name in names:
        store.save(Draft(name))
    assert store.names() == sorted(names, key=str)
    assert DraftStore(tmp_path / "absent").names() == []


def test_delete(tmp_path: Path) -> None:
    store = DraftStore(tmp_path)
    store.save(Draft(LIST))
    with store.locked(LIST):
        pass
    store.delete(LIST)
    assert not store.exists(LIST)
    assert store.names() == []
    assert list(tmp_path.iterdir()) == [], "the lock file outlived its draft"
    with pytest.raises(NotFound):
        store.delete(LIST)
    assert list(tmp_path.iterdir()) == []


def test_a_lock_taken_on_a_missing_list_leaves_no_lock_file(tmp_path: Path) -> None:
    store = DraftStore(tmp_path)
    with pytest.raises(NotFound), store.locked(LIST):  # what annotate does on a missing list
        store.load(LIST)
    assert list(tmp_path.iterdir()) == []
    with store.locked(LIST):  # a list created under the lock keeps its lock file
        store.save(Draft(LIST))
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".lock"]


def test_load_missing_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no local manifest list"):
        DraftStore(tmp_path).load(LIST)


def _file(store: DraftStore) -> Path:
    (path,) = [p for p in store.root.iterdir() if p.suffix == ".json"]
    return path


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b'{"version": 1, "name": "localhost:5000/team/app:1.0", "entries": [',  # torn write
        b"\x00\x01\x02",
        b"[]",
        b"null",
        b'{"version": 1}',
        b'{"version": 1, "name": "localhost:5000/team/app:1.0"}',
        b'{"version": 1, "name": "localhost:5000/team/app:1.0", "entries": [{}]}',
        b'{"version": 1, "name": "localhost:5000/team/app:1.0", "entries": 5}',
        b'{"version": 99, "name": "localhost:5000/team/app:1.0", "entries": []}',
    ],
)
def test_corrupted_file_is_a_content_error(tmp_path: Path, content: bytes) -> None:
    store = DraftStore(tmp_path)
    store.save(Draft(LIST))
    _file(store).write_bytes(content)
    with pytest.raises(ContentError):
        store.load(LIST)


def test_corrupted_entry_fields_are_a_content_error(tmp_path: Path) -> None:
    store = DraftStore(tmp_path)
    store.save(Draft(LIST, (entry(1),)))
    path = _file(store)
    for damage in (
        lambda e: e.update(manifest="!!! not base64 !!!"),
        lambda e: e["descriptor"].update(digest="sha256:nope"),
        lambda e: e.pop("descriptor"),
    ):
        doc = json.loads(json.dumps(Draft(LIST, (entry(1),)).to_json()))
        damage(doc["entries"][0])
        path.write_text(json.dumps(doc))
        with pytest.raises(ContentError):
            store.load(LIST)


def test_tampered_manifest_bytes_are_a_digest_mismatch(tmp_path: Path) -> None:
    store = DraftStore(tmp_path)
    store.save(Draft(LIST, (entry(1), entry(2))))
    path = _file(store)
    doc = json.loads(path.read_bytes())
    raw = base64.b64decode(doc["entries"][1]["manifest"])
    doc["entries"][1]["manifest"] = base64.b64encode(raw.replace(b'"n": 2', b'"n": 3')).decode()
    path.write_text(json.dumps(doc))
    with pytest.raises(DigestMismatch) as info:
        store.load(LIST)
    assert "src/img2" in str(info.value)


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = DraftStore(tmp_path)
    first = Draft(LIST, (entry(1),))
    store.save(first)
    for n in range(2, 6):
        store.save(first.with_entries([entry(i) for i in range(1, n)]))
    assert sorted(p.name for p in tmp_path.iterdir()) == [_file(store).name]

    # a write that fails half-way leaves the previous draft intact and no temp file behind
    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        store.save(Draft(LIST))
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == [_file(store).name]
    assert len(store.load(LIST).entries) == 4


def test_default_root_follows_xdg_data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_root() == tmp_path / "manifesto" / "lists"
    assert DraftStore().root == tmp_path / "manifesto" / "lists"


def _amend(root: str, worker: int, count: int) -> None:
    store = DraftStore(Path(root))
    for i in range(count):
        with store.locked(LIST):
            draft = store.load(LIST)
            store.save(draft.with_entries([*draft.entries, entry(worker * 1000 + i)]))


def test_two_processes_amending_one_draft_lose_nothing(tmp_path: Path) -> None:
    store = DraftStore(tmp_path)
    store.save(Draft(LIST))
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_amend, args=(str(tmp_path), w, 20)) for w in (1, 2)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(120)
        assert p.exitcode == 0
    entries = store.load(LIST).entries
    assert len(entries) == 40
    assert len({e.descriptor.digest for e in entries}) == 40
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def _churn(root: str, worker: int, count: int) -> None:
    """Create and delete the list under its lock; a marker made with O_EXCL proves exclusivity."""
    store = DraftStore(Path(root))
    marker = Path(root) / "inside"
    for _ in range(count):
        with store.locked(LIST):
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # fails if another holds it
            os.close(fd)
            store.save(Draft(LIST))
            store._path(LIST).unlink()  # gone again: the lock file is unlinked as the section ends
            marker.unlink()


def test_removing_the_lock_file_keeps_the_lock_exclusive(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_churn, args=(str(tmp_path), w, 150)) for w in range(3)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(120)
    assert [p.exitcode for p in workers] == [0, 0, 0], "two processes held the lock at once"
    assert list(tmp_path.iterdir()) == []


def test_find_entry_by_tag_and_by_digest() -> None:
    a = entry(1, "localhost:5000/src/img:v1")
    b = entry(2, "localhost:5000/src/img:v2")
    c = entry(3, f"localhost:5000/src/img@{entry(3).descriptor.digest}")
    d = entry(4, "localhost:5000/src/other")  # no tag: latest
    draft = Draft(LIST, (a, b, c, d))
    assert find_entry(draft, Reference.parse("localhost:5000/src/img:v2")) == 1
    assert find_entry(draft, Reference.parse("localhost:5000/src/img:v1")) == 0
    # by digest: whichever way it was added
    assert find_entry(draft, Reference.parse(f"localhost:5000/src/img@{b.descriptor.digest}")) == 1
    assert find_entry(draft, Reference.parse(f"localhost:5000/src/img@{c.descriptor.digest}")) == 2
    assert find_entry(draft, Reference.parse("localhost:5000/src/other:latest")) == 3
    assert find_entry(draft, Reference.parse("localhost:5000/src/other")) == 3


@pytest.mark.parametrize(
    "ref",
    [
        "localhost:5000/src/img:v3",  # tag not in the list
        "localhost:5000/src/img",  # latest was never added
        "localhost:5000/elsewhere/img:v1",  # another repository
        "example.com/src/img:v1",  # another registry
        f"localhost:5000/src/other@{Digest.of(b'x')}",  # digest not in the list
    ],
)
def test_find_entry_missing_is_a_usage_error(ref: str) -> None:
    draft = Draft(LIST, (entry(1, "localhost:5000/src/img:v1"), entry(4, "localhost:5000/src/other")))
    with pytest.raises(UsageError, match="is not in the list"):
        find_entry(draft, Reference.parse(ref))


def test_a_very_long_list_name_gets_a_hashed_file_name_and_still_lists(tmp_path):
    from manifesto.oci.reference import Reference
    from manifesto.lists.drafts import Draft, DraftStore

    store = DraftStore(tmp_path)
    name = Reference.parse("registry.example.com/" + "/".join(["component-name-x"] * 12) + ":tag")
    store.save(Draft(name))
    assert store.exists(name) and store.load(name).name == name
    assert store.names() == [name]
    assert all(len(p.name) < 255 for p in tmp_path.iterdir())
