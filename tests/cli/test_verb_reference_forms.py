"""Every verb reads references through the one parser: `docker://REF` wherever a registry
reference goes, `oci:DIR[:TAG|@DIGEST]` wherever a layout can be (copy, inspect), and a clear
one-line error (not "bad registry port") where a layout cannot be."""

from __future__ import annotations

import json
from typing import Any

from tests.cli.conftest import make_index_layout
from tests.support.cli import ok, pushed_digest, sha256_of


def test_copy_reads_a_layout_by_digest_and_refuses_a_digest_destination(
    registry: Any, cli: Any, cli_bytes: Any, one_line_error: Any, unique_repo: str, tmp_path: Any
) -> None:
    lay = make_index_layout(tmp_path / "lay", ["amd64", "arm64"], tag="multi")
    target = registry.ref(unique_repo, "by-digest")
    assert pushed_digest(cli("copy", f"oci:{lay.layout}@{lay.index_digest}", target)) == lay.index_digest
    rc, raw, err = cli_bytes("inspect", "--raw", f"docker://{target}")
    assert rc == 0 and raw == lay.index_bytes, err
    # docker://REF as a copy source, into a layout tag; then that layout read back by digest
    out = tmp_path / "out"
    ok(cli("copy", f"docker://{target}", f"oci:{out}:copied"))
    rc, raw, err = cli_bytes("inspect", "--raw", f"oci:{out}@{lay.index_digest}")
    assert rc == 0 and sha256_of(raw) == lay.index_digest, err
    one_line_error(cli("copy", target, f"oci:{out}@{lay.index_digest}"), 2, "copy to a tag, not a digest")
    top = json.loads((out / "index.json").read_bytes())
    names = [m["annotations"]["org.opencontainers.image.ref.name"] for m in top["manifests"]]
    assert names == ["copied"], "a refused copy tagged the layout"


def test_list_verbs_take_docker_transport_references(registry: Any, cli: Any, library_repos: Any, unique_repo: str) -> None:
    target = registry.ref(unique_repo, "1")
    ok(cli("create", f"docker://{target}", f"docker://{library_repos['amd64'].ref}"))
    doc = json.loads(ok(cli("inspect", "--json", target)))
    assert doc["local"] is True and [m["digest"] for m in doc["manifests"]] == [library_repos["amd64"].digest]
    ok(cli("push", f"docker://{target}"))
    ok(cli("rm", f"docker://{target}"))


def test_a_layout_where_only_a_registry_will_do(cli: Any, one_line_error: Any, tmp_path: Any) -> None:
    for argv in (("create", f"oci:{tmp_path}:x", "busybox"), ("push", f"oci:{tmp_path}:x")):
        line = one_line_error(cli(*argv), 2, "OCI layout")
        assert "port" not in line, line
