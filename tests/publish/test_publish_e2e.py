"""`manifesto publish` end to end: examples/hello for five arches into a real registry.

One module-scoped publish of the repo's own platforms.yaml (five platforms, arch_tag, tags
1.0.0 and latest) with SOURCE_DATE_EPOCH set is shared by most tests here: peers (skopeo,
the docker CLI, buildah) read what it pushed, every platform is pulled back and run (under
qemu for the foreign four), and a republish must move nothing. The other publishes (--dry-run,
--platform, `build -o`, an `oci:DIR` target) reuse its warm buildah storage and compare
their digests with it: same inputs and epoch, same bytes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from tests.publish.conftest import (
    ARCH_NS,
    DIGEST_LINE,
    FIVE,
    UNAME,
    AccessLog,
    State,
    buildah_runner,
    catalog_of,
    index_platforms,
    manifest_raw,
    sha256,
    spec_file,
    stored_writes,
    tags_of,
)
from tests.support import Registry, inspect_raw, require, run, skopeo
from tests.support.tools import REPO_ROOT

pytestmark = pytest.mark.slow

MATRIX = REPO_ROOT / "platforms.yaml"
TAGS = ("1.0.0", "latest")


@dataclasses.dataclass(frozen=True)
class Published:
    registry: Registry
    state: State
    root: Path
    rc: int
    out: str
    err: str
    report: dict
    digest: str
    seconds: float

    @property
    def ref(self) -> str:
        return self.registry.ref("hello", "1.0.0")

    def publish_args(self, report: Path) -> list[str]:
        return ["publish", "-f", str(MATRIX), "--image", self.registry.ref("hello"), "--report", str(report)]


@pytest.fixture(scope="module")
def e2e(hello: Path, registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Published:
    """The one five-arch publish (cold: the module's state has empty buildah storage)."""
    root = tmp_path_factory.mktemp("e2e")
    state = State.make(root / "state")
    report = root / "R.json"
    started = time.monotonic()
    rc, out, err = state.run(
        "publish", "-f", MATRIX, "--image", registry.ref("hello"), "--report", report, cwd=REPO_ROOT
    )
    seconds = time.monotonic() - started
    assert rc == 0, f"publish failed (exit {rc}):\n{err[-4000:]}"
    lines = out.strip().splitlines()
    return Published(registry, state, root, rc, out, err, json.loads(report.read_text()), lines[-1], seconds)


# ---- the publish and its report ------------------------------------------------------------------


def test_publish_prints_the_index_digest_last_and_reports_every_platform(e2e: Published) -> None:
    assert DIGEST_LINE.match(e2e.digest), e2e.out
    report = e2e.report
    assert report["index"]["digest"] == e2e.digest
    assert report["index"]["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert sorted(report["index"]["tags"]) == sorted(TAGS)
    assert [p["platform"] for p in report["platforms"]] == list(FIVE)
    for p in report["platforms"]:
        assert DIGEST_LINE.match(p["digest"]), p
        assert p["source"] == "built"
    assert len({p["digest"] for p in report["platforms"]}) == 5
    # every platform's RUN step really ran, under qemu for the foreign ones
    for platform in FIVE:
        assert f"[{platform}]" in e2e.err


def test_registry_serves_exactly_the_index_that_was_reported(e2e: Published) -> None:
    raw = inspect_raw(e2e.ref)  # skopeo inspect --raw --tls-verify=false
    assert sha256(raw) == e2e.digest
    assert inspect_raw(e2e.registry.ref("hello", "latest")) == raw
    doc = json.loads(raw)
    assert doc["mediaType"] == "application/vnd.oci.image.index.v1+json"
    entries = {d["platform"]["architecture"]: d["platform"] for d in doc["manifests"]}
    assert entries["arm64"] == {"architecture": "arm64", "os": "linux", "variant": "v8"}
    assert entries["arm"] == {"architecture": "arm", "os": "linux", "variant": "v7"}
    children = index_platforms(raw)
    assert list(children) == list(FIVE)
    assert children == {p["platform"]: p["digest"] for p in e2e.report["platforms"]}
    for platform, digest in children.items():  # each child by digest: exact bytes, that config
        child, _ = manifest_raw(e2e.registry, "hello", digest)
        assert sha256(child) == digest
        config_digest = json.loads(child)["config"]["digest"]
        with e2e.registry.client() as c:
            config = c.get(f"/v2/hello/blobs/{config_digest}").json()
        got = "/".join(filter(None, [config["os"], config["architecture"], config.get("variant")]))
        assert got in (platform, platform.removesuffix("/v8")), (platform, config)


def test_docker_manifest_inspect_agrees(e2e: Published, tmp_path: Path) -> None:
    docker = require("docker")
    (tmp_path / "docker").mkdir()
    done = run(
        [docker, "manifest", "inspect", "--insecure", e2e.ref],
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / "docker")},
    )
    seen = json.loads(done.stdout)
    assert seen == json.loads(inspect_raw(e2e.ref))


def test_arch_tag_pushes_docker_library_repositories(e2e: Published) -> None:
    children = {p["platform"]: p for p in e2e.report["platforms"]}
    for platform, ns in ARCH_NS.items():
        child = children[platform]
        assert sorted(tags_of(e2e.registry, f"{ns}/hello") or []) == sorted(TAGS), ns
        for tag in TAGS:
            raw, _ = manifest_raw(e2e.registry, f"{ns}/hello", tag)
            assert sha256(raw) == child["digest"], f"{ns}/hello:{tag}"
        assert sorted(child["archRefs"]) == sorted(e2e.registry.ref(f"{ns}/hello", t) for t in TAGS)


@pytest.fixture(scope="module")
def runner_buildah(e2e: Published):
    return buildah_runner(e2e.root / "buildah-run")


@pytest.mark.parametrize("platform", FIVE)
def test_every_platform_runs_and_was_built_on_its_own_architecture(
    e2e: Published, runner_buildah, platform: str
) -> None:
    """Pull each platform out of the index with buildah and run it (foreign ones under qemu)."""
    b = runner_buildah
    os_, arch, *variant = platform.split("/")
    name = f"e2e-{arch}{'-' + variant[0] if variant else ''}"
    b("rm", name, check=False)
    b(
        "from", "--quiet", "--name", name, "--tls-verify=false", "--authfile", str(b.authfile),
        "--os", os_, "--arch", arch, *(["--variant", variant[0]] if variant else []),
        f"docker://{e2e.ref}",
    )  # fmt: skip
    try:
        expected = UNAME[platform]
        out = b("run", "--isolation", "chroot", name, "/bin/sh", "-c", "uname -m; cat /etc/built-on").stdout
        assert out.split() == [expected, expected], out
        pulled = b("inspect", "--format", "{{.FromImageDigest}}", name).stdout.strip()
        assert pulled == index_platforms(inspect_raw(e2e.ref))[platform]
    finally:
        b("rm", name, check=False)


# ---- republish, dry run, filter ---------------------------------------------------------------------


def test_republish_with_the_same_epoch_moves_nothing(e2e: Published, request: pytest.FixtureRequest) -> None:
    log = AccessLog(e2e.registry)
    mark = log.mark()
    report = e2e.root / "R2.json"
    started = time.monotonic()
    rc, out, err = e2e.state.run(*e2e.publish_args(report), cwd=REPO_ROOT)
    warm = time.monotonic() - started
    request.node.user_properties += [("cold_publish_seconds", round(e2e.seconds, 1)), ("warm_seconds", round(warm, 1))]
    assert rc == 0, err[-3000:]
    assert out.strip().splitlines()[-1] == e2e.digest
    last = err.strip().splitlines()[-1]
    assert "unchanged" in last and all(t in last.split("unchanged", 1)[1] for t in TAGS), last
    data = json.loads(report.read_text())
    assert data["index"]["tagsMoved"] == [] and sorted(data["index"]["tagsUnchanged"]) == sorted(TAGS)
    assert [p["digest"] for p in data["platforms"]] == [p["digest"] for p in e2e.report["platforms"]]
    requests = log.since(mark)
    assert requests, "the republish never talked to the registry?"
    assert [r for r in requests if r.is_tag_put] == []
    assert [r for r in requests if r.is_manifest_put] == []
    assert [r for r in stored_writes(requests) if r.method in ("POST", "PATCH")] == []  # no blob uploads either


def test_dry_run_prints_the_plan_and_touches_no_registry(e2e: Published) -> None:
    log = AccessLog(e2e.registry)
    before, mark = catalog_of(e2e.registry), log.mark()
    rc, out, err = e2e.state.run(
        "publish", "-f", MATRIX, "--image", e2e.registry.ref("dry"), "--dry-run", cwd=REPO_ROOT
    )
    assert rc == 0, err
    assert out.startswith("plan for ")
    for platform in FIVE:
        assert platform in out
    assert f"{e2e.registry.ref('dry')}@<digest>" in out
    assert e2e.registry.ref("arm64v8/dry", "1.0.0") in out
    assert "1.0.0, latest" in out
    assert log.since(mark) == []
    assert catalog_of(e2e.registry) == before


def test_platform_filter_publishes_just_that_platform(e2e: Published) -> None:
    # --allow-partial: without it (and without --push-by-digest) a filtered publish is refused
    rc, out, err = e2e.state.run(
        "publish", "-f", MATRIX, "--image", e2e.registry.ref("one"), "--platform", "linux/arm64/v8", "--allow-partial",
        cwd=REPO_ROOT,
    )  # fmt: skip
    assert rc == 0, err[-3000:]
    digest = out.strip().splitlines()[-1]
    raw = inspect_raw(e2e.registry.ref("one", "1.0.0"))
    assert sha256(raw) == digest
    children = index_platforms(raw)
    assert list(children) == ["linux/arm64/v8"]
    # same Dockerfile, same epoch: the same child as in the five-arch publish
    assert children["linux/arm64/v8"] == index_platforms(inspect_raw(e2e.ref))["linux/arm64/v8"]
    assert "[linux/amd64]" not in err
    assert tags_of(e2e.registry, "arm64v8/one") is not None
    assert tags_of(e2e.registry, "amd64/one") is None


# ---- OCI layouts: `build -o` and an oci: target --------------------------------------------------------


def test_build_writes_an_oci_layout_skopeo_reads(e2e: Published) -> None:
    out_dir = e2e.root / "built-layout"
    rc, out, err = e2e.state.run("build", "-f", MATRIX, "-o", out_dir, cwd=REPO_ROOT)
    assert rc == 0, err[-3000:]
    digest = out.strip().splitlines()[-1]
    assert f"wrote OCI image layout {out_dir}" in err
    raw = skopeo("inspect", "--raw", f"oci:{out_dir}:1.0.0").stdout.encode()
    assert sha256(raw) == digest == e2e.digest  # reproducible: the registry holds the same index
    assert json.loads((out_dir / "oci-layout").read_text())["imageLayoutVersion"] == "1.0.0"
    for child in index_platforms(raw).values():
        assert (out_dir / "blobs" / "sha256" / child.split(":", 1)[1]).is_file()
    config = json.loads(skopeo("inspect", "--config", "--raw", f"oci:{out_dir}:1.0.0").stdout)
    assert config["architecture"] == "amd64"  # skopeo picks the host's platform from the index


def test_oci_target_in_platforms_yaml_needs_no_registry(e2e: Published, hello: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    spec = spec_file(
        project,
        f"""\
        image: oci:out/hello
        tags: ["1.0.0", "latest"]
        build:
          context: {hello}
        platforms: [{", ".join(FIVE)}]
        """,
    )
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    # no registry anywhere: a dead proxy would break any attempt to reach one
    dead = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    rc, out, err = e2e.state.run("publish", "-f", spec, cwd=elsewhere, env=dead)
    assert rc == 0, err[-3000:]
    layout = project / "out" / "hello"  # relative to platforms.yaml, not to the cwd
    assert not (elsewhere / "out").exists()
    digest = out.strip().splitlines()[-1]
    for tag in ("1.0.0", "latest"):
        raw = skopeo("inspect", "--raw", f"oci:{layout}:{tag}").stdout.encode()
        assert sha256(raw) == digest
    assert digest == e2e.digest
