"""An OCI layout (`oci:DIR[:TAG|@DIGEST]`) is a SOURCE like any registry reference: `create`
(a draft, pushed later from anywhere), `create --push` and `index add` read the entry from the
layout (exact bytes), and the push copies the child and its blobs from the layout into the
target repository. The list itself stays a registry reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli.conftest import make_index_layout
from tests.support import build_image
from tests.support.cli import OCI_INDEX, ok, pushed_digest, sha256_of


def _cli_in(run_cli: Any, cwd: Path, *args: Any) -> Any:
    return run_cli(*args, env={"MANIFESTO_KEYRING": "file"}, cwd=cwd)


def test_a_draft_from_a_layout_is_pushed_from_another_directory_with_every_blob(
    run_cli: Any, cli: Any, cli_bytes: Any, registry: Any, unique_repo: str, probe: Any, tmp_path: Path
) -> None:
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    elsewhere.mkdir()
    amd64 = build_image("amd64", work / "lay", tag="a")
    arm64 = build_image("arm64", work / "lay", tag="b")
    target = registry.ref(unique_repo, "1")
    # a relative layout path: the draft must remember the layout, not the directory it was named in
    ok(_cli_in(run_cli, work, "create", target, "oci:lay:a", f"oci:lay@{arm64.manifest_digest}"))
    ok(_cli_in(run_cli, elsewhere, "annotate", target, "oci:../work/lay:a", "--annotation", "org.example.from=layout"))
    draft = json.loads(ok(cli("inspect", "--json", target)))
    assert draft["local"] is True and [m["digest"] for m in draft["manifests"]] == [amd64.manifest_digest, arm64.manifest_digest]
    digest = pushed_digest(_cli_in(run_cli, elsewhere, "push", target))

    p = probe(registry)
    raw = p.get_manifest(unique_repo, "1").content
    assert sha256_of(raw) == digest
    children = json.loads(raw)["manifests"]
    assert children[0]["annotations"] == {"org.example.from": "layout"}
    assert [c["platform"]["architecture"] for c in children] == ["amd64", "arm64"]
    p.assert_complete(unique_repo, raw)  # every child and every blob of it, in the target repository
    for image in (amd64, arm64):  # the exact bytes the layout holds, not a re-serialization
        rc, child, err = cli_bytes("inspect", "--raw", f"{registry.ref(unique_repo)}@{image.manifest_digest}")
        assert rc == 0 and child == image.manifest_bytes, err


def test_create_push_from_a_layout_tag_and_a_layout_digest_with_report(
    cli: Any, registry: Any, unique_repo: str, probe: Any, tmp_path: Path
) -> None:
    lay = make_index_layout(tmp_path / "multi", ["amd64", "arm64"], tag="multi")
    s390x = build_image("s390x", tmp_path / "single", tag="only")
    target = registry.ref(unique_repo, "1")
    report, dotenv = tmp_path / "out" / "report.json", tmp_path / "out" / "build.env"
    result = cli(
        "create", "--push", "--tag", "latest", target, lay.oci_ref, f"oci:{s390x.layout}@{s390x.manifest_digest}",
        "--report", report, "--report-env", dotenv,
    )  # fmt: skip
    digest = pushed_digest(result)
    p = probe(registry)
    raw = p.get_manifest(unique_repo, "1").content
    assert sha256_of(raw) == digest and json.loads(raw)["mediaType"] == OCI_INDEX
    assert p.tag_digest(unique_repo, "latest") == digest
    wanted = [lay.images["amd64"].manifest_digest, lay.images["arm64"].manifest_digest, s390x.manifest_digest]
    assert [m["digest"] for m in json.loads(raw)["manifests"]] == wanted
    p.assert_complete(unique_repo, raw)

    data = json.loads(report.read_text())
    assert data["command"] == "create" and data["status"] == "ok" and data["index"]["digest"] == digest
    assert [x["digest"] for x in data["platforms"]] == wanted
    assert data["platforms"][2]["source"] == f"oci:{s390x.layout}@{s390x.manifest_digest}"
    env = dotenv.read_text()
    assert f"MANIFESTO_DIGEST={digest}\n" in env and "MANIFESTO_TAGS=1,latest\n" in env


def test_create_push_report_on_stdout_and_on_failure(cli: Any, registry: Any, unique_repo: str, tmp_path: Path) -> None:
    image = build_image("amd64", tmp_path / "lay", tag="x")
    rc, out, err = cli("create", "--push", registry.ref(unique_repo, "1"), f"oci:{image.layout}", "--report", "-")
    assert rc == 0, err
    data = json.loads(out)  # `--report -`: stdout is the report alone
    assert data["command"] == "create" and data["status"] == "ok"
    assert [x["digest"] for x in data["platforms"]] == [image.manifest_digest]
    # a source that is not there: the report still says so
    rc, out, err = cli("create", "--push", registry.ref(unique_repo, "2"), f"oci:{tmp_path}/absent", "--report-env", tmp_path / "e")
    assert rc == 4, err
    assert (tmp_path / "e").read_text().startswith("MANIFESTO_STATUS=failed\n")


def test_report_flags_need_push(cli: Any, registry: Any, unique_repo: str, one_line_error: Any, tmp_path: Path) -> None:
    image = build_image("amd64", tmp_path / "lay", tag="x")
    for flag in ("--report", "--report-env"):
        one_line_error(cli("create", registry.ref(unique_repo, "1"), image.oci_ref, flag, tmp_path / "r"), 2, f"{flag} needs --push")


def test_index_add_from_a_layout(cli: Any, registry: Any, unique_repo: str, probe: Any, tmp_path: Path) -> None:
    amd64 = build_image("amd64", tmp_path / "a", tag="only")
    arm64 = build_image("arm64", tmp_path / "b", tag="only")
    target = registry.ref(unique_repo, "1")
    ok(cli("index", "add", target, f"oci:{amd64.layout}"))  # a layout's only tag
    digest = ok(cli("index", "add", target, f"oci:{arm64.layout}:only")).strip()
    p = probe(registry)
    raw = p.get_manifest(unique_repo, "1").content
    assert sha256_of(raw) == digest
    assert [m["digest"] for m in json.loads(raw)["manifests"]] == [amd64.manifest_digest, arm64.manifest_digest]
    p.assert_complete(unique_repo, raw)


def test_a_missing_layout_or_tag_is_one_line(cli: Any, registry: Any, unique_repo: str, one_line_error: Any, tmp_path: Path) -> None:
    build_image("amd64", tmp_path / "lay", tag="a")
    build_image("arm64", tmp_path / "lay", tag="b")
    target = registry.ref(unique_repo, "1")
    for verb in (("create",), ("create", "--push"), ("index", "add")):
        one_line_error(cli(*verb, target, f"oci:{tmp_path}/absent:a"), 4, "no OCI image layout")
        one_line_error(cli(*verb, target, f"oci:{tmp_path}/lay:nope"), 4, "nope")
        one_line_error(cli(*verb, target, f"oci:{tmp_path}/lay"), 2, "2 tags")
    assert probe_nothing(registry, unique_repo)
    # the list itself is a registry reference, whatever its sources are
    one_line_error(cli("create", "--push", f"oci:{tmp_path}/out:1", f"oci:{tmp_path}/lay:a"), 2, "OCI layout")
    one_line_error(cli("index", "add", f"oci:{tmp_path}/out:1", f"oci:{tmp_path}/lay:a"), 2, "OCI layout")


def probe_nothing(registry: Any, repo: str) -> bool:
    """Nothing was written to `repo` (its tag list is unknown to the registry)."""
    import httpx

    return httpx.get(f"{registry.url}/v2/{repo}/tags/list", timeout=10).status_code == 404
