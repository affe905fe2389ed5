"""Builders pull bases with manifesto's registry settings: plain HTTP to loopback (and --insecure)
registries, manifesto's credentials through a private auth file that is 0600 and removed after.

Real buildah (and podman) against real registries; the base is the amd64 busybox test image and
the Dockerfiles have no RUN, so nothing runs under qemu. Every builder gets fresh storage: a
base already in storage would be used without a pull, hiding a missing credential.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import structlog

from manifesto.builders.access import (
    auth_document,
    base_registries,
    registries_conf,
    registry_access,
)
from manifesto.builders.base import BuildRequest, BuiltImage
from manifesto.builders.buildah import BuildahBuilder
from manifesto.builders.buildx import BuildxBuilder
from manifesto.builders.podman import PodmanBuilder
from manifesto.builders.runner import Runner
from manifesto.errors import BuildError
from manifesto.jobs.builds import Options, build_all
from manifesto.oci.config import ImageConfig
from manifesto.oci.manifest import ImageManifest
from manifesto.oci.platform import Platform
from manifesto.store.layout import LayoutStore
from manifesto.store.registry.lookup import Credential
from tests.support import ArchImage, Registry, push_image, require

AMD64 = Platform.parse("linux/amd64")


class SpyRunner(Runner):
    """A Runner that records each command's argv and extra env, and calls `during` before it runs."""

    def __init__(self, during: Callable[[list[str], dict[str, str]], None] | None = None):
        super().__init__()
        self.calls: list[tuple[list[str], dict[str, str]]] = []
        self.during = during

    def run(self, argv: Any, **kw: Any) -> Any:  # type: ignore[override]
        args = [os.fspath(a) for a in argv]
        env = dict(kw.get("env") or {})
        self.calls.append((args, env))
        if self.during is not None:
            self.during(args, env)
        return super().run(argv, **kw)


def authfile_of(argv: list[str]) -> Path:
    return Path(argv[argv.index("--authfile") + 1])


def context(tmp_path: Path, dockerfile: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def request(ctx: Path, output: Path, **kw: Any) -> BuildRequest:
    return BuildRequest(AMD64, ctx, ctx / "Dockerfile", {}, output, **kw)


def buildah(tmp_path: Path, runner: Runner | None = None, **kw: Any) -> BuildahBuilder:
    require("buildah")
    return BuildahBuilder(runner or SpyRunner(), storage=tmp_path / "storage", **kw)


def assert_on_base(built: BuiltImage, base: ArchImage, label: str) -> None:
    """The image starts with the base's layer and has our label: FROM really pulled the base."""
    store = LayoutStore(built.layout)
    manifest = ImageManifest.parse(store.manifest(built.tag).raw, built.media_type)
    raw = store.read_bytes(manifest.config.digest)
    assert json.loads(raw)["rootfs"]["diff_ids"][0] == base.diff_id
    assert ImageConfig.parse(raw).labels.get("built") == label


@pytest.fixture(scope="module")
def anonymous_base(registry: Registry, arch_images: dict[str, ArchImage]) -> str:
    return push_image(arch_images["amd64"], "h5/base:1", registry, creds=False)


@pytest.fixture(scope="module")
def private_base(htpasswd_registry: Registry, arch_images: dict[str, ArchImage]) -> str:
    return push_image(arch_images["amd64"], "h5/private:1", htpasswd_registry)


# ---- real builds ---------------------------------------------------------------------------------


def test_base_on_an_anonymous_loopback_registry_builds(
    tmp_home: Any, tmp_path: Path, anonymous_base: str, arch_images: dict[str, ArchImage]
) -> None:
    host = anonymous_base.split("/", 1)[0]
    ctx = context(tmp_path, f"ARG REGISTRY={host}\nFROM ${{REGISTRY}}/h5/base:1\nLABEL built=anonymous\n")
    runner = SpyRunner()
    built = buildah(tmp_path, runner).build(request(ctx, tmp_path / "out"), lambda _: None)
    assert_on_base(built, arch_images["amd64"], "anonymous")
    # plain HTTP only for that registry, through a private registries.conf, not --tls-verify=false
    (argv, env), _push = runner.calls  # the build, then the push into the layout
    assert not any(a.startswith("--tls-verify") for a in argv)
    assert "CONTAINERS_REGISTRIES_CONF" in env


def test_podman_pulls_a_loopback_base_too(
    tmp_home: Any, tmp_path: Path, anonymous_base: str, arch_images: dict[str, ArchImage]
) -> None:
    require("podman")
    ctx = context(tmp_path, f"FROM {anonymous_base}\nLABEL built=podman\n")
    podman = PodmanBuilder(SpyRunner(), storage=tmp_path / "storage")
    try:
        built = podman.build(request(ctx, tmp_path / "out"), lambda _: None)
    finally:
        if not str(podman.runroot).startswith(str(tmp_path)):
            shutil.rmtree(podman.runroot, ignore_errors=True)
    assert_on_base(built, arch_images["amd64"], "podman")


@pytest.mark.parametrize("source", ["manifesto_login", "docker_config"])
def test_base_on_an_htpasswd_registry_needs_the_credentials_manifesto_uses(
    source: str,
    tmp_home: Any,
    run_cli: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    htpasswd_registry: Registry,
    private_base: str,
    arch_images: dict[str, ArchImage],
) -> None:
    monkeypatch.setenv("MANIFESTO_KEYRING", "file")  # in-process lookups read what the CLI wrote
    ctx = context(tmp_path, f"FROM {private_base}\nLABEL built={source}\n")
    builder = buildah(tmp_path)

    with pytest.raises(BuildError) as info:  # no credentials anywhere yet
        builder.build(request(ctx, tmp_path / "denied"), lambda _: None)
    assert "unauthorized" in info.value.log_tail or "authentication required" in info.value.log_tail

    user, password = htpasswd_registry.creds  # type: ignore[misc]
    if source == "manifesto_login":
        rc, _, err = run_cli(
            "login", "-u", user, "--password-stdin", htpasswd_registry.host,
            input=password + "\n", env={"MANIFESTO_KEYRING": "file"},
        )  # fmt: skip
        assert rc == 0, err
    else:
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        config = {"auths": {htpasswd_registry.host: {"auth": auth}}}
        (tmp_home.docker_config / "config.json").write_text(json.dumps(config))
    built = builder.build(request(ctx, tmp_path / "out"), lambda _: None)
    assert_on_base(built, arch_images["amd64"], source)


def test_auth_file_is_private_while_building_and_no_secret_is_in_argv_or_env(
    tmp_home: Any, tmp_path: Path, htpasswd_registry: Registry, private_base: str
) -> None:
    user, password = htpasswd_registry.creds  # type: ignore[misc]
    seen: dict[str, Any] = {}

    def during(argv: list[str], env: dict[str, str]) -> None:
        path = authfile_of(argv)
        seen.update(
            path=path,
            mode=stat.S_IMODE(path.stat().st_mode),
            dir_mode=stat.S_IMODE(path.parent.stat().st_mode),
            doc=json.loads(path.read_text()),
        )

    secrets = {password, base64.b64encode(f"{user}:{password}".encode()).decode()}
    creds = {htpasswd_registry.host: Credential(user, password)}
    runner = SpyRunner(during)
    ctx = context(tmp_path, f"FROM {private_base}\nLABEL built=private\n")
    builder = buildah(tmp_path, runner, credentials=creds.get)
    builder.build(request(ctx, tmp_path / "out"), lambda _: None)

    assert seen["mode"] == 0o600 and seen["dir_mode"] == 0o700
    entry = seen["doc"]["auths"][htpasswd_registry.host]
    assert base64.b64decode(entry["auth"]).decode() == f"{user}:{password}"
    assert not seen["path"].exists() and not seen["path"].parent.exists()  # removed after the build
    assert len(runner.calls) == 2  # the build, then the push into the layout
    for argv, env in runner.calls:
        for text in [*argv, *env.values()]:
            assert not any(s in text for s in secrets), text


def test_auth_file_is_removed_when_the_build_fails(tmp_home: Any, tmp_path: Path) -> None:
    def fail(argv: list[str], env: dict[str, str]) -> None:
        assert authfile_of(argv).exists()
        raise BuildError("linux/amd64: buildah was cancelled")

    runner = SpyRunner(fail)
    ctx = context(tmp_path, "FROM 127.0.0.1:9/never/pulled:1\n")
    with pytest.raises(BuildError, match="cancelled"):
        buildah(tmp_path, runner, credentials=lambda h: Credential("u", "p")).build(
            request(ctx, tmp_path / "out"), lambda _: None
        )
    (argv, env), = runner.calls
    assert not authfile_of(argv).parent.exists()
    assert not Path(env["CONTAINERS_REGISTRIES_CONF"]).exists()
    assert not (tmp_path / "out").exists()


# ---- what goes into the files ---------------------------------------------------------------------


def access_for(dockerfile: str, tmp_path: Path, *, insecure: bool = False, creds: Mapping[str, Credential] = {},
               environ: Mapping[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    ctx = context(tmp_path, dockerfile)
    env = {"XDG_RUNTIME_DIR": str(tmp_path), "HOME": str(tmp_path), **(environ or {})}
    with registry_access(request(ctx, tmp_path / "out", insecure=insecure), {}, creds.get, env) as access:
        conf = tomllib.loads(access.registries_conf.read_text()) if access.registries_conf else None
        return {"hosts": access.hosts, "conf": conf, "auth": json.loads(access.authfile.read_text())}


def test_only_loopback_bases_lose_tls_verification_unless_insecure(tmp_path: Path) -> None:
    dockerfile = "FROM registry.example:5000/a:1 AS one\nFROM localhost:5000/b:1\nFROM busybox\n"
    got = access_for(dockerfile, tmp_path)
    assert got["hosts"] == ("docker.io", "localhost:5000", "registry.example:5000")
    assert got["conf"]["registry"] == [{"location": "localhost:5000", "insecure": True}]
    insecure = access_for(dockerfile, tmp_path, insecure=True)["conf"]["registry"]
    assert {r["location"] for r in insecure if r["insecure"]} == set(got["hosts"])
    # no loopback base, no --insecure: the user's registries.conf is left alone entirely
    assert access_for("FROM registry.example:5000/a:1\n", tmp_path)["conf"] is None


def test_registries_conf_keeps_the_users_settings(tmp_path: Path) -> None:
    user = tmp_path / "user.conf"
    user.write_text(
        'unqualified-search-registries = ["docker.io"]\nshort-name-mode = "enforcing"\n'
        '[aliases]\n"my/app" = "quay.io/me/app"\n'
        '[[registry]]\nprefix = "127.0.0.1:5000"\nlocation = "127.0.0.1:5000"\n'
        '[[registry.mirror]]\nlocation = "mirror.example"\n'
        '[[registry]]\nlocation = "quay.io"\n'
    )
    got = access_for("FROM 127.0.0.1:5000/a\n", tmp_path, environ={"CONTAINERS_REGISTRIES_CONF": str(user)})["conf"]
    expected = tomllib.loads(user.read_text())
    expected["registry"][0]["insecure"] = True
    assert got == expected
    v1 = tomllib.loads(registries_conf({"registries": {"search": {"registries": ["docker.io"]}}}, ("[::1]:5000",)))
    assert v1 == {"registries": {"search": {"registries": ["docker.io"]}, "insecure": {"registries": ["[::1]:5000"]}}}


def test_auth_file_holds_resolved_credentials_over_the_tools_own_auth_file(tmp_path: Path) -> None:
    own = tmp_path / "own.json"
    own.write_text(json.dumps({
        "auths": {"quay.io": {"auth": "a2VlcDptZQ=="}, "https://127.0.0.1:5000/v1/": {"auth": "b2xkOm9sZA=="},
                  "127.0.0.1:5000/h5/base": {"auth": "b2xkOm9sZA=="}},
        "credHelpers": {"127.0.0.1:5000": "pass", "gcr.io": "gcloud"},
    }))  # fmt: skip
    creds = {"127.0.0.1:5000": Credential("alice", "s3cret"), "ghcr.io": Credential("<token>", "tok", "identity_token")}
    got = access_for(
        "FROM 127.0.0.1:5000/h5/base\nFROM ghcr.io/o/i\nFROM docker.io/library/busybox\n",
        tmp_path, creds=creds, environ={"REGISTRY_AUTH_FILE": str(own)},
    )["auth"]  # fmt: skip
    assert got == {
        "auths": {
            "quay.io": {"auth": "a2VlcDptZQ=="},
            "127.0.0.1:5000": {"auth": base64.b64encode(b"alice:s3cret").decode()},
            "ghcr.io": {"auth": base64.b64encode(b":").decode(), "identitytoken": "tok"},
        },
        "credHelpers": {"gcr.io": "gcloud"},
    }
    assert auth_document({}, {}) == {"auths": {}}


@pytest.mark.parametrize(
    ("dockerfile", "args", "hosts"),
    [
        ("ARG R=a.example\nARG T\nFROM ${R}/x:${T:-1} AS b\nFROM b\nCOPY --from=b /a /b\n", {}, ["a.example"]),
        ("ARG R=a.example\nFROM $R/x\n", {"R": "b.example:5000"}, ["b.example:5000"]),
        ("FROM $UNDECLARED/x\n", {"UNDECLARED": "c.example"}, []),  # BuildKit: not a global ARG
        ("FROM scratch\nCOPY --from=q.example/i:1 / /\nRUN --mount=type=bind,from=r.example/i,target=/m true\n",
         {}, ["q.example", "r.example"]),
        ("# escape=`\nFROM `\n  --platform=$TARGETPLATFORM `\n  s.example/${TARGETARCH}/x\n", {}, ["s.example"]),
        ("FROM t.example/x\nRUN <<EOF\nFROM u.example/y\nEOF\n# FROM v.example/z\n", {}, ["t.example"]),
        ("FROM busybox AS base\nFROM base\nFROM 0\n", {}, ["docker.io"]),
        ("from w.example/i as B\nFROM scratch\nRUN --mount=from=x.example/i,target=/m \\\n  --mount=from=b true\n",
         {}, ["w.example", "x.example"]),
        ("FROM scratch\nCOPY a --from=y.example/i /b\nRUN [\"--mount=from=z.example/i\"]\n", {}, []),  # not flags
    ],
)
def test_base_registries(dockerfile: str, args: dict[str, str], hosts: list[str]) -> None:
    builtins = {"TARGETPLATFORM": "linux/amd64", "TARGETARCH": "amd64"}
    assert list(base_registries(dockerfile, args, builtins)) == hosts


@pytest.mark.parametrize(
    ("dockerfile", "problem"),
    [
        ("FROM busybox\nRUN <<EOF\necho hi\n", "unterminated heredoc"),
        ("# only a comment\n", "file with no instructions"),
    ],
)
def test_a_dockerfile_buildkit_cannot_parse_fails_in_one_line_before_building(
    tmp_path: Path, dockerfile: str, problem: str
) -> None:
    runner = SpyRunner()
    ctx = context(tmp_path, dockerfile)
    with pytest.raises(BuildError) as info:
        buildah(tmp_path, runner).build(request(ctx, tmp_path / "out"), lambda _: None)
    assert str(info.value) == f"{ctx / 'Dockerfile'}: {problem}"
    assert runner.calls == [] and not (tmp_path / "out").exists()


def test_the_dockerfile_parser_is_loaded_only_to_build() -> None:
    probe = "import sys, manifesto.builders.buildah, manifesto.builders.buildx; print('dockerfile' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_publish_passes_insecure_to_every_build(tmp_path: Path) -> None:
    from manifesto.matrix.plan import make_plan
    from manifesto.matrix.spec import load

    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "platforms.yaml").write_text("image: oci:out\ntags: [t]\nplatforms: [linux/amd64, linux/s390x]\n")
    plan = make_plan(load(tmp_path / "platforms.yaml"), [])
    seen: list[BuildRequest] = []

    class Recorder:
        name = "recorder"

        def check(self) -> list[Any]:
            return []

        def build(self, req: BuildRequest, on_line: Any) -> BuiltImage:
            seen.append(req)
            raise BuildError("recorded")

        def cancel(self) -> None:
            pass

    with pytest.raises(BuildError):
        build_all(plan, Options(builder=Recorder(), jobs=1, insecure=True), tmp_path / "work")
    assert seen and all(r.insecure for r in seen)


def test_buildx_warns_that_a_loopback_base_needs_its_builders_own_settings(tmp_path: Path) -> None:
    ctx = context(tmp_path, "FROM 127.0.0.1:5000/a:1\nFROM quay.io/b:1\n")
    with structlog.testing.capture_logs() as logs:
        BuildxBuilder(Runner())._warn_plain_http(request(ctx, tmp_path / "out"))
    (warning,) = [e for e in logs if e["event"] == "buildx_plain_http_registries"]
    assert warning["hosts"] == ["127.0.0.1:5000"]
    assert '[registry."127.0.0.1:5000"] http = true' in warning["fix"]
