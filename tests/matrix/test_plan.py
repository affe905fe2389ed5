"""Matrix → Plan: steps, merged build args, arch refs, the --platform filter and the rendered text."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from manifesto.errors import UsageError
from manifesto.matrix import (
    AssembleStep,
    BuildStep,
    Plan,
    make_plan,
    platform_args,
    render,
)
from manifesto.oci.mediatype import DOCKER_LIST, OCI_INDEX
from manifesto.oci.platform import Platform
from manifesto.oci.reference import Reference

FIVE = ["linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/ppc64le", "linux/s390x"]

HELLO = """\
image: registry.example.com/acme/hello
tags: ["1.4.2", latest]
annotations:
  org.opencontainers.image.source: https://example.com/hello
build:
  args: {VERSION: "1.4.2"}
arch_tag: "{registry}/{arch_ns}/hello:{tag}"
platforms:
  - linux/amd64
  - linux/arm64/v8
  - platform: linux/arm/v7
    args: {GOARM: "7", VERSION: "1.4.2-arm"}
  - linux/ppc64le
  - linux/s390x
"""

MIXED = """\
image: registry.example.com/acme/golang
tags: [alpine]
platforms:
  - linux/amd64
  - image: arm64v8/golang:alpine
    platform: linux/arm64/v8
  - image: arm32v7/golang:alpine
"""


def P(text: str) -> Platform:
    return Platform.parse(text)


# ---- steps ----------------------------------------------------------------------------------------


def test_one_build_step_per_platform_in_matrix_order(spec, tmp_path):
    plan = make_plan(spec(HELLO))
    assert isinstance(plan, Plan)
    assert all(isinstance(s, BuildStep) for s in plan.steps)
    assert [str(s.platform) for s in plan.steps] == FIVE
    assert all(s.context == tmp_path and s.dockerfile == tmp_path / "Dockerfile" for s in plan.build_steps)
    assert plan.assemble_steps == ()
    assert not plan.filtered


def test_plan_carries_the_index(spec):
    m = spec(HELLO)
    plan = make_plan(m)
    assert plan.matrix is m
    assert plan.tags == ("1.4.2", "latest")
    assert plan.target == m.image
    assert plan.index_media_type == OCI_INDEX
    assert plan.annotations == {"org.opencontainers.image.source": "https://example.com/hello"}
    assert plan.builder == "auto"


def test_docker_format_plan(spec):
    plan = make_plan(spec("image: localhost:5000/hello\ntags: [a]\nformat: docker\nplatforms: [linux/amd64]\n"))
    assert plan.index_media_type == DOCKER_LIST


@pytest.mark.parametrize(
    ("platform", "variant"),
    [("linux/amd64", ""), ("linux/arm64/v8", "v8"), ("linux/arm/v7", "v7"), ("linux/ppc64le", ""), ("linux/s390x", "")],
)
def test_platform_args(platform, variant):
    p = P(platform)
    assert platform_args(p) == {
        "TARGETPLATFORM": platform,
        "TARGETOS": "linux",
        "TARGETARCH": platform.split("/")[1],
        "TARGETVARIANT": variant,
    }


def test_build_args_are_global_then_entry_then_platform(spec):
    steps = make_plan(spec(HELLO)).build_steps
    amd, arm64, arm = steps[0], steps[1], steps[2]
    assert amd.args == {
        "VERSION": "1.4.2",
        "TARGETPLATFORM": "linux/amd64",
        "TARGETOS": "linux",
        "TARGETARCH": "amd64",
        "TARGETVARIANT": "",
    }
    assert list(amd.args) == ["VERSION", "TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT"]
    assert arm64.args["TARGETVARIANT"] == "v8" and arm64.args["TARGETARCH"] == "arm64"
    assert arm.args["VERSION"] == "1.4.2-arm" and arm.args["GOARM"] == "7"
    assert arm.args["TARGETPLATFORM"] == "linux/arm/v7"


def test_arch_refs_per_tag(spec):
    steps = make_plan(spec(HELLO)).build_steps
    got = {str(s.platform): [str(r) for r in s.arch_refs] for s in steps}
    for ns, platform in zip(["amd64", "arm64v8", "arm32v7", "ppc64le", "s390x"], FIVE):
        assert got[platform] == [
            f"registry.example.com/{ns}/hello:1.4.2",
            f"registry.example.com/{ns}/hello:latest",
        ]
    assert all(isinstance(r, Reference) for s in steps for r in s.arch_refs)


def test_no_arch_tag_no_arch_refs(spec):
    plan = make_plan(spec("image: localhost:5000/hello\ntags: [a, b]\nplatforms: [linux/amd64, aarch64]\n"))
    assert all(s.arch_refs == () for s in plan.build_steps)


def test_assemble_steps(spec):
    plan = make_plan(spec(MIXED))
    build, arm64, arm = plan.steps
    assert isinstance(build, BuildStep)
    assert arm64 == AssembleStep(source=Reference.parse("arm64v8/golang:alpine"), platform=P("linux/arm64/v8"))
    assert arm == AssembleStep(source=Reference.parse("arm32v7/golang:alpine"), platform=None)
    assert plan.build_steps == (build,) and plan.assemble_steps == (arm64, arm)


def test_steps_are_frozen(spec):
    plan = make_plan(spec(MIXED))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.steps = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.steps[1].source = None  # type: ignore[union-attr]


# ---- the --platform filter ------------------------------------------------------------------------


def test_filter_keeps_matrix_order(spec):
    plan = make_plan(spec(HELLO), [P("linux/s390x"), P("linux/amd64")])
    assert [str(s.platform) for s in plan.steps] == ["linux/amd64", "linux/s390x"]
    assert plan.filtered


@pytest.mark.parametrize("alias", ["aarch64", "linux/arm64", "arm64v8", "linux/arm64/v8"])
def test_filter_matches_after_normalization(spec, alias):
    plan = make_plan(spec(HELLO), [P(alias)])
    assert [str(s.platform) for s in plan.steps] == ["linux/arm64/v8"]


def test_filter_duplicates_are_harmless(spec):
    plan = make_plan(spec(HELLO), [P("armhf"), P("linux/arm/v7"), P("armv7")])
    assert [str(s.platform) for s in plan.steps] == ["linux/arm/v7"]


@pytest.mark.parametrize("only", [None, []])
def test_no_filter(spec, only):
    plan = make_plan(spec(HELLO), only)
    assert len(plan.steps) == 5 and not plan.filtered


def test_filter_naming_a_platform_not_in_the_matrix(spec):
    with pytest.raises(UsageError) as info:
        make_plan(spec(HELLO), [P("linux/amd64"), P("linux/riscv64"), P("linux/386")])
    message = str(info.value)
    assert message.startswith("platform linux/riscv64, linux/386 are not in ")
    assert message.endswith("(it has: linux/amd64, linux/arm64/v8, linux/arm/v7, linux/ppc64le, linux/s390x)")


def test_filter_selects_assemble_entries_with_a_platform(spec):
    plan = make_plan(spec(MIXED), [P("aarch64")])
    assert plan.steps == (AssembleStep(Reference.parse("arm64v8/golang:alpine"), P("linux/arm64/v8")),)


def test_filter_cannot_select_entries_without_a_platform(spec):
    m = spec(MIXED)
    plan = make_plan(m, [P("linux/amd64")])
    assert [type(s) for s in plan.steps] == [BuildStep]
    with pytest.raises(UsageError, match=r"linux/arm/v7 is not in .*entries with only 'image:' cannot be selected"):
        make_plan(m, [P("linux/arm/v7")])


def test_filter_keeps_arch_refs_and_args(spec):
    (step,) = make_plan(spec(HELLO), [P("linux/arm/v7")]).steps
    assert isinstance(step, BuildStep)
    assert step.args["GOARM"] == "7"
    assert [str(r) for r in step.arch_refs] == [
        "registry.example.com/arm32v7/hello:1.4.2",
        "registry.example.com/arm32v7/hello:latest",
    ]


# ---- render -----------------------------------------------------------------------------------------


def test_render_names_every_platform_and_the_index(spec):
    text = render(make_plan(spec(HELLO)))
    for platform in FIVE:
        assert re.search(rf"^  {re.escape(platform)} +build ", text, re.M), platform
    for ns in ("amd64", "arm64v8", "arm32v7", "ppc64le", "s390x"):
        assert f"registry.example.com/{ns}/hello:1.4.2" in text
        assert f"registry.example.com/{ns}/hello:latest" in text
    assert "registry.example.com/acme/hello@<digest>" in text
    assert f"media type   {OCI_INDEX} (oci index)" in text
    assert "target       registry.example.com/acme/hello" in text
    assert "tags         1.4.2, latest" in text
    assert "annotations  org.opencontainers.image.source=https://example.com/hello" in text
    assert "build args: VERSION=1.4.2 + TARGETPLATFORM" in text
    assert text.endswith("\n")


def test_render_has_no_colours_and_no_trailing_spaces(spec):
    text = render(make_plan(spec(HELLO)))
    assert "\x1b" not in text
    assert all(line == line.rstrip() for line in text.splitlines())


def test_render_columns_are_aligned(spec):
    text = render(make_plan(spec(HELLO)))
    lines = text.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("PLATFORM"))
    columns = [header.index(name) for name in ("STEP", "FROM", "ARGS", "PUSHED AS")]
    rows = [line for line in lines if re.match(r"^  linux/", line)]
    assert len(rows) == 5
    for row in rows:
        for start in columns:
            assert row[start - 2 : start] == "  " and row[start] != " ", (row, start)
    # continuation lines (one per extra arch ref) start in the PUSHED AS column
    continuation = [line for line in lines if line.startswith(" " * columns[-1]) and line.strip()]
    assert len(continuation) == 5 * 2
    assert all(line[columns[-1]] != " " for line in continuation)


def test_render_shows_entry_args_only_when_they_differ(spec):
    text = render(make_plan(spec(HELLO)))
    arm = next(line for line in text.splitlines() if line.startswith("  linux/arm/v7"))
    assert "VERSION=1.4.2-arm GOARM=7" in arm
    amd = next(line for line in text.splitlines() if line.startswith("  linux/amd64"))
    assert "GOARM" not in amd and " - " in amd
    plain = render(make_plan(spec("image: localhost:5000/hello\ntags: [a]\nplatforms: [linux/amd64]\n")))
    assert "ARGS" not in plain
    assert "  build args: TARGETPLATFORM, TARGETOS, TARGETARCH, TARGETVARIANT per platform\n" in plain


def test_render_assemble_steps(spec):
    text = render(make_plan(spec(MIXED)))
    row = r"^  linux/arm64/v8 +assemble +docker.io/arm64v8/golang:alpine +registry.example.com/acme/golang@<digest>$"
    assert re.search(row, text, re.M)
    assert re.search(r"^  \(from config\) +assemble +docker.io/arm32v7/golang:alpine ", text, re.M)
    assert "3 entries (1 build, 2 assembled)" in text


def test_render_filtered(spec):
    text = render(make_plan(spec(HELLO), [P("linux/s390x")]))
    assert "1 of 5 entries (1 build)" in text
    assert "linux/s390x" in text and "linux/amd64" not in text


def test_render_filtered_says_the_index_is_partial(spec):
    text = render(make_plan(spec(HELLO), [P("linux/s390x")]))
    assert re.search(r"^  partial +only 1 of 5 entries: ", text, re.MULTILINE)
    assert "partial" not in render(make_plan(spec(HELLO)))


def test_render_push_by_digest_moves_no_tag(spec):
    text = render(make_plan(spec(MIXED)), push_by_digest=True)
    assert re.search(r"^  linux/amd64 +build .* registry\.example\.com/acme/golang@<digest>$", text, re.MULTILINE)
    assert re.search(r"^  linux/arm64/v8 +assemble .* \(by manifesto assemble\)$", text, re.MULTILINE)
    assert "index: not pushed" in text and not re.search(r"^  tags ", text, re.MULTILINE)
    arch = render(make_plan(spec(HELLO)), push_by_digest=True)
    assert "arm64v8/hello" not in arch  # arch tags move only at assemble


def test_render_relative_paths(tmp_path):
    from manifesto.matrix import load

    (tmp_path / "examples" / "hello").mkdir(parents=True)
    (tmp_path / "examples" / "hello" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "platforms.yaml").write_text(
        "image: oci:out/hello\ntags: [a]\nbuild: {context: examples/hello}\nplatforms: [linux/amd64]\n"
    )
    text = render(make_plan(load(tmp_path / "platforms.yaml", env={})))
    assert "examples/hello (Dockerfile)" in text
    assert re.search(r"^  target +oci:out/hello$", text, re.M)
    assert "layout, by digest" in text
    assert ": 1 entry (1 build)" in text
    assert str(tmp_path) not in text.split("\n", 1)[1]  # only the spec path in the title is as given


def test_render_the_repository_platforms_yaml():
    from manifesto.matrix import load

    repo = Path(__file__).resolve().parents[2]
    if not (repo / "examples" / "hello" / "Dockerfile").exists():
        pytest.skip("examples/hello/Dockerfile not written yet")
    text = render(make_plan(load(repo / "platforms.yaml", env={})))
    for platform in FIVE:
        assert platform in text
    assert "localhost:5000/hello" in text and "1.0.0, latest" in text


# ---- purity -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["plan.py", "model.py"])
def test_plan_and_model_are_pure(module):
    source = (Path(__file__).resolve().parents[2] / "manifesto" / "matrix" / module).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "os", "collections", "dataclasses", "pathlib", "manifesto"}
    assert "open(" not in source and "subprocess" not in source and "httpx" not in source


# ---- the builder a step asks for ----------------------------------------------------------------


def test_the_plan_reads_no_dockerfile_and_keeps_the_builder_asked_for(spec, tmp_path, monkeypatch):
    """`auto` is resolved by jobs.builds.choose_builders, not here: the plan does no I/O."""
    matrix = spec("image: localhost:5000/hello\ntags: [a]\nplatforms: [linux/amd64, linux/arm64]\n")
    (tmp_path / "Dockerfile").write_text("FROM alpine\nRUN true\n")  # would make `auto` say buildah

    def no_reading(self, *args, **kwargs):
        raise AssertionError(f"the plan read {self}")

    monkeypatch.setattr(Path, "read_text", no_reading)
    monkeypatch.setattr(Path, "read_bytes", no_reading)
    monkeypatch.setattr(Path, "open", no_reading)
    plan = make_plan(matrix)
    assert [s.builder for s in plan.build_steps] == ["auto", "auto"]
    assert plan.builders == ("auto",)
    assert "  linux/amd64  build  auto " in render(plan)


def test_render_shows_the_builders_it_is_given(spec):
    plan = make_plan(spec("image: localhost:5000/hello\ntags: [a]\nplatforms: [linux/amd64, linux/arm64]\n"))
    text = render(plan, builders=["native (auto: no instruction needs execution)", "buildah"])
    amd = next(line for line in text.splitlines() if line.startswith("  linux/amd64"))
    arm = next(line for line in text.splitlines() if line.startswith("  linux/arm64"))
    assert "native (auto: no instruction needs execution)" in amd and " buildah " in arm
    with pytest.raises(ValueError, match="1 builder"):
        render(plan, builders=["native"])


def test_the_matrix_imports_no_builder():
    """matrix sits below builders (tests/test_layers.py): loading and planning a spec loads no
    manifesto.builders module, whatever build.builder says."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys, tempfile, pathlib\n"
        "from manifesto.matrix import load, make_plan\n"
        "d = pathlib.Path(tempfile.mkdtemp())\n"
        "(d / 'Dockerfile').write_text('FROM scratch\\n')\n"
        "(d / 'p.yaml').write_text('image: localhost:5000/x\\ntags: [a]\\nplatforms: [linux/amd64]\\n')\n"
        "make_plan(load(d / 'p.yaml', env={}))\n"
        "print(json.dumps(sorted(k for k in sys.modules if k.startswith('manifesto.builders'))))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    assert json.loads(out.splitlines()[-1]) == []
