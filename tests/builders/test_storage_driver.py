"""The storage driver of buildah/podman builds: explicit, else overlay where a probe shows it
works in the storage, else vfs; the verdict kept beside the stores; prune and mounts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from manifesto.builders.buildah import BuildahBuilder
from manifesto.builders.cache import DRIVER_VERDICT, prune, store_lock, unmount_under
from manifesto.builders.podman import PodmanBuilder
from manifesto.builders.runner import Captured, Runner
from manifesto.builders.storage import PROBE_FILE
from manifesto.errors import UsageError
from manifesto.oci.platform import Platform
from tests.support import require
from tests.support.tools import missing
from tests.support.images import busybox_path

AMD64 = Platform.parse("linux/amd64")


class ProbeRunner(Runner):
    """Stands in for the tool during the probe: records each subcommand; `mount` "mounts" by
    making a directory with the layer's file (or fails with `mount_error`)."""

    def __init__(self, mount_error: str | None = None, delay: float = 0.0) -> None:
        super().__init__()
        self.mount_error = mount_error
        self.delay = delay
        self.argvs: list[list[str]] = []
        self.mounted: Path | None = None
        self.written = False  # whether the probe wrote through the mount before unmounting

    def subcommands(self) -> list[str]:
        return [_subcommand(a) for a in self.argvs]

    def capture(self, argv, *, label="", env=None, check=True, timeout=60):  # type: ignore[no-untyped-def, override]
        args = [str(a) for a in argv]
        self.argvs.append(args)
        if _subcommand(args) in ("umount", "unmount") and self.mounted is not None:
            self.written = (self.mounted / "written").exists()
        if _subcommand(args) == "mount":
            time.sleep(self.delay)
            if self.mount_error:
                return Captured(125, "", f"Error: {self.mount_error}\n")
            root = Path(args[args.index("--root") + 1])
            self.mounted = root / "overlay" / "c1" / "merged"
            self.mounted.mkdir(parents=True)
            (self.mounted / PROBE_FILE).write_text(PROBE_FILE)
            return Captured(0, f"{self.mounted}\n", "")
        return Captured(0, "", "")


def _subcommand(args: list[str]) -> str:
    """The first argument after the global options (each global option takes one value)."""
    i = 1
    while i < len(args) and args[i].startswith("--"):
        i += 2
    return args[i]


@pytest.fixture
def tool(tmp_path: Path) -> str:
    """An executable to stand for buildah (the verdict is keyed by its path, size and mtime)."""
    exe = tmp_path / "bin" / "buildah"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\nexit 1\n")
    exe.chmod(0o755)
    return str(exe)


@pytest.fixture(autouse=True)
def no_storage_driver_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_DRIVER", raising=False)


def test_overlay_when_the_probe_mounts_reads_and_writes(tmp_path: Path, tool: str) -> None:
    runner = ProbeRunner()
    b = BuildahBuilder(runner, storage=tmp_path / "s", executable=tool)
    assert repr(b).endswith("driver='auto')") and runner.argvs == []  # nothing probed before it is needed
    assert b.storage_driver == "overlay"
    assert b.storage_verdict.reason == "auto: overlay works here"
    assert runner.subcommands() == ["from", "mount", "umount"]  # its container from a one-layer OCI archive
    for argv in runner.argvs:  # a throw-away overlay store beside the build stores
        assert argv[0] == tool and argv[argv.index("--storage-driver") + 1] == "overlay"
        assert Path(argv[argv.index("--root") + 1]).is_relative_to(tmp_path / "s")
    assert runner.written and runner.mounted is not None and not runner.mounted.exists()  # removed afterwards
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["driver.json", "driver.lock"]
    assert b.store(AMD64) == tmp_path / "s" / "overlay" / "linux-amd64"
    argv = b.command("build", platform=AMD64)
    assert argv[argv.index("--storage-driver") + 1] == "overlay"
    assert repr(b).endswith("driver='overlay')")


def test_vfs_with_the_reason_when_the_mount_fails(tmp_path: Path, tool: str, capsys: pytest.CaptureFixture[str]) -> None:
    runner = ProbeRunner(mount_error="mounting overlay: invalid argument")
    b = BuildahBuilder(runner, storage=tmp_path / "s", executable=tool)
    assert b.storage_driver == "vfs"
    assert b.storage_verdict.reason == "auto: overlay `mount` failed: Error: mounting overlay: invalid argument"
    assert b.store(AMD64) == tmp_path / "s" / "vfs" / "linux-amd64"
    assert runner.subcommands()[-1] == "umount"  # whatever was set up is unmounted
    kept = json.loads((tmp_path / "s" / DRIVER_VERDICT).read_text())
    assert kept["driver"] == "vfs" and "invalid argument" in kept["reason"]
    assert capsys.readouterr() == ("", "")  # quiet: the reason is a debug log line


def test_a_layer_the_mount_does_not_show_is_no_overlay(tmp_path: Path, tool: str) -> None:
    class Empty(ProbeRunner):
        def capture(self, argv, **kw):  # type: ignore[no-untyped-def, override]
            done = super().capture(argv, **kw)
            if self.mounted is not None:
                (self.mounted / PROBE_FILE).unlink(missing_ok=True)
            return done

    b = BuildahBuilder(Empty(), storage=tmp_path / "s", executable=tool)
    assert b.storage_driver == "vfs" and "does not show its layer's file" in b.storage_verdict.reason


def test_the_verdict_is_kept_per_storage_and_probed_again_when_the_tool_changes(tmp_path: Path, tool: str) -> None:
    first = ProbeRunner(mount_error="no")
    assert BuildahBuilder(first, storage=tmp_path / "s", executable=tool).storage_driver == "vfs"
    again = ProbeRunner()
    b = BuildahBuilder(again, storage=tmp_path / "s", executable=tool)
    assert b.storage_driver == "vfs" and again.argvs == []  # a second builder does not probe
    other = ProbeRunner()
    assert BuildahBuilder(other, storage=tmp_path / "t", executable=tool).storage_driver == "overlay"
    assert other.argvs  # another storage location is probed on its own

    Path(tool).write_text("#!/bin/sh\n# upgraded\nexit 1\n")  # another version of the tool
    upgraded = ProbeRunner()
    assert BuildahBuilder(upgraded, storage=tmp_path / "s", executable=tool).storage_driver == "overlay"
    assert upgraded.subcommands()[:1] == ["from"]


def test_builders_starting_at_once_probe_once(tmp_path: Path, tool: str) -> None:
    runners = [ProbeRunner(delay=0.3) for _ in range(4)]
    builders = [BuildahBuilder(r, storage=tmp_path / "s", executable=tool) for r in runners]
    drivers: list[str] = []
    threads = [threading.Thread(target=lambda b=b: drivers.append(b.storage_driver)) for b in builders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert drivers == ["overlay"] * 4
    assert sum(r.subcommands().count("mount") for r in runners) == 1


def test_an_explicit_driver_wins_and_nothing_is_probed(
    tmp_path: Path, tool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = ProbeRunner()
    b = BuildahBuilder(runner, storage=tmp_path / "s", executable=tool, storage_driver="vfs")
    assert b.storage_driver == "vfs" and b.storage_verdict.reason == "chosen by storage_driver="
    monkeypatch.setenv("STORAGE_DRIVER", "overlay")  # what buildah and podman honour themselves
    env = BuildahBuilder(runner, storage=tmp_path / "s", executable=tool)
    assert env.storage_driver == "overlay" and env.storage_verdict.reason == "chosen by STORAGE_DRIVER"
    assert BuildahBuilder(runner, storage=tmp_path / "s", executable=tool, storage_driver="vfs").storage_driver == "vfs"
    monkeypatch.setenv("STORAGE_DRIVER", "auto")
    assert BuildahBuilder(runner, storage=tmp_path / "s", executable=tool, storage_driver="auto").storage_driver == "overlay"
    assert runner.subcommands().count("mount") == 1  # only the last, auto both ways, probed
    with pytest.raises(UsageError, match="not a storage driver name"):
        BuildahBuilder(runner, storage=tmp_path / "s", storage_driver="../x")


def test_without_the_tool_vfs_is_not_kept(tmp_path: Path) -> None:
    runner = ProbeRunner()
    b = BuildahBuilder(runner, storage=tmp_path / "s", executable=str(tmp_path / "nowhere" / "buildah"))
    assert b.storage_driver == "vfs" and "not installed" in b.storage_verdict.reason
    assert runner.argvs == [] and not (tmp_path / "s" / DRIVER_VERDICT).exists()


def test_podman_probes_with_its_own_commands(tmp_path: Path, tool: str) -> None:
    runner = ProbeRunner()
    b = PodmanBuilder(runner, storage=tmp_path / "s", executable=tool)
    assert b.storage_driver == "overlay"
    assert runner.subcommands() == ["import", "create", "mount", "unmount"]
    runroot = runner.argvs[0][runner.argvs[0].index("--runroot") + 1]
    assert len(runroot) <= 50 and not Path(runroot).exists()  # podman's limit; removed afterwards
    assert "--tmpdir" in runner.argvs[0] and "--events-backend" in runner.argvs[0]


def test_prune_forgets_the_verdict_and_what_a_killed_probe_left(tmp_path: Path, tool: str) -> None:
    storage = tmp_path / "manifesto" / "buildah"
    assert BuildahBuilder(ProbeRunner(), storage=storage, executable=tool).storage_driver == "overlay"
    (storage / ".probe-killed" / "root").mkdir(parents=True)
    prune(tmp_path / "manifesto")
    assert sorted(p.name for p in storage.iterdir()) == ["driver.lock"]
    again = ProbeRunner()
    assert BuildahBuilder(again, storage=storage, executable=tool).storage_driver == "overlay" and again.argvs


# ---- real buildah on this machine ------------------------------------------------------------


def _mounts_under(path: Path) -> list[str]:
    base = str(path.resolve())
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if base in line]


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    shutil.copy(busybox_path("amd64"), ctx / "busybox")
    (ctx / "app.txt").write_text("one\n")
    (ctx / "Dockerfile").write_text(
        'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "sh", "-c", "echo ran > /ran"]\n'
        "COPY app.txt /app.txt\n"
    )
    return ctx


@pytest.fixture
def unmounted(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Whatever a failing test left mounted under tmp_path is detached afterwards (else the
    directory could not be removed)."""
    yield
    unmount_under(tmp_path)


def _as_root() -> None:
    if os.geteuid() != 0:
        missing("overlay stores are mounted in the host's namespace only as root")


def test_a_cached_build_under_auto_uses_overlay_and_leaves_no_mount(
    tmp_path: Path, unmounted: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    require("buildah")
    _as_root()
    from manifesto.builders import buildkey
    from manifesto.builders.base import BuildRequest
    from tests.builders.test_build_cache import hits, layer_file

    keyed: list[str] = []
    original = buildkey.build_key
    monkeypatch.setattr(buildkey, "build_key", lambda parts: (keyed.append(parts["driver"]), original(parts))[1])
    ctx = _context(tmp_path)
    b = BuildahBuilder(Runner(), storage=tmp_path / "storage")

    def build(tag: str) -> tuple[object, list[str]]:
        lines: list[str] = []
        req = BuildRequest(AMD64, ctx, ctx / "Dockerfile", {}, tmp_path / "out", tag=tag)
        return b.build(req, lines.append), lines

    first, _ = build("one")
    assert b.storage_driver == "overlay", b.storage_verdict
    assert keyed and set(keyed) == {"overlay"}  # the build key holds the resolved driver
    assert (tmp_path / "storage" / "overlay" / "linux-amd64" / "root" / "overlay").is_dir()
    assert not (tmp_path / "storage" / "vfs").exists()
    assert _mounts_under(tmp_path) == []
    (ctx / "app.txt").write_text("two\n")
    changed, lines = build("two")
    assert hits(lines) == 2, lines  # COPY busybox and the RUN came from the cache
    assert layer_file(changed, "ran") == layer_file(first, "ran") == b"ran\n"  # type: ignore[arg-type]
    assert layer_file(changed, "app.txt") == b"two\n"  # type: ignore[arg-type]
    assert _mounts_under(tmp_path) == []


def test_prune_removes_an_overlay_store_a_killed_build_left_mounted(tmp_path: Path, unmounted: None) -> None:
    require("buildah")
    _as_root()
    xdg = tmp_path / "xdg"
    storage = xdg / "manifesto" / "buildah"
    b = BuildahBuilder(Runner(), storage=storage)
    assert b.storage_driver == "overlay", b.storage_verdict
    with store_lock(b.store(AMD64)):  # the store of a build (its lock file)
        pass
    tool = b.command(platform=AMD64)  # a container mounted in the store, as a killed build leaves it
    name = subprocess.run([*tool, "from", "scratch"], capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([*tool, "mount", name], capture_output=True, check=True)
    assert _mounts_under(storage), "buildah mount mounted nothing"
    done = subprocess.run(
        [sys.executable, "-m", "manifesto", "cache", "prune"],
        env={**os.environ, "XDG_CACHE_HOME": str(xdg)}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _mounts_under(tmp_path) == []
    assert sorted(p.name for p in b.store(AMD64).iterdir()) == ["lock"]


def test_doctor_names_the_storage_driver_builds_use(run_cli, tmp_home, tmp_path: Path, unmounted: None) -> None:  # type: ignore[no-untyped-def]
    require("buildah")
    _as_root()
    rc, out, err = run_cli("doctor", "--builder", "buildah", cwd=tmp_path)  # no platforms.yaml there
    assert rc == 0, out + err
    assert out.startswith("ok: buildah (overlay storage) can build"), out
    rc, out, err = run_cli("doctor", "--builder", "buildah", env={"STORAGE_DRIVER": "vfs"}, cwd=tmp_path)
    assert rc == 0 and out.startswith("ok: buildah (vfs storage) can build"), out + err
    assert (tmp_home.cache / "manifesto" / "buildah" / "vfs").is_dir()  # check() opened that store


def test_a_failed_build_on_overlay_leaves_no_container_mounted(tmp_path: Path, unmounted: None) -> None:
    require("buildah")
    _as_root()
    from manifesto.builders.base import BuildRequest
    from manifesto.errors import BuildError

    ctx = _context(tmp_path)
    (ctx / "Dockerfile").write_text('FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "sh", "-c", "exit 3"]\n')
    b = BuildahBuilder(Runner(), storage=tmp_path / "storage")
    with pytest.raises(BuildError):
        b.build(BuildRequest(AMD64, ctx, ctx / "Dockerfile", {}, tmp_path / "out"), lambda line: None)
    assert b.storage_driver == "overlay", b.storage_verdict
    assert _mounts_under(tmp_path) == []  # the failed step's container went with its mount
    listed = subprocess.run([*b.command("containers", "--quiet", platform=AMD64)], capture_output=True, text=True)
    assert listed.returncode == 0 and listed.stdout.strip() == "", listed


def test_a_probe_that_could_not_run_holds_for_this_run_only(tmp_path: Path, tool: str) -> None:
    """A tool that does not answer says nothing of overlay: vfs now, and the next builder
    probes again instead of keeping vfs until `cache prune`."""
    from manifesto.errors import BuildError

    class Silent(ProbeRunner):
        def capture(self, argv, **kw):  # type: ignore[no-untyped-def, override]
            if _subcommand([str(a) for a in argv]) == "mount":
                raise BuildError("buildah did not answer within 60s")
            return super().capture(argv, **kw)

    b = BuildahBuilder(Silent(), storage=tmp_path / "s", executable=tool)
    assert b.storage_driver == "vfs" and "did not answer" in b.storage_verdict.reason
    assert not (tmp_path / "s" / DRIVER_VERDICT).exists()
    again = ProbeRunner()
    assert BuildahBuilder(again, storage=tmp_path / "s", executable=tool).storage_driver == "overlay"
    assert "mount" in again.subcommands()


def test_the_verdict_is_probed_again_with_other_capabilities(
    tmp_path: Path, tool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same user, tool and kernel without the capability to mount (root in an unprivileged
    container sharing the cache) must not inherit an overlay verdict."""
    from manifesto.builders import storage

    assert BuildahBuilder(ProbeRunner(), storage=tmp_path / "s", executable=tool).storage_driver == "overlay"
    monkeypatch.setattr(storage, "_capabilities", lambda: "0000000000000000")
    denied = ProbeRunner(mount_error="mounting overlay: operation not permitted")
    assert BuildahBuilder(denied, storage=tmp_path / "s", executable=tool).storage_driver == "vfs"
    assert "mount" in denied.subcommands()


def test_unmount_under_leaves_a_mount_at_the_path_itself(tmp_path: Path) -> None:
    """A volume mounted where the stores live is the user's; only mounts below it are the tools'."""
    volume, inner = tmp_path / "volume", tmp_path / "volume" / "inner"
    inner.mkdir(parents=True)
    try:
        subprocess.run(["mount", "--bind", str(volume), str(volume)], check=True)
        subprocess.run(["mount", "--bind", str(inner), str(inner)], check=True)
        unmount_under(volume)
        points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        assert str(volume) in points and str(inner) not in points
    finally:
        subprocess.run(["umount", "-R", str(volume)], check=False)


def test_a_probe_stopped_by_a_signal_is_not_kept(tmp_path: Path, tool: str) -> None:
    """Ctrl-C reaches the probe's buildah too: its death by signal says nothing of overlay."""

    class Interrupted(ProbeRunner):
        def capture(self, argv, **kw):  # type: ignore[no-untyped-def, override]
            if _subcommand([str(a) for a in argv]) == "from":
                return Captured(-2, "", "")
            return super().capture(argv, **kw)

    b = BuildahBuilder(Interrupted(), storage=tmp_path / "s", executable=tool)
    assert b.storage_driver == "vfs" and "stopped" in b.storage_verdict.reason
    assert not (tmp_path / "s" / DRIVER_VERDICT).exists()
