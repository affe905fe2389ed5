"""Credentials stay with the registry when it redirects: to blob storage, or from its token realm.

A real registry (htpasswd and token variants) sits behind `Front` (tests/support/redirect.py),
which answers blob GETs with a 307 to `Foreign` on 127.0.0.2 — another origin standing in for a
storage host or CDN — and can point the token realm there too. Foreign records every request
whole, so each test can check that no Authorization, password or token ever reached it.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator

import pytest

from manifesto.errors import AuthError
from manifesto.oci.digest import Digest
from manifesto.store.registry.client import RegistryClient
from manifesto.store.registry.lookup import Credential
from tests.support import ArchImage, Registry, push_image
from tests.support.redirect import Foreign, Front

REPO = "redirect/busybox"


@pytest.fixture(scope="module")
def image(arch_images: dict[str, ArchImage]) -> ArchImage:
    return arch_images["amd64"]


@pytest.fixture(scope="module")
def basic_reg(htpasswd_registry: Registry, image: ArchImage) -> Registry:
    push_image(image, f"{REPO}:1", htpasswd_registry)
    return htpasswd_registry


@pytest.fixture(scope="module")
def token_reg(_token_registry_module: Registry, image: ArchImage) -> Registry:
    push_image(image, f"{REPO}:1", _token_registry_module)
    return _token_registry_module


@pytest.fixture(params=["htpasswd", "token"])
def reg(request: pytest.FixtureRequest) -> Registry:
    if request.param == "token":
        registry = request.getfixturevalue("token_reg")
        registry.token_server.reset()
        return registry
    return request.getfixturevalue("basic_reg")


@pytest.fixture
def foreign() -> Iterator[Foreign]:
    server = Foreign().start()
    yield server
    server.stop()


@pytest.fixture
def front(reg: Registry, foreign: Foreign) -> Iterator[Front]:
    server = Front(reg.url, foreign).start()
    yield server
    server.stop()


def _secrets(reg: Registry) -> list[str]:
    user, password = reg.creds
    return [password, base64.b64encode(f"{user}:{password}".encode()).decode()]


def _assert_nothing_reached(foreign: Foreign, reg: Registry) -> None:
    assert foreign.seen, "the test never reached the foreign host"
    for seen in foreign.seen:
        assert "authorization" not in seen.headers, seen
        for secret in _secrets(reg):
            assert secret not in seen.text(), seen


async def _read_config(host: str, reg: Registry, image: ArchImage) -> tuple[bytes | AuthError, object]:
    """The manifest first (as every command does: the client learns the registry's challenge and
    sends credentials up front from then on), then the config blob, which the front redirects."""
    async with RegistryClient(host, credential=Credential(*reg.creds), backoff=0) as client:
        await client.get_manifest(REPO, "1")
        try:
            got: bytes | AuthError = await client.read_blob_bytes(REPO, Digest.parse(image.config_digest))
        except AuthError as e:
            got = e
        return got, client.auth._challenge


def test_a_blob_redirected_to_a_host_that_serves_it_arrives_without_our_credentials(reg, foreign, front, image):
    got, _ = asyncio.run(_read_config(front.netloc, reg, image))
    assert got == image.config_bytes
    blob_gets = [s for s in front.seen if s.method == "GET" and "/blobs/" in s.path]
    assert blob_gets and "authorization" in blob_gets[-1].headers  # the registry itself got it
    _assert_nothing_reached(foreign, reg)


@pytest.mark.parametrize("scheme", ["bearer", "basic"])
def test_a_challenge_from_the_host_a_blob_was_redirected_to_is_never_answered(reg, foreign, front, image, scheme):
    foreign.challenge = foreign.bearer_challenge() if scheme == "bearer" else 'Basic realm="foreign"'
    got, learned = asyncio.run(_read_config(front.netloc, reg, image))
    _assert_nothing_reached(foreign, reg)
    assert not [s for s in foreign.seen if s.path.startswith("/token")], "asked the foreign realm for a token"
    assert all(foreign.token not in s.text() for s in front.seen), "a foreign token reached the registry"
    assert isinstance(got, AuthError)
    assert str(got) == (
        f"blob {front.netloc}/{REPO}@{image.config_digest}: the registry sent us to {foreign.netloc}, "
        f"which asks for credentials; manifesto sends credentials only to {front.netloc}"
    )
    # the authenticator still knows the registry's own challenge, not the foreign one
    if reg.auth == "token":
        assert learned.scheme == "bearer" and learned.params["realm"] == reg.token_server.realm
    else:
        assert learned.scheme == "basic" and learned.params["realm"] != "foreign"


def test_cli_inspect_through_a_redirect(reg, foreign, front, image, tmp_home, run_cli):
    """Served elsewhere: inspect works. Challenged elsewhere: exit 3, one line, no credential sent."""
    user, password = reg.creds
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (tmp_home.docker_config / "config.json").write_text(json.dumps({"auths": {front.netloc: {"auth": auth}}}))
    ref = f"{front.netloc}/{REPO}:1"

    rc, out, err = run_cli("inspect", ref, timeout=60)
    assert rc == 0, err
    assert image.manifest_digest in out
    assert any(s.path.startswith("/blob/") for s in foreign.seen), "the config was not read through the redirect"

    foreign.challenge = foreign.bearer_challenge()
    rc, out, err = run_cli("inspect", ref, timeout=60)
    lines = err.strip().splitlines()
    assert rc == 3, err
    assert len(lines) == 1 and lines[0].startswith("manifesto: error: "), err
    assert f"sends credentials only to {front.netloc}" in lines[0] and foreign.netloc in lines[0]
    _assert_nothing_reached(foreign, reg)
    assert not [s for s in foreign.seen if s.path.startswith("/token")]


# ---- a token realm that redirects ---------------------------------------------------------------


@pytest.fixture
def realm_front(token_reg: Registry, foreign: Foreign) -> Iterator[Front]:
    token_reg.token_server.reset()
    server = Front(token_reg.url, foreign, redirect_blobs=False, redirect_realm=True).start()
    yield server
    server.stop()


def test_a_token_realm_redirecting_elsewhere_is_refused(token_reg, foreign, realm_front, image):
    """Not even the username (the `account` parameter) or a token of the other host's making."""

    async def run() -> None:
        async with RegistryClient(realm_front.netloc, credential=Credential(*token_reg.creds), backoff=0) as client:
            await client.blob_size(REPO, Digest.parse(image.config_digest))

    with pytest.raises(AuthError) as info:
        asyncio.run(run())
    assert not foreign.seen, "the realm redirect was followed"
    realm_hits = [s for s in realm_front.seen if s.path.startswith("/token")]
    assert realm_hits and all("authorization" in s.headers for s in realm_hits)  # the realm itself got it
    assert f"token service 127.0.0.1 redirected to {foreign.netloc.split(':')[0]}" in str(info.value)


def test_an_identity_token_is_never_posted_on_to_where_the_realm_redirects(token_reg, foreign, realm_front, image):
    refresh = "rt-never-leave-" + "x" * 16

    async def run() -> None:
        cred = Credential("<token>", refresh, kind="identity_token")
        async with RegistryClient(realm_front.netloc, credential=cred, backoff=0) as client:
            await client.blob_size(REPO, Digest.parse(image.config_digest))

    with pytest.raises(AuthError) as info:
        asyncio.run(run())
    assert all(refresh not in s.text() for s in foreign.seen), "the identity token was posted on"
    assert not foreign.seen
    assert [s.method for s in realm_front.seen if s.path.startswith("/token")] == ["POST"]
    assert f"token service 127.0.0.1 redirected to {foreign.netloc.split(':')[0]}" in str(info.value)
