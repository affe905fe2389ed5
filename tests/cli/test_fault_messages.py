"""What a user sees when the network fails: one line saying what happened, and exit 1.

Faults come from tests/support/faultproxy.py between the CLI and a real registry; the texts
checked are the ones the library builds ("connection lost while ... after N attempts",
"cannot reach HOST", the TLS line naming the fix).
"""

from __future__ import annotations

import os
import subprocess
import sys

from manifesto.transfer import BLOB_COPY_ATTEMPTS
from tests.store.test_fault_proxy import MIB, Image
from tests.store import test_tls_failures
from tests.support.faultproxy import Cut, FaultProxy
from tests.support.tools import REPO_ROOT

tls_registry = test_tls_failures.tls_registry  # the fixture, shared with the store tests


def test_a_manifest_cut_short_every_time_says_connection_lost_after_5_attempts(cli, one_line_error, registry) -> None:
    Image(registry, "messages/app", "1", 1000)
    with FaultProxy(registry.host) as proxy:
        proxy.add(Cut(after=20), method="GET", path="/manifests/1")
        result = cli("inspect", proxy.ref("messages/app", "1"), timeout=60)
        assert len(proxy.requests("GET", "/manifests/1")) == 5
    one_line_error(result, 1, f"connection lost while reading the manifest of {proxy.host}/messages/app:1 after 5 attempts")
    assert "cannot reach" not in result[2]


def test_a_copy_whose_source_always_breaks_says_so_once(cli, one_line_error, registry, registry_factory) -> None:
    image = Image(registry, "messages/src", "1", 2 * MIB)
    target = registry_factory()
    with FaultProxy(registry.host) as proxy:
        proxy.add(Cut(after=MIB), method="GET", path=image.layer_digest[7:])
        result = cli("copy", proxy.ref("messages/src", "1"), target.ref("messages/dst", "1"), timeout=60)
        assert len(proxy.requests("GET", image.layer_digest[7:])) == BLOB_COPY_ATTEMPTS
    one_line_error(
        result,
        1,
        f"connection lost while downloading blob {image.layer_digest} from {proxy.host}/messages/src "
        f"after {BLOB_COPY_ATTEMPTS} attempts",
    )


# The CLI, with the one fact that makes the loopback TLS registry count as a remote (verified)
# one patched before the client module is imported.
_AS_REMOTE = (
    "import sys\n"
    "import manifesto.oci.reference as reference\n"
    "reference.is_loopback_host = lambda registry: False\n"
    "from manifesto.cli.main import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def test_an_unverifiable_certificate_is_one_line_naming_the_fix(tmp_home, tmp_path, one_line_error, tls_registry) -> None:
    certs = tmp_path / "certs.d"
    env = {**os.environ, **tmp_home.env, "MANIFESTO_CERTS_D": str(certs), "NO_COLOR": "1", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", _AS_REMOTE, "inspect", f"{tls_registry.host}/app:1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    host = tls_registry.host
    one_line_error(
        (proc.returncode, proc.stdout, proc.stderr),
        1,
        f"{host}: TLS certificate verification failed (self-signed certificate); "
        f"put the registry's CA in {certs}/{host}/ca.crt or use --insecure",
    )


def test_doctor_does_not_call_a_registry_that_answered_unreachable(tmp_home, tmp_path, tls_registry) -> None:
    env = {**os.environ, **tmp_home.env, "MANIFESTO_CERTS_D": str(tmp_path), "NO_COLOR": "1", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", _AS_REMOTE, "doctor", "--image", f"{tls_registry.host}/x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    problems = [line for line in proc.stdout.splitlines() if tls_registry.host in line]
    assert problems == [
        f"problem: {tls_registry.host}: TLS certificate verification failed (self-signed certificate); "
        f"put the registry's CA in {tmp_path}/{tls_registry.host}/ca.crt or use --insecure"
    ], proc.stdout + proc.stderr
