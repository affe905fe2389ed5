"""Coverage against the base image: `publish --dry-run` warns and `doctor` fails for matrix
platforms the base lacks, before anything builds; `platforms: from-base` builds exactly the
base's platforms (attestations and unknown/unknown left out).

The base is a real index of busybox images (amd64, arm64/v8, and an attestation) in a real
registry; FROM is read after ARG substitution, as the native builder reads it.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import httpx
import pytest

from manifesto.errors import SpecError, UsageError
from manifesto.jobs.coverage import stage_bases
from manifesto.matrix.spec import loads
from manifesto.oci.platform import Platform
from tests.publish.conftest import AccessLog, State, stored_writes
from tests.support import ArchImage, Registry
from tests.support.content import OCI_INDEX, Content

@pytest.fixture(scope="module")
def base(registry: Registry, arch_images: dict[str, ArchImage]) -> str:
    """`base:1`: an OCI index of amd64 and arm64/v8 busybox, with an attestation for amd64."""
    repo = "coverage/base"
    chosen = [arch_images["amd64"], arch_images["arm64"]]
    with Content(registry, repo) as content:
        entries = [content.arch_image(image) for image in chosen]
        entries.append(content.attestation(chosen[0].manifest_digest))
        content.put(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode(), OCI_INDEX, "1")
    return f"{registry.host}/{repo}:1"


def _project(directory: Path, dockerfile: str, image: str, platforms: str, build: str = "{builder: native}") -> Path:
    """A Dockerfile (and the file it copies) and a platforms.yaml building `image:1` for
    `platforms` (a YAML list, or from-base) with `build` (a YAML mapping; "" for none)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile").write_text(textwrap.dedent(dockerfile))
    (directory / "msg").write_text("hello\n")
    path = directory / "platforms.yaml"
    path.write_text(f'image: {image}\ntags: ["1"]\n' + (f"build: {build}\n" if build else "") + f"platforms: {platforms}\n")
    return path


# ---- which bases a Dockerfile pulls -------------------------------------------------------------


def test_stage_bases_substitute_args_and_leave_out_build_platform_stages_and_stage_names() -> None:
    text = textwrap.dedent(
        """\
        ARG BASE=example.com/base
        FROM --platform=$BUILDPLATFORM example.com/golang:1 AS build
        FROM ${BASE}:${TARGETARCH} AS runtime
        FROM runtime
        COPY --from=build /x /x
        """
    )
    bases = stage_bases(text, "Dockerfile", {"BASE": "example.com/other"}, Platform.parse("linux/arm64"))
    assert [(b.image, b.final, b.for_target) for b in bases] == [
        ("example.com/golang:1", False, False),  # runs on this machine
        ("example.com/other:arm64", True, True),  # the build arg wins; the image's own base
    ]
    assert stage_bases("FROM scratch\n", "Dockerfile", {}, Platform.parse("linux/s390x"))[0].image is None


# ---- publish --dry-run and doctor ----------------------------------------------------------------


def test_dry_run_warns_of_each_platform_the_base_lacks_and_builds_nothing(
    tmp_path: Path, registry: Registry, base: str
) -> None:
    host, name = base.split("/", 1)
    spec = _project(
        tmp_path / "p",
        """\
        ARG BASE
        FROM ${BASE}
        COPY msg /msg
        """,
        f"{registry.host}/coverage/app",
        "[linux/amd64, linux/arm64/v8, linux/s390x, linux/ppc64le]",
        build=f'{{args: {{BASE: "{base}"}}}}',
    )
    state = State.make(tmp_path / "state")
    log = AccessLog(registry)
    mark = log.mark()
    rc, out, err = state.run("publish", "-f", spec, "--dry-run")
    assert rc == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("manifesto: warning:")]
    label = f"{host}/coverage/base:1"
    assert warnings == [
        f"manifesto: warning: linux/s390x: base image {label} has no linux/s390x image (it has linux/amd64, linux/arm64/v8)",
        f"manifesto: warning: linux/ppc64le: base image {label} has no linux/ppc64le image (it has linux/amd64, linux/arm64/v8)",
    ], err
    assert "PLATFORM" in out  # the plan is still printed
    assert stored_writes(log.since(mark)) == []  # nothing built or pushed


def test_dry_run_of_a_covered_matrix_or_from_scratch_warns_of_nothing(tmp_path: Path, registry: Registry, base: str) -> None:
    state = State.make(tmp_path / "state")
    for name, dockerfile in (("covered", f"FROM {base}\nCOPY msg /msg\n"), ("scratch", "FROM scratch\nCOPY msg /msg\n")):
        spec = _project(tmp_path / name, dockerfile, f"{registry.host}/coverage/app", "[linux/amd64, linux/arm64]", build="")
        rc, _, err = state.run("publish", "-f", spec, "--dry-run")
        assert rc == 0 and "warning" not in err, err


def test_doctor_fails_for_a_platform_the_base_lacks(tmp_path: Path, registry: Registry, base: str) -> None:
    spec = _project(tmp_path / "p", f"FROM {base}\nCOPY msg /msg\n", f"{registry.host}/coverage/app", "[linux/amd64, linux/s390x]")
    state = State.make(tmp_path / "state")
    rc, out, err = state.run("doctor", "-f", spec)
    assert rc == 1, out + err
    problems = [line for line in out.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1 and "linux/s390x: base image" in problems[0] and "has no linux/s390x image" in problems[0], out
    assert "leave the platform out of the matrix" in out

    spec.write_text(spec.read_text().replace("linux/s390x", "linux/arm64/v8"))
    rc, out, err = state.run("doctor", "-f", spec)
    assert rc == 0 and out.startswith("ok:"), out + err


def test_doctor_names_a_base_it_cannot_read(tmp_path: Path, registry: Registry) -> None:
    spec = _project(tmp_path / "p", f"FROM {registry.host}/coverage/nothing-here:1\n", f"{registry.host}/coverage/app", "[linux/amd64]")
    rc, out, _ = State.make(tmp_path / "state").run("doctor", "-f", spec)
    assert rc == 1 and f"linux/amd64: base image {registry.host}/coverage/nothing-here:1 cannot be read" in out, out


# ---- platforms: from-base --------------------------------------------------------------------------


def test_from_base_builds_exactly_the_bases_platforms(tmp_path: Path, registry: Registry, base: str) -> None:
    spec = _project(tmp_path / "p", f"FROM {base}\nCOPY msg /msg\n", f"{registry.host}/coverage/from-base", "from-base")
    state = State.make(tmp_path / "state")
    rc, out, err = state.run("publish", "-f", spec, "--dry-run")
    assert rc == 0, err
    rows = [line.split()[0] for line in out.splitlines() if line.startswith("  linux/")]
    assert rows == ["linux/amd64", "linux/arm64/v8"], out  # no unknown/unknown (the attestation)
    assert "unknown" not in out and "warning" not in err

    rc, out, err = state.run("publish", "-f", spec)
    assert rc == 0, err
    with httpx.Client(base_url=registry.url) as http:
        r = http.get("/v2/coverage/from-base/manifests/1", headers={"Accept": OCI_INDEX})
    platforms = [m["platform"] for m in r.json()["manifests"]]
    assert [(p["architecture"], p.get("variant")) for p in platforms] == [("amd64", None), ("arm64", "v8")]


def test_from_base_is_refused_where_no_one_base_says_the_platforms(tmp_path: Path, registry: Registry) -> None:
    state = State.make(tmp_path / "state")
    cases = {
        "scratch": ("FROM scratch\n", "builds FROM scratch, which has no platforms"),
        "per-arch": (f"FROM {registry.host}/${{TARGETARCH}}/busybox:1\n", "depends on the target platform"),
    }
    for name, (dockerfile, said) in cases.items():
        spec = _project(tmp_path / name, dockerfile, f"{registry.host}/coverage/app", "from-base", build="")
        rc, _, err = state.run("publish", "-f", spec, "--dry-run")
        assert rc == 2 and said in err and err.count("manifesto: error:") == 1, err


def test_spec_reads_from_base_and_says_so_for_a_misspelling(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    text = 'image: example.com/app\ntags: ["1"]\nplatforms: from-base\n'
    matrix = loads(text, tmp_path / "platforms.yaml")
    assert matrix.from_base and matrix.entries == ()
    with pytest.raises(SpecError, match=r"platforms\.yaml:3: platforms must be a list, got a string \(or 'from-base': the base image's platforms\)"):
        loads(text.replace("from-base", "frombase"), tmp_path / "platforms.yaml")
    (tmp_path / "Dockerfile").unlink()
    with pytest.raises(SpecError, match="Dockerfile not found"):
        loads(text, tmp_path / "platforms.yaml")
    from manifesto.matrix.plan import make_plan

    with pytest.raises(UsageError, match="from-base is resolved from the registry first"):
        make_plan(matrix)
