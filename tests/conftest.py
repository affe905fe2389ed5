"""Shared pytest fixtures: real registries, token server, busybox images, CLI runner.

Registries (Debian docker-registry, distribution 2.8.2, on free 127.0.0.1 ports):
  session_registry   anonymous, one per session (per xdist worker)
  registry           anonymous, one per test module
  fresh_registry     anonymous, one per test (empty storage)
  htpasswd_registry  Basic auth, one per test module (.username/.password/.creds)
  token_registry     Bearer token auth, one per module; its token server is reset
                     before every test (.token_server: configure/requests/...)
  registry_factory   callable(auth="none"|"htpasswd"|"token", **kw) -> started Registry
Images:
  arch_images        {debian arch: ArchImage} OCI-format busybox images (session)
  docker_arch_images same as Docker schema 2 (session)
  library_repos      {debian arch: LibraryRepo}: amd64/busybox:1 ... pushed into `registry`
Environment:
  tmp_home           HOME/XDG_*/DOCKER_CONFIG in a tmp dir (also set in os.environ)
  run_cli            run_cli(*args, input=None, env=None) -> (rc, stdout, stderr)
  unique_repo        a repository name unique to the test
Helpers (import): ``from tests.support import require, push_image, build_image, ...``
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.support import images as _images  # noqa: E402
from tests.support.images import ArchImage, LibraryRepo  # noqa: E402
from tests.support.registry import REGISTRY_BIN, Registry  # noqa: E402
from tests.support.tools import CliResult, in_ci, missing, private_home, require  # noqa: E402
from tests.support.tools import run_cli as _run_cli  # noqa: E402

__all__ = ["require"]


# ---------------------------------------------------------------------------
# registries


@pytest.fixture(autouse=True)
def _library_log_level() -> Iterator[None]:
    """Each test starts at the library's own log level (warnings and up): a CLI run in-process
    with -v or --debug lowers it for the whole process (manifesto.log.set_level)."""
    from manifesto import log

    saved = log._level, log._setup
    log.set_level(30)
    yield
    log.set_level(*saved)


def _start(directory: Path, auth: str = "none", **kwargs: Any) -> Registry:
    if not Path(REGISTRY_BIN).exists():
        missing(f"{REGISTRY_BIN} not installed (run `make system-deps`)")
    if auth == "htpasswd":
        require("htpasswd")
    return Registry(directory, auth=auth, **kwargs).start()  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def session_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An anonymous registry shared by the whole session (per xdist worker)."""
    reg = _start(tmp_path_factory.mktemp("registry-session"))
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An anonymous registry for one test module. Use `unique_repo` to avoid clashes."""
    reg = _start(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture
def fresh_registry(tmp_path: Path) -> Iterator[Registry]:
    """An anonymous registry with empty storage, for one test."""
    reg = _start(tmp_path / "registry")
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def htpasswd_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A Basic-auth registry (users alice/alice-secret, bob/bob-secret) for one module."""
    reg = _start(tmp_path_factory.mktemp("registry-htpasswd"), "htpasswd")
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def _token_registry_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = _start(tmp_path_factory.mktemp("registry-token"), "token")
    yield reg
    reg.stop()


@pytest.fixture
def token_registry(_token_registry_module: Registry) -> Registry:
    """A token-auth registry; its `.token_server` is reset (defaults, empty log) per test.

    Defaults: users alice/alice-secret and bob/bob-secret get every action; anonymous
    gets pull; tokens live 300 s. Change with ``token_registry.token_server.configure(...)``.
    """
    assert _token_registry_module.token_server is not None
    _token_registry_module.token_server.reset()
    return _token_registry_module


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[Callable[..., Registry]]:
    """Start extra registries: ``registry_factory(auth="token", users={...}, extra_config={...})``."""
    started: list[Registry] = []

    def make(auth: str = "none", **kwargs: Any) -> Registry:
        reg = _start(tmp_path / f"registry-{len(started)}", auth, **kwargs)
        started.append(reg)
        return reg

    yield make
    for reg in reversed(started):
        reg.stop()


# ---------------------------------------------------------------------------
# images


@pytest.fixture(scope="session")
def arch_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ArchImage]:
    """The five busybox test images (OCI format), keyed by Debian arch.

    amd64, arm64 (linux/arm64/v8), armhf (linux/arm/v7), ppc64el (linux/ppc64le), s390x.
    Each lives in its own OCI layout; read-only — copy before modifying.
    """
    base = tmp_path_factory.mktemp("arch-images")
    return {arch: _images.build_image(arch, base / arch) for arch in _images.ARCHES}


@pytest.fixture(scope="session")
def docker_arch_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ArchImage]:
    """The five busybox test images with Docker schema 2 manifests."""
    base = tmp_path_factory.mktemp("arch-images-docker")
    return {
        arch: _images.build_image(arch, base / arch, format="docker") for arch in _images.ARCHES
    }


@pytest.fixture(scope="module")
def library_repos(registry: Registry, arch_images: dict[str, ArchImage]) -> dict[str, LibraryRepo]:
    """amd64/busybox:1, arm64v8/busybox:1, arm32v7/busybox:1, ppc64le/busybox:1,
    s390x/busybox:1 pushed into the module's `registry`; keyed by Debian arch. Read-only."""
    return _images.push_library_repos(arch_images, registry)


# ---------------------------------------------------------------------------
# environment and CLI


@dataclasses.dataclass(frozen=True)
class TmpHome:
    home: Path
    config: Path  # XDG_CONFIG_HOME
    data: Path  # XDG_DATA_HOME
    cache: Path  # XDG_CACHE_HOME
    state: Path  # XDG_STATE_HOME
    runtime: Path  # XDG_RUNTIME_DIR
    docker_config: Path  # DOCKER_CONFIG
    env: dict[str, str]  # the variables set (pass to subprocesses)

    @property
    def drafts(self) -> Path:
        """Where manifesto keeps local drafts: $XDG_DATA_HOME/manifesto."""
        return self.data / "manifesto"


@pytest.fixture
def tmp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TmpHome:
    """Point HOME, XDG_*_HOME, XDG_RUNTIME_DIR and DOCKER_CONFIG at a tmp dir.

    Also unsets REGISTRY_AUTH_FILE and DOCKER_AUTH_CONFIG and selects keyring's null backend, so neither
    the CLI nor in-process code can read or write the real user's config/secrets.
    """
    home = tmp_path / "home"
    th = TmpHome(
        home=home,
        config=home / ".config",
        data=home / ".local" / "share",
        cache=home / ".cache",
        state=home / ".local" / "state",
        runtime=home / "run",
        docker_config=home / ".docker",
        env={},
    )
    th.env.update(private_home(home))
    for k, v in th.env.items():
        monkeypatch.setenv(k, v)
    for k in ("REGISTRY_AUTH_FILE", "CONTAINERS_AUTH_FILE", "DOCKER_AUTH_CONFIG"):
        monkeypatch.delenv(k, raising=False)
    return th


@pytest.fixture
def run_cli(tmp_home: TmpHome) -> Callable[..., CliResult]:
    """Run the manifesto CLI as a subprocess inside `tmp_home`.

    ``rc, out, err = run_cli("inspect", ref, input=None, env={"X": "1"}, timeout=300)``
    """

    def run(*args: Any, input: bytes | str | None = None, env: dict[str, str] | None = None,
            timeout: float = 300, cwd: Any = None) -> CliResult:
        return _run_cli(*args, input=input, env=env, home_env=tmp_home.env, timeout=timeout, cwd=cwd)

    return run


@pytest.fixture
def unique_repo(request: pytest.FixtureRequest) -> str:
    """A valid repository name unique to this test, e.g. ``t/test-push-index-3f9a1c``."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return f"t/{name or 'test'}-{secrets.token_hex(3)}"


# ---------------------------------------------------------------------------
# reporting: attach registry logs to failing tests


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed and call.when in ("setup", "call"):
        funcargs = getattr(item, "funcargs", {}) or {}
        for name, value in funcargs.items():
            if isinstance(value, Registry):
                report.sections.append(
                    (f"docker-registry log ({name}, {value.host})", value.log_tail(30))
                )
    return report


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [f"manifesto test cache: {_images.cache_dir()}"]
    if in_ci():
        lines.append("CI=true: missing system tools fail instead of skipping")
    return lines
