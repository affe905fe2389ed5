"""`manifesto verify REF [-f platforms.yaml] [--run [--command CMD]]` against a real registry.

Every child must be there with every blob (a blob or a child deleted from the repository is
named), its config must say the platform its entry claims, an attestation is listed and skipped,
and with -f the index must hold exactly the matrix's platforms. With --run each platform is pulled
into a private buildah store and run (arm64 under qemu): its `uname -m` must be that platform's,
so an image whose config says arm64 but whose binary is amd64 fails. Exit 0 or 1, a table.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from manifesto.oci.platform import Platform
from tests.cli.conftest import make_index_layout
from tests.publish.conftest import State
from tests.support import ArchImage, Registry, build_image, require
from tests.support.content import OCI_INDEX, Content
from tests.support.images import busybox_path
from tests.support.tools import missing

def _index(registry: Registry, repo: str, entries: list[dict]) -> str:
    with Content(registry, repo) as content:
        content.put(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode(), OCI_INDEX, "1")
    return f"{registry.host}/{repo}:1"


def _push(registry: Registry, repo: str, images: list[ArchImage], attest: bool = False) -> str:
    with Content(registry, repo) as content:
        entries = [content.arch_image(image) for image in images]
        if attest:
            entries.append(content.attestation(images[0].manifest_digest))
    return _index(registry, repo, entries)


def _rows(out: str) -> dict[str, tuple[str, str]]:
    """{platform: (result, notes)} from the table."""
    lines = out.splitlines()
    header = lines[0]
    at = {name: header.index(name) for name in ("PLATFORM", "DIGEST", "RESULT", "NOTES")}
    rows = {}
    for line in lines[1:]:
        rows[line[: at["DIGEST"]].strip()] = (line[at["RESULT"] : at["NOTES"]].strip(), line[at["NOTES"] :].strip())
    return rows


@pytest.fixture
def state(tmp_path: Path) -> State:
    return State.make(tmp_path / "state")


def test_a_complete_index_verifies_and_its_attestation_is_skipped(
    registry: Registry, arch_images: dict[str, ArchImage], state: State
) -> None:
    ref = _push(registry, "verify/good", [arch_images["amd64"], arch_images["arm64"], arch_images["s390x"]], attest=True)
    rc, out, err = state.run("verify", ref)
    assert rc == 0, out + err
    rows = _rows(out)
    assert rows["linux/amd64"][0] == "ok" and rows["linux/arm64/v8"][0] == "ok" and rows["linux/s390x"][0] == "ok", out
    assert "2 blobs present" in rows["linux/amd64"][1] and "config says linux/amd64" in rows["linux/amd64"][1]
    assert rows["attestation"] == ("skipped", "an attestation: not a platform, not checked"), out

    rc, out, err = state.run("verify", f"{registry.host}/verify/good@{arch_images['s390x'].manifest_digest}")
    assert rc == 0 and _rows(out)["linux/s390x"][0] == "ok", out + err  # one image, by digest


def test_a_missing_blob_or_child_fails_naming_it(
    registry: Registry, arch_images: dict[str, ArchImage], state: State
) -> None:
    amd64, arm64 = arch_images["amd64"], arch_images["arm64"]
    ref = _push(registry, "verify/lost", [amd64, arm64])
    content = Content(registry, "verify/lost")
    try:
        assert content.http.delete(f"/v2/verify/lost/blobs/{arm64.layer_digest}").status_code == 202
        assert content.http.delete(f"/v2/verify/lost/manifests/{amd64.manifest_digest}").status_code == 202
    finally:
        content.close()
    rc, out, err = state.run("verify", ref)
    assert rc == 1, out + err
    rows = _rows(out)
    assert rows["linux/arm64/v8"] == ("failed", f"blob {arm64.layer_digest} is missing"), out
    assert rows["linux/amd64"] == ("failed", "the manifest is not in the repository"), out
    errors = [line for line in err.splitlines() if line.startswith("manifesto: error:")]
    assert errors == [f"manifesto: error: {registry.host}/verify/lost:1: 2 of 2 entries failed verification (linux/amd64, linux/arm64/v8)"], err


def test_an_entry_whose_config_says_another_platform_fails(
    registry: Registry, arch_images: dict[str, ArchImage], state: State
) -> None:
    with Content(registry, "verify/liar") as content:
        entry = content.arch_image(arch_images["amd64"])
    entry["platform"] = {"architecture": "arm64", "os": "linux"}
    rc, out, _ = state.run("verify", _index(registry, "verify/liar", [entry]))
    assert rc == 1
    assert _rows(out)["linux/arm64"] == ("failed", "annotated as linux/arm64 but its config says linux/amd64"), out


def test_with_a_matrix_the_index_must_hold_exactly_its_platforms(
    tmp_path: Path, registry: Registry, arch_images: dict[str, ArchImage], state: State
) -> None:
    ref = _push(registry, "verify/matrix", [arch_images["amd64"], arch_images["arm64"], arch_images["ppc64el"]])
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    spec = tmp_path / "platforms.yaml"
    spec.write_text(textwrap.dedent(f"""\
        image: {registry.host}/verify/matrix
        tags: ["1"]
        platforms: [linux/amd64, linux/arm64, linux/s390x]
        """))  # fmt: skip
    rc, out, _ = state.run("verify", ref, "-f", spec)
    assert rc == 1
    rows = _rows(out)
    assert rows["linux/amd64"][0] == rows["linux/arm64/v8"][0] == "ok", out  # arm64 is arm64/v8
    assert rows["linux/ppc64le"] == ("failed", "2 blobs present; config says linux/ppc64le; not a platform of the matrix"), out
    assert rows["linux/s390x"] == ("missing", "a platform of the matrix, not in the index"), out

    spec.write_text(spec.read_text().replace("linux/s390x", "linux/ppc64le"))
    rc, out, err = state.run("verify", ref, "-f", spec)
    assert rc == 0, out + err


def test_an_oci_layout_is_verified_as_a_registry_is(tmp_path: Path, state: State) -> None:
    """`oci:DIR:TAG` and `oci:DIR@DIGEST` read the layout (its only tag when none is named and
    it has one); a blob missing from it fails; --run needs a registry."""
    lay = make_index_layout(tmp_path / "lay", ["amd64", "arm64"], attest="amd64")
    for ref in (lay.oci_ref, f"oci:{lay.layout}@{lay.index_digest}"):
        rc, out, err = state.run("verify", ref)
        assert rc == 0, out + err
        rows = _rows(out)
        assert rows["linux/amd64"][0] == rows["linux/arm64/v8"][0] == "ok" and rows["attestation"][0] == "skipped", out
    rc, _, err = state.run("verify", f"oci:{lay.layout}")
    assert rc == 2 and "the layout has 3 tags; name one as oci:DIR:TAG" in err, err
    rc, _, err = state.run("verify", lay.oci_ref, "--run")
    assert rc == 2 and "needs a registry reference" in err, err
    arm64 = lay.images["arm64"]
    (lay.layout / "blobs" / "sha256" / arm64.layer_digest.split(":", 1)[1]).unlink()
    rc, out, err = state.run("verify", lay.oci_ref)
    assert rc == 1 and _rows(out)["linux/arm64/v8"] == ("failed", f"blob {arm64.layer_digest} is missing"), out + err


def test_command_needs_run(registry: Registry, state: State) -> None:
    rc, _, err = state.run("verify", f"{registry.host}/verify/good:1", "--command", "true")
    assert rc == 2 and "manifesto: error: --command goes with --run" in err, err


def test_run_pulls_each_platform_and_its_machine_must_fit(
    tmp_path: Path, registry: Registry, arch_images: dict[str, ArchImage], state: State
) -> None:
    """amd64 natively and arm64 under qemu run and say their machine; an image whose config
    says arm64 but whose busybox is amd64's runs, says x86_64, and fails."""
    require("buildah")
    from manifesto.builders.binfmt import check

    if check([Platform.parse("linux/arm64")]):
        missing("no qemu binfmt handler for arm64 here (manifesto doctor --fix)")
    ref = _push(registry, "verify/run", [arch_images["amd64"], arch_images["arm64"]])
    rc, out, err = state.run("verify", ref, "--run")
    assert rc == 0, out + err
    rows = _rows(out)
    assert rows["linux/amd64"][1].endswith("runs: x86_64") and rows["linux/arm64/v8"][1].endswith("runs: aarch64"), out

    rc, out, err = state.run("verify", ref, "--run", "--command", "echo armv7l")
    assert rc == 1, out + err
    assert _rows(out)["linux/amd64"] == ("failed", "2 blobs present; config says linux/amd64; ran, but printed 'armv7l'"), out

    fake = build_image("arm64", tmp_path / "fake", busybox=busybox_path("amd64").read_bytes())
    ref = _push(registry, "verify/run-fake", [fake])
    rc, out, err = state.run("verify", ref, "--run")
    assert rc == 1, out + err
    assert _rows(out)["linux/arm64/v8"][1].endswith("ran, but printed 'x86_64'"), out
