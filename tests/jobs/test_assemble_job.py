"""manifesto.assemble as a library call: the split publish's second half, from digest files.

Each "runner" publishes one platform by digest (publish(..., push_index_too=False)) and writes
its report as a digest file; assemble() then verifies every child from the target and pushes the
index. The same matrix published in one go gives the same index bytes, whatever order the
files come in; a file that leaves a platform out, or claims a size the registry contradicts,
moves no tag.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import manifesto
from manifesto.jobs.publish import write_json
from manifesto.oci import mediatype
from tests.jobs.conftest import THREE, FakeBuilder, write_matrix
from tests.publish.conftest import AccessLog, index_platforms, manifest_raw, stored_writes, tags_of
from tests.support import Registry


def _runners(path: Path, tmp_path: Path, platforms: tuple[str, ...] = THREE) -> list[Path]:
    """One push-by-digest publish per platform, each writing its digest file."""
    files = []
    for p in platforms:
        result = manifesto.publish(manifesto.plan(path, platforms=[p]), manifesto.Options(builder=FakeBuilder()), push_index_too=False)
        assert result.index is None and [str(c.platform) for c in result.children] == [p]
        files.append(tmp_path / f"digest-{p.replace('/', '-')}.json")
        write_json(files[-1], result.report())
    return files


def test_assemble_from_digest_files_gives_the_single_publish_index(
    tmp_home, registry: Registry, unique_repo: str, tmp_path: Path
) -> None:
    split = write_matrix(tmp_path / "split", registry.ref(unique_repo))
    files = _runners(split, tmp_path)
    assert tags_of(registry, unique_repo) is None  # by digest: no tag yet

    result = manifesto.assemble(manifesto.plan(split), list(reversed(files)))

    assert result.index is not None and result.tags_moved == ("1.0", "latest")
    assert [str(c.platform) for c in result.children] == list(THREE)  # matrix order, not file order
    raw, media_type = manifest_raw(registry, unique_repo, "1.0")
    assert media_type == mediatype.OCI_INDEX
    assert manifesto.Digest.of(raw) == result.index.digest
    assert list(index_platforms(raw)) == list(THREE)

    single_repo = unique_repo + "-single"
    single = manifesto.publish(
        manifesto.plan(write_matrix(tmp_path / "single", registry.ref(single_repo))), manifesto.Options(builder=FakeBuilder())
    )
    assert single.index is not None and single.index.digest == result.index.digest


def test_assemble_refuses_a_missing_platform_and_moves_nothing(
    tmp_home, registry: Registry, unique_repo: str, tmp_path: Path
) -> None:
    path = write_matrix(tmp_path, registry.ref(unique_repo))
    files = _runners(path, tmp_path, THREE[:2])
    log = AccessLog(registry)
    mark = log.mark()
    with pytest.raises(manifesto.UsageError, match=r"no digest file covers linux/arm/v7; index not pushed"):
        manifesto.assemble(manifesto.plan(path), files)
    assert log.since(mark) == []  # refused before anything was sent
    assert tags_of(registry, unique_repo) is None


def test_assemble_refuses_a_claim_the_registry_contradicts(
    tmp_home, registry: Registry, unique_repo: str, tmp_path: Path
) -> None:
    path = write_matrix(tmp_path, registry.ref(unique_repo))
    files = _runners(path, tmp_path)
    data = json.loads(files[1].read_text())
    data["platforms"][0]["size"] += 1
    files[1].write_text(json.dumps(data))
    log = AccessLog(registry)
    mark = log.mark()
    with pytest.raises(manifesto.VerificationError, match=r"not .* bytes as the file says; index not pushed"):
        manifesto.assemble(manifesto.plan(path), files)
    assert [r for r in stored_writes(log.since(mark)) if r.is_manifest_put] == []
    assert tags_of(registry, unique_repo) is None
