"""assemble's preflight asks about exactly the arch tags its push moves (the children's)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from manifesto.jobs import split
from manifesto.jobs.publish import plan as make_plan
from manifesto.lists import push as lists_push
from manifesto.lists.entry import Entry
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.oci.platform import Platform
from manifesto.oci.reference import Reference


class Stop(Exception):
    pass


def test_preflight_covers_the_arch_tags_the_children_carry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    spec = tmp_path / "platforms.yaml"
    spec.write_text(
        'image: localhost:5000/hello\ntags: ["1.0"]\narch_tag: "{registry}/{arch_ns}/hello:{tag}"\n'
        "platforms: [linux/amd64]\n"
    )
    plan = make_plan(spec)
    # children whose arch tags are not the plan's (a caller that skipped plan_children)
    other = Reference.parse("localhost:5000/elsewhere/hello:1.0")
    digest = Digest.of(b"child")
    child = Entry(None, Descriptor("application/vnd.oci.image.manifest.v1+json", digest, 5, Platform.parse("linux/amd64")),
                  arch_refs=(other,))
    asked: list[list[Reference]] = []

    async def preflight(registries, target, tags, arch_refs=(), **kw):
        asked.append(list(arch_refs))
        raise Stop

    monkeypatch.setattr(lists_push, "preflight", preflight)
    with pytest.raises(Stop):
        asyncio.run(split.push_children(None, plan, [child]))  # type: ignore[arg-type]
    assert asked == [[other]]
    # and through plan_children the children carry the plan's arch tags: the same set again
    asked.clear()
    with pytest.raises(Stop):
        asyncio.run(split.push_children(None, plan, split.plan_children(plan, [child])))  # type: ignore[arg-type]
    assert asked == [list(plan.build_steps[0].arch_refs)]
