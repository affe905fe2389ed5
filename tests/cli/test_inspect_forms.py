"""`inspect` like the tools people know: every reference form, --platform, --format, one --json
shape, and a list table that fits the terminal (short digests, entry annotations, image sizes,
attestations under the image they attest).

One OCI layout holds a two-platform index with a buildkit-style attestation of the amd64 image
(tag `multi`, attestation last in index order) and an index whose entries carry annotations
(tag `annotated`); both are copied into a real registry.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from manifesto.jobs.copy import copy
from tests.cli.conftest import IndexLayout, make_index_layout, tag_index
from tests.support.cli import ok
from tests.support.images import MT_OCI_INDEX

NOTE = "org.opencontainers.image.description"


def _size(n: int) -> str:  # render.size, spelled out: the test checks the code
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{int(n)} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


class Forms:
    def __init__(self, lay: IndexLayout, remote: str, annotated: bytes):
        self.lay = lay
        self.remote = remote  # registry REF of the `multi` index
        self.annotated = annotated

    def image(self, arch: str) -> Any:
        return self.lay.images[arch]

    def total(self, arch: str) -> int:
        img = self.image(arch)
        return len(img.config_bytes) + img.layer_size


@pytest.fixture(scope="module")
def forms(tmp_path_factory: pytest.TempPathFactory, registry: Any) -> Forms:
    layout = tmp_path_factory.mktemp("inspect-forms") / "lay"
    lay = make_index_layout(layout, ["amd64", "arm64"], attest="amd64", tag="multi")
    entries = []
    for arch in ("amd64", "arm64"):
        d = lay.images[arch].descriptor()
        d["annotations"] = {NOTE: f"busybox for {arch}"}
        entries.append(d)
    annotated = tag_index(layout, entries, "annotated")
    remote = registry.ref("t/inspect-forms", "multi")
    copy(lay.oci_ref, remote)
    copy(f"oci:{layout}:annotated", registry.ref("t/inspect-forms", "annotated"))
    return Forms(lay, remote, annotated)


def _blobs(manifest: bytes) -> int:
    doc = json.loads(manifest)
    return sum(d["size"] for d in [doc["config"], *doc["layers"]])


def _field(out: str, name: str) -> str | None:
    m = re.search(rf"^{name}:\s+(.*)$", out, re.M)
    return m.group(1) if m else None


def _rows(out: str) -> list[str]:
    """The table's rows (after the header line), in order."""
    lines = out.split("\n\n", 1)[1].splitlines()
    assert lines[0].startswith("PLATFORM"), out
    return lines[1:]


# ---- every reference form ------------------------------------------------------------------------


def test_every_reference_form(forms: Forms, registry: Any, cli: Any, cli_bytes: Any, arch_images: Any) -> None:
    lay = forms.lay
    # oci:DIR:TAG, oci:DIR@DIGEST, docker://REF and REF all name the same index
    for ref in (lay.oci_ref, f"oci:{lay.layout}@{lay.index_digest}", f"docker://{forms.remote}", forms.remote):
        rc, raw, err = cli_bytes("inspect", "--raw", ref)
        assert rc == 0 and raw == lay.index_bytes, f"{ref}: {err}"
        assert _field(ok(cli("inspect", ref)), "Digest") == lay.index_digest, ref
    doc = json.loads(ok(cli("inspect", "--json", lay.oci_ref)))
    assert doc["name"] == lay.oci_ref and doc["digest"] == lay.index_digest
    assert doc["manifests"][0]["imageSize"] == forms.total("amd64")  # children read from the layout too
    # oci:DIR: the layout's only tag
    single = arch_images["amd64"]
    out = ok(cli("inspect", f"oci:{single.layout}"))
    assert _field(out, "Digest") == single.manifest_digest and _field(out, "Platform") == "linux/amd64", out


def test_reference_form_errors(forms: Forms, cli: Any, one_line_error: Any, tmp_path: Any) -> None:
    one_line_error(cli("inspect", f"oci:{forms.lay.layout}"), 2, "tags; name one as oci:DIR:TAG")
    one_line_error(cli("inspect", f"oci:{tmp_path}/none:1"), 4, "does not exist")
    one_line_error(cli("inspect", f"oci:{forms.lay.layout}:nope"), 4)
    # a verb that takes only registry references says what it got, not "bad registry port"
    line = one_line_error(cli("rm", f"oci:{forms.lay.layout}:multi"), 2, "OCI layout")
    assert "port" not in line


# ---- --platform ---------------------------------------------------------------------------------------


def test_platform_picks_the_image_of_a_list(forms: Forms, cli: Any, cli_bytes: Any, one_line_error: Any) -> None:
    arm = forms.image("arm64")
    for ref in (forms.remote, forms.lay.oci_ref):
        rc, raw, err = cli_bytes("inspect", "--raw", "--platform", "linux/arm64", ref)
        assert rc == 0 and raw == arm.manifest_bytes, err
        out = ok(cli("inspect", "--platform", "linux/aarch64", ref))  # matched as containerd normalizes
        assert _field(out, "Digest") == arm.manifest_digest and _field(out, "Platform") == "linux/arm64/v8", out
        assert _field(out, "Index") == forms.lay.index_digest, out
    doc = json.loads(ok(cli("inspect", "--json", "--platform", "linux/arm64/v8", forms.remote)))
    assert doc["digest"] == arm.manifest_digest and doc["platform"]["architecture"] == "arm64"
    assert doc["index"]["digest"] == forms.lay.index_digest
    assert doc["image"] == json.loads(arm.config_bytes)
    assert ok(cli("inspect", "--platform", "linux/arm64", "--format", "{{.Digest}}", forms.remote)) == arm.manifest_digest + "\n"
    line = one_line_error(cli("inspect", "--platform", "linux/s390x", forms.remote), 4, "no linux/s390x image")
    assert "linux/amd64" in line and "unknown" not in line  # the attestation is no platform to offer
    # a single image is kept when it is the platform, refused when not
    single = f"{forms.remote.rsplit(':', 1)[0]}@{arm.manifest_digest}"
    assert _field(ok(cli("inspect", "--platform", "linux/arm64", single)), "Digest") == arm.manifest_digest
    one_line_error(cli("inspect", "--platform", "linux/amd64", single), 4, "not linux/amd64")
    one_line_error(cli("inspect", "--platform", "linux/arm64/v7", single), 2, "arm64")  # impossible platform


# ---- --format -----------------------------------------------------------------------------------------


def test_format_templates(forms: Forms, cli: Any) -> None:
    ref, lay = forms.remote, forms.lay
    amd, arm = forms.image("amd64"), forms.image("arm64")

    def fmt(template: str, *refs: str) -> str:
        return ok(cli("inspect", "--format", template, *(refs or (ref,))))

    assert fmt("{{.Digest}}") == lay.index_digest + "\n"  # one final newline added
    assert fmt("{{.MediaType}} {{.Size}}") == f"{MT_OCI_INDEX} {len(lay.index_bytes)}\n"
    assert json.loads(fmt("{{json .Manifest}}")) == json.loads(lay.index_bytes)
    assert json.loads(fmt("{{json .}}")) == json.loads(ok(cli("inspect", "--json", ref)))
    listing = fmt(
        "{{range .Manifests}}{{if .AttestationOf}}att{{else}}{{.Platform.Architecture}}{{end}}"
        " {{.Digest}} {{.ImageSize}}\n{{end}}"
    )
    assert listing == (
        f"amd64 {amd.manifest_digest} {forms.total('amd64')}\n"
        f"arm64 {arm.manifest_digest} {forms.total('arm64')}\n"
        f"att {lay.attestation['digest']} {_blobs(lay.attestation['manifest'])}\n"
    )
    assert fmt("{{range .Manifests}}{{println .Platform.OS}}{{end}}") == "linux\nlinux\nunknown\n"  # no extra newline
    note = fmt(f'{{{{range .Manifests}}}}{{{{index .Annotations "{NOTE}"}}}};{{{{end}}}}', ref.replace(":multi", ":annotated"))
    assert note == "busybox for amd64;busybox for arm64;\n"
    assert fmt('{{printf "%s has %d entries" .Name (len .Manifests)}}') == f"{ref} has 3 entries\n"
    # several REFs: one output each, each ending in a newline
    assert fmt("{{.Digest}}", ref, lay.oci_ref) == f"{lay.index_digest}\n{lay.index_digest}\n"
    # a single image: its config is .Image, its platform .Platform
    image = f"{ref.rsplit(':', 1)[0]}@{arm.manifest_digest}"
    described = fmt("{{.Platform.Architecture}}/{{.Platform.Variant}} {{.Image.os}} {{.ImageSize}}", image)
    assert described == f"arm64/v8 linux {forms.total('arm64')}\n"


@pytest.mark.parametrize(
    "template, says",
    [
        ("{{.Digset}}", "no field 'Digset'"),
        ("{{range .Manifests}}", "missing {{end}}"),
        ("{{.Digest", "unclosed action"),
        ("{{nope .}}", 'function "nope" not defined'),
        ("{{end}}", "unexpected {{end}}"),
    ],
)
def test_format_errors_are_usage_errors(template: str, says: str, forms: Forms, cli: Any, one_line_error: Any) -> None:
    one_line_error(cli("inspect", "--format", template, forms.remote), 2, says)


def test_a_bad_template_fails_before_any_fetch(cli: Any, one_line_error: Any, html_500: Any) -> None:
    one_line_error(cli("inspect", "--format", "{{if}}", f"{html_500.host}/some/repo:1"), 2, "needs an argument")
    assert html_500.hits == 0


# ---- --json ------------------------------------------------------------------------------------------

KEYS = {
    "name", "local", "mediaType", "digest", "size", "artifactType", "annotations", "subject", "platform",
    "config", "layers", "imageSize", "manifests", "index", "manifest", "image",
}


def test_json_has_one_shape(forms: Forms, cli: Any) -> None:
    image = f"{forms.remote.rsplit(':', 1)[0]}@{forms.image('amd64').manifest_digest}"
    one = json.loads(ok(cli("inspect", "--json", forms.remote)))
    assert isinstance(one, dict) and set(one) == KEYS
    assert one["layers"] is None and one["config"] is None and one["platform"] is None and one["image"] is None
    assert one["manifest"] == json.loads(forms.lay.index_bytes)
    entry = one["manifests"][2]
    assert entry["attestationOf"] == forms.image("amd64").manifest_digest and one["manifests"][0]["attestationOf"] is None
    several = json.loads(ok(cli("inspect", "--json", forms.remote, image)))
    assert isinstance(several, list) and [set(d) for d in several] == [KEYS, KEYS]
    assert several[1]["manifests"] is None and several[1]["imageSize"] == forms.total("amd64")
    assert several[1]["platform"] == {"architecture": "amd64", "os": "linux"}


# ---- the table --------------------------------------------------------------------------------------------


def test_list_table_short_digests_image_sizes_and_attestations_under_their_image(forms: Forms, cli: Any) -> None:
    amd, arm, att = forms.image("amd64"), forms.image("arm64"), forms.lay.attestation
    assert att is not None
    out = ok(cli("inspect", forms.remote))
    rows = _rows(out)
    short = [r.split()[0] if not r.startswith("attestation") else "attestation" for r in rows]
    assert short == ["linux/amd64", "attestation", "linux/arm64/v8"], out  # under the image it attests
    assert re.match(rf"linux/amd64\s+{amd.manifest_digest[:19]}\s+{re.escape(_size(forms.total('amd64')))}\s", rows[0]), out
    assert amd.manifest_digest not in out.split("\n\n", 1)[1], "a full digest in the table without --no-trunc"
    assert rows[1].startswith("attestation of linux/amd64") and att["digest"][:19] in rows[1]
    assert _size(len(amd.manifest_bytes)) not in rows[0], "the manifest's size, not the image's"
    full = _rows(ok(cli("inspect", "--no-trunc", forms.remote)))
    assert amd.manifest_digest in full[0] and arm.manifest_digest in full[2]


def test_entry_annotations_and_fitting_the_terminal(forms: Forms, cli: Any) -> None:
    ref = forms.remote.replace(":multi", ":annotated")
    wide = _rows(ok(cli("inspect", ref, env={"COLUMNS": "300"})))
    assert wide[0].endswith(f"{NOTE}=busybox for amd64"), wide
    narrow = ok(cli("inspect", ref, env={"COLUMNS": "80"}))
    assert all(len(line) <= 80 for line in narrow.split("\n\n", 1)[1].splitlines()), narrow
    assert _rows(narrow)[0].endswith("…"), narrow
    untrimmed = _rows(ok(cli("inspect", "--no-trunc", ref, env={"COLUMNS": "80"})))
    assert untrimmed[0].endswith(f"{NOTE}=busybox for amd64")


def test_platform_picks_the_image_of_a_local_draft(
    forms: Forms, registry: Any, cli: Any, cli_bytes: Any, unique_repo: str
) -> None:
    repo = forms.remote.rsplit(":", 1)[0]
    amd, arm = forms.image("amd64"), forms.image("arm64")
    target = registry.ref(unique_repo, "draft")
    ok(cli("create", target, f"{repo}@{amd.manifest_digest}", f"{repo}@{arm.manifest_digest}"))
    rc, raw, err = cli_bytes("inspect", "--raw", "--platform", "linux/arm64", target)
    assert rc == 0 and raw == arm.manifest_bytes, err
    doc = json.loads(ok(cli("inspect", "--json", "--platform", "linux/amd64", target)))
    draft = json.loads(ok(cli("inspect", "--json", target)))
    assert doc["digest"] == amd.manifest_digest and doc["index"]["digest"] == draft["digest"]
