"""Rules that once had a copy per module now have one home; each surface asks it the same way.

Each test feeds the same input through every place that applies the rule, so a copy growing
back with a different answer (a `$` that lets a newline through, a missing Hub alias) fails here.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest

from manifesto import errors
from manifesto.builders import AUTO, BUILDER_ALIASES, BUILDER_NAMES, BUILDERS, get_builder
from manifesto.builders.buildah import own_args
from manifesto.cli.main import EXIT_CODES, build_parser, exit_code
from manifesto.errors import InvalidReference, SpecError
from manifesto.matrix.plan import make_plan
from manifesto.matrix.spec import loads
from manifesto.oci.digest import Digest
from manifesto.oci.platform import BUILD_PLATFORM_ARGS, PLATFORM_ARGS, Platform, platform_args
from manifesto.oci.reference import HUB_ALIASES, LayoutReference, Reference, check_tag, is_digest, parse_location, valid_tag
from manifesto.store.registry.credential import normalize_host
from manifesto.store.registry.dockerconfig import DockerConfig, config_key

HEX = "a" * 64


def _spec(tmp_path: Path, tags: str = "[a]", build: str = "", platforms: str = "[linux/amd64]"):
    """Load a platforms.yaml for localhost:5000/x with these sections."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    text = f"image: localhost:5000/x\ntags: {tags}\n" + (f"build: {build}\n" if build else "")
    text += f"platforms: {platforms}\n"
    return loads(text, tmp_path / "platforms.yaml", env={})


# ---- the tag grammar ------------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["v1\n", "v1\n\n", ".v1", "-v1", "v+1", "a" * 129, ""])
def test_a_bad_tag_is_refused_everywhere(tmp_path: Path, tag: str) -> None:
    assert not valid_tag(tag)
    with pytest.raises(InvalidReference, match="invalid tag"):
        check_tag(tag)
    with pytest.raises(InvalidReference):
        Reference.parse(f"localhost:5000/x:{tag}")
    with pytest.raises(InvalidReference):
        Reference.parse("localhost:5000/x").with_tag(tag)
    assert parse_location(f"oci:out:{tag}").tag is None  # not a tag, so part of the directory
    with pytest.raises(SpecError, match="tag"):
        _spec(tmp_path, tags=f"[{json.dumps(tag)}]")


@pytest.mark.parametrize("tag", ["v1", "_", "1.0-rc.1", "a" * 128])
def test_a_good_tag_is_accepted_everywhere(tmp_path: Path, tag: str) -> None:
    assert valid_tag(tag) and check_tag(tag) == tag
    assert Reference.parse(f"localhost:5000/x:{tag}").tag == tag
    assert parse_location(f"oci:out:{tag}") == LayoutReference("out", tag)
    assert _spec(tmp_path, tags=f"[{json.dumps(tag)}]").tags == (tag,)


def test_a_build_arg_name_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="invalid build arg name"):
        _spec(tmp_path, build='{args: {"A\\n": "1"}}')


# ---- is this reference a digest -------------------------------------------------------------------


@pytest.mark.parametrize(
    "reference, digest",
    [
        (f"sha256:{HEX}", True),
        (f"sha512:{HEX * 2}", True),
        ("sha256:short", True),  # a digest, if a bad one: Digest.parse says what is wrong
        ("latest", False),
        ("v1:x", False),  # an OCI layout ref name may hold ':'
        ("md5:abc", False),
        (":", False),
    ],
)
def test_is_digest(reference: str, digest: bool) -> None:
    assert is_digest(reference) is digest


def test_a_references_manifest_reference_is_a_digest_exactly_when_pinned() -> None:
    assert is_digest(Reference.parse(f"x@sha256:{HEX}").reference)
    assert not is_digest(Reference.parse("x:sha256").reference)
    assert is_digest(str(Digest.of(b"x")))


# ---- Docker Hub's names ---------------------------------------------------------------------------


def test_hub_aliases_are_the_four_names_docker_uses() -> None:
    assert HUB_ALIASES == {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


@pytest.mark.parametrize("alias", sorted(HUB_ALIASES))
def test_every_hub_alias_means_docker_hub_for_references_and_credentials(alias: str) -> None:
    assert Reference.parse(f"{alias}/library/golang").registry == "docker.io"
    assert Reference.parse(f"{alias.upper()}/library/golang").registry == "docker.io"
    assert normalize_host(alias) == "docker.io"
    assert normalize_host(f"https://{alias}/v1/") == "docker.io"


@pytest.mark.parametrize("alias", sorted(HUB_ALIASES))
def test_a_docker_hub_login_is_found_under_any_hub_name(tmp_path: Path, alias: str) -> None:
    """docker files Hub logins under its legacy index URL; every Hub name must find them."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {"https://index.docker.io/v1/": {"username": "u", "password": "p"}}}))
    store = DockerConfig(config, environ={}, runner=None, helper_timeout=1, log=lambda: None)  # type: ignore[arg-type]
    cred = store.credential(normalize_host(alias))
    assert cred is not None and (cred.username, cred.secret) == ("u", "p")


def test_credentials_are_keyed_as_docker_keys_them() -> None:
    assert config_key("docker.io") == "https://index.docker.io/v1/"
    assert config_key("ghcr.io") == "ghcr.io"
    assert config_key("localhost:5000") == "localhost:5000"


# ---- builder names --------------------------------------------------------------------------------


def _choices(command: str) -> tuple[str, ...]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    action = next(a for a in sub.choices[command]._actions if a.dest == "builder")
    return tuple(action.choices)


@pytest.mark.parametrize("command", ["publish", "build", "doctor"])
def test_the_cli_offers_exactly_the_builder_names(command: str) -> None:
    assert _choices(command) == BUILDER_NAMES


def test_platforms_yaml_accepts_exactly_the_builder_names(tmp_path: Path) -> None:
    for name in BUILDER_NAMES:
        m = _spec(tmp_path, build=f"{{builder: {name}}}")
        assert m.build.builder == name
    for alias in BUILDER_ALIASES:
        with pytest.raises(SpecError, match="builder"):
            _spec(tmp_path, build=f"{{builder: {alias}}}")


def test_every_builder_name_and_alias_has_a_builder() -> None:
    assert BUILDER_NAMES == (AUTO, *BUILDERS)  # auto is a choice among the builders, not one of its own
    for name in (*BUILDERS, *BUILDER_ALIASES):
        assert get_builder(name).name == BUILDER_ALIASES.get(name, name)


# ---- TARGET* build args ---------------------------------------------------------------------------


def test_the_plan_passes_the_platform_args(tmp_path: Path) -> None:
    m = _spec(tmp_path, platforms="[linux/arm64/v8, linux/amd64]")
    arm, amd = make_plan(m).build_steps
    assert {k: arm.args[k] for k in PLATFORM_ARGS} == platform_args(Platform.parse("linux/arm64/v8"))
    assert amd.args["TARGETVARIANT"] == ""


@pytest.mark.parametrize("name", PLATFORM_ARGS)
def test_platforms_yaml_reserves_every_platform_arg(tmp_path: Path, name: str) -> None:
    with pytest.raises(SpecError, match=f"build arg {name} is set by manifesto"):
        _spec(tmp_path, build=f"{{args: {{{name}: x}}}}")


def test_buildah_derives_the_same_args_from_the_normalized_platform() -> None:
    p = Platform.parse("linux/aarch64")
    assert own_args(p) == platform_args(Platform.normalize_parts(p.os, p.architecture, p.variant))
    assert set(own_args(p)) == set(PLATFORM_ARGS)


@pytest.mark.parametrize("target", ["linux/arm64/v8", "linux/amd64", "linux/arm/v7", "linux/s390x", "linux/amd64/v1"])
def test_the_native_interpreter_takes_dockers_args_from_the_one_home(target: str) -> None:
    from manifesto.builders.native import source

    p, build = Platform.parse(target), Platform.parse("linux/arm64/v8")
    assert source.platform_args(p, build=build) == platform_args(p, build=build, docker=True)
    scope = source.global_scope(source.parse("FROM scratch\n", "Dockerfile"), {}, p)
    assert set(scope) == {*PLATFORM_ARGS, *BUILD_PLATFORM_ARGS}
    assert scope["TARGETPLATFORM"] == target.removesuffix("/v8").removesuffix("/v1")
    assert platform_args(p)["TARGETPLATFORM"] == target  # the plan passes the platform as given


# ---- the oci: layout prefix -----------------------------------------------------------------------


def test_the_layout_prefix_is_spelled_once() -> None:
    """`oci:` as code (not prose) appears only in oci/reference.py; every surface asks there."""
    import ast

    root = Path(__file__).resolve().parents[1] / "manifesto"
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value == "oci:":
                found.append(str(path.relative_to(root)))
    assert found == ["oci/reference.py"]


@pytest.mark.parametrize("text, layout, tag", [("oci:out:1.0", "out", "1.0"), ("oci:a:b/c", "a:b/c", None), ("oci:d", "d", None)])
def test_oci_dir_tag_reads_the_same_for_copy_and_from(text: str, layout: str, tag: str | None) -> None:
    from manifesto.oci.reference import parse_layout

    assert (parse_layout(text).path, parse_layout(text).reference) == (layout, tag)
    assert parse_location(text) == LayoutReference(layout, tag)  # what copy and every verb read


def test_oci_without_a_directory_is_refused_alike() -> None:
    from manifesto.oci.reference import parse_layout

    for parse in (parse_layout, parse_location):
        with pytest.raises(InvalidReference, match="oci: needs a directory"):
            parse("oci:")


def test_a_layouts_only_tag_is_chosen_in_one_place(tmp_path: Path) -> None:
    """`oci:DIR` without a tag names the layout's only tag: LayoutStore.reference decides it
    (through store.places.manifest_reference for every verb) and no other module counts tags."""
    from manifesto.store.layout import LayoutStore
    from manifesto.store.places import manifest_reference
    from tests.support.images import build_image

    root = Path(__file__).resolve().parents[1] / "manifesto"
    found = [str(p.relative_to(root)) for p in sorted(root.rglob("*.py")) if "the layout has" in p.read_text()]
    assert found == ["store/layout.py"]
    build_image("amd64", tmp_path / "lay", tag="one")
    location = parse_location(f"oci:{tmp_path / 'lay'}")
    assert manifest_reference(location) == LayoutStore(tmp_path / "lay").reference(None, "x") == "one"
    build_image("arm64", tmp_path / "lay", tag="two")
    with pytest.raises(errors.UsageError, match="the layout has 2 tags; name one as oci:DIR:TAG"):
        manifest_reference(location)
    assert manifest_reference(parse_location(f"oci:{tmp_path / 'lay'}:two")) == "two"


# ---- exit codes -----------------------------------------------------------------------------------

ERROR_CLASSES = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.ManifestoError)]


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_exit_codes_come_from_the_cli_table(cls: type[errors.ManifestoError]) -> None:
    parents = {errors.UsageError: 2, errors.AuthError: 3, errors.NotFound: 4}
    expected = next((code for parent, code in parents.items() if issubclass(cls, parent)), 1)
    error = cls.__new__(cls)  # constructors differ; the code depends on the class alone
    assert exit_code(error) == expected
    assert not hasattr(cls, "exit_code")  # the library's errors carry no process concerns


def test_the_exit_code_table_names_real_error_classes() -> None:
    for name in EXIT_CODES:
        assert issubclass(getattr(errors, name), errors.ManifestoError), name
    assert exit_code(ValueError("x")) == 1
    assert exit_code(type("UsageError", (Exception,), {})()) == 1  # a namesake from elsewhere is no UsageError


@pytest.mark.parametrize(
    "image, refusal",
    [
        ("oci:", "needs a directory after 'oci:'"),
        ("oci:out/app:1.0", "must not carry a tag"),
        ("registry.example.com/app:1.0", "must not carry a tag ('1.0')"),
        (f"registry.example.com/app@sha256:{'a' * 64}", "must not carry a digest"),
    ],
)
def test_a_target_is_read_alike_in_the_file_the_library_and_the_command_line(
    tmp_path: Path, image: str, refusal: str
) -> None:
    """platforms.yaml `image:`, manifesto.plan(image=...) and --image share Target.parse."""
    import manifesto
    from manifesto.cli.publishing import _target

    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    good = tmp_path / "platforms.yaml"
    good.write_text("image: registry.example.com/app\ntags: ['1']\nplatforms: [linux/amd64]\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"image: '{image}'\ntags: ['1']\nplatforms: [linux/amd64]\n")
    with pytest.raises(SpecError, match=re.escape(refusal)):
        manifesto.plan(bad)
    with pytest.raises(errors.UsageError, match=re.escape(refusal)):
        manifesto.plan(good, image=image)
    with pytest.raises(errors.UsageError, match=re.escape(refusal)):
        _target(image)


# ---- does this image config (this index entry) match this platform ---------------------------------


AARCH64 = Platform("linux", "aarch64")  # as a config or an index may write it: not normalized


def _aarch64_layout(tmp_path: Path) -> tuple[Path, str]:
    """A layout with one image whose config says linux/aarch64 (tag `img`) and an index naming
    it as linux/aarch64 (tag `idx`); returns the layout and the index's JSON."""
    from manifesto.oci.mediatype import OCI_INDEX
    from manifesto.store.layout import LayoutStore
    from tests.support.images import build_image

    layout = tmp_path / "base"
    image = build_image("arm64", layout, tag="img", busybox=b"x", config_overrides={"architecture": "aarch64", "variant": ""})
    child = {**image.descriptor(), "platform": {"architecture": "aarch64", "os": "linux"}}
    attestation = {
        **image.descriptor(),
        "platform": {"architecture": "unknown", "os": "unknown"},
        "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
    }
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [attestation, child]})
    LayoutStore(layout).put_manifest_sync("idx", index.encode(), OCI_INDEX)
    return layout, index


@pytest.mark.parametrize("asked", ["linux/arm64", "linux/arm64/v8", "linux/aarch64"])
def test_an_arm64_config_written_as_aarch64_is_accepted_everywhere_alike(tmp_path: Path, asked: str) -> None:
    """oci.platform.matches and .pick are the one home: the build check (verify_platform), the
    list rules (config_problem), an image: entry, the native builder's base (index child and
    single image) and buildx's output index all answer alike."""
    import asyncio

    from manifesto.builders.base import verify_platform
    from manifesto.builders.native import base_image
    from manifesto.lists.entry import Entry
    from manifesto.lists.rules import config_problem
    from manifesto.oci.descriptor import Descriptor
    from manifesto.oci.mediatype import OCI_MANIFEST
    from manifesto.oci.platform import matches, pick

    want = Platform.parse(asked)
    assert matches(want, AARCH64) and matches(AARCH64, want)
    verify_platform(want, AARCH64, "built")
    digest = Digest.parse(f"sha256:{HEX}")
    assert config_problem(Entry(None, Descriptor(OCI_MANIFEST, digest, 1, want), config_platform=AARCH64)) is None
    attestation = Descriptor(OCI_MANIFEST, digest, 1, Platform("unknown", "unknown"))
    child = Descriptor(OCI_MANIFEST, digest, 2, AARCH64)
    assert pick([attestation, child], want) == (child,)

    layout, _ = _aarch64_layout(tmp_path)
    for tag in ("img", "idx"):  # a single image whose config says aarch64; an index entry saying it
        base = asyncio.run(base_image.resolve(f"oci:{layout}:{tag}", want, None, "Dockerfile:1"))  # type: ignore[arg-type]
        assert base.config is not None and base.config["architecture"] == "aarch64"


def test_a_real_contradiction_is_one_everywhere_alike(tmp_path: Path) -> None:
    import asyncio

    from manifesto.builders.base import verify_platform
    from manifesto.builders.native import base_image
    from manifesto.lists.entry import Entry
    from manifesto.lists.rules import config_problem
    from manifesto.oci.descriptor import Descriptor
    from manifesto.oci.mediatype import OCI_MANIFEST
    from manifesto.oci.platform import matches, pick

    amd = Platform.parse("linux/amd64")
    assert not matches(amd, AARCH64)
    with pytest.raises(errors.VerificationError, match="built for linux/aarch64, but linux/amd64 was requested"):
        verify_platform(amd, AARCH64, "built")
    digest = Digest.parse(f"sha256:{HEX}")
    problem = config_problem(Entry(None, Descriptor(OCI_MANIFEST, digest, 1, amd), config_platform=AARCH64))
    assert problem is not None and "its config says linux/aarch64" in problem.text("")
    assert pick([Descriptor(OCI_MANIFEST, digest, 2, AARCH64)], amd) == ()
    layout, _ = _aarch64_layout(tmp_path)
    with pytest.raises(errors.UsageError, match="is for linux/aarch64, not linux/amd64"):
        asyncio.run(base_image.resolve(f"oci:{layout}:img", amd, None, "Dockerfile:1"))  # type: ignore[arg-type]
    with pytest.raises(errors.UsageError, match=r"has no linux/amd64 image \(it has linux/aarch64\)"):
        asyncio.run(base_image.resolve(f"oci:{layout}:idx", amd, None, "Dockerfile:1"))  # type: ignore[arg-type]


def test_buildx_picks_the_child_of_its_output_index_by_the_one_rule(tmp_path: Path) -> None:
    from manifesto.builders.base import BuildRequest
    from manifesto.builders.buildx import copy_image
    from manifesto.store.layout import LayoutStore

    layout, _ = _aarch64_layout(tmp_path)
    index_path = layout / "index.json"
    doc = json.loads(index_path.read_text())
    doc["manifests"] = [d for d in doc["manifests"] if d["annotations"].get("org.opencontainers.image.ref.name") == "idx"]
    index_path.write_text(json.dumps(doc))  # the build output: one index, its child says aarch64
    request = BuildRequest(platform=Platform.parse("linux/arm64"), context=tmp_path, dockerfile=tmp_path / "D", args={}, output=tmp_path / "out")
    dst = LayoutStore(tmp_path / "out", create=True)
    copy_image(LayoutStore(layout), request, dst)
    assert list(dst.tags()) == [request.tag]
