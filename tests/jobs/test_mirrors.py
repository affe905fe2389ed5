"""An `image:` list: one publish to a registry and its mirrors (other registries, other repositories).

What the engine promises, with real registries and the fake Builder: every target ends with the
same index digest under every tag (and its arch tags), a mirror in the first target's registry
gets its blobs mounted and one in another registry gets each blob once; tags move last and in
one compare-and-swap, so a mirror that refuses a manifest PUT (a 500 that outlives the
retries), refuses the credentials, or whose tag another writer moved leaves every tag of every
target as it was, and the error names the children pushed untagged. `publish --check`
compares every target's tags; `assemble` fills the mirrors from the first target. The matrix
side (the list in platforms.yaml, --image repeated, the plan) is checked here too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest

import manifesto
from manifesto.jobs.check import check
from manifesto.jobs.publish import write_json
from manifesto.matrix.plan import render
from manifesto.oci import mediatype
from tests.jobs.conftest import THREE, FakeBuilder, write_matrix
from tests.publish.conftest import ACCEPT_ALL, AccessLog, stored_writes, tag_held
from tests.support import Registry
from tests.support.faultproxy import FaultProxy, Respond

ARCH_TAG = 'arch_tag: "{registry}/{arch_ns}/{name}:{tag}"\n'
NS = {"linux/amd64": "amd64", "linux/arm64/v8": "arm64v8", "linux/arm/v7": "arm32v7"}


def _matrix(directory: Path, *targets: str, extra: str = "", platforms: tuple[str, ...] = THREE) -> Path:
    return write_matrix(directory, "[" + ", ".join(targets) + "]", extra=extra, platforms=platforms)



def _has(host: str, repo: str, digest: str) -> bool:
    import httpx

    r = httpx.head(f"http://{host}/v2/{repo}/manifests/{digest}", headers={"Accept": ACCEPT_ALL}, timeout=30)
    return r.status_code == 200


def _other_writer(host: str, repo: str, tag: str) -> str:
    """Put an empty OCI index under a tag, as another run would; its digest."""
    import httpx

    raw = json.dumps({"schemaVersion": 2, "mediaType": mediatype.OCI_INDEX, "manifests": []}).encode()
    r = httpx.put(
        f"http://{host}/v2/{repo}/manifests/{tag}",
        content=raw,
        headers={"Content-Type": mediatype.OCI_INDEX},
        timeout=30,
    )
    r.raise_for_status()
    return r.headers["Docker-Content-Digest"]


@pytest.fixture
def second(registry_factory) -> Registry:
    """A second anonymous registry (the mirror in another registry)."""
    return registry_factory()


def test_one_publish_lands_the_same_index_and_tags_in_every_target(
    tmp_home, registry: Registry, second: Registry, unique_repo: str, tmp_path: Path
) -> None:
    targets = [registry.ref(unique_repo), second.ref(unique_repo), registry.ref(unique_repo + "-mirror")]
    plan = manifesto.plan(_matrix(tmp_path, *targets, extra=ARCH_TAG))
    first, other = AccessLog(registry), AccessLog(second)
    marks = first.mark(), other.mark()

    result = manifesto.publish(plan, manifesto.Options(builder=FakeBuilder()))

    assert result.index is not None and result.tags_moved == ("1.0", "latest")
    digest = str(result.index.digest)
    hosts = [(registry.host, unique_repo), (second.host, unique_repo), (registry.host, unique_repo + "-mirror")]
    for host, repo in hosts:
        assert tag_held(host, repo, "1.0") == tag_held(host, repo, "latest") == digest
    assert [(t.target, t.tags_moved, t.tags_unchanged) for t in result.targets] == [
        (t, ("1.0", "latest"), ()) for t in targets
    ]
    report = result.report()
    assert [t["target"] for t in report["targets"]] == targets
    # arch tags: one per platform, tag and target, each holding its child
    for child in result.children:
        ns = NS[str(child.platform)]
        for host, repo in hosts:
            assert tag_held(host, f"{ns}/{repo.rsplit('/', 1)[-1]}", "1.0") == str(child.digest)
    # the mirror in the first registry got its blobs mounted; the other registry each blob once
    posts = [r for r in stored_writes(first.since(marks[0])) if r.method == "POST" and f"/{unique_repo}-mirror/blobs/" in r.path]
    assert posts and all("mount=" in r.query and f"from={quote(unique_repo, safe='')}" in r.query for r in posts)
    assert all(r.status == 201 for r in posts)  # mounted, not uploaded
    uploads = [
        re.search(r"digest=([^&]+)", r.query).group(1)  # type: ignore[union-attr]
        for r in other.since(marks[1])
        if r.method == "PUT" and f"/v2/{unique_repo}/blobs/uploads/" in r.path
    ]
    assert uploads and len(uploads) == len(set(uploads))

    marks = first.mark(), other.mark()
    again = manifesto.publish(plan, manifesto.Options(builder=FakeBuilder()))
    assert again.tags_moved == () and again.tags_unchanged == ("1.0", "latest")
    assert stored_writes(first.since(marks[0])) == stored_writes(other.since(marks[1])) == []  # a republish writes nothing


@pytest.mark.parametrize("skip", [0, 3], ids=["children-refused", "index-refused"])
def test_a_mirror_refusing_manifests_moves_no_tag_in_any_target(
    tmp_home, registry: Registry, second: Registry, unique_repo: str, tmp_path: Path, skip: int
) -> None:
    with FaultProxy(second.host) as proxy:
        plan = manifesto.plan(_matrix(tmp_path, registry.ref(unique_repo), proxy.ref(unique_repo)))
        old = manifesto.publish(plan, manifesto.Options(builder=FakeBuilder(content=b"old")))
        assert old.index is not None
        # 500 on every manifest PUT to the mirror (after the three children's, with skip=3: the
        # index's by digest): retried (at once: Retry-After 0), then refused
        proxy.add(Respond(500, headers={"Retry-After": "0"}), method="PUT", path=r"/manifests/", skip=skip)

        with pytest.raises(manifesto.ManifestoError) as info:
            manifesto.publish(plan, manifesto.Options(builder=FakeBuilder(content=b"new")))

    message = str(info.value)
    assert "pushed by digest, untagged:" in message and "no tag moved" in message
    new_children = re.findall(r"(linux/[a-z0-9/]+) (sha256:[0-9a-f]{64})", message)
    assert sorted(p for p, _ in new_children) == sorted(THREE)
    for _, digest in new_children:
        assert digest not in {str(c.digest) for c in old.children}
        assert _has(registry.host, unique_repo, digest)  # in the first target, untagged
    for host in (registry.host, second.host):  # every tag still holds the old index
        assert tag_held(host, unique_repo, "1.0") == tag_held(host, unique_repo, "latest") == str(old.index.digest)


def test_a_mirror_that_refuses_the_credentials_stops_the_run_before_any_build(
    tmp_home, registry: Registry, registry_factory, unique_repo: str, tmp_path: Path
) -> None:
    import base64

    guarded = registry_factory("htpasswd")
    auth = base64.b64encode(b"alice:wrong").decode()
    (tmp_home.docker_config / "config.json").write_text(json.dumps({"auths": {guarded.host: {"auth": auth}}}))
    plan = manifesto.plan(_matrix(tmp_path, registry.ref(unique_repo), guarded.ref(unique_repo)))
    log = AccessLog(registry)
    mark = log.mark()
    builder = FakeBuilder()

    with pytest.raises(manifesto.AuthError):
        manifesto.publish(plan, manifesto.Options(builder=builder))

    assert builder.built == []
    # nothing stored in the first target (the push probes there may be cut short: sessions only)
    assert [r for r in log.since(mark) if r.method in ("PUT", "PATCH")] == []
    assert tag_held(registry.host, unique_repo, "1.0") is None


class _RacingBuilder(FakeBuilder):
    """A FakeBuilder during whose first build another writer moves a tag of the mirror."""

    def __init__(self, host: str, repo: str):
        super().__init__()
        self.host, self.repo, self.theirs = host, repo, ""

    def build(self, request, on_line):
        if not self.theirs:
            self.theirs = _other_writer(self.host, self.repo, "latest")
        return super().build(request, on_line)


def test_a_mirror_tag_moved_meanwhile_moves_no_tag_in_the_first_target(
    tmp_home, registry: Registry, second: Registry, unique_repo: str, tmp_path: Path
) -> None:
    plan = manifesto.plan(_matrix(tmp_path, registry.ref(unique_repo), second.ref(unique_repo)))
    builder = _RacingBuilder(second.host, unique_repo)

    with pytest.raises(manifesto.ConcurrentUpdate, match="no tag moved"):
        manifesto.publish(plan, manifesto.Options(builder=builder, jobs=1))

    assert tag_held(registry.host, unique_repo, "1.0") is None and tag_held(registry.host, unique_repo, "latest") is None
    assert tag_held(second.host, unique_repo, "1.0") is None
    assert tag_held(second.host, unique_repo, "latest") == builder.theirs  # theirs, not overwritten


def test_check_compares_the_tags_of_every_target(
    tmp_home, registry: Registry, second: Registry, unique_repo: str, tmp_path: Path
) -> None:
    first = manifesto.publish(
        manifesto.plan(write_matrix(tmp_path / "one", registry.ref(unique_repo))), manifesto.Options(builder=FakeBuilder())
    )
    assert first.index is not None
    plan = manifesto.plan(_matrix(tmp_path / "two", registry.ref(unique_repo), second.ref(unique_repo)))

    result = check(plan, manifesto.Options(builder=FakeBuilder()))

    assert result.index.digest == first.index.digest
    states = {t.name: (t.now, t.wanted) for t in result.tags}
    assert list(states) == [f"{r}:{t}" for r in (registry.ref(unique_repo), second.ref(unique_repo)) for t in ("1.0", "latest")]
    assert states[registry.ref(unique_repo, "1.0")] == (first.index.digest, first.index.digest)
    assert states[second.ref(unique_repo, "1.0")] == (None, first.index.digest)
    assert result.would_change


def test_assemble_fills_every_mirror_from_the_first_target(
    tmp_home, registry: Registry, second: Registry, unique_repo: str, tmp_path: Path
) -> None:
    path = _matrix(tmp_path, registry.ref(unique_repo), second.ref(unique_repo))
    files = []
    for p in THREE:  # each runner pushes its platform by digest, to the first target only
        done = manifesto.publish(manifesto.plan(path, platforms=[p]), manifesto.Options(builder=FakeBuilder()), push_index_too=False)
        files.append(tmp_path / f"digest-{p.replace('/', '-')}.json")
        write_json(files[-1], done.report())
        assert not _has(second.host, unique_repo, str(done.children[0].digest))

    result = manifesto.assemble(manifesto.plan(path), files)

    assert result.index is not None and [t.target for t in result.targets] == [registry.ref(unique_repo), second.ref(unique_repo)]
    for host in (registry.host, second.host):
        assert tag_held(host, unique_repo, "1.0") == tag_held(host, unique_repo, "latest") == str(result.index.digest)


# ---- the matrix side ------------------------------------------------------------------------------


def test_the_image_list_gives_every_target_its_arch_tags_and_the_plan_shows_them(tmp_path: Path) -> None:
    plan = manifesto.plan(_matrix(tmp_path, "localhost:5000/hello", "mirror.example/team/hello", extra=ARCH_TAG))
    assert [str(t) for t in plan.targets] == ["localhost:5000/hello", "mirror.example/team/hello"]
    assert [str(r) for r in plan.build_steps[0].arch_refs] == [
        "localhost:5000/amd64/hello:1.0",
        "localhost:5000/amd64/hello:latest",
        "mirror.example/amd64/hello:1.0",
        "mirror.example/amd64/hello:latest",
    ]
    text = render(plan)
    assert "localhost:5000/hello@<digest>" in text and "mirror.example/team/hello@<digest>" in text
    assert re.search(r"targets\s+localhost:5000/hello\n\s+mirror.example/team/hello\n", text), text
    split = render(plan, push_by_digest=True)
    assert "mirror.example/team/hello@<digest>" not in split and "copies them to mirror.example/team/hello" in split

    # --image (repeatable) replaces the whole list; one target is a plan without mirrors
    plan = manifesto.plan(tmp_path / "platforms.yaml", image=["localhost:5000/a", "localhost:5001/b"])
    assert [str(t) for t in plan.targets] == ["localhost:5000/a", "localhost:5001/b"]
    assert manifesto.plan(tmp_path / "platforms.yaml", image="localhost:5000/a").mirrors == ()
    with pytest.raises(manifesto.UsageError, match="named twice"):
        manifesto.plan(tmp_path / "platforms.yaml", image=["localhost:5000/a", "localhost:5000/a"])

    # an arch_tag naming a fixed registry gives every target the same arch tags: moved once
    fixed = 'arch_tag: "localhost:5000/{arch_ns}/hello:{tag}"\n'
    plan = manifesto.plan(_matrix(tmp_path / "fixed", "localhost:5000/hello", "mirror.example/hello", extra=fixed))
    assert [str(r) for r in plan.build_steps[0].arch_refs] == ["localhost:5000/amd64/hello:1.0", "localhost:5000/amd64/hello:latest"]


@pytest.mark.parametrize(
    ("image", "extra", "says"),
    [
        ("[localhost:5000/a, localhost:5000/a]", "", r"platforms.yaml:1: duplicate image 'localhost:5000/a'"),
        ("[localhost:5000/a, 'localhost:5000/b:1']", "", r"platforms.yaml:1: image 'localhost:5000/b:1' must not carry a tag"),
        ("[localhost:5000/a, oci:out]", ARCH_TAG, r"arch_tag needs a registry image"),
        ("[localhost:5000/a, 42]", "", r"an image must be a string, got a number"),
        # one target's arch tag is another target's own tag
        ("[localhost:5000/a, localhost:5000/amd64/a]", ARCH_TAG, r"gives linux/amd64 tag 1.0 the index's own reference"),
    ],
)
def test_a_bad_image_list_is_refused_with_its_line(tmp_path: Path, image: str, extra: str, says: str) -> None:
    with pytest.raises(manifesto.ManifestoError, match=says):
        manifesto.plan(write_matrix(tmp_path, image, extra=extra))
