"""What registries really serve: artifacts, odd configs, hostile strings — one clear answer each."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.cli import ok, sha256_of

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _blob(base: str, repo: str, data: bytes) -> str:
    r = httpx.post(f"{base}/v2/{repo}/blobs/uploads/")
    loc = httpx.URL(base).join(r.headers["location"]).copy_merge_params({"digest": sha256_of(data)})
    httpx.put(loc, content=data).raise_for_status()
    return sha256_of(data)


def _image(registry, repo: str, tag: str, config: bytes, config_type: str = "application/vnd.oci.image.config.v1+json") -> str:
    base = registry.url
    layer = b"layer of " + tag.encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config_type, "digest": _blob(base, repo, config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _blob(base, repo, layer), "size": len(layer)}],
    }
    raw = json.dumps(manifest).encode()
    httpx.put(f"{base}/v2/{repo}/manifests/{tag}", content=raw, headers={"Content-Type": OCI_MANIFEST}).raise_for_status()
    return f"{registry.host}/{repo}:{tag}"


def _config(**inner) -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "config": inner}).encode()


def test_an_artifact_manifest_is_shown_without_a_platform(cli, registry):
    ref = _image(registry, "odd/helm", "chart", b"{}", "application/vnd.cncf.helm.config.v1+json")
    out = ok(cli("inspect", ref))
    assert "MediaType: " + OCI_MANIFEST in out and "Platform:  unknown" in out
    assert "Artifact:  application/vnd.cncf.helm.config.v1+json" in out


@pytest.mark.parametrize(
    "config, expect",
    [
        (json.dumps({"architecture": "amd64", "os": "linux", "config": "oops"}).encode(), "config must be an object"),
        (_config(Labels=["a"]), "Labels must be an object"),
        (_config(Cmd=[1, 2]), "Cmd: must be a list of strings"),
    ],
)
def test_a_malformed_config_is_one_clear_error(cli, registry, config, expect):
    ref = _image(registry, "odd/configs", f"t{abs(hash(expect)) % 10_000}", config)
    rc, out, err = cli("inspect", ref)
    assert rc == 1 and err.count("manifesto: error:") == 1 and expect in err, err
    assert "internal error" not in err


def test_a_string_cmd_is_one_command(cli, registry):
    ref = _image(registry, "odd/cmd", "str", _config(Cmd="echo hi"))
    out = ok(cli("inspect", "-v", ref))
    assert "Cmd:       echo hi" in out


def test_control_characters_from_a_registry_never_reach_the_terminal(cli, registry):
    hostile = "linux\x1b]0;pwned\x07\x1b[2J"
    ref = _image(registry, "odd/escape", "x", json.dumps({"architecture": "amd64", "os": hostile}).encode())
    out = ok(cli("inspect", ref))
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b]0;pwned\\x07" in out  # shown, escaped


def test_a_list_named_without_a_tag_is_the_latest_list(cli, registry, library_repos):
    name = f"{registry.host}/odd/untagged"
    ok(cli("create", name, library_repos["amd64"].ref))
    assert "(local draft)" in ok(cli("inspect", f"{name}:latest"))
    ok(cli("rm", f"{name}:latest"))
    rc, _, err = cli("inspect", name)
    assert rc == 4, err  # gone under both names (and not in the registry either)


def test_annotate_with_an_empty_variant_removes_it(cli, registry, library_repos):
    name = f"{registry.host}/odd/variant:1"
    ok(cli("create", name, library_repos["arm64"].ref))
    assert "linux/arm64/v8" in ok(cli("inspect", name))
    ok(cli("annotate", name, library_repos["arm64"].ref, "--variant", ""))
    doc = json.loads(ok(cli("inspect", "--json", name)))
    assert doc["manifests"][0]["platform"] == {"architecture": "arm64", "os": "linux"}
