"""Rules that once had a copy per module now have one home; each surface asks it the same way.

Each test feeds the same input through every place that applies the rule, so a copy growing
back with a different answer (a `$` that lets a newline through, a missing Hub alias) fails here.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from manifesto import errors
from manifesto.builders import AUTO, BUILDER_ALIASES, BUILDER_NAMES, BUILDERS, get_builder
from manifesto.builders.buildah import own_args
from manifesto.cli.main import EXIT_CODES, build_parser, exit_code
from manifesto.errors import InvalidReference, SpecError
from manifesto.jobs.copy import Location
from manifesto.matrix.plan import make_plan
from manifesto.matrix.spec import loads
from manifesto.oci.digest import Digest
from manifesto.oci.platform import BUILD_PLATFORM_ARGS, PLATFORM_ARGS, Platform, platform_args
from manifesto.oci.reference import HUB_ALIASES, Reference, check_tag, is_digest, valid_tag
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
    assert Location.parse(f"oci:out:{tag}").tag is None  # not a tag, so part of the directory
    with pytest.raises(SpecError, match="tag"):
        _spec(tmp_path, tags=f"[{json.dumps(tag)}]")


@pytest.mark.parametrize("tag", ["v1", "_", "1.0-rc.1", "a" * 128])
def test_a_good_tag_is_accepted_everywhere(tmp_path: Path, tag: str) -> None:
    assert valid_tag(tag) and check_tag(tag) == tag
    assert Reference.parse(f"localhost:5000/x:{tag}").tag == tag
    assert Location.parse(f"oci:out:{tag}") == Location(layout=Path("out"), tag=tag)
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
    from manifesto.oci.reference import split_layout

    assert split_layout(text) == (layout, tag)
    assert Location.parse(text) == Location(layout=Path(layout), tag=tag)


def test_oci_without_a_directory_is_refused_alike() -> None:
    from manifesto.oci.reference import split_layout

    for parse in (split_layout, Location.parse):
        with pytest.raises(InvalidReference, match="oci: needs a directory"):
            parse("oci:")


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
