"""A split publish, as CI runs it: one runner per platform, then one `assemble`.

Two separate processes with separate state (own HOME/XDG_* dirs, so own buildah storage and
no shared drafts) each run `publish --platform P --push-by-digest --digest-file out/P.json`
at the same time; nothing is tagged until `manifesto assemble` pushes the index from the
digest files. Bad digest files (one platform missing, a digest the repository lacks, not a
digest file at all) are refused before anything is written to the registry.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.publish.conftest import (
    DIGEST_LINE,
    AccessLog,
    State,
    head_status,
    index_platforms,
    one_error_line,
    sha256,
    slug,
    spec_file,
    stored_writes,
    tags_of,
)
from tests.support import ArchImage, Registry, inspect_raw, push_image
from tests.support.tools import CliResult

pytestmark = pytest.mark.slow

PLATFORMS = ("linux/amd64", "linux/arm64/v8")
REPO = "split/hello"
TAGS = ("2.0", "latest")


@dataclasses.dataclass(frozen=True)
class Split:
    registry: Registry
    project: Path  # holds platforms.yaml and out/
    spec: Path
    states: dict[str, State]
    results: dict[str, CliResult]
    tags_after: list[str] | None  # the repository's tags right after both runners finished
    runner_requests: list  # what the two runners did to the registry

    def digest_file(self, platform: str) -> Path:
        return self.project / "out" / f"{slug(platform)}.json"

    def child(self, platform: str) -> dict:
        [entry] = json.loads(self.digest_file(platform).read_text())["platforms"]
        return entry

    def assemble(self, *files: str | Path, tag: str | None = None) -> CliResult:
        """`manifesto assemble -f platforms.yaml FILES...` from yet another machine's state."""
        state = State.make(self.project.parent / "assembler")
        extra = ["--tag", tag] if tag else []
        return state.run("assemble", "-f", self.spec, *extra, *map(str, files), cwd=self.project)


@pytest.fixture(scope="module")
def split(hello: Path, registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Split:
    root = tmp_path_factory.mktemp("split")
    project = root / "project"
    spec = spec_file(
        project,
        f"""\
        image: {registry.ref(REPO)}
        tags: ["2.0", "latest"]
        build:
          context: {hello}
        platforms: [linux/amd64, linux/arm64/v8]
        """,
    )
    states = {p: State.make(root / "runners" / slug(p)) for p in PLATFORMS}
    log = AccessLog(registry)
    mark = log.mark()

    def runner(platform: str) -> CliResult:
        return states[platform].run(
            "publish", "-f", spec, "--platform", platform,
            "--push-by-digest", "--digest-file", f"out/{slug(platform)}.json",
            cwd=project,
        )  # fmt: skip

    with ThreadPoolExecutor(max_workers=len(PLATFORMS)) as pool:  # two runners at once
        results = dict(zip(PLATFORMS, pool.map(runner, PLATFORMS)))
    for platform, (rc, _, err) in results.items():
        assert rc == 0, f"{platform} runner failed (exit {rc}):\n{err[-3000:]}"
    return Split(registry, project, spec, states, results, tags_of(registry, REPO), log.since(mark))


def assert_nothing_written(requests: list) -> None:
    writes = stored_writes(requests)  # the push-access probe stores nothing
    assert writes == [], writes


# ---- the runners ---------------------------------------------------------------------------------


def test_each_runner_pushes_only_its_platform_by_digest(split: Split) -> None:
    for platform in PLATFORMS:
        entry = split.child(platform)
        assert entry["platform"] == platform
        assert DIGEST_LINE.match(entry["digest"])
        assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert head_status(split.registry, REPO, "manifests", entry["digest"]) == 200
        data = json.loads(split.digest_file(platform).read_text())
        assert "index" not in data  # no index was made
        other = next(p for p in PLATFORMS if p != platform)
        assert f"[{other}]" not in split.results[platform].stderr  # built only its own platform
        # its own buildah storage, in its own XDG_CACHE_HOME
        assert (split.states[platform].cache / "manifesto" / "buildah").is_dir()


def test_nothing_is_tagged_before_assemble(split: Split) -> None:
    assert split.tags_after in (None, [])
    assert [r for r in split.runner_requests if r.is_tag_put] == []
    puts = [r for r in split.runner_requests if r.is_manifest_put]
    assert sorted(r.manifest_ref() for r in puts) == sorted(split.child(p)["digest"] for p in PLATFORMS)


# ---- refusals (before anything is written) ----------------------------------------------------------


def test_a_digest_file_set_missing_a_platform_is_refused(split: Split) -> None:
    log = AccessLog(split.registry)
    mark = log.mark()
    rc, out, err = split.assemble(split.digest_file("linux/amd64"), tag="missing-one")
    assert rc == 2
    line = one_error_line(err)
    assert "linux/arm64/v8" in line and "index not pushed" in line
    assert out == ""
    assert_nothing_written(log.since(mark))
    assert "missing-one" not in (tags_of(split.registry, REPO) or [])


def test_a_digest_the_repository_lacks_is_refused(split: Split, tmp_path: Path) -> None:
    data = json.loads(split.digest_file("linux/arm64/v8").read_text())
    ghost = sha256(b"an image nobody pushed")
    data["platforms"][0]["digest"] = ghost
    bad = tmp_path / "arm64.json"
    bad.write_text(json.dumps(data))
    log = AccessLog(split.registry)
    mark = log.mark()
    rc, _, err = split.assemble(split.digest_file("linux/amd64"), bad, tag="ghost")
    assert rc == 1
    line = one_error_line(err)
    assert ghost in line and "linux/arm64/v8" in line and "index not pushed" in line
    assert_nothing_written(log.since(mark))
    assert "ghost" not in (tags_of(split.registry, REPO) or [])


@pytest.mark.parametrize(
    "content",
    [
        pytest.param('{"platforms": [', id="truncated-json"),
        pytest.param("", id="empty"),
        pytest.param("[]", id="not-an-object"),
        pytest.param('{"target": "x"}', id="no-platforms"),
        pytest.param('{"platforms": [{"platform": "linux/arm64/v8"}]}', id="entry-without-digest"),
        pytest.param('{"platforms": [{"platform": "linux/arm64/v8", "digest": "sha256:abc", "size": 1, '
                     '"mediaType": "x"}]}', id="bad-digest"),
        pytest.param("\x00\xff binary", id="binary"),
    ],
)
def test_a_corrupt_digest_file_is_a_one_line_error(split: Split, tmp_path: Path, content: str) -> None:
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_bytes(content.encode("latin-1"))
    log = AccessLog(split.registry)
    mark = log.mark()
    rc, out, err = split.assemble(split.digest_file("linux/amd64"), corrupt, tag="corrupt")
    assert rc == 2, err
    line = one_error_line(err)
    assert "corrupt.json" in line
    assert out == ""
    assert_nothing_written(log.since(mark))


def test_a_missing_digest_file_is_a_one_line_error(split: Split) -> None:
    rc, _, err = split.assemble(split.digest_file("linux/amd64"), "out/nowhere.json", tag="nowhere")
    assert rc == 2
    assert "out/nowhere.json" in one_error_line(err)


# ---- assemble -------------------------------------------------------------------------------------------


def test_assemble_pushes_the_index_of_both_platforms(split: Split, tmp_path: Path) -> None:
    # the digest files travel to the assembling machine (CI artifacts): copy them elsewhere
    moved = tmp_path / "digests"
    moved.mkdir()
    for platform in PLATFORMS:
        shutil.copy(split.digest_file(platform), moved / split.digest_file(platform).name)
    log = AccessLog(split.registry)
    mark = log.mark()
    rc, out, err = split.assemble(*sorted(moved.glob("*.json")))
    assert rc == 0, err[-3000:]
    digest = out.strip().splitlines()[-1]
    assert DIGEST_LINE.match(digest)
    for tag in TAGS:
        raw = inspect_raw(split.registry.ref(REPO, tag))
        assert sha256(raw) == digest
    assert index_platforms(raw) == {p: split.child(p)["digest"] for p in PLATFORMS}
    assert sorted(tags_of(split.registry, REPO) or []) == sorted(TAGS)
    requests = log.since(mark)
    # the children were already there: assemble only PUTs the index under its tags
    assert sorted(r.manifest_ref() for r in requests if r.is_manifest_put) == sorted(TAGS)
    assert [r for r in stored_writes(requests) if r.method in ("POST", "PATCH")] == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("size", 999), ("mediaType", "application/vnd.docker.distribution.manifest.v2+json")],
)
def test_an_edited_digest_file_is_refused(split: Split, tmp_path: Path, field: str, value: object) -> None:
    """The index's descriptors come from what the registry serves; a digest file that says
    otherwise (a wrong size, a wrong media type) is refused, not copied into the index."""
    data = json.loads(split.digest_file("linux/arm64/v8").read_text())
    data["platforms"][0][field] = value
    edited = tmp_path / "arm64.json"
    edited.write_text(json.dumps(data))
    log = AccessLog(split.registry)
    mark = log.mark()
    rc, out, err = split.assemble(split.digest_file("linux/amd64"), edited, tag="edited")
    assert rc == 1, err
    line = one_error_line(err)
    assert str(edited) in line and str(value) in line and "index not pushed" in line
    assert out == ""
    assert_nothing_written(log.since(mark))
    assert "edited" not in (tags_of(split.registry, REPO) or [])


# Last in this module: it adds the tag `reversed` to the repository the tests above count.
def test_split_and_single_publish_give_the_same_index(split: Split, tmp_path: Path) -> None:
    """Digest files in any order give the children in matrix order: the index of a split
    publish is byte for byte the one a single runner publishes from the same matrix."""
    rc, out, err = split.assemble(*(split.digest_file(p) for p in reversed(PLATFORMS)), tag="reversed")
    assert rc == 0, err[-3000:]
    split_digest = out.strip().splitlines()[-1]
    raw = inspect_raw(split.registry.ref(REPO, "reversed"))
    assert list(index_platforms(raw)) == list(PLATFORMS)
    single = State.make(tmp_path / "single-runner")
    rc, out, err = single.run("publish", "-f", split.spec, "--image", split.registry.ref("split/single"), cwd=split.project)
    assert rc == 0, err[-3000:]
    assert out.strip().splitlines()[-1] == split_digest


# ---- image: entries in a split publish ----------------------------------------------------------------


def test_image_entries_are_left_to_assemble(
    hello: Path, registry: Registry, arch_images: dict[str, ArchImage], tmp_path: Path
) -> None:
    """A runner's digest file holds only what it built; `assemble` copies the `image:` entries
    itself and puts everything in matrix order."""
    arm64 = push_image(arch_images["arm64"], "split-mixed-src/arm64:1", registry)
    repo = "split/mixed"
    spec = spec_file(
        tmp_path,
        f"""\
        image: {registry.ref(repo)}
        tags: ["1"]
        build:
          context: {hello}
        platforms:
          - image: {arm64}
            platform: linux/arm64/v8
          - linux/amd64
        """,
    )
    runner = State.make(tmp_path / "runner")
    rc, out, err = runner.run("publish", "-f", spec, "--push-by-digest", "--digest-file", "out/all.json", cwd=tmp_path)
    assert rc == 0, err[-3000:]
    assert out == ""  # push-by-digest prints no digest; the digest file has them
    assert "left to `manifesto assemble`" in err
    data = json.loads((tmp_path / "out" / "all.json").read_text())
    assert [p["platform"] for p in data["platforms"]] == ["linux/amd64"]
    assert tags_of(registry, repo) in (None, [])

    assembler = State.make(tmp_path / "assembler")
    rc, out, err = assembler.run("assemble", "-f", spec, "out/all.json", cwd=tmp_path)
    assert rc == 0, err[-3000:]
    raw = inspect_raw(registry.ref(repo, "1"))
    assert sha256(raw) == out.strip().splitlines()[-1]
    children = index_platforms(raw)
    assert list(children) == ["linux/arm64/v8", "linux/amd64"]  # matrix order
    assert children["linux/amd64"] == data["platforms"][0]["digest"]
    assert children["linux/arm64/v8"] == arch_images["arm64"].manifest_digest

    # a digest file that names the image: entry (as older versions wrote them) says why not
    stale = tmp_path / "out" / "stale.json"
    stale.write_text(json.dumps({"platforms": data["platforms"] + [
        {"platform": "linux/arm64/v8", "digest": arch_images["arm64"].manifest_digest,
         "size": len(arch_images["arm64"].manifest_bytes), "mediaType": "application/vnd.oci.image.manifest.v1+json"},
    ]}))  # fmt: skip
    rc, out, err = assembler.run("assemble", "-f", spec, "--tag", "stale", stale, cwd=tmp_path)
    assert rc == 2, err
    line = one_error_line(err)
    assert "linux/arm64/v8" in line and "image: entry" in line and str(stale) in line
