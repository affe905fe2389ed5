"""End to end: the registry verbs (tags, digest, tag, delete, config) and `create --push`.

The CLI runs as a subprocess against a real distribution 2.8 registry; outcomes are checked
from outside manifesto: raw HTTP, the registry's access log, the OCI layout's files.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time

import pytest

from tests.support import ARCHES
from tests.support.cli import OCI_INDEX, ok, pushed_digest, sha256_of
from tests.support.tools import cli_command

ACCEPT = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"


@pytest.fixture(scope="module")
def a_list(registry, library_repos, module_cli) -> dict:
    """A five-platform OCI index pushed once as verbs/list:1."""
    ref = registry.ref("verbs/list", "1")
    module_cli("create", ref, *[library_repos[a].ref for a in ARCHES])
    digest = module_cli("push", "--purge", ref).stdout.strip().splitlines()[-1]
    return {"ref": ref, "digest": digest}


def _put_tags(registry, repo: str, raw: bytes, media_type: str, tags: list[str]) -> None:
    """Tag a manifest straight through the API (not through the code under test)."""
    with registry.client() as http:
        for t in tags:
            r = http.put(f"/v2/{repo}/manifests/{t}", content=raw, headers={"Content-Type": media_type})
            assert r.status_code == 201, r.text


def _single(registry, arch_images, library_repos, repo: str, tags: list[str]):
    img = arch_images["amd64"]
    _put_tags(registry, repo, img.manifest_bytes, img.manifest_media_type, [])  # nothing yet
    # the blobs are mounted from the library repo by a copy through the API
    with registry.client() as http:
        for blob in (img.config_digest, img.layer_digest):
            r = http.post(f"/v2/{repo}/blobs/uploads/", params={"mount": blob, "from": library_repos["amd64"].repo})
            assert r.status_code == 201, r.text
    _put_tags(registry, repo, img.manifest_bytes, img.manifest_media_type, tags)
    return img


# ---- tags -----------------------------------------------------------------------------------


def test_tags_lists_every_tag(cli, registry, arch_images, library_repos, unique_repo):
    names = ["1", "1.0", "1.0.0", "a", "b", "latest", "z"]
    _single(registry, arch_images, library_repos, unique_repo, names)
    assert sorted(ok(cli("tags", registry.ref(unique_repo))).split()) == names


def test_tags_follows_next_links_with_the_page_size_asked(cli, registry):
    """distribution 2.8 does not page tags (3.0 and the big registries do): the pages come from
    a proxy in front of it, with relative and absolute `next` links, the last one a loop."""
    from tests.support.faultproxy import FaultProxy, Respond

    def page(tags: list[str], link: str | None) -> Respond:
        headers = {"Content-Type": "application/json"} | ({"Link": f'<{link}>; rel="next"'} if link else {})
        return Respond(200, body=json.dumps({"name": "paged/x", "tags": tags}).encode(), headers=headers)

    with FaultProxy(registry.host) as proxy:
        last = f"http://{proxy.host}/v2/paged/x/tags/list?n=2&last=d"
        proxy.add(page(["a", "b"], "/v2/paged/x/tags/list?n=2&last=b"), method="GET", path=r"/tags/list\?n=2$")
        proxy.add(page(["c", "d"], last), method="GET", path=r"last=b")
        proxy.add(page(["e"], last), method="GET", path=r"last=d")  # a link back to itself ends it
        out = ok(cli("tags", "--page-size", "2", proxy.ref("paged/x")))
        asked = [r.path + "?" + r.query for r in proxy.requests("GET", r"/tags/list")]
    assert out.split() == ["a", "b", "c", "d", "e"]
    assert len(asked) == 3 and all("n=2" in a for a in asked), asked


def test_tags_of_an_oci_layout_and_of_a_missing_repository(cli, registry, arch_images, one_line_error):
    img = arch_images["armhf"]
    assert ok(cli("tags", f"oci:{img.layout}")).split() == [img.tag]
    one_line_error(cli("tags", registry.ref("verbs/never-pushed")), 4, "not found")
    one_line_error(cli("tags", registry.ref("verbs/x", "1")), 2, "without a tag")


# ---- digest ---------------------------------------------------------------------------------


def test_digest_is_one_head(cli, registry, a_list, probe):
    p = probe(registry)
    mark = p.mark()
    assert ok(cli("digest", a_list["ref"])).strip() == a_list["digest"]
    reqs = [r for r in p.requests(mark) if "/manifests/" in r.path]
    assert [r.method for r in reqs] == ["HEAD"], reqs


def test_digest_falls_back_to_a_verified_get_when_head_names_no_digest(cli, registry, a_list):
    from tests.support.faultproxy import FaultProxy, Respond

    with FaultProxy(registry.host) as proxy:
        proxy.add(Respond(200, headers={"Content-Type": OCI_INDEX}), method="HEAD", path=r"/manifests/")
        ref = proxy.ref("verbs/list", "1")
        assert ok(cli("digest", ref)).strip() == a_list["digest"]
        assert [r.method for r in proxy.requests(path=r"/manifests/")] == ["HEAD", "GET"]


def test_digest_of_an_oci_layout_and_of_a_missing_tag(cli, registry, arch_images, one_line_error):
    img = arch_images["s390x"]
    assert ok(cli("digest", f"oci:{img.layout}:{img.tag}")).strip() == img.manifest_digest
    assert ok(cli("digest", f"oci:{img.layout}")).strip() == img.manifest_digest  # its only tag
    one_line_error(cli("digest", registry.ref("verbs/list", "nope")), 4, "not found")


# ---- tag ------------------------------------------------------------------------------------


def test_tag_puts_the_same_bytes_under_each_new_tag_without_uploading(cli, registry, a_list, unique_repo, probe):
    p = probe(registry)
    src = registry.ref("verbs/list", "1")
    mark = p.mark()
    out = ok(cli("tag", src, "2", "stable", registry.ref("verbs/list", "3")))
    assert out.strip() == a_list["digest"]
    for t in ("2", "stable", "3"):
        r = p.get_manifest("verbs/list", t)
        assert sha256_of(r.content) == a_list["digest"], t
    writes = [r for r in p.requests(mark) if r.method in ("POST", "PATCH", "PUT")]
    assert sorted(r.path for r in writes) == sorted(f"/v2/verbs/list/manifests/{t}" for t in ("2", "stable", "3"))
    again = cli("tag", src, "2")
    assert ok(again).strip() == a_list["digest"] and "unchanged" in again.stderr


def test_tag_stays_in_its_repository(cli, registry, a_list, one_line_error):
    src = a_list["ref"]
    one_line_error(cli("tag", src, registry.ref("verbs/other", "1")), 2, "same repository")
    one_line_error(cli("tag", src, f"{registry.ref('verbs/list')}@{a_list['digest']}"), 2, "not a digest")


def test_tag_in_an_oci_layout(cli, tmp_path, arch_images):
    import shutil

    img = arch_images["amd64"]
    layout = tmp_path / "layout"
    shutil.copytree(img.layout, layout)
    assert ok(cli("tag", f"oci:{layout}:{img.tag}", "v2", f"oci:{layout}:v3")).strip() == img.manifest_digest
    index = json.loads((layout / "index.json").read_bytes())
    tagged = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in index["manifests"]}
    assert tagged == {img.tag: img.manifest_digest, "v2": img.manifest_digest, "v3": img.manifest_digest}


# ---- delete ---------------------------------------------------------------------------------


def test_delete_needs_yes_off_a_terminal(cli, registry, arch_images, library_repos, unique_repo, one_line_error, probe):
    img = _single(registry, arch_images, library_repos, unique_repo, ["1"])
    line = one_line_error(cli("delete", registry.ref(unique_repo, "1")), 2, "--yes")
    assert img.manifest_digest in line  # it says what it would delete
    assert probe(registry).manifest_status(unique_repo, "1") == 200


def test_delete_resolves_a_tag_and_deletes_by_digest(cli, registry, arch_images, library_repos, unique_repo, probe):
    img = _single(registry, arch_images, library_repos, unique_repo, ["1", "also"])
    p = probe(registry)
    mark = p.mark()
    result = cli("delete", "--yes", registry.ref(unique_repo, "1"))
    ok(result)
    assert img.manifest_digest in result.stderr and "Deleted" in result.stderr
    deletes = [r for r in p.requests(mark) if r.method == "DELETE"]
    assert [(r.path, r.status) for r in deletes] == [(f"/v2/{unique_repo}/manifests/{img.manifest_digest}", 202)]
    for ref in ("1", "also", img.manifest_digest):
        assert p.manifest_status(unique_repo, ref) == 404


def test_delete_on_a_registry_that_does_not_allow_it(cli, registry_factory, arch_images, one_line_error):
    from tests.support import push_image

    reg = registry_factory(extra_config={"storage": {"delete": {"enabled": False}}})
    ref = push_image(arch_images["amd64"], "verbs/keep:1", reg)
    one_line_error(cli("delete", "--yes", ref), 1, "does not allow deleting")


def test_delete_refuses_an_oci_layout(cli, arch_images, one_line_error):
    img = arch_images["amd64"]
    one_line_error(cli("delete", "--yes", f"oci:{img.layout}:{img.tag}"), 2, "registry")


def _on_terminal(args: list[str], answer: bytes, env: dict[str, str]) -> tuple[int, bytes]:
    """Run the CLI with stdin and stderr on a pseudo-terminal, answering its question."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([*cli_command(), *args], stdin=slave, stderr=slave, stdout=subprocess.PIPE, env=env)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while b"[y/N]" not in seen and time.monotonic() < deadline and proc.poll() is None:
            if select.select([master], [], [], 0.5)[0]:
                seen += os.read(master, 4096)
        os.write(master, answer)
        proc.wait(timeout=60)
        while select.select([master], [], [], 0.2)[0]:
            try:
                seen += os.read(master, 4096)
            except OSError:
                break
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, seen


def test_delete_asks_on_a_terminal(registry, arch_images, library_repos, unique_repo, probe, tmp_home):
    img = _single(registry, arch_images, library_repos, unique_repo, ["1"])
    env = {**os.environ, **tmp_home.env, "MANIFESTO_KEYRING": "file", "NO_COLOR": "1"}
    ref = registry.ref(unique_repo, "1")
    rc, seen = _on_terminal(["delete", ref], b"n\n", env)
    assert rc == 1 and b"[y/N]" in seen and img.manifest_digest.encode() in seen, seen
    assert probe(registry).manifest_status(unique_repo, "1") == 200
    rc, seen = _on_terminal(["delete", ref], b"y\n", env)
    assert rc == 0, seen
    assert probe(registry).manifest_status(unique_repo, img.manifest_digest) == 404


# ---- config ---------------------------------------------------------------------------------


def test_config_of_an_image_is_its_exact_bytes(cli_bytes, library_repos, arch_images):
    rc, out, err = cli_bytes("config", library_repos["ppc64el"].ref)
    assert rc == 0, err
    assert out == arch_images["ppc64el"].config_bytes


def test_config_of_a_list_takes_the_platform_asked_for_else_the_hosts(cli_bytes, a_list, arch_images, one_line_error):
    rc, out, err = cli_bytes("config", "--platform", "linux/arm64", a_list["ref"])
    assert rc == 0, err
    assert out == arch_images["arm64"].config_bytes
    rc, out, err = cli_bytes("config", a_list["ref"])  # this host is amd64
    assert rc == 0 and out == arch_images["amd64"].config_bytes and "linux/amd64" in err, err
    one_line_error(cli_bytes("config", "--platform", "linux/mips64le", a_list["ref"]), 4, "linux/arm/v7")


def test_config_with_another_platform_than_the_image_is_not_found(cli_bytes, library_repos, one_line_error):
    one_line_error(cli_bytes("config", "--platform", "linux/s390x", library_repos["amd64"].ref), 4, "linux/amd64")


def test_config_of_an_oci_layout(cli_bytes, arch_images):
    img = arch_images["armhf"]
    rc, out, err = cli_bytes("config", f"oci:{img.layout}:{img.tag}")
    assert rc == 0 and out == img.config_bytes, err


# ---- create --push --------------------------------------------------------------------------


def test_create_push_pushes_the_list_in_one_process_leaving_no_draft(cli, registry, library_repos, unique_repo, probe, tmp_home):
    target = registry.ref(unique_repo, "1")
    result = cli("create", "--push", "--tag", "latest", target, *[library_repos[a].ref for a in ARCHES])
    digest = pushed_digest(result)
    p = probe(registry)
    raw = p.get_manifest(unique_repo, "1").content
    assert sha256_of(raw) == digest and json.loads(raw)["mediaType"] == OCI_INDEX
    assert p.tag_digest(unique_repo, "latest") == digest
    assert len(p.assert_complete(unique_repo, raw)) == len(ARCHES)
    drafts = tmp_home.drafts
    assert not drafts.exists() or not [f for f in drafts.rglob("*") if f.is_file() and not f.name.endswith(".lock")]


def test_create_push_refuses_what_push_refuses_and_tags_nothing(
    cli, registry, library_repos, docker_arch_images, unique_repo, probe, one_line_error
):
    from tests.support import push_image

    target = registry.ref(unique_repo, "1")
    other_amd64 = push_image(docker_arch_images["amd64"], "verbs/docker-amd64:1", registry)
    one_line_error(cli("create", "--push", target, library_repos["amd64"].ref, other_amd64), 2, "refusing to push")
    assert probe(registry).manifest_status(unique_repo, "1") == 404


def test_create_tag_needs_push_and_push_excludes_amend(cli, registry, library_repos, unique_repo, one_line_error):
    target = registry.ref(unique_repo, "1")
    one_line_error(cli("create", "--tag", "x", target, library_repos["amd64"].ref), 2, "--push")
    one_line_error(cli("create", "--push", "--amend", target, library_repos["amd64"].ref), 2, "--amend")


# ---- annotate says what it changed ----------------------------------------------------------


def test_annotate_says_what_it_changed(cli, registry, library_repos, unique_repo):
    target = registry.ref(unique_repo, "1")
    armhf = library_repos["armhf"].ref
    ok(cli("create", target, armhf))
    out = ok(cli("annotate", target, armhf, "--arch", "arm", "--variant", "v6", "--annotation", "org.x=y"))
    assert out.startswith(f"Annotated {armhf} (sha256:") and out.rstrip().endswith(": variant v7 → v6, annotation org.x=y"), out
    out = ok(cli("annotate", target, armhf, "--variant", "v6", "--annotation", "org.x=y"))
    assert out.startswith("Nothing changed in "), out
    out = ok(cli("annotate", target, armhf, "--os-version", "10.0", "--arch", "arm64", "--index-annotation", "org.list=1"))
    assert out.rstrip().endswith(": arch arm → arm64, variant v6 → (none), os.version → 10.0, list annotation org.list=1"), out


def test_delete_asks_a_token_registry_for_the_delete_scope(cli, token_registry, arch_images, unique_repo, probe, one_line_error):
    from tests.support import push_image
    from tests.support.tokenserver import default_acl

    reg, ts = token_registry, token_registry.token_server
    ref = push_image(arch_images["amd64"], f"{unique_repo}:1", reg, creds=reg.creds)
    ok(cli("login", "-u", reg.username, "--password-stdin", reg.host, input=reg.password))
    ts.configure(acl=lambda user, repo: {"pull", "push"} if user else set())
    one_line_error(cli("delete", "--yes", ref), 3, "access denied")
    ts.configure(acl=default_acl)
    ok(cli("delete", "--yes", ref))
    assert probe(reg).manifest_status(unique_repo, "1") == 404
