"""manifesto.publish as a library call: a 3-platform matrix into an `oci:DIR` layout, with a fake Builder.

What the engine promises, checked without any builder tool: every platform is built with its
TARGET* args, the layout's tags name one index listing the children in matrix order, each
child's config says its platform, a republish moves nothing, and a failing build moves no tag
(children pushed by digest meanwhile stay untagged: tests/jobs/test_push_while_building.py;
with one job and the first build failing, nothing at all in a registry target) and starts no
queued build.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import manifesto
from manifesto.oci import mediatype
from manifesto.oci.config import ImageConfig
from manifesto.oci.manifest import ImageIndex, ImageManifest
from manifesto.oci.platform import Platform
from tests.jobs.conftest import THREE, FakeBuilder, write_matrix
from tests.publish.conftest import AccessLog, stored_writes, tags_of
from tests.support import Registry


def _layout_index(layout: Path, tag: str) -> tuple[ImageIndex, manifesto.LayoutStore]:
    store = manifesto.LayoutStore(layout)
    fetched = store.manifest(tag)
    return ImageIndex.parse(fetched.raw, fetched.media_type, f"{layout}:{tag}"), store


def test_publish_a_three_platform_matrix_into_a_layout(tmp_home, tmp_path: Path) -> None:
    out = tmp_path / "out"
    plan = manifesto.plan(write_matrix(tmp_path, f"oci:{out}"))
    builder = FakeBuilder()
    lines: list[str] = []

    result = manifesto.publish(plan, manifesto.Options(builder=builder, on_line=lines.append))

    assert sorted(builder.built) == sorted(THREE)
    args = {str(r.platform): r.args for r in builder.requests}
    assert args["linux/arm64/v8"]["TARGETARCH"] == "arm64" and args["linux/arm64/v8"]["TARGETVARIANT"] == "v8"
    assert args["linux/amd64"]["TARGETPLATFORM"] == "linux/amd64"
    assert sorted(lines) == sorted(f"[{p}] fake build of {p}" for p in THREE)  # each line prefixed

    assert result.index is not None and result.target == f"oci:{out}"
    assert result.tags_moved == ("1.0", "latest") and result.tags_unchanged == ()
    assert result.index.media_type == mediatype.OCI_INDEX
    assert [str(c.platform) for c in result.children] == list(THREE)  # matrix order

    for tag in ("1.0", "latest"):
        index, store = _layout_index(out, tag)
        assert index.digest == result.index.digest
    assert [str(d.platform) for d in index.manifests] == list(THREE)
    for d in index.manifests:
        child = store.manifest(str(d.digest))
        manifest = ImageManifest.parse(child.raw, child.media_type, str(d.digest))
        config = ImageConfig.parse(store.read_bytes(manifest.config.digest), "config")
        assert config.platform is not None and config.platform.same_as(d.platform)
        for layer in manifest.layers:
            assert store.read_bytes(layer.digest)  # every blob is in the layout

    report = result.report()
    assert report["index"]["digest"] == str(result.index.digest)
    assert [p["platform"] for p in report["platforms"]] == list(THREE)
    assert {p["source"] for p in report["platforms"]} == {"built"}


def test_republishing_the_same_images_moves_no_tag(tmp_home, tmp_path: Path) -> None:
    out = tmp_path / "out"
    plan = manifesto.plan(write_matrix(tmp_path, f"oci:{out}"))
    first = manifesto.publish(plan, manifesto.Options(builder=FakeBuilder()))
    again = manifesto.publish(plan, manifesto.Options(builder=FakeBuilder()))
    assert again.index is not None and first.index is not None
    assert again.index.digest == first.index.digest
    assert again.tags_moved == () and again.tags_unchanged == ("1.0", "latest")


def test_plan_overrides_like_the_command_line(tmp_home, tmp_path: Path) -> None:
    path = write_matrix(tmp_path, "localhost:5000/team/app")
    plan = manifesto.plan(path, image=manifesto.Reference.parse("127.0.0.1:5000/other/app"), tags=["2.0"],
                          platforms=["linux/arm64"], builder="native")  # fmt: skip
    assert str(plan.target) == "127.0.0.1:5000/other/app"
    assert plan.tags == ("2.0",)
    assert [str(s.platform) for s in plan.steps] == ["linux/arm64/v8"] and plan.filtered
    assert plan.builders == ("native",)
    assert manifesto.plan(path, image=f"oci:{tmp_path / 'out'}").target.layout == tmp_path / "out"
    with pytest.raises(manifesto.UsageError, match="needs a directory"):
        manifesto.plan(path, image="oci:")
    with pytest.raises(manifesto.UsageError, match="must not carry a tag"):
        manifesto.plan(path, image="localhost:5000/team/app:1.0")
    with pytest.raises(manifesto.UsageError):
        manifesto.plan(path, tags=["bad tag"])
    with pytest.raises(manifesto.UsageError, match="linux/s390x"):
        manifesto.plan(path, platforms=[Platform.parse("linux/s390x")])
    with pytest.raises(manifesto.SpecError):
        manifesto.plan(tmp_path / "missing.yaml")


def test_a_failing_build_moves_no_tag_of_the_layout(tmp_home, tmp_path: Path) -> None:
    out = tmp_path / "out"
    plan = manifesto.plan(write_matrix(tmp_path, f"oci:{out}"))
    manifesto.publish(plan, manifesto.Options(builder=FakeBuilder()))
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    failing = FakeBuilder(fail=("linux/arm64/v8",), content=b"another build")
    with pytest.raises(manifesto.BuildError) as e:
        manifesto.publish(plan, manifesto.Options(builder=failing))

    assert "linux/arm64/v8: build failed" in str(e.value) and e.value.log_tail == "step 1/1: boom"
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after[Path("index.json")] == before[Path("index.json")]  # not a tag moved
    # only blobs may have been added: children pushed by digest while arm64 built
    assert all(p.parent == Path("blobs/sha256") for p in set(after) - set(before))


def test_a_failing_build_writes_nothing_to_a_registry_and_starts_no_queued_build(
    tmp_home, registry: Registry, unique_repo: str, tmp_path: Path
) -> None:
    plan = manifesto.plan(write_matrix(tmp_path, registry.ref(unique_repo)))
    failing = FakeBuilder(fail=(THREE[0],))
    log = AccessLog(registry)
    mark = log.mark()

    with pytest.raises(manifesto.BuildError) as e:
        manifesto.publish(plan, manifesto.Options(builder=failing, jobs=1))

    assert failing.built == [THREE[0]]  # one at a time: the two queued ones never started
    assert "2 queued build(s) not started" in str(e.value)
    assert stored_writes(log.since(mark)) == []  # the preflight's probe stores nothing
    assert tags_of(registry, unique_repo) is None


def test_a_layout_publish_needs_no_registry_and_reads_no_credentials(tmp_home, tmp_path: Path) -> None:
    # a docker config that would fail any credential lookup: a layout target must not need it
    (tmp_home.docker_config / "config.json").write_text(json.dumps({"credsStore": "does-not-exist"}))
    out = tmp_path / "out"
    result = manifesto.publish(manifesto.plan(write_matrix(tmp_path, f"oci:{out}")), manifesto.Options(builder=FakeBuilder()))
    assert result.index is not None and set(manifesto.LayoutStore(out).tags()) == {"1.0", "latest"}
