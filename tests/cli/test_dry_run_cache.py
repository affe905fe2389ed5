"""`publish --dry-run` says which build cache each buildah/podman platform uses."""

from __future__ import annotations

import json
from pathlib import Path

CAVEAT = "cached and uncached builds give the same digests under SOURCE_DATE_EPOCH only when every step is deterministic"


def _project(root: Path, builder: str, cache: str = "") -> Path:
    """A two-platform project with a RUN step; `cache` is an extra `build:` entry."""
    root.mkdir()
    (root / "Dockerfile").write_text("FROM busybox\nRUN echo built > /built\n")
    spec = root / "platforms.yaml"
    extra = f", {cache}" if cache else ""
    spec.write_text(
        "image: 127.0.0.1:5000/team/app\ntags: ['1']\n"
        f"build: {{builder: {builder}{extra}}}\nplatforms: [linux/amd64, linux/s390x]\n"
    )
    return spec


def _cache_section(out: str) -> list[str]:
    lines = out.splitlines()
    return lines[lines.index("build cache") + 1 :]


def test_dry_run_names_each_platforms_store_and_the_registry_cache(run_cli, tmp_home, tmp_path):
    spec = _project(tmp_path / "app", "buildah", "cache: {from: 127.0.0.1:5000/cache/app, to: 127.0.0.1:5000/cache/app}")
    rc, out, err = run_cli("publish", "-f", str(spec), "--dry-run")
    assert rc == 0, err
    section = _cache_section(out)
    # a dry run probes nothing (no mount, nothing written): the driver is not known yet
    buildah = tmp_home.cache / "manifesto" / "buildah"
    assert not (buildah / "driver.json").exists() and not list(buildah.glob("*/linux-*")), list(buildah.rglob("*"))
    stores = buildah / "<overlay where it works, else vfs: probed at the first build>"
    for platform, store in (("linux/amd64", "linux-amd64"), ("linux/s390x", "linux-s390x")):
        (row,) = [line for line in section if line.split()[:1] == [platform]]
        assert f"uses the local cache store {stores / store};" in row, row
        assert row.endswith("registry cache from 127.0.0.1:5000/cache/app, to 127.0.0.1:5000/cache/app"), row
    assert section.count("  " + CAVEAT) == 1, out


def test_dry_run_names_the_driver_a_probe_kept(run_cli, tmp_home, tmp_path):
    from manifesto.builders import get_builder

    get_builder("buildah").storage_driver  # noqa: B018 — the first build's probe, kept on disk
    driver = json.loads((tmp_home.cache / "manifesto" / "buildah" / "driver.json").read_text())["driver"]
    rc, out, err = run_cli("publish", "-f", str(_project(tmp_path / "app", "buildah")), "--dry-run")
    assert rc == 0, err
    store = tmp_home.cache / "manifesto" / "buildah" / driver / "linux-amd64"
    assert f"uses the local cache store {store}" in out, out


def test_dry_run_cache_flags_override_the_file_and_no_cache_is_said(run_cli, tmp_home, tmp_path):
    spec = _project(tmp_path / "app", "podman", "cache: {from: 127.0.0.1:5000/cache/app}")
    rc, out, err = run_cli(
        "publish", "-f", str(spec), "--dry-run", "--no-cache", "--cache-to", "127.0.0.1:5000/cache/other"
    )
    assert rc == 0, err
    section = _cache_section(out)
    row = next(line for line in section if line.startswith("  linux/amd64"))
    assert "podman" in row and "--no-cache" in row and str(tmp_home.cache / "manifesto" / "podman") in row, row
    assert row.endswith("registry cache from 127.0.0.1:5000/cache/app, to 127.0.0.1:5000/cache/other"), row
    assert "registry cache" not in _cache_section(run_cli("publish", "-f", str(_project(tmp_path / "b", "buildah")), "--dry-run")[1])[0]


def test_dry_run_of_a_plan_without_a_caching_builder_says_nothing_of_a_cache(run_cli, tmp_path):
    spec = _project(tmp_path / "app", "buildx")
    rc, out, err = run_cli("publish", "-f", str(spec), "--dry-run")
    assert rc == 0, err
    assert "build cache" not in out and CAVEAT not in out
