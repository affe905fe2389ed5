"""platforms.yaml → Matrix: every field, default, alias and error (the corpus holds the broken files)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from manifesto.cli.main import exit_code
from manifesto.errors import SpecError, UsageError
from manifesto.matrix import Matrix, Target, load, loads
from manifesto.builders import BUILDER_NAMES
from manifesto.matrix.spec import PLACEHOLDERS
from manifesto.oci.mediatype import DOCKER_LIST, OCI_INDEX
from manifesto.oci.platform import Platform
from manifesto.oci.reference import Reference

FIVE = ["linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/ppc64le", "linux/s390x"]

ISSUE_EXAMPLE = """\
image: registry.example.com/acme/hello     # target repository
tags: ["1.4.2", "latest"]
format: oci                                 # oci | docker (list media type)
build:
  builder: buildah                          # buildah (default) | podman | buildx
  context: .                                # relative to this file
  dockerfile: Dockerfile                    # relative to context
  args: {VERSION: "1.4.2"}
platforms:
  - linux/amd64
  - linux/arm64/v8
  - platform: linux/arm/v7                  # an entry may override args, dockerfile, context
    args: {GOARM: "7"}
  - linux/ppc64le
  - linux/s390x
"""

CORPUS = Path(__file__).parent / "corpus"
CORPUS_FILES = sorted(CORPUS.glob("*.yaml"))
CORPUS_ENV = {"EMPTY": ""}
REPO = Path(__file__).resolve().parents[2]


# ---- the broken corpus -----------------------------------------------------------------------


def test_corpus_is_big_enough():
    assert len(CORPUS_FILES) >= 20


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.stem for p in CORPUS_FILES])
def test_corpus(path: Path):
    first = path.read_text().splitlines()[0]
    m = re.fullmatch(r"# expect: (\d+): (.+)", first)
    assert m, f"{path.name}: first line must be '# expect: LINE: MESSAGE'"
    line, message = int(m.group(1)), m.group(2)
    with pytest.raises(SpecError) as info:
        load(path, env=CORPUS_ENV)
    assert str(info.value) == f"{path}:{line}: {message}"
    assert info.value.file == str(path)
    assert info.value.line == line


# ---- the issue's example and every field ---------------------------------------------------


def test_issue_example(spec, tmp_path):
    m = spec(ISSUE_EXAMPLE)
    assert m.path == tmp_path / "platforms.yaml"
    assert m.image == Target(reference=Reference("registry.example.com", "acme/hello"))
    assert not m.image.is_layout
    assert str(m.image) == "registry.example.com/acme/hello"
    assert m.tags == ("1.4.2", "latest")
    assert m.format == "oci"
    assert m.index_media_type == OCI_INDEX
    assert m.annotations == {}
    assert m.build.builder == "buildah"
    assert m.build.context == tmp_path
    assert m.build.dockerfile == tmp_path / "Dockerfile"
    assert m.build.args == {"VERSION": "1.4.2"}
    assert m.arch_tag is None
    assert [str(e.platform) for e in m.entries] == FIVE
    assert [str(p) for p in m.platforms] == FIVE
    assert all(e.builds and e.image is None for e in m.entries)
    assert [e.line for e in m.entries] == [10, 11, 12, 14, 15]
    arm = m.entries[2]
    assert arm.args == {"VERSION": "1.4.2", "GOARM": "7"}
    assert m.entries[0].args == {"VERSION": "1.4.2"}


def test_defaults(spec, tmp_path):
    m = spec(
        """\
        image: localhost:5000/hello
        tags: [latest]
        platforms: [linux/amd64]
        """
    )
    assert m.format == "oci" and m.index_media_type == OCI_INDEX
    assert m.build.builder == "auto"  # native when the Dockerfile needs no execution, else buildah
    assert m.build.context == tmp_path
    assert m.build.dockerfile == tmp_path / "Dockerfile"
    assert m.build.args == {} and m.annotations == {} and m.arch_tag is None
    assert m.image.reference == Reference("localhost:5000", "hello")


def test_version_1_is_accepted(spec):
    assert spec("version: 1\nimage: localhost:5000/hello\ntags: [a]\nplatforms: [linux/amd64]\n").tags == ("a",)


@pytest.mark.parametrize("value", ["true", "1.0", "null"])
def test_version_must_be_the_number_1(spec, value):
    with pytest.raises(SpecError, match=r"platforms.yaml:1: version must be the number 1"):
        spec(f"version: {value}\nimage: localhost:5000/hello\ntags: [a]\nplatforms: [linux/amd64]\n")


def test_format_docker(spec):
    m = spec("image: localhost:5000/hello\ntags: [a]\nformat: docker\nplatforms: [linux/amd64]\n")
    assert m.format == "docker"
    assert m.index_media_type == DOCKER_LIST


def test_docker_format_with_empty_annotations_is_fine(spec):
    m = spec("image: localhost:5000/hello\ntags: [a]\nformat: docker\nannotations: {}\nplatforms: [linux/amd64]\n")
    assert m.annotations == {}


def test_annotations(spec):
    m = spec(
        """\
        image: localhost:5000/hello
        tags: [a]
        annotations:
          org.opencontainers.image.source: https://example.com/hello
          org.opencontainers.image.description: ""
        platforms: [linux/amd64]
        """
    )
    assert m.annotations == {
        "org.opencontainers.image.source": "https://example.com/hello",
        "org.opencontainers.image.description": "",
    }


@pytest.mark.parametrize("builder", BUILDER_NAMES)
def test_every_builder(spec, builder):
    m = spec(f"image: localhost:5000/hello\ntags: [a]\nbuild: {{builder: {builder}}}\nplatforms: [linux/amd64]\n")
    assert m.build.builder == builder


def test_docker_hub_target(spec):
    m = spec("image: acme/hello\ntags: [a]\nplatforms: [linux/amd64]\n")
    assert m.image.reference == Reference("docker.io", "acme/hello")
    assert m.image.tagged("a") == "docker.io/acme/hello:a"


def test_layout_target_resolves_relative_to_spec(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "Dockerfile").write_text("FROM scratch\n")
    text = "image: oci:out/hello\ntags: [a]\nplatforms: [linux/amd64]\n"
    m = loads(text, tmp_path / "sub" / "platforms.yaml", env={})
    assert m.image.is_layout
    assert m.image.layout == tmp_path / "sub" / "out" / "hello"
    assert m.image.reference is None
    assert str(m.image) == f"oci:{tmp_path / 'sub' / 'out' / 'hello'}"


@pytest.mark.parametrize("bad", ["oci:", "oci:out:1.0"])
def test_bad_layout_targets(spec, bad):
    with pytest.raises(SpecError, match=r":1: image 'oci:"):
        spec(f"image: '{bad}'\ntags: [a]\nplatforms: [linux/amd64]\n")


def test_tags_keep_their_text(spec):
    m = spec('image: localhost:5000/hello\ntags: ["1.10", "v1.0", latest, "1_0-rc.1"]\nplatforms: [linux/amd64]\n')
    assert m.tags == ("1.10", "v1.0", "latest", "1_0-rc.1")


@pytest.mark.parametrize("tag", [".hidden", "-dash", "a" * 129, "with space", "é"])
def test_invalid_tags(spec, tag):
    with pytest.raises(SpecError, match=r":2: invalid tag"):
        spec(f'image: localhost:5000/hello\ntags: ["{tag}"]\nplatforms: [linux/amd64]\n')


def test_missing_required_keys_point_at_the_document(spec):
    with pytest.raises(SpecError, match=r"platforms.yaml:2: missing required key 'platforms'"):
        spec("# comment\nimage: localhost:5000/hello\ntags: [a]\n")
    with pytest.raises(SpecError, match=r"platforms.yaml:1: missing required key 'tags'"):
        spec("image: localhost:5000/hello\nplatforms: [linux/amd64]\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tags: null", r":2: tags must be a list of strings"),
        ("tags: [[a]]", r":2: a tag must be a string, got a list$"),
        ("tags: [null]", r":2: a tag must be a string, got null$"),
        ("tags: [yes]", r':2: a tag must be a string, got a boolean; quote it: "yes"'),
        ("tags: [2024-01-01]", r':2: a tag must be a string, got a date; quote it: "2024-01-01"'),
        ('tags: [""]', r":2: a tag must not be empty"),
    ],
)
def test_wrong_tag_types(spec, text, message):
    with pytest.raises(SpecError, match=message):
        spec(f"image: localhost:5000/hello\n{text}\nplatforms: [linux/amd64]\n")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("image: 42", 1, "image must be a string, got a number"),
        ("image: []", 1, "image must not be an empty list; name at least one repository"),
        ("image: {a: b}", 1, "image must be a repository or a list of them, got a mapping"),
        ("image: ''", 1, "image must not be empty"),
        ("image: localhost:5000/hello\nformat: 2", 2, "format must be a string"),
        ("image: localhost:5000/hello\nplatforms: linux/amd64", 2, "platforms must be a list, got a string"),
        ("image: localhost:5000/hello\nannotations: [a]", 2, "annotations (annotation names to string values) must be a mapping, got a list"),
        ("image: localhost:5000/hello\narch_tag: 3", 2, "arch_tag must be a string"),
        ("image: localhost:5000/hello\nbuild: {context: 1}", 2, "context must be a string"),
        ("image: localhost:5000/hello\nbuild: {args: [A=b]}", 2, "args (build arg names to string values) must be a mapping, got a list"),
        ("image: localhost:5000/hello\nbuild: {args: {'A B': x}}", 2, "invalid build arg name 'A B'"),
        ("image: localhost:5000/hello\nformat: OCI", 2, "unknown format 'OCI' (did you mean 'oci'?)"),
    ],
)
def test_wrong_types(spec, text, line, message):
    if "platforms:" not in text:
        text += "\nplatforms: [linux/amd64]"
    with pytest.raises(SpecError) as info:
        spec(text + "\ntags: [a]\n")
    assert info.value.line == line
    assert message in str(info.value)


def test_first_error_wins_in_document_order_for_unknown_keys(spec):
    with pytest.raises(SpecError, match=r":2: unknown key 'tgas' \(did you mean 'tags'\?\)"):
        spec("image: localhost:5000/hello\ntgas: [a]\nplatfrom: [linux/amd64]\n")


def test_spec_error_is_a_usage_error():
    assert issubclass(SpecError, UsageError)
    assert exit_code(SpecError("x", file="f", line=1)) == 2


def test_matrix_is_frozen(spec):
    m = spec("image: localhost:5000/hello\ntags: [a]\nplatforms: [linux/amd64]\n")
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.tags = ("b",)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.entries[0].line = 3  # type: ignore[misc]


# ---- platforms and aliases ---------------------------------------------------------------------


ALIASES = [
    ("x86_64", "linux/amd64"),
    ("aarch64", "linux/arm64"),
    ("arm64v8", "linux/arm64/v8"),
    ("armv7", "linux/arm/v7"),
    ("armhf", "linux/arm/v7"),
    ("linux/arm", "linux/arm/v7"),
    ("linux/x86_64", "linux/amd64"),
    ("linux/aarch64/v8", "linux/arm64/v8"),
    ("i386", "linux/386"),
    ("ppc64el", "linux/ppc64le"),
    ("LINUX/AMD64", "linux/amd64"),
]


@pytest.mark.parametrize(("alias", "normal"), ALIASES)
def test_aliases_as_strings(spec, alias, normal):
    m = spec(f"image: localhost:5000/hello\ntags: [a]\nplatforms: ['{alias}']\n")
    assert str(m.entries[0].platform) == normal
    assert m.entries[0].platform == Platform.parse(normal)


@pytest.mark.parametrize(("alias", "normal"), ALIASES)
def test_aliases_in_mappings(spec, alias, normal):
    m = spec(f"image: localhost:5000/hello\ntags: [a]\nplatforms:\n  - platform: '{alias}'\n")
    assert str(m.entries[0].platform) == normal


@pytest.mark.parametrize(
    ("first", "second"),
    [("linux/amd64", "x86_64"), ("linux/arm64", "linux/arm64/v8"), ("armhf", "armv7"), ("linux/arm", "linux/arm/v7")],
)
def test_duplicates_after_normalization(spec, first, second):
    with pytest.raises(SpecError) as info:
        spec(f"image: localhost:5000/hello\ntags: [a]\nplatforms:\n  - {first}\n  - {second}\n")
    assert info.value.line == 5
    assert str(info.value).endswith(f"duplicate platform {second!r} (same as {first!r} on line 4)")


@pytest.mark.parametrize("bad", ["linux/arm64/v7", "linux/amd64/v9", "linux/s390x/v1", "linux", "linux/", "a/b/c/d"])
def test_impossible_platforms(spec, bad):
    with pytest.raises(SpecError, match=r":4: invalid platform"):
        spec(f"image: localhost:5000/hello\ntags: [a]\nplatforms:\n  - '{bad}'\n")


def test_the_five(spec):
    m = spec("image: localhost:5000/hello\ntags: [a]\nplatforms: [" + ", ".join(FIVE) + "]\n")
    assert [str(p) for p in m.platforms] == FIVE
    assert [p.namespace for p in m.platforms] == ["amd64", "arm64v8", "arm32v7", "ppc64le", "s390x"]


# ---- paths and per-entry overrides ---------------------------------------------------------------


def test_relative_paths_resolve_against_the_spec_and_the_context(tmp_path):
    (tmp_path / "app" / "docker").mkdir(parents=True)
    (tmp_path / "app" / "docker" / "Dockerfile.prod").write_text("FROM scratch\n")
    (tmp_path / "ci").mkdir()
    spec_path = tmp_path / "ci" / "platforms.yaml"
    spec_path.write_text(
        "image: localhost:5000/hello\ntags: [a]\n"
        "build: {context: ../app, dockerfile: docker/Dockerfile.prod}\n"
        "platforms: [linux/amd64]\n"
    )
    m = load(spec_path, env={})
    assert m.build.context == tmp_path / "app"
    assert m.build.dockerfile == tmp_path / "app" / "docker" / "Dockerfile.prod"
    assert m.entries[0].context == tmp_path / "app"
    assert m.entries[0].dockerfile == tmp_path / "app" / "docker" / "Dockerfile.prod"


def test_absolute_context(tmp_path):
    ctx = tmp_path / "elsewhere"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "spec").mkdir()
    text = f"image: localhost:5000/hello\ntags: [a]\nbuild: {{context: '{ctx}'}}\nplatforms: [linux/amd64]\n"
    m = loads(text, tmp_path / "spec" / "platforms.yaml", env={})
    assert m.entries[0].context == ctx and m.entries[0].dockerfile == ctx / "Dockerfile"


def test_entry_overrides(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "Dockerfile.arm").write_text("FROM scratch\n")
    (tmp_path / "legacy").mkdir()
    (tmp_path / "legacy" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "legacy" / "Dockerfile.s390x").write_text("FROM scratch\n")
    text = """\
image: localhost:5000/hello
tags: [a]
build:
  args: {VERSION: "1.0", GOARM: "6"}
platforms:
  - linux/amd64
  - platform: linux/arm/v7
    dockerfile: Dockerfile.arm
    args: {GOARM: "7", EXTRA: ""}
  - platform: linux/ppc64le
    context: legacy
  - platform: linux/s390x
    context: legacy
    dockerfile: Dockerfile.s390x
"""
    m = loads(text, tmp_path / "platforms.yaml", env={})
    amd, arm, ppc, s390 = m.entries
    assert amd.context == tmp_path and amd.dockerfile == tmp_path / "Dockerfile"
    assert amd.args == {"VERSION": "1.0", "GOARM": "6"}
    assert arm.context == tmp_path and arm.dockerfile == tmp_path / "Dockerfile.arm"
    assert arm.args == {"VERSION": "1.0", "GOARM": "7", "EXTRA": ""}
    assert ppc.context == tmp_path / "legacy" and ppc.dockerfile == tmp_path / "legacy" / "Dockerfile"
    assert s390.dockerfile == tmp_path / "legacy" / "Dockerfile.s390x"
    assert m.build.args == {"VERSION": "1.0", "GOARM": "6"}  # the global settings are untouched


def test_entry_context_without_its_dockerfile_points_at_the_entry_context(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "empty").mkdir()
    text = (
        "image: localhost:5000/hello\ntags: [a]\n"
        "platforms:\n  - linux/amd64\n  - platform: linux/s390x\n    context: empty\n"
    )
    with pytest.raises(SpecError) as info:
        loads(text, tmp_path / "platforms.yaml", env={})
    assert info.value.line == 6
    assert "Dockerfile not found: empty/Dockerfile" in str(info.value)


def test_default_dockerfile_missing_points_at_the_first_built_entry(tmp_path):
    text = "image: localhost:5000/hello\ntags: [a]\nplatforms:\n  - image: golang:alpine\n  - linux/amd64\n"
    with pytest.raises(SpecError) as info:
        loads(text, tmp_path / "platforms.yaml", env={})
    assert str(info.value).endswith(
        ":5: Dockerfile not found: Dockerfile (dockerfile 'Dockerfile' is relative to the context .)"
    )


def test_context_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    text = "image: localhost:5000/hello\ntags: [a]\nbuild: {context: file}\nplatforms: [linux/amd64]\n"
    with pytest.raises(SpecError, match=r":3: build context is not a directory: file"):
        loads(text, tmp_path / "platforms.yaml", env={})


# ---- assemble-only entries ---------------------------------------------------------------------


def test_assemble_entries_need_no_build_files(spec):
    m = spec(
        """\
        image: registry.example.com/library/golang
        tags: [alpine]
        platforms:
          - image: amd64/golang:alpine
          - image: arm64v8/golang:alpine
            platform: aarch64
          - image: golang:alpine
            platform: linux/arm/v7
          - platform: linux/s390x
            image: golang@sha256:0000000000000000000000000000000000000000000000000000000000000000
        """,
        dockerfile=False,
    )
    amd, arm64, arm, s390 = m.entries
    assert amd.platform is None and amd.image == Reference("docker.io", "amd64/golang", "alpine")
    assert not amd.builds and amd.args == {}
    assert str(arm64.platform) == "linux/arm64" and arm64.image == Reference.parse("arm64v8/golang:alpine")
    assert str(arm.platform) == "linux/arm/v7"
    assert s390.image is not None and s390.image.digest is not None
    assert [str(p) for p in m.platforms] == ["linux/arm64", "linux/arm/v7", "linux/s390x"]
    assert [e.line for e in m.entries] == [4, 5, 7, 9]


def test_mixed_build_and_assemble(spec):
    m = spec("image: localhost:5000/hello\ntags: [a]\nplatforms:\n  - linux/amd64\n  - image: arm64v8/hello\n")
    assert m.entries[0].builds and not m.entries[1].builds


def test_same_index_image_for_different_platforms_is_fine(spec):
    m = spec(
        "image: localhost:5000/golang\ntags: [a]\nplatforms:\n"
        "  - {image: golang:alpine, platform: linux/amd64}\n"
        "  - {image: golang:alpine, platform: linux/arm64/v8}\n",
        dockerfile=False,
    )
    assert len(m.entries) == 2


# ---- arch_tag -----------------------------------------------------------------------------------


def test_arch_tag_for_each_of_the_five(spec):
    m = spec(
        "image: registry.example.com/acme/hello\ntags: [\"1.4.2\", latest]\n"
        'arch_tag: "{registry}/{arch_ns}/hello:{tag}"\n'
        "platforms: [" + ", ".join(FIVE) + "]\n"
    )
    got = {str(p): [str(r) for r in m.arch_refs(p)] for p in m.platforms}
    assert got == {
        "linux/amd64": ["registry.example.com/amd64/hello:1.4.2", "registry.example.com/amd64/hello:latest"],
        "linux/arm64/v8": ["registry.example.com/arm64v8/hello:1.4.2", "registry.example.com/arm64v8/hello:latest"],
        "linux/arm/v7": ["registry.example.com/arm32v7/hello:1.4.2", "registry.example.com/arm32v7/hello:latest"],
        "linux/ppc64le": ["registry.example.com/ppc64le/hello:1.4.2", "registry.example.com/ppc64le/hello:latest"],
        "linux/s390x": ["registry.example.com/s390x/hello:1.4.2", "registry.example.com/s390x/hello:latest"],
    }


def test_every_placeholder(spec):
    template = "{registry}/{repository}/{name}:{tag}-{os}-{arch}{variant}-{arch_ns}-{platform_slug}"
    assert set(re.findall(r"{(\w+)}", template)) == set(PLACEHOLDERS)
    m = spec(
        "image: registry.example.com/acme/hello\ntags: [\"1.0\"]\n"
        f'arch_tag: "{template}"\n'
        "platforms: [linux/amd64, linux/arm64/v8, armhf]\n"
    )
    assert [str(m.arch_refs(p)[0]) for p in m.platforms] == [
        "registry.example.com/acme/hello/hello:1.0-linux-amd64-amd64-linux-amd64",
        "registry.example.com/acme/hello/hello:1.0-linux-arm64v8-arm64v8-linux-arm64-v8",
        "registry.example.com/acme/hello/hello:1.0-linux-armv7-arm32v7-linux-arm-v7",
    ]


def test_arch_tag_on_docker_hub(spec):
    m = spec('image: acme/hello\ntags: ["1.0"]\narch_tag: "{arch_ns}/{name}:{tag}"\nplatforms: [aarch64]\n')
    assert m.arch_refs(m.platforms[0]) == (Reference("docker.io", "arm64v8/hello", "1.0"),)


def test_arch_tag_with_slug_in_the_tag(spec):
    m = spec('image: localhost:5000/hello\ntags: ["1.0"]\narch_tag: "{registry}/{repository}:{tag}-{platform_slug}"\n'
             "platforms: [linux/arm/v7]\n")
    assert str(m.arch_refs(m.platforms[0])[0]) == "localhost:5000/hello:1.0-linux-arm-v7"


def test_no_arch_tag_means_no_arch_refs(spec):
    m = spec("image: localhost:5000/hello\ntags: [a]\nplatforms: [linux/amd64]\n")
    assert m.arch_refs(m.platforms[0]) == ()


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{registry}/{arch_ns}/hello", "arch_tag must give a tagged reference (end it with :{tag})"),
        ("{registry}/{repository}:{tag}", "the index's own reference"),
        ("{registry}/{arch_ns}/hello:{tag!r}", "takes no format spec or conversion"),
        ("{registry}/{arch_ns}/hello:{tag:>5}", "takes no format spec or conversion"),
        ("{registry}/{arch_ns}/hello:{}", "unknown placeholder {} in arch_tag"),
        ("{registry}/{arch_ns}/hello:{tag", "bad arch_tag template"),
        ("{registry}/hello-arch:{tag}", "the same reference"),
        ("{registry}/{arch_ns}/hello:stable", "arch_tag gives linux/amd64 tag 1.0 and linux/amd64 tag 2.0 the same"),
    ],
)
def test_bad_arch_tags(spec, template, message):
    with pytest.raises(SpecError) as info:
        spec(
            f'image: localhost:5000/hello\ntags: ["1.0", "2.0"]\narch_tag: "{template}"\n'
            "platforms: [linux/amd64, linux/s390x]\n"
        )
    assert info.value.line == 3
    assert message in str(info.value)


def test_arch_tag_ignores_assemble_entries(spec):
    m = spec(
        'image: localhost:5000/hello\ntags: ["1.0"]\narch_tag: "{registry}/{arch_ns}/hello:{tag}"\n'
        "platforms:\n  - linux/amd64\n  - {image: 'golang:alpine', platform: linux/loong64}\n"
    )
    assert len(m.entries) == 2


# ---- environment substitution in tags -------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "env", "expected"),
    [
        ("${VERSION}", {"VERSION": "1.4.2"}, "1.4.2"),
        ("v${VERSION}", {"VERSION": "1.4.2"}, "v1.4.2"),
        ("${VERSION:-dev}", {}, "dev"),
        ("${VERSION:-dev}", {"VERSION": ""}, "dev"),
        ("${VERSION:-dev}", {"VERSION": "2.0"}, "2.0"),
        ("${MAJOR}.${MINOR}-${SUFFIX:-rc}", {"MAJOR": "1", "MINOR": "4"}, "1.4-rc"),
        ("plain", {"plain": "x"}, "plain"),
    ],
)
def test_env_substitution(spec, tag, env, expected):
    m = spec(f'image: localhost:5000/hello\ntags: ["{tag}", other]\nplatforms: [linux/amd64]\n', env=env)
    assert m.tags == (expected, "other")


def test_env_defaults_to_os_environ(tmp_path, monkeypatch):
    monkeypatch.setenv("MANIFESTO_TEST_TAG", "9.9.9")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    text = 'image: localhost:5000/hello\ntags: ["${MANIFESTO_TEST_TAG}"]\nplatforms: [linux/amd64]\n'
    assert loads(text, tmp_path / "platforms.yaml").tags == ("9.9.9",)


def test_substituted_value_must_be_a_valid_tag(spec):
    with pytest.raises(SpecError, match=r":2: invalid tag 'feature/x' \(from '\$\{BRANCH\}'\)"):
        text = 'image: localhost:5000/hello\ntags: ["${BRANCH}"]\nplatforms: [linux/amd64]\n'
        spec(text, env={"BRANCH": "feature/x"})


@pytest.mark.parametrize("text", ["v$1", "${}", "${1A}", "${A", "$A"])
def test_bad_substitutions(spec, text):
    with pytest.raises(SpecError, match=r":2: bad substitution"):
        spec(f"image: localhost:5000/hello\ntags: ['{text}']\nplatforms: [linux/amd64]\n", env={"A": "x", "1": "y"})


def test_substitution_is_for_tags_only(spec):
    m = spec(
        "image: localhost:5000/hello\ntags: [a]\nbuild: {args: {V: '${V}'}}\nplatforms: [linux/amd64]\n", env={"V": "1"}
    )
    assert m.build.args == {"V": "${V}"}


# ---- YAML details --------------------------------------------------------------------------------


def test_anchors_and_merge_keys(spec, tmp_path):
    (tmp_path / "Dockerfile.arm").write_text("FROM scratch\n")
    m = spec(
        """\
        image: localhost:5000/hello
        tags: [a]
        build:
          args: &common {VERSION: "1.0"}
        platforms:
          - &arm
            platform: linux/arm/v7
            dockerfile: Dockerfile.arm
            args: {GOARM: "7"}
          - <<: *arm
            platform: linux/arm/v6
            args: {GOARM: "6"}
          - platform: linux/amd64
            args: *common
        """
    )
    arm7, arm6, amd = m.entries
    assert arm6.dockerfile == arm7.dockerfile
    assert arm6.args == {"VERSION": "1.0", "GOARM": "6"} and arm7.args["GOARM"] == "7"
    assert amd.args == {"VERSION": "1.0"}


def test_yaml_errors_are_spec_errors_with_yamls_line(spec):
    with pytest.raises(SpecError) as info:
        spec("image: localhost:5000/hello\ntags: [a]\nplatforms:\n  - linux/amd64\n - linux/s390x\n")
    assert info.value.line == 5 and "invalid YAML" in str(info.value)


def test_unsafe_tags_are_refused(spec):
    with pytest.raises(SpecError, match=r":1: invalid YAML: could not determine a constructor"):
        spec("image: !!python/object/apply:os.system ['true']\ntags: [a]\nplatforms: [linux/amd64]\n")


def test_several_documents(spec):
    with pytest.raises(SpecError, match=r"invalid YAML: expected a single document"):
        spec("image: localhost:5000/hello\n---\ntags: [a]\n")
    with pytest.raises(SpecError) as info:
        spec("image: localhost:5000/hello\n---\ntags: [a]\n")
    assert info.value.line == 2
    assert str(info.value).endswith("expected a single document in the stream, but found another document")


def test_scalar_document(spec):
    with pytest.raises(SpecError, match=r":1: the spec must be a mapping .*got a string"):
        spec("linux/amd64\n")


def test_load_missing_file(tmp_path):
    with pytest.raises(SpecError) as info:
        load(tmp_path / "nope.yaml")
    assert info.value.line is None
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: cannot read spec: No such file or directory"


def test_load_non_utf8(tmp_path):
    path = tmp_path / "platforms.yaml"
    path.write_bytes(b"image: localhost:5000/hello\ntags: [\xff]\n")
    with pytest.raises(SpecError, match=r"platforms.yaml:2: not UTF-8 text \(byte 0xff\)"):
        load(path)


def test_control_character(spec):
    with pytest.raises(SpecError, match=r":2: invalid YAML: unacceptable character #x0007"):
        spec("image: localhost:5000/hello\ntags: [a\x07]\nplatforms: [linux/amd64]\n")


def test_loads_and_load_agree(spec, tmp_path):
    m = spec(ISSUE_EXAMPLE)
    assert loads(ISSUE_EXAMPLE, tmp_path / "platforms.yaml", env={}) == m


# ---- the reference documentation ------------------------------------------------------------------


def test_docs_cover_every_key_value_and_placeholder():
    from manifesto.matrix.spec import BUILD_KEYS, ENTRY_KEYS, TOP_KEYS

    docs = (REPO / "docs" / "platforms-yaml.md").read_text()
    for key in TOP_KEYS + BUILD_KEYS + ENTRY_KEYS + BUILDER_NAMES + ("oci", "docker"):
        assert f"`{key}`" in docs, key
    for name in PLACEHOLDERS:
        assert f"`{{{name}}}`" in docs, name
    for alias in ("x86_64", "aarch64", "arm64v8", "armv7", "armhf"):
        assert f"`{alias}`" in docs, alias


# ---- the repository's own platforms.yaml ------------------------------------------------------------


def test_top_level_platforms_yaml():
    path = REPO / "platforms.yaml"
    if not (REPO / "examples" / "hello" / "Dockerfile").exists():
        pytest.skip("examples/hello/Dockerfile not written yet")
    m = load(path, env={})
    assert isinstance(m, Matrix)
    assert str(m.image) == "localhost:5000/hello"
    assert m.tags == ("1.0.0", "latest")
    assert m.format == "oci"
    assert [str(p) for p in m.platforms] == FIVE
    assert m.build.context == REPO / "examples" / "hello"
    assert m.build.dockerfile == REPO / "examples" / "hello" / "Dockerfile"
