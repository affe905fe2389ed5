"""Start-up stays cheap where a command does not need the network (bench/ measures the time)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("httpx", "asyncio", "structlog", "tenacity", "keyring")


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.split()


def test_local_draft_verbs_do_not_load_the_registry_stack():
    # annotate and rm only edit drafts on disk
    assert _loaded_after("import manifesto.cli.lists") == []


def test_version_and_the_parser_load_nothing_heavy():
    assert _loaded_after("from manifesto.cli.main import build_parser; build_parser()") == []


def test_version_imports_no_argparse_and_no_typing():
    probe = (
        "from manifesto.cli.main import main\nmain(['--version'])\nimport sys\n"
        "print('argparse' in sys.modules, 'typing' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split()[-2:] == ["False", "False"]


def _rich_loaded_after(argv: list[str]) -> bool:
    """Run the CLI's main(argv) in a fresh interpreter (it must succeed); whether it imported
    rich, which only the live board and blob lines on a terminal need (cli/board.py)."""
    probe = (
        "import sys\nfrom manifesto.cli.main import main\n"
        f"try:\n    rc = main({argv!r})\nexcept SystemExit as e:\n    rc = e.code\n"
        "loaded = any(m == 'rich' or m.startswith('rich.') for m in sys.modules)\n"
        "print('rc', rc or 0, 'rich-loaded' if loaded else 'no-rich')"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split()[-3:-1] == ["rc", "0"], out.stdout + out.stderr
    return out.stdout.split()[-1] == "rich-loaded"


def test_version_help_and_inspect_do_not_load_the_board(registry, arch_images):
    from manifesto.jobs.copy import copy

    image = arch_images["amd64"]
    ref = registry.ref("t/startup-board") + ":1"
    copy(f"oci:{image.layout}:{image.tag}", ref)
    assert not _rich_loaded_after(["--version"])
    assert not _rich_loaded_after(["--help"])
    assert not _rich_loaded_after(["inspect", ref])


def test_copy_does_not_load_the_matrix():
    # `manifesto copy` reads no platforms.yaml: neither PyYAML nor the spec reader, the model or
    # the plan is imported (the builder names the parser offers come from matrix.names, plain
    # constants; the lazy manifesto.matrix package imports nothing else)
    for parser in ("build_parser()", "build_parser('copy')"):
        probe = (
            "from manifesto.cli.main import build_parser\n"
            f"args = {parser}.parse_args(['copy', 'a', 'b'])\n"
            "import manifesto.cli.publishing, manifesto.jobs.copy, sys\n"
            "print(sorted(m for m in sys.modules if m == 'yaml' or m.startswith('manifesto.matrix')))"
        )
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
        assert out.stdout.strip() in ("[]", "['manifesto.matrix', 'manifesto.matrix.names']")


# A plain-HTTP registry's client speaks HTTP/1.1 only: it loads neither h2 nor httpcore's HTTP/2
# modules (store/registry/tls.py: unverified_transport). A verified client made afterwards in the
# same process must still get HTTP/2 from a server that offers it.
_H2_PROBE = """
import asyncio, ssl, sys
import httpx
from manifesto.store.registry.client import RegistryClient

plain, tls, ca = sys.argv[1:4]

async def main():
    async with RegistryClient(plain) as client:
        await client.check_login()
        assert client.base == f"http://{plain}", client.base
    print("h2 after plain:", "h2" in sys.modules, any("http2" in m for m in sys.modules))
    async with httpx.AsyncClient(http2=True, verify=ssl.create_default_context(cafile=ca)) as http:
        resp = await http.get(f"https://{tls}/v2/")
    print("then:", resp.status_code, resp.http_version)

asyncio.run(main())
"""


def _tls_registry(directory):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.support.certs import self_signed
    from tests.support.registry import Registry

    directory.mkdir()
    key = ec.generate_private_key(ec.SECP256R1())
    cert, key_path = directory / "tls.crt", directory / "tls.key"
    cert.write_bytes(self_signed(key, "manifesto test registry", ip="127.0.0.1", days=1).public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    tls = {"http": {"tls": {"certificate": str(cert), "key": str(key_path)}}}
    return Registry(directory / "reg", extra_config=tls).start(), cert


def test_a_plain_http_registry_loads_no_http2_and_http2_still_works_after(registry, tmp_path):
    tls, ca = _tls_registry(tmp_path / "tls")
    try:
        out = subprocess.run(
            [sys.executable, "-c", _H2_PROBE, registry.host, tls.host, str(ca)],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
    finally:
        tls.stop()
    assert out.stdout.splitlines() == ["h2 after plain: False False", "then: 200 HTTP/2"]


# Retries are rare: tenacity (the retry policy's machinery) is imported on a first failed
# attempt only (store/registry/retry.py), and still retries when one comes. Likewise html, which
# only an HTML error page needs (store/registry/errors.py).
_RETRY_PROBE = """
import asyncio, sys
from manifesto.store.registry.client import RegistryClient

async def main(host):
    async with RegistryClient(host, backoff=0.01) as client:
        await client.check_login()
    return "tenacity" in sys.modules

print(asyncio.run(main(sys.argv[1])), "html" in sys.modules, asyncio.run(main(sys.argv[2])))
"""


def test_tenacity_is_loaded_only_when_a_request_is_retried(registry):
    from tests.support.faultproxy import FaultProxy, Respond

    with FaultProxy(registry.host) as proxy:
        proxy.add(Respond(503), path=r"^/v2/$", times=1)
        out = subprocess.run(
            [sys.executable, "-c", _RETRY_PROBE, registry.host, proxy.host],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        answers = [r.status for r in proxy.requests("GET", r"^/v2/$")]
    assert out.stdout.split() == ["False", "False", "True"]  # (html: only for HTML error pages)
    assert answers == [503, 200]  # retried after the 503, as before


def test_the_list_verbs_load_no_uuid():
    # random names come from os.urandom (fileio.random_hex): uuid would load `platform` and a C
    # module at every start for the same 16 random bytes
    probe = (
        "import manifesto.cli.lists, manifesto.cli.ci, manifesto.store.layout, manifesto.lists.push, sys\n"
        "print(sorted(m for m in ('uuid', 'platform') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout
