"""A publish and a copy on a terminal: the live board and per-blob byte progress.

The CLI runs in a pseudo-terminal (stderr on the pty's slave side, stdout a pipe for the digest)
against a real registry, with the native builder (FROM scratch + COPY: no tool, no qemu). The
board is redrawn in place, so only what must appear somewhere is checked, never exact frames.
Byte progress is also checked at library level, on transfer.Copier.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
import threading
from pathlib import Path

import pytest

from manifesto import transfer
from manifesto.oci.descriptor import Descriptor
from manifesto.oci.digest import Digest
from manifesto.store.layout import LayoutStore
from manifesto.store.registry.client import RegistryClient
from manifesto.transfer import Copier, Place
from tests.jobs.conftest import write_matrix
from tests.support import Registry
from tests.support.tools import cli_command

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def _on_pty(args: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str, str]:
    """Run the CLI with stderr on a 120-column pseudo-terminal: (rc, stdout, stderr's text)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    full = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")}
    full.update(env, TERM="xterm", NO_COLOR="1")
    proc = subprocess.Popen(
        [*cli_command(), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=full
    )
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=10)
        os.close(master)
    return proc.returncode, out.decode(), _ANSI.sub("", b"".join(chunks).decode(errors="replace"))


def test_publish_on_a_terminal_draws_a_row_per_platform(tmp_home, registry: Registry, unique_repo, tmp_path):
    spec = write_matrix(tmp_path, registry.ref(unique_repo), platforms=("linux/amd64", "linux/arm64/v8"))
    rc, out, err = _on_pty(["publish", "-f", str(spec)], {**tmp_home.env, "MANIFESTO_KEYRING": "file"})
    assert rc == 0, err
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", out)
    for platform in ("linux/amd64", "linux/arm64/v8"):
        assert re.search(rf"{re.escape(platform)}\s+✓ verified\s+\d+ s", err), err
    assert not re.search(r"^\d\d:\d\d:\d\d ", err, re.M), err  # the board, not the log's lines
    assert re.search(r"^linux/amd64\s+✓\s+sha256:", err, re.M), err  # then the summary table


def test_a_failed_platform_shows_failed_and_its_full_log(tmp_home, registry: Registry, unique_repo, tmp_path):
    spec = write_matrix(
        tmp_path,
        registry.ref(unique_repo),
        platforms=("linux/amd64", f"platform: linux/arm64/v8\n    dockerfile: {tmp_path / 'Dockerfile.bad'}"),
    )
    (tmp_path / "Dockerfile.bad").write_text("FROM scratch\nCOPY missing /missing\n")
    rc, out, err = _on_pty(["publish", "-f", str(spec), "--jobs", "1"], {**tmp_home.env, "MANIFESTO_KEYRING": "file"})
    assert rc != 0 and out == ""
    assert re.search(r"linux/arm64/v8\s+✗ failed", err), err
    assert "---- linux/arm64/v8: build log ----" in err
    assert "COPY missing /missing" in err.split("---- linux/arm64/v8: build log ----", 1)[1]
    assert "manifesto: error:" in err


def test_copy_on_a_terminal_shows_a_line_per_blob(tmp_home, registry: Registry, unique_repo, arch_images):
    image = arch_images["amd64"]
    rc, out, err = _on_pty(
        ["copy", f"oci:{image.layout}:{image.tag}", registry.ref(unique_repo) + ":1"],
        {**tmp_home.env, "MANIFESTO_KEYRING": "file"},
    )
    assert rc == 0, err
    assert out.strip() == image.manifest_digest
    assert re.search(r"Copying blob [0-9a-f]{12} \(.*\)", err), err


def test_push_on_a_terminal_shows_a_line_per_blob(tmp_home, registry: Registry, fresh_registry: Registry, unique_repo, arch_images):
    """Children from another registry are streamed: each blob gets its live line, as in copy."""
    from tests.support import push_image

    image = arch_images["amd64"]
    source = push_image(image, f"{unique_repo}:src", registry)
    env = {**tmp_home.env, "MANIFESTO_KEYRING": "file"}
    target = fresh_registry.ref(unique_repo, "1")
    rc, _, err = _on_pty(["create", target, source], env)
    assert rc == 0, err
    rc, out, err = _on_pty(["push", target], env)
    assert rc == 0, err
    assert out.strip().startswith("sha256:")
    assert re.search(r"Copying blob [0-9a-f]{12} \(.*\)", err), err


def test_copy_off_a_terminal_adds_nothing(cli, registry: Registry, unique_repo, arch_images):
    image = arch_images["amd64"]
    rc, out, err = cli("copy", f"oci:{image.layout}:{image.tag}", registry.ref(unique_repo) + ":1")
    assert rc == 0, err
    assert "Copying blob" not in err


# ---- the library: transfer.Copier's on_bytes ---------------------------------------------------------


def _layout_with_blob(directory: Path, data: bytes) -> tuple[LayoutStore, Descriptor]:
    store = LayoutStore(directory, create=True)
    descriptor = Descriptor("application/octet-stream", Digest.of(data), len(data))
    source = directory / "blob.bin"
    source.write_bytes(data)
    store.add_blob(descriptor, source)
    return store, descriptor


@pytest.mark.parametrize("source_kind", ["layout file", "registry stream"])
def test_copier_reports_increasing_bytes_ending_at_the_size(
    registry: Registry, unique_repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source_kind: str
):
    monkeypatch.setattr(transfer, "BYTES_EVERY", 0.0)  # every chunk: the order is what is checked
    data = os.urandom(3 * 1024 * 1024 + 17)
    layout, descriptor = _layout_with_blob(tmp_path / "layout", data)
    seen: list[tuple[Digest, int, int]] = []

    async def run() -> None:
        async with RegistryClient(registry.host) as src, RegistryClient(registry.host) as dst:
            source = Place(layout, "")
            if source_kind == "registry stream":  # another client: streamed, not mounted
                await src.write_blob(unique_repo + "-src", descriptor, tmp_path / "layout" / "blob.bin")
                source = Place(src, unique_repo + "-src")
            await Copier(Place(dst, unique_repo), on_bytes=lambda *a: seen.append(a)).blob(source, descriptor)
            assert await dst.blob_size(unique_repo, descriptor.digest) == len(data)

    asyncio.run(run())
    assert {d for d, _, _ in seen} == {descriptor.digest}
    assert {t for _, _, t in seen} == {len(data)}
    done = [n for _, n, _ in seen]
    assert done[0] == 0 and done[-1] == len(data) and len(done) > 2
    assert done == sorted(done)


def test_copier_throttles_its_reports(registry: Registry, unique_repo: str, tmp_path: Path):
    data = os.urandom(2 * 1024 * 1024)
    layout, descriptor = _layout_with_blob(tmp_path / "layout", data)
    seen: list[int] = []

    async def run() -> None:  # streamed from the registry: it hands over chunks of at most 64 KiB
        async with RegistryClient(registry.host) as src, RegistryClient(registry.host) as dst:
            await src.write_blob(unique_repo + "-src", descriptor, tmp_path / "layout" / "blob.bin")
            copier = Copier(Place(dst, unique_repo), on_bytes=lambda d, n, t: seen.append(n))
            await copier.blob(Place(src, unique_repo + "-src"), descriptor)

    asyncio.run(run())
    assert seen[0] == 0 and seen[-1] == len(data)
    assert len(seen) < 10  # a few a second, not one per chunk (32 and more)


# ---- from blob bytes to a platform's pushing events, and what a log makes of them ----------------


def test_push_tally_turns_blob_bytes_into_pushing_events_per_platform():
    from manifesto.cli.board import Row
    from manifesto.cli.progress import Lines
    from manifesto.jobs import progress

    events: list[progress.Event] = []
    tally = progress.PushTally(events.append)
    tally.start("linux/amd64", ["sha256:base", "sha256:app"], 3000)
    tally.start("linux/arm64/v8", ["sha256:base"], 2000)
    tally("sha256:base", 500, 1000)  # shared: counts for both
    tally("sha256:app", 1500, 1500)
    tally.finish("linux/arm64/v8")
    tally("sha256:base", 1000, 1000)
    got = [(e.platform, e.phase, e.done, e.size) for e in events]
    assert got == [
        ("linux/amd64", "pushing", 500, 3000),
        ("linux/arm64/v8", "pushing", 500, 2000),
        ("linux/amd64", "pushing", 2000, 3000),
        ("linux/amd64", "pushing", 2500, 3000),
    ]
    row = Row("linux/amd64").then(progress.Event("linux/amd64", "pushing", 100.0, size=80_000_000))
    row = row.then(progress.Event("linux/amd64", "pushing", 102.0, size=80_000_000, done=12_000_000))
    assert row.state(104.0) == "pushing 12.0 of 80.0 MB at 3.0 MB/s"
    out: list[str] = []
    Lines(out.append)(events[0])
    assert out == []  # a CI log gets phase lines, not byte counts


def test_publish_reports_bytes_as_pushing_events(tmp_home, registry: Registry, unique_repo, tmp_path):
    from manifesto.jobs import progress
    from manifesto.jobs.publish import Options, plan, publish

    spec = write_matrix(tmp_path, registry.ref(unique_repo), platforms=("linux/amd64",))
    (tmp_path / "ctx" / "hello").write_bytes(os.urandom(256 * 1024))
    events: list[progress.Event] = []
    publish(plan(spec), Options(on_event=events.append))
    counted = [e for e in events if e.phase == progress.PUSHING and e.done is not None]
    assert counted and counted[-1].done and counted[-1].size and 0 < counted[-1].done <= counted[-1].size
